//! Registry and archive verbs: `pull`, `push`, `login`, `logout`, `save`, `load`. Each parses its flags, calls
//! one library function (`engine::registry`, `engine::archive`) and prints docker's lines.
//!
//! Progress goes to stdout as docker prints it. On a terminal the `Downloading` line of a layer is redrawn in
//! place with a carriage return (throttled to 10 updates a second); elsewhere each state is one line, printed
//! once, so logs and CI output stay readable.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use engine::archive;
use engine::humanize;
use engine::image::ImageStore;
use engine::reference::Reference;
use engine::registry::auth::Credentials;
use engine::registry::credentials::CredentialStore;
use engine::registry::manifest::Platform;
use engine::registry::{self, login, PullEvent, PullOptions, PushEvent, RegistryOptions};

use super::Context;

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Log in to a registry (credentials are saved in docker's config.json).
    Login(LoginArgs),
    /// Log out from a registry.
    Logout(LogoutArgs),
    /// Save images to a tar archive (docker archive + OCI layout), to stdout by default.
    Save(SaveArgs),
    /// Load images from a tar archive (docker archive or OCI layout, plain or gzip), from stdin by default.
    Load(LoadArgs),
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to pick from a multi-platform image (os/arch[/variant]).
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Registry (host[:port]) that may be reached over plain HTTP or unverified TLS (repeatable; also
    /// DRYDOCK_INSECURE_REGISTRIES, comma-separated).
    #[arg(long = "insecure-registry")]
    pub insecure_registry: Vec<String>,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Registry that may be reached over plain HTTP or unverified TLS (repeatable).
    #[arg(long = "insecure-registry")]
    pub insecure_registry: Vec<String>,
    /// NAME[:TAG]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: command lines are visible to other users).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// Registry that may be reached over plain HTTP or unverified TLS (repeatable).
    #[arg(long = "insecure-registry")]
    pub insecure_registry: Vec<String>,
    /// The registry (default: Docker Hub).
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub).
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from this file instead of standard input.
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(cmd: RegistryCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        RegistryCommand::Pull(a) => pull(a, ctx),
        RegistryCommand::Push(a) => push(a, ctx),
        RegistryCommand::Login(a) => login_cmd(a),
        RegistryCommand::Logout(a) => logout_cmd(a),
        RegistryCommand::Save(a) => save(a, ctx),
        RegistryCommand::Load(a) => load(a, ctx),
    }
}

fn store(ctx: &Context) -> anyhow::Result<ImageStore> {
    Ok(ImageStore::open(&ctx.open_root()?)?)
}

/// Prints docker-style per-layer status lines; on a terminal, `Downloading` is redrawn in place.
struct StatusPrinter {
    tty: bool,
    /// Write to stderr (pulls done on the way to something else: `run`, `build`, `compose up`).
    stderr: bool,
    quiet: bool,
    last_draw: Option<Instant>,
    /// The layer whose `Downloading` line is open (no newline yet) on a terminal.
    open: Option<String>,
    announced: Vec<String>,
}

impl StatusPrinter {
    fn new(quiet: bool) -> StatusPrinter {
        StatusPrinter {
            tty: io::stdout().is_terminal(),
            stderr: false,
            quiet,
            last_draw: None,
            open: None,
            announced: Vec::new(),
        }
    }

    fn to_stderr(quiet: bool) -> StatusPrinter {
        StatusPrinter { tty: io::stderr().is_terminal(), stderr: true, ..StatusPrinter::new(quiet) }
    }

    fn out(&self) -> Box<dyn Write> {
        if self.stderr {
            Box::new(io::stderr().lock())
        } else {
            Box::new(io::stdout().lock())
        }
    }

