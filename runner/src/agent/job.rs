//! One leased job, start to finish: the [`ExecRequest`] built from the [`JobAssignment`] (the same executor as
//! `runner exec`), a heartbeat thread (every `lease_ttl / 4`; `cancel` stops the job, `409 lease_lost` stops it
//! and silences it), an event thread ([`super::events::send_events`]), workspaces and artifacts through the
//! coordinator ([`CoordinatorFiles`]), and the [`JobResult`] posted once every event is acknowledged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use config_schema::wire::{JobAssignment, JobOutcome, JobResult, TestCase, TestResults};

use super::client::{retrying, ApiError, Client};
use super::events::{now_ms, send_events, EventQueue};
use crate::exec::checkout::Source;
use crate::exec::env::BuildInfo;
use crate::exec::files::RemoteFiles;
use crate::exec::mask::Secrets;
use crate::exec::{run_job, Event, EventSink, ExecError, ExecRequest, Status};

/// What a job needs from the agent around it.
pub struct JobContext<'a> {
    pub client: &'a Client,
    pub engine_root: &'a Path,
    pub data_dir: &'a Path,
    /// Set by a second SIGTERM: cancel every running job.
    pub cancel_all: &'a AtomicBool,
}

/// How a job's run ended for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The result was accepted by the coordinator.
    Reported(JobOutcome),
    /// The lease was lost: nothing more was reported.
    LeaseLost,
}

/// The executor's events go into the job's queue.
struct QueueSink(Arc<EventQueue>);

impl EventSink for QueueSink {
    fn event(&self, event: &Event) {
        self.0.push(event);
    }
}

/// Workspaces and artifacts through the coordinator's endpoints.
pub struct CoordinatorFiles {
    client: Client,
    job_id: String,
    tmp: PathBuf,
    stop: Arc<AtomicBool>,
}

impl CoordinatorFiles {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl RemoteFiles for CoordinatorFiles {
    fn fetch_workspace(&self, dir: &Path) -> Result<bool, String> {
        let stop = || self.stopped();
        let layers =
            retrying("workspace", &stop, || self.client.workspace_layers(&self.job_id)).map_err(|e| e.to_string())?;
        for layer in &layers {
            let tar = tempfile::NamedTempFile::new_in(&self.tmp).map_err(|e| format!("cannot stage a layer: {e}"))?;
            retrying("workspace layer", &stop, || {
                let mut f = tar.reopen().map_err(|e| ApiError::Away(e.to_string()))?;
                f.set_len(0).map_err(|e| ApiError::Away(e.to_string()))?;
                self.client.download(&layer.url, &mut f)
            })
            .map_err(|e| e.to_string())?;
            let f = tar.reopen().map_err(|e| format!("cannot read a layer: {e}"))?;
            engine::container::cp::host_extract(std::io::BufReader::new(f), dir)
                .map_err(|e| format!("cannot unpack workspace layer {}: {e}", layer.url))?;
        }
        Ok(!layers.is_empty())
    }

    fn upload_workspace(&self, dir: &Path) -> Result<(), String> {
        let tar = tempfile::NamedTempFile::new_in(&self.tmp).map_err(|e| format!("cannot stage the layer: {e}"))?;
        let f = tar.reopen().map_err(|e| format!("cannot write the layer: {e}"))?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        b.follow_symlinks(false);
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let added = if path.is_dir() && !path.is_symlink() {
                b.append_dir_all(&name, &path)
            } else {
                b.append_path_with_name(&path, &name)
            };
            added.map_err(|e| format!("cannot archive {}: {e}", path.display()))?;
        }
        b.into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .map_err(|e| format!("cannot write the layer: {e}"))?;
        let stop = || self.stopped();
        retrying("workspace upload", &stop, || self.client.put_workspace(&self.job_id, tar.path()))
            .map_err(|e| e.to_string())
    }

    fn test_results(&self, path: &str, cases: &[TestCase]) -> Result<(), String> {
        let results = TestResults { job_id: self.job_id.clone(), path: path.to_owned(), cases: cases.to_vec() };
        let stop = || self.stopped();
        retrying("test results", &stop, || self.client.test_results(&results)).map_err(|e| e.to_string())
    }

    fn upload_artifact(&self, rel: &str, file: &Path) -> Result<(), String> {
        let stop = || self.stopped();
        retrying("artifact upload", &stop, || self.client.put_artifact(&self.job_id, rel, file))
            .map_err(|e| e.to_string())
    }
}

