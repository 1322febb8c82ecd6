//! `POST /webhooks/github`: authenticate (HMAC-SHA256 of the raw body with the project's secret), deduplicate on
//! `X-GitHub-Delivery`, store the delivery (by group commit with the others arriving meanwhile,
//! [`super::webhook_intake`]) and answer `202` once it is committed; [`process_deliveries_forever`] turns stored
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
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::webhook_intake::IntakeError;
use crate::pipeline::{self, DeliveryDone, DeliveryWork, TriggerRequest};
use crate::store::deliveries::{Delivery, NewDelivery};
use crate::store::projects::Project;

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
    let received_at_ms = crate::store::now_ms();
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
    let stored = NewDelivery {
        delivery_id: delivery.to_string(),
        event: event.to_string(),
        body: body.to_vec(),
        received_at_ms,
    };
    let new = state.intake.record(stored).await.map_err(|e| match e {
        IntakeError::Store(e) => Problem::from(e),
        e @ IntakeError::WriterGone => Problem::internal(e.to_string()),
    })?;
    if !new {
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

/// Most deliveries one batch takes.
pub const MAX_BATCH: i64 = 200;
/// Time a batch's transaction may spend storing pipelines before it commits what it has: it holds SQLite's only
/// writer, and a webhook's `202` waits for that writer to store the delivery (answer within 100 ms).
pub const BATCH_BUDGET: Duration = Duration::from_millis(25);

/// Processes up to [`MAX_BATCH`] stored, unprocessed deliveries as one batch (one transaction, see
/// [`pipeline::create_for_delivery_batch`]); returns how many were processed. Should the batch's transaction
/// fail, they are processed one at a time, so one bad delivery cannot hold the others back.
pub async fn process_pending(state: &AppState) -> Result<usize, crate::store::StoreError> {
    process_batch(state, BATCH_BUDGET).await
}

/// [`process_pending`] with another time budget for the batch's transaction (tests: a debug build on
/// PostgreSQL can spend 25 ms on one pipeline).
pub async fn process_batch(state: &AppState, budget: Duration) -> Result<usize, crate::store::StoreError> {
    let batch = state.store.unprocessed_deliveries(MAX_BATCH).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let mut projects: HashMap<String, Result<Project, String>> = HashMap::new();
    let mut work = Vec::with_capacity(batch.len());
    for d in &batch {
        let delivery_id = d.delivery_id.clone();
        let (repo, req) = match classify(d) {
            Ok(asked) => asked,
            Err(outcome) => {
                work.push(DeliveryWork::Outcome { delivery_id, outcome });
                continue;
            }
        };
        if let Entry::Vacant(slot) = projects.entry(repo.clone()) {
            slot.insert(state.store.project_by_slug(&repo).await.map_err(|e| format!("no project: {e}")));
        }
        work.push(match &projects[&repo] {
            Ok(project) => DeliveryWork::Pipeline { delivery_id, project: project.clone(), req },
            Err(outcome) => DeliveryWork::Outcome { delivery_id, outcome: outcome.clone() },
        });
    }
    let access = state.git_access.as_ref();
    let done = match pipeline::create_for_delivery_batch(&state.store, &state.data_dir, access, work, budget).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(deliveries = batch.len(), error = %pipeline::error_chain(&e),
                "cannot store the batch of webhook deliveries; processing them one at a time");
            for d in &batch {
                process(state, d).await;
            }
            return Ok(batch.len());
        }
    };
    let (mut processed, mut created, mut queued_jobs) = (0, 0, 0);
    for (d, done) in batch.iter().zip(&done) {
        let outcome = match done {
            DeliveryDone::NotReached => continue,
            DeliveryDone::Created(c) => {
                created += 1;
                queued_jobs += c.queued_jobs;
                "pipeline"
            }
            DeliveryDone::Recorded(outcome) => outcome.as_str(),
            DeliveryDone::AlreadyProcessed => "processed elsewhere",
        };
        processed += 1;
        tracing::debug!(delivery.id = %d.delivery_id, event = %d.event, %outcome, "webhook processed");
    }
    tracing::info!(deliveries = processed, pipelines = created, queued_jobs, "webhook deliveries processed");
    if queued_jobs > 0 {
        state.wake_runners();
    }
    if created > 0 {
        state.status_outbox.notify_one();
    }
    Ok(processed)
}

