//! Volume endpoints: list, inspect, create, remove, prune, over [`crate::volume::VolumeStore`] as
//! `engine volume …` does (only the `local` driver exists).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::parse_filters;
use super::{blocking, in_scope, parse_json, read_body, ApiError, ApiResult, ApiState, Json, Query, Scope};
use crate::container::mounts::volume_users;
use crate::container::ContainerStore;
use crate::volume::{Error as VolumeError, Volume, VolumeStore};

/// Reads a volume, as 404 when it is out of this server's scope.
fn scoped_volume(scope: Option<&Scope>, store: &VolumeStore, name: &str) -> ApiResult<Volume> {
    let v = store.get(name)?;
    if !in_scope(scope, &v.labels) {
        return Err(VolumeError::NotFound(name.to_owned()).into());
    }
    Ok(v)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// `GET /volumes?filters=` (`name`, `label` and `dangling` filters): `{"Volumes": [...], "Warnings": []}`.
pub async fn list(State(state): State<ApiState>, q: Query) -> ApiResult<Json<Value>> {
    let filters = parse_filters(q.get("filters"))?;
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = VolumeStore::open(&root)?;
        let users = volume_users(&ContainerStore::open(&root))?;
        let out: Vec<Value> = store
            .list()?
            .iter()
            .filter(|v| in_scope(scope.as_ref(), &v.labels))
            .filter(|v| {
                filters.iter().all(|f| match f.split_once('=') {
                    Some(("name", n)) => v.name.contains(n),
                    Some(("dangling", d)) => (d == "true" || d == "1") != users.iter().any(|(u, _)| *u == v.name),
                    Some(("label", l)) => match l.split_once('=') {
                        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                        None => v.labels.contains_key(l),
                    },
                    _ => true,
                })
            })
            .map(|v| store.inspect_json(v))
            .collect();
        Ok(Json(json!({ "Volumes": out, "Warnings": [] })))
    })
    .await
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(state): State<ApiState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let store = VolumeStore::open(&root)?;
        let v = scoped_volume(scope.as_ref(), &store, &name)?;
        Ok(Json(store.inspect_json(&v)))
    })
    .await
}

/// `POST /volumes/create`: 201 with the volume (an existing volume of that name is returned as is, as docker does).
pub async fn create(State(state): State<ApiState>, body: Body) -> ApiResult<Response> {
    let body: CreateBody = parse_json(&read_body(body).await?)?;
    if let Some(d) = body.driver.as_deref().filter(|d| !d.is_empty() && *d != "local") {
        return Err(ApiError::not_found(format!("plugin \"{d}\" not found: only the local volume driver exists")));
    }
    let root = state.root.clone();
    let scope = state.scope.clone();
    let value = blocking(move || {
        let store = VolumeStore::open(&root)?;
        let name = body.name.filter(|n| !n.is_empty());
        let mut labels = body.labels.unwrap_or_default();
        if let Some(scope) = &scope {
            labels.insert(scope.key.clone(), scope.value.clone());
        }
        let v = store.create(name.as_deref(), labels, body.driver_opts.unwrap_or_default())?;
        if !in_scope(scope.as_ref(), &v.labels) {
            return Err(ApiError::conflict(format!(
                "volume name {} is taken outside this server's scope: choose another name",
                v.name
            )));
        }
        Ok(store.inspect_json(&v))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// `DELETE /volumes/{name}?force=`: 204; 409 while a container uses it.
pub async fn remove(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<StatusCode> {
    let force = q.flag("force");
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let users = volume_users(&ContainerStore::open(&root))?;
        let used_by = |n: &str| users.iter().find(|(v, _)| v == n).map(|(_, c)| c.clone());
        let store = VolumeStore::open(&root)?;
        let v = scoped_volume(scope.as_ref(), &store, &name)?;
        store.remove(&v.name, force, &used_by)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /volumes/prune?filters=`: unused anonymous volumes, or every unused one with the `all=true` filter
/// (API 1.42's rule).
pub async fn prune(State(state): State<ApiState>, q: Query) -> ApiResult<Json<Value>> {
    let all = parse_filters(q.get("filters"))?.iter().any(|f| f == "all=true" || f == "all=1");
    let root = state.root.clone();
    let scope = state.scope.clone();
    blocking(move || {
        let users = volume_users(&ContainerStore::open(&root))?;
        let store = VolumeStore::open(&root)?;
        // Volumes of other scopes count as in use: this server never removes them.
        let foreign: Vec<String> =
            store.list()?.into_iter().filter(|v| !in_scope(scope.as_ref(), &v.labels)).map(|v| v.name).collect();
        let in_use = |n: &str| users.iter().any(|(v, _)| v == n) || foreign.iter().any(|f| f == n);
        let (removed, reclaimed) = store.prune(all, &in_use)?;
        Ok(Json(json!({ "VolumesDeleted": removed, "SpaceReclaimed": reclaimed })))
    })
    .await
}
