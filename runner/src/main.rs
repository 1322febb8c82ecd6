//! The `runner` binary: `runner config validate` today; `runner exec` (run a job locally) and `runner agent`
//! (take jobs from a coordinator) come with issue 6/9.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Drydock's job runner.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with a pipeline configuration (.circleci/config.yml).
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration: exit 0 if it is valid, else print every problem (file:line:column) and exit 1.
    Validate {
        /// The configuration file.
        #[arg(default_value = ".circleci/config.yml")]
        file: PathBuf,
        /// Directory of registry orbs available offline: DIR/NAMESPACE/NAME.yml.
        #[arg(long, env = "DRYDOCK_ORB_DIR")]
        orb_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Validate { file, orb_dir }) => {
            let options = config_schema::Options { orb_dir };
            match config_schema::load(&file, &options) {
                Ok(_) => {
                    println!("Config file at {} is valid.", file.display());
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    for p in &problems.0 {
                        eprintln!("{p}");
                    }
                    eprintln!(
                        "Config file at {} is invalid: {} problem{}.",
                        file.display(),
                        problems.0.len(),
                        if problems.0.len() == 1 { "" } else { "s" }
                    );
                    ExitCode::from(1)
                }
            }
        }
    }
}