/// The executor's request for `a`.
pub fn exec_request(a: &JobAssignment, ctx: &JobContext, remote: Arc<dyn RemoteFiles>) -> ExecRequest {
    let (username, reponame) = match a.pipeline.project.split_once('/') {
        Some((u, r)) => (u.to_owned(), r.to_owned()),
        None => (String::new(), a.pipeline.project.clone()),
    };
    let info = BuildInfo {
        job: a.job.name.clone(),
        branch: a.checkout.branch.clone().unwrap_or_default(),
        tag: a.checkout.tag.clone(),
        revision: a.checkout.revision.clone(),
        build_num: a.job.number,
        repository_url: a.checkout.repository_url.clone(),
        project_username: username,
        project_reponame: reponame,
        workflow_id: a.workflow.id.clone(),
        pipeline_id: a.pipeline.id.clone(),
        working_directory: a.spec.working_directory.clone(),
        node_index: a.node_index,
        node_total: a.spec.parallelism.max(1),
    };
    // The coordinator's built-ins override the runner's own (they know the build number, the PR, …).
    let mut project_env: Vec<(String, String)> = a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    project_env.extend(a.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    let secrets = Secrets::new(a.secrets.values().map(String::as_str).chain(a.checkout.credential.as_deref()));
    ExecRequest {
        job: a.spec.clone(),
        engine_root: ctx.engine_root.to_path_buf(),
        repo: Some(Source::from_url(&a.checkout.repository_url, a.checkout.credential.as_deref())),
        info,
        project_env,
        secrets,
        keep: false,
        data_dir: ctx.data_dir.to_path_buf(),
        remote: Some(remote),
        // The protocol carries no SSH keys yet: `add_ssh_keys` says so and adds none.
        ssh_keys: Vec::new(),
    }
}

/// Why a job could not run, as the result says it: the job's own problem (`failed`) or the runner's
/// (`infrastructure_fail`, which the coordinator retries).
fn outcome_of_error(e: &ExecError) -> JobOutcome {
    match e {
        ExecError::Pull { .. }
        | ExecError::Container { .. }
        | ExecError::UnsupportedExecutor { .. }
        | ExecError::BadVariable { .. }
        | ExecError::CacheKey { .. }
        | ExecError::StepInput { .. }
        | ExecError::Checkout(_) => JobOutcome::Failed,
        ExecError::Engine(_)
        | ExecError::Root(_)
        | ExecError::Image(_)
        | ExecError::Io { .. }
        | ExecError::Remote(_)
        // Before the step, only the runner's own directory for the socket can fail.
        | ExecError::RemoteDocker(_) => JobOutcome::InfrastructureFail,
    }
}

/// Reports a leased job whose assignment could not be read as `infrastructure_fail` (the coordinator retries
/// it, perhaps on a newer runner), so its lease does not just run out.
pub fn report_unreadable(client: &Client, job_id: &str, message: &str) {
    tracing::error!(job.id = %job_id, error = %message, "cannot read a leased job's assignment");
    let now = now_ms();
    let result = JobResult {
        job_id: job_id.to_owned(),
        status: JobOutcome::InfrastructureFail,
        exit_code: None,
        message: Some(format!("the runner cannot read this job's assignment: {message}")),
        started_at: now,
        finished_at: now,
        steps: Vec::new(),
    };
    if let Err(e) = retrying("complete", &|| false, || client.complete(&result)) {
        tracing::error!(job.id = %job_id, error = %e, "cannot report the unreadable job");
    }
}

/// Heartbeat state shared between the job and its heartbeat thread.
#[derive(Default)]
struct Lease {
    done: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
}

/// Runs `a` and reports it; returns how it ended for the agent.
pub fn run_assignment(a: &JobAssignment, ctx: &JobContext) -> Ended {
    let job_id = a.job.id.clone();
    let started_at = now_ms();
    tracing::info!(job.id = %job_id, job.name = %a.job.name, attempt = a.job.attempt, "job leased");
    let job_dir = ctx.data_dir.join("jobs").join(super::client::segment(&job_id));
    let spool = job_dir.join("logs");
    let tmp = ctx.data_dir.join("tmp");
    let spool = match std::fs::create_dir_all(&spool).and_then(|()| std::fs::create_dir_all(&tmp)) {
        Ok(()) => Some(spool),
        Err(e) => {
            tracing::warn!(error = %e, dir = %job_dir.display(), "cannot create the job's spool directory");
            None
        }
    };
    let queue = Arc::new(EventQueue::new(&job_id, spool));
    let cancel = Arc::new(AtomicBool::new(false));
    let lease = Arc::new(Lease::default());

    let ended = std::thread::scope(|scope| {
        let sender = scope.spawn(|| send_events(ctx.client, &queue));
        let heartbeat = scope.spawn(|| heartbeats(ctx, a, &cancel, &lease, &queue));

        let result = match a.check_version() {
            Err(e) => Err((JobOutcome::InfrastructureFail, e.to_string())),
            Ok(()) => {
                let remote = Arc::new(CoordinatorFiles {
                    client: ctx.client.clone(),
                    job_id: job_id.clone(),
                    tmp: tmp.clone(),
                    stop: Arc::clone(&cancel),
                });
                let req = exec_request(a, ctx, remote);
                let sink: Arc<dyn EventSink> = Arc::new(QueueSink(Arc::clone(&queue)));
                run_job(&req, &sink, &cancel)
                    .map(|o| o.status)
                    .map_err(|e| (outcome_of_error(&e), req.secrets.mask_str(&e.to_string())))
            }
        };

        if let Ok(mut done) = lease.done.lock() {
            *done = true;
        }
        lease.wake.notify_all();
        let _ = heartbeat.join();
        queue.close();
        let sent = sender.join();
        if lease.lost.load(Ordering::Relaxed) || matches!(sent, Ok(Err(ApiError::LeaseLost))) {
            return Ended::LeaseLost;
        }
        let summary = queue.summary();
        let (status, message) = match result {
            Ok(Status::Success) => (JobOutcome::Success, None),
            Ok(Status::Canceled) => (JobOutcome::Canceled, None),
            Ok(_) => (JobOutcome::Failed, None),
            Err((outcome, message)) => (outcome, Some(summary.spin_up_error.clone().unwrap_or(message))),
        };
        let result = JobResult {
            job_id: job_id.clone(),
            status,
            exit_code: summary.exit_code,
            message,
            started_at,
            finished_at: now_ms(),
            steps: summary.steps,
        };
        // The result is never given up on while the coordinator is away (no stop condition).
        match retrying("complete", &|| false, || ctx.client.complete(&result)) {
            Ok(()) => {
                tracing::info!(job.id = %job_id, status = ?status, duration_ms = result.finished_at - started_at, "job finished");
                Ended::Reported(status)
            }
            Err(ApiError::LeaseLost) => Ended::LeaseLost,
            Err(e) => {
                tracing::error!(job.id = %job_id, error = %e, "the job's result was refused");
                Ended::Reported(status)
            }
        }
    });
    if let Err(e) = std::fs::remove_dir_all(&job_dir) {
        tracing::debug!(error = %e, dir = %job_dir.display(), "cannot remove the job's spool");
    }
    if ended == Ended::LeaseLost {
        tracing::warn!(job.id = %job_id, "lease lost: the job was stopped and nothing more is reported");
    }
    ended
}

/// Extends the lease every `lease_ttl / 4` until the job is done; turns a `cancel` answer or a second SIGTERM
/// into the job's cancel flag, and `lease_lost` into a stopped, silenced job.
fn heartbeats(ctx: &JobContext, a: &JobAssignment, cancel: &AtomicBool, lease: &Lease, queue: &EventQueue) {
    let ttl_of = |expires: u64| Duration::from_millis(expires.saturating_sub(now_ms()).max(4_000));
    let mut interval = ttl_of(a.lease_expires_at) / 4;
    let mut next = Instant::now() + interval;
    let done = || lease.done.lock().map(|d| *d).unwrap_or(true);
    loop {
        {
            let Ok(guard) = lease.done.lock() else { return };
            let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            let Ok((guard, _)) = lease.wake.wait_timeout(guard, wait) else { return };
            if *guard {
                return;
            }
        }
        if ctx.cancel_all.load(Ordering::Relaxed) && !cancel.swap(true, Ordering::Relaxed) {
            tracing::info!(job.id = %a.job.id, "canceling the job (second SIGTERM)");
        }
        if Instant::now() < next {
            continue;
        }
        match retrying("heartbeat", &done, || ctx.client.heartbeat(&a.job.id)) {
            Ok(hb) => {
                interval = ttl_of(hb.lease_expires_at) / 4;
                if hb.cancel && !cancel.swap(true, Ordering::Relaxed) {
                    tracing::info!(job.id = %a.job.id, "the coordinator canceled the job");
                }
            }
            Err(ApiError::LeaseLost) => {
                lease.lost.store(true, Ordering::Relaxed);
                cancel.store(true, Ordering::Relaxed);
                queue.abort();
                return;
            }
            Err(ApiError::Away(_)) => return, // the job ended while retrying
            Err(e) => tracing::warn!(job.id = %a.job.id, error = %e, "heartbeat refused"),
        }
        next = Instant::now() + interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_are_local_paths_http_urls_or_unsupported() {
        let dir = |s: &Source| match s {
            Source::Local(r) => Some(r.dir.clone()),
            _ => None,
        };
        assert_eq!(dir(&Source::from_url("/srv/git/app", None)), Some(PathBuf::from("/srv/git/app")));
        assert_eq!(dir(&Source::from_url("file:///srv/git/app", None)), Some(PathBuf::from("/srv/git/app")));
        match Source::from_url("https://github.com/acme/app.git", Some("ghs_token")) {
            Source::Remote(r) => {
                assert_eq!(r.url, "https://github.com/acme/app.git");
                assert_eq!(r.credential.as_deref(), Some("ghs_token"));
                assert!(!format!("{r:?}").contains("ghs_token"), "{r:?}");
            }
            other => panic!("{other:?}"),
        }
        match Source::from_url("HTTP://git.example.com/app", Some("")) {
            Source::Remote(r) => assert_eq!(r.credential, None),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Source::from_url("git@github.com:acme/app.git", None), Source::Unsupported(_)));
        assert!(matches!(Source::from_url("ssh://git@github.com/acme/app.git", None), Source::Unsupported(_)));
    }
}
