//! The runner protocol (`docs/runner-protocol.md`): register, lease (long-poll), heartbeat, events, test results,
//! artifacts, workspaces, complete. Every call but `register` is authenticated by the runner's own token; calls
//! about a job answer `409 lease_lost` unless the job is running under the caller's lease.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use config_schema::wire::{
    CheckoutInfo, JobAssignment, JobEvent, JobRef, JobResult, PipelineRef, Stream, TestResults, WorkflowRef,
    WIRE_VERSION,
};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{bearer, read_json, AppState, Problem, MAX_JSON_BYTES};
use crate::store::jobs::JobRow;
use crate::store::logs::LogAppend;
use crate::store::runners::{Runner, TokenKind};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runners/register", post(register))
        .route("/api/v1/runners/lease", post(lease))
        .route("/api/v1/jobs/{job_id}/heartbeat", post(heartbeat))
        .route("/api/v1/jobs/{job_id}/events", post(events))
        .route("/api/v1/jobs/{job_id}/test-results", post(test_results))
        .route("/api/v1/jobs/{job_id}/artifacts/{*path}", put(artifact).get(super::logs::download_artifact))
        .route("/api/v1/jobs/{job_id}/workspace", put(put_workspace).get(get_workspace))
        .route("/api/v1/workspace-layers/{layer_id}", get(workspace_layer))
        .route("/api/v1/jobs/{job_id}/complete", post(complete))
}

#[derive(Deserialize)]
struct Register {
    registration_token: String,
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    resource_classes: Vec<String>,
}

