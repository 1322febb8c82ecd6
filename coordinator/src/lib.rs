//! The coordinator: webhooks, pipelines, scheduler, job queue and the runner API (issue [7/9]).
