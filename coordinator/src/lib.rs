//! The coordinator: webhooks, pipelines, scheduler, job queue and the runner API (issue [7/9]).
//! [`store`] is the database, [`api`] the HTTP API (the runner protocol first), [`scheduler`] the background
//! tasks (lease expiry), [`pipeline`] creates pipelines from triggers ([`repo`] mirrors, [`github`],
//! [`secrets`] at rest), [`dashboard`] is the web dashboard's data over the store, [`server`] puts them together
//! for `coordinator serve`.

pub mod api;
pub mod dashboard;
#[cfg(test)]
mod git_http_server;
pub mod github;
pub mod job_secrets;
pub mod key_rotation;
pub mod local_hook;
pub mod local_runner;
pub mod log_events;
pub mod pipeline;
pub mod projects;
#[cfg(test)]
mod reliability_tests;
pub mod repo;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod statuses;
pub mod store;
