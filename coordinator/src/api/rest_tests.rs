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

#[tokio::test]
async fn every_api_error_is_a_json_problem_including_unknown_routes_and_malformed_bodies() {
    for db in testing::databases().await {
        let name = db.name;
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
        // The whole server (API and dashboard), as `coordinator serve` answers.
        let app = crate::server::app(state.clone(), web::WebConfig::default());
        crate::store::jobs::tests::project(&db.store).await;
        let admin = db.store.create_token(TokenKind::Admin).await.unwrap_or_else(|e| panic!("{e}"));
        let t = Some(admin.as_str());
        let is_problem = |a: &Answer| {
            let content_type = a.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            content_type.starts_with("application/json") && a.json()["message"].as_str().is_some_and(|m| !m.is_empty())
        };

        // A route no one has: 404 as JSON, naming the path, with or without a token.
        for token in [t, None] {
            let a = call(&app, "GET", "/api/v1/no-such-thing", token, "").await;
            assert_eq!((a.status, a.json()["error"].as_str()), (404, Some("not_found")), "{name}");
            assert!(is_problem(&a), "{name}: {}", String::from_utf8_lossy(&a.bytes));
            assert!(a.json()["message"].as_str().unwrap_or_default().contains("/api/v1/no-such-thing"), "{name}");
        }
        let a = call(&app, "DELETE", "/api/v2/projects", t, "").await;
        assert_eq!((a.status, is_problem(&a)), (404, true), "{name}");

        // A method the route does not take: 405 with the methods it does.
        let a = call(&app, "POST", "/api/v1/projects", t, "{}").await;
        assert_eq!((a.status, a.json()["error"].as_str()), (405, Some("method_not_allowed")), "{name}");
        assert!(is_problem(&a), "{name}");
        assert!(a.json()["message"].as_str().unwrap_or_default().ends_with("use GET"), "{name}: {}", a.json());
        assert_eq!(a.headers.get("allow").and_then(|v| v.to_str().ok()), Some("GET"), "{name}");
        let a = call(&app, "PUT", "/api/v1/projects/acme%2Fapp/schedules/nightly", t, "{}").await;
        assert_eq!(a.status, 405, "{name}");
        assert_eq!(a.headers.get("allow").and_then(|v| v.to_str().ok()), Some("DELETE, GET, PATCH"), "{name}");

        // A path segment that is not UTF-8: axum's own rejection, as a problem.
        let a = call(&app, "GET", "/api/v1/projects/%FF%FE", t, "").await;
        assert_eq!((a.status, is_problem(&a)), (400, true), "{name}: {}", String::from_utf8_lossy(&a.bytes));

        // Malformed bodies: 400 naming the field (`field` is its JSON path).
        let vars = "/api/v1/projects/acme%2Fapp/env-vars/TOKEN";
        let a = call(&app, "PUT", vars, t, r#"{"value": 42}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("value")), "{name}: {}", a.json());
        assert!(a.json()["message"].as_str().unwrap_or_default().contains("`value`"), "{name}: {}", a.json());
        let a = call(&app, "PUT", vars, t, r#"{"value": "x", "extra": 1}"#).await;
        assert_eq!(a.status, 400, "{name}");
        assert!(a.json()["message"].as_str().unwrap_or_default().contains("extra"), "{name}: {}", a.json());
        let a = call(&app, "PUT", vars, t, r#"{"value": "x"} trailing"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some(".")), "{name}: {}", a.json());
        let a = call(&app, "PUT", vars, t, "{not json").await;
        assert_eq!((a.status, is_problem(&a)), (400, true), "{name}");
        let a = call(&app, "POST", "/api/v1/contexts", t, r#"{"name": ["deploy"]}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("name")), "{name}: {}", a.json());
        let a = call(&app, "POST", "/api/v1/pipelines/1/rerun", t, r#"{"scope": "everything"}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("scope")), "{name}: {}", a.json());

        // The dashboard's pages are not touched: a page that does not exist is still the dashboard's answer.
        let a = call(&app, "GET", "/projects/acme%2Fapp", None, "").await;
        assert_ne!(a.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"), "{name}");
    }
}

#[tokio::test]
async fn runners_schedules_and_project_options_through_the_rest_api() {
    for db in testing::databases().await {
        let name = db.name;
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(db.store.clone(), db.dir.path().to_path_buf(), key);
        let app = super::router(state.clone());
        let s = &db.store;
        let project = crate::store::jobs::tests::project(s).await;
        let admin = s.create_token(TokenKind::Admin).await.unwrap_or_else(|e| panic!("{e}"));
        let t = Some(admin.as_str());

        // Runners: none, then two registered, one of them holding a job.
        let a = call(&app, "GET", "/api/v1/runners", t, "").await;
        assert_eq!((a.status, a.json()["runners"].clone()), (200, serde_json::json!([])), "{name}");
        assert_eq!(call(&app, "GET", "/api/v1/runners", None, "").await.status, 401, "{name}");
        let labels = std::collections::BTreeMap::from([("os".to_string(), "linux".to_string())]);
        let (busy, _) =
            s.register_runner("busy", &labels, &["large".to_string()]).await.unwrap_or_else(|e| panic!("{e}"));
        s.register_runner("idle", &Default::default(), &[]).await.unwrap_or_else(|e| panic!("{e}"));
        let trigger = PipelineTrigger { source: "api".into(), sha: "abc".into(), ..Default::default() };
        let planned = crate::store::jobs::tests::planned(ONE_JOB, "main");
        s.create_pipeline(project, &trigger, &planned).await.unwrap_or_else(|e| panic!("{e}"));
        let job = s.lease_job(busy.id, &[], 60_000).await.ok().flatten().unwrap_or_else(|| panic!("no job"));
        let a = call(&app, "GET", "/api/v1/runners", t, "").await;
        let runners = a.json()["runners"].clone();
        assert_eq!(runners[0]["name"], "busy", "{name}: {runners}");
        assert_eq!(runners[0]["labels"], serde_json::json!({"os": "linux"}), "{name}");
        assert_eq!(runners[0]["resource_classes"], serde_json::json!(["large"]), "{name}");
        assert_eq!(runners[0]["online"], true, "{name}");
        assert_eq!(runners[0]["running_jobs"][0]["id"], job.id, "{name}: {runners}");
        assert_eq!(runners[0]["running_jobs"][0]["project"], "acme/app", "{name}");
        assert_eq!(runners[0]["running_jobs"][0]["pipeline_number"], 1, "{name}");
        assert_eq!(
            (runners[1]["name"].as_str(), runners[1]["running_jobs"].clone()),
            (Some("idle"), serde_json::json!([]))
        );

        // Schedules: create, conflict, bad cron naming the field, list, read, change, delete.
        let base = "/api/v1/projects/acme%2Fapp/schedules";
        let a = call(&app, "POST", base, t, r#"{"name": "nightly", "cron": "0 3 * * *", "branch": "main"}"#).await;
        assert_eq!(a.status, 201, "{name}: {}", a.json());
        let created = a.json()["schedule"].clone();
        assert_eq!((created["cron"].as_str(), created["workflow"].is_null()), (Some("0 3 * * *"), true), "{name}");
        assert!(created["next_tick"].as_str().unwrap_or_default().ends_with("T03:00:00Z"), "{name}: {created}");
        let a = call(&app, "POST", base, t, r#"{"name": "nightly", "cron": "0 4 * * *", "branch": "main"}"#).await;
        assert_eq!((a.status, a.json()["error"].as_str()), (409, Some("conflict")), "{name}");
        let a = call(&app, "POST", base, t, r#"{"cron": "0 25 * * *", "branch": "main"}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("cron")), "{name}: {}", a.json());
        let a = call(&app, "POST", base, t, r#"{"cron": "0 3 * * *"}"#).await;
        assert_eq!(a.status, 400, "{name}");
        assert!(a.json()["message"].as_str().unwrap_or_default().contains("branch"), "{name}: {}", a.json());
        let a = call(&app, "POST", base, t, r#"{"cron": "*/15 * * * 1-5", "branch": "dev", "workflow": "w"}"#).await;
        assert_eq!((a.status, a.json()["schedule"]["name"].as_str()), (201, Some("*/15 * * * 1-5 dev w")), "{name}");
        let a = call(&app, "GET", base, t, "").await;
        let names: Vec<_> = a.json()["schedules"].as_array().into_iter().flatten().map(|s| s["name"].clone()).collect();
        assert_eq!(names, [serde_json::json!("*/15 * * * 1-5 dev w"), serde_json::json!("nightly")], "{name}");
        let a = call(&app, "GET", &format!("{base}/nightly"), t, "").await;
        assert_eq!((a.status, a.json()["schedule"]["id"].clone()), (200, created["id"].clone()), "{name}");
        // Changing the branch keeps the next tick; changing the cron moves it; `workflow: null` clears it.
        let a = call(&app, "PATCH", &format!("{base}/nightly"), t, r#"{"branch": "release", "workflow": "w"}"#).await;
        let changed = a.json()["schedule"].clone();
        assert_eq!(
            (a.status, changed["branch"].as_str(), changed["workflow"].as_str()),
            (200, Some("release"), Some("w"))
        );
        assert_eq!(changed["next_tick_at"], created["next_tick_at"], "{name}");
        let a = call(&app, "PATCH", &format!("{base}/nightly"), t, r#"{"cron": "30 4 * * *", "workflow": null}"#).await;
        let changed = a.json()["schedule"].clone();
        assert!(changed["next_tick"].as_str().unwrap_or_default().ends_with("T04:30:00Z"), "{name}: {changed}");
        assert!(changed["workflow"].is_null(), "{name}: {changed}");
        let stored = s.schedule(project, "nightly").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((stored.cron.as_str(), stored.branch.as_str()), ("30 4 * * *", "release"), "{name}");
        let a = call(&app, "PATCH", &format!("{base}/nightly"), t, r#"{"cron": "x"}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("cron")), "{name}");
        let a = call(&app, "PATCH", &format!("{base}/nightly"), t, r#"{"name": "renamed"}"#).await;
        assert_eq!(a.status, 400, "{name}: the name is the schedule's key");
        assert_eq!(call(&app, "DELETE", &format!("{base}/nightly"), t, "").await.status, 204, "{name}");
        let a = call(&app, "GET", &format!("{base}/nightly"), t, "").await;
        assert_eq!((a.status, a.json()["error"].as_str()), (404, Some("not_found")), "{name}");
        assert_eq!(call(&app, "DELETE", &format!("{base}/nightly"), t, "").await.status, 404, "{name}");
        let a = call(&app, "GET", "/api/v1/projects/nobody%2Fnothing/schedules", t, "").await;
        assert_eq!(a.status, 404, "{name}");

        // A schedule the configuration declares: listed with its source, changed only in the configuration.
        let declared =
            [crate::store::schedules::ConfigSchedule { workflow: "nightly".into(), cron: "0 1 * * *".into() }];
        s.sync_config_schedules(project, "main", &declared, &crate::scheduler::next_tick_after)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let a = call(&app, "GET", base, t, "").await;
        let listed = a.json()["schedules"].as_array().cloned().unwrap_or_default();
        let config = listed.into_iter().find(|s| s["source"] == "config").unwrap_or_default();
        assert_eq!((config["source"].as_str(), config["branch"].as_str()), (Some("config"), Some("main")), "{name}");
        let config_url = format!("{base}/{}", config["name"].as_str().unwrap_or_default().replace(' ', "%20"));
        let a = call(&app, "PATCH", &config_url, t, r#"{"branch": "dev"}"#).await;
        assert_eq!(a.status, 409, "{name}: {}", a.json());
        assert!(a.json()["message"].as_str().unwrap_or_default().contains(".circleci/config.yml"), "{name}");
        assert_eq!(call(&app, "DELETE", &config_url, t, "").await.status, 409, "{name}");

        // Project options: read with the project, changed by PATCH (absent fields stay), `null` lifts the limit.
        let p = "/api/v1/projects/acme%2Fapp";
        let a = call(&app, "GET", p, t, "").await;
        assert_eq!(a.json()["project"]["auto_cancel_redundant"], false, "{name}");
        assert!(a.json()["project"]["max_concurrent_jobs"].is_null(), "{name}");
        let a = call(&app, "PATCH", p, t, r#"{"auto_cancel_redundant": true, "max_concurrent_jobs": 2}"#).await;
        assert_eq!(a.status, 200, "{name}: {}", a.json());
        let a = call(&app, "PATCH", p, t, r#"{"auto_cancel_redundant": false}"#).await;
        assert_eq!(a.json()["project"]["max_concurrent_jobs"], 2, "{name}: an absent field stays");
        let stored = s.project(project).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((stored.auto_cancel_redundant, stored.max_concurrent_jobs), (false, Some(2)), "{name}");
        let a = call(&app, "PATCH", p, t, r#"{"max_concurrent_jobs": 0}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("max_concurrent_jobs")), "{name}");
        let a = call(&app, "PATCH", p, t, r#"{"max_concurrent_jobs": "two"}"#).await;
        assert_eq!((a.status, a.json()["field"].as_str()), (400, Some("max_concurrent_jobs")), "{name}");
        let a = call(&app, "PATCH", p, t, r#"{"max_concurrent_jobs": null}"#).await;
        assert!(a.json()["project"]["max_concurrent_jobs"].is_null(), "{name}: {}", a.json());
        assert_eq!(s.project(project).await.map(|p| p.max_concurrent_jobs).ok(), Some(None), "{name}");
    }
}
