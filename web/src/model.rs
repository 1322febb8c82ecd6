//! View models: the plain data the [`Dashboard`](crate::Dashboard) trait hands to the pages.
//!
//! They mirror what the coordinator stores (see `config_schema::wire` and docs/runner-protocol.md) but are the
//! web crate's own types, so the dashboard builds without the coordinator. Secret values never appear here: an
//! environment variable reaches the dashboard as its name and a [`SecretHint`] (at most its last 4 characters).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Milliseconds since the Unix epoch, as on the wire.
pub type UnixMillis = u64;

/// The state of a pipeline, workflow, job or step, as the dashboard shows it (one vocabulary for all four, so
/// colours and icons are the same everywhere).
///
/// From the wire: `JobOutcome::{Success, Failed, Canceled, InfrastructureFail, TimedOut}` and
/// `StepStatus::{Success, Failed, Skipped, Canceled, TimedOut}` map to the variants of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a runner.
    Queued,
    /// Waiting for the jobs it requires.
    Blocked,
    Running,
    /// An approval job waiting for someone to approve it (or a workflow holding on one).
    OnHold,
    Success,
    Failed,
    Canceled,
    TimedOut,
    InfrastructureFail,
    /// Never ran because a job it requires failed or was canceled.
    NotRun,
    Skipped,
    /// The pipeline's configuration did not parse or validate (see [`ConfigError`]).
    ConfigError,
}

impl Status {
    /// The snake_case name used in CSS classes and URLs (`st-failed`, `favicon-failed.svg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Blocked => "blocked",
            Status::Running => "running",
            Status::OnHold => "on_hold",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::TimedOut => "timed_out",
            Status::InfrastructureFail => "infrastructure_fail",
            Status::NotRun => "not_run",
            Status::Skipped => "skipped",
            Status::ConfigError => "config_error",
        }
    }

    /// What a person reads: "on hold", "timed out".
    pub fn label(self) -> &'static str {
        match self {
            Status::OnHold => "on hold",
            Status::TimedOut => "timed out",
            Status::InfrastructureFail => "infrastructure fail",
            Status::NotRun => "not run",
            Status::ConfigError => "config error",
            other => other.as_str(),
        }
    }

    /// Whether nothing more will happen to it by itself.
    pub fn is_finished(self) -> bool {
        !matches!(self, Status::Queued | Status::Blocked | Status::Running | Status::OnHold)
    }

    /// Whether it ended badly (the red family).
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::TimedOut | Status::InfrastructureFail | Status::ConfigError)
    }

    /// The favicon and title family: `running`, `failed`, `success` or `idle`.
    pub fn favicon(self) -> &'static str {
        if self.is_failure() {
            "failed"
        } else if matches!(self, Status::Running | Status::Queued | Status::Blocked | Status::OnHold) {
            "running"
        } else if self == Status::Success {
            "success"
        } else {
            "idle"
        }
    }
}

/// A state name that is not one of [`Status`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a status: use one of queued, blocked, running, on_hold, success, failed, canceled, timed_out, infrastructure_fail, not_run, skipped, config_error")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    /// The snake_case name ([`Status::as_str`]), as a store may keep it.
    fn from_str(name: &str) -> Result<Status, UnknownStatus> {
        const ALL: [Status; 12] = [
            Status::Queued,
            Status::Blocked,
            Status::Running,
            Status::OnHold,
            Status::Success,
            Status::Failed,
            Status::Canceled,
            Status::TimedOut,
            Status::InfrastructureFail,
            Status::NotRun,
            Status::Skipped,
            Status::ConfigError,
        ];
        ALL.into_iter().find(|s| s.as_str() == name).ok_or_else(|| UnknownStatus(name.to_string()))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A project's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repository {
    /// The clone URL as configured (shown, never fetched by the dashboard).
    pub url: String,
    /// Set for GitHub projects: commit SHAs link to `https://github.com/{owner}/{name}/commit/{sha}`.
    pub github: Option<GitHubRepo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitHubRepo {
    pub owner: String,
    pub name: String,
}

/// Enough of a project to link to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectRef {
    /// URL-safe identifier (`acme-app`), unique.
    pub slug: String,
    pub name: String,
    pub repository: Repository,
}

/// One row of the projects page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectSummary {
    pub project: ProjectRef,
    /// Branches that have pipelines, most recently active first.
    pub branches: Vec<BranchSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BranchSummary {
    pub name: String,
    pub latest: Option<PipelineBrief>,
}

/// The latest pipeline of a branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineBrief {
    pub number: u64,
    pub status: Status,
    pub sha: String,
    pub created_at: UnixMillis,
}

