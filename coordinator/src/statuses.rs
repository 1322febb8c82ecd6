//! Commit statuses for GitHub projects: one status per workflow (context `drydock/<workflow>`) reflecting its
//! current state — `pending` while it runs or waits for approval, then `success`, `failure` (a job failed) or
//! `error` (canceled) — and for a configuration error one `drydock` status, `failure`, with the first message
//! line. Each report posts the pipeline's *current* states (GitHub keeps the latest per context), so reporting
//! twice is harmless.
//!
//! Durable: the store writes a row into the status outbox ([`crate::store::status_outbox`]) in the transaction
//! that changed the pipeline, and [`drain_forever`] posts and deletes the rows — woken at once by
//! [`spawn_report`], and looking every [`DRAIN_INTERVAL`] anyway (rows of another coordinator, retries). A failed
//! post is retried with exponential backoff ([`backoff_ms`]: 5 s doubling, at most 10 min), across restarts; a
//! status GitHub refuses for good (4xx other than 429, a malformed SHA) is logged and dropped, and so is a row
//! still failing [`GIVE_UP_MS`] after it was first queued. A coordinator started without `--github-token` drops
//! the rows it finds (statuses are off): give every coordinator of one database the same GitHub settings.

use std::time::Duration;

use crate::api::AppState;
use crate::github::status::{StatusClient, StatusError, StatusState};
use crate::store::now_ms;

/// Where statuses go and where they link to.
pub struct StatusReporter {
    pub client: StatusClient,
    /// The dashboard's base URL for `target_url` (`{public_url}/projects/{slug}/pipelines/{number}`).
    pub public_url: String,
}

/// How often the outbox is looked at without being woken.
pub const DRAIN_INTERVAL: Duration = Duration::from_secs(1);
/// A claimed row not finished by then (a coordinator died mid-post) is due again.
const CLAIM_MS: i64 = 120_000;
/// Rows still failing this long after they were first queued are dropped.
pub const GIVE_UP_MS: i64 = 3 * 24 * 3_600_000;

/// The wait after the `failures`-th failed attempt: 5 s, 10 s, 20 s … at most 10 minutes.
pub fn backoff_ms(failures: i64) -> i64 {
    let exponent = failures.clamp(1, 20) - 1;
    (5_000_i64 << exponent).min(600_000)
}

/// Asks the outbox drainer to look now (the store queued the pipeline's report with the change already).
pub fn spawn_report(state: &AppState, _pipeline_id: i64) {
    state.status_outbox.notify_one();
}

/// Runs forever: drains due outbox rows when woken and every [`DRAIN_INTERVAL`].
pub async fn drain_forever(state: AppState) {
    loop {
        let woken = state.status_outbox.notified();
        if let Err(e) = drain_due(&state, now_ms()).await {
            tracing::error!(error = %e, "cannot drain the commit status outbox");
        }
        let _ = tokio::time::timeout(DRAIN_INTERVAL, woken).await;
    }
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub posted: usize,
    pub failed: usize,
    pub dropped: usize,
}

/// Posts the statuses of every outbox row due at `now`.
pub async fn drain_due(state: &AppState, now: i64) -> Result<Drained, crate::store::StoreError> {
    let mut done = Drained::default();
    let due = state.store.due_statuses(now, 100).await?;
    let Some(reporter) = &state.statuses else {
        if !due.is_empty() {
            done.dropped = state.store.drop_due_statuses(now).await?;
            tracing::debug!(rows = done.dropped, "commit statuses are off: outbox rows dropped");
        }
        return Ok(done);
    };
    for pipeline_id in due {
        let Some(claim) = state.store.claim_status(pipeline_id, now, now + CLAIM_MS).await? else { continue };
        match report(state, reporter, pipeline_id).await {
            Ok(()) => {
                state.store.status_sent(&claim).await?;
                done.posted += 1;
            }
            Err(ReportError::Store(e)) => {
                state.store.status_failed(&claim, now + backoff_ms(claim.attempts + 1), &e.to_string()).await?;
                return Err(e);
            }
            Err(ReportError::Status(e)) if permanent(&e) || now - claim.first_queued_at > GIVE_UP_MS => {
                tracing::error!(pipeline.id = pipeline_id, error = %e, attempts = claim.attempts + 1,
                    "commit status given up");
                state.store.status_dropped(pipeline_id).await?;
                done.dropped += 1;
            }
            Err(ReportError::Status(e)) => {
                let wait_ms = backoff_ms(claim.attempts + 1);
                tracing::warn!(pipeline.id = pipeline_id, error = %e, attempts = claim.attempts + 1, retry_in_ms = wait_ms,
                    "cannot post commit statuses; retrying later");
                state.store.status_failed(&claim, now + wait_ms, &e.to_string()).await?;
                done.failed += 1;
            }
        }
    }
    Ok(done)
}