async fn register(State(state): State<AppState>, body: Body) -> Result<Response, Problem> {
    let req: Register = read_json(body, MAX_JSON_BYTES).await?;
    if req.name.trim().is_empty() || req.name.len() > 200 {
        return Err(Problem::bad_request("`name` must be 1 to 200 characters"));
    }
    if !state.store.check_token(TokenKind::RunnerRegistration, &req.registration_token).await? {
        return Err(Problem::unauthorized(
            "unknown registration token: create one with `coordinator token create --runner`",
        ));
    }
    let (runner, token) = state.store.register_runner(&req.name, &req.labels, &req.resource_classes).await?;
    tracing::info!(runner.id = runner.id, runner.name = %runner.name, "runner registered");
    let body = serde_json::json!({"runner_id": runner.id.to_string(), "token": token});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The runner the request's bearer token belongs to.
async fn runner(state: &AppState, headers: &HeaderMap) -> Result<Runner, Problem> {
    let token = bearer(headers).ok_or_else(|| Problem::unauthorized("send `Authorization: Bearer <runner token>`"))?;
    state
        .store
        .runner_by_token(token)
        .await?
        .ok_or_else(|| Problem::unauthorized("unknown runner token: register the runner again"))
}

fn job_id(raw: &str) -> Result<i64, Problem> {
    raw.parse().map_err(|_| Problem::not_found(format!("job `{raw}` not found")))
}

#[derive(Deserialize, Default)]
struct LeaseRequest {
    wait_ms: Option<u64>,
}

const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting long-poll looks at the database without being woken (other coordinators queue too).
const RECHECK: Duration = Duration::from_secs(1);

async fn lease(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let bytes = axum::body::to_bytes(body, MAX_JSON_BYTES)
        .await
        .map_err(|_| Problem::too_large("the request body is over 1 MiB"))?;
    let req: LeaseRequest =
        if bytes.iter().all(u8::is_ascii_whitespace) { LeaseRequest::default() } else { super::parse_json(&bytes)? };
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(30_000)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        // Registered before the check, so a job queued between the check and the wait still wakes us.
        let woken = state.queued.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Some(job) = state.store.lease_job(runner.id, &runner.resource_classes, state.lease_ttl_ms).await? {
            tracing::info!(job.id = job.id, runner.id = runner.id, job.attempt = job.attempt, "job leased");
            let assignment = assignment(&state, &job).await?;
            return Ok(Json(assignment).into_response());
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let nap = (deadline - now).min(RECHECK);
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// The assignment of a job just leased: spec, checkout, built-in environment and the secrets it may see.
pub async fn assignment(state: &AppState, job: &JobRow) -> Result<JobAssignment, Problem> {
    let pipeline = state.store.pipeline(job.pipeline_id).await?;
    let workflow = state.store.workflow(job.workflow_id).await?;
    let project = state.store.project(job.project_id).await?;
    let spec = job.spec()?.ok_or_else(|| Problem::internal(format!("job {} has no spec", job.id)))?;
    let t = &pipeline.trigger;
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("CI", "true".into());
    set("CIRCLECI", "true".into());
    set("CIRCLE_SHA1", t.sha.clone());
    if let Some(b) = &t.branch {
        set("CIRCLE_BRANCH", b.clone());
    }
    if let Some(tag) = &t.tag {
        set("CIRCLE_TAG", tag.clone());
    }
    set("CIRCLE_BUILD_NUM", job.number.to_string());
    set("CIRCLE_JOB", job.name.clone());
    set("CIRCLE_WORKFLOW_ID", workflow.id.to_string());
    set("CIRCLE_WORKFLOW_JOB_ID", job.id.to_string());
    set("CIRCLE_PIPELINE_ID", pipeline.id.to_string());
    set("CIRCLE_PIPELINE_NUMBER", pipeline.number.to_string());
    set("CIRCLE_REPOSITORY_URL", project.clone_url.clone());
    set("CIRCLE_NODE_TOTAL", spec.parallelism.max(1).to_string());
    set("CIRCLE_NODE_INDEX", "0".into());
    if !t.author.is_empty() {
        set("CIRCLE_USERNAME", t.author.clone());
    }
    let (user, repo) = project.slug.split_once('/').unwrap_or(("", project.slug.as_str()));
    set("CIRCLE_PROJECT_USERNAME", user.to_string());
    set("CIRCLE_PROJECT_REPONAME", repo.to_string());
    if let Some(pr) = t.pr_number {
        set("CIRCLE_PR_NUMBER", pr.to_string());
        if !project.clone_url.starts_with('/') {
            let base = project.clone_url.trim_end_matches(".git");
            set("CIRCLE_PULL_REQUEST", format!("{base}/pull/{pr}"));
        }
    }
    let contexts = job.contexts()?;
    let secrets = crate::job_secrets::for_job(state, &project, &pipeline, &contexts).await?;
    // The runner clones a private GitHub repository with it; a fork's code gets it only as it gets secrets.
    let credential = if t.is_fork && !project.fork_secrets {
        None
    } else {
        crate::github::access::GitAccess::token_for(state.git_access.as_ref(), &project)
            .await
            .map_err(|e| Problem::internal(format!("{e}; the job is queued again when its lease expires")))?
    };
    remember_secrets(state, job, secrets.values().cloned().collect());
    Ok(JobAssignment {
        wire_version: WIRE_VERSION,
        pipeline: PipelineRef {
            id: pipeline.id.to_string(),
            number: pipeline.number as u64,
            project: project.slug.clone(),
        },
        workflow: WorkflowRef { id: workflow.id.to_string(), name: workflow.name },
        job: JobRef {
            id: job.id.to_string(),
            name: job.name.clone(),
            number: job.number as u64,
            attempt: job.attempt as u32,
        },
        spec,
        node_index: 0,
        checkout: CheckoutInfo {
            repository_url: project.local_path.clone().unwrap_or(project.clone_url.clone()),
            revision: t.sha.clone(),
            branch: t.branch.clone(),
            tag: t.tag.clone(),
            pull_request: t.pr_number.map(|n| n as u64),
            credential,
        },
        env,
        secrets,
        contexts,
        lease_expires_at: job.lease_expires_at.unwrap_or_default() as u64,
    })
}

async fn heartbeat(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let hb = state.store.heartbeat(job_id(&raw)?, runner.id, state.lease_ttl_ms).await?;
    Ok(Json(serde_json::json!({"lease_expires_at": hb.lease_expires_at, "cancel": hb.cancel})).into_response())
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let job = state.store.leased_job(job_id(&raw)?, runner.id).await?;
    let events: Vec<JobEvent> = read_json(body, MAX_JSON_BYTES).await?;
    let secrets = job_secret_values(&state, &job).await?;
    let mask = |text: &str| mask_secrets(text, &secrets);
    let mut accepted = 0usize;
    for event in &events {
        match event {
            JobEvent::StepStarted { step, name, at, .. } => {
                state.store.step_started(job.id, job.attempt, i64::from(*step), name, *at as i64).await?;
            }
            JobEvent::StepFinished { step, status, exit_code, at, .. } => {
                state
                    .store
                    .step_finished(job.id, job.attempt, i64::from(*step), *status, *exit_code, *at as i64)
                    .await?;
                state.log_events.notify((job.id, i64::from(*step)));
            }
            JobEvent::Log { step, stream, offset, data, .. } => {
                if data.len() > 64 * 1024 {
                    return Err(Problem::too_large("a log chunk is at most 64 KiB: split it"));
                }
                let stream = match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                };
                let outcome =
                    state.store.append_log(job.id, job.attempt, i64::from(*step), stream, *offset, data, &mask).await?;
                if let LogAppend::Gap { expected_offset } = outcome {
                    let mut p = Problem::conflict(format!(
                        "step {step}: the log chunk at offset {offset} leaves a gap: resend from {expected_offset}"
                    ));
                    p.extra = Some(("expected_offset", serde_json::json!(expected_offset)));
                    return Err(p);
                }
                if outcome == LogAppend::Stored {
                    state.log_events.notify((job.id, i64::from(*step)));
                }
            }
        }
        accepted += 1;
    }
    Ok(Json(serde_json::json!({"accepted": accepted})).into_response())
}

/// The plain values of the secrets a job sees (for masking what it sends).
async fn job_secret_values(state: &AppState, job: &JobRow) -> Result<Arc<Vec<String>>, Problem> {
    let cached = state.job_secrets.lock().ok().and_then(|m| m.get(&(job.id, job.attempt)).cloned());
    if let Some(values) = cached {
        return Ok(values);
    }
    let pipeline = state.store.pipeline(job.pipeline_id).await?;
    let project = state.store.project(job.project_id).await?;
    let secrets = crate::job_secrets::for_job(state, &project, &pipeline, &job.contexts()?).await?;
    Ok(remember_secrets(state, job, secrets.into_values().collect()))
}

fn remember_secrets(state: &AppState, job: &JobRow, values: Vec<String>) -> Arc<Vec<String>> {
    let values = Arc::new(values);
    if let Ok(mut map) = state.job_secrets.lock() {
        map.insert((job.id, job.attempt), Arc::clone(&values));
    }
    values
}

fn forget_secrets(state: &AppState, job_id: i64) {
    if let Ok(mut map) = state.job_secrets.lock() {
        map.retain(|(id, _), _| *id != job_id);
    }
}

/// `text` with every occurrence of a secret value replaced by `********` (longest values first; values under 4
/// characters are not masked, as they would hide ordinary text).
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut values: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "********");
        }
    }
    out
}