    fn line(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        let mut out = self.out();
        if self.open.take().is_some() {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{text}");
    }

    fn downloading(&mut self, id: &str, current: u64, total: u64) {
        if self.quiet {
            return;
        }
        if !self.tty {
            if !self.announced.iter().any(|a| a == id) {
                self.announced.push(id.to_owned());
                self.line(&format!("{id}: Downloading"));
            }
            return;
        }
        let now = Instant::now();
        if self.open.as_deref() == Some(id) && self.last_draw.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        self.last_draw = Some(now);
        let mut out = self.out();
        if self.open.as_deref().is_some_and(|o| o != id) {
            let _ = writeln!(out);
        }
        let _ = write!(out, "\r{id}: Downloading {}/{}", humanize::size(current), humanize::size(total));
        let _ = out.flush();
        self.open = Some(id.to_owned());
    }
}

fn pull(a: PullArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let platform: Platform = a.platform.parse()?;
    let mut printer = StatusPrinter::new(a.quiet);
    let reference = pull_with(&store, &a.name, platform, &a.insecure_registry, &mut printer)?;
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

/// Pulls `name` for a command that needs the image (`run`, `create`, `build`, `compose up`): docker's
/// "Unable to find image … locally" and the pull progress on stderr, so the command's own output stays clean.
pub fn pull_missing(store: &ImageStore, name: &str, quiet: bool) -> anyhow::Result<()> {
    let reference = Reference::parse(name)?;
    let mut printer = StatusPrinter::to_stderr(quiet);
    printer.line(&format!("Unable to find image '{}' locally", reference.familiar()));
    pull_with(store, name, Platform::default(), &[], &mut printer)?;
    Ok(())
}

/// Pulls a base image for `build` (also with `--pull`): progress on stderr, nothing with `-q`.
pub fn pull_for_build(store: &ImageStore, name: &str, quiet: bool) -> anyhow::Result<()> {
    let mut printer = StatusPrinter::to_stderr(quiet);
    pull_with(store, name, Platform::default(), &[], &mut printer)?;
    Ok(())
}

fn pull_with(
    store: &ImageStore,
    name: &str,
    platform: Platform,
    insecure: &[String],
    printer: &mut StatusPrinter,
) -> anyhow::Result<Reference> {
    let reference = Reference::parse(name)?;
    let options = PullOptions {
        platform,
        registry: RegistryOptions::from_flags_and_env(insecure),
        credentials: CredentialStore::default_location(),
    };
    let bare = Reference::parse_bare(name)?;
    if bare.tag.is_none() && bare.digest.is_none() {
        printer.line("Using default tag: latest");
    }
    let outcome = registry::pull(store, &reference, &options, &mut |event| match event {
        PullEvent::Resolved { reference, repository } => {
            printer.line(&format!("{reference}: Pulling from {repository}"))
        }
        PullEvent::Waiting { id } => printer.line(&format!("{id}: Pulling fs layer")),
        PullEvent::Exists { id } => printer.line(&format!("{id}: Already exists")),
        PullEvent::Downloading { id, current, total } => printer.downloading(&id, current, total),
        PullEvent::Retrying { id, attempt, reason } => {
            printer.line(&format!("{id}: Retrying (attempt {attempt}): {reason}"))
        }
        PullEvent::Downloaded { id } => {
            printer.line(&format!("{id}: Verifying Checksum"));
            printer.line(&format!("{id}: Download complete"));
        }
        PullEvent::Extracting { id } => printer.line(&format!("{id}: Extracting")),
        PullEvent::Complete { id } => printer.line(&format!("{id}: Pull complete")),
    })
    .with_context(|| format!("cannot pull {}", reference.familiar()))?;
    printer.line(&format!("Digest: {}", outcome.digest));
    if outcome.up_to_date {
        printer.line(&format!("Status: Image is up to date for {}", reference.familiar()));
    } else {
        printer.line(&format!("Status: Downloaded newer image for {}", reference.familiar()));
    }
    Ok(reference)
}

fn push(a: PushArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let reference = Reference::parse(&a.name)?;
    let options = RegistryOptions::from_flags_and_env(&a.insecure_registry);
    let mut printer = StatusPrinter::new(a.quiet);
    let outcome =
        registry::push(&store, &reference, &options, &CredentialStore::default_location(), &mut |event| match event {
            PushEvent::Repository { name } => printer.line(&format!("The push refers to repository [{name}]")),
            PushEvent::Preparing { id } => printer.line(&format!("{id}: Preparing")),
            PushEvent::Pushing { id, .. } => printer.line(&format!("{id}: Pushing")),
            PushEvent::Pushed { id } => printer.line(&format!("{id}: Pushed")),
            PushEvent::Exists { id } => printer.line(&format!("{id}: Layer already exists")),
            PushEvent::Mounted { id, from } => printer.line(&format!("{id}: Mounted from {from}")),
        })
        .with_context(|| format!("cannot push {}", reference.familiar()))?;
    if a.quiet {
        println!("{}", reference.familiar());
    } else {
        println!("{}: digest: {} size: {}", outcome.tag, outcome.digest, outcome.size);
    }
    Ok(ExitCode::SUCCESS)
}

fn login_cmd(a: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = login::normalise_registry(a.server.as_deref());
    let options = RegistryOptions::from_flags_and_env(&a.insecure_registry);
    let stdin = io::stdin();
    let username = match a.username {
        Some(u) => u,
        None if stdin.is_terminal() && !a.password_stdin => prompt("Username: ")?,
        None => anyhow::bail!("a user name is required: use -u USER"),
    };
    let password = if a.password_stdin {
        let mut p = String::new();
        stdin.lock().read_to_string(&mut p).context("cannot read the password from standard input")?;
        p.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if stdin.is_terminal() {
        prompt_hidden("Password: ")?
    } else {
        anyhow::bail!("a password is required: use --password-stdin (or -p)")
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty: give one with --password-stdin or -p");
    }
    let store = CredentialStore::default_location();
    login::login(&registry, Credentials { username, password }, &options, &store)
        .with_context(|| format!("cannot log in to {registry}"))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

fn logout_cmd(a: LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = login::normalise_registry(a.server.as_deref());
    match login::logout(&registry, &CredentialStore::default_location()) {
        Ok(()) => println!("Removing login credentials for {registry}"),
        // As docker: logging out twice is not an error.
        Err(registry::Error::NotLoggedIn(r)) => println!("Not logged in to {r}"),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn prompt(label: &str) -> anyhow::Result<String> {
    print!("{label}");
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Reads a line from the terminal without echoing it.
pub(super) fn prompt_hidden(label: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &silent).context("cannot turn off terminal echo")?;
    let line = prompt(label);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    println!();
    line
}

fn save(a: SaveArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    match &a.output {
        Some(path) => {
            // Written next to the target and renamed, so a failed save never leaves half an archive.
            let path = Path::new(path);
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut staged = tempfile::Builder::new()
                .prefix(".engine-save-")
                .tempfile_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            archive::save(&store, &a.images, &mut staged)?;
            staged.as_file().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
            staged.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            archive::save(&store, &a.images, stdout.lock())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(a: LoadArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = store(ctx)?;
    let loaded = match &a.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
            archive::load(&store, io::BufReader::with_capacity(256 * 1024, file))
        }
        None => {
            if io::stdin().is_terminal() {
                anyhow::bail!("requested load from stdin, but stdin is empty: use -i FILE or a pipe");
            }
            archive::load(&store, io::stdin().lock())
        }
    }?;
    let mut out = io::stdout().lock();
    for line in archive::describe(&loaded) {
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}
