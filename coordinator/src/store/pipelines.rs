//! Pipelines and workflows: one transaction turns a trigger and its plan (or its configuration error) into a
//! pipeline row, its workflow rows and their job rows (see [`super::jobs`] for what happens to jobs next).

use config_schema::plan::{JobState, Plan};
use config_schema::spec::JobKind;
use config_schema::ProcessedConfig;
use serde::Serialize;
use sqlx::any::AnyRow;

use super::jobs::settle_workflow;
use super::{col, now_ms, Result, Store, StoreError, WriteTx};

/// What started a pipeline, as stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PipelineTrigger {
    /// `webhook`, `api`, `schedule` or `local` (a local repository's hook).
    pub source: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub sha: String,
    pub pr_number: Option<i64>,
    pub is_fork: bool,
    pub commit_message: String,
    pub author: String,
}

/// The processed configuration and its plan for the trigger, or why there is none.
#[derive(Debug, Clone)]
pub enum Planned {
    Ready {
        config: ProcessedConfig,
        plan: Plan,
    },
    /// The configuration could not be read, processed or planned: the located message.
    ConfigError(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineRow {
    pub id: i64,
    pub project_id: i64,
    pub number: i64,
    pub trigger: PipelineTrigger,
    /// `running`, `success`, `failed`, `canceled`, `config_error` or `no_workflows`.
    pub state: String,
    /// For `config_error`: the located message.
    pub error: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowRow {
    pub id: i64,
    pub pipeline_id: i64,
    pub name: String,
    /// `running`, `on_hold`, `success`, `failed` or `canceled`.
    pub state: String,
    /// The workflow this one reruns.
    pub rerun_of: Option<i64>,
}

pub(crate) const PIPELINE_COLUMNS: &str =
    "id, project_id, number, source, branch, tag, sha, pr_number, is_fork, commit_message, \
                                author, state, error, created_at";

pub(crate) fn read_pipeline(row: &AnyRow) -> Result<PipelineRow> {
    Ok(PipelineRow {
        id: col(row, "id")?,
        project_id: col(row, "project_id")?,
        number: col(row, "number")?,
        trigger: PipelineTrigger {
            source: col(row, "source")?,
            branch: col(row, "branch")?,
            tag: col(row, "tag")?,
            sha: col(row, "sha")?,
            pr_number: col(row, "pr_number")?,
            is_fork: col::<i64>(row, "is_fork")? != 0,
            commit_message: col(row, "commit_message")?,
            author: col(row, "author")?,
        },
        state: col(row, "state")?,
        error: col(row, "error")?,
        created_at: col(row, "created_at")?,
    })
}

fn read_workflow(row: &AnyRow) -> Result<WorkflowRow> {
    Ok(WorkflowRow {
        id: col(row, "id")?,
        pipeline_id: col(row, "pipeline_id")?,
        name: col(row, "name")?,
        state: col(row, "state")?,
        rerun_of: col(row, "rerun_of")?,
    })
}

/// The pipeline just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub pipeline_id: i64,
    pub number: i64,
    /// Jobs that are `queued` right away (runners should be woken).
    pub queued_jobs: usize,
    /// The located message when the pipeline is a `config_error`.
    pub config_error: Option<String>,
}

/// One webhook delivery of a batch ([`Store::store_delivery_batch`]).
pub enum BatchItem<'a> {
    /// Store a pipeline (planned by `plan` inside the transaction) and mark the delivery processed with it.
    Pipeline {
        delivery_id: &'a str,
        project_id: i64,
        trigger: &'a PipelineTrigger,
        plan: Box<dyn FnOnce(PipelineIds) -> Planned + Send + 'a>,
    },
    /// Mark the delivery processed with `outcome` (why there is no pipeline).
    Outcome { delivery_id: &'a str, outcome: &'a str },
}

/// What [`Store::store_delivery_batch`] did with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchStored {
    Created(Created),
    /// Marked processed with its outcome.
    Recorded,
    /// Processed before (by another coordinator): nothing stored.
    AlreadyProcessed,
    /// Left for the next batch (the time budget was spent).
    NotReached,
}

/// Who a pipeline being created is, before its configuration is processed: `<< pipeline.id >>` and
/// `<< pipeline.number >>` are known only once its row exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineIds {
    pub id: i64,
    pub number: i64,
}

impl Store {
    /// Stores a pipeline for `project_id` with its workflows and jobs, in one transaction.
    pub async fn create_pipeline(
        &self,
        project_id: i64,
        trigger: &PipelineTrigger,
        planned: &Planned,
    ) -> Result<Created> {
        self.create_pipeline_with(project_id, trigger, |_| planned.clone()).await
    }

    /// Like [`Store::create_pipeline`], with the plan made by `plan` once the pipeline's ID and number are known
    /// (inside the transaction: `plan` must not block).
    pub async fn create_pipeline_with(
        &self,
        project_id: i64,
        trigger: &PipelineTrigger,
        plan: impl FnOnce(PipelineIds) -> Planned + Send,
    ) -> Result<Created> {
        let mut w = self.write().await?;
        let created = insert_pipeline(&mut w, project_id, trigger, plan).await?;
        w.commit().await?;
        Ok(created)
    }

