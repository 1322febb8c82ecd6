//! Image endpoints: create (pull, with docker's JSON-lines progress), list, inspect, history, tag, remove. Image
//! names contain slashes (`localhost:5000/team/app`), so `/images/{name}/json` cannot be a plain route: one
//! catch-all route per method hands the rest of the path to [`get_dispatch`] / [`post_dispatch`], which split
//! off the verb at the end, as dockerd's router does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::attach::channel_body;
use super::{blocking, ApiError, ApiResult, ApiState, Json, Query};
use crate::container::ContainerStore;
use crate::digest::Digest;
use crate::image::{ImageStore, Removal};
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::credentials::CredentialStore;
use crate::registry::{PullEvent, PullOptions, PushEvent, RegistryOptions};
use crate::root::Root;

/// `GET /images/json?all=&filters=`: one entry per image, docker's `ImageSummary`.
pub async fn list(State(state): State<ApiState>, q: Query) -> ApiResult<Json<Value>> {
    let filters = super::containers::parse_filters(q.get("filters"))?;
    let reference = filters
        .iter()
        .filter_map(|f| f.strip_prefix("reference="))
        .map(Reference::parse_bare)
        .collect::<Result<Vec<_>, _>>()?;
    let dangling_only = filters.iter().any(|f| f == "dangling=true");
    let root = state.root.clone();
    blocking(move || {
        let store = ImageStore::open(&root)?;
        let users = image_users(&root);
        let mut out = Vec::new();
        for image in store.list()? {
            let tags: Vec<&Reference> = image.names.iter().filter(|n| n.tag.is_some()).collect();
            if dangling_only && !tags.is_empty() {
                continue;
            }
            if !reference.is_empty()
                && !tags.iter().any(|n| {
                    reference.iter().any(|f| n.name() == f.name() && f.tag.as_ref().is_none_or(|t| n.tag.as_ref() == Some(t)))
                })
            {
                continue;
            }
            let size = store.image_size(&image);
            let created = image
                .config
                .created
                .as_deref()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |t| t.timestamp());
            out.push(json!({
                "Id": image.id.to_string(),
                "ParentId": "",
                "RepoTags": tags.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
                "RepoDigests": image.names.iter().filter(|n| n.digest.is_some()).map(Reference::familiar).collect::<Vec<_>>(),
                "Created": created,
                "Size": size,
                "SharedSize": -1,
                "VirtualSize": size,
                "Labels": image.config.config.labels,
                "Containers": users.iter().filter(|(d, _)| *d == image.id).count(),
            }));
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// Every container's image ID and container ID (what `rmi` must not pull out from under a container).
fn image_users(root: &Root) -> Vec<(Digest, String)> {
    let store = ContainerStore::open(root);
    let mut users = Vec::new();
    for id in store.ids().unwrap_or_default() {
        if let Ok(c) = store.load(&id) {
            if let Ok(d) = c.image_id.parse::<Digest>() {
                users.push((d, id));
            }
        }
    }
    users
}

/// Splits `busybox:latest/json` into (`busybox:latest`, `json`).
fn split_verb<'a>(rest: &'a str, verbs: &[&str]) -> Option<(&'a str, &'a str)> {
    let (name, verb) = rest.rsplit_once('/')?;
    (verbs.contains(&verb) && !name.is_empty()).then_some((name, verb))
}

/// `GET /images/{name}/json`, `/history` and `/get`.
pub async fn get_dispatch(State(state): State<ApiState>, Path(rest): Path<String>) -> ApiResult<Response> {
    let Some((name, verb)) = split_verb(&rest, &["json", "history", "get"]) else {
        return Err(ApiError::not_found(format!(
            "page not found: GET /images/{rest} (use /images/NAME/json, /images/NAME/history or /images/NAME/get)"
        )));
    };
    if verb == "get" {
        return save(state, vec![name.to_owned()]).await;
    }
    let (name, verb) = (name.to_owned(), verb.to_owned());
    let root = state.root.clone();
    blocking(move || {
        let store = ImageStore::open(&root)?;
        let image = store.resolve(&name)?;
        if verb == "json" {
            return Ok(Json(store.inspect_json(&image)).into_response());
        }
        let rows: Vec<Value> = store
            .history(&image)
            .into_iter()
            .map(|(id, h, size)| {
                let created = h
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map_or(0, |t| t.timestamp());
                json!({
                    "Id": id.map_or("<missing>".to_owned(), |d| d.to_string()),
                    "Created": created,
                    "CreatedBy": h.created_by.clone().unwrap_or_default(),
                    "Tags": Value::Null,
                    "Size": size,
                    "Comment": h.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        Ok(Json(Value::Array(rows)).into_response())
    })
    .await
}

/// Streams `names` as a docker archive (`docker save`); a name that does not resolve is a 404 before anything
/// is sent.
async fn save(state: ApiState, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request("names is required: GET /images/get?names=IMAGE"));
    }
    let root = state.root.clone();
    let checked = names.clone();
    blocking(move || {
        let store = ImageStore::open(&root)?;
        for n in &checked {
            store.resolve(n)?;
        }
        Ok(())
    })
    .await?;
    let root = state.root.clone();
    let body = super::attach::tar_body(move |out| {
        let store = ImageStore::open(&root).map_err(|e| e.to_string())?;
        crate::archive::save(&store, &names, out).map_err(|e| e.to_string())
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

/// `GET /images/get?names=A&names=B`.
pub async fn get_many(State(state): State<ApiState>, uri: axum::http::Uri) -> ApiResult<Response> {
    let axum::extract::Query(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    save(state, pairs.into_iter().filter(|(k, _)| k == "names").map(|(_, v)| v).collect()).await
}

/// `POST /images/load?quiet=`: a docker or OCI archive in the body (streamed to a staging file first, then
/// loaded all or nothing); answers docker's JSON lines `{"stream": "Loaded image: …"}`.
pub async fn load(State(state): State<ApiState>, body: axum::body::Body) -> ApiResult<Response> {
    let (staging, _) = super::stage_body(&state.root, body, "the archive").await?;
    let root = state.root.clone();
    let lines = blocking(move || {
        let store = ImageStore::open(&root)?;
        let input = staging.reopen().map_err(|e| ApiError::internal(format!("cannot read the staged archive: {e}")))?;
        let loaded = crate::archive::load(&store, std::io::BufReader::new(input))?;
        Ok(crate::archive::describe(&loaded))
    })
    .await?;
    let mut out = String::new();
    for l in lines {
        out.push_str(&json!({ "stream": format!("{l}\n") }).to_string());
        out.push_str("\r\n");
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// `POST /images/prune?filters=`: nameless unused images (every unused image with `dangling=false`).
pub async fn prune(State(state): State<ApiState>, q: Query) -> ApiResult<Json<Value>> {
    let all =
        super::containers::parse_filters(q.get("filters"))?.iter().any(|f| f == "dangling=false" || f == "dangling=0");
    let root = state.root.clone();
    blocking(move || {
        let store = ImageStore::open(&root)?;
        let users = image_users(&root);
        let in_use = |id: &Digest| users.iter().any(|(d, _)| d == id);
        let (removals, reclaimed) = store.prune(all, &in_use)?;
        let deleted: Vec<Value> = removals
            .into_iter()
            .map(|r| match r {
                Removal::Untagged(n) => json!({ "Untagged": n.familiar() }),
                Removal::Deleted(d) => json!({ "Deleted": d.to_string() }),
            })
            .collect();
        Ok(Json(json!({ "ImagesDeleted": deleted, "SpaceReclaimed": reclaimed })))
    })
    .await
}

/// The credentials a request brings in docker's `X-Registry-Auth` header (base64url JSON with `username` and
/// `password`), as a credential store for `registry` in a private temporary directory (kept alive by the
/// returned guard); without them, the server's own docker config (`$DOCKER_CONFIG`, `~/.docker`).
fn request_credentials(headers: &HeaderMap, registry: &str) -> ApiResult<(CredentialStore, Option<tempfile::TempDir>)> {
    use base64::Engine as _;
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct AuthConfig {
        username: String,
        password: String,
    }
    let Some(raw) = headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) else {
        return Ok((CredentialStore::default_location(), None));
    };
    let trimmed = raw.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Auth is not base64: {e}")))?;
    let auth: AuthConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("X-Registry-Auth is not docker's auth JSON: {e}")))?;
    if auth.username.is_empty() {
        return Ok((CredentialStore::default_location(), None));
    }
    let dir = tempfile::tempdir().map_err(|e| ApiError::internal(format!("cannot hold the credentials: {e}")))?;
    let store = CredentialStore::at(dir.path().join("config.json"));
    store.set(registry, &Credentials { username: auth.username, password: auth.password })?;
    Ok((store, Some(dir)))
}

/// `POST /images/{name}/tag?repo=&tag=` (201) and `POST /images/{name}/push?tag=` (docker's progress stream).
pub async fn post_dispatch(
    State(state): State<ApiState>,
    Path(rest): Path<String>,
    q: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some((name, verb)) = split_verb(&rest, &["tag", "push"]) else {
        return Err(ApiError::not_found(format!(
            "page not found: POST /images/{rest} (use /images/NAME/tag or /images/NAME/push)"
        )));
    };
    if verb == "push" {
        let name = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{name}:{t}"),
            None => name.to_owned(),
        };
        return push(state, &name, &headers);
    }
    let repo = q.get("repo").filter(|r| !r.is_empty()).ok_or_else(|| ApiError::bad_request("repo is required"))?;
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    };
    let name = name.to_owned();
    let root = state.root.clone();
    blocking(move || {
        ImageStore::open(&root)?.tag(&name, &target)?;
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

/// Pushes `name`, streaming docker's JSON progress; the last lines are the digest line and the `aux` object
/// the CLI reads. Errors after the 200 are `{"error": …}` lines, which the docker CLI prints and exits 1 on.
fn push(state: ApiState, name: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let reference = Reference::parse(name)?;
    let (credentials, guard) = request_credentials(headers, &reference.registry)?;
    let (tx, rx) = mpsc::channel(64);
    let root = state.root.clone();
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let send = |v: Value| {
            let _ = tx.blocking_send(progress_line(v));
        };
        let error = |e: String| json!({ "error": e, "errorDetail": { "message": e } });
        let store = match ImageStore::open(&root) {
            Ok(s) => s,
            Err(e) => return send(error(e.to_string())),
        };
        let options = RegistryOptions::from_flags_and_env(&[]);
        let result = crate::registry::push(&store, &reference, &options, &credentials, &mut |event| {
            send(match event {
                PushEvent::Repository { name } => {
                    json!({ "status": format!("The push refers to repository [{name}]") })
                }
                PushEvent::Preparing { id } => json!({ "status": "Preparing", "id": id, "progressDetail": {} }),
                PushEvent::Pushing { id, size } => {
                    json!({ "status": "Pushing", "id": id, "progressDetail": { "current": 0, "total": size } })
                }
                PushEvent::Pushed { id } => json!({ "status": "Pushed", "id": id, "progressDetail": {} }),
                PushEvent::Exists { id } => json!({ "status": "Layer already exists", "id": id, "progressDetail": {} }),
                PushEvent::Mounted { id, from } => {
                    json!({ "status": format!("Mounted from {from}"), "id": id, "progressDetail": {} })
                }
            })
        });
        match result {
            Ok(o) => {
                send(
                    json!({ "status": format!("{}: digest: {} size: {}", o.tag, o.digest, o.size), "progressDetail": {} }),
                );
                send(
                    json!({ "progressDetail": {}, "aux": { "Tag": o.tag, "Digest": o.digest.to_string(), "Size": o.size } }),
                );
            }
            Err(e) => send(error(format!("cannot push {}: {e}", reference.familiar()))),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}

/// `DELETE /images/{name}?force=`: docker's list of `{"Untagged": …}` / `{"Deleted": …}`.
pub async fn remove(State(state): State<ApiState>, Path(name): Path<String>, q: Query) -> ApiResult<Json<Value>> {
    let force = q.flag("force");
    let root = state.root.clone();
    blocking(move || {
        let store = ImageStore::open(&root)?;
        let users = image_users(&root);
        let used_by = |id: &Digest| users.iter().find(|(i, _)| i == id).map(|(_, c)| c.clone());
        let removals = store.remove(&name, force, &used_by)?;
        let out: Vec<Value> = removals
            .into_iter()
            .map(|r| match r {
                Removal::Untagged(n) => json!({ "Untagged": n.familiar() }),
                Removal::Deleted(d) => json!({ "Deleted": d.to_string() }),
            })
            .collect();
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// `POST /images/create?fromSrc=-&repo=&tag=&message=&changes=…`: `docker import` — the request body is a root
/// filesystem tar (plain or gzip), staged on disk, then imported as `engine import` does (nothing is visible
/// unless the whole tar unpacked); answers docker's one progress line `{"status": "sha256:…"}`. `repo` may carry
/// the tag (`name:tag`, as the docker CLI sends it); every `changes` value is a Dockerfile instruction
/// (`CMD`, `ENV`, …). Only `fromSrc=-` is served: a URL source answers 501 (the engine fetches nothing for a
/// client). A corrupt or hostile tar is a 400 naming what is wrong.
async fn import(state: ApiState, q: &Query, src: &str, body: axum::body::Body) -> ApiResult<Response> {
    if src != "-" {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("importing from {src} is not supported by engine serve: send the tar itself (fromSrc=-), as `docker import FILE` does"),
        ));
    }
    let name = match (q.get("repo").filter(|r| !r.is_empty()), q.get("tag").filter(|t| !t.is_empty())) {
        (None, _) => None,
        (Some(repo), Some(tag)) => Some(Reference::parse(&format!("{repo}:{tag}"))?),
        (Some(repo), None) => Some(Reference::parse(repo)?),
    };
    let mut run_config = crate::image::RunConfig::default();
    for change in q.all("changes") {
        crate::image::change::apply(&mut run_config, change)
            .map_err(|e| ApiError::bad_request(format!("invalid change `{change}`: {e}")))?;
    }
    let message = q.get("message").filter(|m| !m.is_empty()).map(str::to_owned);
    let (staging, _) = super::stage_body(&state.root, body, "the image tar").await?;
    let root = state.root.clone();
    let id = blocking(move || {
        let store = ImageStore::open(&root)?;
        let input = staging.reopen().map_err(|e| ApiError::internal(format!("cannot read the staged tar: {e}")))?;
        let options = crate::image::import::ImportOptions { name, message, run_config };
        Ok(store.import(std::io::BufReader::new(input), "-", options)?.id.to_string())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], progress_line(json!({ "status": id }))).into_response())
}

/// One JSON line of docker's progress stream.
pub(super) fn progress_line(value: Value) -> Bytes {
    let mut line = value.to_string();
    line.push_str("\r\n");
    Bytes::from(line)
}

/// `POST /images/create?fromImage=&tag=`: pulls, streaming docker's JSON progress lines. Errors after the 200
/// went out are reported in the stream as `{"error": …}`, which the docker CLI prints and exits 1 on.
/// Credentials come from `X-Registry-Auth` when the client sends some, else from the server's docker config.
/// With `fromSrc`, imports instead (see [`import`]).
pub async fn create(
    State(state): State<ApiState>,
    q: Query,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    if let Some(src) = q.get("fromSrc").filter(|s| !s.is_empty()) {
        return import(state, &q, src, body).await;
    }
    let from =
        q.get("fromImage").filter(|f| !f.is_empty()).ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_owned(),
    };
    let reference = Reference::parse(&name)?;
    let (credentials, guard) = request_credentials(&headers, &reference.registry)?;
    let (tx, rx) = mpsc::channel(64);
    let root = state.root.clone();
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let send = |v: Value| {
            let _ = tx.blocking_send(progress_line(v));
        };
        let store = match ImageStore::open(&root) {
            Ok(s) => s,
            Err(e) => return send(json!({ "error": e.to_string(), "errorDetail": { "message": e.to_string() } })),
        };
        let options = PullOptions {
            platform: Default::default(),
            registry: RegistryOptions::from_flags_and_env(&[]),
            credentials,
        };
        let result = crate::registry::pull(&store, &reference, &options, &mut |event| {
            let v = match event {
                PullEvent::Resolved { reference, repository } => {
                    json!({ "status": format!("Pulling from {repository}"), "id": reference })
                }
                PullEvent::Waiting { id } => json!({ "status": "Pulling fs layer", "id": id }),
                PullEvent::Exists { id } => json!({ "status": "Already exists", "id": id }),
                PullEvent::Downloading { id, current, total } => json!({
                    "status": "Downloading", "id": id,
                    "progressDetail": { "current": current, "total": total },
                }),
                PullEvent::Retrying { id, attempt, reason } => {
                    json!({ "status": format!("Retrying (attempt {attempt}): {reason}"), "id": id })
                }
                PullEvent::Downloaded { id } => json!({ "status": "Download complete", "id": id }),
                PullEvent::Extracting { id } => json!({ "status": "Extracting", "id": id }),
                PullEvent::Complete { id } => json!({ "status": "Pull complete", "id": id }),
            };
            send(v);
        });
        match result {
            Ok(outcome) => {
                send(json!({ "status": format!("Digest: {}", outcome.digest) }));
                let status = if outcome.up_to_date {
                    format!("Status: Image is up to date for {}", reference.familiar())
                } else {
                    format!("Status: Downloaded newer image for {}", reference.familiar())
                };
                send(json!({ "status": status }));
            }
            Err(e) => send(json!({ "error": e.to_string(), "errorDetail": { "message": e.to_string() } })),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_split_at_the_verb() {
        assert_eq!(split_verb("busybox/json", &["json"]), Some(("busybox", "json")));
        assert_eq!(split_verb("localhost:5000/team/app:1/tag", &["tag"]), Some(("localhost:5000/team/app:1", "tag")));
        assert_eq!(split_verb("busybox", &["json"]), None);
        assert_eq!(split_verb("busybox/push", &["tag"]), None);
    }
}
