//! The `runner` binary: `runner exec`, `runner agent` and `runner config` (later issues fill these in).

use clap::Parser;

/// Drydock's job runner.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