    /// Like [`Store::create_pipeline`], and marks webhook delivery `delivery_id` processed in the same
    /// transaction: `None` (nothing stored) when it was processed before, so a crash between the two can never
    /// make a second pipeline.
    pub async fn create_pipeline_for_delivery(
        &self,
        delivery_id: &str,
        project_id: i64,
        trigger: &PipelineTrigger,
        plan: impl FnOnce(PipelineIds) -> Planned + Send,
    ) -> Result<Option<Created>> {
        let mut w = self.write().await?;
        let created = insert_pipeline(&mut w, project_id, trigger, plan).await?;
        let marked = sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = $1, pipeline_id = $2, outcome = 'pipeline' WHERE \
             delivery_id = $3 AND processed_at IS NULL",
        )
        .bind(now_ms())
        .bind(created.pipeline_id)
        .bind(delivery_id)
        .execute(&mut *w.tx)
        .await?;
        if marked.rows_affected() == 0 {
            w.tx.rollback().await?;
            return Ok(None);
        }
        w.commit().await?;
        Ok(Some(created))
    }

    /// Stores a batch of webhook deliveries in one transaction (group commit: one commit, one turn of SQLite's
    /// writer, for many deliveries): each [`BatchItem::Pipeline`] becomes a pipeline and marks its delivery
    /// processed with it, each [`BatchItem::Outcome`] marks its delivery processed with a reason and no pipeline.
    /// A delivery some other coordinator processed first is skipped (its mark is taken before its pipeline is
    /// stored, so it never gets two). Items are taken in order until `budget` has been spent — the transaction
    /// holds SQLite's only writer, and a webhook's answer waits for it — and the rest are [`BatchStored::NotReached`]
    /// (still unprocessed, for the next batch). Any error rolls the whole batch back: nothing is half-stored.
    pub async fn store_delivery_batch(
        &self,
        items: Vec<BatchItem<'_>>,
        budget: std::time::Duration,
    ) -> Result<Vec<BatchStored>> {
        let started = std::time::Instant::now();
        let mut w = self.write().await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if !out.is_empty() && started.elapsed() > budget {
                out.push(BatchStored::NotReached);
                continue;
            }
            let (delivery_id, outcome) = match &item {
                BatchItem::Pipeline { delivery_id, .. } => (*delivery_id, "pipeline"),
                BatchItem::Outcome { delivery_id, outcome } => (*delivery_id, *outcome),
            };
            let marked = sqlx::query(
                "UPDATE webhook_deliveries SET processed_at = $1, outcome = $2 WHERE delivery_id = $3 AND \
                 processed_at IS NULL",
            )
            .bind(now_ms())
            .bind(outcome)
            .bind(delivery_id)
            .execute(&mut *w.tx)
            .await?;
            if marked.rows_affected() == 0 {
                out.push(BatchStored::AlreadyProcessed);
                continue;
            }
            match item {
                BatchItem::Outcome { .. } => out.push(BatchStored::Recorded),
                BatchItem::Pipeline { delivery_id, project_id, trigger, plan } => {
                    let created = insert_pipeline(&mut w, project_id, trigger, plan).await?;
                    sqlx::query("UPDATE webhook_deliveries SET pipeline_id = $1 WHERE delivery_id = $2")
                        .bind(created.pipeline_id)
                        .bind(delivery_id)
                        .execute(&mut *w.tx)
                        .await?;
                    out.push(BatchStored::Created(created));
                }
            }
        }
        w.commit().await?;
        Ok(out)
    }

    pub async fn pipeline(&self, id: i64) -> Result<PipelineRow> {
        let row = sqlx::query(&format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => read_pipeline(&row),
            None => Err(StoreError::NotFound(format!("pipeline {id}"))),
        }
    }

    /// A project's pipelines, newest first.
    pub async fn pipelines(&self, project_id: i64, limit: i64) -> Result<Vec<PipelineRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE project_id = $1 ORDER BY number DESC LIMIT $2"
        ))
        .bind(project_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_pipeline).collect()
    }

    /// A page of a project's pipelines, newest first: at most `limit` with a number below `before` (all when
    /// `None`). The next page starts before the last number returned.
    pub async fn pipelines_page(&self, project_id: i64, before: Option<i64>, limit: i64) -> Result<Vec<PipelineRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE project_id = $1 AND number < $2 ORDER BY number DESC \
             LIMIT $3"
        ))
        .bind(project_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_pipeline).collect()
    }

    pub async fn workflows(&self, pipeline_id: i64) -> Result<Vec<WorkflowRow>> {
        let rows = sqlx::query(
            "SELECT id, pipeline_id, name, state, rerun_of FROM workflows WHERE pipeline_id = $1 ORDER BY id",
        )
        .bind(pipeline_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_workflow).collect()
    }

    pub async fn workflow(&self, id: i64) -> Result<WorkflowRow> {
        let row = sqlx::query("SELECT id, pipeline_id, name, state, rerun_of FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => read_workflow(&row),
            None => Err(StoreError::NotFound(format!("workflow {id}"))),
        }
    }
}

