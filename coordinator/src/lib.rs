//! The coordinator: webhooks, pipelines, scheduler, job queue and the runner API (issue [7/9]).
//! [`store`] is the database, [`api`] the HTTP API (the runner protocol first), [`scheduler`] the background
//! tasks (lease expiry), [`server`] puts them together for `coordinator serve`.

pub mod api;
pub mod job_secrets;
pub mod projects;
pub mod scheduler;
pub mod server;
pub mod store;
