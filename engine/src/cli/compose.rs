//! `engine compose …`: the docker compose verbs. Global flags (`-f`, `-p`, `--project-directory`,
//! `--env-file`, `--profile`) load the project; each verb calls one function of `engine::compose` and prints
//! progress the way docker compose does in plain mode (` Container demo-web-1  Started` on stderr).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{Context, ExitError};
use engine::compose::backend::{Backend, BuildRequest};
use engine::compose::down::{DownOptions, RemoveImages};
use engine::compose::local::{ImageTools, LocalBackend};
use engine::compose::project::{Bound, Progress, LABEL_SERVICE};
use engine::compose::run::{ExecOptions, RunOptions, RunOutcome};
use engine::compose::up::UpOptions;
use engine::compose::{lifecycle, LoadOptions, Project};
use engine::container::logs::LogOptions;

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose configuration files (default: compose.yaml / docker-compose.yml and its override).
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the file's `name:`, or the directory name).
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    #[arg(long)]
    pub project_directory: Option<PathBuf>,
    /// Environment files for interpolation (default: .env in the project directory).
    #[arg(long = "env-file")]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable.
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Subcommand, Debug)]
pub enum ComposeCommand {
    /// Create and start containers.
    Up(UpArgs),
    /// Stop and remove containers, networks (and with -v volumes).
    Down(DownArgs),
    /// List containers.
    Ps(PsArgs),
    /// View output from containers.
    Logs(LogsArgs),
    /// Stop services.
    Stop(StopArgs),
    /// Start services.
    Start(ServicesArgs),
    /// Restart services.
    Restart(StopArgs),
    /// Remove stopped service containers.
    Rm(RmArgs),
    /// Force stop service containers.
    Kill(KillArgs),
    /// Run a one-off command on a service.
    Run(RunArgs),
    /// Execute a command in a running container.
    Exec(ExecArgs),
    /// Parse, resolve and render the compose file in canonical format.
    Config(ConfigArgs),
    /// Pull service images.
    Pull(ServicesArgs),
    /// Push service images.
    Push(ServicesArgs),
    /// Build or rebuild services.
    Build(BuildArgs),
    /// List images used by the created containers.
    Images(ServicesArgs),
    /// Print the public port for a port binding.
    Port(PortArgs),
    /// Display the running processes.
    Top(ServicesArgs),
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub build: bool,
    #[arg(long)]
    pub no_build: bool,
    #[arg(long)]
    pub force_recreate: bool,
    #[arg(long)]
    pub no_recreate: bool,
    #[arg(long)]
    pub no_deps: bool,
    #[arg(long)]
    pub no_start: bool,
    #[arg(long)]
    pub remove_orphans: bool,
    /// SERVICE=NUM
    #[arg(long)]
    pub scale: Vec<String>,
    /// Stop all containers if any container was stopped.
    #[arg(long)]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service's container (implies --abort-on-container-exit).
    #[arg(long)]
    pub exit_code_from: Option<String>,
    /// Seconds to wait for dependencies (healthy / completed).
    #[arg(long)]
    pub wait_timeout: Option<u64>,
    #[arg(long)]
    pub no_color: bool,
    #[arg(long)]
    pub no_log_prefix: bool,
    #[arg(short, long)]
    pub timestamps: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Remove named volumes declared in the volumes section and anonymous volumes.
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove images used by services: "local" (no custom tag) or "all".
    #[arg(long)]
    pub rmi: Option<String>,
    #[arg(long)]
    pub remove_orphans: bool,
    #[arg(short, long)]
    pub timeout: Option<i64>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(short, long)]
    pub all: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub services: bool,
    /// `table` (default) or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
    pub service_names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[arg(short, long)]
    pub follow: bool,
    #[arg(short, long)]
    pub timestamps: bool,
    #[arg(long, short = 'n')]
    pub tail: Option<String>,
    #[arg(long)]
    pub no_color: bool,
    #[arg(long)]
    pub no_log_prefix: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    #[arg(short, long)]
    pub timeout: Option<i64>,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(short, long)]
    pub force: bool,
    #[arg(short, long)]
    pub stop: bool,
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub rm: bool,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(long)]
    pub no_deps: bool,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(short, long = "volume")]
    pub volumes: Vec<String>,
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    #[arg(long)]
    pub service_ports: bool,
    /// Disable pseudo-TTY allocation (default: a TTY when stdin is a terminal).
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    #[arg(short, long, default_value_t = true)]
    pub interactive: bool,
    #[arg(short, long = "label")]
    pub labels: Vec<String>,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(short, long)]
    pub detach: bool,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub services: bool,
    #[arg(long)]
    pub volumes: bool,
    #[arg(long)]
    pub networks: bool,
    /// `yaml` (default) or `json`.
    #[arg(long, default_value = "yaml")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long)]
    pub pull: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    pub private_port: u16,
}

