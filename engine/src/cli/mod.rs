//! The docker-like command line: global flags, the verb table, and the mapping of errors to docker's exit codes.
//! Each area has its file (`image.rs`, `container.rs`); a verb parses its flags, calls one library function and
//! prints the result, nothing more.

mod build;
mod compose;
mod container;
mod image;
mod network;
mod registry;
mod remote;
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
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// The flags every verb takes.
#[derive(clap::Args, Debug)]
pub struct Globals {
    /// State directory (images, layers, containers).
    #[arg(long, global = true, env = "DRYDOCK_ROOT", default_value = "/var/lib/drydock")]
    pub root: PathBuf,
    /// Log level for engine diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "DRYDOCK_LOG", default_value = "warn")]
    pub log_level: String,
    /// Engine API server to use instead of the root: unix:///path or tcp://host:port (docker's -H; else
    /// DRYDOCK_HOST, else DOCKER_HOST).
    #[arg(short = 'H', long = "host", global = true)]
    pub host: Option<String>,
}

/// Where the verb is in `args` (argv[0] first): after the global flags of [`Globals`], given before it.
fn verb_index(args: &[std::ffi::OsString]) -> usize {
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "--root" | "--log-level" | "--host" | "-H" => i += 2,
            _ if a.starts_with("--root=") || a.starts_with("--log-level=") || a.starts_with("--host=") => i += 1,
            _ => break,
        }
    }
    i
}

/// `engine [globals] run …` parsed against a command tree that holds only `run`: building clap's whole tree
/// (every verb of every group, each with its flags) costs ~1 ms of a container start's CPU, more than parsing
/// itself. `None` for any other command line, for help and version requests, and for any parse error — the full
/// parser then handles it, so what users see (help, errors, usage) comes from one place. The test
/// `run_fast_path_parses_as_the_full_tree` keeps the two in step.
fn parse_run_fast(args: &[std::ffi::OsString]) -> Option<(Cli, bool)> {
    use clap::{Args as _, FromArgMatches as _};
    if args.get(verb_index(args)).and_then(|a| a.to_str()) != Some("run") {
        return None;
    }
    let asks_for_help = |a: &std::ffi::OsString| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version"));
    if args.iter().any(asks_for_help) {
        return None;
    }
    let tree = Globals::augment_args(clap::Command::new("engine"))
        .subcommand(container::RunArgs::augment_args(clap::Command::new("run")))
        .subcommand_required(true);
    let m = tree.try_get_matches_from(args).ok()?;
    let root_on_command_line = m.value_source("root") == Some(clap::parser::ValueSource::CommandLine);
    let globals = Globals::from_arg_matches(&m).ok()?;
    let run = container::RunArgs::from_arg_matches(m.subcommand_matches("run")?).ok()?;
    let command = Command::Container(container::ContainerCommand::Run(Box::new(run)));
    Some((Cli { globals, command }, root_on_command_line))
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
    /// Show the client's version and, with a server (DOCKER_HOST), the server's.
    Version,
    /// Show system-wide information (from the server with DOCKER_HOST).
    Info,
    /// Manage the engine (`system info`).
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show system-wide information.
    Info,
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

/// How the binary was called: as `engine`, or as `docker` / `docker-compose` (a copy or link of the static
/// client in a CI job's container), which are always clients of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvokedAs {
    Engine,
    Docker,
    DockerCompose,
}

/// The command line as the engine parses it. Called as `docker-compose` (a symlink or copy of this binary, as CI
/// scripts expect it on the PATH), the engine behaves as `engine compose`: `docker-compose -f f.yml up -d` is
/// `engine compose -f f.yml up -d`. Called as `docker`, the verbs are already docker's; docker's management
/// forms that have no group of their own here are rewritten to the plain verb (`image build|pull|push|save|load`
/// → `build|pull|…`, `container` verbs are a group already).
fn command_line() -> (Vec<std::ffi::OsString>, InvokedAs) {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = match args.first().map(std::path::Path::new).and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        Some("docker-compose") => InvokedAs::DockerCompose,
        Some("docker") => InvokedAs::Docker,
        _ => InvokedAs::Engine,
    };
    if invoked_as == InvokedAs::DockerCompose {
        args.insert(1, "compose".into());
    }
    rewrite_management_forms(&mut args);
    (args, invoked_as)
}

