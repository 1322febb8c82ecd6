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
//! Not supported yet (answered as a 409 with a message): rerunning workflows and changing project options
//! (concurrency limit, auto-cancel), which the coordinator does not implement.

pub mod users;

use std::collections::BTreeMap;
use std::ops::Range;

use axum::body::Bytes;
use config_schema::spec::RequirementSpec;
use futures_util::stream::{self, BoxStream, StreamExt};
use web::model::{
    Artifact, BranchSummary, ConfigError, ContextSummary, EnvVarName, EnvVarSummary, GitHubRepo, Job, JobKind,
    Pipeline, PipelineBrief, PipelinePage, PipelineQuery, PipelineSummary, Project, ProjectOptions, ProjectRef,
    ProjectSettings, ProjectSummary, Repository, Runner, RunnerJob, ScheduleSummary, SecretHint, Status, Step,
    TestCase, TestResult, Trigger, TriggerKind, User, Workflow, WorkflowBrief, WorkflowJob,
};
use web::{
    ArtifactDownload, Dashboard, DataError, DataResult, LogChunk, LogSlice, NewSession, RerunScope, Session,
    UserCredentials,
};

use crate::api::AppState;
use crate::log_events::LogWatch;
use crate::store::pipelines::PipelineRow;
use crate::store::projects::Project as ProjectRow;
use crate::store::{col, Backend, StoreError};

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
}

impl CoordinatorDashboard {
    pub fn new(state: AppState) -> CoordinatorDashboard {
        CoordinatorDashboard { state }
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
        let rows = self.pipeline_rows(project_id, None, 0, i64::MAX, Some(number)).await?;
        rows.into_iter().next().ok_or_else(|| not_found(format!("pipeline {number}")))
    }

    /// A project's pipelines, newest first (optionally one branch, or one number).
    async fn pipeline_rows(
        &self,
        project_id: i64,
        branch: Option<&str>,
        offset: i64,
        limit: i64,
        number: Option<u64>,
    ) -> DataResult<Vec<PipelineRow>> {
        let mut ids = Vec::new();
        let sql = match (branch, number) {
            (_, Some(_)) => "SELECT id FROM pipelines WHERE project_id = $1 AND number = $2",
            (Some(_), None) => {
                "SELECT id FROM pipelines WHERE project_id = $1 AND branch = $2 ORDER BY number DESC LIMIT $3 OFFSET $4"
            }
            (None, None) => "SELECT id FROM pipelines WHERE project_id = $1 ORDER BY number DESC LIMIT $2 OFFSET $3",
        };
        let mut q = sqlx::query(sql).bind(project_id);
        q = match (branch, number) {
            (_, Some(n)) => q.bind(i64::try_from(n).unwrap_or(i64::MAX)),
            (Some(b), None) => q.bind(b.to_string()).bind(limit).bind(offset),
            (None, None) => q.bind(limit).bind(offset),
        };
        for row in q.fetch_all(self.store().pool()).await.map_err(backend)? {
            ids.push(col::<i64>(&row, "id")?);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.store().pipeline(id).await?);
        }
        Ok(out)
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

    async fn workflow_briefs(&self, pipeline_id: i64) -> DataResult<Vec<WorkflowBrief>> {
        let mut out = Vec::new();
        for w in self.workflow_rows(pipeline_id).await? {
            out.push(WorkflowBrief { name: w.name, status: status(&w.state)? });
        }
        Ok(out)
    }

    /// Branches with pipelines, most recently active first, with their latest pipeline.
    async fn branches(&self, project_id: i64) -> DataResult<Vec<(String, PipelineRow)>> {
        let rows = sqlx::query(
            "SELECT branch, MAX(number) AS latest FROM pipelines WHERE project_id = $1 AND branch IS NOT NULL GROUP BY \
             branch ORDER BY latest DESC",
        )
        .bind(project_id)
        .fetch_all(self.store().pool())
        .await
        .map_err(backend)?;
        let mut out = Vec::new();
        for r in &rows {
            let branch: String = col(r, "branch")?;
            let latest: i64 = col(r, "latest")?;
            let row = self.pipeline_by_number(project_id, millis(latest)).await?;
            out.push((branch, row));
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

    fn hint(&self, ciphertext: &str) -> DataResult<SecretHint> {
        let value = self.state.secret_key.decrypt(ciphertext).map_err(backend)?;
        Ok(SecretHint::of(&value))
    }
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
            user: User { id: u.id.to_string(), name: u.name },
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
            user: User { id: s.user_id.to_string(), name: s.user_name },
            csrf_token: s.csrf_token,
            expires_at: millis(s.expires_at),
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> DataResult<()> {
        Ok(self.store().delete_session(token_hash).await?)
    }

    async fn projects(&self) -> DataResult<Vec<ProjectSummary>> {
        let mut out = Vec::new();
        for p in self.store().list_projects().await? {
            let mut branches = Vec::new();
            for (name, row) in self.branches(p.id).await? {
                let latest = PipelineBrief {
                    number: millis(row.number),
                    status: status(&row.state)?,
                    sha: row.trigger.sha.clone(),
                    created_at: millis(row.created_at),
                };
                branches.push(BranchSummary { name, latest: Some(latest) });
            }
            out.push(ProjectSummary { project: project_ref(&p), branches });
        }
        Ok(out)
    }

    async fn project(&self, slug: &str) -> DataResult<Project> {
        let p = self.store().project_by_slug(slug).await?;
        let branches = self.branches(p.id).await?.into_iter().map(|(name, _)| name).collect();
        let webhook_secret = p.webhook_secret_enc.as_deref().map(|c| self.hint(c)).transpose()?;
        Ok(Project { project: project_ref(&p), default_branch: p.default_branch.clone(), branches, webhook_secret })
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
        let mut pipelines = Vec::new();
        for row in self.pipeline_rows(p.id, query.branch.as_deref(), offset, limit, None).await? {
            pipelines.push(PipelineSummary {
                number: millis(row.number),
                status: status(&row.state)?,
                trigger: trigger(&row),
                created_at: millis(row.created_at),
                workflows: self.workflow_briefs(row.id).await?,
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

        // Bytes, not characters: SQLite's LENGTH of a BLOB and PostgreSQL's OCTET_LENGTH.
        let byte_len = match self.store().backend() {
            Backend::Sqlite => "LENGTH(CAST(data AS BLOB))",
            Backend::Postgres => "OCTET_LENGTH(data)",
        };
        let sizes = sqlx::query(&format!(
            "SELECT step, SUM({byte_len}) AS n FROM log_chunks WHERE job_id = $1 AND attempt = $2 GROUP BY step"
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
        let rows =
            sqlx::query("SELECT name, cron, branch, next_tick_at FROM schedules WHERE project_id = $1 ORDER BY name")
                .bind(p.id)
                .fetch_all(self.store().pool())
                .await
                .map_err(backend)?;
        let mut schedules = Vec::new();
        for r in &rows {
            schedules.push(ScheduleSummary {
                name: col(r, "name")?,
                cron: col(r, "cron")?,
                branch: col(r, "branch")?,
                next_run_at: Some(millis(col(r, "next_tick_at")?)),
            });
        }
        Ok(ProjectSettings {
            project: project_ref(&p),
            env_vars,
            contexts,
            schedules,
            options: ProjectOptions { max_concurrent_jobs: None, auto_cancel_redundant: false },
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

    async fn set_project_options(&self, _actor: &User, _slug: &str, _options: &ProjectOptions) -> DataResult<()> {
        Err(DataError::Conflict {
            message: "project options (concurrency limit, auto-cancel) are not supported by this coordinator yet"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests;
