//! The `coordinator` binary: parses the command line, calls the library and prints. `serve` runs the server;
//! the other verbs work on the same database (`--database-url`, else the SQLite file in `--data-dir`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::local_runner::LocalRunnerOptions;
use coordinator::pipeline::{self, TriggerRequest};
use coordinator::repo::FetchTimeouts;
use coordinator::secrets::SecretKey;
use coordinator::server::{self, secret_key_path, ServeOptions};
use coordinator::store::runners::TokenKind;
use coordinator::store::{sqlite_url, Store};

/// Drydock's coordinator: webhooks, pipelines, the job queue and the runner API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Where the SQLite database, artifacts, workspaces and repository mirrors live.
    #[arg(long, global = true, env = "DRYDOCK_DATA_DIR", default_value = "/var/lib/drydock/coordinator")]
    data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; default: `coordinator.db` (SQLite) in the data directory.
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Longest wait for a connection to a project's git server when fetching its mirror.
    #[arg(long, global = true, env = "DRYDOCK_GIT_CONNECT_TIMEOUT_SECS", default_value_t = FetchTimeouts::DEFAULT.connect.as_secs())]
    git_connect_timeout_secs: u64,
    /// Longest wait for a project's git server to send the next bytes of a fetch (not the whole fetch).
    #[arg(long, global = true, env = "DRYDOCK_GIT_READ_TIMEOUT_SECS", default_value_t = FetchTimeouts::DEFAULT.read.as_secs())]
    git_read_timeout_secs: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (migrating the database first).
    Serve {
        /// Address to listen on (port 0: any free port, printed on start).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A runner's lease lasts this long without a heartbeat.
        #[arg(long, default_value_t = 60)]
        lease_ttl_secs: u64,
        /// Largest artifact file a runner may upload.
        #[arg(long, default_value_t = 100)]
        max_artifact_mb: u64,
        /// GitHub token (a personal access token) for commit statuses and for fetching private repositories over
        /// https (mirrors, and the runners' checkouts); none: no statuses, public repositories only.
        #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
        github_token: Option<String>,
        /// GitHub App to authenticate as instead of a token (with --github-app-key and
        /// --github-app-installation-id): commit statuses and private repositories through the installation's
        /// short-lived tokens.
        #[arg(long, conflicts_with = "github_token", requires_all = ["github_app_key", "github_app_installation_id"])]
        github_app_id: Option<u64>,
        /// The GitHub App's private key file (PEM), as GitHub hands it out.
        #[arg(long, requires = "github_app_id")]
        github_app_key: Option<PathBuf>,
        /// The installation of the GitHub App (on the account that owns the repositories).
        #[arg(long, requires = "github_app_id")]
        github_app_installation_id: Option<u64>,
        /// GitHub API base URL (GitHub Enterprise: `https://HOST/api/v3`).
        #[arg(long, default_value = "https://api.github.com")]
        github_api_url: String,
        /// The URL commit statuses link to (default: the listen address).
        #[arg(long)]
        public_url: Option<String>,
        /// Also run a local `runner agent` (the `runner` binary next to this one or on PATH), stopped with the
        /// coordinator: the embedded default of `script/server`.
        #[arg(long)]
        with_runner: bool,
        /// The local runner's data directory (default: `runner` in the data directory).
        #[arg(long, requires = "with_runner")]
        runner_data_dir: Option<PathBuf>,
        /// The engine state directory the local runner uses (default: the runner's, `DRYDOCK_ROOT`).
        #[arg(long, requires = "with_runner")]
        engine_root: Option<PathBuf>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Re-encrypt every secret under a new key; the old key is kept as `secret.key.old-<id>`. Stop every
    /// coordinator first; an interrupted rotation is finished by running this again.
    RotateKey,
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage project schedules (pipelines started by cron, UTC).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Manage dashboard users.
    #[command(subcommand)]
    User(UserCommand),
    /// Create a pipeline for a project's branch, tag or commit (fetches the repository first).
    Trigger {
        project: String,
        #[arg(long, conflicts_with = "tag")]
        branch: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// The commit (default: the tip of the branch or tag; the default branch when neither is given).
        #[arg(long)]
        sha: Option<String>,
        /// What triggered it: `api` (a person), or `local` (a local repository's post-receive hook).
        #[arg(long, default_value = "api", value_parser = ["api", "local"])]
        source: String,
        /// GitHub token for fetching a private repository over https (as `serve --github-token`).
        #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
        github_token: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Add a project: a GitHub repository (`owner/repo --clone-url URL`) or a local one (`NAME --local PATH`).
    Add {
        /// `owner/repo` (GitHub) or a name (local).
        name: String,
        #[arg(long, conflicts_with = "local")]
        clone_url: Option<String>,
        /// A local repository path instead of GitHub.
        #[arg(long)]
        local: Option<PathBuf>,
        #[arg(long, default_value = "main")]
        default_branch: String,
        /// Give forked pull requests the project's secrets.
        #[arg(long)]
        fork_secrets: bool,
        /// The secret of the GitHub webhook (stored encrypted); webhooks are refused without one.
        #[arg(long, env = "DRYDOCK_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: Option<String>,
        /// With --local: do not install the `post-receive` hook that triggers a pipeline on every push.
        #[arg(long, requires = "local")]
        no_hook: bool,
    },
    /// List projects.
    List,
    /// Change a project's options.
    Set {
        name: String,
        /// Cancel a branch's older unfinished pipelines when a new one starts (never on the default branch).
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        auto_cancel: Option<bool>,
        /// Run at most N of the project's jobs at once (`none`: no limit); the others stay queued.
        #[arg(long, value_name = "N|none", value_parser = parse_limit)]
        max_concurrent_jobs: Option<JobLimit>,
    },
    /// Remove a project and everything stored for it.
    Remove { name: String },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Start a pipeline of PROJECT's BRANCH whenever CRON fires (5 fields, UTC).
    Add {
        project: String,
        /// `minute hour day-of-month month day-of-week`, e.g. `0 3 * * *` for 03:00 UTC daily.
        #[arg(long)]
        cron: String,
        #[arg(long)]
        branch: String,
        /// Run only this workflow of the configuration.
        #[arg(long)]
        workflow: Option<String>,
        /// The schedule's name (default: derived from the cron, branch and workflow).
        #[arg(long)]
        name: Option<String>,
    },
    /// List schedules (of one project, or all).
    List { project: Option<String> },
    /// Remove a schedule.
    Remove { project: String, name: String },
}

fn parse_role(s: &str) -> Result<web::model::Role, String> {
    s.parse().map_err(|e: web::model::UnknownRole| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("`{other}` is neither on nor off")),
    }
}

