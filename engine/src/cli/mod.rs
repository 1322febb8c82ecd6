//! The docker-like command line: global flags, the verb table, and the mapping of errors to docker's exit codes.
//! Each area has its file (`image.rs`, `container.rs`); a verb parses its flags, calls one library function and
//! prints the result, nothing more.

mod build;
mod compose;
mod container;
mod image;
mod network;
mod registry;
mod serve;
mod table;
mod volume;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use engine::error::EXIT_ENGINE;

/// Drydock's container engine: docker's habits, no daemon.
#[derive(Parser, Debug)]
#[command(name = "engine", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// State directory (images, layers, containers).
    #[arg(long, global = true, env = "DRYDOCK_ROOT", default_value = "/var/lib/drydock")]
    pub root: PathBuf,
    /// Log level for engine diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "DRYDOCK_LOG", default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<build::BuildArgs>),
    #[command(flatten)]
    Image(image::ImageCommand),
    /// Manage images.
    #[command(name = "image", subcommand)]
    ImageGroup(image::ImageGroupCommand),
    #[command(flatten)]
    Container(container::ContainerCommand),
    /// Manage containers.
    #[command(name = "container", subcommand)]
    ContainerGroup(container::ContainerGroupCommand),
    #[command(flatten)]
    Registry(registry::RegistryCommand),
    /// Manage networks.
    #[command(name = "network", subcommand)]
    Network(network::NetworkCommand),
    /// Manage volumes.
    #[command(name = "volume", subcommand)]
    Volume(volume::VolumeCommand),
    /// Show low-level information on containers or images, as JSON.
    Inspect(InspectArgs),
    /// Define and run multi-container applications (docker compose).
    Compose(Box<compose::ComposeArgs>),
    /// Serve the Docker Engine API on a unix socket, for the docker CLI and SDKs.
    Serve(serve::ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Only look at objects of this type (container or image).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Format the output with a template (only `{{json .}}` and `{{.Field.Sub}}` paths are understood).
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// What every verb gets: the opened state directory.
pub struct Context {
    pub root: PathBuf,
}

impl Context {
    pub fn open_root(&self) -> anyhow::Result<engine::root::Root> {
        Ok(engine::root::Root::open(&self.root)?)
    }
}

/// The command line as the engine parses it. Called as `docker-compose` (a symlink or copy of this binary, as CI
/// scripts expect it on the PATH), the engine behaves as `engine compose`: `docker-compose -f f.yml up -d` is
/// `engine compose -f f.yml up -d`. Called as `docker`, the verbs are already docker's.
fn command_line() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args.first().map(std::path::Path::new).and_then(|p| p.file_name()).map(|n| n.to_os_string());
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("docker-compose")) {
        args.insert(1, "compose".into());
    }
    args
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(command_line()) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ENGINE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_level).unwrap_or_default())
        .try_init();
    let ctx = Context { root: cli.root };
    let result = match cli.command {
        Command::Build(args) => build::build(*args, &ctx),
        Command::Image(cmd) => image::run(cmd, &ctx),
        Command::ImageGroup(cmd) => image::run_group(cmd, &ctx),
        Command::Container(cmd) => container::run(cmd, &ctx),
        Command::ContainerGroup(cmd) => container::run_group(cmd, &ctx),
        Command::Registry(cmd) => registry::run(cmd, &ctx),
        Command::Network(cmd) => network::run(cmd, &ctx),
        Command::Volume(cmd) => volume::run(cmd, &ctx),
        Command::Inspect(args) => inspect(args, &ctx),
        Command::Compose(args) => compose::run(*args, &ctx),
        Command::Serve(args) => serve::run(args, &ctx),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {}", chain(&e));
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// The error and its causes on one line, without repeating transparent wrappers.
fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// A closed stdout (`engine inspect x | head`) ends the command quietly, as docker does. serde_json wraps the
/// io error, so look inside it too.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// A verb can attach a specific exit code to an error (126, 127 …); everything else is an engine error (125).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.chain().find_map(|c| c.downcast_ref::<ExitError>().map(|x| x.code)).unwrap_or(EXIT_ENGINE)
}

fn inspect(args: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let root = ctx.open_root()?;
    let images = engine::image::ImageStore::open(&root)?;
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for name in &args.names {
        let mut found = None;
        if args.kind.as_deref() != Some("image") {
            found = container::inspect_value(ctx, name)?;
        }
        if found.is_none() && args.kind.as_deref() != Some("container") {
            if let Ok(image) = images.resolve(name) {
                found = Some(images.inspect_json(&image));
            }
        }
        match found {
            Some(v) => out.push(v),
            None => failed.push(name.clone()),
        }
    }
    print_inspect(&out, args.format.as_deref())?;
    if let Some(name) = failed.first() {
        anyhow::bail!("No such object: {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints inspect results: a JSON array, or one line per object for `--format`.
pub fn print_inspect(values: &[serde_json::Value], format: Option<&str>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        None => {
            serde_json::to_writer_pretty(&mut stdout, values)?;
            writeln!(stdout)?;
        }
        Some(f) => {
            for v in values {
                writeln!(stdout, "{}", table::render_template(f, v))?;
            }
        }
    }
    Ok(())
}
