//! Job actions for people (admin token): approve an approval job on hold, cancel a job. Approving unblocks its
//! dependents; canceling a job not yet running ends it at once, a running one is told by its next heartbeat.

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{bearer, AppState, Problem};
use crate::store::runners::TokenKind;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs/{job_id}/approve", post(approve))
        .route("/api/v1/jobs/{job_id}/cancel", post(cancel))
}

/// Refuses requests without an admin token: 401 without a token or with an unknown one, 403 with a runner's.
pub async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let token = bearer(headers).ok_or_else(|| Problem::unauthorized("send `Authorization: Bearer <admin token>`"))?;
    if state.store.check_token(TokenKind::Admin, token).await? {
        return Ok(());
    }
    if state.store.check_token(TokenKind::RunnerRegistration, token).await?
        || state.store.runner_by_token(token).await?.is_some()
    {
        return Err(Problem::forbidden(
            "this is a runner token: the API for people takes an admin token (`coordinator token create --admin`)",
        ));
    }
    Err(Problem::unauthorized("unknown admin token: create one with `coordinator token create --admin`"))
}

fn job_id(raw: &str) -> Result<i64, Problem> {
    raw.parse().map_err(|_| Problem::not_found(format!("job `{raw}` not found")))
}

async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let id = job_id(&raw)?;
    let job = state.store.job(id).await?;
    let queued = state.store.approve_job(id).await?;
    crate::statuses::spawn_report(&state, job.pipeline_id);
    tracing::info!(job.id = id, "job approved");
    if queued > 0 {
        state.wake_runners();
    }
    Ok(Json(serde_json::json!({})).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let id = job_id(&raw)?;
    let job = state.store.job(id).await?;
    state.store.cancel_job(id).await?;
    crate::statuses::spawn_report(&state, job.pipeline_id);
    tracing::info!(job.id = id, "job cancel requested");
    Ok(Json(serde_json::json!({})).into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::store::pipelines::PipelineTrigger;
    use crate::store::testing;

    async fn call(app: &Router, uri: &str, token: Option<&str>) -> u16 {
        let mut req = Request::builder().method("POST").uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"));
        app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}")).status().as_u16()
    }

    #[tokio::test]
    async fn admins_approve_and_cancel_others_cannot() {
        for db in testing::databases().await {
            let name = db.name;
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
            let app = crate::api::router(state.clone());
            let s = &db.store;
            let project = crate::store::jobs::tests::project(s).await;
            let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    \
                        jobs:\n      - hold: {type: approval}\n      - j: {requires: [hold]}\n      - j: {name: other}\n";
            let trigger = PipelineTrigger { source: "api".into(), sha: "abc".into(), ..Default::default() };
            let created = s
                .create_pipeline(project, &trigger, &crate::store::jobs::tests::planned(yaml, "main"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let jobs = s.pipeline_jobs(created.pipeline_id).await.unwrap_or_default();
            let (hold, other) = (jobs[0].id, jobs[2].id);
            let admin = s.create_token(TokenKind::Admin).await.unwrap_or_else(|e| panic!("{e}"));
            let runner = s.create_token(TokenKind::RunnerRegistration).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(call(&app, &format!("/api/v1/jobs/{hold}/approve"), None).await, 401, "{name}");
            assert_eq!(call(&app, &format!("/api/v1/jobs/{hold}/approve"), Some(&runner)).await, 403, "{name}");
            assert_eq!(call(&app, &format!("/api/v1/jobs/{hold}/approve"), Some(&admin)).await, 200, "{name}");
            assert_eq!(call(&app, &format!("/api/v1/jobs/{hold}/approve"), Some(&admin)).await, 409, "{name}");
            assert_eq!(call(&app, "/api/v1/jobs/999999/approve", Some(&admin)).await, 404, "{name}");
            assert_eq!(call(&app, &format!("/api/v1/jobs/{other}/cancel"), Some(&admin)).await, 200, "{name}");
            let states: Vec<String> = s
                .pipeline_jobs(created.pipeline_id)
                .await
                .unwrap_or_default()
                .iter()
                .map(|j| format!("{}:{}", j.name, j.state))
                .collect();
            assert_eq!(states, ["hold:success", "j:queued", "other:canceled"], "{name}");
        }
    }
}