async fn test_results(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let job = state.store.leased_job(job_id(&raw)?, runner.id).await?;
    let results: TestResults = read_json(body, 16 * MAX_JSON_BYTES).await?;
    state.store.add_test_results(job.id, job.attempt, &results).await?;
    Ok(StatusCode::OK.into_response())
}

/// `path` as a relative path of normal components (no `..`, no root, no empty segment).
fn safe_relative(path: &str) -> Result<PathBuf, Problem> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(Problem::bad_request(format!("artifact path `{path}` must stay inside the job: no `..`"))),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Problem::bad_request("the artifact path is empty"));
    }
    Ok(out)
}

/// An artifact path that names a directory of another artifact, or lies under another artifact's file: `a` and
/// `a/b` cannot both be files on disk (nor in a download of the artifacts).
fn clash(rel: &Path) -> Problem {
    Problem::conflict(format!(
        "artifact path `{}` clashes with an artifact uploaded before: one is a file where the other needs a \
         directory (`a` and `a/b`); store them under different paths",
        rel.display()
    ))
}

/// Refuses `rel` when a stored artifact of the job is one of its parent directories or lives under it.
async fn refuse_clash(root: &Path, rel: &Path) -> Result<(), Problem> {
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        match tokio::fs::symlink_metadata(&at).await {
            Ok(meta) if i + 1 < parts.len() && !meta.is_dir() => return Err(clash(rel)),
            Ok(meta) if i + 1 == parts.len() && meta.is_dir() => return Err(clash(rel)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Why an upload failed; `clash` when the file system refused a file where a directory is, or the reverse.
struct UploadError {
    problem: Problem,
    clash: bool,
}

impl From<Problem> for UploadError {
    fn from(problem: Problem) -> UploadError {
        UploadError { problem, clash: false }
    }
}

impl From<UploadError> for Problem {
    fn from(e: UploadError) -> Problem {
        e.problem
    }
}

fn is_clash(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::IsADirectory | std::io::ErrorKind::AlreadyExists
    ) || e.raw_os_error() == Some(libc::ENOTEMPTY)
}

/// Streams `body` into `dest` (through a temporary file beside it), refusing more than `limit` bytes; a full disk
/// under `data_dir` is a `507` naming it ([`super::storage_full`]) and leaves no partial file.
async fn store_upload(body: Body, dest: &Path, limit: u64, data_dir: &Path) -> Result<u64, UploadError> {
    let dir = dest.parent().ok_or_else(|| Problem::internal("upload destination has no parent"))?;
    let failed = |e: std::io::Error, path: &Path| super::storage_full::write_failed(&e, "the upload", path, data_dir);
    tokio::fs::create_dir_all(dir).await.map_err(|e| UploadError { clash: is_clash(&e), problem: failed(e, dir) })?;
    let tmp = dir.join(format!(".upload-{:016x}", rand::random::<u64>()));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| failed(e, &tmp))?;
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Problem::bad_request(format!("the upload broke off: {e}")))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(Problem::too_large(format!("the upload is over {limit} bytes")));
            }
            file.write_all(&chunk).await.map_err(|e| failed(e, &tmp))?;
        }
        file.flush().await.map_err(|e| failed(e, &tmp))?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        if e.status != StatusCode::PAYLOAD_TOO_LARGE && e.status != StatusCode::BAD_REQUEST {
            // The write failed (a full disk): read the rest of the body (up to the limit, storing nothing) so the
            // client finishes sending and reads the answer instead of a broken pipe.
            while let Some(Ok(chunk)) = stream.next().await {
                size += chunk.len() as u64;
                if size > limit {
                    break;
                }
            }
        }
        return Err(e.into());
    }
    if let Err(e) = tokio::fs::rename(&tmp, dest).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(UploadError { clash: is_clash(&e), problem: failed(e, dest) });
    }
    Ok(size)
}

