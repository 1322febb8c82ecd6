//! The step loop of one job. "Spin up environment" (step 0) pulls what is missing and starts the containers;
//! then each step runs when its `when` matches the job's state so far (`on_success` while nothing failed,
//! `on_fail` once something did, `always`; `store_test_results` and `store_artifacts` always run). `run` steps are exec'd into the primary container with the
//! environment of [`super::env`] and their output streamed through the [`Masker`]; background steps stream
//! from their own thread and are stopped when the job ends; caches go through [`super::cache`], workspaces and
//! artifacts through [`super::files`], test results through [`super::junit`], `add_ssh_keys` through
//! [`super::ssh`], `setup_remote_docker` through [`super::remote_docker`] (which sets `DOCKER_HOST` for the
//! steps after it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config_schema::spec::{RunSpec, SpecStep, StepWhen};
use config_schema::JobSpec;
use engine::container::exec::{exec_captured, exec_streamed, ExecOptions, StreamedExit};
use engine::container::ContainerStore;
use engine::image::ImageStore;
use engine::root::Root;

use super::cache::{render_key, CacheStore, KeyContext};
use super::checkout::{self, Source};
use super::containers;
use super::env::{self, BuildInfo};
use super::files;
use super::mask::{Masker, Secrets};
use super::remote_docker::{self, RemoteDocker};
use super::{Event, EventSink, ExecError, Status};

/// The no-output timeout when a step sets none (CircleCI's).
pub const DEFAULT_NO_OUTPUT_TIMEOUT: Duration = Duration::from_secs(600);

/// The shell when neither the step nor the job names one and the image has no `/bin/bash`.
pub const FALLBACK_SHELL: &str = "/bin/sh -eo pipefail";

/// Everything needed to run one job.
pub struct ExecRequest {
    pub job: JobSpec,
    /// The engine's state directory.
    pub engine_root: PathBuf,
    /// Where `checkout` takes the commit from; `None` for `runner exec` outside a git repository.
    pub repo: Option<checkout::Source>,
    pub info: BuildInfo,
    /// `-e` and `--env-file` variables, in order.
    pub project_env: Vec<(String, String)>,
    pub secrets: Secrets,
    /// Leave the containers after the job (for debugging).
    pub keep: bool,
    /// The runner's own data (the cache store).
    pub data_dir: PathBuf,
    /// For `runner agent`: workspaces and artifacts go to the coordinator instead of staying in `data_dir`.
    pub remote: Option<files::Remote>,
    /// Keys `add_ssh_keys` may add (`runner exec --ssh-key FILE`).
    pub ssh_keys: Vec<super::ssh::SshKey>,
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub status: Status,
    /// The containers left behind with `keep` (primary first).
    pub kept: Vec<String>,
}