/// `image build|pull|push|save|load ARGS` → `build|pull|… ARGS` (the first non-flag word after the global flags).
fn rewrite_management_forms(args: &mut Vec<std::ffi::OsString>) {
    let i = verb_index(args);
    let group = args.get(i).and_then(|a| a.to_str());
    let verb = args.get(i + 1).and_then(|a| a.to_str());
    if group == Some("image") && matches!(verb, Some("build" | "pull" | "push" | "save" | "load")) {
        args.remove(i);
    }
}

/// Where the verbs go: the engine root, or a server. `-H` names a server; else `--root` on the command line
/// means the root; else `docker`/`docker-compose` always use a server (`DRYDOCK_HOST`, `DOCKER_HOST`, else
/// docker's default socket) and `engine` uses one when `DRYDOCK_HOST` or `DOCKER_HOST` is set. `serve` and the
/// container monitor always work on the root.
fn server_for(
    command: &Command,
    invoked_as: InvokedAs,
    root_on_command_line: bool,
    host_flag: Option<&str>,
) -> engine::client::Result<Option<engine::client::Host>> {
    use engine::client::{host::DEFAULT_DOCKER_HOST, Host};
    let on_root_only =
        matches!(command, Command::Serve(_) | Command::Container(container::ContainerCommand::ContainerMonitor(_)));
    if on_root_only {
        return Ok(None);
    }
    if let Some(h) = host_flag {
        return Host::parse(h).map(Some);
    }
    // An explicit `--root` is a request for the root, whatever the name the binary was called by.
    if root_on_command_line {
        return Ok(None);
    }
    if invoked_as != InvokedAs::Engine {
        return Ok(Some(Host::from_env()?.map_or_else(|| Host::parse(DEFAULT_DOCKER_HOST), Ok)?));
    }
    Host::from_env()
}

/// The CLI's log output: stderr, but nothing from a container monitor forked from this process (libcontainer
/// warns about cgroup controllers this host lacks — noise on the user's terminal; the re-executed monitor runs
/// with `--log-level off`).
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if engine::container::monitor::in_monitor() {
            return Ok(buf.len());
        }
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let (args, invoked_as) = command_line();
    let parsed = match parse_run_fast(&args) {
        Some(parsed) => Ok(parsed),
        None => Cli::command().try_get_matches_from(args).and_then(|m| {
            let root_on_command_line = m.value_source("root") == Some(clap::parser::ValueSource::CommandLine);
            Cli::from_arg_matches(&m).map(|cli| (cli, root_on_command_line))
        }),
    };
    let (cli, root_on_command_line) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ENGINE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(|| LogWriter)
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.globals.log_level).unwrap_or_default())
        .try_init();
    // `serve` is multi-threaded: its monitors are re-executed (see engine::container::monitor).
    if !matches!(cli.command, Command::Serve(_)) {
        engine::container::monitor::allow_in_process();
    }
    let result = match server_for(&cli.command, invoked_as, root_on_command_line, cli.globals.host.as_deref()) {
        Err(e) => Err(e.into()),
        Ok(Some(host)) => engine::client::ApiClient::new(host)
            .map_err(anyhow::Error::from)
            .and_then(|client| remote::run(cli.command, &client)),
        Ok(None) => run_local(cli.command, &Context { root: cli.globals.root }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            // docker's wording for what the server refused, so scripts and people read the same message.
            let from_server = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<engine::client::Error>(), Some(engine::client::Error::Api { .. })));
            if from_server && !chain(&e).starts_with("Error response from daemon") {
                eprintln!("Error response from daemon: {}", chain(&e));
            } else {
                eprintln!("Error: {}", chain(&e));
            }
            ExitCode::from(exit_code_of(&e))
        }
    }
}

