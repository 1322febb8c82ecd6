//! `runner exec`: one processed job ([`config_schema::JobSpec`]) run locally through the engine library —
//! containers ([`containers`]), environment ([`env`]), the `checkout` step ([`checkout`], over [`libgit2`]),
//! secret masking ([`mask`]) and the step loop ([`job`]). Progress is reported as [`Event`]s to an
//! [`EventSink`]: the CLI prints them as text or JSON lines, and the agent will send the same events to the
//! coordinator.

pub mod cache;
pub mod checkout;
pub mod containers;
pub mod env;
pub mod error;
pub mod files;
pub mod job;
pub mod junit;
pub mod libgit2;
pub mod mask;
pub mod remote_docker;
pub mod shim;
pub mod ssh;
pub mod workflow;

use serde::Serialize;

pub use error::ExecError;
pub use job::{run_job, ExecRequest, JobOutcome};

/// How a step or a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Failed,
    /// Not run: its `when` did not match the job's state.
    Skipped,
    /// Started in the background; its exit does not decide the job.
    Background,
    /// Ctrl-C or a signal stopped it.
    Canceled,
    /// Nothing was written for `no_output_timeout`.
    TimedOut,
}

/// What happens while a job runs. Output is already masked.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    JobStarted {
        job: String,
    },
    /// An image is not in the store and is being pulled.
    Pulling {
        image: String,
    },
    /// The containers run (primary first).
    ContainersStarted {
        ids: Vec<String>,
    },
    StepStarted {
        step: usize,
        name: String,
    },
    Output {
        step: usize,
        text: String,
    },
    StepFinished {
        step: usize,
        name: String,
        status: Status,
        exit_code: Option<i32>,
        duration_ms: u64,
    },
    /// Why a step could not run (an engine or checkout problem), masked.
    StepError {
        step: usize,
        message: String,
    },
    JobFinished {
        job: String,
        status: Status,
        steps: usize,
        failed: usize,
        skipped: usize,
        duration_ms: u64,
    },
    /// A workflow job that could not start (containers, pull) — after its `job_finished`.
    JobError {
        job: String,
        message: String,
    },
    /// A workflow job not run: an upstream job did not end as it requires, or the run was canceled.
    JobNotRun {
        job: String,
        reason: String,
    },
    /// An approval job, approved by the local run.
    Approved {
        job: String,
    },
    /// What a `store_test_results` step read (its summary is also in the step's output).
    TestResults {
        step: usize,
        /// The step's `path` as written.
        path: String,
        cases: Vec<config_schema::wire::TestCase>,
    },
}

/// Receives a job's events; background steps report from their own threads.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event);
}