/// Runs `req.job`, reporting to `sink`; `cancel` (set by Ctrl-C) stops the running step and ends the job.
/// Containers are removed before this returns (unless `req.keep`), whatever happened.
pub fn run_job(req: &ExecRequest, sink: &Arc<dyn EventSink>, cancel: &AtomicBool) -> Result<JobOutcome, ExecError> {
    let started = Instant::now();
    sink.event(&Event::JobStarted { job: req.job.name.clone() });
    let mut counts = Counts::default();
    let result = run_steps(req, sink, cancel, &mut counts);
    let status = match &result {
        Ok(s) => *s,
        Err(_) => Status::Failed,
    };
    sink.event(&Event::JobFinished {
        job: req.job.name.clone(),
        status,
        steps: counts.steps,
        failed: counts.failed,
        skipped: counts.skipped,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    result.map(|status| JobOutcome { status, kept: counts.kept })
}

#[derive(Default)]
struct Counts {
    steps: usize,
    failed: usize,
    skipped: usize,
    kept: Vec<String>,
}

/// What every step needs.
struct Ctx<'a> {
    req: &'a ExecRequest,
    store: &'a ContainerStore,
    primary: String,
    home: String,
    /// The job's working directory, `~` expanded.
    working_dir: String,
    default_shell: String,
    /// Built-ins, project and job variables merged.
    job_env: Vec<(String, String)>,
    sink: &'a Arc<dyn EventSink>,
    cancel: &'a AtomicBool,
}

fn run_steps(
    req: &ExecRequest,
    sink: &Arc<dyn EventSink>,
    cancel: &AtomicBool,
    counts: &mut Counts,
) -> Result<Status, ExecError> {
    if req.job.docker.is_empty() {
        return Err(ExecError::UnsupportedExecutor { job: req.job.name.clone() });
    }
    let root = Root::open(&req.engine_root)?;
    let store = ContainerStore::open(&root);
    let images = ImageStore::open(&root)?;

    // Step 0: the environment.
    let spin_up = Instant::now();
    let spin_name = "Spin up environment".to_owned();
    sink.event(&Event::StepStarted { step: 0, name: spin_name.clone() });
    let output = |text: String| sink.event(&Event::Output { step: 0, text });
    let env_ready = (|| {
        let vars = env::merge([&req.project_env[..], &env::layer(&req.job.environment)[..]]);
        for image in &req.job.docker {
            containers::ensure_image(&images, image, &vars, &mut |image| {
                sink.event(&Event::Pulling { image: image.to_owned() });
            })?;
        }
        // The remote docker's socket directory and client are mounted at creation: prepared before the step.
        let remote = if req.job.steps.iter().any(|s| matches!(s, SpecStep::SetupRemoteDocker { .. })) {
            Some(RemoteDocker::prepare(&req.data_dir, &req.engine_root, req.keep)?)
        } else {
            None
        };
        let binds = remote.as_ref().map(RemoteDocker::binds).unwrap_or_default();
        let c = containers::start(&store, &images, &req.job.name, &req.job.docker, binds, req.keep)?;
        sink.event(&Event::ContainersStarted { ids: c.ids.clone() });
        Ok::<_, ExecError>((c, remote))
    })();
    let (job_containers, mut remote) = match env_ready {
        Ok(c) => c,
        Err(e) => {
            sink.event(&Event::StepError { step: 0, message: req.secrets.mask_str(&e.to_string()) });
            finish(sink, 0, &spin_name, Status::Failed, None, spin_up);
            counts.steps += 1;
            counts.failed += 1;
            return Err(e);
        }
    };
    let primary = job_containers.primary().to_owned();
    let builtins = env::builtins(&req.info);
    let job_vars = env::layer(&req.job.environment);
    let job_env = env::merge([&builtins[..], &req.project_env[..], &job_vars[..]]);
    let env_strings: Vec<String> = job_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let captured = |cmd: &[&str], user: Option<&str>| {
        let opts = ExecOptions {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: env_strings.clone(),
            user: user.map(str::to_owned),
            ..ExecOptions::default()
        };
        exec_captured(&store, &primary, &opts, Duration::from_secs(60), 64 * 1024)
    };
    let home = match captured(&["/bin/sh", "-c", "printf %s \"$HOME\""], None) {
        Ok(c) if c.exit_code == Some(0) && !c.output.is_empty() => String::from_utf8_lossy(&c.output).into_owned(),
        _ => "/root".to_owned(),
    };
    let working_dir = expand_home(&req.job.working_directory, &home, "/");
    let default_shell = match engine::container::cp::stat(&store, &primary, "/bin/bash") {
        Ok(Some(_)) => config_schema::spec::DEFAULT_SHELL.to_owned(),
        _ => FALLBACK_SHELL.to_owned(),
    };
    let mkdir = captured(&["mkdir", "-p", &working_dir], None)?;
    if mkdir.exit_code != Some(0) {
        output(format!(
            "cannot create the working directory {working_dir}: {}\n",
            String::from_utf8_lossy(&mkdir.output).trim_end()
        ));
    }
    let timings = super::shim::load_timings(&req.data_dir, &req.job.name);
    if let Err(e) = super::shim::install(&store, &primary, timings.as_deref()) {
        output(format!("warning: cannot install the in-job `runner` command (runner step halt, runner tests): {e}\n"));
    }
    output(format!(
        "primary container {} ({}), {} service container(s); working directory {working_dir}\n",
        &primary[..primary.len().min(12)],
        req.job.docker[0].image,
        req.job.docker.len() - 1
    ));
    finish(sink, 0, &spin_name, Status::Success, None, spin_up);
    counts.steps += 1;

    let mut ctx = Ctx { req, store: &store, primary, home, working_dir, default_shell, job_env, sink, cancel };
    let stop_background = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    let mut failed = false;
    let mut canceled = false;
    // `runner step halt` ran: the job ends successfully, later steps are skipped.
    let mut halted = false;
    for (i, step) in req.job.steps.iter().enumerate() {
        let index = i + 1;
        counts.steps += 1;
        let name = step_name(step);
        let when = match step {
            SpecStep::Run(r) => r.when,
            SpecStep::SaveCache { when, .. } => *when,
            // As on CircleCI: test results and artifacts are what a failed job is read by, so they are
            // uploaded whatever happened before (the steps take no `when`).
            SpecStep::StoreTestResults { .. } | SpecStep::StoreArtifacts { .. } => StepWhen::Always,
            _ => StepWhen::OnSuccess,
        };
        let runs = !canceled
            && !halted
            && match when {
                StepWhen::Always => true,
                StepWhen::OnSuccess => !failed,
                StepWhen::OnFail => failed,
            };
        if !runs {
            counts.skipped += 1;
            sink.event(&Event::StepFinished {
                step: index,
                name,
                status: Status::Skipped,
                exit_code: None,
                duration_ms: 0,
            });
            continue;
        }
        let t = Instant::now();
        sink.event(&Event::StepStarted { step: index, name: name.clone() });
        let (status, code) = match step {
            SpecStep::Run(r) if r.background => match start_background(&ctx, index, r, &stop_background) {
                Ok(handle) => {
                    background.push(handle);
                    (Status::Background, None)
                }
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::Run(r) => run_step(&ctx, index, r).unwrap_or_else(|e| step_error(&ctx, index, &e)),
            SpecStep::Checkout { path, .. } => match checkout_step(&ctx, index, path.as_deref()) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::SaveCache { key, paths, .. } => match save_cache(&ctx, index, key, paths) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::RestoreCache { keys, .. } => match restore_cache(&ctx, index, keys) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::PersistToWorkspace { root, paths } => match persist(&ctx, index, root, paths) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::AttachWorkspace { at } => match attach(&ctx, index, at) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::StoreArtifacts { path, destination } => {
                match store_artifacts(&ctx, index, path, destination.as_deref()) {
                    Ok(()) => (Status::Success, None),
                    Err(e) => step_error(&ctx, index, &e),
                }
            }
            SpecStep::AddSshKeys { fingerprints } => match add_ssh_keys(&ctx, index, fingerprints) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::StoreTestResults { path } => match store_test_results(&ctx, index, path) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
            SpecStep::SetupRemoteDocker { .. } => match setup_remote_docker(&ctx, index, remote.as_mut()) {
                Ok(()) => (Status::Success, None),
                Err(e) => step_error(&ctx, index, &e),
            },
        };
        if status == Status::Success && matches!(step, SpecStep::SetupRemoteDocker { .. }) {
            // As CircleCI: set by the step, over any value the project or the job had.
            ctx.job_env.retain(|(k, _)| k != "DOCKER_HOST");
            ctx.job_env.push(("DOCKER_HOST".into(), remote_docker::DOCKER_HOST.into()));
        }
        match status {
            Status::Failed | Status::TimedOut => {
                failed = true;
                counts.failed += 1;
            }
            Status::Canceled => canceled = true,
            Status::Skipped => counts.skipped += 1,
            _ => {}
        }
        if matches!(step, SpecStep::Run(r) if !r.background) && super::shim::halted(&store, &ctx.primary) {
            halted = true;
        }
        finish(sink, index, &name, status, code, t);
        if cancel.load(Ordering::Relaxed) {
            canceled = true;
        }
    }
    stop_background.store(true, Ordering::Relaxed);
    for handle in background {
        let _ = handle.join();
    }
    if req.keep {
        counts.kept = job_containers.ids.clone();
    }
    // The job's server first (nothing new is created in its scope), then its objects, then the job's own.
    drop(remote);
    drop(job_containers);
    Ok(if canceled {
        Status::Canceled
    } else if failed {
        Status::Failed
    } else {
        Status::Success
    })
}

fn finish(sink: &Arc<dyn EventSink>, step: usize, name: &str, status: Status, exit_code: Option<i32>, t: Instant) {
    sink.event(&Event::StepFinished {
        step,
        name: name.to_owned(),
        status,
        exit_code,
        duration_ms: t.elapsed().as_millis() as u64,
    });
}

fn step_error(ctx: &Ctx, step: usize, e: &ExecError) -> (Status, Option<i32>) {
    ctx.sink.event(&Event::StepError { step, message: ctx.req.secrets.mask_str(&e.to_string()) });
    (Status::Failed, None)
}

/// `~` and `~/x` are under `home`; a relative path is under `base`.
pub(crate) fn expand_home(path: &str, home: &str, base: &str) -> String {
    let joined = |dir: &str, rest: &str| {
        if rest.is_empty() {
            dir.to_owned()
        } else {
            format!("{}/{}", dir.trim_end_matches('/'), rest)
        }
    };
    if path == "~" {
        home.to_owned()
    } else if path == "." || path.is_empty() {
        base.to_owned()
    } else if let Some(rest) = path.strip_prefix("~/") {
        joined(home, rest)
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        joined(base, path.trim_start_matches("./"))
    }
}

/// The name CircleCI shows for a step.
fn step_name(step: &SpecStep) -> String {
    match step {
        SpecStep::Run(r) => match &r.name {
            Some(n) => n.clone(),
            None => r.command.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned(),
        },
        SpecStep::Checkout { .. } => "Checkout code".into(),
        SpecStep::SaveCache { name, .. } => name.clone().unwrap_or_else(|| "Saving cache".into()),
        SpecStep::RestoreCache { name, .. } => name.clone().unwrap_or_else(|| "Restoring cache".into()),
        SpecStep::StoreArtifacts { path, .. } => format!("Uploading artifacts ({path})"),
        SpecStep::StoreTestResults { path } => format!("Uploading test results ({path})"),
        SpecStep::PersistToWorkspace { .. } => "Persisting to workspace".into(),
        SpecStep::AttachWorkspace { at } => format!("Attaching workspace at {at}"),
        SpecStep::SetupRemoteDocker { .. } => "Setup a remote Docker engine".into(),
        SpecStep::AddSshKeys { .. } => "Add SSH keys".into(),
    }
}

/// What `run` execs: the shell's words, `-c`, the command; in the step's working directory, created if needed.
fn run_options(ctx: &Ctx, r: &RunSpec) -> Result<(ExecOptions, Option<Duration>), ExecError> {
    let shell = r.shell.as_deref().or(ctx.req.job.shell.as_deref()).unwrap_or(&ctx.default_shell);
    let mut cmd: Vec<String> = shell.split_whitespace().map(str::to_owned).collect();
    cmd.push("-c".into());
    cmd.push(r.command.clone());
    let workdir = match &r.working_directory {
        Some(w) => {
            let dir = expand_home(w, &ctx.home, &ctx.working_dir);
            let opts = ExecOptions { cmd: vec!["mkdir".into(), "-p".into(), dir.clone()], ..ExecOptions::default() };
            exec_captured(ctx.store, &ctx.primary, &opts, Duration::from_secs(60), 4096)?;
            dir
        }
        None => ctx.working_dir.clone(),
    };
    let step_vars = env::layer(&r.environment);
    let env = env::merge([&ctx.job_env[..], &step_vars[..]]);
    let timeout = r.no_output_timeout_secs.map(Duration::from_secs).unwrap_or(DEFAULT_NO_OUTPUT_TIMEOUT);
    let opts = ExecOptions {
        cmd,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        workdir: Some(workdir),
        ..ExecOptions::default()
    };
    Ok((opts, Some(timeout)))
}

/// Streams one process's output to `sink` as masked text, never splitting a UTF-8 character.
struct OutputStream<'s> {
    masker: Masker<'s>,
    carry: Vec<u8>,
    step: usize,
}

impl<'s> OutputStream<'s> {
    fn new(secrets: &'s Secrets, step: usize) -> OutputStream<'s> {
        OutputStream { masker: Masker::new(secrets), carry: Vec::new(), step }
    }

    fn push(&mut self, sink: &dyn EventSink, chunk: &[u8]) {
        let shown = self.masker.push(chunk);
        self.emit(sink, shown, false);
    }

    fn finish(&mut self, sink: &dyn EventSink) {
        let shown = self.masker.finish();
        self.emit(sink, shown, true);
    }

    fn emit(&mut self, sink: &dyn EventSink, bytes: Vec<u8>, last: bool) {
        self.carry.extend(bytes);
        let cut = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            // An incomplete character at the end waits for its other bytes.
            Err(e) if e.error_len().is_none() && !last => e.valid_up_to(),
            Err(_) => self.carry.len(),
        };
        if cut == 0 {
            return;
        }
        let rest = self.carry.split_off(cut);
        let text = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry = rest;
        sink.event(&Event::Output { step: self.step, text });
    }
}

fn run_step(ctx: &Ctx, index: usize, r: &RunSpec) -> Result<(Status, Option<i32>), ExecError> {
    let (opts, timeout) = run_options(ctx, r)?;
    let mut out = OutputStream::new(&ctx.req.secrets, index);
    let sink: &dyn EventSink = ctx.sink.as_ref();
    let exit = exec_streamed(ctx.store, &ctx.primary, &opts, timeout, ctx.cancel, &mut |chunk| out.push(sink, chunk));
    out.finish(sink);
    Ok(match exit? {
        StreamedExit::Exited(0) => (Status::Success, Some(0)),
        StreamedExit::Exited(code) => {
            sink.event(&Event::Output { step: index, text: format!("\nExited with code exit status {code}\n") });
            (Status::Failed, Some(code))
        }
        StreamedExit::IdleTimeout => {
            let secs = timeout.unwrap_or_default().as_secs();
            sink.event(&Event::Output { step: index, text: format!("\nToo long with no output (exceeded {secs}s)\n") });
            (Status::TimedOut, None)
        }
        StreamedExit::Canceled => (Status::Canceled, None),
    })
}

fn start_background(
    ctx: &Ctx,
    index: usize,
    r: &RunSpec,
    stop: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ExecError> {
    let (opts, _) = run_options(ctx, r)?;
    let store = ctx.store.clone();
    let primary = ctx.primary.clone();
    let sink = Arc::clone(ctx.sink);
    let secrets = ctx.req.secrets.clone();
    let stop = Arc::clone(stop);
    // A background step is not timed out: it usually is a server that stays quiet.
    Ok(std::thread::spawn(move || {
        let mut out = OutputStream::new(&secrets, index);
        let s: &dyn EventSink = sink.as_ref();
        let _ = exec_streamed(&store, &primary, &opts, None, &stop, &mut |chunk| out.push(s, chunk));
        out.finish(s);
    }))
}

fn key_context<'a>(ctx: &'a Ctx) -> KeyContext<'a> {
    KeyContext {
        store: ctx.store,
        container: &ctx.primary,
        working_dir: &ctx.working_dir,
        home: &ctx.home,
        branch: &ctx.req.info.branch,
        revision: &ctx.req.info.revision,
        build_num: ctx.req.info.build_num,
        env: &ctx.job_env,
    }
}

