//! `runner exec [JOB]`: process the configuration, pick the job, run it through [`runner::exec::run_job`]
//! and print its events — a header per step, live output, a summary — as text or JSON lines. Exit code 0 when
//! the job succeeded, 1 when it failed (or could not start), 2 when the configuration or the options are
//! wrong. Ctrl-C (or SIGTERM) stops the running step; the job's containers are removed unless `--keep`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Args;
use config_schema::spec::JobKind;
use runner::exec::checkout;
use runner::exec::env::{self, BuildInfo};
use runner::exec::mask::Secrets;
use runner::exec::workflow::{Approval, WorkflowOptions};
use runner::exec::{Event, EventSink, ExecRequest, Status};

#[derive(Args)]
pub struct ExecArgs {
    /// The job to run (a key of the processed configuration's jobs); optional when there is only one.
    job: Option<String>,
    /// Run this workflow's jobs in dependency order (filtered for --branch / --tag), passing workspaces.
    #[arg(long, value_name = "WORKFLOW", conflicts_with = "job")]
    workflow: Option<String>,
    /// The configuration file.
    #[arg(short = 'c', long = "config", default_value = ".circleci/config.yml")]
    config: PathBuf,
    /// A project variable, KEY=VALUE (or KEY, from this environment); repeatable. Values are secrets: masked
    /// in all output.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A file of KEY=VALUE lines (project variables, masked like -e).
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// The branch (default: the checkout's current branch).
    #[arg(long)]
    branch: Option<String>,
    /// The commit to check out (default: HEAD).
    #[arg(long)]
    revision: Option<String>,
    /// The tag (`CIRCLE_TAG`, `<< pipeline.git.tag >>`).
    #[arg(long)]
    tag: Option<String>,
    /// One pipeline parameter, NAME=VALUE; repeatable.
    #[arg(long = "pipeline-param", value_name = "NAME=VALUE")]
    pipeline_param: Vec<String>,
    /// Directory of registry orbs available offline: DIR/NAMESPACE/NAME.yml.
    #[arg(long, env = "DRYDOCK_ORB_DIR")]
    orb_dir: Option<PathBuf>,
    /// The engine's state directory.
    #[arg(long, env = "DRYDOCK_ROOT", default_value = "/var/lib/drydock")]
    root: PathBuf,
    /// `CIRCLE_BUILD_NUM`.
    #[arg(long, default_value_t = 1)]
    build_num: u64,
    /// The runner's data directory (the cache store is DIR/caches).
    #[arg(long, env = "DRYDOCK_RUNNER_DATA", default_value = "/var/lib/drydock-runner")]
    data_dir: PathBuf,
    /// Keep the job's containers when it ends (their IDs are printed).
    #[arg(long)]
    keep: bool,
    /// A private SSH key `add_ssh_keys` may add (its fingerprints select it); repeatable. Masked in output.
    #[arg(long = "ssh-key", value_name = "FILE")]
    ssh_key: Vec<PathBuf>,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Run N copies of the job (CIRCLE_NODE_INDEX 0..N-1, CIRCLE_NODE_TOTAL N), one after another; default: the
    /// job's `parallelism`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    parallelism: Option<u32>,
    /// With --workflow: run up to N jobs (parallel nodes count one each) at the same time; their output lines
    /// are prefixed with `[job]` when N > 1.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "workflow", value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// With --workflow: approve this approval job without asking; repeatable.
    #[arg(long, value_name = "JOB", requires = "workflow")]
    approve: Vec<String>,
    /// With --workflow: approve every approval job without asking.
    #[arg(long, requires = "workflow")]
    approve_all: bool,
}

/// Set by SIGINT/SIGTERM.
static CANCEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: std::os::raw::c_int) {
    CANCEL.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(s, &action) };
    }
}

fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

