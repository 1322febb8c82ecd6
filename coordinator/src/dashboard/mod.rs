//! The dashboard's data over the coordinator's store: `impl web::Dashboard for CoordinatorDashboard`, which
//! `coordinator serve` mounts with `web::router_with` next to `/api` and `/webhooks` (server.rs).
//!
//! Log coordinates: the dashboard addresses a step's log by bytes of the text as stored, i.e. after the
//! coordinator masked secrets again (`log_chunks.data` in offset order), which may differ from the runner's byte
//! offsets when a mask changed a chunk's length. A log is read by byte range (`Store::read_log_range`: the chunks
//! that overlap it, never the whole log). Live logs wait on `crate::log_events`, which the runner API's events
//! path wakes when it stored a chunk or finished a step; the store stays the one copy (every coordinator behind
//! a load balancer sees the same rows), so a stream also reads again after `LogEvents::FALLBACK` without a
//! wake-up. Artifacts stream from their file in [`ARTIFACT_CHUNK_BYTES`] reads. Secrets: settings show names and
//! `web::model::SecretHint`s made from the decrypted value; values never leave this module towards the web.
//!
//! Roles: a user stored with `is_admin` is a `web::model::Role::Admin`, any other a viewer (the web crate refuses
//! a viewer's POSTs). Schedules added on the settings page are checked as `coordinator schedule add` checks them
//! (the cron parses and fires again) and get the same derived name when none is given.

pub mod users;

use std::collections::BTreeMap;
use std::ops::Range;

use axum::body::Bytes;
use config_schema::spec::RequirementSpec;
use futures_util::stream::{self, BoxStream, StreamExt};
use web::model::{
    Artifact, BranchSummary, ConfigError, ContextSummary, EnvVarName, EnvVarSummary, GitHubRepo, Job, JobKind,
    NewSchedule, Pipeline, PipelineBrief, PipelinePage, PipelineQuery, PipelineSummary, Project, ProjectOptions,
    ProjectRef, ProjectSettings, ProjectSummary, Repository, Role, Runner, RunnerJob, ScheduleSummary, SecretHint,
    Status, Step, TestCase, TestResult, Trigger, TriggerKind, User, Workflow, WorkflowBrief, WorkflowJob,
};
use web::{
    ArtifactDownload, Dashboard, DataError, DataResult, LogChunk, LogSlice, NewSession, RerunScope, Session,
    UserCredentials,
};

use crate::api::AppState;
use crate::log_events::LogWatch;
use crate::store::pipelines::{read_pipeline, PipelineRow, PIPELINE_COLUMNS};
use crate::store::projects::Project as ProjectRow;
use crate::store::{col, StoreError};

/// The most a live log reads and sends as one event (a browser that opens a long finished log from byte 0 gets
/// it in pieces, not as one allocation of the whole log).
const LIVE_READ_BYTES: u64 = 256 * 1024;
/// The size of each read of an artifact download.
pub const ARTIFACT_CHUNK_BYTES: usize = crate::api::runners::FILE_CHUNK_BYTES;
/// A runner heard from within this long is online.
const RUNNER_ONLINE_MS: i64 = 90_000;

/// The coordinator's state seen as the dashboard's data.
#[derive(Clone)]
pub struct CoordinatorDashboard {
    state: AppState,
    /// How long a live pipeline page waits without a wake-up ([`PIPELINE_FALLBACK`]; tests set an hour).
    pipeline_fallback: std::time::Duration,
}

impl CoordinatorDashboard {
    pub fn new(state: AppState) -> CoordinatorDashboard {
        CoordinatorDashboard { state, pipeline_fallback: PIPELINE_FALLBACK }
    }

    /// Live pipeline pages look again after `fallback` without a wake-up.
    pub fn with_pipeline_fallback(mut self, fallback: std::time::Duration) -> CoordinatorDashboard {
        self.pipeline_fallback = fallback;
        self
    }
}

impl From<StoreError> for DataError {
    fn from(e: StoreError) -> DataError {
        match e {
            StoreError::NotFound(what) => DataError::NotFound { what },
            StoreError::Conflict(message) => DataError::Conflict { message },
            other => DataError::Backend { message: other.to_string() },
        }
    }
}

fn backend(e: impl std::fmt::Display) -> DataError {
    DataError::Backend { message: e.to_string() }
}

fn not_found(what: impl Into<String>) -> DataError {
    DataError::NotFound { what: what.into() }
}

/// A dashboard id (`"42"`) as a row id; anything else names nothing.
fn row_id(raw: &str, what: &str) -> DataResult<i64> {
    raw.parse().map_err(|_| not_found(format!("{what} {raw}")))
}

/// A stored user's dashboard role.
fn role(is_admin: bool) -> Role {
    if is_admin {
        Role::Admin
    } else {
        Role::Viewer
    }
}