fn save_cache(ctx: &Ctx, index: usize, key: &str, paths: &[String]) -> Result<(), ExecError> {
    let key = render_key(key, &key_context(ctx))?;
    let paths: Vec<String> = paths.iter().map(|p| expand_home(p, &ctx.home, &ctx.working_dir)).collect();
    let cache = CacheStore::new(&ctx.req.data_dir);
    let mut note = |text: String| {
        ctx.sink.event(&Event::Output { step: index, text: ctx.req.secrets.mask_str(&text) });
    };
    note(format!("Creating cache {key}\n"));
    if !cache.save(ctx.store, &ctx.primary, &key, &paths, &mut note)? {
        note(format!("Skipping cache generation, cache already exists for key: {key}\n"));
    }
    Ok(())
}

fn restore_cache(ctx: &Ctx, index: usize, keys: &[String]) -> Result<(), ExecError> {
    let cache = CacheStore::new(&ctx.req.data_dir);
    let mut note = |text: String| {
        ctx.sink.event(&Event::Output { step: index, text: ctx.req.secrets.mask_str(&text) });
    };
    let mut tried = Vec::new();
    for template in keys {
        let key = render_key(template, &key_context(ctx))?;
        if let Some((found, dir)) = cache.find(&key) {
            note(format!("Found a cache from key {found}\n"));
            return cache.restore(ctx.store, &ctx.primary, &dir, &mut note);
        }
        tried.push(key);
    }
    note(format!("No cache is found for keys: {}\n", tried.join(", ")));
    Ok(())
}