pub fn run(args: ExecArgs) -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    // SAFETY: no thread has started yet (the engine's and the job's start in `run_job`, after this).
    // `runner exec` checks out local repositories only: libgit2 need not parse the CA bundle at start-up.
    unsafe { runner::exec::libgit2::init_with_lazy_tls_trust() };
    let repo = checkout::discover(&cwd);
    let branch = args.branch.clone().or_else(|| repo.as_ref().and_then(|r| r.branch.clone())).unwrap_or_default();
    let revision = args.revision.clone().or_else(|| repo.as_ref().and_then(|r| r.head.clone())).unwrap_or_default();

    let mut pipeline = config_schema::Pipeline::default();
    for kv in &args.pipeline_param {
        let Some((k, v)) = kv.split_once('=') else {
            return config_error(format!("--pipeline-param `{kv}` is not NAME=VALUE"));
        };
        let value = match v {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            _ => v.parse::<i64>().map_or_else(|_| serde_json::Value::String(v.to_owned()), Into::into),
        };
        pipeline.parameters.insert(k.to_owned(), value);
    }
    pipeline.values.insert("git.branch".into(), branch.clone());
    pipeline.values.insert("git.revision".into(), revision.clone());
    if let Some(tag) = &args.tag {
        pipeline.values.insert("git.tag".into(), tag.clone());
    }
    let options = config_schema::Options { orb_dir: args.orb_dir.clone() };
    let processed = match config_schema::process_file(&args.config, &options, &pipeline) {
        Ok(p) => p,
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            return config_error(format!("{} cannot be processed", args.config.display()));
        }
    };
    let job = match (&args.job, processed.jobs.len()) {
        _ if args.workflow.is_some() => config_schema::JobSpec::default(),
        (Some(name), _) => match processed.jobs.get(name) {
            Some(j) => j.clone(),
            None => {
                let names: Vec<&str> = processed.jobs.keys().map(String::as_str).collect();
                return config_error(format!(
                    "{} has no job `{name}`; jobs: {}",
                    args.config.display(),
                    names.join(", ")
                ));
            }
        },
        (None, 1) => processed.jobs.values().next().cloned().unwrap_or_default(),
        (None, 0) => {
            return config_error(format!(
                "{} runs no job for this pipeline (a job runs when a workflow lists it)",
                args.config.display()
            ))
        }
        (None, _) => {
            let names: Vec<&str> = processed.jobs.keys().map(String::as_str).collect();
            return config_error(format!("name the job to run: {}", names.join(", ")));
        }
    };

    let mut project_env = Vec::new();
    for f in &args.env_file {
        match env::read_env_file(f) {
            Ok(vars) => project_env.extend(vars),
            Err(e) => return config_error(e),
        }
    }
    for e in &args.env {
        match env::parse_assignment(e) {
            Ok(kv) => project_env.push(kv),
            Err(e) => return config_error(e),
        }
    }
    let mut ssh_keys = Vec::new();
    for f in &args.ssh_key {
        match runner::exec::ssh::SshKey::read(f) {
            Ok(k) => ssh_keys.push(k),
            Err(e) => return config_error(e),
        }
    }
    let secrets =
        Secrets::new(project_env.iter().map(|(_, v)| v.as_str()).chain(ssh_keys.iter().map(|k| k.private.as_str())));
    let origin = repo.as_ref().and_then(|r| r.origin_url.clone()).unwrap_or_default();
    let (username, reponame) = project_names(&origin, repo.as_ref().map(|r| r.dir.clone()).unwrap_or(cwd));
    let ids = ids();
    let request_for = |job: &config_schema::JobSpec, n: usize| ExecRequest {
        job: job.clone(),
        engine_root: args.root.clone(),
        repo: repo.clone().map(checkout::Source::Local),
        info: BuildInfo {
            job: job.name.clone(),
            branch: branch.clone(),
            tag: args.tag.clone(),
            revision: revision.clone(),
            build_num: args.build_num + n as u64,
            repository_url: origin.clone(),
            project_username: username.clone(),
            project_reponame: reponame.clone(),
            workflow_id: ids.0.clone(),
            pipeline_id: ids.1.clone(),
            working_directory: job.working_directory.clone(),
            node_index: 0,
            node_total: args.parallelism.unwrap_or(job.parallelism).max(1),
        },
        project_env: project_env.clone(),
        secrets: secrets.clone(),
        keep: args.keep,
        data_dir: args.data_dir.clone(),
        remote: None,
        ssh_keys: ssh_keys.clone(),
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let sink: Arc<dyn EventSink> = Arc::new(Printer::new(args.json, Arc::clone(&out), None));
    if let Some(name) = &args.workflow {
        let trigger = match &args.tag {
            Some(tag) => config_schema::Trigger::Tag(tag.clone()),
            None => config_schema::Trigger::Branch(branch.clone()),
        };
        let plan = match config_schema::plan(&processed, &trigger) {
            Ok(p) => p,
            Err(e) => return config_error(format!("{}: {e}", args.config.display())),
        };
        let Some(workflow) = plan.workflows.iter().find(|w| &w.name == name) else {
            let known: Vec<&str> = processed.workflows.keys().map(String::as_str).collect();
            return config_error(if processed.workflows.contains_key(name) {
                format!("workflow `{name}` does not run for this branch or tag (its filters or triggers exclude it)")
            } else {
                format!("{} has no workflow `{name}`; workflows: {}", args.config.display(), known.join(", "))
            });
        };
        let approvals: Vec<&str> =
            workflow.jobs.iter().filter(|j| j.kind == JobKind::Approval).map(|j| j.name.as_str()).collect();
        if let Some(unknown) = args.approve.iter().find(|a| !approvals.contains(&a.as_str())) {
            return config_error(format!(
                "--approve {unknown}: workflow `{name}` has no approval job of that name; its approval jobs: {}",
                if approvals.is_empty() { "none".to_owned() } else { approvals.join(", ") }
            ));
        }
        let approve = |job: &str| approve(job, &args);
        // Overlapping jobs: each line says whose it is. JSON events always carry the job.
        let tag = args.json || args.jobs > 1;
        let sink_for = |job: &str, node: Option<u32>| -> Arc<dyn EventSink> {
            if tag {
                Arc::new(Printer::new(args.json, Arc::clone(&out), Some((job.to_owned(), node))))
            } else {
                Arc::clone(&sink)
            }
        };
        let options = WorkflowOptions { jobs: args.jobs as usize, approve: &approve, sink_for: &sink_for };
        install_signal_handlers();
        let status = runner::exec::workflow::run_workflow(workflow, &processed, &request_for, &sink, &options, &CANCEL);
        if !args.json {
            println!("Workflow {name}: {}", status_word(status));
        }
        return if status == Status::Success { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    install_signal_handlers();
    let base = request_for(&job, 0);
    let nodes = base.info.node_total;
    let mut all_succeeded = true;
    // Parallel nodes run one after another locally: their output stays readable, and a laptop is not a
    // fleet. Each is a full run of the job with its own containers and CIRCLE_NODE_INDEX.
    for node in 0..nodes {
        if CANCEL.load(Ordering::Relaxed) {
            all_succeeded = false;
            break;
        }
        let mut req = request_for(&job, 0);
        req.info.node_index = node;
        if nodes > 1 && !args.json {
            println!("Node {node} of {nodes} (CIRCLE_NODE_INDEX={node})");
        }
        match runner::exec::run_job(&req, &sink, &CANCEL) {
            Ok(outcome) => {
                if !outcome.kept.is_empty() && !args.json {
                    println!("Kept containers: {}", outcome.kept.join(" "));
                }
                all_succeeded &= outcome.status == Status::Success;
            }
            Err(e) => {
                eprintln!("error: {}", req.secrets.mask_str(&e.to_string()));
                all_succeeded = false;
            }
        }
    }
    if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `CIRCLE_PROJECT_USERNAME` and `_REPONAME` from the origin URL (`…[:/]owner/name(.git)`), else the
/// directory's name and no user.
fn project_names(origin: &str, dir: PathBuf) -> (String, String) {
    let trimmed = origin.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = trimmed.rsplit(['/', ':']);
    match (parts.next(), parts.next()) {
        (Some(name), Some(owner)) if !name.is_empty() && !owner.is_empty() => (owner.to_owned(), name.to_owned()),
        _ => (String::new(), dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
    }
}

/// A workflow and a pipeline ID for this local run, UUID-shaped (SHA-256 of the time and the process ID).
fn ids() -> (String, String) {
    use sha2::Digest;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let uuid = |what: &str| {
        let h = hex::encode(sha2::Sha256::digest(format!("{what}-{seed}-{}", std::process::id())));
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    };
    (uuid("workflow"), uuid("pipeline"))
}

/// An approval job's answer: `--approve-all` or `--approve JOB`, else a question on the terminal, else (no
/// terminal) declined with what to pass.
fn approve(job: &str, args: &ExecArgs) -> Approval {
    use std::io::{BufRead, IsTerminal};
    if args.approve_all || args.approve.iter().any(|a| a == job) {
        return Approval::Approved;
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Approval::Declined(format!(
            "approval job, not approved: pass --approve {job} or --approve-all (no terminal to ask on)"
        ));
    }
    eprint!("Approve job `{job}`? [y/N] ");
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Approval::Approved,
        _ => Approval::Declined("approval job, declined on the terminal".into()),
    }
}

/// Prints events: text for people, JSON lines for programs. With a job tag (workflow jobs that overlap), text
/// lines start with `[job] ` — `[job#node] ` for a node of a job with parallelism — (output is cut into whole
/// lines for that) and JSON events get `job` (and `node`) fields.
struct Printer {
    json: bool,
    out: Arc<Mutex<std::io::Stdout>>,
    job: Option<(String, Option<u32>)>,
    /// Output after the last newline, held until its line is complete (tagged text only).
    partial: Mutex<String>,
}

impl Printer {
    fn new(json: bool, out: Arc<Mutex<std::io::Stdout>>, job: Option<(String, Option<u32>)>) -> Printer {
        Printer { json, out, job, partial: Mutex::new(String::new()) }
    }

    /// Tagged text: `[job] ` before each whole line of `text`; the rest waits (or is flushed with `flush`).
    fn tagged_lines(&self, job: &str, text: &str, flush: bool) -> String {
        let Ok(mut partial) = self.partial.lock() else { return String::new() };
        partial.push_str(text);
        let cut = if flush { partial.len() } else { partial.rfind('\n').map_or(0, |i| i + 1) };
        let whole: String = partial.drain(..cut).collect();
        let mut shown = String::new();
        for line in whole.split_inclusive('\n') {
            shown.push_str(&format!("[{job}] {line}"));
        }
        if flush && !shown.is_empty() && !shown.ends_with('\n') {
            shown.push('\n');
        }
        shown
    }
}

impl EventSink for Printer {
    fn event(&self, event: &Event) {
        if let (false, Some((job, node))) = (self.json, &self.job) {
            let tag = match node {
                Some(n) => format!("{job}#{n}"),
                None => job.clone(),
            };
            let job = &tag;
            let text = match event {
                Event::Output { text, .. } => self.tagged_lines(job, text, false),
                other => {
                    let mut line = self.tagged_lines(job, "", true);
                    line.push_str(&self.tagged_lines(job, &render(other), true));
                    line
                }
            };
            if let Ok(mut out) = self.out.lock() {
                let _ = write!(out, "{text}");
                let _ = out.flush();
            }
            return;
        }
        let Ok(mut out) = self.out.lock() else { return };
        if self.json {
            let mut value = serde_json::to_value(event).unwrap_or_default();
            if let (Some((job, node)), Some(map)) = (&self.job, value.as_object_mut()) {
                map.entry("job").or_insert_with(|| serde_json::Value::String(job.clone()));
                if let Some(n) = node {
                    map.insert("node".into(), (*n).into());
                }
            }
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
            return;
        }
        let _ = write!(out, "{}", render(event));
        let _ = out.flush();
    }
}

/// An event as the text output shows it (lines end with a newline; output as it came).
fn render(event: &Event) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = match event {
        Event::JobStarted { job } => writeln!(out, "Job {job}"),
        Event::Pulling { image } => writeln!(out, "Pulling {image}"),
        Event::ContainersStarted { .. } => Ok(()),
        Event::StepStarted { step, name } => writeln!(out, "==> [{step}] {name}"),
        Event::Output { text, .. } => write!(out, "{text}"),
        Event::StepError { message, .. } => writeln!(out, "error: {message}"),
        Event::StepFinished { step, name, status, exit_code, duration_ms } => match status {
            Status::Skipped if *duration_ms == 0 => writeln!(out, "--- [{step}] {name}: skipped"),
            _ => {
                let code = exit_code.filter(|c| *c != 0).map(|c| format!(" (exit {c})")).unwrap_or_default();
                writeln!(out, "<== [{step}] {name}: {}{code} in {}", status_word(*status), seconds(*duration_ms))
            }
        },
        Event::JobError { job, message } => writeln!(out, "error: job {job}: {message}"),
        Event::JobNotRun { job, reason } => writeln!(out, "Job {job}: not run ({reason})"),
        Event::TestResults { .. } => Ok(()),
        Event::Approved { job } => writeln!(out, "Job {job}: approval job, approved by this local run"),
        Event::JobFinished { job, status, steps, failed, skipped, duration_ms } => writeln!(
            out,
            "Job {job}: {} — {steps} steps, {failed} failed, {skipped} skipped, in {}",
            status_word(*status),
            seconds(*duration_ms)
        ),
    };
    out
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Success => "success",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Background => "running in the background",
        Status::Canceled => "canceled",
        Status::TimedOut => "timed out",
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}
