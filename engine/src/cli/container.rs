//! Container verbs of the CLI: `run`, `create`, `start`, `stop`, `kill`, `restart`, `rm`, `ps`, `logs`, `wait`,
//! `exec`, `top`, `diff`, `cp`, `commit`, `export`, `rename`, `port`, and the `container …` group (the same verbs plus
//! `ls`, `inspect`, `prune`). Each verb parses its flags, calls one function of `engine::container`, and prints.
//! The hidden `container-monitor` verb is the monitor process itself (see `engine::container::monitor`).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use engine::container::{self as ctr, ContainerStore};
use engine::digest::Digest;
use engine::humanize;
use engine::image::ImageStore;
use engine::network::ports;

use super::{table, Context, ExitError};

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create and start a container from an image.
    Run(Box<RunArgs>),
    /// Create a container without starting it.
    Create(Box<CreateArgs>),
    /// Start stopped containers.
    Start(StartArgs),
    /// Stop running containers (STOPSIGNAL, then SIGKILL after the grace period).
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Suspend every process of containers (cgroup freezer).
    Pause(NamesArgs),
    /// Resume paused containers.
    Unpause(NamesArgs),
    /// Stop and start containers again.
    Restart(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// List containers.
    Ps(PsArgs),
    /// Show the output of a container.
    Logs(LogsArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(NamesArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show the processes of a running container.
    Top(OneArgs),
    /// Show the files a container added (A), changed (C) or deleted (D).
    Diff(OneArgs),
    /// Copy files between a container and the host (`CONTAINER:PATH`, `-` for a tar on stdin/stdout).
    Cp(CpArgs),
    /// Create an image from a container's changes.
    Commit(CommitArgs),
    /// Write a container's filesystem as a tar archive.
    Export(ExportArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// List a container's published ports, or the host address of one of them.
    Port(PortArgs),
    /// The per-container monitor process (internal).
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor(MonitorArgs),
}

#[derive(Subcommand, Debug)]
pub enum ContainerGroupCommand {
    #[command(flatten)]
    Verb(ContainerCommand),
    /// List containers.
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Display detailed information on one or more containers.
    Inspect(ContainerInspectArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to pass this shell's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP], names or numeric ids.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the image's ENTRYPOINT (also drops its CMD).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Mount a volume or host path: [NAME|/HOST-PATH:]CONTAINER-PATH[:ro|rw,nocopy,…].
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=…,target=…[,readonly,…].
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs: CONTAINER-PATH[:size=…,mode=…,…].
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Mount the volumes of another container: CONTAINER[:ro|rw].
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Network: bridge (the default), host, none, a network made with `network create`, or container:NAME|ID
    /// (share that running container's network namespace, as the images of a CircleCI docker job do).
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// More names for the container on its (user-defined) network.
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address on the (user-defined) network.
    #[arg(long)]
    pub ip: Option<String>,
    /// Publish a container port: [IP:][HOST-PORT:]CONTAINER-PORT[/udp] (no host port: a random one).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes to a random host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Container host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Add a line to /etc/hosts: NAME:IP (IP may be `host-gateway`, the host as seen from the container).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Name server for the container's resolv.conf (replaces the host's).
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// resolv.conf option (e.g. ndots:2).
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Expose a port or a range of ports (for -P) without publishing it.
    #[arg(long)]
    pub expose: Vec<String>,
    /// Memory limit (e.g. 32m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Restart policy: no, on-failure[:max-retries], always, unless-stopped.
    #[arg(long)]
    pub restart: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run a tiny init as PID 1 that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Set metadata labels (KEY=VALUE).
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Security options (seccomp=unconfined).
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Signal to stop the container (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait before killing the container on stop.
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health (through /bin/sh -c).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (e.g. 30s, 200ms; default 30s).
    #[arg(long, value_parser = health_duration)]
    pub health_interval: Option<std::time::Duration>,
    /// Maximum time to allow one check to run (default 30s).
    #[arg(long, value_parser = health_duration)]
    pub health_timeout: Option<std::time::Duration>,
    /// Start period for the container to initialize before failed checks count (default 0s).
    #[arg(long, value_parser = health_duration)]
    pub health_start_period: Option<std::time::Duration>,
    /// Time between running the check during the start period (default 5s).
    #[arg(long, value_parser = health_duration)]
    pub health_start_interval: Option<std::time::Duration>,
    /// Consecutive failures needed to report unhealthy (default 3).
    #[arg(long)]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// IMAGE [COMMAND [ARG...]]
    #[arg(required = true, trailing_var_arg = true, value_name = "IMAGE [COMMAND]")]
    pub image_and_command: Vec<String>,
}

impl CreateArgs {
    fn options(&self) -> ctr::create::CreateOptions {
        ctr::create::CreateOptions {
            image: self.image_and_command[0].clone(),
            cmd: self.image_and_command[1..].to_vec(),
            name: self.name.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            entrypoint: self.entrypoint.clone(),
            binds: self.volume.clone(),
            mounts: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            volumes_from: self.volumes_from.clone(),
            network: self.network.clone(),
            network_aliases: self.network_alias.clone(),
            ip: self.ip.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            hostname: self.hostname.clone(),
            add_hosts: self.add_host.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            expose: self.expose.clone(),
            memory: self.memory.clone(),
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            restart: self.restart.clone(),
            auto_remove: self.rm,
            init: self.init,
            tty: self.tty,
            open_stdin: self.interactive,
            labels: self.label.clone(),
            security_opt: self.security_opt.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            healthcheck: ctr::health::HealthFlags {
                cmd: self.health_cmd.clone(),
                interval: self.health_interval,
                timeout: self.health_timeout,
                start_period: self.health_start_period,
                start_interval: self.health_start_interval,
                retries: self.health_retries,
            }
            .to_override(),
            no_healthcheck: self.no_healthcheck,
        }
    }
}

/// A `--health-*` duration in Go's syntax (`30s`, `200ms`, `1m30s`).
fn health_duration(s: &str) -> Result<std::time::Duration, String> {
    ctr::health::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the output and wait for the exit code.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<i64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short, long)]
    pub force: bool,
    /// Remove the container's anonymous volumes too.
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only show IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the latest created container.
    #[arg(short, long)]
    pub latest: bool,
    /// Show the N latest created containers.
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter (id, name, status, label, ancestor, exited), e.g. status=exited.
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format with a template (`{{.ID}}`, `{{.Names}}`, `{{.Status}}` …).
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines from the end ("all" for everything).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only logs since this time (RFC 3339, Unix seconds or a duration like 10m).
    #[arg(long)]
    pub since: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct OneArgs {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP].
    #[arg(short, long)]
    pub user: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, value_name = "CONTAINER COMMAND")]
    pub container_and_command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar on stdin).
    pub source: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar on stdout).
    pub dest: String,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author.
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENV, …).
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Pause the container while committing (docker's default).
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTOCOL]
    pub port: Option<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    pub id: String,
    #[arg(long)]
    pub status_fd: Option<i32>,
    #[arg(long)]
    pub attach: bool,
}