fn persist(ctx: &Ctx, index: usize, root: &str, paths: &[String]) -> Result<(), ExecError> {
    let root = expand_home(root, &ctx.home, &ctx.working_dir);
    let mut note = |text: String| ctx.sink.event(&Event::Output { step: index, text });
    let Some(remote) = &ctx.req.remote else {
        let workspace = files::workspace_dir(&ctx.req.data_dir, &ctx.req.info.workflow_id);
        return files::persist(ctx.store, &ctx.primary, &workspace, &root, paths, &mut note);
    };
    // One layer per step: the paths are copied into a fresh directory, which is uploaded as a tar.
    let layer = staging_dir(ctx, "workspace-layer")?;
    files::persist(ctx.store, &ctx.primary, layer.path(), &root, paths, &mut note)?;
    remote.upload_workspace(layer.path()).map_err(ExecError::Remote)?;
    note("Uploaded the workspace layer to the coordinator\n".to_owned());
    Ok(())
}

/// A temporary directory under the runner's data directory (same file system as the caches, not /tmp).
fn staging_dir(ctx: &Ctx, what: &str) -> Result<tempfile::TempDir, ExecError> {
    let base = ctx.req.data_dir.join("tmp");
    std::fs::create_dir_all(&base)
        .map_err(|source| ExecError::Io { context: format!("cannot create {}", base.display()), source })?;
    tempfile::Builder::new()
        .prefix(&format!("{what}-"))
        .tempdir_in(&base)
        .map_err(|source| ExecError::Io { context: format!("cannot create a directory in {}", base.display()), source })
}