fn run_local(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => build::build(*args, ctx),
        Command::Image(cmd) => image::run(cmd, ctx),
        Command::ImageGroup(cmd) => image::run_group(cmd, ctx),
        Command::Container(cmd) => container::run(cmd, ctx),
        Command::ContainerGroup(cmd) => container::run_group(cmd, ctx),
        Command::Registry(cmd) => registry::run(cmd, ctx),
        Command::Network(cmd) => network::run(cmd, ctx),
        Command::Volume(cmd) => volume::run(cmd, ctx),
        Command::Inspect(args) => inspect(args, ctx),
        Command::Compose(args) => compose::run(*args, ctx),
        Command::Serve(args) => serve::run(args, ctx),
        Command::Version => {
            println!("Client: Drydock Engine\n Version:           {}", env!("CARGO_PKG_VERSION"));
            println!(
                " API version:       {} (no server: the engine root {} is used directly)",
                engine::client::API_VERSION,
                ctx.root.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Info | Command::System(SystemCommand::Info) => {
            anyhow::bail!("info describes a server: set DOCKER_HOST or DRYDOCK_HOST (unix:///path) to ask one")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(args: &[&str]) -> Vec<String> {
        let mut v: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        rewrite_management_forms(&mut v);
        v.into_iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn run_fast_path_parses_as_the_full_tree() {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let lines: &[&[&str]] = &[
            &["engine", "run", "--rm", "busybox", "true"],
            &["engine", "--root", "/r", "run", "-d", "--name", "x", "-e", "A=1", "busybox", "sh", "-c", "echo $A"],
            &["engine", "run", "--root=/r", "--log-level", "debug", "-it", "--network", "none", "busybox"],
            &[
                "engine",
                "-H",
                "unix:///s",
                "run",
                "-v",
                "/a:/b:ro",
                "--memory",
                "64m",
                "alpine",
                "ls",
                "-la",
                "--",
                "-x",
            ],
            &["engine", "run", "busybox", "--rm"],
        ];
        for line in lines {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            let (fast, fast_root) = parse_run_fast(&args).unwrap_or_else(|| panic!("no fast path for {line:?}"));
            let m = Cli::command().try_get_matches_from(&args).expect("valid command line");
            let full_root = m.value_source("root") == Some(clap::parser::ValueSource::CommandLine);
            let full = Cli::from_arg_matches(&m).expect("valid command line");
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{line:?}");
            assert_eq!(fast_root, full_root, "{line:?}");
        }
        // Everything else goes to the full parser: other verbs, help, errors.
        for line in [
            &["engine", "ps"][..],
            &["engine", "run", "--help"],
            &["engine", "run", "--bogus", "busybox"],
            &["engine", "run"],
            &["engine", "container", "run", "busybox"],
        ] {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            assert!(parse_run_fast(&args).is_none(), "{line:?}");
        }
    }

    #[test]
    fn docker_management_forms_become_plain_verbs() {
        assert_eq!(rewritten(&["docker", "image", "build", "-t", "x", "."]), ["docker", "build", "-t", "x", "."]);
        assert_eq!(rewritten(&["e", "--root", "/r", "image", "push", "x"]), ["e", "--root", "/r", "push", "x"]);
        assert_eq!(
            rewritten(&["docker", "-H", "unix:///s", "image", "pull", "x"]),
            ["docker", "-H", "unix:///s", "pull", "x"]
        );
        assert_eq!(rewritten(&["docker", "image", "ls"]), ["docker", "image", "ls"]);
        assert_eq!(rewritten(&["docker", "run", "image", "build"]), ["docker", "run", "image", "build"]);
    }

    #[test]
    fn docker_and_docker_compose_are_always_remote_and_root_wins_for_engine() {
        let cli = |args: &[&str]| Cli::try_parse_from(args).expect("valid command line").command;
        let ps = cli(&["engine", "ps"]);
        // Called as docker: a server even without DOCKER_HOST (docker's default socket, or the environment's).
        assert!(matches!(server_for(&ps, InvokedAs::Docker, false, None), Ok(Some(_))));
        assert!(matches!(server_for(&ps, InvokedAs::Engine, true, None), Ok(None)));
        assert!(matches!(server_for(&ps, InvokedAs::DockerCompose, true, None), Ok(None)));
        let serve = cli(&["engine", "serve", "--socket", "/s"]);
        assert!(matches!(server_for(&serve, InvokedAs::Docker, false, None), Ok(None)));
        // -H names the server, even with --root (it is the more specific request).
        let expected = engine::client::Host::Unix("/h.sock".into());
        assert_eq!(server_for(&ps, InvokedAs::Engine, true, Some("unix:///h.sock")).ok().flatten(), Some(expected));
    }
}