/// What a stored delivery asks for: the repository's full name and the pipeline request, or the outcome to
/// record when it asks for none.
fn classify(d: &Delivery) -> Result<(String, TriggerRequest), String> {
    match parse_event(&d.event, &d.body) {
        Err(e) => Err(format!("unreadable payload: {e}")),
        Ok(WebhookEvent::Ping { .. }) => Err("ping".into()),
        Ok(event) => match event.trigger() {
            None => Err("no pipeline for this event".into()),
            Some(t) => Ok((t.repo_full_name.clone(), request(&t))),
        },
    }
}

fn request(t: &crate::github::webhook::Trigger) -> TriggerRequest {
    TriggerRequest {
        source: "webhook".into(),
        branch: t.branch.clone(),
        tag: t.tag.clone(),
        sha: Some(t.sha.clone()),
        pr_number: t.pull_request.as_ref().map(|p| p.number),
        is_fork: t.pull_request.as_ref().is_some_and(|p| p.is_fork),
        commit_message: t.commit_message.clone(),
        author: t.author.clone(),
        ..Default::default()
    }
}

/// One delivery → a pipeline (or the reason why none), recorded so it is never processed twice: the path a
/// batch falls back to.
async fn process(state: &AppState, d: &Delivery) {
    let outcome = match classify(d) {
        Err(outcome) => outcome,
        Ok((repo, req)) => match state.store.project_by_slug(&repo).await {
            Err(e) => format!("no project: {e}"),
            Ok(project) => match pipeline::create_for_delivery(state, &project, &req, &d.delivery_id).await {
                Ok(Some(created)) => {
                    if created.queued_jobs > 0 {
                        state.wake_runners();
                    }
                    crate::statuses::spawn_report(state, created.pipeline_id);
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    let e = pipeline::error_chain(&e);
                    tracing::error!(delivery.id = %d.delivery_id, error = %e, "cannot create the pipeline");
                    format!("error: {e}")
                }
            },
        },
    };
    tracing::info!(delivery.id = %d.delivery_id, event = %d.event, %outcome, "webhook processed");
    if let Err(e) = state.store.finish_delivery(&d.delivery_id, None, &outcome).await {
        tracing::error!(delivery.id = %d.delivery_id, error = %e, "cannot record the delivery's outcome");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::http::Request;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tower::ServiceExt;

    use super::*;
    use crate::store::testing;

    /// A local repository with one commit holding `config` as `.circleci/config.yml`; returns its SHA.
    pub(crate) fn repository(dir: &std::path::Path, config: &str) -> String {
        let repo = git2::Repository::init(dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.join(".circleci")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(".circleci/config.yml"), config).unwrap_or_else(|e| panic!("{e}"));
        let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
        index.add_path(std::path::Path::new(".circleci/config.yml")).unwrap_or_else(|e| panic!("{e}"));
        index.write().unwrap_or_else(|e| panic!("{e}"));
        let tree_id = index.write_tree().unwrap_or_else(|e| panic!("{e}"));
        let tree = repo.find_tree(tree_id).unwrap_or_else(|e| panic!("{e}"));
        let sig = git2::Signature::now("Ada", "ada@example.invalid").unwrap_or_else(|e| panic!("{e}"));
        let oid = repo
            .commit(Some("refs/heads/main"), &sig, &sig, "add config", &tree, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        oid.to_string()
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn post(app: &Router, delivery: &str, signature: Option<&str>, body: &[u8]) -> u16 {
        post_event(app, "push", delivery, signature, body).await
    }

    async fn post_event(app: &Router, event: &str, delivery: &str, signature: Option<&str>, body: &[u8]) -> u16 {
        let mut req = Request::builder()
            .method("POST")
            .uri("/webhooks/github")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("content-type", "application/json");
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let req = req.body(Body::from(body.to_vec())).unwrap_or_else(|e| panic!("{e}"));
        app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}")).status().as_u16()
    }

    async fn pipeline_count(state: &AppState, project: i64) -> usize {
        state.store.pipelines(project, 1000).await.unwrap_or_default().len()
    }

    /// A batch budget no test reaches: one call, one batch.
    const UNHURRIED: Duration = Duration::from_secs(600);

    const ONE_JOB: &str = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\n\
                           workflows:\n  main:\n    jobs: [build]\n";

    #[tokio::test]
    async fn signed_pushes_make_one_pipeline_per_delivery_and_forgeries_nothing() {
        for db in testing::databases().await {
            let name = db.name;
            let repo_dir = db.dir.path().join("repo");
            let sha = repository(
                &repo_dir,
                "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                 main:\n    jobs: [build]\n",
            );
            let secret = "It's a Secret to Everybody";
            let (key, project) =
                db.github_project(repo_dir.display().to_string(), Some(repo_dir.display().to_string()), secret).await;
            let state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
            let app = crate::api::router(state.clone());

            let fixture = include_str!("../../tests/fixtures/github/push-branch.json");
            let mut payload: serde_json::Value = serde_json::from_str(fixture).unwrap_or_else(|e| panic!("{e}"));
            payload["ref"] = "refs/heads/main".into();
            payload["after"] = sha.clone().into();
            let body = payload.to_string().into_bytes();

            // Unsigned, wrongly signed, or signed over other bytes: 401 and nothing stored.
            assert_eq!(post(&app, "d-1", None, &body).await, 401, "{name}");
            assert_eq!(post(&app, "d-1", Some(&sign("wrong", &body)), &body).await, 401, "{name}");
            let mut tampered = body.clone();
            tampered.push(b' ');
            assert_eq!(post(&app, "d-1", Some(&sign(secret, &body)), &tampered).await, 401, "{name}");
            assert_eq!(db.store.unprocessed_deliveries(10).await.map(|d| d.len()).ok(), Some(0), "{name}");

            // Signed: 202, then a redelivery 200; one pipeline after processing.
            assert_eq!(post(&app, "d-1", Some(&sign(secret, &body)), &body).await, 202, "{name}");
            assert_eq!(post(&app, "d-1", Some(&sign(secret, &body)), &body).await, 200, "{name}");
            assert_eq!(post(&app, "d-2", Some(&sign(secret, &body)), &body).await, 202, "{name}");
            assert_eq!(process_batch(&state, UNHURRIED).await.ok(), Some(2), "{name}");
            assert_eq!(process_batch(&state, UNHURRIED).await.ok(), Some(0), "{name}");
            assert_eq!(pipeline_count(&state, project.id).await, 2, "{name}");
            let p = &db.store.pipelines(project.id, 10).await.unwrap_or_default()[0];
            assert_eq!(
                (p.state.as_str(), p.trigger.sha.as_str(), p.trigger.branch.as_deref()),
                ("running", sha.as_str(), Some("main"))
            );

            // Oversize bodies are refused before anything is read.
            let huge = vec![b' '; MAX_WEBHOOK_BYTES + 1];
            assert_eq!(post(&app, "d-3", Some(&sign(secret, &huge)), &huge).await, 413, "{name}");
        }
    }

    /// Adds a commit holding `config` on `branch` of the repository at `dir` (made by [`repository`]).
    fn commit_config(dir: &std::path::Path, branch: &str, config: &str) -> String {
        let repo = git2::Repository::open(dir).unwrap_or_else(|e| panic!("{e}"));
        let parent =
            repo.find_reference("refs/heads/main").and_then(|r| r.peel_to_commit()).unwrap_or_else(|e| panic!("{e}"));
        let mut builder = git2::build::TreeUpdateBuilder::new();
        let blob = repo.blob(config.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        builder.upsert(".circleci/config.yml", blob, git2::FileMode::Blob);
        let tree_id = builder.create_updated(&repo, &parent.tree().unwrap_or_else(|e| panic!("{e}")));
        let tree = repo.find_tree(tree_id.unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        let sig = git2::Signature::now("Ada", "ada@example.invalid").unwrap_or_else(|e| panic!("{e}"));
        let oid = repo
            .commit(Some(&format!("refs/heads/{branch}")), &sig, &sig, "change config", &tree, &[&parent])
            .unwrap_or_else(|e| panic!("{e}"));
        oid.to_string()
    }

    /// One batch (one transaction) holding a good push, a push whose configuration is invalid, a ping, a push of
    /// a commit the repository does not have, and a second push of the first commit, while a redelivery of the
    /// invalid one is answered `200`: four pipelines with their own numbers (one of them `config_error` with the
    /// located message), the unknown commit recorded as an error naming the repository, the ping recorded — and
    /// a batch over a delivery processed meanwhile stores nothing for it.
    #[tokio::test]
    async fn one_batch_stores_each_delivery_on_its_own_merits() {
        for db in testing::databases().await {
            let name = db.name;
            let repo_dir = db.dir.path().join("repo");
            let good = repository(&repo_dir, ONE_JOB);
            let broken = commit_config(
                &repo_dir,
                "broken",
                "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                 main:\n    jobs: [no-such-job]\n",
            );
            let secret = "It's a Secret to Everybody";
            let (key, project) = db.github_project(repo_dir.display().to_string(), None, secret).await;
            let state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
            let app = crate::api::router(state.clone());
            let push = |branch: &str, sha: &str| {
                let fixture = include_str!("../../tests/fixtures/github/push-branch.json");
                let mut payload: serde_json::Value = serde_json::from_str(fixture).unwrap_or_else(|e| panic!("{e}"));
                payload["ref"] = format!("refs/heads/{branch}").into();
                payload["after"] = sha.into();
                payload.to_string().into_bytes()
            };
            let missing = "0123456789abcdef0123456789abcdef01234567";
            let deliveries = [
                ("b-1", "push", push("main", &good)),
                ("b-2", "push", push("broken", &broken)),
                ("b-3", "ping", include_bytes!("../../tests/fixtures/github/ping.json").to_vec()),
                ("b-4", "push", push("main", missing)),
                ("b-5", "push", push("main", &good)),
            ];
            for (id, event, body) in &deliveries {
                assert_eq!(post_event(&app, event, id, Some(&sign(secret, body)), body).await, 202, "{name}: {id}");
            }
            let (_, event, body) = &deliveries[1];
            assert_eq!(post_event(&app, event, "b-2", Some(&sign(secret, body)), body).await, 200, "{name}");

            let writes = db.store.write_transactions();
            assert_eq!(process_batch(&state, UNHURRIED).await.ok(), Some(5), "{name}: one batch");
            assert_eq!(db.store.write_transactions() - writes, 1, "{name}: one transaction for the batch");
            assert_eq!(process_batch(&state, UNHURRIED).await.ok(), Some(0), "{name}");

            let outcome = |id: &'static str| {
                let pool = db.store.pool().clone();
                async move {
                    let row: (String, Option<i64>) =
                        sqlx::query_as("SELECT outcome, pipeline_id FROM webhook_deliveries WHERE delivery_id = $1")
                            .bind(id)
                            .fetch_one(&pool)
                            .await
                            .unwrap_or_else(|e| panic!("{id}: {e}"));
                    row
                }
            };
            let mut pipelines = db.store.pipelines(project.id, 10).await.unwrap_or_else(|e| panic!("{e}"));
            pipelines.reverse();
            let seen: Vec<(i64, &str, &str)> =
                pipelines.iter().map(|p| (p.number, p.state.as_str(), p.trigger.sha.as_str())).collect();
            assert_eq!(
                seen,
                [(1, "running", good.as_str()), (2, "config_error", broken.as_str()), (3, "running", good.as_str())],
                "{name}"
            );
            let error = pipelines[1].error.clone().unwrap_or_default();
            assert!(error.contains(".circleci/config.yml"), "{name}: {error}");
            for (id, pipeline) in [("b-1", &pipelines[0]), ("b-2", &pipelines[1]), ("b-5", &pipelines[2])] {
                assert_eq!(outcome(id).await, ("pipeline".to_string(), Some(pipeline.id)), "{name}: {id}");
            }
            assert_eq!(outcome("b-3").await, ("ping".to_string(), None), "{name}");
            let (missed, none) = outcome("b-4").await;
            assert!(
                none.is_none() && missed.starts_with("error: ") && missed.contains("octocat/Hello-World"),
                "{name}: {missed}"
            );
            assert!(missed.contains(missing), "{name}: the outcome names the commit: {missed}");

            // A batch over a delivery processed meanwhile (by another coordinator) stores nothing for it.
            let work = vec![pipeline::DeliveryWork::Pipeline {
                delivery_id: "b-1".into(),
                project: project.clone(),
                req: TriggerRequest { source: "webhook".into(), sha: Some(good.clone()), ..Default::default() },
            }];
            let done = pipeline::create_for_delivery_batch(&db.store, &state.data_dir, None, work, UNHURRIED)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(done[..], [DeliveryDone::AlreadyProcessed]), "{name}: {done:?}");
            assert_eq!(pipeline_count(&state, project.id).await, 3, "{name}");
        }
    }
}