fn attach(ctx: &Ctx, index: usize, at: &str) -> Result<(), ExecError> {
    let at = expand_home(at, &ctx.home, &ctx.working_dir);
    let fetched;
    let workspace = match &ctx.req.remote {
        None => files::workspace_dir(&ctx.req.data_dir, &ctx.req.info.workflow_id),
        Some(remote) => {
            fetched = staging_dir(ctx, "workspace")?;
            if !remote.fetch_workspace(fetched.path()).map_err(ExecError::Remote)? {
                let text = "No workspace to attach: no upstream job persisted one\n".to_owned();
                ctx.sink.event(&Event::Output { step: index, text });
                return Ok(());
            }
            fetched.path().to_path_buf()
        }
    };
    let text = if files::attach(ctx.store, &ctx.primary, &workspace, &at)? {
        format!("Attached the workspace at {at}\n")
    } else {
        "No workspace to attach: no earlier job of this workflow run persisted one\n".to_owned()
    };
    ctx.sink.event(&Event::Output { step: index, text });
    Ok(())
}

fn store_artifacts(ctx: &Ctx, index: usize, path: &str, destination: Option<&str>) -> Result<(), ExecError> {
    let path = expand_home(path, &ctx.home, &ctx.working_dir);
    let staged;
    let dir = match &ctx.req.remote {
        None => {
            // The job's name is config text (matrix values included): one path component, whatever it holds.
            let job_dir = match ctx.req.job.name.replace('/', "_").as_str() {
                "" | "." | ".." => "_".to_owned(),
                name => name.to_owned(),
            };
            ctx.req.data_dir.join("artifacts").join(ctx.req.info.build_num.to_string()).join(job_dir)
        }
        Some(_) => {
            staged = staging_dir(ctx, "artifacts")?;
            staged.path().to_path_buf()
        }
    };
    let stored = files::store_artifacts(ctx.store, &ctx.primary, &dir, &path, destination)?;
    let mut text = match &ctx.req.remote {
        None => format!("Stored {} file(s) from {path} in {}\n", stored.len(), dir.display()),
        Some(remote) => {
            for (file, _) in &stored {
                remote.upload_artifact(file, &dir.join(file)).map_err(ExecError::Remote)?;
            }
            format!("Uploaded {} file(s) from {path} to the coordinator\n", stored.len())
        }
    };
    for (file, size) in stored {
        text.push_str(&format!("  {file} ({})\n", engine::humanize::size(size)));
    }
    ctx.sink.event(&Event::Output { step: index, text: ctx.req.secrets.mask_str(&text) });
    Ok(())
}

