//! Jobs: the queue and the workflow DAG. A job is `blocked` until its requirements end, then `queued` (or `on_hold`
//! for an approval, `success` for a no-op, `not_run` when a requirement ended in a status it does not accept);
//! [`Store::lease_job`] hands a queued job to exactly one runner (`running`, with a lease that heartbeats extend);
//! completion makes it `success`, `failed` or `canceled` and settles its workflow again. An expired lease
//! re-queues the job once (attempt + 1), then fails it with `runner lost` ([`Store::expire_leases`]).
//!
//! Exactly-once leasing: a read-only probe first (an idle long-poll must not write), then in one transaction a
//! pick of the oldest leasable job and `UPDATE … WHERE id = … AND state = 'queued'`: on PostgreSQL the pick takes
//! `FOR UPDATE OF j SKIP LOCKED`, so concurrent leases pick different rows (and a project's concurrency limit
//! is re-counted under its row lock); on SQLite the transaction runs under the single writer lock.

use std::collections::BTreeMap;

use config_schema::spec::{JobSpec, JobStatus, RequirementSpec};
use config_schema::wire::{JobOutcome, JobResult};
use serde::Serialize;
use sqlx::any::AnyRow;

use super::{col, now_ms, Backend, Result, Store, StoreError, WriteTx};

/// The message a job fails with when its runner stopped heartbeating twice.
pub const RUNNER_LOST: &str = "runner lost";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub workflow_id: i64,
    pub pipeline_id: i64,
    pub project_id: i64,
    pub number: i64,
    pub name: String,
    /// `build`, `approval` or `no-op`.
    pub kind: String,
    /// `blocked`, `on_hold`, `queued`, `running`, `success`, `failed`, `canceled` or `not_run`.
    pub state: String,
    pub attempt: i64,
    pub requeues: i64,
    pub resource_class: String,
    #[serde(skip)]
    pub requires_json: String,
    #[serde(skip)]
    pub contexts_json: String,
    #[serde(skip)]
    pub spec_json: Option<String>,
    pub runner_id: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl JobRow {
    pub fn spec(&self) -> Result<Option<JobSpec>> {
        self.spec_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|source| StoreError::Corrupt { what: "job spec", source })
    }

    pub fn contexts(&self) -> Result<Vec<String>> {
        serde_json::from_str(&self.contexts_json).map_err(|source| StoreError::Corrupt { what: "job contexts", source })
    }

    pub fn is_terminal(&self) -> bool {
        terminal_status(&self.state).is_some()
    }
}

const JOB_COLUMNS: &str = "id, workflow_id, pipeline_id, project_id, number, name, kind, state, attempt, requeues, \
                           resource_class, requires_json, contexts_json, spec_json, runner_id, lease_expires_at, \
                           cancel_requested, exit_code, message, started_at, finished_at";

fn read_job(row: &AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: col(row, "id")?,
        workflow_id: col(row, "workflow_id")?,
        pipeline_id: col(row, "pipeline_id")?,
        project_id: col(row, "project_id")?,
        number: col(row, "number")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        state: col(row, "state")?,
        attempt: col(row, "attempt")?,
        requeues: col(row, "requeues")?,
        resource_class: col(row, "resource_class")?,
        requires_json: col(row, "requires_json")?,
        contexts_json: col(row, "contexts_json")?,
        spec_json: col(row, "spec_json")?,
        runner_id: col(row, "runner_id")?,
        lease_expires_at: col(row, "lease_expires_at")?,
        cancel_requested: col::<i64>(row, "cancel_requested")? != 0,
        exit_code: col(row, "exit_code")?,
        message: col(row, "message")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
    })
}

/// The status `requires` sees for a finished job, `None` while it has not finished.
fn terminal_status(state: &str) -> Option<JobStatus> {
    match state {
        "success" => Some(JobStatus::Success),
        "failed" => Some(JobStatus::Failed),
        "canceled" => Some(JobStatus::Canceled),
        "not_run" => Some(JobStatus::NotRun),
        _ => None,
    }
}

/// What a heartbeat answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub lease_expires_at: i64,
    pub cancel: bool,
}