/// `--max-concurrent-jobs`: a number above 0, or no limit. (A newtype: clap reads `Option<Option<_>>` as a flag
/// with an optional value.)
#[derive(Debug, Clone, Copy)]
struct JobLimit(Option<i64>);

fn parse_limit(s: &str) -> Result<JobLimit, String> {
    if s == "none" {
        return Ok(JobLimit(None));
    }
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(JobLimit(Some(n))),
        _ => Err(format!("`{s}` is not a number of jobs above 0 (or `none`)")),
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user who can sign in to the dashboard. Without --password-stdin a password is generated and
    /// printed once.
    Add {
        name: String,
        /// `admin` changes things (approve, cancel, rerun, settings); `viewer` (the default) only looks.
        #[arg(long, value_name = "admin|viewer", value_parser = parse_role, conflicts_with = "admin")]
        role: Option<web::model::Role>,
        /// The same as `--role admin`.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (shown once).
    Create {
        /// A runner registration token (the default).
        #[arg(long, conflicts_with = "admin")]
        runner: bool,
        /// An admin token for the REST API.
        #[arg(long)]
        admin: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: in a journal, a file or a pipe they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let timeouts = FetchTimeouts {
        connect: Duration::from_secs(cli.git_connect_timeout_secs),
        read: Duration::from_secs(cli.git_read_timeout_secs),
    };
    // SAFETY: no other thread exists yet (the async runtime is started below), so none uses git2.
    if let Err(e) = unsafe { coordinator::repo::set_fetch_timeouts(timeouts) } {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("cannot create the data directory {}", cli.data_dir.display()))?;
    Ok(Store::open(&database_url(cli)).await?)
}

fn secret_key(cli: &Cli) -> anyhow::Result<SecretKey> {
    Ok(SecretKey::load_or_create(&secret_key_path(&cli.data_dir))?)
}

fn database_url(cli: &Cli) -> String {
    cli.database_url.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| sqlite_url(&cli.data_dir))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve {
            listen,
            lease_ttl_secs,
            max_artifact_mb,
            github_token,
            github_app_id,
            github_app_key,
            github_app_installation_id,
            github_api_url,
            public_url,
            with_runner,
            runner_data_dir,
            engine_root,
        } => {
            let with_runner = with_runner.then(|| LocalRunnerOptions {
                data_dir: runner_data_dir.clone().unwrap_or_else(|| cli.data_dir.join("runner")),
                engine_root: engine_root.clone(),
            });
            let options = ServeOptions {
                listen: *listen,
                data_dir: cli.data_dir.clone(),
                database_url: database_url(&cli),
                lease_ttl_ms: (*lease_ttl_secs as i64).saturating_mul(1000),
                max_artifact_bytes: max_artifact_mb.saturating_mul(1024 * 1024),
                github: github_token.clone().filter(|t| !t.is_empty()).map(|t| (github_api_url.clone(), t)),
                github_app: match (github_app_id, github_app_key, github_app_installation_id) {
                    (Some(app_id), Some(key), Some(installation_id)) => Some((
                        github_api_url.clone(),
                        coordinator::server::GitHubApp {
                            app_id: *app_id,
                            private_key: key.clone(),
                            installation_id: *installation_id,
                        },
                    )),
                    _ => None,
                },
                public_url: public_url.clone(),
                with_runner,
            };
            server::serve(options).await?;
        }
        Command::Migrate => {
            open_store(&cli).await?;
            println!("database is up to date");
        }
        Command::RotateKey => {
            let store = open_store(&cli).await?;
            let path = secret_key_path(&cli.data_dir);
            let done = coordinator::key_rotation::rotate_key(&store, &path)
                .await
                .with_context(|| format!("cannot rotate {}", path.display()))?;
            println!(
                "re-encrypted {} secrets: key {} → {}; the old key is kept in {}",
                done.values,
                done.old_key_id,
                done.new_key_id,
                done.backup.display()
            );
        }
        Command::Project(cmd) => project(&cli, cmd).await?,
        Command::Trigger { project, branch, tag, sha, source, github_token } => {
            let store = open_store(&cli).await?;
            let project = store.project_by_slug(project).await?;
            let req = TriggerRequest {
                source: source.clone(),
                branch: branch.clone(),
                tag: tag.clone(),
                sha: sha.clone(),
                ..Default::default()
            };
            let access = github_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| coordinator::github::access::GitAccess::Token(t.into()));
            let created = pipeline::create_with_access(&store, &cli.data_dir, access.as_ref(), &project, &req).await?;
            let row = store.pipeline(created.pipeline_id).await?;
            println!("pipeline {} #{}: {} ({} jobs queued)", project.slug, row.number, row.state, created.queued_jobs);
            if let Some(error) = row.error {
                println!("{error}");
            }
        }
        Command::User(UserCommand::Add { name, role, admin, password_stdin }) => {
            let role = if *admin { web::model::Role::Admin } else { role.unwrap_or(web::model::Role::Viewer) };
            let store = open_store(&cli).await?;
            let (password, generated) = if *password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (generate_password(), true)
            };
            let hash = web::hash_password(&password).context("the password was refused")?;
            store.add_user(name, &hash, role == web::model::Role::Admin).await?;
            if generated {
                println!("added {role} {name} with password {password}");
                println!("(shown once: store it now)");
            } else {
                println!("added {role} {name}");
            }
        }
        Command::Schedule(cmd) => schedule(&cli, cmd).await?,
        Command::Token(TokenCommand::Create { admin, .. }) => {
            let store = open_store(&cli).await?;
            let kind = if *admin { TokenKind::Admin } else { TokenKind::RunnerRegistration };
            println!("{}", store.create_token(kind).await?);
        }
    }
    Ok(())
}

