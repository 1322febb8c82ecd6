//! The `runner` binary: `runner config validate`, `process`, `plan` and `schema`, `runner exec` (run a job
//! locally) and `runner agent` (take jobs from a coordinator). The CLI only parses and prints: every verb is one
//! library call.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod agent_command;
mod exec_command;

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
    /// Run a job of .circleci/config.yml locally in containers (see docs/runner-exec.md).
    Exec(exec_command::ExecArgs),
    /// Take jobs from a coordinator and run them (see docs/runner-agent.md).
    Agent(agent_command::AgentArgs),
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
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Print JSON (the form the coordinator stores) instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Process a configuration and print which workflows and jobs run for a trigger (a push to --branch, a
    /// --tag, or the --schedule of a workflow firing on --branch), in dependency order.
    Plan {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The workflow whose scheduled trigger fired (with --branch).
        #[arg(long, value_name = "WORKFLOW")]
        schedule: Option<String>,
    },
    /// Print a JSON Schema (draft 7) of the accepted configuration, for editors: the keys of every section,
    /// job, step and workflow as the validator knows them (built from its key tables).
    Schema,
}

/// The configuration and the pipeline it is processed for.
#[derive(Args)]
struct PipelineArgs {
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
    /// The branch (`<< pipeline.git.branch >>`).
    #[arg(long)]
    branch: Option<String>,
    /// The tag (`<< pipeline.git.tag >>`).
    #[arg(long)]
    tag: Option<String>,
    /// The commit (`<< pipeline.git.revision >>`).
    #[arg(long)]
    revision: Option<String>,
}

impl PipelineArgs {
    /// The pipeline these options describe, or what is wrong with them.
    fn pipeline(&self) -> Result<config_schema::Pipeline, String> {
        let mut p = config_schema::Pipeline::default();
        if let Some(json) = &self.pipeline_parameters {
            match serde_json::from_str::<serde_json::Value>(json) {
                Ok(serde_json::Value::Object(m)) => p.parameters.extend(m),
                Ok(other) => return Err(format!("--pipeline-parameters must be a JSON object, found {other}")),
                Err(e) => return Err(format!("--pipeline-parameters is not JSON: {e}")),
            }
        }
        for kv in &self.pipeline_param {
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
        for (name, value) in [("git.branch", &self.branch), ("git.tag", &self.tag), ("git.revision", &self.revision)] {
            if let Some(v) = value {
                p.values.insert(name.to_string(), v.clone());
            }
        }
        Ok(p)
    }

    /// Processes the configuration; on failure the exit code after printing why.
    fn process(&self) -> Result<config_schema::ProcessedConfig, ExitCode> {
        let pipeline = self.pipeline().map_err(usage)?;
        let options = config_schema::Options { orb_dir: self.orb_dir.clone() };
        config_schema::process_file(&self.file, &options, &pipeline).map_err(|p| report_problems(&self.file, &p))
    }
}

fn usage(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn report_problems(file: &Path, problems: &config_schema::Diagnostics) -> ExitCode {
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

fn print(text: Result<String, String>) -> ExitCode {
    match text {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print the result: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    // The engine re-executes this binary as a container's monitor process.
    if let Some(code) = engine::container::monitor::run_if_monitor() {
        return ExitCode::from((code & 0xff) as u8);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Exec(args) => exec_command::run(args),
        Command::Agent(args) => agent_command::run(args),
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
        Command::Config(ConfigCommand::Process { pipeline, json }) => {
            let processed = match pipeline.process() {
                Ok(p) => p,
                Err(code) => return code,
            };
            print(if json {
                processed.to_json().map(|t| t + "\n").map_err(|e| e.to_string())
            } else {
                processed.to_yaml().map_err(|e| e.to_string())
            })
        }
        Command::Config(ConfigCommand::Schema) => print(
            serde_json::to_string_pretty(&config_schema::schema::schema()).map(|t| t + "\n").map_err(|e| e.to_string()),
        ),
        Command::Config(ConfigCommand::Plan { pipeline, schedule }) => {
            let trigger = match (&pipeline.tag, &pipeline.branch, schedule) {
                (Some(tag), None, None) => config_schema::Trigger::Tag(tag.clone()),
                (None, Some(branch), None) => config_schema::Trigger::Branch(branch.clone()),
                (None, Some(branch), Some(workflow)) => {
                    config_schema::Trigger::Schedule { workflow, branch: branch.clone() }
                }
                _ => return usage("give --branch, --tag, or --schedule WORKFLOW with --branch".into()),
            };
            let processed = match pipeline.process() {
                Ok(p) => p,
                Err(code) => return code,
            };
            match config_schema::plan(&processed, &trigger) {
                Ok(plan) => print(plan.to_yaml().map_err(|e| e.to_string())),
                Err(e) => {
                    eprintln!("{}: {e}", pipeline.file.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}
