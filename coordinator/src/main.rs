//! The `coordinator` binary (issue [7/9] fills in `serve`, `project`, `trigger`…).

use clap::Parser;

/// Drydock's coordinator.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
