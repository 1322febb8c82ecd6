//! The data trait: everything the dashboard reads and changes, which the coordinator implements.
//!
//! The web crate never depends on the coordinator (DESIGN.md); the coordinator implements [`Dashboard`] over its
//! database and log store and mounts [`crate::router`]. Methods are `async` through `impl Future + Send` (an
//! implementation may write plain `async fn`). Secret values never cross this trait towards the web: settings
//! come back as names and [`SecretHint`]s, and the only value that goes the other way is the one a person types
//! into the settings form ([`Dashboard::set_env_var`]).

use std::future::Future;
use std::ops::Range;

use axum::body::Bytes;
use futures_util::stream::BoxStream;

#[cfg(doc)]
use crate::model::SecretHint;
use crate::model::{
    EnvVarName, Job, NewSchedule, Pipeline, PipelinePage, PipelineQuery, Project, ProjectOptions, ProjectSettings,
    ProjectSummary, Runner, UnixMillis, User,
};

/// What a data call can answer besides its value.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The thing addressed does not exist (or the signed-in user may not see it): the page answers 404.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The action does not apply to the thing's current state (approving a job that is not on hold): 409, with
    /// this message shown to the person.
    #[error("{message}")]
    Conflict { message: String },
    /// What a person typed is refused by the data side (a cron expression that does not parse): 400, with this
    /// message (naming the field) shown.
    #[error("{message}")]
    Invalid { message: String },
    /// The store failed: 503, the message is logged and a generic one shown.
    #[error("the dashboard's data store failed: {message}")]
    Backend { message: String },
}

pub type DataResult<T> = Result<T, DataError>;

/// A user's name and PHC-format password hash ([`crate::password::hash_password`] made it).
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// A session to store. The cookie holds the token; the store only ever sees its SHA-256 (`token_hash`, hex), so
/// a copy of the database signs nobody in.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: String,
    /// The session's CSRF token, echoed in every form it posts.
    pub csrf_token: String,
    pub expires_at: UnixMillis,
}

/// A stored session, looked up by token hash.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: UnixMillis,
}

/// Bytes of a step's log. `bytes` starts at byte `start` of the log and may be shorter than asked (end of log);
/// it may cut a UTF-8 character or a line in two — the dashboard aligns to lines itself.
#[derive(Debug, Clone)]
pub struct LogSlice {
    pub start: u64,
    pub bytes: Vec<u8>,
    /// The log's length when read.
    pub total_bytes: u64,
}

/// Log output that arrived after `offset` while a step runs (the `data` of a `JobEvent::Log`).
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub offset: u64,
    pub data: String,
}

/// An artifact's bytes for download.
pub struct ArtifactDownload {
    pub size_bytes: u64,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// Which jobs of a workflow to run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerunScope {
    /// The whole workflow, as a new workflow of the same pipeline.
    Workflow,
    /// Only the failed jobs and the jobs that require them; successful jobs keep their results.
    FailedJobs,
}

/// The data the dashboard needs; the coordinator implements it. `actor` on the changing calls is the signed-in
/// user, for the audit log.
pub trait Dashboard: Clone + Send + Sync + 'static {
    /// The clock (the dashboard's durations of running jobs, session expiry). Tests fix it.
    fn now(&self) -> UnixMillis {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    // Users and sessions.

    /// The user named `name` (exact match) with their password hash, if any.
    fn user_credentials(&self, name: &str) -> impl Future<Output = DataResult<Option<UserCredentials>>> + Send;
    fn create_session(&self, session: NewSession) -> impl Future<Output = DataResult<()>> + Send;
    /// The session whose token hashes to `token_hash`; expired ones may be returned (the dashboard checks).
    fn session(&self, token_hash: &str) -> impl Future<Output = DataResult<Option<Session>>> + Send;
    fn delete_session(&self, token_hash: &str) -> impl Future<Output = DataResult<()>> + Send;

    // Reading.

    fn projects(&self) -> impl Future<Output = DataResult<Vec<ProjectSummary>>> + Send;
    fn project(&self, slug: &str) -> impl Future<Output = DataResult<Project>> + Send;
    fn pipelines(&self, slug: &str, query: &PipelineQuery) -> impl Future<Output = DataResult<PipelinePage>> + Send;
    fn pipeline(&self, slug: &str, number: u64) -> impl Future<Output = DataResult<Pipeline>> + Send;
    fn job(&self, job_id: &str) -> impl Future<Output = DataResult<Job>> + Send;
    /// Bytes `range` of step `step`'s log (clamped to what exists).
    fn read_log(&self, job_id: &str, step: u32, range: Range<u64>)
        -> impl Future<Output = DataResult<LogSlice>> + Send;
    /// The step's log from byte `from` on, as it grows; the stream ends when the step has finished and
    /// everything was sent (at once, for a finished step).
    fn log_stream(
        &self,
        job_id: &str,
        step: u32,
        from: u64,
    ) -> impl Future<Output = DataResult<BoxStream<'static, LogChunk>>> + Send;
    /// Wakes (yields) when pipeline `number` of `slug` may have changed — a job queued, started or finished, a
    /// hold approved, a workflow canceled or rerun — once at once, and at least every few seconds while it runs
    /// (its running durations); the stream ends after it yielded for the finished pipeline. The dashboard's
    /// live pipeline page reads the pipeline again on each.
    fn pipeline_changes(
        &self,
        slug: &str,
        number: u64,
    ) -> impl Future<Output = DataResult<BoxStream<'static, ()>>> + Send;
    fn artifact(&self, job_id: &str, path: &str) -> impl Future<Output = DataResult<ArtifactDownload>> + Send;
    fn project_settings(&self, slug: &str) -> impl Future<Output = DataResult<ProjectSettings>> + Send;
    fn runners(&self) -> impl Future<Output = DataResult<Vec<Runner>>> + Send;

    // Changing.

    fn approve_job(&self, actor: &User, job_id: &str) -> impl Future<Output = DataResult<()>> + Send;
    fn cancel_workflow(&self, actor: &User, workflow_id: &str) -> impl Future<Output = DataResult<()>> + Send;
    fn rerun_workflow(
        &self,
        actor: &User,
        workflow_id: &str,
        scope: RerunScope,
    ) -> impl Future<Output = DataResult<()>> + Send;
    /// Adds the variable or replaces its value. The value is stored encrypted and never read back.
    fn set_env_var(
        &self,
        actor: &User,
        slug: &str,
        name: &EnvVarName,
        value: &str,
    ) -> impl Future<Output = DataResult<()>> + Send;
    fn delete_env_var(
        &self,
        actor: &User,
        slug: &str,
        name: &EnvVarName,
    ) -> impl Future<Output = DataResult<()>> + Send;
    fn set_project_options(
        &self,
        actor: &User,
        slug: &str,
        options: &ProjectOptions,
    ) -> impl Future<Output = DataResult<()>> + Send;
    /// Adds a schedule to the project; a name it uses already is a conflict, a cron that does not parse
    /// [`DataError::Invalid`].
    fn add_schedule(
        &self,
        actor: &User,
        slug: &str,
        schedule: &NewSchedule,
    ) -> impl Future<Output = DataResult<()>> + Send;
    fn delete_schedule(&self, actor: &User, slug: &str, name: &str) -> impl Future<Output = DataResult<()>> + Send;
}