/// The project page's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub project: ProjectRef,
    pub default_branch: String,
    /// Every branch with pipelines (for the branch filter).
    pub branches: Vec<String>,
    /// The webhook secret's hint (its value was shown once when the project was added).
    pub webhook_secret: Option<SecretHint>,
    /// Why the latest fetch of the project's repository failed, until a fetch succeeds again.
    pub fetch_error: Option<FetchError>,
}

/// A failed fetch of a project's repository: new pipelines cannot be made until one succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchError {
    /// What went wrong and what to check, as the coordinator recorded it.
    pub message: String,
    pub at: UnixMillis,
}

/// Which pipelines of a project to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineQuery {
    pub branch: Option<String>,
    /// Pipelines to skip (newest first).
    pub offset: u64,
    pub limit: u64,
}

/// One page of a project's pipelines, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelinePage {
    pub pipelines: Vec<PipelineSummary>,
    /// How many pipelines match the query in all (for pagination).
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineSummary {
    pub number: u64,
    pub status: Status,
    pub trigger: Trigger,
    pub created_at: UnixMillis,
    pub workflows: Vec<WorkflowBrief>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowBrief {
    pub name: String,
    pub status: Status,
}

/// What started a pipeline. All of it is outside data (commit messages, branch names): templates escape it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub sha: String,
    pub commit_message: String,
    pub author: String,
    pub pull_request: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Push,
    PullRequest,
    Tag,
    Schedule,
    Manual,
}

/// A whole pipeline for its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pipeline {
    pub project: ProjectRef,
    pub number: u64,
    pub status: Status,
    pub trigger: Trigger,
    pub created_at: UnixMillis,
    /// Set when `status` is [`Status::ConfigError`].
    pub config_error: Option<ConfigError>,
    pub workflows: Vec<Workflow>,
}

/// Where the configuration went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// `.circleci/config.yml`
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// The job DAG: each job names the jobs it requires.
    pub jobs: Vec<WorkflowJob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowJob {
    pub id: String,
    pub name: String,
    pub kind: JobKind,
    pub status: Status,
    /// Names of jobs of the same workflow this one waits for.
    pub requires: Vec<String>,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Build,
    Approval,
}