/// An error no retry can fix.
fn permanent(e: &StatusError) -> bool {
    match e {
        StatusError::Rejected { status, .. } => *status != 429,
        StatusError::InvalidRepo { .. } | StatusError::InvalidSha { .. } => true,
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Status(#[from] StatusError),
}

/// The dashboard's page of pipeline `number` of project `slug`: what a commit status links to.
fn target_url(public_url: &str, slug: &str, number: i64) -> String {
    format!("{}/projects/{}/pipelines/{number}", public_url.trim_end_matches('/'), web::view::encode_segment(slug))
}

/// Posts the pipeline's workflow states as commit statuses (the newest workflow of each name: one rerun replaces
/// the workflow it reruns).
async fn report(state: &AppState, reporter: &StatusReporter, pipeline_id: i64) -> Result<(), ReportError> {
    let pipeline = state.store.pipeline(pipeline_id).await?;
    let project = state.store.project(pipeline.project_id).await?;
    if project.local_path.is_some() {
        return Ok(());
    }
    let target = target_url(&reporter.public_url, &project.slug, pipeline.number);
    let mut posts = Vec::new();
    if pipeline.state == "config_error" {
        let first = pipeline.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("configuration error");
        posts.push(("drydock".to_string(), StatusState::Failure, first.to_string()));
    }
    let workflows = state.store.workflows(pipeline.id).await?;
    for w in workflows.iter().filter(|w| !workflows.iter().any(|r| r.rerun_of == Some(w.id))) {
        let (s, description) = match w.state.as_str() {
            "success" => (StatusState::Success, "workflow succeeded"),
            "failed" => (StatusState::Failure, "workflow failed"),
            "canceled" => (StatusState::Error, "workflow canceled"),
            "on_hold" => (StatusState::Pending, "workflow waits for an approval"),
            _ => (StatusState::Pending, "workflow running"),
        };
        posts.push((format!("drydock/{}", w.name), s, description.to_string()));
    }
    for (context, s, description) in posts {
        reporter.client.post(&project.slug, &pipeline.trigger.sha, s, &context, &description, &target).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::routing::post;
    use axum::{Json, Router};
    use config_schema::wire::{JobOutcome, JobResult};

    use super::*;
    use crate::github::status::RetryPolicy;
    use crate::store::jobs::tests::{planned, project};
    use crate::store::pipelines::{PipelineTrigger, Planned};
    use crate::store::testing;

    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    #[test]
    fn statuses_link_to_the_dashboards_pipeline_page() {
        assert_eq!(
            target_url("http://ci.local:8080/", "acme/app", 7),
            "http://ci.local:8080/projects/acme%2Fapp/pipelines/7"
        );
    }

    /// A stand-in for GitHub's API that records `(path, context, state)` of each status it accepts, after
    /// answering the first `fail_first` requests `502` (GitHub down).
    async fn fake_github(fail_first: usize) -> (String, Seen, Arc<AtomicUsize>) {
        let seen: Seen = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        type Fake = (Seen, Arc<AtomicUsize>, usize);
        async fn status(
            State((seen, requests, fail_first)): State<Fake>,
            Path((owner, repo, sha)): Path<(String, String, String)>,
            Json(body): Json<serde_json::Value>,
        ) -> (axum::http::StatusCode, Json<serde_json::Value>) {
            if requests.fetch_add(1, Ordering::SeqCst) < fail_first {
                let down = serde_json::json!({"message": "Server Error"});
                return (axum::http::StatusCode::BAD_GATEWAY, Json(down));
            }
            let context = body["context"].as_str().unwrap_or_default().to_string();
            let state = body["state"].as_str().unwrap_or_default().to_string();
            seen.lock().unwrap_or_else(|e| e.into_inner()).push((format!("{owner}/{repo}@{sha}"), context, state));
            (axum::http::StatusCode::CREATED, Json(serde_json::json!({"id": 1})))
        }
        let app = Router::new().route("/repos/{owner}/{repo}/statuses/{sha}", post(status)).with_state((
            seen.clone(),
            requests.clone(),
            fail_first,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen, requests)
    }

    fn take(seen: &Seen) -> Vec<(String, String, String)> {
        std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()))
    }

    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const BUILD: &str =
        "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  build:\n    jobs: [j]\n";

    fn row(path: &str, context: &str, state: &str) -> (String, String, String) {
        (path.into(), context.into(), state.into())
    }

    /// A coordinator's state on `store` posting to `api` (one attempt per post: the outbox retries).
    fn reporting(db: &testing::TestDb, store: crate::store::Store, api: &str) -> AppState {
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut state = AppState::new(store, db.dir.path().to_path_buf(), key);
        let client = StatusClient::new(api, "ghp_test")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_retry(RetryPolicy { max_attempts: 1, first_delay: Duration::from_millis(1) });
        state.statuses = Some(Arc::new(StatusReporter { client, public_url: "http://ci.example".into() }));
        state
    }

    fn failed(job_id: i64) -> JobResult {
        JobResult {
            job_id: job_id.to_string(),
            status: JobOutcome::Failed,
            exit_code: Some(1),
            message: None,
            started_at: 0,
            finished_at: 0,
            steps: vec![],
        }
    }

    #[tokio::test]
    async fn workflows_report_pending_then_their_outcome_and_config_errors_fail() {
        let db = testing::sqlite().await;
        let (api, seen, _) = fake_github(0).await;
        let state = reporting(&db, db.store.clone(), &api);
        let s = &db.store;
        let project = project(s).await;
        let trigger = PipelineTrigger { source: "webhook".into(), sha: SHA.into(), ..Default::default() };
        let created =
            s.create_pipeline(project, &trigger, &planned(BUILD, "main")).await.unwrap_or_else(|e| panic!("{e}"));
        let now = now_ms();
        assert_eq!(drain_due(&state, now).await.ok().map(|d| d.posted), Some(1));
        assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock/build", "pending")]);
        assert_eq!(drain_due(&state, now).await.ok(), Some(Drained::default()), "a posted row is gone");
        let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
        s.complete_job(job.id, 1, &failed(job.id)).await.unwrap_or_else(|e| panic!("{e}"));
        drain_due(&state, now_ms()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock/build", "failure")]);

        let broken = Planned::ConfigError(".circleci/config.yml:2:3: jobs: unknown key\nsecond line".into());
        let created_broken = s.create_pipeline(project, &trigger, &broken).await.unwrap_or_else(|e| panic!("{e}"));
        drain_due(&state, now_ms()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock", "failure")]);
        assert_ne!(created.pipeline_id, created_broken.pipeline_id);
        assert!(s.status_outbox().await.unwrap_or_default().is_empty());
    }

    /// GitHub down, then a restart, then GitHub back: the statuses queued before are posted after, once each
    /// context, with the states the pipeline has by then.
    #[tokio::test]
    async fn statuses_survive_github_being_down_and_a_restart() {
        for db in testing::databases().await {
            let name = db.name;
            // The first three requests fail (GitHub down); every later one succeeds.
            let (api, seen, requests) = fake_github(3).await;
            let state = reporting(&db, db.store.clone(), &api);
            let s = &db.store;
            let project = project(s).await;
            let trigger = PipelineTrigger { source: "webhook".into(), sha: SHA.into(), ..Default::default() };
            let created =
                s.create_pipeline(project, &trigger, &planned(BUILD, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let t0 = now_ms();
            let d = drain_due(&state, t0).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((d.posted, d.failed), (0, 1), "{name}");
            let outbox = s.status_outbox().await.unwrap_or_default();
            assert_eq!(outbox.len(), 1, "{name}");
            assert_eq!((outbox[0].0, outbox[0].1), (created.pipeline_id, 1), "{name}");
            assert!(outbox[0].2.as_deref().unwrap_or_default().contains("502"), "{name}: {outbox:?}");
            // Backing off: not due again before 5 s.
            assert_eq!(drain_due(&state, t0 + 1_000).await.ok(), Some(Drained::default()), "{name}");
            assert_eq!(drain_due(&state, t0 + 5_000).await.ok().map(|d| d.failed), Some(1), "{name}");
            assert_eq!(s.status_outbox().await.unwrap_or_default()[0].1, 2, "{name}: second failure");
            // Meanwhile the job fails (the change rides on the same row).
            let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
            s.complete_job(job.id, 1, &failed(job.id)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.status_outbox().await.unwrap_or_default().len(), 1, "{name}");
            drop(state);
            s.close().await;

            // A restarted coordinator: a new store on the same database, nothing carried in memory.
            let store = crate::store::Store::open(&db.url).await.unwrap_or_else(|e| panic!("{e}"));
            let state = reporting(&db, store.clone(), &api);
            let later = t0 + 5_000 + backoff_ms(2);
            assert_eq!(drain_due(&state, later - 1).await.ok(), Some(Drained::default()), "{name}: still backing off");
            assert_eq!(drain_due(&state, later).await.ok().map(|d| d.failed), Some(1), "{name}: third request fails");
            let later = later + backoff_ms(3);
            assert_eq!(drain_due(&state, later).await.ok().map(|d| d.posted), Some(1), "{name}");
            assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock/build", "failure")], "{name}");
            assert_eq!(requests.load(Ordering::SeqCst), 4, "{name}");
            assert!(store.status_outbox().await.unwrap_or_default().is_empty(), "{name}");
            assert_eq!(drain_due(&state, later + 600_000).await.ok(), Some(Drained::default()), "{name}");
            store.close().await;
        }
    }

    /// A change committed while a post is under way is posted too: the row's version moved, so it stays.
    #[tokio::test]
    async fn a_change_during_a_post_is_posted_by_the_next_round() {
        for db in testing::databases().await {
            let name = db.name;
            let s = &db.store;
            let project = project(s).await;
            let trigger = PipelineTrigger { source: "webhook".into(), sha: SHA.into(), ..Default::default() };
            let created =
                s.create_pipeline(project, &trigger, &planned(BUILD, "main")).await.unwrap_or_else(|e| panic!("{e}"));
            let now = now_ms();
            let claim = s.claim_status(created.pipeline_id, now, now + CLAIM_MS).await.ok().flatten();
            let claim = claim.unwrap_or_else(|| panic!("{name}: nothing to claim"));
            assert_eq!(s.claim_status(created.pipeline_id, now, now + CLAIM_MS).await.ok(), Some(None), "{name}");
            let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
            s.complete_job(job.id, 1, &failed(job.id)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.status_sent(&claim).await.ok(), Some(false), "{name}: the row was bumped meanwhile");
            assert_eq!(s.due_statuses(now_ms(), 10).await.ok(), Some(vec![created.pipeline_id]), "{name}");
            // A coordinator without GitHub settings drops what is due (statuses are off).
            let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
                .unwrap_or_else(|e| panic!("{e}"));
            let off = AppState::new(s.clone(), db.dir.path().to_path_buf(), key);
            assert_eq!(drain_due(&off, now_ms()).await.ok().map(|d| d.dropped), Some(1), "{name}");
            assert!(s.status_outbox().await.unwrap_or_default().is_empty(), "{name}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        let waits: Vec<i64> = (1..=9).map(backoff_ms).collect();
        assert_eq!(waits, [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000, 600_000]);
        assert_eq!(backoff_ms(1_000), 600_000);
    }
}
