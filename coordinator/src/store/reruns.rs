//! Reruns (CircleCI's "rerun workflow" and "rerun from failed"): a finished workflow is run again as a new
//! workflow of the same pipeline whose `rerun_of` names it. The jobs are the stored ones (the processed
//! configuration is not read again): every job for a whole rerun; for a rerun from failed, the jobs that did not
//! succeed and every job that requires one of them, transitively, while the others are copied as `success` with
//! `copied_from` naming the job that ran (its workspace layers reach the rerun jobs through it). The pipeline is
//! `running` again, and its state follows the newest workflow of each name from then on.

use std::collections::BTreeSet;

use config_schema::spec::RequirementSpec;
use serde::{Deserialize, Serialize};

use super::jobs::settle_workflow;
use super::pipelines::next_counter;
use super::{col, now_ms, Backend, Result, Store, StoreError, WriteTx};

/// Which jobs a rerun runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RerunScope {
    /// Every job of the workflow.
    Workflow,
    /// The jobs that did not succeed and the jobs that require them.
    Failed,
}

/// A workflow made by a rerun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rerun {
    pub pipeline_id: i64,
    pub workflow_id: i64,
    pub rerun_of: i64,
    /// Jobs queued at once (runners should be woken).
    pub queued_jobs: usize,
}

struct OldJob {
    id: i64,
    copied_from: Option<i64>,
    name: String,
    kind: String,
    state: String,
    resource_class: String,
    requires_json: String,
    contexts_json: String,
    spec_json: Option<String>,
    requires: Vec<RequirementSpec>,
}

impl Store {
    /// Reruns workflow `workflow_id` (see the module doc).
    pub async fn rerun_workflow(&self, workflow_id: i64, scope: RerunScope) -> Result<Rerun> {
        let mut w = self.write().await?;
        let rerun = rerun_in(&mut w, self.backend, workflow_id, scope).await?;
        w.commit().await?;
        Ok(rerun)
    }

    /// Reruns the newest workflow of each name in pipeline `pipeline_id` (for [`RerunScope::Failed`]: those that
    /// did not succeed), in one transaction.
    pub async fn rerun_pipeline(&self, pipeline_id: i64, scope: RerunScope) -> Result<Vec<Rerun>> {
        let mut w = self.write().await?;
        let exists =
            sqlx::query("SELECT id FROM pipelines WHERE id = $1").bind(pipeline_id).fetch_optional(&mut *w.tx).await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("pipeline {pipeline_id}")));
        }
        let rows = sqlx::query(
            "SELECT id, state FROM workflows w WHERE pipeline_id = $1 AND NOT EXISTS (SELECT 1 FROM workflows r \
             WHERE r.rerun_of = w.id) ORDER BY id",
        )
        .bind(pipeline_id)
        .fetch_all(&mut *w.tx)
        .await?;
        let mut reruns = Vec::new();
        for row in &rows {
            let state: String = col(row, "state")?;
            if scope == RerunScope::Failed && state == "success" {
                continue;
            }
            reruns.push(rerun_in(&mut w, self.backend, col(row, "id")?, scope).await?);
        }
        if reruns.is_empty() {
            let why = if rows.is_empty() {
                "has no workflows (a configuration error?): fix the configuration and trigger a new pipeline"
            } else {
                "has no failed workflow: rerun it whole instead"
            };
            return Err(StoreError::Conflict(format!("pipeline {pipeline_id} {why}")));
        }
        w.commit().await?;
        Ok(reruns)
    }
}