async fn artifact(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, path)): UrlPath<(String, String)>,
    body: Body,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let job = state.store.leased_job(job_id(&raw)?, runner.id).await?;
    let rel = safe_relative(&path)?;
    let root = state.data_dir.join("artifacts").join(job.id.to_string()).join(job.attempt.to_string());
    let dest = root.join(&rel);
    refuse_clash(&root, &rel).await?;
    // `clash`: another upload of this job made the clash after the check.
    let size = store_upload(body, &dest, state.max_artifact_bytes, &state.data_dir).await.map_err(|e| {
        if e.clash {
            clash(&rel)
        } else {
            e.problem
        }
    })?;
    state.store.put_artifact(job.id, job.attempt, &rel.to_string_lossy(), size as i64, &dest.to_string_lossy()).await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn put_workspace(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let job = state.store.leased_job(job_id(&raw)?, runner.id).await?;
    let dest = state.data_dir.join("workspaces").join(job.id.to_string()).join(format!(
        "{}-{:016x}.tar",
        job.attempt,
        rand::random::<u64>()
    ));
    let size = store_upload(body, &dest, state.max_workspace_bytes, &state.data_dir).await?;
    let id = state.store.add_workspace_layer(job.id, job.attempt, size as i64, &dest.to_string_lossy()).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"layer_id": id.to_string()}))).into_response())
}