/// A job for its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub number: u64,
    pub attempt: u32,
    pub status: Status,
    pub project: ProjectRef,
    pub pipeline_number: u64,
    pub workflow_id: String,
    pub workflow_name: String,
    pub runner: Option<String>,
    pub queued_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    pub exit_code: Option<i32>,
    /// Why it ended as it did, when the runner said (`runner lost`, `no space left on device`).
    pub message: Option<String>,
    pub steps: Vec<Step>,
    pub tests: Vec<TestCase>,
    pub artifacts: Vec<Artifact>,
    /// The names of the environment the job ran with (built-in, project, contexts), never the values.
    pub env_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The runner's step index (`JobEvent::StepStarted::step`).
    pub index: u32,
    pub name: String,
    pub status: Status,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    pub exit_code: Option<i32>,
    /// Bytes of log stored so far.
    pub log_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestCase {
    pub classname: String,
    pub name: String,
    pub file: Option<String>,
    pub result: TestResult,
    pub message: Option<String>,
    pub run_time_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestResult {
    // Declared in the order the job page lists them: failures first.
    Failure,
    Error,
    Success,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// The destination path the runner uploaded it under (`coverage/index.html`).
    pub path: String,
    pub size_bytes: u64,
}

/// A project's settings page. Holds no secret value: variables come as names and hints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectSettings {
    pub project: ProjectRef,
    pub env_vars: Vec<EnvVarSummary>,
    pub contexts: Vec<ContextSummary>,
    pub schedules: Vec<ScheduleSummary>,
    pub options: ProjectOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVarSummary {
    pub name: String,
    pub value: SecretHint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextSummary {
    pub name: String,
    pub env_var_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleSummary {
    pub name: String,
    /// Five-field cron expression, UTC.
    pub cron: String,
    pub branch: String,
    /// Only this workflow runs; `None`: every workflow the branch runs.
    pub workflow: Option<String>,
    pub next_run_at: Option<UnixMillis>,
}

/// A schedule to add from the settings form: fields trimmed and non-empty; the data side checks the cron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// `None`: the data side derives one from the cron, branch and workflow.
    pub name: Option<String>,
    /// Five fields, UTC (`0 3 * * *`).
    pub cron: String,
    pub branch: String,
    pub workflow: Option<String>,
}

/// The project options a person can change on the settings page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectOptions {
    /// At most this many of the project's jobs run at once (`None`: no limit).
    pub max_concurrent_jobs: Option<u32>,
    /// A new pipeline on a branch cancels the branch's older running pipelines (never on the default branch).
    pub auto_cancel_redundant: bool,
}

/// A runner for the runners page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runner {
    pub name: String,
    pub online: bool,
    pub labels: BTreeMap<String, String>,
    pub resource_classes: Vec<String>,
    pub current_job: Option<RunnerJob>,
    pub last_contact_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunnerJob {
    pub id: String,
    pub name: String,
    pub project_slug: String,
    pub pipeline_number: u64,
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// What a user may do on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads every page and changes things: approve, cancel, rerun, settings.
    Admin,
    /// Reads every page; every change (any POST but signing out) is refused with 403.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role may change anything (POST forms other than sign-out).
    pub fn can_change(self) -> bool {
        self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a name is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a role: use admin or viewer")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Role, UnknownRole> {
        match name {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// What is shown of a secret: `xxxx` and at most its last 4 characters. It can only be made from the value, so
/// a view model cannot carry more of a secret than this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHint {
    tail: String,
}

impl SecretHint {
    /// Values shorter than this show no tail at all: 4 characters of a 6-character secret are most of it.
    pub const MIN_LEN_FOR_TAIL: usize = 12;

    /// The hint of `value`: its last 4 characters when it has at least [`Self::MIN_LEN_FOR_TAIL`], else none.
    pub fn of(value: &str) -> SecretHint {
        let count = value.chars().count();
        let tail =
            if count >= Self::MIN_LEN_FOR_TAIL { value.chars().skip(count - 4).collect() } else { String::new() };
        SecretHint { tail }
    }

    /// The last characters kept (empty for short values).
    pub fn tail(&self) -> &str {
        &self.tail
    }
}

impl fmt::Display for SecretHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xxxx{}", self.tail)
    }
}

impl Serialize for SecretHint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An environment variable name as the settings form accepts it: `[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvVarName(String);

/// Why a name is not an environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvVarNameError {
    #[error("the name is empty: give a name such as DEPLOY_TOKEN")]
    Empty,
    #[error("the name is {len} bytes long: use at most 256")]
    TooLong { len: usize },
    #[error(
        "the name {name:?} has {bad:?} at position {position}: use letters, digits and '_', not starting with a digit"
    )]
    BadCharacter { name: String, bad: char, position: usize },
}

impl EnvVarName {
    pub fn parse(name: &str) -> Result<EnvVarName, EnvVarNameError> {
        if name.is_empty() {
            return Err(EnvVarNameError::Empty);
        }
        if name.len() > 256 {
            return Err(EnvVarNameError::TooLong { len: name.len() });
        }
        for (position, c) in name.chars().enumerate() {
            let ok = c == '_' || c.is_ascii_alphabetic() || (position > 0 && c.is_ascii_digit());
            if !ok {
                return Err(EnvVarNameError::BadCharacter { name: name.to_string(), bad: c, position });
            }
        }
        Ok(EnvVarName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hint_keeps_only_the_last_four_characters_of_long_values() {
        assert_eq!(SecretHint::of("ghp_abcdefghijkl1234").to_string(), "xxxx1234");
        assert_eq!(SecretHint::of("short").to_string(), "xxxx");
        assert_eq!(SecretHint::of("ééééééééééé€€€€").tail(), "€€€€");
    }

    #[test]
    fn statuses_read_back_their_names_and_pick_a_favicon() {
        for name in ["queued", "on_hold", "timed_out", "config_error", "not_run"] {
            assert_eq!(name.parse::<Status>().unwrap().as_str(), name);
        }
        assert!("done".parse::<Status>().is_err());
        assert_eq!(Status::ConfigError.favicon(), "failed");
        assert_eq!(Status::OnHold.favicon(), "running");
        assert_eq!(Status::Canceled.favicon(), "idle");
        assert!(!Status::Blocked.is_finished() && Status::NotRun.is_finished());
    }

    #[test]
    fn env_var_names_are_checked() {
        assert!(EnvVarName::parse("DEPLOY_TOKEN_2").is_ok());
        assert!(EnvVarName::parse("_X").is_ok());
        assert_eq!(EnvVarName::parse(""), Err(EnvVarNameError::Empty));
        assert!(matches!(EnvVarName::parse("2X"), Err(EnvVarNameError::BadCharacter { position: 0, .. })));
        assert!(matches!(EnvVarName::parse("A-B"), Err(EnvVarNameError::BadCharacter { bad: '-', .. })));
    }
}