/// What [`Store::expire_leases`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub requeued: Vec<i64>,
    pub failed: Vec<i64>,
}

impl Store {
    pub async fn job(&self, id: i64) -> Result<JobRow> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => read_job(&row),
            None => Err(StoreError::NotFound(format!("job {id}"))),
        }
    }

    /// A pipeline's jobs in creation order.
    pub async fn pipeline_jobs(&self, pipeline_id: i64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE pipeline_id = $1 ORDER BY id"))
            .bind(pipeline_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read_job).collect()
    }

    /// Leases the oldest queued job a runner with `resource_classes` may take (any when empty) to `runner_id`
    /// until `ttl_ms` from now; `None` when there is none. At most one caller ever gets a given job. A project
    /// with a concurrency limit has at most that many jobs running: its other jobs stay queued.
    pub async fn lease_job(&self, runner_id: i64, resource_classes: &[String], ttl_ms: i64) -> Result<Option<JobRow>> {
        let mut candidates = String::from(
            "FROM jobs j JOIN projects p ON p.id = j.project_id WHERE j.state = 'queued' AND j.kind = 'build' AND \
             (p.max_concurrent_jobs IS NULL OR (SELECT COUNT(*) FROM jobs r WHERE r.project_id = j.project_id AND \
             r.state = 'running') < p.max_concurrent_jobs)",
        );
        if !resource_classes.is_empty() {
            let placeholders: Vec<String> = (1..=resource_classes.len()).map(|i| format!("${i}")).collect();
            candidates.push_str(&format!(" AND j.resource_class IN ({})", placeholders.join(", ")));
        }
        // Read first: an idle long-poll looks every second, and a write transaction per look would take SQLite's
        // single writer (and make PostgreSQL commit) for nothing.
        let probe = format!("SELECT j.id {candidates} LIMIT 1");
        let mut check = sqlx::query(&probe);
        for class in resource_classes {
            check = check.bind(class);
        }
        if check.fetch_optional(&self.pool).await?.is_none() {
            return Ok(None);
        }
        // PostgreSQL: concurrent leases skip each other's rows instead of waiting for them.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF j SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let pick = format!(
            "SELECT j.id, j.project_id, p.max_concurrent_jobs {candidates} ORDER BY j.queued_at, j.id LIMIT 1{lock}"
        );
        let mut query = sqlx::query(&pick);
        for class in resource_classes {
            query = query.bind(class);
        }
        let mut w = self.write().await?;
        let Some(row) = query.fetch_optional(&mut *w.tx).await? else {
            w.commit().await?;
            return Ok(None);
        };
        let job_id: i64 = col(&row, "id")?;
        let project_id: i64 = col(&row, "project_id")?;
        let limit: Option<i64> = col(&row, "max_concurrent_jobs")?;
        if let (Some(limit), Backend::Postgres) = (limit, self.backend) {
            // Two leases of one project's jobs each counted the other's job as queued: the project row's lock
            // orders them, and the count after it sees what the other committed. (SQLite has one writer.)
            sqlx::query("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
                .bind(project_id)
                .execute(&mut *w.tx)
                .await?;
            let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE project_id = $1 AND state = 'running'")
                .bind(project_id)
                .fetch_one(&mut *w.tx)
                .await?;
            if col::<i64>(&row, "n")? >= limit {
                w.tx.rollback().await?;
                return Ok(None);
            }
        }
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'running', runner_id = $1, lease_expires_at = $2, started_at = $3, \
             cancel_requested = 0 WHERE id = $4 AND state = 'queued' RETURNING {JOB_COLUMNS}"
        ))
        .bind(runner_id)
        .bind(now + ttl_ms)
        .bind(now)
        .bind(job_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        let job = row.as_ref().map(read_job).transpose()?;
        if job.is_some() {
            sqlx::query("UPDATE runners SET last_seen_at = $1 WHERE id = $2")
                .bind(now)
                .bind(runner_id)
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(job)
    }

    /// The job if it is running under `runner_id`'s lease, else [`StoreError::LeaseLost`].
    pub async fn leased_job(&self, job_id: i64, runner_id: i64) -> Result<JobRow> {
        let job = self.job(job_id).await?;
        if job.state != "running" || job.runner_id != Some(runner_id) {
            return Err(StoreError::LeaseLost(job_id));
        }
        Ok(job)
    }

    /// Extends `runner_id`'s lease on `job_id` to `ttl_ms` from now; says whether the job was canceled.
    pub async fn heartbeat(&self, job_id: i64, runner_id: i64, ttl_ms: i64) -> Result<Heartbeat> {
        let now = now_ms();
        let mut w = self.write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND runner_id = $3 AND state = 'running' AND \
             lease_expires_at >= $4 RETURNING cancel_requested",
        )
        .bind(now + ttl_ms)
        .bind(job_id)
        .bind(runner_id)
        .bind(now)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::LeaseLost(job_id));
        };
        let cancel = col::<i64>(&row, "cancel_requested")? != 0;
        sqlx::query("UPDATE runners SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(runner_id)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(Heartbeat { lease_expires_at: now + ttl_ms, cancel })
    }

    /// Records `runner_id`'s result for `job_id` and settles the workflow. Returns the number of jobs queued in
    /// the workflow afterwards (to wake runners). A repeated identical result changes nothing.
    pub async fn complete_job(&self, job_id: i64, runner_id: i64, result: &JobResult) -> Result<usize> {
        let mut w = self.write().await?;
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(job_id)
            .fetch_optional(&mut *w.tx)
            .await?;
        let job = match row {
            Some(row) => read_job(&row)?,
            None => return Err(StoreError::NotFound(format!("job {job_id}"))),
        };
        if job.runner_id != Some(runner_id) {
            return Err(StoreError::LeaseLost(job_id));
        }
        if job.state != "running" {
            // Already completed by this runner: the retry of a result whose answer was lost.
            return if job.is_terminal() { Ok(0) } else { Err(StoreError::LeaseLost(job_id)) };
        }
        let (state, message) = match result.status {
            JobOutcome::Success => ("success", result.message.clone()),
            JobOutcome::Failed => ("failed", result.message.clone()),
            JobOutcome::Canceled => ("canceled", result.message.clone()),
            JobOutcome::TimedOut => ("failed", Some(result.message.clone().unwrap_or_else(|| "timed out".into()))),
            JobOutcome::InfrastructureFail if job.requeues == 0 => {
                requeue(&mut w, job_id, now_ms()).await?;
                let queued = settle_workflow(&mut w, job.workflow_id).await?;
                w.commit().await?;
                return Ok(queued);
            }
            JobOutcome::InfrastructureFail => {
                ("failed", Some(result.message.clone().unwrap_or_else(|| "infrastructure failure".into())))
            }
        };
        sqlx::query(
            "UPDATE jobs SET state = $1, exit_code = $2, message = $3, finished_at = $4, lease_expires_at = NULL \
             WHERE id = $5",
        )
        .bind(state)
        .bind(result.exit_code.map(i64::from))
        .bind(message)
        .bind(now_ms())
        .bind(job_id)
        .execute(&mut *w.tx)
        .await?;
        let queued = settle_workflow(&mut w, job.workflow_id).await?;
        w.commit().await?;
        Ok(queued)
    }

    /// Re-queues jobs whose lease expired before `now` for the first time and fails the others with
    /// [`RUNNER_LOST`].
    pub async fn expire_leases(&self, now: i64) -> Result<Expired> {
        // Every coordinator looks once a second: read first, write only when a lease has expired.
        let expired = sqlx::query("SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < $1 LIMIT 1")
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if expired.is_none() {
            return Ok(Expired::default());
        }
        let mut w = self.write().await?;
        let rows = sqlx::query(
            "SELECT id, workflow_id, requeues FROM jobs WHERE state = 'running' AND lease_expires_at < $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut out = Expired::default();
        for row in &rows {
            let id: i64 = col(row, "id")?;
            let workflow_id: i64 = col(row, "workflow_id")?;
            if col::<i64>(row, "requeues")? == 0 {
                requeue(&mut w, id, now).await?;
                out.requeued.push(id);
            } else {
                sqlx::query(
                    "UPDATE jobs SET state = 'failed', message = $1, finished_at = $2, lease_expires_at = NULL WHERE \
                     id = $3",
                )
                .bind(RUNNER_LOST)
                .bind(now)
                .bind(id)
                .execute(&mut *w.tx)
                .await?;
                settle_workflow(&mut w, workflow_id).await?;
                out.failed.push(id);
            }
        }
        w.commit().await?;
        Ok(out)
    }

    /// Approves an `on_hold` approval job (it succeeds, and its dependents may start).
    pub async fn approve_job(&self, job_id: i64) -> Result<usize> {
        let mut w = self.write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'success', finished_at = $1 WHERE id = $2 AND state = 'on_hold' AND kind = \
             'approval' RETURNING workflow_id",
        )
        .bind(now_ms())
        .bind(job_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Conflict(format!("job {job_id} is not an approval waiting on hold")));
        };
        let queued = settle_workflow(&mut w, col(&row, "workflow_id")?).await?;
        w.commit().await?;
        Ok(queued)
    }

    /// Cancels the unfinished pipelines of `branch` in the project older than `newer_than` (auto-cancel of
    /// redundant pipelines); returns their IDs.
    pub async fn cancel_redundant(&self, project_id: i64, branch: &str, newer_than: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT DISTINCT j.id, j.pipeline_id FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id WHERE \
             p.project_id = $1 AND p.branch = $2 AND p.tag IS NULL AND p.id < $3 AND p.state = 'running' AND \
             j.state IN ('blocked', 'on_hold', 'queued', 'running') ORDER BY j.id",
        )
        .bind(project_id)
        .bind(branch)
        .bind(newer_than)
        .fetch_all(&self.pool)
        .await?;
        let mut pipelines = Vec::new();
        for row in &rows {
            self.cancel_job(col(row, "id")?).await?;
            let pipeline: i64 = col(row, "pipeline_id")?;
            if !pipelines.contains(&pipeline) {
                pipelines.push(pipeline);
            }
        }
        Ok(pipelines)
    }

    /// Cancels a job: one not yet running ends `canceled` at once; a running one is told so by its next
    /// heartbeat and reports `canceled` itself.
    pub async fn cancel_job(&self, job_id: i64) -> Result<()> {
        let mut w = self.write().await?;
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE jobs SET state = 'canceled', finished_at = $1 WHERE id = $2 AND state IN ('blocked', 'on_hold', \
             'queued') RETURNING workflow_id",
        )
        .bind(now)
        .bind(job_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        match row {
            Some(row) => {
                settle_workflow(&mut w, col(&row, "workflow_id")?).await?;
            }
            None => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'")
                    .bind(job_id)
                    .execute(&mut *w.tx)
                    .await?;
            }
        }
        w.commit().await
    }
}

