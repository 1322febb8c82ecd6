//! Contexts for people and tools (admin token): list, create and delete contexts, and list (names and masked
//! hints only), set and delete their variables. Jobs that name a context in their workflow see its variables.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::jobs::require_admin;
use super::projects::{var_name, VarValue};
use super::{read_json, AppState, Problem, MAX_JSON_BYTES};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/contexts", get(list).post(create))
        .route("/api/v1/contexts/{context}", delete(remove))
        .route("/api/v1/contexts/{context}/env-vars", get(vars))
        .route("/api/v1/contexts/{context}/env-vars/{name}", put(set_var).delete(delete_var))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewContext {
    name: String,
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let names = state.store.contexts().await?;
    let contexts: Vec<serde_json::Value> = names.into_iter().map(|name| serde_json::json!({"name": name})).collect();
    Ok(Json(serde_json::json!({"contexts": contexts})).into_response())
}

async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let req: NewContext = read_json(body, MAX_JSON_BYTES).await?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 || name.contains('/') {
        return Err(Problem::bad_request("`name` must be 1 to 200 characters without `/`"));
    }
    state.store.create_context(name).await?;
    tracing::info!(context = %name, "context created through the API");
    Ok((StatusCode::CREATED, Json(serde_json::json!({"name": name}))).into_response())
}

async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(context): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    state.store.delete_context(&context).await?;
    tracing::info!(%context, "context deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vars(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(context): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    Ok(Json(serde_json::json!({"env_vars": state.store.context_vars(&context).await?})).into_response())
}

async fn set_var(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((context, name)): UrlPath<(String, String)>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let name = var_name(&name)?;
    let req: VarValue = read_json(body, MAX_JSON_BYTES).await?;
    // Setting a variable does not create the context: a typo would make a context no job names.
    state.store.context_vars(&context).await?;
    let ciphertext = state.secret_key.encrypt(&req.value);
    state.store.set_context_var(&context, &name, &ciphertext, &crate::secrets::masked(&req.value)).await?;
    tracing::info!(%context, env_var = %name, "context variable set through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_var(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((context, name)): UrlPath<(String, String)>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    state.store.delete_context_var(&context, &name).await?;
    tracing::info!(%context, env_var = %name, "context variable deleted through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
