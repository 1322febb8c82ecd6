//! The coordinator: webhooks, pipelines, scheduler, job queue and the runner API (issue [7/9]).

pub mod github;
pub mod repo;
pub mod secrets;