fn load(args: &ComposeArgs) -> anyhow::Result<Project> {
    let mut options = LoadOptions::from_process();
    options.files = args.files.clone();
    options.project_name = args.project_name.clone();
    options.project_directory = args.project_directory.clone();
    options.env_files = args.env_files.clone();
    options.profiles = args.profiles.clone();
    if options.files.is_empty() {
        if let Some(files) = std::env::var_os("COMPOSE_FILE").filter(|f| !f.is_empty()) {
            let sep = std::env::var("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|_| ":".into());
            options.files = files.to_string_lossy().split(sep.as_str()).map(PathBuf::from).collect();
        }
    }
    let project = engine::compose::load(&options)?;
    for w in &project.warnings {
        eprintln!("WARN[0000] {w}");
    }
    Ok(project)
}

fn print_progress(p: Progress) {
    if p.kind == "Warning" {
        eprintln!("WARN[0000] {}", p.name);
        return;
    }
    eprintln!(" {} {}  {}", p.kind, p.name, p.action);
}

fn compose_err(e: engine::compose::project::Error) -> anyhow::Error {
    match e.exit_code() {
        125 | 1 => anyhow::Error::from(e),
        code => anyhow::Error::from(ExitError { code, message: e.to_string() }),
    }
}

/// Pulls, pushes and builds for the [`LocalBackend`]: the registry client's and the builder's progress output.
struct LocalImageTools<'c> {
    ctx: &'c Context,
}

impl ImageTools for LocalImageTools<'_> {
    fn pull(&self, images: &engine::image::ImageStore, name: &str, quiet: bool) -> Result<(), String> {
        super::registry::pull_missing(images, name, quiet).map_err(|e| format!("{e:#}"))
    }

    fn push(&self, name: &str) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the engine executable: {e}"))?;
        let status = std::process::Command::new(exe)
            .arg("--root")
            .arg(&self.ctx.root)
            .args(["push", name])
            .status()
            .map_err(|e| format!("cannot run engine push: {e}"))?;
        if !status.success() {
            return Err(format!("cannot push {name}"));
        }
        Ok(())
    }

    fn build(&self, request: &BuildRequest) -> Result<(), String> {
        build_service(self.ctx, request).map_err(|e| format!("{e:#}"))
    }
}

pub fn run(args: ComposeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let project = load(&args)?;
    if let ComposeCommand::Config(c) = &args.command {
        return config(&project, c);
    }
    let root = ctx.open_root()?;
    let tools = LocalImageTools { ctx };
    let backend = LocalBackend::open(&root, &tools).map_err(compose_err)?;
    verb(args.command, &Bound::new(&project, &backend))
}

/// `compose` in remote mode (`DRYDOCK_HOST`/`DOCKER_HOST`, or called as `docker compose` / `docker-compose`):
/// the same verbs, orchestrated here, each engine operation an API call to the server at `host`. The files are
/// loaded (and their errors reported) before anything connects.
pub fn run_api(args: ComposeArgs, host: engine::client::Host) -> anyhow::Result<ExitCode> {
    let project = load(&args)?;
    if let ComposeCommand::Config(c) = &args.command {
        return config(&project, c);
    }
    let backend = engine::compose::api::ApiBackend::new(host).map_err(compose_err)?;
    verb(args.command, &Bound::new(&project, &backend))
}