fn add_ssh_keys(ctx: &Ctx, index: usize, fingerprints: &[String]) -> Result<(), ExecError> {
    let keys = super::ssh::select(&ctx.req.ssh_keys, fingerprints)?;
    let mut text = String::new();
    if keys.is_empty() {
        text.push_str("warning: no SSH keys were given to the runner (runner exec --ssh-key FILE): none added\n");
    } else {
        let names = super::ssh::install(ctx.store, &ctx.primary, &ctx.home, &keys)?;
        for (key, name) in keys.iter().zip(&names) {
            let fp = key.md5.as_deref().or(key.sha256.as_deref()).unwrap_or("no fingerprint");
            text.push_str(&format!("Added {}/.ssh/{name} ({fp})\n", ctx.home));
        }
        text.push_str(&format!("Added github.com's host keys to {}/.ssh/known_hosts\n", ctx.home));
    }
    ctx.sink.event(&Event::Output { step: index, text });
    Ok(())
}

/// The JUnit files a test results path holds: the file itself, or every `*.xml` below the directory, sorted.
fn junit_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            junit_files(&e, out);
        }
    } else if meta.is_file() && dir.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")) {
        out.push(dir.to_path_buf());
    }
}

/// JUnit files larger than this are reported and skipped (a runaway log written as XML).
const MAX_JUNIT_BYTES: u64 = 64 * 1024 * 1024;

