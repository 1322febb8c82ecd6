//! The `runner` binary: `runner config validate` and `runner config process` today; `runner exec` (run a job
//! locally) and `runner agent` (take jobs from a coordinator) come with issue 6/9. The CLI only parses and
//! prints: every verb is one `config_schema` call.

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
    /// Expand a 2.1 configuration (orbs, executors, commands, parameters, matrices, `when`) into its 2.0
    /// equivalent for one pipeline and print it as YAML; exit 1 with every problem if it cannot be processed.
    Process {
        /// The configuration file.
        #[arg(default_value = ".circleci/config.yml")]
        file: PathBuf,
        /// Directory of registry orbs available offline: DIR/NAMESPACE/NAME.yml.
        #[arg(long, env = "DRYDOCK_ORB_DIR")]
        orb_dir: Option<PathBuf>,
        /// Pipeline parameter values as a JSON object: '{"deploy": true, "env": "staging"}'.
        #[arg(long, value_name = "JSON")]
        pipeline_parameters: Option<String>,
        /// One pipeline parameter, NAME=VALUE (true/false and whole numbers are typed); repeatable, and wins over
        /// --pipeline-parameters.
        #[arg(long = "pipeline-param", value_name = "NAME=VALUE")]
        pipeline_param: Vec<String>,
        /// `<< pipeline.git.branch >>`.
        #[arg(long)]
        branch: Option<String>,
        /// `<< pipeline.git.tag >>`.
        #[arg(long)]
        tag: Option<String>,
        /// `<< pipeline.git.revision >>`.
        #[arg(long)]
        revision: Option<String>,
        /// Print JSON (the form the coordinator stores) instead of YAML.
        #[arg(long)]
        json: bool,
    },
}

/// The pipeline `runner config process` was asked for, or what is wrong with its options.
fn pipeline(
    parameters: Option<&str>,
    params: &[String],
    values: [(&str, Option<String>); 3],
) -> Result<config_schema::Pipeline, String> {
    let mut p = config_schema::Pipeline::default();
    if let Some(json) = parameters {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(m)) => p.parameters.extend(m),
            Ok(other) => return Err(format!("--pipeline-parameters must be a JSON object, found {other}")),
            Err(e) => return Err(format!("--pipeline-parameters is not JSON: {e}")),
        }
    }
    for kv in params {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("--pipeline-param `{kv}` is not NAME=VALUE"));
        };
        let value = match v {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            _ => v.parse::<i64>().map_or_else(|_| serde_json::Value::String(v.to_string()), Into::into),
        };
        p.parameters.insert(k.to_string(), value);
    }
    for (name, value) in values {
        if let Some(v) = value {
            p.values.insert(name.to_string(), v);
        }
    }
    Ok(p)
}

fn report_problems(file: &std::path::Path, problems: &config_schema::Diagnostics) -> ExitCode {
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
                Err(problems) => report_problems(&file, &problems),
            }
        }
        Command::Config(ConfigCommand::Process {
            file,
            orb_dir,
            pipeline_parameters,
            pipeline_param,
            branch,
            tag,
            revision,
            json,
        }) => {
            let values = [("git.branch", branch), ("git.tag", tag), ("git.revision", revision)];
            let pipeline = match pipeline(pipeline_parameters.as_deref(), &pipeline_param, values) {
                Ok(p) => p,
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(2);
                }
            };
            let options = config_schema::Options { orb_dir };
            let processed = match config_schema::process_file(&file, &options, &pipeline) {
                Ok(p) => p,
                Err(problems) => return report_problems(&file, &problems),
            };
            let text = if json {
                processed
                    .to_json()
                    .map(|mut t| {
                        t.push('\n');
                        t
                    })
                    .map_err(|e| e.to_string())
            } else {
                processed.to_yaml().map_err(|e| e.to_string())
            };
            match text {
                Ok(t) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: cannot print the processed configuration: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
