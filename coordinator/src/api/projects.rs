//! Projects for people and tools (admin token): list and get, a project's pipelines page by page (newest first,
//! `?before=NUMBER&limit=N`), its options (`PATCH`: auto-cancel of redundant pipelines, concurrency limit) and
//! its environment variables (names and masked hints only; set and delete).
//! `{project}` in a path is the project's slug with `/` written `%2F` (`acme%2Fapp`), or its numeric ID.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::jobs::require_admin;
use super::{read_json, AppState, Problem, MAX_JSON_BYTES};
use crate::store::projects::Project;
use crate::store::StoreError;

/// Most pipelines one page holds (and the default).
pub const MAX_PAGE: i64 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(list))
        .route("/api/v1/projects/{project}", get(project).patch(set_options))
        .route("/api/v1/projects/{project}/pipelines", get(pipelines))
        .route("/api/v1/projects/{project}/env-vars", get(env_vars))
        .route("/api/v1/projects/{project}/env-vars/{name}", put(set_env_var).delete(delete_env_var))
}

/// The project a path names: by slug, else by numeric ID.
pub(crate) async fn find(state: &AppState, raw: &str) -> Result<Project, Problem> {
    match state.store.project_by_slug(raw).await {
        Ok(p) => Ok(p),
        Err(StoreError::NotFound(_)) => match raw.parse::<i64>() {
            Ok(id) => Ok(state.store.project(id).await?),
            Err(_) => Err(Problem::not_found(format!("project `{raw}` not found (a slug's `/` is written `%2F`)"))),
        },
        Err(e) => Err(e.into()),
    }
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    Ok(Json(serde_json::json!({"projects": state.store.list_projects().await?})).into_response())
}

async fn project(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    Ok(Json(serde_json::json!({"project": find(&state, &raw).await?})).into_response())
}

/// `PATCH` body of a project: what is absent stays as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectOptions {
    #[serde(default)]
    auto_cancel_redundant: Option<bool>,
    /// A number above 0, or `null` for no limit.
    #[serde(default, deserialize_with = "super::schedules::present")]
    max_concurrent_jobs: Option<Option<i64>>,
}

async fn set_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let req: ProjectOptions = read_json(body, MAX_JSON_BYTES).await?;
    if let Some(Some(n)) = req.max_concurrent_jobs {
        if n < 1 {
            let mut p =
                Problem::bad_request(format!("`max_concurrent_jobs` must be 1 or more, or null for no limit, not {n}"));
            p.extra = Some(("field", serde_json::Value::String("max_concurrent_jobs".into())));
            return Err(p);
        }
    }
    let project = find(&state, &raw).await?;
    let project =
        state.store.set_project_options(&project.slug, req.auto_cancel_redundant, req.max_concurrent_jobs).await?;
    tracing::info!(
        project = %project.slug,
        auto_cancel_redundant = project.auto_cancel_redundant,
        max_concurrent_jobs = ?project.max_concurrent_jobs,
        "project options changed through the API"
    );
    // A higher limit may let queued jobs start.
    state.wake_runners();
    Ok(Json(serde_json::json!({ "project": project })).into_response())
}

/// `?before=&limit=` of a pipeline page.
fn page_query(raw: Option<&str>) -> Result<(Option<i64>, i64), Problem> {
    let (mut before, mut limit) = (None, MAX_PAGE);
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number =
            value.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Problem::bad_request(format!("`{key}` must be a positive whole number, not `{value}`"))
            })?;
        match key {
            "before" => before = Some(number),
            "limit" => limit = number.min(MAX_PAGE),
            other => {
                return Err(Problem::bad_request(format!("unknown parameter `{other}`: use `before` and `limit`")))
            }
        }
    }
    Ok((before, limit))
}

async fn pipelines(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let (before, limit) = page_query(uri.query())?;
    let project = find(&state, &raw).await?;
    let page = state.store.pipelines_page(project.id, before, limit).await?;
    // A full page may have more after it; the next one starts below its last number.
    let next_before = (page.len() as i64 == limit).then(|| page.last().map(|p| p.number)).flatten();
    Ok(Json(serde_json::json!({"pipelines": page, "next_before": next_before})).into_response())
}

async fn env_vars(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let project = find(&state, &raw).await?;
    Ok(Json(serde_json::json!({"env_vars": state.store.env_vars(project.id).await?})).into_response())
}

/// A variable's value as sent: `{"value": "…"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VarValue {
    pub value: String,
}

/// A variable name as CircleCI accepts it (letters, digits, `_`; not starting with a digit).
pub(crate) fn var_name(raw: &str) -> Result<String, Problem> {
    web::model::EnvVarName::parse(raw)
        .map(|n| n.as_str().to_string())
        .map_err(|e| Problem::bad_request(format!("environment variable name `{raw}`: {e}")))
}

async fn set_env_var(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, name)): UrlPath<(String, String)>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let name = var_name(&name)?;
    let req: VarValue = read_json(body, MAX_JSON_BYTES).await?;
    let project = find(&state, &raw).await?;
    let ciphertext = state.secret_key.encrypt(&req.value);
    state.store.set_env_var(project.id, &name, &ciphertext, &crate::secrets::masked(&req.value)).await?;
    tracing::info!(project = %project.slug, env_var = %name, "environment variable set through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_env_var(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, name)): UrlPath<(String, String)>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let project = find(&state, &raw).await?;
    state.store.delete_env_var(project.id, &name).await?;
    tracing::info!(project = %project.slug, env_var = %name, "environment variable deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
