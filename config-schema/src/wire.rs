//! Runner↔coordinator wire types: what a runner is given when it leases a job ([`JobAssignment`]), what it
//! reports while the job runs ([`JobEvent`]: steps starting and finishing, offset-addressed log chunks) and at
//! the end ([`JobResult`]). Plain serde data with stable JSON — fields in declaration order, maps sorted,
//! timestamps as Unix milliseconds, enums as lowercase strings — so either side can be upgraded independently:
//! unknown fields are ignored on read, and [`WIRE_VERSION`] changes only when a field changes meaning.
//! `tests/wire.rs` holds a golden example of each message (`tests/fixtures/wire/*.json`); the endpoints that carry
//! them are specified in `docs/runner-protocol.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::JobSpec;

/// Version of these messages; a runner refuses an assignment with a newer one instead of misreading it.
pub const WIRE_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch (UTC).
pub type UnixMillis = u64;

/// A job leased to one runner: everything it needs to run the job, and nothing it may not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAssignment {
    /// [`WIRE_VERSION`] of the coordinator that wrote it.
    pub wire_version: u32,
    pub pipeline: PipelineRef,
    pub workflow: WorkflowRef,
    /// This job's run: its ID (the one every event and the result name), name and attempt.
    pub job: JobRef,
    /// The processed job: images, environment, steps in order, shell, working directory, parallelism.
    pub spec: JobSpec,
    /// With `parallelism: N`, which of the N copies this runner runs (`CIRCLE_NODE_INDEX`), from 0.
    #[serde(default)]
    pub node_index: u32,
    /// What `checkout` fetches.
    pub checkout: CheckoutInfo,
    /// Built-in and project variables (`CIRCLE_BRANCH`, `CIRCLE_SHA1`, …): set in every step, not secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret variables from the project and the job's contexts: set in every step and masked in all output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The contexts the secrets came from (for the job page; no values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
    /// When the lease ends unless a heartbeat extends it.
    pub lease_expires_at: UnixMillis,
}

impl JobAssignment {
    /// Whether this runner can read the assignment (it was written with at most [`WIRE_VERSION`]).
    pub fn check_version(&self) -> Result<(), NewerWireVersion> {
        if self.wire_version > WIRE_VERSION {
            return Err(NewerWireVersion { got: self.wire_version });
        }
        Ok(())
    }
}

/// An assignment from a coordinator newer than this runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the coordinator sent wire version {got}; this runner reads up to version {WIRE_VERSION}: upgrade the runner")]
pub struct NewerWireVersion {
    pub got: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRef {
    pub id: String,
    /// The project's pipeline counter (`CIRCLE_BUILD_NUM`'s pipeline-level sibling, `<< pipeline.number >>`).
    pub number: u64,
    /// `owner/name` of the project.
    pub project: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub id: String,
    /// The job's name in its workflow (matrix instances included).
    pub name: String,
    /// Build number of this job in the project (`CIRCLE_BUILD_NUM`).
    pub number: u64,
    /// 1 for the first run, 2 for the first rerun, …
    pub attempt: u32,
}

/// The revision to check out and where from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutInfo {
    /// Clone URL (`https://…` or `git@…`).
    pub repository_url: String,
    /// Full commit SHA (`CIRCLE_SHA1`).
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A pull request's number when the pipeline is for one (`CIRCLE_PULL_REQUEST`'s number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// A deploy key or token for private repositories; masked like the secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Something that happened in a running job, sent in order; each carries the job ID it belongs to, and is
/// idempotent (a resent event — same step index, same log offset — changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// Step `step` (its index in the spec's steps after `when` expansion: the order the runner runs them)
    /// started.
    StepStarted { job_id: String, step: u32, name: String, at: UnixMillis },
    /// Output of a step: `data` is the text from byte `offset` of that step's log, secrets already masked.
    Log { job_id: String, step: u32, stream: Stream, offset: u64, data: String },
    /// Step `step` ended.
    StepFinished {
        job_id: String,
        step: u32,
        status: StepStatus,
        /// The command's exit code (`run` steps; `None` when it was killed or did not start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        at: UnixMillis,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Success,
    Failed,
    /// `when: on_fail` after a success, or anything after a failure.
    Skipped,
    Canceled,
    /// `no_output_timeout` elapsed.
    TimedOut,
}

/// How a job ended, as a runner reports it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub job_id: String,
    pub status: JobOutcome,
    /// The failing step's exit code, if a step failed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A sentence for the job page when the runner itself failed (an image that cannot be pulled, a lost
    /// engine), rather than a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the runner started the job (after the lease) and when it finished.
    pub started_at: UnixMillis,
    pub finished_at: UnixMillis,
    /// Each step in run order with its timing (the events say the same; this is the summary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Success,
    Failed,
    Canceled,
    /// The job could not be run (infrastructure fail in CircleCI's words): retried without counting as failed.
    InfrastructureFail,
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub name: String,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub started_at: UnixMillis,
    pub finished_at: UnixMillis,
}

/// The test results of one `store_test_results` step: the JUnit XML files under its path, parsed by the runner.
/// Sent once per step; a job's results are the union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResults {
    pub job_id: String,
    /// The step's `path` (the directory or file the results were read from).
    pub path: String,
    pub cases: Vec<TestCase>,
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// The `classname` attribute (or the enclosing `<testsuite name>` when absent).
    pub classname: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub result: TestStatus,
    /// A failure's or error's `message` attribute followed by its text, or a skip's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `time` attribute (seconds in JUnit) in milliseconds.
    #[serde(default)]
    pub run_time_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    Success,
    Failure,
    Error,
    Skipped,
}
