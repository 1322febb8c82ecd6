//! The HTTP API (axum): [`runners`] is the runner protocol of `docs/runner-protocol.md`; [`projects`],
//! [`pipelines`], [`jobs`], [`logs`], [`contexts`], [`schedules`] and [`runner_list`] are the REST API for people and tools (admin token),
//! described by the OpenAPI document [`openapi`] serves; [`webhooks`] receives GitHub's. Errors are JSON problems
//! ([`Problem`]: `{"error": code, "message": sentence}`) with the HTTP status the protocol names. Request bodies
//! are read with explicit limits ([`read_json`]) so that an oversize body is a `413 too_large` problem, not a
//! dropped connection.

pub mod contexts;
pub mod jobs;
pub mod logs;
pub mod openapi;
pub mod pipelines;
pub mod problems;
pub mod projects;
#[cfg(test)]
mod rest_tests;
pub mod runner_list;
pub mod runners;
pub mod schedules;
pub mod storage_full;
pub mod webhook_intake;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::secrets::SecretKey;
use crate::store::{Store, StoreError};

/// Largest JSON request body (protocol: 1 MiB).
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Woken whenever jobs become queued, so idle long-polls lease at once.
    pub queued: Arc<Notify>,
    pub data_dir: PathBuf,
    pub lease_ttl_ms: i64,
    pub max_artifact_bytes: u64,
    /// Largest workspace layer upload.
    pub max_workspace_bytes: u64,
    /// Encrypts and decrypts secrets at rest (webhook secrets, env vars).
    pub secret_key: Arc<SecretKey>,
    /// Woken when a webhook delivery was stored.
    pub deliveries: Arc<Notify>,
    /// Stores webhook deliveries by group commit (`webhook_intake`).
    pub intake: Arc<webhook_intake::DeliveryIntake>,
    /// Commit statuses for GitHub projects, when configured.
    pub statuses: Option<Arc<crate::statuses::StatusReporter>>,
    /// The token git uses for GitHub projects' https repositories (mirrors, and runners' checkouts), when
    /// configured (`crate::github::access`).
    pub git_access: Option<crate::github::access::GitAccess>,
    /// Wakes the commit status outbox's drainer (`crate::statuses`).
    pub status_outbox: Arc<Notify>,
    /// The plain secret values of each running job attempt, for masking its log chunks: filled when the job is
    /// leased (or on the first events batch a coordinator sees for it), dropped when it completes. Without it
    /// every events batch re-read the pipeline, project and contexts and decrypted every secret. A cache only:
    /// another coordinator, or this one after a restart, fills it again from the store.
    pub job_secrets: Arc<std::sync::Mutex<JobSecrets>>,
    /// Wakes the dashboard's live logs when a step's log grows or the step ends (`crate::log_events`).
    pub log_events: Arc<crate::log_events::LogEvents>,
}

/// Plain secret values by (job ID, attempt); see [`AppState::job_secrets`].
pub type JobSecrets = std::collections::HashMap<(i64, i64), Arc<Vec<String>>>;

impl AppState {
    pub fn new(store: Store, data_dir: PathBuf, secret_key: SecretKey) -> AppState {
        AppState {
            intake: Arc::new(webhook_intake::DeliveryIntake::new(store.clone())),
            store,
            secret_key: Arc::new(secret_key),
            deliveries: Arc::new(Notify::new()),
            statuses: None,
            git_access: None,
            status_outbox: Arc::new(Notify::new()),
            job_secrets: Arc::default(),
            log_events: Arc::default(),
            queued: Arc::new(Notify::new()),
            data_dir,
            lease_ttl_ms: 60_000,
            max_artifact_bytes: 100 * 1024 * 1024,
            max_workspace_bytes: 1024 * 1024 * 1024,
        }
    }

    /// Wakes every waiting long-poll (jobs were queued).
    pub fn wake_runners(&self) {
        self.queued.notify_waiters();
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(runners::routes())
        .merge(jobs::routes())
        .merge(pipelines::routes())
        .merge(projects::routes())
        .merge(contexts::routes())
        .merge(logs::routes())
        .merge(schedules::routes())
        .merge(runner_list::routes())
        .merge(openapi::routes())
        .merge(webhooks::routes())
        // After every route: a path no route has, and the plain-text answers axum makes, become problems.
        .route("/api/{*rest}", axum::routing::any(problems::unknown_route))
        .layer(axum::middleware::from_fn(problems::as_problems))
        .with_state(state)
}

/// An error answer: status, code and a sentence saying what to do; extra fields go into the JSON too.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Problem {
        Problem { status, code, message: message.into(), extra: None }
    }

    pub fn unauthorized(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn conflict(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "unavailable", message)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": self.code, "message": self.message});
        if let (Some((key, value)), Some(map)) = (self.extra, body.as_object_mut()) {
            map.insert(key.to_string(), value);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => Problem::conflict(message),
            StoreError::LeaseLost(_) => Problem::new(StatusCode::CONFLICT, "lease_lost", e.to_string()),
            other if storage_full::store_disk_full(&other) => storage_full::database_full(&other),
            other => {
                tracing::error!(error = %other, "store error");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the coordinator's database failed: {other}: retry later"),
                )
            }
        }
    }
}

/// Reads a JSON body of at most `limit` bytes into `T`; errors name the field (also as the problem's `field`:
/// a JSON path such as `steps[0].status`, `.` for the body as a whole).
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, Problem> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Problem::too_large(format!("the request body is over {limit} bytes: send less at once")))?;
    parse_json(&bytes)
}

/// Parses a whole JSON body into `T`; see [`read_json`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut *deserializer);
    let problem = |field: String, e: serde_json::Error| {
        let at = if field == "." { String::new() } else { format!(" at `{field}`") };
        let mut p = Problem::bad_request(format!("the request body is not valid{at}: {e}"));
        p.extra = Some(("field", serde_json::Value::String(field)));
        p
    };
    let value = parsed.map_err(|e| {
        let field = e.path().to_string();
        problem(field, e.into_inner())
    })?;
    deserializer.end().map_err(|e| problem(".".to_string(), e))?;
    Ok(value)
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
