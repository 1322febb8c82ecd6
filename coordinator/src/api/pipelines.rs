//! Pipelines over the API (admin token): `GET /api/v1/pipelines/{id}` with its workflows and jobs, and reruns:
//! `POST /api/v1/workflows/{id}/rerun` reruns one finished workflow,
//! `POST /api/v1/pipelines/{id}/rerun` the newest workflow of each name in a pipeline; the body
//! `{"scope": "workflow" | "failed"}` (default `workflow`) says whether every job runs again or only the failed
//! ones and what requires them ([`crate::store::reruns`]). The dashboard's rerun buttons call [`rerun_workflow`].

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::jobs::require_admin;
use super::{AppState, Problem, MAX_JSON_BYTES};
use crate::store::reruns::{Rerun, RerunScope};
use crate::store::StoreError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/pipelines/{pipeline_id}", get(pipeline))
        .route("/api/v1/pipelines/{pipeline_id}/rerun", post(rerun_pipeline_route))
        .route("/api/v1/workflows/{workflow_id}/rerun", post(rerun_workflow_route))
}

/// A pipeline with its workflows and their jobs.
async fn pipeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let pipeline = state.store.pipeline(id(&raw, "pipeline")?).await?;
    let workflows = state.store.workflows(pipeline.id).await?;
    let jobs = state.store.pipeline_jobs(pipeline.id).await?;
    let workflows: Vec<serde_json::Value> = workflows
        .iter()
        .map(|w| {
            let jobs: Vec<_> = jobs.iter().filter(|j| j.workflow_id == w.id).collect();
            serde_json::json!({"id": w.id, "name": w.name, "state": w.state, "rerun_of": w.rerun_of, "jobs": jobs})
        })
        .collect();
    Ok(Json(serde_json::json!({"pipeline": pipeline, "workflows": workflows})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RerunRequest {
    #[serde(default = "whole")]
    scope: RerunScope,
}

fn whole() -> RerunScope {
    RerunScope::Workflow
}

/// Reruns a workflow, then reports the pipeline's statuses and wakes runners.
pub async fn rerun_workflow(state: &AppState, workflow_id: i64, scope: RerunScope) -> Result<Rerun, StoreError> {
    let rerun = state.store.rerun_workflow(workflow_id, scope).await?;
    after_rerun(state, std::slice::from_ref(&rerun));
    Ok(rerun)
}

fn after_rerun(state: &AppState, reruns: &[Rerun]) {
    if let Some(first) = reruns.first() {
        crate::statuses::spawn_report(state, first.pipeline_id);
    }
    if reruns.iter().any(|r| r.queued_jobs > 0) {
        state.wake_runners();
    }
}

/// The request's rerun scope; an empty body is a whole rerun.
async fn scope(body: Body) -> Result<RerunScope, Problem> {
    let bytes = axum::body::to_bytes(body, MAX_JSON_BYTES)
        .await
        .map_err(|_| Problem::too_large(format!("the request body is over {MAX_JSON_BYTES} bytes")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RerunScope::Workflow);
    }
    let req: RerunRequest = super::parse_json(&bytes).map_err(|mut p| {
        p.message = format!("{}: send {{\"scope\": \"workflow\" | \"failed\"}}", p.message);
        p
    })?;
    Ok(req.scope)
}

pub(crate) fn id(raw: &str, what: &str) -> Result<i64, Problem> {
    raw.parse().map_err(|_| Problem::not_found(format!("{what} `{raw}` not found")))
}

fn answer(reruns: &[Rerun]) -> Response {
    (StatusCode::CREATED, Json(serde_json::json!({ "workflows": reruns }))).into_response()
}

async fn rerun_workflow_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let workflow_id = id(&raw, "workflow")?;
    let rerun = rerun_workflow(&state, workflow_id, scope(body).await?).await?;
    Ok(answer(&[rerun]))
}

async fn rerun_pipeline_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
    body: Body,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let pipeline_id = id(&raw, "pipeline")?;
    let reruns = state.store.rerun_pipeline(pipeline_id, scope(body).await?).await?;
    after_rerun(&state, &reruns);
    Ok(answer(&reruns))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use config_schema::wire::{JobOutcome, JobResult};
    use tower::ServiceExt;

    use super::*;
    use crate::store::pipelines::PipelineTrigger;
    use crate::store::runners::TokenKind;
    use crate::store::testing;

    async fn call(app: &Router, uri: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        let mut req = Request::builder().method("POST").uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::from(body.to_string())).unwrap_or_else(|e| panic!("{e}"));
        let resp = app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn pipelines_and_workflows_are_rerun_through_the_api() {
        for db in testing::databases().await {
            let name = db.name;
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
            let app = crate::api::router(state.clone());
            let s = &db.store;
            let project = crate::store::jobs::tests::project(s).await;
            let yaml =
                "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    \
                        jobs:\n      - j: {name: a}\n      - j: {name: b}\n";
            let trigger = PipelineTrigger { source: "api".into(), sha: "abc".into(), ..Default::default() };
            let created = s
                .create_pipeline(project, &trigger, &crate::store::jobs::tests::planned(yaml, "main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let p = created.pipeline_id;
            let admin = s.create_token(TokenKind::Admin).await.unwrap_or_else(|e| panic!("{e}"));
            let uri = format!("/api/v1/pipelines/{p}/rerun");
            assert_eq!(call(&app, &uri, None, "").await.0, 401, "{name}");
            let (status, body) = call(&app, &uri, Some(&admin), "").await;
            assert_eq!(status, 409, "{name}: a running pipeline: {body}");
            for outcome in [JobOutcome::Success, JobOutcome::Failed] {
                let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
                let result = JobResult {
                    job_id: job.id.to_string(),
                    status: outcome,
                    exit_code: None,
                    message: None,
                    started_at: 0,
                    finished_at: 0,
                    steps: vec![],
                };
                s.complete_job(job.id, 1, &result).await.unwrap_or_else(|e| panic!("{e}"));
            }
            let (status, body) = call(&app, &uri, Some(&admin), r#"{"scope": "sometimes"}"#).await;
            assert_eq!(status, 400, "{name}: {body}");
            let (status, body) = call(&app, &uri, Some(&admin), r#"{"scope": "failed"}"#).await;
            assert_eq!(status, 201, "{name}: {body}");
            assert_eq!(body["workflows"][0]["queued_jobs"], 1, "{name}: only b runs again: {body}");
            let new_workflow = body["workflows"][0]["workflow_id"].as_i64().unwrap_or_default();
            let (status, body) = call(&app, &format!("/api/v1/workflows/{new_workflow}/rerun"), Some(&admin), "").await;
            assert_eq!(status, 409, "{name}: still running: {body}");
            assert!(body["message"].as_str().unwrap_or_default().contains("not finished"), "{name}: {body}");
            let (status, _) = call(&app, "/api/v1/workflows/nope/rerun", Some(&admin), "").await;
            assert_eq!(status, 404, "{name}");
            assert_eq!(s.pipeline(p).await.map(|p| p.state).ok().as_deref(), Some("running"), "{name}");
        }
    }
}
