//! A project's schedules for people and tools (admin token), as `coordinator schedule add|list|remove` does
//! them: list, create (`201`; a name the project uses already is `409`), read one, change its cron, branch or
//! workflow (`PATCH`: the next tick follows the new cron), delete. A cron is CircleCI's 5 fields, UTC, checked
//! when sent (`400` naming `cron`). Firing is [`crate::scheduler`]'s. Schedules whose `source` is `config` come
//! from a branch's `.circleci/config.yml` (`triggers: - schedule:`): listed, but changed only there (`409`).

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};

use super::jobs::require_admin;
use super::projects::find;
use super::{read_json, AppState, Problem, MAX_JSON_BYTES};
use crate::scheduler::{new_schedule, NewScheduleError};
use crate::store::now_ms;
use crate::store::schedules::ScheduleRow;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects/{project}/schedules", get(list).post(create))
        .route("/api/v1/projects/{project}/schedules/{name}", get(one).patch(change).delete(remove))
}

/// `POST` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSchedule {
    /// Default: the cron, branch and workflow.
    #[serde(default)]
    name: Option<String>,
    cron: String,
    branch: String,
    #[serde(default)]
    workflow: Option<String>,
}

/// `PATCH` body: what is absent stays; `"workflow": null` runs every workflow again.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleChange {
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default, deserialize_with = "present")]
    workflow: Option<Option<String>>,
}

/// A field that is present (even as `null`) is `Some`; an absent one is `None` through `#[serde(default)]`.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A schedule as answered: its row, plus `next_tick` as RFC 3339 UTC.
fn view(s: &ScheduleRow) -> serde_json::Value {
    let next = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(s.next_tick_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut v = serde_json::to_value(s).unwrap_or_default();
    v["next_tick"] = next.map_or(serde_json::Value::Null, serde_json::Value::String);
    v
}

/// A refused schedule input as a `400` naming the field.
fn invalid(e: NewScheduleError) -> Problem {
    let mut p = Problem::bad_request(e.to_string());
    p.extra = Some(("field", serde_json::Value::String(e.field().into())));
    p
}

/// Refuses to change a schedule the configuration declares (the next push would put it back).
fn from_project(s: &ScheduleRow) -> Result<(), Problem> {
    if s.source == "config" {
        return Err(Problem::conflict(format!(
            "schedule `{}` is a workflow's `triggers: - schedule:` in .circleci/config.yml on branch `{}`: change \
             it there",
            s.name, s.branch
        )));
    }
    Ok(())
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let project = find(&state, &raw).await?;
    let schedules: Vec<_> = state.store.schedules(Some(project.id)).await?.iter().map(view).collect();
    Ok(Json(serde_json::json!({ "schedules": schedules })).into_response())
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let req: NewSchedule = read_json(body, MAX_JSON_BYTES).await?;
    let project = find(&state, &raw).await?;
    let (name, next) = new_schedule(&req.cron, &req.branch, req.workflow.as_deref(), req.name.as_deref(), now_ms())
        .map_err(invalid)?;
    let s = state.store.add_schedule(project.id, &name, &req.cron, &req.branch, req.workflow.as_deref(), next).await?;
    tracing::info!(project = %project.slug, schedule = %s.name, cron = %s.cron, "schedule added through the API");
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "schedule": view(&s) }))).into_response())
}

async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, name)): UrlPath<(String, String)>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let project = find(&state, &raw).await?;
    let s = state.store.schedule(project.id, &name).await?;
    Ok(Json(serde_json::json!({ "schedule": view(&s) })).into_response())
}

async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, name)): UrlPath<(String, String)>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let req: ScheduleChange = read_json(body, MAX_JSON_BYTES).await?;
    let project = find(&state, &raw).await?;
    let old = state.store.schedule(project.id, &name).await?;
    from_project(&old)?;
    let cron = req.cron.unwrap_or(old.cron.clone());
    let branch = req.branch.unwrap_or(old.branch.clone());
    let workflow = req.workflow.unwrap_or(old.workflow.clone());
    // An unchanged cron keeps its next tick (a PATCH of the branch must not skip or repeat one).
    let next = match new_schedule(&cron, &branch, workflow.as_deref(), Some(&old.name), now_ms()) {
        Ok((_, first)) if cron != old.cron => first,
        Ok(_) | Err(NewScheduleError::Never(_)) if cron == old.cron => old.next_tick_at,
        Ok((_, first)) => first,
        Err(e) => return Err(invalid(e)),
    };
    let s = state.store.update_schedule(old.id, &cron, &branch, workflow.as_deref(), next).await?;
    tracing::info!(project = %project.slug, schedule = %s.name, cron = %s.cron, "schedule changed through the API");
    Ok(Json(serde_json::json!({ "schedule": view(&s) })).into_response())
}

async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, name)): UrlPath<(String, String)>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let project = find(&state, &raw).await?;
    from_project(&state.store.schedule(project.id, &name).await?)?;
    state.store.remove_schedule(project.id, &name).await?;
    tracing::info!(project = %project.slug, schedule = %name, "schedule removed through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