#[derive(Args, Debug)]
pub struct ContainerInspectArgs {
    /// Format the output with a template.
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// A library result in the CLI: errors with a docker exit code of their own (126, 127) keep it.
fn lib<T>(r: ctr::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| match e.exit_code() {
        ctr::EXIT_ENGINE => anyhow::Error::from(e),
        code => anyhow::Error::from(ExitError { code, message: e.to_string() }),
    })
}

struct Opened {
    store: ContainerStore,
    images: ImageStore,
}

fn open(ctx: &Context) -> anyhow::Result<Opened> {
    let root = ctx.open_root()?;
    Ok(Opened { store: ContainerStore::open(&root), images: ImageStore::open(&root)? })
}

/// `run` and `create` pull an image they cannot find, as docker does.
fn pull_if_missing(images: &ImageStore, name: &str) -> anyhow::Result<()> {
    match images.resolve(name) {
        Err(engine::image::Error::NotFound(_)) => super::registry::pull_missing(images, name, false),
        _ => Ok(()),
    }
}

/// A container's exit code as this process's (docker passes the low 8 bits through).
fn exit(code: i32) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}

pub fn run(cmd: ContainerCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCommand::Run(args) => run_container(*args, ctx),
        ContainerCommand::Create(args) => {
            let o = open(ctx)?;
            let options = args.options();
            pull_if_missing(&o.images, &options.image)?;
            let c = lib(ctr::create::create(&o.store, &o.images, &options))?;
            println!("{}", c.id);
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Start(args) => start(args, ctx),
        ContainerCommand::Stop(args) => {
            each(ctx, &args.containers, |s, id| lib(ctr::stop::stop(s, id, args.time)).map(|_| ()))
        }
        ContainerCommand::Restart(args) => {
            each(ctx, &args.containers, |s, id| lib(ctr::restart::restart(s, id, args.time)))
        }
        ContainerCommand::Pause(args) => each(ctx, &args.containers, |s, id| lib(ctr::pause::pause(s, id))),
        ContainerCommand::Unpause(args) => each(ctx, &args.containers, |s, id| lib(ctr::pause::unpause(s, id))),
        ContainerCommand::Kill(args) => {
            let signal = lib(ctr::kill::parse_signal(&args.signal))?;
            each(ctx, &args.containers, |s, id| lib(ctr::kill::kill(s, id, signal)))
        }
        ContainerCommand::Rm(args) => {
            each(ctx, &args.containers, |s, id| lib(ctr::remove::remove(s, id, args.force, args.volumes)))
        }
        ContainerCommand::Port(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            let state = lib(o.store.state(&c.id))?;
            let lines = ports::port_lines(&state.ports, args.port.as_deref(), &c.name)?;
            let mut out = io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Ps(args) => ps(args, ctx),
        ContainerCommand::Logs(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            let tail = match args.tail.as_str() {
                "all" | "" => None,
                n => Some(n.parse::<usize>().with_context(|| format!("invalid --tail `{n}`: use a number or all"))?),
            };
            let opts =
                ctr::logs::LogOptions { follow: args.follow, tail, timestamps: args.timestamps, since: args.since };
            lib(ctr::logs::logs(&o.store, &c.id, &opts, &mut io::stdout().lock(), &mut io::stderr().lock()))?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Wait(args) => {
            let o = open(ctx)?;
            for name in &args.containers {
                let c = lib(o.store.resolve(name))?;
                println!("{}", lib(ctr::wait::wait(&o.store, &c.id))?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Exec(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container_and_command[0]))?;
            let opts = ctr::exec::ExecOptions {
                cmd: args.container_and_command[1..].to_vec(),
                env: args.env,
                workdir: args.workdir,
                user: args.user,
                tty: args.tty,
                interactive: args.interactive,
                detach: args.detach,
            };
            Ok(exit(lib(ctr::exec::exec(&o.store, &c.id, &opts))?))
        }
        ContainerCommand::Top(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            let rows = lib(ctr::top::top(&o.store, &c.id))?;
            table::print(&ctr::top::HEADER, &rows)?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Diff(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            let mut out = io::stdout().lock();
            for change in lib(ctr::diff::diff(&o.store, &c.id))? {
                writeln!(out, "{} {}", change.kind, change.path)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Cp(args) => cp(args, ctx),
        ContainerCommand::Commit(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            let opts = ctr::commit::CommitOptions {
                message: args.message,
                author: args.author,
                changes: args.change,
                reference: args.repository,
                pause: args.pause,
            };
            let image = lib(ctr::commit::commit(&o.store, &o.images, &c.id, &opts))?;
            println!("{}", image.id);
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Export(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            match &args.output {
                Some(path) => {
                    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
                    lib(ctr::export::export(&o.store, &c.id, io::BufWriter::new(file)))?;
                }
                None => {
                    if io::stdout().is_terminal() {
                        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
                    }
                    lib(ctr::export::export(&o.store, &c.id, io::BufWriter::new(io::stdout().lock())))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Rename(args) => {
            let o = open(ctx)?;
            let c = lib(o.store.resolve(&args.container))?;
            lib(ctr::rename::rename(&o.store, &c.id, &args.new_name))?;
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::ContainerMonitor(args) => {
            let root = ctx.open_root()?;
            Ok(exit(ctr::monitor::run(&root, &args.id, args.status_fd, args.attach)))
        }
    }
}

pub fn run_group(cmd: ContainerGroupCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerGroupCommand::Verb(v) => run(v, ctx),
        ContainerGroupCommand::Ls(args) => ps(args, ctx),
        ContainerGroupCommand::Inspect(args) => {
            let mut values = Vec::new();
            let mut missing = None;
            for name in &args.containers {
                match inspect_value(ctx, name)? {
                    Some(v) => values.push(v),
                    None => missing = missing.or(Some(name.clone())),
                }
            }
            super::print_inspect(&values, args.format.as_deref())?;
            if let Some(name) = missing {
                anyhow::bail!("No such container: {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerGroupCommand::Prune(_) => {
            let o = open(ctx)?;
            let (ids, bytes) = lib(ctr::prune::prune(&o.store))?;
            let mut out = io::stdout().lock();
            if !ids.is_empty() {
                writeln!(out, "Deleted Containers:")?;
                for id in &ids {
                    writeln!(out, "{id}")?;
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", humanize::size(bytes))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Applies `f` to each named container, printing the name as docker does; the first error is returned after
/// all were tried.
fn each(
    ctx: &Context,
    names: &[String],
    f: impl Fn(&ContainerStore, &str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let o = open(ctx)?;
    let mut first_err = None;
    for name in names {
        let r = lib(o.store.resolve(name)).and_then(|c| f(&o.store, &c.id));
        match r {
            Ok(()) => println!("{name}"),
            Err(e) => {
                if first_err.is_some() {
                    eprintln!("Error: {e:#}");
                } else {
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn run_container(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let o = open(ctx)?;
    let options = args.create.options();
    pull_if_missing(&o.images, &options.image)?;
    // The container starts right after it is created: let the kernel's cgroup grace period pass meanwhile.
    ctr::prestart::warm_ahead(WARM_AHEAD);
    let c = lib(ctr::create::create(&o.store, &o.images, &options))?;
    if args.detach {
        let started = ctr::start::start(&o.store, &c.id);
        ctr::prestart::stop_warming();
        lib(started)?;
        println!("{}", c.id);
        return Ok(ExitCode::SUCCESS);
    }
    Ok(exit(lib(ctr::start::start_attached(&o.store, &c.id))?))
}

/// How long `run` and `start` keep the cgroup migration lock warm ahead of the monitor (see
/// `container::prestart`): a start takes a few tens of milliseconds (the monitor keeps its own warmer until
/// the container is placed), and an attached CLI waits for its container with the thread still going, so short.
const WARM_AHEAD: std::time::Duration = std::time::Duration::from_millis(500);

fn start(args: StartArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    ctr::prestart::warm_ahead(WARM_AHEAD);
    if args.attach || args.interactive {
        let o = open(ctx)?;
        let [name] = args.containers.as_slice() else {
            anyhow::bail!("you cannot start and attach multiple containers at once");
        };
        let c = lib(o.store.resolve(name))?;
        return Ok(exit(lib(ctr::start::start_attached(&o.store, &c.id))?));
    }
    each(ctx, &args.containers, |s, id| lib(ctr::start::start(s, id)).map(|_| ()))
}

fn ps(args: PsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let o = open(ctx)?;
    let filters = lib(ctr::list::Filters::parse(&args.filter))?;
    let last = if args.latest { Some(1) } else { args.last };
    let rows = lib(ctr::list::list(&o.store, Some(&o.images), args.all, &filters, last))?;
    let mut out = io::stdout().lock();
    let short = |id: &str| if args.no_trunc { id.to_owned() } else { id[..12.min(id.len())].to_owned() };
    if args.quiet {
        for (c, _) in &rows {
            writeln!(out, "{}", short(&c.id))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let docs: Vec<(Vec<String>, serde_json::Value)> = rows
        .iter()
        .map(|(c, s)| {
            let mut command = std::iter::once(c.path.clone()).chain(c.args.iter().cloned()).collect::<Vec<_>>().join(" ");
            if !args.no_trunc && command.chars().count() > 20 {
                command = format!("{}…", command.chars().take(19).collect::<String>());
            }
            let status = ctr::list::status_text(s);
            let created = humanize::since(&c.created);
            let port_column = ports::ps_column(&s.ports);
            let cells = vec![short(&c.id), c.config.image.clone(), format!("\"{command}\""), created.clone(), status.clone(), port_column.clone(), c.name.clone()];
            let doc = serde_json::json!({"ID": short(&c.id), "Image": c.config.image, "Command": format!("\"{command}\""),
                "CreatedAt": c.created, "RunningFor": created, "Status": status, "State": s.state_str(), "Names": c.name, "Ports": port_column});
            (cells, doc)
        })
        .collect();
    if let Some(f) = &args.format {
        for (_, doc) in &docs {
            writeln!(out, "{}", table::render_template(f, doc))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    let cells: Vec<Vec<String>> = docs.into_iter().map(|(c, _)| c).collect();
    table::print(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &cells)?;
    Ok(ExitCode::SUCCESS)
}

/// Splits `CONTAINER:PATH`; `None` for a host path (absolute or relative paths with `/` before any `:`).
fn split_container_path(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':')
}

fn cp(args: CpArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let o = open(ctx)?;
    match (split_container_path(&args.source), split_container_path(&args.dest)) {
        (Some((name, path)), None) => {
            let c = lib(o.store.resolve(name))?;
            if args.dest == "-" {
                lib(ctr::cp::archive(&o.store, &c.id, path, io::stdout().lock()))?;
            } else {
                let staging = tempfile::NamedTempFile::new()?;
                lib(ctr::cp::archive(&o.store, &c.id, path, io::BufWriter::new(staging.reopen()?)))?;
                lib(ctr::cp::host_extract(io::BufReader::new(staging.reopen()?), std::path::Path::new(&args.dest)))?;
            }
        }
        (None, Some((name, path))) => {
            let c = lib(o.store.resolve(name))?;
            if args.source == "-" {
                lib(ctr::cp::extract(&o.store, &c.id, path, io::stdin().lock()))?;
            } else {
                let src = PathBuf::from(&args.source);
                let base = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| ".".into());
                // Into an existing directory under the source's name; else as the destination path itself.
                let (dir, name_in_dir) = match lib(ctr::cp::stat(&o.store, &c.id, path))? {
                    Some(ctr::cp::PathKind::Dir) => (path.to_owned(), base),
                    _ if path.ends_with('/') => {
                        return Err(lib::<()>(Err(ctr::Error::NoSuchPath {
                            container: name.to_owned(),
                            path: path.to_owned(),
                        }))
                        .unwrap_err());
                    }
                    _ => {
                        let p = std::path::Path::new(path);
                        let parent = p
                            .parent()
                            .map(|x| x.display().to_string())
                            .filter(|x| !x.is_empty())
                            .unwrap_or_else(|| "/".into());
                        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(base);
                        (parent, name)
                    }
                };
                let mut tar = Vec::new();
                lib(ctr::cp::host_archive(&src, &name_in_dir, &mut tar))?;
                lib(ctr::cp::extract(&o.store, &c.id, &dir, &tar[..]))?;
            }
        }
        _ => anyhow::bail!(
            "copying between containers or between host paths is not supported: one side must be CONTAINER:PATH"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The inspect JSON of container `name`, if one has that name or ID.
pub fn inspect_value(ctx: &Context, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let root = ctx.open_root()?;
    let store = ContainerStore::open(&root);
    let c = match store.resolve(name) {
        Ok(c) => c,
        Err(ctr::Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let state = lib(store.state(&c.id))?;
    Ok(Some(ctr::inspect::inspect_json(&store, &c, &state)))
}

/// (image ID, container ID) for every container, for `rmi` and `image prune`.
pub fn image_users(ctx: &Context) -> anyhow::Result<Vec<(Digest, String)>> {
    let root = ctx.open_root()?;
    let store = ContainerStore::open(&root);
    let mut users = Vec::new();
    for id in lib(store.ids())? {
        if let Ok(c) = store.load(&id) {
            if let Ok(d) = c.image_id.parse::<Digest>() {
                users.push((d, id));
            }
        }
    }
    Ok(users)
}