/// Runs one verb (other than `config`) on a bound project.
fn verb(command: ComposeCommand, bound: &Bound) -> anyhow::Result<ExitCode> {
    let mut progress = print_progress;
    match command {
        ComposeCommand::Up(a) => up(bound, a),
        ComposeCommand::Down(a) => {
            let images = match a.rmi.as_deref() {
                None => RemoveImages::None,
                Some("local") => RemoveImages::Local,
                Some("all") => RemoveImages::All,
                Some(other) => anyhow::bail!("invalid --rmi value {other:?}: use local or all"),
            };
            let opts = DownOptions { volumes: a.volumes, images, remove_orphans: a.remove_orphans, timeout: a.timeout };
            engine::compose::down::down(bound, &opts, &mut progress).map_err(compose_err)?;
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Ps(a) => ps(bound, a),
        ComposeCommand::Logs(a) => {
            let containers = lifecycle::select(bound, &a.services, false).map_err(compose_err)?;
            let ids: Vec<(String, String)> = containers.into_iter().map(|c| (c.id, c.name)).collect();
            let opts = LogOptions {
                follow: a.follow,
                tail: a
                    .tail
                    .as_deref()
                    .filter(|t| *t != "all")
                    .map(str::parse)
                    .transpose()
                    .context("--tail must be a number or all")?,
                timestamps: a.timestamps,
                since: None,
            };
            follow_logs(bound, &ids, &opts, !a.no_color && io::stdout().is_terminal(), !a.no_log_prefix);
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Stop(a) => {
            lifecycle::stop_services(bound, &a.services, a.timeout, &mut progress).map_err(compose_err)?;
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Start(a) => {
            lifecycle::start_services(bound, &a.services, &mut progress).map_err(compose_err)?;
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Restart(a) => {
            lifecycle::restart_services(bound, &a.services, a.timeout, &mut progress).map_err(compose_err)?;
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Rm(a) => {
            if !a.force {
                eprintln!(
                    "Going to remove the stopped containers of {}",
                    if a.services.is_empty() { "every service".to_string() } else { a.services.join(", ") }
                );
            }
            let n = lifecycle::remove_services(bound, &a.services, a.stop, a.volumes, &mut progress)
                .map_err(compose_err)?;
            if n == 0 {
                eprintln!("No stopped containers");
            }
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Kill(a) => {
            lifecycle::kill_services(bound, &a.services, &a.signal, &mut progress).map_err(compose_err)?;
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Run(a) => compose_run(bound, a),
        ComposeCommand::Exec(a) => {
            let tty = !a.no_tty && io::stdin().is_terminal() && io::stdout().is_terminal();
            let opts = ExecOptions {
                service: a.service,
                index: a.index,
                command: a.command,
                detach: a.detach,
                env: a.env,
                user: a.user,
                workdir: a.workdir,
                tty,
                interactive: !a.detach,
            };
            let code = engine::compose::run::exec(bound, &opts).map_err(compose_err)?;
            Ok(ExitCode::from((code & 0xff) as u8))
        }
        ComposeCommand::Config(_) => unreachable_config(),
        ComposeCommand::Pull(a) => {
            for service in selected_services(bound, &a.services)? {
                let Some(image) = &service.image else { continue };
                if !a.quiet {
                    eprintln!(" {} Pulling", service.name);
                }
                bound.backend.pull_image(image, a.quiet).map_err(compose_err)?;
                if !a.quiet {
                    eprintln!(" {} Pulled", service.name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Push(a) => {
            for service in selected_services(bound, &a.services)? {
                let Some(image) = &service.image else { continue };
                bound
                    .backend
                    .push_image(image)
                    .map_err(compose_err)
                    .with_context(|| format!("service {}", service.name))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Build(a) => {
            for service in selected_services(bound, &a.services)? {
                if service.build.is_none() {
                    continue;
                }
                let image = bound.image_name(service);
                let request = BuildRequest {
                    service,
                    image: &image,
                    no_cache: a.no_cache,
                    pull: a.pull,
                    quiet: a.quiet,
                    extra_args: &a.build_args,
                };
                bound.backend.build_image(&request).map_err(compose_err)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Images(a) => {
            let containers = lifecycle::select(bound, &a.services, false).map_err(compose_err)?;
            let mut rows = vec![vec![
                "CONTAINER".to_string(),
                "REPOSITORY".into(),
                "TAG".into(),
                "IMAGE ID".into(),
                "SIZE".into(),
            ]];
            for c in containers {
                let (repo, tag) = match engine::reference::Reference::parse(&c.image) {
                    Ok(r) => (r.familiar_name(), r.tag.unwrap_or_default()),
                    Err(_) => (c.image.clone(), String::new()),
                };
                let id = c.image_id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                let size = bound
                    .backend
                    .image_size(&c.image_id)
                    .map_err(compose_err)?
                    .map(engine::humanize::size)
                    .unwrap_or_default();
                if a.quiet {
                    println!("{id}");
                } else {
                    rows.push(vec![c.name, repo, tag, id, size]);
                }
            }
            if !a.quiet {
                print_table(&rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Port(a) => {
            let c = lifecycle::container_of(bound, &a.service, a.index).map_err(compose_err)?;
            let found =
                c.ports.iter().find(|p| p.container_port == a.private_port && p.protocol.to_string() == a.protocol);
            match found {
                Some(p) => {
                    println!("{}", p.host_address());
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(anyhow::anyhow!("no port {}/{} published for {}", a.private_port, a.protocol, c.name)),
            }
        }
        ComposeCommand::Top(a) => {
            let containers = lifecycle::select(bound, &a.services, false).map_err(compose_err)?;
            for c in containers {
                if !c.is_running() {
                    continue;
                }
                println!("{}", c.name);
                let (titles, rows) = bound
                    .backend
                    .top(&c.id)
                    .map_err(compose_err)
                    .with_context(|| format!("cannot list the processes of {}", c.name))?;
                let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
                super::table::print(&titles, &rows)?;
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn unreachable_config() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}

fn selected_services<'a>(
    bound: &Bound<'a>,
    names: &[String],
) -> anyhow::Result<Vec<&'a engine::compose::model::Service>> {
    if names.is_empty() {
        return Ok(bound.project.services.values().collect());
    }
    names.iter().map(|n| bound.service(n).map_err(compose_err)).collect()
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = io::stdout().lock();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| if i + 1 == row.len() { cell.clone() } else { format!("{cell:<w$}", w = widths[i]) })
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
}

/// Builds a service's image by running `engine build` (the builder prints its own classic output).
fn build_service(ctx: &Context, request: &BuildRequest) -> anyhow::Result<()> {
    let BuildRequest { service, image, no_cache, pull, quiet, extra_args } = *request;
    let Some(build) = &service.build else { return Ok(()) };
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("--root").arg(&ctx.root).arg("build").arg("-t").arg(image);
    if let Some(f) = &build.dockerfile {
        let path = if std::path::Path::new(f).is_absolute() { PathBuf::from(f) } else { build.context.join(f) };
        cmd.arg("-f").arg(path);
    }
    for (k, v) in &build.args {
        match v {
            Some(v) => cmd.arg("--build-arg").arg(format!("{k}={v}")),
            None => cmd.arg("--build-arg").arg(k),
        };
    }
    for a in extra_args {
        cmd.arg("--build-arg").arg(a);
    }
    if let Some(t) = &build.target {
        cmd.arg("--target").arg(t);
    }
    for (k, v) in &build.labels {
        cmd.arg("--label").arg(format!("{k}={v}"));
    }
    if no_cache || build.no_cache {
        cmd.arg("--no-cache");
    }
    if pull || build.pull {
        cmd.arg("--pull");
    }
    if quiet {
        cmd.arg("-q");
    }
    cmd.arg(&build.context);
    // The builder's output is progress for compose: keep compose's stdout for its own results.
    cmd.stdout(std::process::Stdio::from(io::stderr().as_fd_owned()?));
    let status = cmd.status().context("cannot run engine build")?;
    if !status.success() {
        anyhow::bail!("failed to build the image of service {:?}", service.name);
    }
    Ok(())
}

trait StderrFd {
    fn as_fd_owned(&self) -> anyhow::Result<std::os::fd::OwnedFd>;
}

impl StderrFd for io::Stderr {
    fn as_fd_owned(&self) -> anyhow::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        Ok(self.as_fd().try_clone_to_owned()?)
    }
}

fn up(bound: &Bound, a: UpArgs) -> anyhow::Result<ExitCode> {
    let mut scale = BTreeMap::new();
    for s in &a.scale {
        let (name, n) = s.split_once('=').with_context(|| format!("invalid --scale {s:?}: use SERVICE=NUM"))?;
        scale.insert(name.to_string(), n.parse().with_context(|| format!("invalid --scale {s:?}: use SERVICE=NUM"))?);
    }
    let opts = UpOptions {
        services: a.services.clone(),
        no_deps: a.no_deps,
        force_recreate: a.force_recreate,
        no_recreate: a.no_recreate,
        build: a.build,
        no_build: a.no_build,
        scale,
        remove_orphans: a.remove_orphans,
        no_start: a.no_start,
        wait_timeout: a.wait_timeout.map(std::time::Duration::from_secs),
    };
    let outcome = engine::compose::up::up(bound, &opts, &mut print_progress).map_err(compose_err)?;
    if a.detach || a.no_start {
        return Ok(ExitCode::SUCCESS);
    }
    // Attached: stream every container's output until they all exit (or one does, with --abort-on-container-exit).
    let abort = a.abort_on_container_exit || a.exit_code_from.is_some();
    let ids: Vec<(String, String)> =
        outcome.containers.iter().map(|(_, id, name)| (id.clone(), name.clone())).collect();
    let colour = !a.no_color && io::stdout().is_terminal();
    let opts = LogOptions { follow: true, tail: None, timestamps: a.timestamps, since: None };
    let done = Arc::new(Mutex::new(Vec::<String>::new()));
    std::thread::scope(|scope| {
        spawn_log_threads(scope, bound.backend, &ids, &opts, colour, !a.no_log_prefix, Some(done.clone()));
        attached_exit(bound, &a, &outcome, abort, &done)
    })
}

/// While `up`'s log threads run: with `--abort-on-container-exit`, waits for the first container to stop, stops
/// the rest and returns the exit code to report.
fn attached_exit(
    bound: &Bound,
    a: &UpArgs,
    outcome: &engine::compose::up::UpOutcome,
    abort: bool,
    done: &Mutex<Vec<String>>,
) -> anyhow::Result<ExitCode> {
    let mut exit_code = 0;
    if abort {
        // Wait for the first container to stop, then stop the rest (docker compose's behaviour).
        let first = loop {
            if let Some(id) = done.lock().ok().and_then(|d| d.first().cloned()) {
                break id;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        eprintln!("Aborting on container exit...");
        lifecycle::stop_services(bound, &[], None, &mut print_progress).map_err(compose_err)?;
        let from = match &a.exit_code_from {
            Some(service) => outcome.containers.iter().find(|(s, _, _)| s == service).map(|(_, id, _)| id.clone()),
            None => Some(first),
        };
        if let Some(id) = from {
            exit_code = bound.backend.inspect_container(&id).map(|s| s.exit_code).unwrap_or(0);
        }
    }
    Ok(ExitCode::from((exit_code & 0xff) as u8))
}

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// Writes `name  | ` before every line a container prints.
struct Prefixed {
    prefix: String,
    pending: Vec<u8>,
    sink: Arc<Mutex<()>>,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let _guard = self.sink.lock();
            let mut out = io::stdout().lock();
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&line)?;
            out.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            let _guard = self.sink.lock();
            let mut out = io::stdout().lock();
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&line)?;
        }
        Ok(())
    }
}

/// One thread per container copying its logs to stdout with a `name  | ` prefix; the scope joins them.
fn spawn_log_threads<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    backend: &'scope dyn Backend,
    ids: &[(String, String)],
    opts: &LogOptions,
    colour: bool,
    prefix: bool,
    done: Option<Arc<Mutex<Vec<String>>>>,
) {
    let width = ids.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    let sink = Arc::new(Mutex::new(()));
    for (i, (id, name)) in ids.iter().enumerate() {
        let text = if prefix { format!("{name:<width$}  | ") } else { String::new() };
        let prefix = if colour && prefix { format!("\x1b[{}m{text}\x1b[0m", COLOURS[i % COLOURS.len()]) } else { text };
        let mut out = Prefixed { prefix: prefix.clone(), pending: Vec::new(), sink: sink.clone() };
        let mut err = Prefixed { prefix, pending: Vec::new(), sink: sink.clone() };
        let id = id.clone();
        let name = name.clone();
        let opts = opts.clone();
        let done = done.clone();
        let sink = sink.clone();
        scope.spawn(move || {
            let _ = backend.logs(&id, &opts, &mut out, &mut err);
            let _ = out.flush();
            let _ = err.flush();
            if opts.follow {
                let code = backend.inspect_container(&id).map(|s| s.exit_code).unwrap_or(0);
                let _guard = sink.lock();
                println!("{name} exited with code {code}");
            }
            if let Some(done) = done {
                if let Ok(mut d) = done.lock() {
                    d.push(id);
                }
            }
        });
    }
}

fn follow_logs(bound: &Bound, ids: &[(String, String)], opts: &LogOptions, colour: bool, prefix: bool) {
    std::thread::scope(|scope| spawn_log_threads(scope, bound.backend, ids, opts, colour, prefix, None));
}

fn ps(bound: &Bound, a: PsArgs) -> anyhow::Result<ExitCode> {
    if a.services {
        for name in bound.project.services.keys() {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let containers: Vec<_> = lifecycle::select(bound, &a.service_names, true)
        .map_err(compose_err)?
        .into_iter()
        .filter(|c| a.all || c.is_running())
        .collect();
    if a.quiet {
        for c in &containers {
            println!("{}", c.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.format == "json" {
        for c in &containers {
            let v = serde_json::json!({
                "ID": c.id,
                "Name": c.name,
                "Image": c.image,
                "Command": c.command,
                "Project": bound.project.name,
                "Service": c.label(LABEL_SERVICE),
                "State": c.status.as_str(),
                "Status": c.status_text,
                "ExitCode": c.exit_code,
                "Publishers": c.ports.iter().map(|p| serde_json::json!({"URL": p.host_ip.to_string(), "TargetPort": p.container_port, "PublishedPort": p.host_port, "Protocol": p.protocol.to_string()})).collect::<Vec<_>>(),
            });
            println!("{v}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "NAME".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "SERVICE".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
    ]];
    for c in &containers {
        let mut command = c.command.clone();
        if command.chars().count() > 20 {
            command = format!("{}…", command.chars().take(19).collect::<String>());
        }
        rows.push(vec![
            c.name.clone(),
            c.image.clone(),
            format!("\"{command}\""),
            c.label(LABEL_SERVICE).unwrap_or_default().to_string(),
            engine::humanize::since(&c.created),
            c.status_text.clone(),
            engine::network::ports::ps_column(&c.ports),
        ]);
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn compose_run(bound: &Bound, a: RunArgs) -> anyhow::Result<ExitCode> {
    let tty = !a.no_tty && !a.detach && io::stdin().is_terminal() && io::stdout().is_terminal();
    let opts = RunOptions {
        service: a.service,
        command: a.command,
        remove: a.rm,
        detach: a.detach,
        env: a.env,
        entrypoint: a.entrypoint,
        no_deps: a.no_deps,
        name: a.name,
        user: a.user,
        workdir: a.workdir,
        volumes: a.volumes,
        publish: a.publish,
        service_ports: a.service_ports,
        tty,
        interactive: a.interactive && !a.detach,
        labels: a.labels,
    };
    match engine::compose::run::run(bound, &opts, &mut print_progress).map_err(compose_err)? {
        RunOutcome::Exited(code) => Ok(ExitCode::from((code & 0xff) as u8)),
        RunOutcome::Detached { name, .. } => {
            println!("{name}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config(project: &Project, a: &ConfigArgs) -> anyhow::Result<ExitCode> {
    if a.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if a.services {
        project.services.keys().for_each(|s| println!("{s}"));
        return Ok(ExitCode::SUCCESS);
    }
    if a.volumes {
        project.volumes.keys().for_each(|s| println!("{s}"));
        return Ok(ExitCode::SUCCESS);
    }
    if a.networks {
        project.networks.keys().for_each(|s| println!("{s}"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut tree = project.resolved.as_ref().map(|t| t.to_json()).unwrap_or_default();
    if let Some(map) = tree.as_object_mut() {
        map.insert("name".into(), project.name.clone().into());
    }
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&tree)?),
        "yaml" => print!("{}", serde_saphyr::to_string(&tree).context("cannot render the configuration as YAML")?),
        other => anyhow::bail!("unsupported format {other:?}: use yaml or json"),
    }
    Ok(ExitCode::SUCCESS)
}
