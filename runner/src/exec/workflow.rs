//! `runner exec --workflow W`: the workflow's jobs, as [`config_schema::plan`] orders and filters them for the
//! pipeline's branch or tag, run one after another (dependency order; no concurrency yet). A job runs when
//! each of its `requires` ended in one of the statuses it accepts (`success` unless written otherwise);
//! otherwise it is reported as not run. Approval jobs are approved on the spot (a local run has nobody else to
//! ask — reported as such) and no-op jobs succeed. Jobs of one run share a workflow ID, hence a workspace.
//! Ctrl-C ends the running job and marks the rest not run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use config_schema::plan::PlannedWorkflow;
use config_schema::spec::{JobKind, JobStatus};
use config_schema::{JobSpec, ProcessedConfig};

use super::{run_job, Event, EventSink, ExecRequest, Status};

/// Runs `workflow`; `request_for` builds each job's request (`n`: the job's place, from 0). Returns the
/// workflow's status: success when every job ran and succeeded.
pub fn run_workflow(
    workflow: &PlannedWorkflow,
    config: &ProcessedConfig,
    request_for: &dyn Fn(&JobSpec, usize) -> ExecRequest,
    sink: &Arc<dyn EventSink>,
    cancel: &AtomicBool,
) -> Status {
    let mut statuses: BTreeMap<&str, JobStatus> = BTreeMap::new();
    let mut overall = Status::Success;
    for (n, job) in workflow.jobs.iter().enumerate() {
        let blocked = job.requires.iter().find(|r| {
            let upstream = statuses.get(r.job.as_str()).copied().unwrap_or(JobStatus::NotRun);
            !r.statuses.iter().any(|s| *s == upstream || *s == JobStatus::Terminal)
        });
        let reason = if cancel.load(Ordering::Relaxed) {
            Some("the run was canceled".to_owned())
        } else {
            blocked.map(|r| {
                let upstream = statuses.get(r.job.as_str()).copied().unwrap_or(JobStatus::NotRun);
                let wanted: Vec<&str> = r.statuses.iter().map(|s| status_name(*s)).collect();
                format!("requires {} to end {}, it ended {}", r.job, wanted.join(" or "), status_name(upstream))
            })
        };
        if let Some(reason) = reason {
            sink.event(&Event::JobNotRun { job: job.name.clone(), reason });
            statuses.insert(&job.name, JobStatus::NotRun);
            if overall == Status::Success {
                overall = Status::Failed;
            }
            continue;
        }
        let status = match job.kind {
            JobKind::Approval => {
                sink.event(&Event::Approved { job: job.name.clone() });
                JobStatus::Success
            }
            JobKind::NoOp => JobStatus::Success,
            JobKind::Build => match config.jobs.get(&job.name) {
                Some(spec) => {
                    let req = request_for(spec, n);
                    match run_job(&req, sink, cancel) {
                        Ok(o) if o.status == Status::Success => JobStatus::Success,
                        Ok(o) if o.status == Status::Canceled => JobStatus::Canceled,
                        Ok(_) => JobStatus::Failed,
                        Err(e) => {
                            sink.event(&Event::JobError {
                                job: job.name.clone(),
                                message: req.secrets.mask_str(&e.to_string()),
                            });
                            JobStatus::Failed
                        }
                    }
                }
                None => {
                    sink.event(&Event::JobError {
                        job: job.name.clone(),
                        message: "the processed configuration has no such job".into(),
                    });
                    JobStatus::Failed
                }
            },
        };
        match status {
            JobStatus::Canceled => overall = Status::Canceled,
            JobStatus::Success => {}
            _ if overall == Status::Success => overall = Status::Failed,
            _ => {}
        }
        statuses.insert(&job.name, status);
    }
    overall
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