fn millis(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A stored state name as the dashboard's status.
fn status(state: &str) -> DataResult<Status> {
    match state {
        // A trigger whose workflows all filtered out: nothing ran.
        "no_workflows" => Ok(Status::Skipped),
        other => other.parse().map_err(|e| backend(format!("stored state: {e}"))),
    }
}

fn github_repo(clone_url: &str) -> Option<GitHubRepo> {
    let rest = clone_url.strip_prefix("https://github.com/").or_else(|| clone_url.strip_prefix("git@github.com:"))?;
    let (owner, name) = rest.trim_end_matches('/').trim_end_matches(".git").split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| GitHubRepo { owner: owner.to_string(), name: name.to_string() })
}

fn project_ref(p: &ProjectRow) -> ProjectRef {
    let url = p.local_path.clone().unwrap_or_else(|| p.clone_url.clone());
    let github = if p.local_path.is_some() { None } else { github_repo(&p.clone_url) };
    ProjectRef { slug: p.slug.clone(), name: p.slug.clone(), repository: Repository { url, github } }
}

fn trigger(row: &PipelineRow) -> Trigger {
    let t = &row.trigger;
    let kind = if t.pr_number.is_some() {
        TriggerKind::PullRequest
    } else if t.tag.is_some() {
        TriggerKind::Tag
    } else if t.source == "schedule" {
        TriggerKind::Schedule
    } else if t.source == "api" {
        TriggerKind::Manual
    } else {
        TriggerKind::Push
    };
    Trigger {
        kind,
        branch: t.branch.clone(),
        tag: t.tag.clone(),
        sha: t.sha.clone(),
        commit_message: t.commit_message.clone(),
        author: t.author.clone(),
        pull_request: t.pr_number.and_then(|n| u64::try_from(n).ok()),
    }
}

/// A workflow's row with its times.
struct WorkflowTimes {
    id: i64,
    name: String,
    state: String,
    created_at: i64,
    updated_at: i64,
}

impl CoordinatorDashboard {
    fn store(&self) -> &crate::store::Store {
        &self.state.store
    }

