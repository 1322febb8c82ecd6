//! Commit statuses for GitHub projects: one status per workflow (context `drydock/<workflow>`) reflecting its
//! current state — `pending` while it runs or waits for approval, then `success`, `failure` (a job failed) or
//! `error` (canceled) — and for a configuration error one `drydock` status, `failure`, with the first message
//! line. Each report posts the pipeline's *current* states (GitHub keeps the latest per context), so reporting
//! twice is harmless. Reports run after the transaction that changed a state; a coordinator killed between the
//! two misses that one report (there is no outbox yet) — the next change of the pipeline reports again.

use crate::api::AppState;
use crate::github::status::{StatusClient, StatusState};

/// Where statuses go and where they link to.
pub struct StatusReporter {
    pub client: StatusClient,
    /// The dashboard's base URL for `target_url` (`{public_url}/pipelines/{id}`).
    pub public_url: String,
}

/// Reports pipeline `pipeline_id` in the background (when statuses are configured).
pub fn spawn_report(state: &AppState, pipeline_id: i64) {
    if state.statuses.is_some() {
        let state = state.clone();
        tokio::spawn(async move { report(&state, pipeline_id).await });
    }
}

/// Posts the pipeline's workflow states as commit statuses; errors are logged, not returned.
pub async fn report(state: &AppState, pipeline_id: i64) {
    let Some(reporter) = &state.statuses else { return };
    let result = async {
        let pipeline = state.store.pipeline(pipeline_id).await?;
        let project = state.store.project(pipeline.project_id).await?;
        if project.local_path.is_some() {
            return Ok(());
        }
        let target = format!("{}/pipelines/{}", reporter.public_url.trim_end_matches('/'), pipeline.id);
        let mut posts = Vec::new();
        if pipeline.state == "config_error" {
            let first = pipeline.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("configuration error");
            posts.push(("drydock".to_string(), StatusState::Failure, first.to_string()));
        }
        for w in state.store.workflows(pipeline.id).await? {
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
            if let Err(e) =
                reporter.client.post(&project.slug, &pipeline.trigger.sha, s, &context, &description, &target).await
            {
                tracing::warn!(pipeline.id = pipeline.id, %context, error = %e, "cannot post a commit status");
            }
        }
        Ok::<(), crate::store::StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(pipeline.id = pipeline_id, error = %e, "cannot report commit statuses");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::routing::post;
    use axum::{Json, Router};
    use config_schema::wire::{JobOutcome, JobResult};

    use super::*;
    use crate::store::jobs::tests::{planned, project};
    use crate::store::pipelines::{PipelineTrigger, Planned};
    use crate::store::testing;

    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A stand-in for GitHub's API that records `(path, context, state)` of each status.
    async fn fake_github() -> (String, Seen) {
        let seen: Seen = Arc::default();
        async fn status(
            State(seen): State<Seen>,
            Path((owner, repo, sha)): Path<(String, String, String)>,
            Json(body): Json<serde_json::Value>,
        ) -> (axum::http::StatusCode, Json<serde_json::Value>) {
            let context = body["context"].as_str().unwrap_or_default().to_string();
            let state = body["state"].as_str().unwrap_or_default().to_string();
            seen.lock().unwrap_or_else(|e| e.into_inner()).push((format!("{owner}/{repo}@{sha}"), context, state));
            (axum::http::StatusCode::CREATED, Json(serde_json::json!({"id": 1})))
        }
        let app = Router::new().route("/repos/{owner}/{repo}/statuses/{sha}", post(status)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn take(seen: &Seen) -> Vec<(String, String, String)> {
        std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()))
    }

    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    fn row(path: &str, context: &str, state: &str) -> (String, String, String) {
        (path.into(), context.into(), state.into())
    }

    #[tokio::test]
    async fn workflows_report_pending_then_their_outcome_and_config_errors_fail() {
        let db = testing::sqlite().await;
        let (api, seen) = fake_github().await;
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
        let client = StatusClient::new(&api, "ghp_test").unwrap_or_else(|e| panic!("{e}"));
        state.statuses = Some(Arc::new(StatusReporter { client, public_url: "http://ci.example".into() }));
        let s = &db.store;
        let project = project(s).await;
        let trigger = PipelineTrigger { source: "webhook".into(), sha: SHA.into(), ..Default::default() };
        let yaml = "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  build:\n    jobs: [j]\n";
        let created =
            s.create_pipeline(project, &trigger, &planned(yaml, "main")).await.unwrap_or_else(|e| panic!("{e}"));
        report(&state, created.pipeline_id).await;
        assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock/build", "pending")]);
        let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
        let result = JobResult {
            job_id: job.id.to_string(),
            status: JobOutcome::Failed,
            exit_code: Some(1),
            message: None,
            started_at: 0,
            finished_at: 0,
            steps: vec![],
        };
        s.complete_job(job.id, 1, &result).await.unwrap_or_else(|e| panic!("{e}"));
        report(&state, created.pipeline_id).await;
        assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock/build", "failure")]);

        let broken = Planned::ConfigError(".circleci/config.yml:2:3: jobs: unknown key\nsecond line".into());
        let created = s.create_pipeline(project, &trigger, &broken).await.unwrap_or_else(|e| panic!("{e}"));
        report(&state, created.pipeline_id).await;
        assert_eq!(take(&seen), [row(&format!("acme/app@{SHA}"), "drydock", "failure")]);
    }
}