/// A random password of 24 letters and digits (about 143 bits).
fn generate_password() -> String {
    use rand::Rng;
    rand::rngs::OsRng.sample_iter(&rand::distributions::Alphanumeric).take(24).map(char::from).collect()
}

async fn project(cli: &Cli, cmd: &ProjectCommand) -> anyhow::Result<()> {
    let store = open_store(cli).await?;
    match cmd {
        ProjectCommand::Add { name, clone_url, local, default_branch, fork_secrets, webhook_secret, no_hook } => {
            let mut new = coordinator::projects::new_project(
                name,
                clone_url.as_deref(),
                local.as_deref(),
                default_branch,
                *fork_secrets,
            )?;
            if let Some(secret) = webhook_secret.as_deref().filter(|s| !s.is_empty()) {
                new.webhook_secret_enc = Some(secret_key(cli)?.encrypt(secret));
            }
            // The hooks directory is checked before the project is stored: a foreign hook refuses the add whole.
            let hook = match (&new.local_path, no_hook) {
                (Some(path), false) => {
                    let command = coordinator::local_hook::HookCommand {
                        coordinator: std::env::current_exe().context("cannot find this coordinator binary")?,
                        data_dir: std::fs::canonicalize(&cli.data_dir)
                            .with_context(|| format!("cannot resolve the data directory {}", cli.data_dir.display()))?,
                        database_url: cli.database_url.clone().filter(|u| !u.is_empty()),
                        project: name.clone(),
                    };
                    coordinator::local_hook::check_post_receive(std::path::Path::new(path), &command)?;
                    Some((path.clone(), command))
                }
                _ => None,
            };
            let p = store.add_project(&new).await?;
            println!("added project {} (id {})", p.slug, p.id);
            if let Some((path, command)) = hook {
                let hook = coordinator::local_hook::install_post_receive(std::path::Path::new(&path), &command)?;
                println!("installed {}: a push there triggers a pipeline", hook.display());
            }
        }
        ProjectCommand::List => {
            for p in store.list_projects().await? {
                println!("{}\t{}", p.slug, p.local_path.as_deref().unwrap_or(&p.clone_url));
            }
        }
        ProjectCommand::Set { name, auto_cancel, max_concurrent_jobs } => {
            let p = store.set_project_options(name, *auto_cancel, max_concurrent_jobs.map(|l| l.0)).await?;
            let limit = p.max_concurrent_jobs.map_or("none".to_string(), |n| n.to_string());
            let auto = if p.auto_cancel_redundant { "on" } else { "off" };
            println!("project {}: auto-cancel {auto}, max concurrent jobs {limit}", p.slug);
        }
        ProjectCommand::Remove { name } => {
            store.remove_project(name).await?;
            println!("removed project {name}");
        }
    }
    Ok(())
}

