//! `GET /api/v1/runners` for people and tools (admin token): every registered runner with its labels, resource
//! classes, when it was last heard from, whether it is online (heard from in the last [`ONLINE_MS`]) and the jobs
//! it holds now. The runner protocol itself is [`super::runners`].

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::jobs::require_admin;
use super::{AppState, Problem};

/// A runner heard from within this long (milliseconds) is online: a long-poll lasts at most 30 s and a running
/// job heartbeats more often, so three missed polls mean it is gone (the dashboard uses the same figure).
pub const ONLINE_MS: i64 = 90_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/runners", get(list))
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let now = crate::store::now_ms();
    let running = state.store.running_jobs_by_runner().await?;
    let runners: Vec<serde_json::Value> = state
        .store
        .runners()
        .await?
        .into_iter()
        .map(|r| {
            let jobs: Vec<_> = running.iter().filter(|(id, _)| *id == r.id).map(|(_, job)| job).collect();
            serde_json::json!({
                "id": r.id,
                "name": r.name,
                "labels": r.labels,
                "resource_classes": r.resource_classes,
                "last_seen_at": r.last_seen_at,
                "online": r.last_seen_at.is_some_and(|t| now - t <= ONLINE_MS),
                "running_jobs": jobs,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "runners": runners })).into_response())
}