async fn get_workspace(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let job = state.store.leased_job(job_id(&raw)?, runner.id).await?;
    let layers = state.store.upstream_workspace_layers(job.id).await?;
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(id, size)| serde_json::json!({"url": format!("/api/v1/workspace-layers/{id}"), "size_bytes": size}))
        .collect();
    Ok(Json(serde_json::json!({"layers": layers})).into_response())
}

async fn workspace_layer(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    runner(&state, &headers).await?;
    let id: i64 = raw.parse().map_err(|_| Problem::not_found(format!("workspace layer `{raw}` not found")))?;
    let file =
        state.store.workspace_layer_file(id).await?.ok_or_else(|| Problem::not_found("workspace layer not found"))?;
    let f =
        tokio::fs::File::open(&file).await.map_err(|e| Problem::internal(format!("cannot open layer {id}: {e}")))?;
    let stream = file_stream(f);
    Ok((StatusCode::OK, [("content-type", "application/x-tar")], Body::from_stream(stream)).into_response())
}

/// Most bytes one read of [`file_stream`] yields.
pub const FILE_CHUNK_BYTES: usize = 64 * 1024;

/// A file as a stream of chunks of at most [`FILE_CHUNK_BYTES`].
pub(crate) fn file_stream(
    f: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(f), |file| async move {
        let mut f = file?;
        let mut buf = vec![0u8; FILE_CHUNK_BYTES];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

async fn complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    let runner = runner(&state, &headers).await?;
    let id = job_id(&raw)?;
    let result: JobResult = read_json(body, MAX_JSON_BYTES).await?;
    if result.job_id != raw {
        return Err(Problem::bad_request(format!(
            "the result names job `{}` but was sent for job `{raw}`",
            result.job_id
        )));
    }
    let queued = state.store.complete_job(id, runner.id, &result).await?;
    forget_secrets(&state, id);
    state.log_events.notify_job(id);
    if let Ok(job) = state.store.job(id).await {
        crate::statuses::spawn_report(&state, job.pipeline_id);
    }
    tracing::info!(job.id = id, runner.id = runner.id, status = ?result.status, "job completed");
    if queued > 0 {
        state.wake_runners();
    }
    Ok(Json(serde_json::json!({})).into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::store::pipelines::PipelineTrigger;
    use crate::store::projects::NewProject;
    use crate::store::testing;

    /// Sends one request to the real router; returns status and JSON body (`null` when empty).
    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::from(body)).unwrap_or_else(|e| panic!("{e}"));
        let resp = app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap_or_default();
        let json =
            if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap_or_default() };
        (status, json)
    }

    fn json(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    const CONFIG: &str = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'echo hi'}]}\n  \
        deploy: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  main:\n    jobs: [build, \
        {deploy: {requires: [build]}}]\n";

    #[tokio::test]
    async fn a_runner_registers_leases_reports_and_completes_a_job() {
        for db in testing::databases().await {
            let name = db.name;
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
            let app = crate::api::router(state.clone());
            let s = &db.store;
            let project = s
                .add_project(&NewProject {
                    slug: "acme/app".into(),
                    clone_url: "https://example.invalid/acme/app.git".into(),
                    local_path: None,
                    webhook_secret_enc: None,
                    default_branch: "main".into(),
                    fork_secrets: false,
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));

            // Registration needs a registration token.
            let (status, _) = call(
                &app,
                "POST",
                "/api/v1/runners/register",
                None,
                json(serde_json::json!({"registration_token": "drr_nope", "name": "r1"})),
            )
            .await;
            assert_eq!(status, 401, "{name}");
            let reg = s.create_token(TokenKind::RunnerRegistration).await.unwrap_or_else(|e| panic!("{e}"));
            let (status, body) = call(
                &app,
                "POST",
                "/api/v1/runners/register",
                None,
                json(serde_json::json!({"registration_token": reg, "name": "r1"})),
            )
            .await;
            assert_eq!(status, 201, "{name}: {body}");
            let token = body["token"].as_str().unwrap_or_default().to_string();
            assert!(token.starts_with("drt_"), "{body}");

            // Nothing queued: 204 after the wait, without writing to the database; no token: 401.
            let writes = s.write_transactions();
            let (status, _) =
                call(&app, "POST", "/api/v1/runners/lease", Some(&token), json(serde_json::json!({"wait_ms": 50})))
                    .await;
            assert_eq!((status, s.write_transactions()), (204, writes), "{name}");
            let (status, body) = call(&app, "POST", "/api/v1/runners/lease", None, vec![]).await;
            assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));

            // A long-poll waiting when the pipeline is created gets the job.
            let waiting = {
                let app = app.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    call(
                        &app,
                        "POST",
                        "/api/v1/runners/lease",
                        Some(&token),
                        json(serde_json::json!({"wait_ms": 20000})),
                    )
                    .await
                })
            };
            let trigger = PipelineTrigger {
                source: "api".into(),
                branch: Some("main".into()),
                sha: "0123abc".into(),
                ..Default::default()
            };
            let created = s
                .create_pipeline(project.id, &trigger, &crate::store::jobs::tests::planned(CONFIG, "main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            state.wake_runners();
            let (status, assignment) = waiting.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status, 200, "{name}: {assignment}");
            let a: JobAssignment = serde_json::from_value(assignment).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((a.job.name.as_str(), a.job.attempt, a.pipeline.number), ("build", 1, created.number as u64));
            assert_eq!(a.env.get("CIRCLE_SHA1").map(String::as_str), Some("0123abc"));
            assert_eq!(a.env.get("CIRCLE_BRANCH").map(String::as_str), Some("main"));
            assert_eq!(a.env.get("CIRCLE_PROJECT_REPONAME").map(String::as_str), Some("app"));
            assert_eq!(a.checkout.revision, "0123abc");
            let job = a.job.id.clone();

            let (status, body) =
                call(&app, "POST", &format!("/api/v1/jobs/{job}/heartbeat"), Some(&token), vec![]).await;
            assert_eq!((status, body["cancel"].as_bool()), (200, Some(false)), "{name}: {body}");

            // Events: a retried batch adds nothing; a gap is a conflict naming the offset to resend from.
            let batch = serde_json::json!([
                {"type": "step_started", "job_id": job, "step": 0, "name": "echo hi", "at": 1},
                {"type": "log", "job_id": job, "step": 0, "stream": "stdout", "offset": 0, "data": "hello "},
                {"type": "log", "job_id": job, "step": 0, "stream": "stdout", "offset": 6, "data": "world\n"},
            ]);
            for _ in 0..2 {
                let (status, body) =
                    call(&app, "POST", &format!("/api/v1/jobs/{job}/events"), Some(&token), json(batch.clone())).await;
                assert_eq!((status, body["accepted"].as_u64()), (200, Some(3)), "{name}: {body}");
            }
            let gap = serde_json::json!([{"type": "log", "job_id": job, "step": 0, "stream": "stdout", "offset": 40, "data": "x"}]);
            let (status, body) =
                call(&app, "POST", &format!("/api/v1/jobs/{job}/events"), Some(&token), json(gap)).await;
            assert_eq!((status, body["expected_offset"].as_u64()), (409, Some(12)), "{name}: {body}");
            let log: String = s
                .job_log(a.job.id.parse().unwrap_or(0), 1)
                .await
                .unwrap_or_default()
                .iter()
                .map(|c| c.data.clone())
                .collect();
            assert_eq!(log, "hello world\n", "{name}");

            // Artifacts: stored, `..` refused.
            let (status, _) = call(
                &app,
                "PUT",
                &format!("/api/v1/jobs/{job}/artifacts/reports/out.txt"),
                Some(&token),
                b"report".to_vec(),
            )
            .await;
            assert_eq!(status, 201, "{name}");
            let (status, _) = call(
                &app,
                "PUT",
                &format!("/api/v1/jobs/{job}/artifacts/a/%2E%2E/%2E%2E/x"),
                Some(&token),
                b"x".to_vec(),
            )
            .await;
            assert_eq!(status, 400, "{name}");
            // A path under an artifact's file, or an artifact's directory itself, is a conflict, not a 500.
            for clashing in ["reports/out.txt/inner", "reports"] {
                let (status, body) =
                    call(&app, "PUT", &format!("/api/v1/jobs/{job}/artifacts/{clashing}"), Some(&token), b"x".to_vec())
                        .await;
                assert_eq!(status, 409, "{name}: {clashing}: {body}");
                assert!(body["message"].as_str().unwrap_or_default().contains("clashes"), "{name}: {body}");
            }

            // A workspace layer persisted by build is what deploy attaches.
            let (status, _) =
                call(&app, "PUT", &format!("/api/v1/jobs/{job}/workspace"), Some(&token), b"tar bytes".to_vec()).await;
            assert_eq!(status, 201, "{name}");

            // Test results sent twice (a retried POST) count once.
            let results = serde_json::json!({"job_id": job, "path": "test-results", "cases": [
                {"classname": "a", "name": "ok", "result": "success"},
                {"classname": "a", "name": "bad", "result": "failure", "message": "1 != 2"}]});
            for _ in 0..2 {
                let (status, body) = call(
                    &app,
                    "POST",
                    &format!("/api/v1/jobs/{job}/test-results"),
                    Some(&token),
                    json(results.clone()),
                )
                .await;
                assert_eq!(status, 200, "{name}: {body}");
            }
            let job_number: i64 = job.parse().unwrap_or_else(|e| panic!("{e}"));
            let mut counts = s.test_result_counts(job_number).await.unwrap_or_else(|e| panic!("{e}"));
            counts.sort();
            assert_eq!(counts, vec![("failure".to_string(), 1), ("success".to_string(), 1)], "{name}");

            let result = serde_json::json!({"job_id": job, "status": "success", "started_at": 1, "finished_at": 2});
            for _ in 0..2 {
                let (status, body) =
                    call(&app, "POST", &format!("/api/v1/jobs/{job}/complete"), Some(&token), json(result.clone()))
                        .await;
                assert_eq!(status, 200, "{name}: {body}");
            }
            let (status, body) =
                call(&app, "POST", &format!("/api/v1/jobs/{job}/heartbeat"), Some(&token), vec![]).await;
            assert_eq!((status, body["error"].as_str()), (409, Some("lease_lost")), "{name}");

            // deploy is queued now and sees build's workspace layer.
            let (status, assignment) =
                call(&app, "POST", "/api/v1/runners/lease", Some(&token), json(serde_json::json!({"wait_ms": 0})))
                    .await;
            assert_eq!((status, assignment["job"]["name"].as_str()), (200, Some("deploy")), "{name}");
            let deploy = assignment["job"]["id"].as_str().unwrap_or_default().to_string();
            let (status, body) =
                call(&app, "GET", &format!("/api/v1/jobs/{deploy}/workspace"), Some(&token), vec![]).await;
            assert_eq!(status, 200, "{name}");
            let url = body["layers"][0]["url"].as_str().unwrap_or_default().to_string();
            assert_eq!(body["layers"][0]["size_bytes"].as_u64(), Some(9), "{name}: {body}");
            let req = Request::builder()
                .uri(&url)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap_or_else(|e| panic!("{e}"));
            let resp = app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap_or_default();
            assert_eq!(&bytes[..], b"tar bytes", "{name}");

            // Oversize JSON bodies are refused as problems.
            let big = vec![b' '; MAX_JSON_BYTES + 10];
            let (status, body) = call(&app, "POST", &format!("/api/v1/jobs/{deploy}/events"), Some(&token), big).await;
            assert_eq!((status, body["error"].as_str()), (413, Some("too_large")), "{name}");
        }
    }

    #[test]
    fn secrets_are_masked_longest_first() {
        let secrets = vec!["hunter2hunter2".to_string(), "hunter2".to_string(), "ab".to_string()];
        assert_eq!(mask_secrets("pw=hunter2hunter2 or hunter2, ab", &secrets), "pw=******** or ********, ab");
    }
}