fn store_test_results(ctx: &Ctx, index: usize, path: &str) -> Result<(), ExecError> {
    let full = expand_home(path, &ctx.home, &ctx.working_dir);
    let note = |text: String| {
        ctx.sink.event(&Event::Output { step: index, text: ctx.req.secrets.mask_str(&text) });
    };
    if engine::container::cp::stat(ctx.store, &ctx.primary, &full)?.is_none() {
        note(format!("warning: no test results at {full}: nothing stored\n"));
        return Ok(());
    }
    let staged = staging_dir(ctx, "test-results")?;
    files::copy_out(ctx.store, &ctx.primary, &full, staged.path())?;
    let mut found = Vec::new();
    junit_files(staged.path(), &mut found);
    let parent = full.trim_end_matches('/').rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let mut cases = Vec::new();
    for file in &found {
        let rel = file.strip_prefix(staged.path()).unwrap_or(file);
        let label = format!("{parent}/{}", rel.display());
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if size > MAX_JUNIT_BYTES {
            note(format!("warning: {label}: {size} bytes is too large for a test results file: skipped\n"));
            continue;
        }
        let text = match std::fs::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                note(format!("warning: cannot read {label}: {e}: skipped\n"));
                continue;
            }
        };
        match super::junit::parse(&text, &label) {
            Ok(c) => cases.extend(c),
            // CircleCI warns about a file it cannot parse and stores the others; so does this step.
            Err(e) => note(format!("warning: {e}: this file is skipped\n")),
        }
    }
    if !cases.is_empty() {
        if let Err(e) = super::shim::save_timings(&ctx.req.data_dir, &ctx.req.job.name, &cases) {
            note(format!("warning: cannot keep the timings for `runner tests split`: {e}\n"));
        }
    }
    note(format!("Read {} test results file(s) from {full}\n", found.len()));
    note(super::junit::summary(&cases));
    if let Some(remote) = &ctx.req.remote {
        remote.test_results(path, &cases).map_err(ExecError::Remote)?;
    }
    ctx.sink.event(&Event::TestResults { step: index, path: path.to_owned(), cases });
    Ok(())
}

/// Starts the job's `engine serve` (prepared with the containers) and says which engine answers.
fn setup_remote_docker(ctx: &Ctx, index: usize, remote: Option<&mut RemoteDocker>) -> Result<(), ExecError> {
    let Some(remote) = remote else {
        return Err(ExecError::StepInput {
            field: "setup_remote_docker".into(),
            value: ctx.req.job.name.clone(),
            hint: "the job's containers were created without the remote docker mounts: report this as a bug".into(),
        });
    };
    let v = remote.start()?;
    // Clients and SDKs that ignore DOCKER_HOST (testcontainers, docker-py's defaults, scripts that mount the
    // socket into their own containers) look for /var/run/docker.sock, as on CircleCI's machine executor.
    let link = ExecOptions {
        cmd: vec!["/bin/sh".into(), "-c".into(), remote_docker::LINK_SOCKET_SCRIPT.into()],
        user: Some("0:0".into()),
        ..ExecOptions::default()
    };
    let linked = exec_captured(ctx.store, &ctx.primary, &link, Duration::from_secs(60), 4096)?;
    if linked.exit_code != Some(0) {
        let said = String::from_utf8_lossy(&linked.output);
        ctx.sink.event(&Event::Output {
            step: index,
            text: format!(
                "warning: cannot link /var/run/docker.sock to the job's socket ({}): use $DOCKER_HOST\n",
                said.trim()
            ),
        });
    }
    let text = format!(
        "Remote Docker engine: Drydock engine {} (API {}, {}/{}), scoped to {}\nDOCKER_HOST={} for the following steps\n",
        v.version,
        v.api_version,
        v.os,
        v.arch,
        remote.scope(),
        remote_docker::DOCKER_HOST
    );
    ctx.sink.event(&Event::Output { step: index, text });
    Ok(())
}