/// Next value of a per-project counter (`pipeline_counter`, `job_counter`).
pub(crate) async fn next_counter(w: &mut WriteTx, project_id: i64, column: &'static str) -> Result<i64> {
    let row = sqlx::query(&format!("UPDATE projects SET {column} = {column} + 1 WHERE id = $1 RETURNING {column}"))
        .bind(project_id)
        .fetch_optional(&mut *w.tx)
        .await?;
    match row {
        Some(row) => col(&row, column),
        None => Err(StoreError::NotFound(format!("project {project_id}"))),
    }
}

pub(crate) async fn insert_pipeline(
    w: &mut WriteTx,
    project_id: i64,
    trigger: &PipelineTrigger,
    plan: impl FnOnce(PipelineIds) -> Planned + Send,
) -> Result<Created> {
    let now = now_ms();
    let number = next_counter(w, project_id, "pipeline_counter").await?;
    let row = sqlx::query(
        "INSERT INTO pipelines (project_id, number, source, branch, tag, sha, pr_number, is_fork, commit_message, \
         author, state, error, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $13) RETURNING id",
    )
    .bind(project_id)
    .bind(number)
    .bind(&trigger.source)
    .bind(&trigger.branch)
    .bind(&trigger.tag)
    .bind(&trigger.sha)
    .bind(trigger.pr_number)
    .bind(trigger.is_fork as i64)
    .bind(&trigger.commit_message)
    .bind(&trigger.author)
    .bind("running")
    .bind(None::<String>)
    .bind(now)
    .fetch_one(&mut *w.tx)
    .await?;
    let pipeline_id: i64 = col(&row, "id")?;
    let planned = plan(PipelineIds { id: pipeline_id, number });
    let (state, error) = match &planned {
        Planned::ConfigError(message) => ("config_error", Some(message.clone())),
        Planned::Ready { plan, .. } if plan.workflows.is_empty() => ("no_workflows", None),
        Planned::Ready { .. } => ("running", None),
    };
    // A new pipeline is reported (pending, or its configuration error) whatever its workflows do next.
    super::status_outbox::enqueue_status(w, pipeline_id).await?;
    if state != "running" {
        sqlx::query("UPDATE pipelines SET state = $1, error = $2 WHERE id = $3")
            .bind(state)
            .bind(&error)
            .bind(pipeline_id)
            .execute(&mut *w.tx)
            .await?;
    }
    let mut queued_jobs = 0;
    let Planned::Ready { config, plan } = &planned else {
        return Ok(Created { pipeline_id, number, queued_jobs, config_error: error });
    };
    for planned_workflow in &plan.workflows {
        let row = sqlx::query(
            "INSERT INTO workflows (pipeline_id, name, state, created_at, updated_at) VALUES ($1, $2, 'running', $3, \
             $3) RETURNING id",
        )
        .bind(pipeline_id)
        .bind(&planned_workflow.name)
        .bind(now)
        .fetch_one(&mut *w.tx)
        .await?;
        let workflow_id: i64 = col(&row, "id")?;
        for job in &planned_workflow.jobs {
            let job_number = next_counter(w, project_id, "job_counter").await?;
            let spec = match job.kind {
                JobKind::Build => config.jobs.get(&job.name),
                JobKind::Approval | JobKind::NoOp => None,
            };
            let spec_json = spec
                .map(serde_json::to_string)
                .transpose()
                .map_err(|source| StoreError::Corrupt { what: "job spec", source })?;
            let resource_class = spec.and_then(|s| s.resource_class.clone()).unwrap_or_else(|| "medium".into());
            let kind = match job.kind {
                JobKind::Build => "build",
                JobKind::Approval => "approval",
                JobKind::NoOp => "no-op",
            };
            let state = match job.state {
                JobState::Queued => "queued",
                JobState::Blocked => "blocked",
                JobState::OnHold => "on_hold",
            };
            let requires = serde_json::to_string(&job.requires)
                .map_err(|source| StoreError::Corrupt { what: "requires", source })?;
            let contexts = serde_json::to_string(&job.context)
                .map_err(|source| StoreError::Corrupt { what: "contexts", source })?;
            sqlx::query(
                "INSERT INTO jobs (workflow_id, pipeline_id, project_id, number, name, kind, state, resource_class, \
                 requires_json, contexts_json, spec_json, queued_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13)",
            )
            .bind(workflow_id)
            .bind(pipeline_id)
            .bind(project_id)
            .bind(job_number)
            .bind(&job.name)
            .bind(kind)
            .bind(state)
            .bind(resource_class)
            .bind(requires)
            .bind(contexts)
            .bind(spec_json)
            .bind((state == "queued").then_some(now))
            .bind(now)
            .execute(&mut *w.tx)
            .await?;
        }
        // No-op jobs finish at once; settling also counts what is queued now.
        queued_jobs += settle_workflow(w, workflow_id).await?;
    }
    Ok(Created { pipeline_id, number, queued_jobs, config_error: None })
}
