//! The REST API for people and tools, through the real router on SQLite and PostgreSQL: projects, pipeline
//! pages, a pipeline, a job, its log by range and followed, artifacts, variables, contexts, and the problems
//! (401, 403, 404, 400) it answers.

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use config_schema::wire::StepStatus;
use tower::ServiceExt;

use super::AppState;
use crate::store::pipelines::PipelineTrigger;
use crate::store::runners::TokenKind;
use crate::store::testing;

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).unwrap_or_default()
    }
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, body: &str) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Body::from(body.to_string())).unwrap_or_else(|e| panic!("{e}"));
    let resp = app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap_or_default().to_vec();
    Answer { status, headers, bytes }
}

const ONE_JOB: &str =
    "version: 2.1\njobs:\n  j: {docker: [{image: x}], steps: [{run: 'true'}]}\nworkflows:\n  w:\n    jobs: [j]\n";

#[tokio::test]
async fn people_and_tools_read_and_change_everything_through_the_rest_api() {
    for db in testing::databases().await {
        let name = db.name;
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
        let app = super::router(state.clone());
        let s = &db.store;
        let project = crate::store::jobs::tests::project(s).await;
        let trigger = PipelineTrigger { source: "api".into(), sha: "abc".into(), ..Default::default() };
        let mut pipelines = Vec::new();
        for _ in 0..3 {
            let planned = crate::store::jobs::tests::planned(ONE_JOB, "main");
            pipelines.push(s.create_pipeline(project, &trigger, &planned).await.unwrap_or_else(|e| panic!("{e}")));
        }
        let admin = s.create_token(TokenKind::Admin).await.unwrap_or_else(|e| panic!("{e}"));
        let registration = s.create_token(TokenKind::RunnerRegistration).await.unwrap_or_else(|e| panic!("{e}"));
        let t = Some(admin.as_str());

        // Auth: none → 401, a runner's token → 403, both as problems.
        let a = call(&app, "GET", "/api/v1/projects", None, "").await;
        assert_eq!((a.status, a.json()["error"].as_str()), (401, Some("unauthorized")), "{name}");
        let a = call(&app, "GET", "/api/v1/projects", Some(&registration), "").await;
        assert_eq!(a.status, 403, "{name}");
        assert!(a.json()["message"].as_str().unwrap_or_default().contains("admin token"), "{name}");

        // Projects by slug (`%2F`) or ID; unknown → 404 problem.
        let a = call(&app, "GET", "/api/v1/projects", t, "").await;
        assert_eq!(a.json()["projects"][0]["slug"], "acme/app", "{name}");
        let a = call(&app, "GET", "/api/v1/projects/acme%2Fapp", t, "").await;
        assert_eq!((a.status, a.json()["project"]["id"].as_i64()), (200, Some(project)), "{name}");
        let a = call(&app, "GET", &format!("/api/v1/projects/{project}"), t, "").await;
        assert_eq!(a.json()["project"]["slug"], "acme/app", "{name}");
        let a = call(&app, "GET", "/api/v1/projects/nobody%2Fnothing", t, "").await;
        assert_eq!((a.status, a.json()["error"].as_str()), (404, Some("not_found")), "{name}");

        // Pipelines page by page, newest first.
        let a = call(&app, "GET", "/api/v1/projects/acme%2Fapp/pipelines?limit=2", t, "").await;
        let numbers: Vec<i64> =
            a.json()["pipelines"].as_array().into_iter().flatten().filter_map(|p| p["number"].as_i64()).collect();
        assert_eq!((numbers, a.json()["next_before"].as_i64()), (vec![3, 2], Some(2)), "{name}");
        let a = call(&app, "GET", "/api/v1/projects/acme%2Fapp/pipelines?limit=2&before=2", t, "").await;
        assert_eq!(a.json()["pipelines"][0]["number"], 1, "{name}");
        assert!(a.json()["next_before"].is_null(), "{name}");
        let a = call(&app, "GET", "/api/v1/projects/acme%2Fapp/pipelines?limit=zero", t, "").await;
        assert_eq!((a.status, a.json()["error"].as_str()), (400, Some("bad_request")), "{name}");

        // A pipeline with its workflows and jobs; a job with its steps.
        let p = pipelines[0].pipeline_id;
        let a = call(&app, "GET", &format!("/api/v1/pipelines/{p}"), t, "").await;
        assert_eq!(a.status, 200, "{name}");
        let body = a.json();
        assert_eq!(body["workflows"][0]["jobs"][0]["name"], "j", "{name}: {body}");
        let a = call(&app, "GET", "/api/v1/pipelines/424242", t, "").await;
        assert_eq!(a.status, 404, "{name}");

        let job = s.lease_job(1, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
        let keep = |t: &str| t.to_string();
        s.step_started(job.id, job.attempt, 0, "run", 1).await.unwrap_or_else(|e| panic!("{e}"));
        s.append_log(job.id, job.attempt, 0, "stdout", 0, "hello ", &keep).await.unwrap_or_else(|e| panic!("{e}"));
        s.append_log(job.id, job.attempt, 0, "stdout", 6, "world\n", &keep).await.unwrap_or_else(|e| panic!("{e}"));
        let a = call(&app, "GET", &format!("/api/v1/jobs/{}", job.id), t, "").await;
        assert_eq!((a.status, a.json()["steps"][0]["name"].as_str()), (200, Some("run")), "{name}");

        // Log ranges; the step is still running.
        let a = call(&app, "GET", &format!("/api/v1/jobs/{}/steps/0/log?offset=6&limit=3", job.id), t, "").await;
        assert_eq!((a.status, a.bytes.as_slice()), (200, b"wor".as_slice()), "{name}");
        let header = |a: &Answer, h: &str| a.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(header(&a, "x-log-total-bytes").as_deref(), Some("12"), "{name}");
        assert_eq!(header(&a, "x-log-complete").as_deref(), Some("false"), "{name}");
        let a = call(&app, "GET", &format!("/api/v1/jobs/{}/steps/0/log?offset=x", job.id), t, "").await;
        assert_eq!(a.status, 400, "{name}");

        // Followed after the step ended: everything from the offset, then `end`, then the stream stops.
        s.step_finished(job.id, job.attempt, 0, StepStatus::Success, Some(0), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let a = call(&app, "GET", &format!("/api/v1/jobs/{}/steps/0/log/follow?offset=6", job.id), t, "").await;
        assert_eq!(header(&a, "content-type").as_deref(), Some("text/event-stream"), "{name}");
        let text = String::from_utf8_lossy(&a.bytes);
        assert!(text.contains("event: log\n"), "{name}: {text}");
        assert!(text.contains(r#""data":"world\n""#), "{name}: {text}");
        assert!(text.contains("event: end\ndata: 12\n"), "{name}: {text}");
        assert!(!text.contains("hello"), "{name}: {text}");

        // Artifacts: listed and downloaded.
        let file = db.dir.path().join("report.txt");
        std::fs::write(&file, b"report bytes").unwrap_or_else(|e| panic!("{e}"));
        s.put_artifact(job.id, job.attempt, "reports/r.txt", 12, &file.to_string_lossy())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let a = call(&app, "GET", &format!("/api/v1/jobs/{}/artifacts", job.id), t, "").await;
        let url = a.json()["artifacts"][0]["url"].as_str().unwrap_or_default().to_string();
        assert_eq!(url, format!("/api/v1/jobs/{}/artifacts/reports/r.txt", job.id), "{name}");
        let a = call(&app, "GET", &url, t, "").await;
        assert_eq!((a.status, a.bytes.as_slice()), (200, b"report bytes".as_slice()), "{name}");
        let a = call(&app, "GET", &format!("/api/v1/jobs/{}/artifacts/nothing", job.id), t, "").await;
        assert_eq!(a.status, 404, "{name}");

        // Project variables: set, listed masked, deleted; bad names and bodies are 400.
        let vars = "/api/v1/projects/acme%2Fapp/env-vars";
        let a = call(&app, "PUT", &format!("{vars}/DEPLOY_TOKEN"), t, r#"{"value": "s3cr3t-value-1234"}"#).await;
        assert_eq!(a.status, 204, "{name}");
        let a = call(&app, "PUT", &format!("{vars}/1BAD"), t, r#"{"value": "x"}"#).await;
        assert_eq!(a.status, 400, "{name}");
        let a = call(&app, "PUT", &format!("{vars}/OK"), t, r#"{"valu": "x"}"#).await;
        assert_eq!(a.status, 400, "{name}");
        let a = call(&app, "GET", vars, t, "").await;
        assert_eq!(a.json()["env_vars"], serde_json::json!([{"name": "DEPLOY_TOKEN", "masked": "xxxx1234"}]));
        assert!(!String::from_utf8_lossy(&a.bytes).contains("s3cr3t"), "{name}");
        assert_eq!(call(&app, "DELETE", &format!("{vars}/DEPLOY_TOKEN"), t, "").await.status, 204, "{name}");
        assert_eq!(call(&app, "DELETE", &format!("{vars}/DEPLOY_TOKEN"), t, "").await.status, 404, "{name}");

        // Contexts and their variables.
        let a = call(&app, "POST", "/api/v1/contexts", t, r#"{"name": "deploy"}"#).await;
        assert_eq!(a.status, 201, "{name}");
        assert_eq!(call(&app, "POST", "/api/v1/contexts", t, r#"{"name": "deploy"}"#).await.status, 409, "{name}");
        let a = call(&app, "PUT", "/api/v1/contexts/nope/env-vars/KEY", t, r#"{"value": "v"}"#).await;
        assert_eq!(a.status, 404, "{name}: no context is made by setting a variable");
        let a = call(&app, "PUT", "/api/v1/contexts/deploy/env-vars/KEY", t, r#"{"value": "v"}"#).await;
        assert_eq!(a.status, 204, "{name}");
        let a = call(&app, "GET", "/api/v1/contexts/deploy/env-vars", t, "").await;
        assert_eq!(a.json()["env_vars"][0]["name"], "KEY", "{name}");
        let a = call(&app, "GET", "/api/v1/contexts", t, "").await;
        assert_eq!(a.json()["contexts"], serde_json::json!([{"name": "deploy"}]), "{name}");
        assert_eq!(call(&app, "DELETE", "/api/v1/contexts/deploy/env-vars/KEY", t, "").await.status, 204);
        assert_eq!(call(&app, "DELETE", "/api/v1/contexts/deploy", t, "").await.status, 204, "{name}");
        assert_eq!(call(&app, "DELETE", "/api/v1/contexts/deploy", t, "").await.status, 404, "{name}");

        // The OpenAPI document is public.
        let a = call(&app, "GET", "/api/v1/openapi.json", None, "").await;
        assert_eq!((a.status, a.json()["openapi"].as_str()), (200, Some("3.0.3")), "{name}");
    }
}