    async fn pipeline_by_number(&self, project_id: i64, number: u64) -> DataResult<PipelineRow> {
        let row =
            sqlx::query(&format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE project_id = $1 AND number = $2"))
                .bind(project_id)
                .bind(i64::try_from(number).unwrap_or(i64::MAX))
                .fetch_optional(self.store().pool())
                .await
                .map_err(backend)?;
        match row {
            Some(row) => Ok(read_pipeline(&row)?),
            None => Err(not_found(format!("pipeline {number}"))),
        }
    }

    /// A page of a project's pipelines, newest first (optionally of one branch): one query.
    async fn pipeline_rows(
        &self,
        project_id: i64,
        branch: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> DataResult<Vec<PipelineRow>> {
        let (only_branch, page) = match branch {
            Some(_) => ("AND branch = $2 ", "LIMIT $3 OFFSET $4"),
            None => ("", "LIMIT $2 OFFSET $3"),
        };
        let sql = format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE project_id = $1 {only_branch}ORDER BY number DESC {page}"
        );
        let mut q = sqlx::query(&sql).bind(project_id);
        if let Some(b) = branch {
            q = q.bind(b.to_string());
        }
        let rows = q.bind(limit).bind(offset).fetch_all(self.store().pool()).await.map_err(backend)?;
        Ok(rows.iter().map(read_pipeline).collect::<Result<_, _>>()?)
    }

    async fn workflow_rows(&self, pipeline_id: i64) -> DataResult<Vec<WorkflowTimes>> {
        let rows = sqlx::query(
            "SELECT id, name, state, created_at, updated_at FROM workflows WHERE pipeline_id = $1 ORDER BY id",
        )
        .bind(pipeline_id)
        .fetch_all(self.store().pool())
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(WorkflowTimes {
                    id: col(r, "id")?,
                    name: col(r, "name")?,
                    state: col(r, "state")?,
                    created_at: col(r, "created_at")?,
                    updated_at: col(r, "updated_at")?,
                })
            })
            .collect()
    }

    /// The workflows of each of `pipeline_ids` (one query, however many pipelines a page lists).
    async fn workflow_briefs(&self, pipeline_ids: &[i64]) -> DataResult<BTreeMap<i64, Vec<WorkflowBrief>>> {
        let mut out: BTreeMap<i64, Vec<WorkflowBrief>> = BTreeMap::new();
        if pipeline_ids.is_empty() {
            return Ok(out);
        }
        let placeholders: Vec<String> = (1..=pipeline_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT pipeline_id, name, state FROM workflows WHERE pipeline_id IN ({}) ORDER BY pipeline_id, id",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in pipeline_ids {
            q = q.bind(*id);
        }
        for r in q.fetch_all(self.store().pool()).await.map_err(backend)? {
            let brief = WorkflowBrief { name: col(&r, "name")?, status: status(&col::<String>(&r, "state")?)? };
            out.entry(col(&r, "pipeline_id")?).or_default().push(brief);
        }
        Ok(out)
    }

    /// Every project's branches with their latest pipeline, most recently active first (one query, reading the
    /// `pipelines_project_branch_number` index for the latest numbers). `project`: only that project's.
    ///
    /// One project's (its page) is a "loose index scan": a recursive query that jumps from each branch to the next
    /// in `pipelines_project_branch` and takes each branch's newest number from the end of its range in
    /// `pipelines_project_branch_number` — two index seeks per branch. The `GROUP BY` form read every pipeline's
    /// index entry instead: 4–5 ms of a 20,000-pipeline project's page on SQLite, 0.2 ms now (`bench/api-list`;
    /// `MIN(branch) … WHERE branch > ?` is no better: SQLite's min/max shortcut does not apply to a range, hence
    /// `ORDER BY … LIMIT 1`). It is the idiom PostgreSQL's wiki gives for the same reason. The projects page
    /// (every project) keeps the `GROUP BY`.
    async fn branches(&self, project: Option<i64>) -> DataResult<BTreeMap<i64, Vec<(String, PipelineRow)>>> {
        let columns: Vec<String> = PIPELINE_COLUMNS.split(',').map(|c| format!("p.{}", c.trim())).collect();
        let sql = match project {
            Some(_) => format!(
                "WITH RECURSIVE b(branch) AS (SELECT (SELECT branch FROM pipelines WHERE project_id = $1 AND branch \
                 IS NOT NULL ORDER BY branch LIMIT 1) UNION ALL SELECT (SELECT n.branch FROM pipelines n WHERE \
                 n.project_id = $1 AND n.branch > b.branch ORDER BY n.branch LIMIT 1) FROM b WHERE b.branch IS NOT \
                 NULL) SELECT {} FROM pipelines p WHERE p.project_id = $1 AND p.number IN (SELECT (SELECT m.number \
                 FROM pipelines m WHERE m.project_id = $1 AND m.branch = b.branch ORDER BY m.number DESC LIMIT 1) \
                 FROM b WHERE b.branch IS NOT NULL) ORDER BY p.number DESC",
                columns.join(", ")
            ),
            None => format!(
                "SELECT {} FROM pipelines p JOIN (SELECT project_id, branch, MAX(number) AS latest FROM pipelines \
                 WHERE branch IS NOT NULL GROUP BY project_id, branch) b ON p.project_id = b.project_id AND \
                 p.number = b.latest ORDER BY p.project_id, p.number DESC",
                columns.join(", ")
            ),
        };
        let mut q = sqlx::query(&sql);
        if let Some(id) = project {
            q = q.bind(id);
        }
        let mut out: BTreeMap<i64, Vec<(String, PipelineRow)>> = BTreeMap::new();
        for r in q.fetch_all(self.store().pool()).await.map_err(backend)? {
            let row = read_pipeline(&r)?;
            let branch = row.trigger.branch.clone().unwrap_or_default();
            out.entry(row.project_id).or_default().push((branch, row));
        }
        Ok(out)
    }

    /// Whether the step (or its whole job) has finished: a live log ends then.
    async fn step_finished(&self, job_id: i64, step: u32) -> DataResult<bool> {
        let job = self.store().job(job_id).await?;
        if job.is_terminal() {
            return Ok(true);
        }
        let steps = self.store().steps(job_id, job.attempt).await?;
        Ok(steps.iter().any(|s| s.step == i64::from(step) && s.status.is_some()))
    }

    /// What the pipeline page shows that changes, as one string (the pipeline's, workflows' and jobs' states and
    /// times: two indexed queries), and whether the pipeline has finished.
    async fn pipeline_fingerprint(&self, pipeline_id: i64) -> DataResult<(String, bool)> {
        let row = self.store().pipeline(pipeline_id).await?;
        let mut print = format!("{}|", row.state);
        for w in self.workflow_rows(pipeline_id).await? {
            print.push_str(&format!("w{}:{}:{};", w.id, w.state, w.updated_at));
        }
        let jobs =
            sqlx::query("SELECT id, state, started_at, finished_at FROM jobs WHERE pipeline_id = $1 ORDER BY id")
                .bind(pipeline_id)
                .fetch_all(self.store().pool())
                .await
                .map_err(backend)?;
        for j in &jobs {
            let (id, state): (i64, String) = (col(j, "id")?, col(j, "state")?);
            let (started, finished): (Option<i64>, Option<i64>) = (col(j, "started_at")?, col(j, "finished_at")?);
            print.push_str(&format!("j{id}:{state}:{started:?}:{finished:?};"));
        }
        Ok((print, status(&row.state)?.is_finished()))
    }

    fn hint(&self, ciphertext: &str) -> DataResult<SecretHint> {
        let value = self.state.secret_key.decrypt(ciphertext).map_err(backend)?;
        Ok(SecretHint::of(&value))
    }
}

/// A live pipeline page's state: the pipeline, what it looked like when last reported, and its wake-ups.
struct LivePipeline {
    pipeline_id: i64,
    last: Option<String>,
    done: bool,
    changes: tokio::sync::watch::Receiver<u64>,
}

/// How long a live pipeline page waits without a wake-up before it looks again (another coordinator's writes
/// wake nothing here; running durations move on).
const PIPELINE_FALLBACK: std::time::Duration = std::time::Duration::from_secs(5);
/// After a wake-up, the page waits this long for more writes before it looks: a job's start is several writes,
/// and a busy log (each chunk a write) must not make every open page read the pipeline for each.
const PIPELINE_SETTLE: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits for a write transaction this process commits (then lets more writes settle) or `fallback`; true when a
/// write woke it.
async fn next_write(changes: &mut tokio::sync::watch::Receiver<u64>, fallback: std::time::Duration) -> bool {
    let woken = matches!(tokio::time::timeout(fallback, changes.changed()).await, Ok(Ok(())));
    if woken {
        tokio::time::sleep(PIPELINE_SETTLE).await;
        changes.mark_unchanged();
    }
    woken
}