async fn requeue(w: &mut WriteTx, job_id: i64, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempt = attempt + 1, requeues = requeues + 1, runner_id = NULL, \
         lease_expires_at = NULL, started_at = NULL, queued_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(job_id)
    .execute(&mut *w.tx)
    .await?;
    Ok(())
}

struct DagJob {
    id: i64,
    name: String,
    kind: String,
    state: String,
    requires: Vec<RequirementSpec>,
}

/// Moves the workflow's jobs as far as their requirements allow (blocked → queued / on_hold / success for a
/// no-op / not_run), then recomputes the workflow's and the pipeline's states. Returns how many build jobs of
/// the workflow are queued afterwards.
pub(crate) async fn settle_workflow(w: &mut WriteTx, workflow_id: i64) -> Result<usize> {
    let rows = sqlx::query("SELECT id, name, kind, state, requires_json FROM jobs WHERE workflow_id = $1 ORDER BY id")
        .bind(workflow_id)
        .fetch_all(&mut *w.tx)
        .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        let requires_json: String = col(row, "requires_json")?;
        jobs.push(DagJob {
            id: col(row, "id")?,
            name: col(row, "name")?,
            kind: col(row, "kind")?,
            state: col(row, "state")?,
            requires: serde_json::from_str(&requires_json)
                .map_err(|source| StoreError::Corrupt { what: "job requires", source })?,
        });
    }
    let mut changes: BTreeMap<usize, &'static str> = BTreeMap::new();
    loop {
        let mut changed = false;
        for i in 0..jobs.len() {
            let next = match jobs[i].state.as_str() {
                "queued" if jobs[i].kind == "no-op" => Some("success"),
                "blocked" => blocked_next(&jobs, i),
                _ => None,
            };
            if let Some(next) = next {
                jobs[i].state = next.to_string();
                changes.insert(i, next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let now = now_ms();
    for (&i, &state) in &changes {
        let queued_at = (state == "queued").then_some(now);
        let finished_at = terminal_status(state).is_some().then_some(now);
        sqlx::query("UPDATE jobs SET state = $1, queued_at = COALESCE($2, queued_at), finished_at = $3 WHERE id = $4")
            .bind(state)
            .bind(queued_at)
            .bind(finished_at)
            .bind(jobs[i].id)
            .execute(&mut *w.tx)
            .await?;
    }
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    let workflow_state = aggregate_state(&states);
    let before =
        sqlx::query("SELECT state FROM workflows WHERE id = $1").bind(workflow_id).fetch_one(&mut *w.tx).await?;
    let state_before: String = col(&before, "state")?;
    let row = sqlx::query("UPDATE workflows SET state = $1, updated_at = $2 WHERE id = $3 RETURNING pipeline_id")
        .bind(workflow_state)
        .bind(now)
        .bind(workflow_id)
        .fetch_one(&mut *w.tx)
        .await?;
    let pipeline_id: i64 = col(&row, "pipeline_id")?;
    if state_before != workflow_state {
        // GitHub is told in the transaction's wake (the commit status outbox).
        super::status_outbox::enqueue_status(w, pipeline_id).await?;
    }
    // A workflow that was rerun no longer counts: its rerun does.
    let rows = sqlx::query(
        "SELECT state FROM workflows w WHERE pipeline_id = $1 AND NOT EXISTS (SELECT 1 FROM workflows r WHERE \
         r.rerun_of = w.id)",
    )
    .bind(pipeline_id)
    .fetch_all(&mut *w.tx)
    .await?;
    let workflow_states = rows.iter().map(|r| col::<String>(r, "state")).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&str> = workflow_states.iter().map(String::as_str).collect();
    let pipeline_state = match aggregate_state(&refs) {
        "on_hold" => "running",
        s => s,
    };
    sqlx::query("UPDATE pipelines SET state = $1, updated_at = $2 WHERE id = $3 AND state = 'running'")
        .bind(pipeline_state)
        .bind(now)
        .bind(pipeline_id)
        .execute(&mut *w.tx)
        .await?;
    Ok(jobs.iter().filter(|j| j.state == "queued" && j.kind == "build").count())
}

/// Where blocked job `i` goes once every requirement has ended: started when each ended in a status it
/// accepts, `not_run` otherwise; `None` while some requirement is unfinished.
fn blocked_next(jobs: &[DagJob], i: usize) -> Option<&'static str> {
    let mut satisfied = true;
    for r in &jobs[i].requires {
        // A requirement missing from the workflow was filtered out by the plan: it did not run.
        let status = match jobs.iter().find(|j| j.name == r.job) {
            Some(up) => terminal_status(&up.state)?,
            None => JobStatus::NotRun,
        };
        if !r.statuses.iter().any(|s| *s == status || *s == JobStatus::Terminal) {
            satisfied = false;
        }
    }
    Some(match (satisfied, jobs[i].kind.as_str()) {
        (false, _) => "not_run",
        (true, "approval") => "on_hold",
        (true, "no-op") => "success",
        (true, _) => "queued",
    })
}

/// The state of a workflow from its jobs' (or a pipeline from its workflows'): running while anything can still
/// happen (`on_hold` when only approvals are awaited), then `failed` if anything failed, `canceled` if anything
/// was canceled, else `success`.
fn aggregate_state(states: &[&str]) -> &'static str {
    let open = |s: &&str| matches!(*s, "blocked" | "queued" | "running" | "on_hold");
    if states.iter().any(open) {
        if states.iter().filter(|s| open(s)).all(|s| matches!(*s, "on_hold" | "blocked")) && states.contains(&"on_hold")
        {
            return "on_hold";
        }
        return "running";
    }
    if states.contains(&"failed") {
        "failed"
    } else if states.contains(&"canceled") {
        "canceled"
    } else {
        "success"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use config_schema::plan::Trigger;

    use super::*;
    use crate::store::pipelines::{PipelineTrigger, Planned};
    use crate::store::projects::NewProject;
    use crate::store::testing;

    pub(crate) fn planned(yaml: &str, branch: &str) -> Planned {
        let config = config_schema::process_text(yaml, "config.yml", &Default::default(), &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = config_schema::plan(&config, &Trigger::Branch(branch.into())).unwrap_or_else(|e| panic!("{e}"));
        Planned::Ready { config, plan }
    }

    pub(crate) async fn project(store: &Store) -> i64 {
        let p = NewProject {
            slug: "acme/app".into(),
            clone_url: "https://example.invalid/acme/app.git".into(),
            local_path: None,
            webhook_secret_enc: None,
            default_branch: "main".into(),
            fork_secrets: false,
        };
        store.add_project(&p).await.unwrap_or_else(|e| panic!("{e}")).id
    }

    fn trigger() -> PipelineTrigger {
        PipelineTrigger { source: "api".into(), branch: Some("main".into()), sha: "abc".into(), ..Default::default() }
    }

    const DIAMOND: &str =
        "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs:\n\
        \x20     - j: {name: build}\n      - j: {name: test, requires: [build]}\n\
        \x20     - j: {name: lint, requires: [build]}\n      - j: {name: deploy, requires: [test, lint]}\n\
        \x20     - j: {name: cleanup, requires: [{deploy: [failed, not_run]}]}\n";

    fn result(job: &JobRow, status: JobOutcome) -> JobResult {
        JobResult {
            job_id: job.id.to_string(),
            status,
            exit_code: None,
            message: None,
            started_at: 0,
            finished_at: 0,
            steps: vec![],
        }
    }

    async fn states(store: &Store, pipeline: i64) -> Vec<String> {
        let jobs = store.pipeline_jobs(pipeline).await.unwrap_or_else(|e| panic!("{e}"));
        jobs.iter().map(|j| format!("{}:{}", j.name, j.state)).collect()
    }

    #[tokio::test]
    async fn the_dag_unblocks_on_success_and_marks_not_run_after_a_failure() {
        for db in testing::databases().await {
            let s = &db.store;
            let project = project(s).await;
            let created = s
                .create_pipeline(project, &trigger(), &planned(DIAMOND, "main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(created.number, 1);
            assert_eq!(created.queued_jobs, 1);
            let p = created.pipeline_id;
            assert_eq!(
                states(s, p).await,
                ["build:queued", "test:blocked", "lint:blocked", "deploy:blocked", "cleanup:blocked"]
            );
            let build =
                s.lease_job(7, &[], 60_000).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no job"));
            assert_eq!((build.name.as_str(), build.state.as_str(), build.attempt), ("build", "running", 1));
            assert_eq!(
                s.complete_job(build.id, 7, &result(&build, JobOutcome::Success))
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
                2
            );
            // The same result again changes nothing; another runner's is refused.
            assert_eq!(s.complete_job(build.id, 7, &result(&build, JobOutcome::Success)).await.ok(), Some(0));
            assert!(matches!(
                s.complete_job(build.id, 8, &result(&build, JobOutcome::Success)).await,
                Err(StoreError::LeaseLost(_))
            ));
            let test = s.lease_job(7, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no test"));
            let lint = s.lease_job(7, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no lint"));
            s.complete_job(test.id, 7, &result(&test, JobOutcome::Success)).await.unwrap_or_else(|e| panic!("{e}"));
            s.complete_job(lint.id, 7, &result(&lint, JobOutcome::Failed)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                states(s, p).await,
                ["build:success", "test:success", "lint:failed", "deploy:not_run", "cleanup:queued"],
                "{}",
                db.name
            );
            assert_eq!(s.pipeline(p).await.map(|p| p.state).ok().as_deref(), Some("running"));
            let cleanup = s.lease_job(7, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no cleanup"));
            s.complete_job(cleanup.id, 7, &result(&cleanup, JobOutcome::Success))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.pipeline(p).await.map(|p| p.state).ok().as_deref(), Some("failed"));
            let workflows = s.workflows(p).await.unwrap_or_default();
            assert_eq!(workflows.iter().map(|w| w.state.as_str()).collect::<Vec<_>>(), ["failed"]);
        }
    }

    #[tokio::test]
    async fn approvals_hold_until_approved_and_config_errors_store_their_message() {
        for db in testing::databases().await {
            let s = &db.store;
            let project = project(s).await;
            let yaml =
                "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    \
                        jobs:\n      - hold: {type: approval}\n      - j: {requires: [hold]}\n";
            let created =
                s.create_pipeline(project, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(states(s, created.pipeline_id).await, ["hold:on_hold", "j:blocked"]);
            assert_eq!(s.workflows(created.pipeline_id).await.unwrap_or_default()[0].state, "on_hold");
            assert!(s.lease_job(1, &[], 1000).await.ok().flatten().is_none());
            let hold = s.pipeline_jobs(created.pipeline_id).await.unwrap_or_default()[0].id;
            assert_eq!(s.approve_job(hold).await.ok(), Some(1));
            assert!(matches!(s.approve_job(hold).await, Err(StoreError::Conflict(_))));
            assert_eq!(states(s, created.pipeline_id).await, ["hold:success", "j:queued"]);

            let broken = Planned::ConfigError("config.yml:3:5: jobs.j: unknown key `dokcer`".into());
            let created = s.create_pipeline(project, &trigger(), &broken).await.unwrap_or_else(|e| panic!("{e}"));
            let p = s.pipeline(created.pipeline_id).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.number, p.state.as_str()), (2, "config_error"));
            assert_eq!(p.error.as_deref(), Some("config.yml:3:5: jobs.j: unknown key `dokcer`"));
        }
    }

    #[tokio::test]
    async fn an_expired_lease_requeues_once_then_fails_with_runner_lost() {
        for db in testing::databases().await {
            let s = &db.store;
            let project = project(s).await;
            let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs: [j]\n";
            let created =
                s.create_pipeline(project, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let job = s.lease_job(1, &[], 1000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
            let later = job.lease_expires_at.unwrap_or_default() + 1;
            assert_eq!(s.expire_leases(later).await.ok().map(|e| e.requeued), Some(vec![job.id]));
            assert!(matches!(s.heartbeat(job.id, 1, 1000).await, Err(StoreError::LeaseLost(_))));
            let again = s.lease_job(2, &[], 1000).await.ok().flatten().unwrap_or_else(|| panic!("not requeued"));
            assert_eq!((again.id, again.attempt), (job.id, 2));
            let hb = s.heartbeat(job.id, 2, 1000).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(!hb.cancel);
            let later = hb.lease_expires_at + 1;
            assert_eq!(s.expire_leases(later).await.ok().map(|e| e.failed), Some(vec![job.id]));
            let failed = s.job(job.id).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((failed.state.as_str(), failed.message.as_deref()), ("failed", Some(RUNNER_LOST)));
            assert_eq!(s.pipeline(created.pipeline_id).await.map(|p| p.state).ok().as_deref(), Some("failed"));
        }
    }

    #[tokio::test]
    async fn resource_classes_route_jobs_and_cancel_reaches_the_heartbeat() {
        for db in testing::databases().await {
            let s = &db.store;
            let project = project(s).await;
            let yaml =
                "version: 2.1\njobs:\n  j: {docker: [{image: x}], resource_class: large, steps: [{run: 'true'}]}\n\
                        workflows:\n  w:\n    jobs: [j]\n";
            s.create_pipeline(project, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(s.lease_job(1, &["medium".into()], 1000).await.ok().flatten().is_none());
            let job = s.lease_job(1, &["medium".into(), "large".into()], 60_000).await.ok().flatten();
            let job = job.unwrap_or_else(|| panic!("{}: large job not leased", db.name));
            s.cancel_job(job.id).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(s.heartbeat(job.id, 1, 60_000).await.map(|h| h.cancel).unwrap_or(false));
        }
    }

    /// Regression: every look of an idle long-poll (once a second per runner) opened a write transaction.
    #[tokio::test]
    async fn an_idle_lease_reads_without_writing() {
        for db in testing::databases().await {
            let s = &db.store;
            let project = project(s).await;
            let before = s.write_transactions();
            for _ in 0..3 {
                assert!(s.lease_job(1, &[], 1000).await.unwrap_or_else(|e| panic!("{e}")).is_none());
            }
            assert_eq!(s.write_transactions(), before, "{}: an empty queue was written to", db.name);
            let yaml =
                "version: 2.1\njobs:\n  j: {docker: [{image: x}], resource_class: large, steps: [{run: 'true'}]}\n\
                        workflows:\n  w:\n    jobs: [j]\n";
            s.create_pipeline(project, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let before = s.write_transactions();
            assert!(s.lease_job(1, &["medium".into()], 1000).await.ok().flatten().is_none());
            assert_eq!(s.expire_leases(now_ms()).await.ok(), Some(Expired::default()));
            assert_eq!(s.write_transactions(), before, "{}: a queue without a matching job was written to", db.name);
            let job = s.lease_job(1, &["large".into()], 1000).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(job.map(|j| j.state).as_deref(), Some("running"), "{}", db.name);
        }
    }

    /// A project limited to 2 running jobs: 10 runners at once lease 2 of its 5 queued jobs; a third starts when
    /// one ends. Other projects are not held back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_projects_concurrency_limit_keeps_its_other_jobs_queued() {
        for db in testing::databases().await {
            let (s, name) = (Arc::new(db.store.clone()), db.name);
            let limited = project(&s).await;
            let p = s.set_project_options("acme/app", None, Some(Some(2))).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.max_concurrent_jobs, p.auto_cancel_redundant), (Some(2), false), "{name}");
            let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs: [j]\n";
            for _ in 0..5 {
                s.create_pipeline(limited, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            }
            let mut tasks = Vec::new();
            for runner in 0..10 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move { s.lease_job(runner, &[], 60_000).await }));
            }
            let mut leased = Vec::new();
            for t in tasks {
                if let Some(job) = t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{name}: {e}")) {
                    leased.push(job);
                }
            }
            assert_eq!(leased.len(), 2, "{name}");
            let mut other = crate::store::projects::tests::new_project("acme/other");
            other.webhook_secret_enc = None;
            let other = s.add_project(&other).await.unwrap_or_else(|e| panic!("{e}")).id;
            s.create_pipeline(other, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let next = s.lease_job(50, &[], 60_000).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(next.map(|j| j.project_id), Some(other), "{name}: another project's job is not held back");
            assert!(s.lease_job(51, &[], 60_000).await.ok().flatten().is_none(), "{name}");
            let done = &leased[0];
            let result = result(done, JobOutcome::Success);
            s.complete_job(done.id, done.runner_id.unwrap_or_default(), &result)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let third = s.lease_job(52, &[], 60_000).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(third.map(|j| j.project_id), Some(limited), "{name}");
            let p = s.set_project_options("acme/app", Some(true), Some(None)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((p.max_concurrent_jobs, p.auto_cancel_redundant), (None, true), "{name}");
        }
    }

    /// 20 runners lease concurrently from 50 queued jobs: every job is leased exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_concurrent_runners_lease_each_job_exactly_once() {
        for db in testing::databases().await {
            let s = Arc::new(db.store.clone());
            let project = project(&s).await;
            let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs: [j]\n";
            for _ in 0..50 {
                s.create_pipeline(project, &trigger(), &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            }
            let mut tasks = Vec::new();
            for runner in 0..20 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(job) = s.lease_job(runner, &[], 60_000).await.unwrap_or_else(|e| panic!("{e}")) {
                        got.push((job.id, runner));
                    }
                    got
                }));
            }
            let mut leased = Vec::new();
            for t in tasks {
                leased.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
            }
            let mut ids: Vec<i64> = leased.iter().map(|(id, _)| *id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!((leased.len(), ids.len()), (50, 50), "{}", db.name);
            for (id, runner) in leased {
                assert_eq!(s.job(id).await.ok().and_then(|j| j.runner_id), Some(runner), "{}", db.name);
            }
        }
    }
}
