//! `runner exec --workflow W`: the workflow's jobs, as [`config_schema::plan`] orders and filters them for the
//! pipeline's branch or tag. A job starts once each of its `requires` has ended in one of the statuses it
//! accepts (`success` unless written otherwise); one that ended otherwise makes it "not run". Independent
//! jobs run at the same time, up to [`WorkflowOptions::jobs`] nodes at once (a job with `parallelism: N` is N
//! nodes, each its own run with `CIRCLE_NODE_INDEX`; the job succeeds when every node does). Approval jobs are
//! decided by [`WorkflowOptions::approve`] (`--approve`, `--approve-all`, or a question on the terminal);
//! no-op jobs succeed. Jobs of one run share a workflow ID, hence a workspace. Ctrl-C ends the running jobs
//! and marks the rest not run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use config_schema::plan::PlannedWorkflow;
use config_schema::spec::{JobKind, JobStatus};
use config_schema::{JobSpec, ProcessedConfig};

use super::{run_job, Event, EventSink, ExecRequest, Status};

/// What an approval job's question got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    Approved,
    /// Not approved, and why (said in the job's "not run" line).
    Declined(String),
}

/// Gives the sink of one job's events: its name, and its node when it has several.
pub type SinkFor<'a> = &'a dyn Fn(&str, Option<u32>) -> Arc<dyn EventSink>;

/// How a workflow runs.
pub struct WorkflowOptions<'a> {
    /// Nodes run at once (at least one).
    pub jobs: usize,
    /// Decides an approval job, by name; may ask on the terminal (the scheduler waits, running jobs go on).
    pub approve: &'a dyn Fn(&str) -> Approval,
    /// The sink of one job's events — the job's name, and its node when it has several (text output prefixes
    /// its lines with them when jobs overlap).
    pub sink_for: SinkFor<'a>,
}

/// Where a job of the workflow is.
enum JobState {
    Waiting,
    /// Nodes started so far, nodes finished so far, and the worst status among the finished.
    Running {
        started: u32,
        finished: u32,
        worst: JobStatus,
    },
    Done(JobStatus),
}

/// Runs `workflow`; `request_for` builds each job's request (`n`: the job's place, from 0; the node is set
/// here). Returns the workflow's status: success when every job ran and succeeded.
pub fn run_workflow(
    workflow: &PlannedWorkflow,
    config: &ProcessedConfig,
    request_for: &dyn Fn(&JobSpec, usize) -> ExecRequest,
    sink: &Arc<dyn EventSink>,
    options: &WorkflowOptions,
    cancel: &AtomicBool,
) -> Status {
    let jobs = &workflow.jobs;
    let slots = options.jobs.max(1);
    let mut states: Vec<JobState> = jobs.iter().map(|_| JobState::Waiting).collect();
    let index_of = |name: &str| jobs.iter().position(|j| j.name == name);
    let mut overall = Status::Success;
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(usize, JobStatus)>();
        let mut running = 0usize;
        loop {
            // Decide and start what can go, in the workflow's order, until nothing changes.
            let mut changed = true;
            while changed {
                changed = false;
                for i in 0..jobs.len() {
                    let job = &jobs[i];
                    let status_of = |name: &str, states: &[JobState]| match index_of(name).map(|k| &states[k]) {
                        Some(JobState::Done(s)) => Some(*s),
                        Some(_) => None,
                        // Not in this run of the workflow (filtered out): it never runs.
                        None => Some(JobStatus::NotRun),
                    };
                    match &states[i] {
                        JobState::Waiting => {}
                        JobState::Running { started, .. } => {
                            let total = nodes(config, job.kind, &job.name, request_for);
                            if *started < total && running < slots && !cancel.load(Ordering::Relaxed) {
                                let node = *started;
                                start_node(scope, i, node, config, job, request_for, options, cancel, &done_tx);
                                if let JobState::Running { started, .. } = &mut states[i] {
                                    *started += 1;
                                }
                                running += 1;
                                changed = true;
                            }
                            continue;
                        }
                        JobState::Done(_) => continue,
                    }
                    let upstream: Vec<Option<JobStatus>> =
                        job.requires.iter().map(|r| status_of(&r.job, &states)).collect();
                    if upstream.iter().any(Option::is_none) {
                        continue;
                    }
                    changed = true;
                    let blocked = job.requires.iter().zip(&upstream).find_map(|(r, s)| {
                        let s = s.unwrap_or(JobStatus::NotRun);
                        let accepted = r.statuses.iter().any(|w| *w == s || *w == JobStatus::Terminal);
                        (!accepted).then(|| {
                            let wanted: Vec<&str> = r.statuses.iter().map(|w| status_name(*w)).collect();
                            format!("requires {} to end {}, it ended {}", r.job, wanted.join(" or "), status_name(s))
                        })
                    });
                    let reason =
                        if cancel.load(Ordering::Relaxed) { Some("the run was canceled".to_owned()) } else { blocked };
                    if let Some(reason) = reason {
                        sink.event(&Event::JobNotRun { job: job.name.clone(), reason });
                        states[i] = JobState::Done(JobStatus::NotRun);
                        continue;
                    }
                    states[i] = match job.kind {
                        JobKind::Approval => match (options.approve)(&job.name) {
                            Approval::Approved => {
                                sink.event(&Event::Approved { job: job.name.clone() });
                                JobState::Done(JobStatus::Success)
                            }
                            Approval::Declined(reason) => {
                                sink.event(&Event::JobNotRun { job: job.name.clone(), reason });
                                JobState::Done(JobStatus::NotRun)
                            }
                        },
                        JobKind::NoOp => JobState::Done(JobStatus::Success),
                        JobKind::Build if config.jobs.contains_key(&job.name) => {
                            JobState::Running { started: 0, finished: 0, worst: JobStatus::Success }
                        }
                        JobKind::Build => {
                            sink.event(&Event::JobError {
                                job: job.name.clone(),
                                message: "the processed configuration has no such job".into(),
                            });
                            JobState::Done(JobStatus::Failed)
                        }
                    };
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, node_status)) = done_rx.recv() else { break };
            running -= 1;
            let total = nodes(config, jobs[i].kind, &jobs[i].name, request_for);
            if let JobState::Running { started, finished, worst } = &mut states[i] {
                *finished += 1;
                *worst = worse(*worst, node_status);
                // Canceled: nodes not started yet never will be.
                if *finished == total || (cancel.load(Ordering::Relaxed) && *finished == *started) {
                    states[i] = JobState::Done(*worst);
                }
            }
        }
    });
    for (job, state) in jobs.iter().zip(&states) {
        let status = match state {
            JobState::Done(s) => *s,
            _ => {
                let reason = "the run was canceled".to_owned();
                sink.event(&Event::JobNotRun { job: job.name.clone(), reason });
                JobStatus::NotRun
            }
        };
        match status {
            JobStatus::Canceled => overall = Status::Canceled,
            JobStatus::Success => {}
            _ if overall == Status::Success => overall = Status::Failed,
            _ => {}
        }
    }
    overall
}