/// A live log stream's state: the next byte to send, whether everything was sent, and its wake-ups.
struct LiveLog {
    offset: u64,
    done: bool,
    watch: LogWatch,
}

/// The whole characters of `bytes`: `(skipped, text)`, where `skipped` bytes at the start belonged to a character
/// that began before the read (a `from` offset inside a character) and a character cut in two at the end is left
/// for the next read. The stored log is text, so nothing else can be invalid; if something were, it is replaced.
fn whole_characters(bytes: &[u8]) -> (usize, String) {
    let skipped = bytes.iter().take(3).take_while(|b| (0x80..0xC0).contains(*b)).count();
    let rest = &bytes[skipped..];
    let text = match std::str::from_utf8(rest) {
        Ok(text) => text.to_string(),
        Err(e) if e.error_len().is_none() => String::from_utf8_lossy(&rest[..e.valid_up_to()]).into_owned(),
        Err(_) => String::from_utf8_lossy(rest).into_owned(),
    };
    (skipped, text)
}

/// A file's bytes as a stream of reads of at most [`ARTIFACT_CHUNK_BYTES`] (the runner API's
/// [`crate::api::runners::file_stream`]): a download holds one buffer, never the whole file.
fn file_chunks(file: tokio::fs::File, name: String) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    crate::api::runners::file_stream(file).map(move |read| {
        read.map(Bytes::from).inspect_err(|e| {
            tracing::warn!(artifact.file = %name, error = %e, "an artifact download failed mid-way");
        })
    })
}

impl Dashboard for CoordinatorDashboard {
    async fn user_credentials(&self, name: &str) -> DataResult<Option<UserCredentials>> {
        Ok(self.store().user_by_name(name).await?.map(|u| UserCredentials {
            user: User { id: u.id.to_string(), name: u.name, role: role(u.is_admin) },
            password_hash: u.password_hash,
        }))
    }

    async fn create_session(&self, session: NewSession) -> DataResult<()> {
        let user_id = row_id(&session.user_id, "user")?;
        let expires = i64::try_from(session.expires_at).unwrap_or(i64::MAX);
        Ok(self.store().create_session(&session.token_hash, user_id, &session.csrf_token, expires).await?)
    }