async fn rerun_in(w: &mut WriteTx, backend: Backend, workflow_id: i64, scope: RerunScope) -> Result<Rerun> {
    // PostgreSQL: two reruns of one workflow at once would both pass the checks below without the row lock.
    let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
    let row = sqlx::query(&format!(
        "SELECT w.pipeline_id, w.name, w.state, p.project_id FROM workflows w JOIN pipelines p ON p.id = \
         w.pipeline_id WHERE w.id = $1{lock}"
    ))
    .bind(workflow_id)
    .fetch_optional(&mut *w.tx)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(format!("workflow {workflow_id}")));
    };
    let pipeline_id: i64 = col(&row, "pipeline_id")?;
    let project_id: i64 = col(&row, "project_id")?;
    let name: String = col(&row, "name")?;
    let state: String = col(&row, "state")?;
    if matches!(state.as_str(), "running" | "on_hold") {
        return Err(StoreError::Conflict(format!(
            "workflow {workflow_id} ({name}) has not finished: cancel it first or wait for it"
        )));
    }
    if scope == RerunScope::Failed && state == "success" {
        return Err(StoreError::Conflict(format!(
            "workflow {workflow_id} ({name}) succeeded: nothing failed to rerun; rerun the whole workflow instead"
        )));
    }
    let newer = sqlx::query("SELECT id FROM workflows WHERE rerun_of = $1")
        .bind(workflow_id)
        .fetch_optional(&mut *w.tx)
        .await?;
    if let Some(newer) = newer {
        return Err(StoreError::Conflict(format!(
            "workflow {workflow_id} ({name}) was rerun already as workflow {}: rerun that one",
            col::<i64>(&newer, "id")?
        )));
    }
    let rows = sqlx::query(
        "SELECT id, copied_from, name, kind, state, resource_class, requires_json, contexts_json, spec_json FROM \
         jobs WHERE workflow_id = $1 ORDER BY id",
    )
    .bind(workflow_id)
    .fetch_all(&mut *w.tx)
    .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        let requires_json: String = col(r, "requires_json")?;
        jobs.push(OldJob {
            id: col(r, "id")?,
            copied_from: col(r, "copied_from")?,
            name: col(r, "name")?,
            kind: col(r, "kind")?,
            state: col(r, "state")?,
            resource_class: col(r, "resource_class")?,
            requires: serde_json::from_str(&requires_json)
                .map_err(|source| StoreError::Corrupt { what: "job requires", source })?,
            requires_json,
            contexts_json: col(r, "contexts_json")?,
            spec_json: col(r, "spec_json")?,
        });
    }
    let again = jobs_to_run_again(&jobs, scope);
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO workflows (pipeline_id, name, state, created_at, updated_at, rerun_of) VALUES ($1, $2, \
         'running', $3, $3, $4) RETURNING id",
    )
    .bind(pipeline_id)
    .bind(&name)
    .bind(now)
    .bind(workflow_id)
    .fetch_one(&mut *w.tx)
    .await?;
    let new_workflow: i64 = col(&row, "id")?;
    for job in &jobs {
        let number = next_counter(w, project_id, "job_counter").await?;
        let run = again.contains(job.name.as_str());
        let state = match (run, job.requires.is_empty(), job.kind.as_str()) {
            (false, _, _) => "success",
            (true, false, _) => "blocked",
            (true, true, "approval") => "on_hold",
            (true, true, _) => "queued",
        };
        let copied_from = (!run).then(|| job.copied_from.unwrap_or(job.id));
        sqlx::query(
            "INSERT INTO jobs (workflow_id, pipeline_id, project_id, number, name, kind, state, resource_class, \
             requires_json, contexts_json, spec_json, queued_at, finished_at, created_at, copied_from) VALUES ($1, \
             $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(new_workflow)
        .bind(pipeline_id)
        .bind(project_id)
        .bind(number)
        .bind(&job.name)
        .bind(&job.kind)
        .bind(state)
        .bind(&job.resource_class)
        .bind(&job.requires_json)
        .bind(&job.contexts_json)
        .bind(&job.spec_json)
        .bind((state == "queued").then_some(now))
        .bind((state == "success").then_some(now))
        .bind(now)
        .bind(copied_from)
        .execute(&mut *w.tx)
        .await?;
    }
    sqlx::query("UPDATE pipelines SET state = 'running', updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(pipeline_id)
        .execute(&mut *w.tx)
        .await?;
    let queued_jobs = settle_workflow(w, new_workflow).await?;
    super::status_outbox::enqueue_status(w, pipeline_id).await?;
    tracing::info!(workflow.id = new_workflow, rerun_of = workflow_id, ?scope, jobs = again.len(), "workflow rerun");
    Ok(Rerun { pipeline_id, workflow_id: new_workflow, rerun_of: workflow_id, queued_jobs })
}

/// The names of the jobs a rerun runs: all of them, or those that did not succeed and, transitively, the jobs
/// that require one of those.
fn jobs_to_run_again(jobs: &[OldJob], scope: RerunScope) -> BTreeSet<&str> {
    let mut again: BTreeSet<&str> = match scope {
        RerunScope::Workflow => return jobs.iter().map(|j| j.name.as_str()).collect(),
        RerunScope::Failed => jobs.iter().filter(|j| j.state != "success").map(|j| j.name.as_str()).collect(),
    };
    loop {
        let before = again.len();
        for job in jobs {
            if job.requires.iter().any(|r| again.contains(r.job.as_str())) {
                again.insert(job.name.as_str());
            }
        }
        if again.len() == before {
            return again;
        }
    }
}

#[cfg(test)]
mod tests {
    use config_schema::wire::{JobOutcome, JobResult};

    use super::*;
    use crate::store::jobs::tests::{planned, project};
    use crate::store::pipelines::PipelineTrigger;
    use crate::store::testing;

    const CHAIN: &str =
        "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    \
                         jobs:\n      - j: {name: build}\n      - j: {name: test, requires: [build]}\n      - j: \
                         {name: deploy, requires: [test]}\n";

    fn result(id: i64, status: JobOutcome) -> JobResult {
        JobResult {
            job_id: id.to_string(),
            status,
            exit_code: None,
            message: None,
            started_at: 0,
            finished_at: 0,
            steps: vec![],
        }
    }

    async fn run_next(s: &Store, status: JobOutcome) -> String {
        let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("nothing queued"));
        s.complete_job(job.id, 1, &result(job.id, status)).await.unwrap_or_else(|e| panic!("{e}"));
        job.name
    }

    async fn states(s: &Store, workflow: i64) -> Vec<String> {
        let w = s.workflow(workflow).await.unwrap_or_else(|e| panic!("{e}"));
        let jobs = s.pipeline_jobs(w.pipeline_id).await.unwrap_or_default();
        jobs.iter().filter(|j| j.workflow_id == workflow).map(|j| format!("{}:{}", j.name, j.state)).collect()
    }

    #[tokio::test]
    async fn rerun_from_failed_keeps_what_succeeded_and_a_whole_rerun_runs_everything() {
        for db in testing::databases().await {
            let (s, name) = (&db.store, db.name);
            let project = project(s).await;
            let trigger = PipelineTrigger { source: "api".into(), sha: "abc".into(), ..Default::default() };
            let created =
                s.create_pipeline(project, &trigger, &planned(CHAIN, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let first = s.workflows(created.pipeline_id).await.unwrap_or_default()[0].id;
            // Running: no rerun yet.
            assert!(matches!(s.rerun_workflow(first, RerunScope::Workflow).await, Err(StoreError::Conflict(_))));
            let build = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no build"));
            let layer = s.add_workspace_layer(build.id, 1, 9, "layer.tar").await.unwrap_or_else(|e| panic!("{e}"));
            s.complete_job(build.id, 1, &result(build.id, JobOutcome::Success)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(run_next(s, JobOutcome::Failed).await, "test");
            assert_eq!(states(s, first).await, ["build:success", "test:failed", "deploy:not_run"], "{name}");
            assert_eq!(s.pipeline(created.pipeline_id).await.map(|p| p.state).ok().as_deref(), Some("failed"));

            let rerun = s.rerun_workflow(first, RerunScope::Failed).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((rerun.rerun_of, rerun.queued_jobs), (first, 1), "{name}");
            assert_eq!(states(s, rerun.workflow_id).await, ["build:success", "test:queued", "deploy:blocked"]);
            assert_eq!(s.pipeline(created.pipeline_id).await.map(|p| p.state).ok().as_deref(), Some("running"));
            let workflow = s.workflow(rerun.workflow_id).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(workflow.rerun_of, Some(first), "{name}");
            // The old workflow was rerun already.
            let again = s.rerun_workflow(first, RerunScope::Workflow).await;
            assert!(matches!(again, Err(StoreError::Conflict(ref m)) if m.contains("rerun already")), "{again:?}");

            // The kept build's workspace still reaches the rerun test.
            let test = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no test"));
            assert_eq!(test.name, "test", "{name}");
            assert_eq!(s.upstream_workspace_layers(test.id).await.ok(), Some(vec![(layer, 9)]), "{name}");
            s.complete_job(test.id, 1, &result(test.id, JobOutcome::Success)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(run_next(s, JobOutcome::Success).await, "deploy");
            // The pipeline follows the rerun, not the failed workflow it replaced.
            assert_eq!(s.pipeline(created.pipeline_id).await.map(|p| p.state).ok().as_deref(), Some("success"));
            assert!(matches!(
                s.rerun_pipeline(created.pipeline_id, RerunScope::Failed).await,
                Err(StoreError::Conflict(_))
            ));

            let whole = s.rerun_pipeline(created.pipeline_id, RerunScope::Workflow).await;
            let whole = whole.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(whole.len(), 1, "{name}");
            assert_eq!(whole[0].rerun_of, rerun.workflow_id, "{name}");
            assert_eq!(states(s, whole[0].workflow_id).await, ["build:queued", "test:blocked", "deploy:blocked"]);
            assert!(matches!(s.rerun_pipeline(999_999, RerunScope::Workflow).await, Err(StoreError::NotFound(_))));
        }
    }
}