fn checkout_step(ctx: &Ctx, index: usize, path: Option<&str>) -> Result<(), ExecError> {
    let Some(source) = &ctx.req.repo else {
        return Err(ExecError::Checkout(
            "no local repository to check out: run `runner exec` inside the project's checkout".into(),
        ));
    };
    let target = expand_home(path.unwrap_or(&ctx.working_dir), &ctx.home, &ctx.working_dir);
    let target = target.trim_end_matches('/').to_owned();
    let (parent, name) = match target.rsplit_once('/') {
        Some(("", name)) => ("/".to_owned(), name.to_owned()),
        Some((parent, name)) => (parent.to_owned(), name.to_owned()),
        None => return Err(ExecError::Checkout(format!("cannot check out into `{target}`"))),
    };
    let io = |context: String| move |source| ExecError::Io { context, source };
    let tmp = tempfile::Builder::new()
        .prefix("drydock-checkout-")
        .tempdir()
        .map_err(io("cannot create a temporary directory".into()))?;
    let clone_dir = tmp.path().join("src");
    let branch = Some(ctx.req.info.branch.as_str()).filter(|b| !b.is_empty());
    let revision = &ctx.req.info.revision;
    let oid = match source {
        Source::Local(repo) => checkout::clone_at(&repo.dir, &clone_dir, revision, branch)?,
        Source::Remote(remote) => {
            let shown = checkout::display_url(&remote.url);
            ctx.sink.event(&Event::Output { step: index, text: format!("Fetching {revision} from {shown}\n") });
            let started = Instant::now();
            let tag = ctx.req.info.tag.as_deref().filter(|t| !t.is_empty());
            let oid = checkout::fetch_at(remote, &clone_dir, revision, branch, tag, ctx.cancel)?;
            tracing::debug!(url = %shown, revision = %revision, duration_ms = started.elapsed().as_millis() as u64, "fetched");
            oid
        }
        Source::Unsupported(url) => {
            return Err(ExecError::Checkout(format!(
            "cannot clone {}: only http:// and https:// URLs, file:// URLs and absolute paths are supported (not ssh)",
            checkout::display_url(url)
        )))
        }
    };
    let tar_path = tmp.path().join("src.tar");
    let tar = std::fs::File::create(&tar_path).map_err(io(format!("cannot write {}", tar_path.display())))?;
    engine::container::cp::host_archive(&clone_dir, &name, std::io::BufWriter::new(tar))?;
    let mkdir = ExecOptions { cmd: vec!["mkdir".into(), "-p".into(), parent.clone()], ..ExecOptions::default() };
    exec_captured(ctx.store, &ctx.primary, &mkdir, Duration::from_secs(60), 4096)?;
    let tar = std::fs::File::open(&tar_path).map_err(io(format!("cannot read {}", tar_path.display())))?;
    engine::container::cp::extract(ctx.store, &ctx.primary, &parent, std::io::BufReader::new(tar))?;
    // The files were written as root: hand them to the container's user when it is another one.
    let id = ExecOptions {
        cmd: vec!["/bin/sh".into(), "-c".into(), "echo $(id -u):$(id -g)".into()],
        ..ExecOptions::default()
    };
    let owner = exec_captured(ctx.store, &ctx.primary, &id, Duration::from_secs(60), 4096)?;
    let owner = String::from_utf8_lossy(&owner.output).trim().to_owned();
    if !owner.is_empty() && owner != "0:0" {
        let chown = ExecOptions {
            cmd: vec!["chown".into(), "-R".into(), owner, target.clone()],
            user: Some("0".into()),
            ..ExecOptions::default()
        };
        exec_captured(ctx.store, &ctx.primary, &chown, Duration::from_secs(300), 4096)?;
    }
    let on = branch.map(|b| format!(" on branch {b}")).unwrap_or_default();
    ctx.sink.event(&Event::Output { step: index, text: format!("Checked out {oid}{on} into {target}\n") });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_expand_like_circleci() {
        assert_eq!(expand_home("~/project", "/root", "/"), "/root/project");
        assert_eq!(expand_home("~", "/home/circleci", "/"), "/home/circleci");
        assert_eq!(expand_home("sub/dir", "/root", "/root/project"), "/root/project/sub/dir");
        assert_eq!(expand_home("/abs", "/root", "/root/project"), "/abs");
        assert_eq!(expand_home(".", "/root", "/root/project"), "/root/project");
    }
}