    async fn session(&self, token_hash: &str) -> DataResult<Option<Session>> {
        Ok(self.store().session_by_token_hash(token_hash).await?.map(|s| Session {
            user: User { id: s.user_id.to_string(), name: s.user_name, role: role(s.is_admin) },
            csrf_token: s.csrf_token,
            expires_at: millis(s.expires_at),
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> DataResult<()> {
        Ok(self.store().delete_session(token_hash).await?)
    }

    async fn projects(&self) -> DataResult<Vec<ProjectSummary>> {
        // Two queries whatever the number of projects and branches.
        let mut branches = self.branches(None).await?;
        let mut out = Vec::new();
        for p in self.store().list_projects().await? {
            let mut list = Vec::new();
            for (name, row) in branches.remove(&p.id).unwrap_or_default() {
                let latest = PipelineBrief {
                    number: millis(row.number),
                    status: status(&row.state)?,
                    sha: row.trigger.sha.clone(),
                    created_at: millis(row.created_at),
                };
                list.push(BranchSummary { name, latest: Some(latest) });
            }
            out.push(ProjectSummary { project: project_ref(&p), branches: list });
        }
        Ok(out)
    }

    async fn project(&self, slug: &str) -> DataResult<Project> {
        let p = self.store().project_by_slug(slug).await?;
        let branches = self
            .branches(Some(p.id))
            .await?
            .remove(&p.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let webhook_secret = p.webhook_secret_enc.as_deref().map(|c| self.hint(c)).transpose()?;
        let fetch_error =
            p.fetch_error.as_ref().map(|e| web::model::FetchError { message: e.message.clone(), at: millis(e.at_ms) });
        Ok(Project {
            project: project_ref(&p),
            default_branch: p.default_branch.clone(),
            branches,
            webhook_secret,
            fetch_error,
        })
    }

    async fn pipelines(&self, slug: &str, query: &PipelineQuery) -> DataResult<PipelinePage> {
        let p = self.store().project_by_slug(slug).await?;
        let count = match &query.branch {
            Some(b) => sqlx::query("SELECT COUNT(*) AS n FROM pipelines WHERE project_id = $1 AND branch = $2")
                .bind(p.id)
                .bind(b.clone()),
            None => sqlx::query("SELECT COUNT(*) AS n FROM pipelines WHERE project_id = $1").bind(p.id),
        }
        .fetch_one(self.store().pool())
        .await
        .map_err(backend)?;
        let total = millis(col(&count, "n")?);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        // Four queries per page: the project, the count, the page's pipelines, their workflows.
        let rows = self.pipeline_rows(p.id, query.branch.as_deref(), offset, limit).await?;
        let mut workflows = self.workflow_briefs(&rows.iter().map(|r| r.id).collect::<Vec<_>>()).await?;
        let mut pipelines = Vec::new();
        for row in rows {
            pipelines.push(PipelineSummary {
                number: millis(row.number),
                status: status(&row.state)?,
                trigger: trigger(&row),
                created_at: millis(row.created_at),
                workflows: workflows.remove(&row.id).unwrap_or_default(),
            });
        }
        Ok(PipelinePage { pipelines, total })
    }

    async fn pipeline(&self, slug: &str, number: u64) -> DataResult<Pipeline> {
        let p = self.store().project_by_slug(slug).await?;
        let row = self.pipeline_by_number(p.id, number).await?;
        let jobs = self.store().pipeline_jobs(row.id).await?;
        let mut workflows = Vec::new();
        for w in self.workflow_rows(row.id).await? {
            let workflow_status = status(&w.state)?;
            let mut wjobs = Vec::new();
            for j in jobs.iter().filter(|j| j.workflow_id == w.id) {
                let requires: Vec<RequirementSpec> = serde_json::from_str(&j.requires_json)
                    .map_err(|e| backend(format!("job {} requires: {e}", j.id)))?;
                wjobs.push(WorkflowJob {
                    id: j.id.to_string(),
                    name: j.name.clone(),
                    kind: if j.kind == "approval" { JobKind::Approval } else { JobKind::Build },
                    status: status(&j.state)?,
                    requires: requires.into_iter().map(|r| r.job).collect(),
                    started_at: j.started_at.map(millis),
                    finished_at: j.finished_at.map(millis),
                });
            }
            workflows.push(Workflow {
                id: w.id.to_string(),
                name: w.name,
                status: workflow_status,
                created_at: millis(w.created_at),
                finished_at: workflow_status.is_finished().then_some(millis(w.updated_at)),
                jobs: wjobs,
            });
        }
        let config_error = row.error.as_ref().filter(|_| row.state == "config_error").map(|message| ConfigError {
            file: ".circleci/config.yml".into(),
            line: None,
            column: None,
            message: message.clone(),
        });
        Ok(Pipeline {
            project: project_ref(&p),
            number,
            status: status(&row.state)?,
            trigger: trigger(&row),
            created_at: millis(row.created_at),
            config_error,
            workflows,
        })
    }

    async fn job(&self, job_id: &str) -> DataResult<Job> {
        let id = row_id(job_id, "job")?;
        let j = self.store().job(id).await?;
        let p = self.store().project(j.project_id).await?;
        let pipeline = self.store().pipeline(j.pipeline_id).await?;
        let workflow = self.store().workflow(j.workflow_id).await?;
        let extra = sqlx::query(
            "SELECT j.queued_at, j.created_at, r.name AS runner_name FROM jobs j LEFT JOIN runners r ON r.id = \
             j.runner_id WHERE j.id = $1",
        )
        .bind(id)
        .fetch_one(self.store().pool())
        .await
        .map_err(backend)?;
        let queued_at: Option<i64> = col(&extra, "queued_at")?;
        let created_at: i64 = col(&extra, "created_at")?;
        let runner: Option<String> = col(&extra, "runner_name")?;

        // Each step's log size from the chunks' stored lengths (migration 0007): no text is read. (PostgreSQL sums
        // BIGINTs as NUMERIC: cast back.)
        let byte_len = self.store().stored_len_sql();
        let sizes = sqlx::query(&format!(
            "SELECT step, CAST(SUM({byte_len}) AS BIGINT) AS n FROM log_chunks WHERE job_id = $1 AND attempt = $2 GROUP BY step"
        ))
        .bind(id)
        .bind(j.attempt)
        .fetch_all(self.store().pool())
        .await
        .map_err(backend)?;
        let mut log_bytes = BTreeMap::new();
        for r in &sizes {
            log_bytes.insert(col::<i64>(r, "step")?, col::<i64>(r, "n")?);
        }
        let mut steps = Vec::new();
        for s in self.store().steps(id, j.attempt).await? {
            let step_status = match s.status.as_deref() {
                Some(st) => status(st)?,
                None if j.is_terminal() => status(&j.state)?,
                None => Status::Running,
            };
            steps.push(Step {
                index: u32::try_from(s.step).unwrap_or(u32::MAX),
                name: s.name,
                status: step_status,
                started_at: s.started_at.map(millis),
                finished_at: s.finished_at.map(millis),
                exit_code: s.exit_code.and_then(|c| i32::try_from(c).ok()),
                log_bytes: millis(log_bytes.get(&s.step).copied().unwrap_or(0)),
            });
        }

        let rows = sqlx::query(
            "SELECT classname, name, file, result, message, run_time_ms FROM test_results WHERE job_id = $1 AND \
             attempt = $2 ORDER BY id",
        )
        .bind(id)
        .bind(j.attempt)
        .fetch_all(self.store().pool())
        .await
        .map_err(backend)?;
        let mut tests = Vec::new();
        for r in &rows {
            let result = match col::<String>(r, "result")?.as_str() {
                "success" => TestResult::Success,
                "failure" => TestResult::Failure,
                "error" => TestResult::Error,
                "skipped" => TestResult::Skipped,
                other => return Err(backend(format!("stored test result {other:?}"))),
            };
            tests.push(TestCase {
                classname: col(r, "classname")?,
                name: col(r, "name")?,
                file: col(r, "file")?,
                result,
                message: col(r, "message")?,
                run_time_ms: millis(col(r, "run_time_ms")?),
            });
        }

        let rows =
            sqlx::query("SELECT path, size_bytes FROM artifacts WHERE job_id = $1 AND attempt = $2 ORDER BY path")
                .bind(id)
                .bind(j.attempt)
                .fetch_all(self.store().pool())
                .await
                .map_err(backend)?;
        let mut artifacts = Vec::new();
        for r in &rows {
            artifacts.push(Artifact { path: col(r, "path")?, size_bytes: millis(col(r, "size_bytes")?) });
        }

        // Names only: the job's own environment, then the project's variables and its contexts' variables.
        let mut env_names: Vec<String> = Vec::new();
        if let Some(spec) = j.spec()? {
            env_names.extend(spec.environment.keys().cloned());
        }
        let contexts = j.contexts()?;
        for (name, _) in self.store().secret_ciphertexts(j.project_id, &contexts).await? {
            if !env_names.contains(&name) {
                env_names.push(name);
            }
        }

        Ok(Job {
            id: j.id.to_string(),
            name: j.name.clone(),
            number: millis(j.number),
            attempt: u32::try_from(j.attempt).unwrap_or(u32::MAX),
            status: status(&j.state)?,
            project: project_ref(&p),
            pipeline_number: millis(pipeline.number),
            workflow_id: workflow.id.to_string(),
            workflow_name: workflow.name,
            runner,
            queued_at: millis(queued_at.unwrap_or(created_at)),
            started_at: j.started_at.map(millis),
            finished_at: j.finished_at.map(millis),
            exit_code: j.exit_code.and_then(|c| i32::try_from(c).ok()),
            message: j.message.clone(),
            steps,
            tests,
            artifacts,
            env_names,
        })
    }

    async fn read_log(&self, job_id: &str, step: u32, range: Range<u64>) -> DataResult<LogSlice> {
        let id = row_id(job_id, "job")?;
        let job = self.store().job(id).await?;
        let read = self.store().read_log_range(id, job.attempt, i64::from(step), range).await?;
        Ok(LogSlice { start: read.start, bytes: read.bytes, total_bytes: read.total_bytes })
    }

    async fn log_stream(&self, job_id: &str, step: u32, from: u64) -> DataResult<BoxStream<'static, LogChunk>> {
        let id = row_id(job_id, "job")?;
        let job = self.store().job(id).await?;
        let this = self.clone();
        // Watch before the first read, so that a chunk stored between a read and the wait still wakes the stream.
        let live = LiveLog { offset: from, done: false, watch: self.state.log_events.watch((id, i64::from(step))) };
        let attempt = job.attempt;
        // Each turn sends what was stored since the last one (at most LIVE_READ_BYTES); with nothing new it waits
        // for a wake-up. After the step finished, the reads send the rest and the stream ends.
        let chunks = stream::unfold(live, move |mut live| {
            let this = this.clone();
            async move {
                if live.done {
                    return None;
                }
                loop {
                    // Read "finished" before the log, so nothing written in between is missed.
                    let read = async {
                        let finished = this.step_finished(id, step).await?;
                        let range = live.offset..live.offset.saturating_add(LIVE_READ_BYTES);
                        let read = this.store().read_log_range(id, attempt, i64::from(step), range).await?;
                        Ok::<_, DataError>((finished, read))
                    };
                    let (finished, read) = match read.await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(job.id = id, step, error = %e, "live log ended: the store failed");
                            return None;
                        }
                    };
                    let (skipped, data) = whole_characters(&read.bytes);
                    if !data.is_empty() {
                        let offset = live.offset + skipped as u64;
                        live.offset = offset + data.len() as u64;
                        live.done = finished && live.offset >= read.total_bytes;
                        return Some((LogChunk { offset, data }, live));
                    }
                    if finished {
                        return None;
                    }
                    live.watch.wait().await;
                }
            }
        });
        Ok(chunks.boxed())
    }

    async fn pipeline_changes(&self, slug: &str, number: u64) -> DataResult<BoxStream<'static, ()>> {
        let p = self.store().project_by_slug(slug).await?;
        let row = self.pipeline_by_number(p.id, number).await?;
        let this = self.clone();
        // Subscribe before the first look, so that a write between the look and the wait still wakes the page.
        let live = LivePipeline { pipeline_id: row.id, last: None, done: false, changes: self.store().changes() };
        // The first turn reports at once; later turns wait for a committed write of this process (settling
        // briefly) or the fallback, and report when what the page shows changed — or on the fallback while the
        // pipeline runs, for its durations. The turn that sees the pipeline finished reports and ends.
        let changes = stream::unfold(live, move |mut live| {
            let this = this.clone();
            async move {
                if live.done {
                    return None;
                }
                // The first look is at once.
                let mut woken = true;
                if live.last.is_some() {
                    woken = next_write(&mut live.changes, this.pipeline_fallback).await;
                }
                loop {
                    let (print, finished) = match this.pipeline_fingerprint(live.pipeline_id).await {
                        Ok(found) => found,
                        Err(e) => {
                            tracing::warn!(pipeline.id = live.pipeline_id, error = %e, "live pipeline ended: the store failed");
                            return None;
                        }
                    };
                    let changed = live.last.as_deref() != Some(print.as_str());
                    if changed || !woken || finished {
                        live.done = finished;
                        live.last = Some(print);
                        return Some(((), live));
                    }
                    // A write that did not touch this pipeline: wait again.
                    woken = next_write(&mut live.changes, this.pipeline_fallback).await;
                }
            }
        });
        Ok(changes.boxed())
    }

    async fn artifact(&self, job_id: &str, path: &str) -> DataResult<ArtifactDownload> {
        let id = row_id(job_id, "job")?;
        let job = self.store().job(id).await?;
        let row =
            sqlx::query("SELECT size_bytes, file FROM artifacts WHERE job_id = $1 AND attempt = $2 AND path = $3")
                .bind(id)
                .bind(job.attempt)
                .bind(path)
                .fetch_optional(self.store().pool())
                .await
                .map_err(backend)?
                .ok_or_else(|| not_found(format!("artifact {path}")))?;
        let file: String = col(&row, "file")?;
        let size: i64 = col(&row, "size_bytes")?;
        let opened = tokio::fs::File::open(&file).await.map_err(|e| backend(format!("artifact file {file}: {e}")))?;
        Ok(ArtifactDownload { size_bytes: millis(size), body: file_chunks(opened, file).boxed() })
    }

    async fn project_settings(&self, slug: &str) -> DataResult<ProjectSettings> {
        let p = self.store().project_by_slug(slug).await?;
        let mut env_vars = Vec::new();
        for (name, ciphertext) in self.store().secret_ciphertexts(p.id, &[]).await? {
            env_vars.push(EnvVarSummary { name, value: self.hint(&ciphertext)? });
        }
        env_vars.sort_by(|a, b| a.name.cmp(&b.name));
        let rows = sqlx::query(
            "SELECT c.name AS context, v.name AS var FROM contexts c LEFT JOIN context_vars v ON v.context_id = c.id \
             ORDER BY c.name, v.name",
        )
        .fetch_all(self.store().pool())
        .await
        .map_err(backend)?;
        let mut contexts: Vec<ContextSummary> = Vec::new();
        for r in &rows {
            let context: String = col(r, "context")?;
            let var: Option<String> = col(r, "var")?;
            if contexts.last().map(|c| c.name != context).unwrap_or(true) {
                contexts.push(ContextSummary { name: context, env_var_names: Vec::new() });
            }
            if let (Some(var), Some(last)) = (var, contexts.last_mut()) {
                last.env_var_names.push(var);
            }
        }
        let schedules = self
            .store()
            .schedules(Some(p.id))
            .await?
            .into_iter()
            .map(|s| ScheduleSummary {
                name: s.name,
                cron: s.cron,
                branch: s.branch,
                workflow: s.workflow,
                // i64::MAX: a cron that never fires again.
                next_run_at: (s.next_tick_at < i64::MAX).then(|| millis(s.next_tick_at)),
            })
            .collect();
        Ok(ProjectSettings {
            project: project_ref(&p),
            env_vars,
            contexts,
            schedules,
            options: ProjectOptions {
                max_concurrent_jobs: p.max_concurrent_jobs.and_then(|n| u32::try_from(n).ok()),
                auto_cancel_redundant: p.auto_cancel_redundant,
            },
        })
    }

    async fn runners(&self) -> DataResult<Vec<Runner>> {
        let now = crate::store::now_ms();
        let mut out = Vec::new();
        for r in self.store().runners().await? {
            let job = sqlx::query(
                "SELECT j.id, j.name, p.slug, pl.number FROM jobs j JOIN projects p ON p.id = j.project_id JOIN \
                 pipelines pl ON pl.id = j.pipeline_id WHERE j.runner_id = $1 AND j.state = 'running' ORDER BY j.id \
                 LIMIT 1",
            )
            .bind(r.id)
            .fetch_optional(self.store().pool())
            .await
            .map_err(backend)?;
            let current_job = match job {
                Some(j) => Some(RunnerJob {
                    id: col::<i64>(&j, "id")?.to_string(),
                    name: col(&j, "name")?,
                    project_slug: col(&j, "slug")?,
                    pipeline_number: millis(col(&j, "number")?),
                }),
                None => None,
            };
            out.push(Runner {
                name: r.name,
                online: r.last_seen_at.is_some_and(|t| now - t <= RUNNER_ONLINE_MS),
                labels: r.labels,
                resource_classes: r.resource_classes,
                current_job,
                last_contact_at: r.last_seen_at.map(millis),
            });
        }
        Ok(out)
    }

    async fn approve_job(&self, actor: &User, job_id: &str) -> DataResult<()> {
        let id = row_id(job_id, "job")?;
        self.store().job(id).await?;
        let queued = self.store().approve_job(id).await?;
        tracing::info!(job.id = id, user = %actor.name, "job approved on the dashboard");
        if queued > 0 {
            self.state.wake_runners();
        }
        Ok(())
    }

    async fn cancel_workflow(&self, actor: &User, workflow_id: &str) -> DataResult<()> {
        let id = row_id(workflow_id, "workflow")?;
        let workflow = self.store().workflow(id).await?;
        let jobs = self.store().pipeline_jobs(workflow.pipeline_id).await?;
        let open: Vec<i64> = jobs.iter().filter(|j| j.workflow_id == id && !j.is_terminal()).map(|j| j.id).collect();
        if open.is_empty() {
            return Err(DataError::Conflict { message: format!("workflow {} has finished already", workflow.name) });
        }
        for job in &open {
            self.store().cancel_job(*job).await?;
        }
        tracing::info!(workflow.id = id, jobs = open.len(), user = %actor.name, "workflow canceled on the dashboard");
        Ok(())
    }

    async fn rerun_workflow(&self, actor: &User, workflow_id: &str, scope: RerunScope) -> DataResult<()> {
        let scope = match scope {
            RerunScope::Workflow => crate::store::reruns::RerunScope::Workflow,
            RerunScope::FailedJobs => crate::store::reruns::RerunScope::Failed,
        };
        let rerun = crate::api::pipelines::rerun_workflow(&self.state, row_id(workflow_id, "workflow")?, scope).await?;
        let (workflow, rerun_of) = (rerun.workflow_id, rerun.rerun_of);
        tracing::info!(workflow.id = workflow, rerun_of, user = %actor.name, "workflow rerun on the dashboard");
        Ok(())
    }

    async fn set_env_var(&self, actor: &User, slug: &str, name: &EnvVarName, value: &str) -> DataResult<()> {
        let p = self.store().project_by_slug(slug).await?;
        let ciphertext = self.state.secret_key.encrypt(value);
        self.store().set_env_var(p.id, name.as_str(), &ciphertext, &crate::secrets::masked(value)).await?;
        tracing::info!(project = %p.slug, env_var = %name, user = %actor.name, "environment variable set");
        Ok(())
    }

    async fn delete_env_var(&self, actor: &User, slug: &str, name: &EnvVarName) -> DataResult<()> {
        let p = self.store().project_by_slug(slug).await?;
        let mut w = self.store().write().await?;
        let done = sqlx::query("DELETE FROM env_vars WHERE project_id = $1 AND name = $2")
            .bind(p.id)
            .bind(name.as_str())
            .execute(&mut *w.tx)
            .await
            .map_err(backend)?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(not_found(format!("environment variable {name}")));
        }
        tracing::info!(project = %p.slug, env_var = %name, user = %actor.name, "environment variable deleted");
        Ok(())
    }

