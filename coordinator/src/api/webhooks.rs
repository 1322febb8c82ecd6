//! `POST /webhooks/github`: authenticate (HMAC-SHA256 of the raw body with the project's secret), deduplicate on
//! `X-GitHub-Delivery`, store the delivery and answer `202` at once; [`process_deliveries_forever`] turns stored
//! deliveries into pipelines in the background — including those a crash or restart left unprocessed.
//!
//! Answers: `401` for a missing or wrong signature (nothing stored), `404` for a repository no project builds,
//! `413` over 25 MB, `400` for a delivery without an event or ID, `200` for a redelivery (nothing new).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::{AppState, Problem};
use crate::github::webhook::{parse_event, verify_signature, WebhookEvent};
use crate::pipeline::{self, TriggerRequest};
use crate::store::deliveries::Delivery;

/// Largest webhook body (GitHub caps payloads at 25 MB).
pub const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/webhooks/github", post(receive))
}

/// The one field read before the signature is checked: which project's secret to check it with.
#[derive(Deserialize)]
struct RepositoryOnly {
    repository: Option<RepositoryName>,
}

#[derive(Deserialize)]
struct RepositoryName {
    full_name: String,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    let body = axum::body::to_bytes(body, MAX_WEBHOOK_BYTES)
        .await
        .map_err(|_| Problem::too_large("webhook payloads are at most 25 MB"))?;
    let event =
        header(&headers, "x-github-event").ok_or_else(|| Problem::bad_request("missing X-GitHub-Event header"))?;
    let delivery = header(&headers, "x-github-delivery")
        .ok_or_else(|| Problem::bad_request("missing X-GitHub-Delivery header"))?;
    if delivery.len() > 100 {
        return Err(Problem::bad_request("X-GitHub-Delivery is longer than 100 characters"));
    }
    let repo: RepositoryOnly = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the payload is not JSON with a repository: {e}")))?;
    let full_name = repo
        .repository
        .map(|r| r.full_name)
        .ok_or_else(|| Problem::bad_request("the payload names no repository (repository.full_name)"))?;
    let project = match state.store.project_by_slug(&full_name).await {
        Ok(p) => p,
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(Problem::not_found(format!(
                "no project builds `{full_name}`: add it with `coordinator project add {full_name} --clone-url …`"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let secret = match &project.webhook_secret_enc {
        Some(enc) => state
            .secret_key
            .decrypt(enc)
            .map_err(|e| Problem::internal(format!("cannot decrypt the webhook secret of `{full_name}`: {e}")))?,
        None => String::new(),
    };
    verify_signature(secret.as_bytes(), &body, header(&headers, "x-hub-signature-256"))
        .map_err(|e| Problem::unauthorized(e.to_string()))?;
    if !state.store.record_delivery(delivery, event, &body).await? {
        tracing::info!(delivery.id = %delivery, "webhook redelivered: nothing to do");
        return Ok((StatusCode::OK, Json(serde_json::json!({"delivery": delivery, "duplicate": true}))).into_response());
    }
    state.deliveries.notify_one();
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"delivery": delivery}))).into_response())
}

/// Processes stored deliveries forever: woken by each new one, and every few seconds to pick up what a previous
/// run left behind.
pub async fn process_deliveries_forever(state: AppState) {
    loop {
        match process_pending(&state).await {
            Ok(0) => {}
            Ok(_) => continue,
            Err(e) => tracing::error!(error = %e, "cannot read webhook deliveries"),
        }
        tokio::select! {
            _ = state.deliveries.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Processes up to 100 stored, unprocessed deliveries; returns how many.
pub async fn process_pending(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let batch = state.store.unprocessed_deliveries(100).await?;
    for d in &batch {
        process(state, d).await;
    }
    Ok(batch.len())
}

/// One delivery → a pipeline (or the reason why none), recorded so it is never processed twice.
async fn process(state: &AppState, d: &Delivery) {
    let outcome = match parse_event(&d.event, &d.body) {
        Err(e) => format!("unreadable payload: {e}"),
        Ok(WebhookEvent::Ping { .. }) => "ping".into(),
        Ok(event) => match event.trigger() {
            None => "no pipeline for this event".into(),
            Some(t) => {
                let req = TriggerRequest {
                    source: "webhook".into(),
                    branch: t.branch.clone(),
                    tag: t.tag.clone(),
                    sha: Some(t.sha.clone()),
                    pr_number: t.pull_request.as_ref().map(|p| p.number),
                    is_fork: t.pull_request.as_ref().is_some_and(|p| p.is_fork),
                    commit_message: t.commit_message.clone(),
                    author: t.author.clone(),
                };
                match state.store.project_by_slug(&t.repo_full_name).await {
                    Err(e) => format!("no project: {e}"),
                    Ok(project) => match pipeline::create_for_delivery(state, &project, &req, &d.delivery_id).await {
                        Ok(Some(created)) => {
                            if created.queued_jobs > 0 {
                                state.wake_runners();
                            }
                            return;
                        }
                        Ok(None) => return,
                        Err(e) => {
                            tracing::error!(delivery.id = %d.delivery_id, error = %e, "cannot create the pipeline");
                            format!("error: {e}")
                        }
                    },
                }
            }
        },
    };
    tracing::info!(delivery.id = %d.delivery_id, event = %d.event, %outcome, "webhook processed");
    if let Err(e) = state.store.finish_delivery(&d.delivery_id, None, &outcome).await {
        tracing::error!(delivery.id = %d.delivery_id, error = %e, "cannot record the delivery's outcome");
    }
}