/// How many nodes a build job runs (its request's `CIRCLE_NODE_TOTAL`); one for the others.
fn nodes(
    config: &ProcessedConfig,
    kind: JobKind,
    name: &str,
    request_for: &dyn Fn(&JobSpec, usize) -> ExecRequest,
) -> u32 {
    match (kind, config.jobs.get(name)) {
        (JobKind::Build, Some(spec)) => request_for(spec, 0).info.node_total.max(1),
        _ => 1,
    }
}

/// Starts one node of job `i` on its own thread; it reports `(i, status)` on `done` when it ends.
#[expect(clippy::too_many_arguments, reason = "the scheduler's state, passed down once; a struct would only rename it")]
fn start_node<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    i: usize,
    node: u32,
    config: &'env ProcessedConfig,
    job: &'env config_schema::plan::PlannedJob,
    request_for: &dyn Fn(&JobSpec, usize) -> ExecRequest,
    options: &WorkflowOptions,
    cancel: &'env AtomicBool,
    done: &mpsc::Sender<(usize, JobStatus)>,
) {
    let Some(spec) = config.jobs.get(&job.name) else { return };
    let mut req = request_for(spec, i);
    req.info.node_index = node;
    let sink = (options.sink_for)(&job.name, (req.info.node_total > 1).then_some(node));
    let done = done.clone();
    scope.spawn(move || {
        let status = match run_job(&req, &sink, cancel) {
            Ok(o) if o.status == Status::Success => JobStatus::Success,
            Ok(o) if o.status == Status::Canceled => JobStatus::Canceled,
            Ok(_) => JobStatus::Failed,
            Err(e) => {
                sink.event(&Event::JobError { job: job.name.clone(), message: req.secrets.mask_str(&e.to_string()) });
                JobStatus::Failed
            }
        };
        let _ = done.send((i, status));
    });
}

/// The status a job with nodes ending `a` and `b` ends with: canceled over failed over success.
fn worse(a: JobStatus, b: JobStatus) -> JobStatus {
    let rank = |s: JobStatus| match s {
        JobStatus::Success => 0,
        JobStatus::Failed => 1,
        _ => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// A status as `requires` writes it.
fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Success => "success",
        JobStatus::Failed => "failed",
        JobStatus::Canceled => "canceled",
        JobStatus::NotRun => "not_run",
        JobStatus::Terminal => "terminal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_ends_with_its_worst_node() {
        assert_eq!(worse(JobStatus::Success, JobStatus::Failed), JobStatus::Failed);
        assert_eq!(worse(JobStatus::Failed, JobStatus::Success), JobStatus::Failed);
        assert_eq!(worse(JobStatus::Failed, JobStatus::Canceled), JobStatus::Canceled);
        assert_eq!(worse(JobStatus::Success, JobStatus::Success), JobStatus::Success);
    }
}