    async fn set_project_options(&self, actor: &User, slug: &str, options: &ProjectOptions) -> DataResult<()> {
        let limit = options.max_concurrent_jobs.map(i64::from);
        let p = self.store().set_project_options(slug, Some(options.auto_cancel_redundant), Some(limit)).await?;
        tracing::info!(
            project = %p.slug,
            max_concurrent_jobs = ?p.max_concurrent_jobs,
            auto_cancel = p.auto_cancel_redundant,
            user = %actor.name,
            "project options set on the dashboard"
        );
        // A higher limit may let queued jobs run now.
        self.state.wake_runners();
        Ok(())
    }

    async fn add_schedule(&self, actor: &User, slug: &str, schedule: &NewSchedule) -> DataResult<()> {
        let p = self.store().project_by_slug(slug).await?;
        let cron = &schedule.cron;
        // Checked and named as `coordinator schedule add` and the REST API do.
        let (name, next) = crate::scheduler::new_schedule(
            cron,
            &schedule.branch,
            schedule.workflow.as_deref(),
            schedule.name.as_deref(),
            crate::store::now_ms(),
        )
        .map_err(|e| DataError::Invalid { message: format!("field {}: {e}", e.field()) })?;
        let added =
            self.store().add_schedule(p.id, &name, cron, &schedule.branch, schedule.workflow.as_deref(), next).await?;
        tracing::info!(project = %p.slug, schedule = %added.name, next_tick_at = added.next_tick_at, user = %actor.name, "schedule added on the dashboard");
        Ok(())
    }

    async fn delete_schedule(&self, actor: &User, slug: &str, name: &str) -> DataResult<()> {
        let p = self.store().project_by_slug(slug).await?;
        // As the REST API: a schedule the configuration declares comes back with the next push.
        let s = self.store().schedule(p.id, name).await?;
        if s.source == "config" {
            return Err(DataError::Conflict {
                message: format!(
                    "schedule `{name}` comes from .circleci/config.yml on branch `{}`: change it there",
                    s.branch
                ),
            });
        }
        self.store().remove_schedule(p.id, name).await?;
        tracing::info!(project = %p.slug, schedule = %name, user = %actor.name, "schedule deleted on the dashboard");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