async fn schedule(cli: &Cli, cmd: &ScheduleCommand) -> anyhow::Result<()> {
    let store = open_store(cli).await?;
    match cmd {
        ScheduleCommand::Add { project, cron, branch, workflow, name } => {
            let project = store.project_by_slug(project).await?;
            let now = coordinator::store::now_ms();
            let (name, next) =
                coordinator::scheduler::new_schedule(cron, branch, workflow.as_deref(), name.as_deref(), now)?;
            let s = store.add_schedule(project.id, &name, cron, branch, workflow.as_deref(), next).await?;
            println!("added schedule `{}` to {}: next at {}", s.name, project.slug, utc(s.next_tick_at));
        }
        ScheduleCommand::List { project } => {
            let only = match project {
                Some(slug) => Some(store.project_by_slug(slug).await?.id),
                None => None,
            };
            let projects = store.list_projects().await?;
            for s in store.schedules(only).await? {
                let slug = projects.iter().find(|p| p.id == s.project_id).map_or("?", |p| p.slug.as_str());
                let workflow = s.workflow.as_deref().unwrap_or("*");
                println!("{slug}\t{}\t{}\t{}\t{workflow}\tnext {}", s.name, s.cron, s.branch, utc(s.next_tick_at));
            }
        }
        ScheduleCommand::Remove { project, name } => {
            let p = store.project_by_slug(project).await?;
            store.remove_schedule(p.id, name).await?;
            println!("removed schedule `{name}` of {}", p.slug);
        }
    }
    Ok(())
}

/// Unix milliseconds as an RFC 3339 UTC time (`never` for the far future).
fn utc(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .filter(|_| ms < i64::MAX)
        .map_or_else(|| "never".to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
