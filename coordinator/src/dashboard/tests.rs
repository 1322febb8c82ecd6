//! The dashboard over the real store on both backends: a pipeline stored and run as the runner API does it,
//! then signing in through the real router (`server::app`) and reading the pages.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use config_schema::wire::{JobOutcome, JobResult, StepStatus};
use futures_util::StreamExt;
use tower::ServiceExt;
use web::model::{EnvVarName, User};
use web::Dashboard;

use super::CoordinatorDashboard;
use crate::api::AppState;
use crate::log_events::LogEvents;
use crate::store::pipelines::PipelineTrigger;
use crate::store::projects::NewProject;
use crate::store::{now_ms, testing};

const PASSWORD: &str = "correct-horse-battery-staple";
const SECRET: &str = "hunter2-deploy-token-9876";
const HOOK_SECRET: &str = "whsec-hook-secret-5555";

const YAML: &str = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'echo hi'}]}\n  test: \
                    {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  main:\n    jobs:\n      - \
                    build\n      - test: {requires: [build]}\n";

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Vec<String>, String) {
    let response = app.clone().oneshot(request).await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .collect();
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await.unwrap_or_else(|e| panic!("{e}"));
    (status, cookies, String::from_utf8_lossy(&body).into_owned())
}

/// Signs in as `name` and returns the session cookie (`drydock_session=…`).
async fn sign_in(app: &Router, name: &str, password: &str) -> Option<String> {
    let (_, cookies, _) = send(app, Request::get("/sign-in").body(Body::empty()).unwrap_or_default()).await;
    let signin = cookies.iter().find(|c| c.starts_with("drydock_signin="))?.clone();
    let token = signin.trim_start_matches("drydock_signin=");
    let form = format!("username={name}&password={password}&_csrf={token}&next=%2F");
    let request = Request::post("/sign-in")
        .header(header::COOKIE, &signin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap_or_default();
    let (_, cookies, _) = send(app, request).await;
    cookies.into_iter().find(|c| c.starts_with("drydock_session=") && c.len() > "drydock_session=".len())
}

/// The CSRF token in a signed-in page's forms.
fn csrf_token(page: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let start = page.find(marker).unwrap_or_else(|| panic!("no CSRF field in {page}")) + marker.len();
    page[start..].split('"').next().unwrap_or_default().to_string()
}

async fn page(app: &Router, cookie: &str, path: &str) -> String {
    let request = Request::get(path).header(header::COOKIE, cookie).body(Body::empty()).unwrap_or_default();
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

#[tokio::test]
async fn signed_in_pages_show_a_stored_pipeline_its_jobs_and_logs_but_never_a_secret() {
    for db in testing::databases().await {
        let name = db.name;
        let s = &db.store;
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(s.clone(), db.dir.path().to_path_buf(), key);
        let app = crate::server::app(state.clone(), web::WebConfig::default());
        let data = CoordinatorDashboard::new(state.clone());

        let project = NewProject {
            slug: "acme/app".into(),
            clone_url: "https://github.com/acme/app.git".into(),
            local_path: None,
            webhook_secret_enc: Some(state.secret_key.encrypt(HOOK_SECRET)),
            default_branch: "main".into(),
            fork_secrets: false,
        };
        let project = s.add_project(&project).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let admin = User { id: "0".into(), name: "test".into(), role: web::model::Role::Admin };
        let var = EnvVarName::parse("DEPLOY_TOKEN").unwrap_or_else(|e| panic!("{e}"));
        data.set_env_var(&admin, "acme/app", &var, SECRET).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let hash = web::hash_password(PASSWORD).unwrap_or_else(|e| panic!("{e}"));
        s.add_user("alice", &hash, true).await.unwrap_or_else(|e| panic!("{name}: {e}"));

        let trigger = PipelineTrigger {
            source: "push".into(),
            branch: Some("main".into()),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            commit_message: "add the <b>build</b>".into(),
            author: "Alice".into(),
            ..Default::default()
        };
        let planned = crate::store::jobs::tests::planned(YAML, "main");
        let created = s.create_pipeline(project.id, &trigger, &planned).await.unwrap_or_else(|e| panic!("{name}: {e}"));

        // A runner runs `build` as the runner API would record it (the log masked by the coordinator).
        let (runner, _) = s
            .register_runner("local-1", &BTreeMap::new(), &["medium".to_string()])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let job = s
            .lease_job(runner.id, &["medium".to_string()], 60_000)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: nothing to lease"));
        assert_eq!(job.name, "build", "{name}");
        let now = now_ms();
        s.step_started(job.id, job.attempt, 0, "echo hi", now).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mask = |text: &str| crate::api::runners::mask_secrets(text, &[SECRET.to_string()]);
        let log = format!("hi from the build\ntoken is {SECRET}\n");
        s.append_log(job.id, job.attempt, 0, "stdout", 0, &log, &mask).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        s.step_finished(job.id, job.attempt, 0, StepStatus::Success, Some(0), now)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = JobResult {
            job_id: job.id.to_string(),
            status: JobOutcome::Success,
            exit_code: Some(0),
            message: None,
            started_at: u64::try_from(now).unwrap_or(0),
            finished_at: u64::try_from(now).unwrap_or(0),
            steps: Vec::new(),
        };
        s.complete_job(job.id, runner.id, &result).await.unwrap_or_else(|e| panic!("{name}: {e}"));

        assert!(sign_in(&app, "alice", "wrong-password-123").await.is_none(), "{name}: a wrong password signed in");
        let cookie = sign_in(&app, "alice", PASSWORD).await.unwrap_or_else(|| panic!("{name}: sign-in failed"));

        // A GitHub project's slug has a `/`: links carry it percent-encoded and every route takes it.
        let projects = page(&app, &cookie, "/").await;
        assert!(projects.contains("/projects/acme%2Fapp") && projects.contains("main"), "{name}: {projects}");
        let project_page = page(&app, &cookie, "/projects/acme%2Fapp").await;
        assert!(project_page.contains("/projects/acme%2Fapp/pipelines/1"), "{name}: {project_page}");
        assert!(project_page.contains("/projects/acme%2Fapp/settings"), "{name}: {project_page}");
        let branch_page = page(&app, &cookie, "/projects/acme%2Fapp?branch=main").await;
        assert!(branch_page.contains("/projects/acme%2Fapp/pipelines/1"), "{name}: {branch_page}");
        let pipeline = page(&app, &cookie, &format!("/projects/acme%2Fapp/pipelines/{}", created.number)).await;
        for needle in ["build", "test", "success", "queued", "&lt;b&gt;build&lt;&#x2F;b&gt;"] {
            assert!(pipeline.contains(needle), "{name}: pipeline page lacks {needle:?}: {pipeline}");
        }
        let job_page = page(&app, &cookie, &format!("/jobs/{}", job.id)).await;
        assert!(job_page.contains("echo hi") && job_page.contains("local-1"), "{name}: {job_page}");
        assert!(job_page.contains("DEPLOY_TOKEN"), "{name}: the job page lists env names: {job_page}");
        let log_page = page(&app, &cookie, &format!("/jobs/{}/steps/0/log", job.id)).await;
        assert!(log_page.contains("hi from the build"), "{name}: {log_page}");
        let stream = page(&app, &cookie, &format!("/jobs/{}/steps/0/log/stream", job.id)).await;
        assert!(stream.contains("hi from the build"), "{name}: a finished step streams its log at once: {stream}");
        let settings = page(&app, &cookie, "/projects/acme%2Fapp/settings").await;
        assert!(settings.contains("DEPLOY_TOKEN") && settings.contains("xxxx9876"), "{name}: {settings}");
        let runners = page(&app, &cookie, "/runners").await;
        assert!(runners.contains("local-1"), "{name}: {runners}");

        for (what, body) in [
            ("projects", &projects),
            ("project", &project_page),
            ("pipeline", &pipeline),
            ("job", &job_page),
            ("log", &log_page),
            ("stream", &stream),
            ("settings", &settings),
            ("runners", &runners),
        ] {
            assert!(!body.contains(SECRET), "{name}: the {what} page shows the secret value");
            assert!(!body.contains(HOOK_SECRET), "{name}: the {what} page shows the webhook secret");
        }

        // Every POST under /projects/{slug} takes the slug and redirects back to a path that keeps it encoded.
        let csrf = csrf_token(&settings);
        let settings_path = "/projects/acme%2Fapp/settings";
        let pipeline_path = format!("/projects/acme%2Fapp/pipelines/{}", created.number);
        let workflow_id = s.pipeline_jobs(created.pipeline_id).await.unwrap_or_else(|e| panic!("{e}"))[0].workflow_id;
        let hold_job = job.id;
        for (path, form, status, location) in [
            (format!("{settings_path}/env"), "name=OTHER_VAR&value=other-value-12345".to_string(), 303, settings_path),
            (format!("{settings_path}/env/delete"), "name=OTHER_VAR".to_string(), 303, settings_path),
            (format!("{settings_path}/options"), "max_concurrent_jobs=".to_string(), 303, settings_path),
            (format!("{pipeline_path}/workflows/{workflow_id}/cancel"), String::new(), 303, pipeline_path.as_str()),
            (format!("{pipeline_path}/jobs/{hold_job}/approve"), String::new(), 409, ""),
        ] {
            let request = Request::post(path.as_str())
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("{form}&_csrf={csrf}")))
                .unwrap_or_default();
            let response = app.clone().oneshot(request).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(response.status().as_u16(), status, "{name}: POST {path}");
            if status == 303 {
                let got = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
                assert_eq!(got, location, "{name}: POST {path}");
            } else {
                let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
                let body = String::from_utf8_lossy(&body);
                assert!(!body.contains("not found"), "{name}: POST {path} reached its handler: {body}");
            }
        }

        let signed_out = Request::get("/").body(Body::empty()).unwrap_or_default();
        let (status, _, _) = send(&app, signed_out).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}: pages need a session");
        let (status, _, _) =
            send(&app, Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap_or_default()).await;
        assert_ne!(status, StatusCode::SEE_OTHER, "{name}: /api stays the coordinator's");
    }
}

#[tokio::test]
async fn sessions_store_only_token_hashes_and_users_names_are_unique() {
    for db in testing::databases().await {
        let name = db.name;
        let s = &db.store;
        let id = s.add_user("bob", "$argon2id$x", false).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.add_user("bob", "$argon2id$y", false).await.is_err(), "{name}: a second bob");
        s.create_session("abc123", id, "csrf", now_ms() + 1000).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = s.session_by_token_hash("abc123").await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.map(|s| s.user_name), Some("bob".to_string()), "{name}");
        s.delete_session("abc123").await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.session_by_token_hash("abc123").await.unwrap_or_else(|e| panic!("{e}")).is_none(), "{name}");
        assert_eq!(s.user_count().await.unwrap_or_else(|e| panic!("{e}")), 1, "{name}");
    }
}

/// A project, a pipeline of `YAML` and its `build` job leased by a runner: (state, router, job, runner token).
async fn running_build(db: &testing::TestDb) -> (AppState, Router, crate::store::jobs::JobRow, String) {
    let s = &db.store;
    let key =
        crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key")).unwrap_or_else(|e| panic!("{e}"));
    let mut state = AppState::new(s.clone(), db.dir.path().to_path_buf(), key);
    // An hour: a live log that gets a chunk within the test was woken by the runner API, not by the fallback.
    state.log_events = std::sync::Arc::new(LogEvents::with_fallback(std::time::Duration::from_secs(3600)));
    let app = crate::server::app(state.clone(), web::WebConfig::default());
    let project = NewProject {
        slug: "acme/app".into(),
        clone_url: "https://github.com/acme/app.git".into(),
        local_path: None,
        webhook_secret_enc: None,
        default_branch: "main".into(),
        fork_secrets: false,
    };
    let project = s.add_project(&project).await.unwrap_or_else(|e| panic!("{e}"));
    let trigger = PipelineTrigger { source: "push".into(), branch: Some("main".into()), ..Default::default() };
    let planned = crate::store::jobs::tests::planned(YAML, "main");
    s.create_pipeline(project.id, &trigger, &planned).await.unwrap_or_else(|e| panic!("{e}"));
    let (runner, token) =
        s.register_runner("local-1", &BTreeMap::new(), &["medium".to_string()]).await.unwrap_or_else(|e| panic!("{e}"));
    let job = s
        .lease_job(runner.id, &["medium".to_string()], 60_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("nothing to lease"));
    (state, app, job, token)
}

/// Posts runner events for `job` through the real runner API.
async fn post_events(app: &Router, token: &str, job: i64, events: serde_json::Value) {
    let request = Request::post(format!("/api/v1/jobs/{job}/events"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(events.to_string()))
        .unwrap_or_default();
    let (status, _, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "events: {body}");
}

fn log_event(job: i64, offset: u64, data: &str) -> serde_json::Value {
    serde_json::json!({"type": "log", "job_id": job.to_string(), "step": 0, "stream": "stdout", "offset": offset,
        "data": data})
}

/// A bound against a hanging test (not a timing assertion): the stream's next item.
async fn next_chunk(stream: &mut futures_util::stream::BoxStream<'static, web::LogChunk>) -> Option<web::LogChunk> {
    tokio::time::timeout(std::time::Duration::from_secs(120), stream.next())
        .await
        .unwrap_or_else(|_| panic!("the live log was not woken"))
}

#[tokio::test]
async fn the_live_log_is_pushed_when_the_runner_api_stores_a_chunk_and_ends_with_the_step() {
    for db in testing::databases().await {
        let name = db.name;
        let (state, app, job, token) = running_build(&db).await;
        let data = CoordinatorDashboard::new(state.clone());
        post_events(
            &app,
            &token,
            job.id,
            serde_json::json!([{"type": "step_started", "job_id": job.id.to_string(), "step": 0, "name": "echo hi",
                "at": 1}, log_event(job.id, 0, "first line\n")]),
        )
        .await;
        let mut stream = data.log_stream(&job.id.to_string(), 0, 0).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let first = next_chunk(&mut stream).await.unwrap_or_else(|| panic!("{name}: the stream ended"));
        assert_eq!((first.offset, first.data.as_str()), (0, "first line\n"), "{name}");

        // The stream waits; the runner API's append wakes it (the fallback is an hour).
        let waiting = tokio::spawn(async move {
            let chunk = next_chunk(&mut stream).await;
            (chunk, stream)
        });
        post_events(&app, &token, job.id, serde_json::json!([log_event(job.id, 11, "second ✓ line\n")])).await;
        let (second, mut stream) = waiting.await.unwrap_or_else(|e| panic!("{e}"));
        let second = second.unwrap_or_else(|| panic!("{name}: the stream ended"));
        assert_eq!((second.offset, second.data.as_str()), (11, "second ✓ line\n"), "{name}");

        // A resent chunk (already stored) sends nothing; the step's end ends the stream.
        post_events(&app, &token, job.id, serde_json::json!([log_event(job.id, 11, "second ✓ line\n")])).await;
        post_events(
            &app,
            &token,
            job.id,
            serde_json::json!([{"type": "step_finished", "job_id": job.id.to_string(), "step": 0,
                "status": "success", "exit_code": 0, "at": 2}]),
        )
        .await;
        assert!(next_chunk(&mut stream).await.is_none(), "{name}: the stream ends with the step");
        drop(stream);
        state.log_events.notify((job.id, 0));
        assert_eq!(state.log_events.channel_count(), 0, "{name}: a step nobody watches keeps no channel");

        // A stream opened from inside a character starts at the next whole one, with its offset.
        let mut mid = data.log_stream(&job.id.to_string(), 0, 19).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let chunk = next_chunk(&mut mid).await.unwrap_or_else(|| panic!("{name}: nothing"));
        assert_eq!((chunk.offset, chunk.data.as_str()), (21, " line\n"), "{name}");
    }
}

#[tokio::test]
async fn a_50_mb_artifact_downloads_as_a_stream_of_bounded_reads() {
    for db in testing::databases().await {
        let name = db.name;
        let (state, app, job, _) = running_build(&db).await;
        // A sparse file (no disk used) with marks at its start, middle and end.
        let size: u64 = 50 * 1024 * 1024;
        let file = db.dir.path().join("big.bin");
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(&file).unwrap_or_else(|e| panic!("{e}"));
            f.set_len(size).unwrap_or_else(|e| panic!("{e}"));
            for (at, mark) in [(0, b"start"), (size / 2, b"midst"), (size - 5, b"final")] {
                f.seek(SeekFrom::Start(at)).unwrap_or_else(|e| panic!("{e}"));
                f.write_all(mark).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let path = file.to_str().unwrap_or_else(|| panic!("utf-8 path"));
        let size_i64 = i64::try_from(size).unwrap_or(i64::MAX);
        state
            .store
            .put_artifact(job.id, job.attempt, "out/big.bin", size_i64, path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        // The data behind the handler: a stream of reads, none larger than ARTIFACT_CHUNK_BYTES.
        let data = CoordinatorDashboard::new(state.clone());
        let download =
            data.artifact(&job.id.to_string(), "out/big.bin").await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(download.size_bytes, size, "{name}");
        let (mut chunks, mut total, mut largest) = (0usize, 0u64, 0usize);
        let mut marks = Vec::new();
        let mut body = download.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{name}: {e}"));
            largest = largest.max(chunk.len());
            for mark in [&b"start"[..], b"midst", b"final"] {
                if chunk.windows(5).any(|w| w == mark) {
                    marks.push(String::from_utf8_lossy(mark).into_owned());
                }
            }
            total += chunk.len() as u64;
            chunks += 1;
        }
        assert_eq!(total, size, "{name}");
        assert!(largest <= super::ARTIFACT_CHUNK_BYTES, "{name}: a read of {largest} bytes");
        assert!(chunks >= (size as usize) / super::ARTIFACT_CHUNK_BYTES, "{name}: {chunks} reads");
        assert_eq!(marks, ["start", "midst", "final"], "{name}: the bytes in order");

        // Through the router, signed in: the same bytes as an attachment, frame by frame.
        let hash = web::hash_password(PASSWORD).unwrap_or_else(|e| panic!("{e}"));
        state.store.add_user("alice", &hash, true).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let cookie = sign_in(&app, "alice", PASSWORD).await.unwrap_or_else(|| panic!("{name}: sign-in failed"));
        let request = Request::get(format!("/jobs/{}/artifacts/out/big.bin", job.id))
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap_or_default();
        let response = app.clone().oneshot(request).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let length = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(length, size.to_string(), "{name}");
        let mut frames = response.into_body().into_data_stream();
        let (mut received, mut largest) = (0u64, 0usize);
        while let Some(frame) = frames.next().await {
            let frame = frame.unwrap_or_else(|e| panic!("{name}: {e}"));
            largest = largest.max(frame.len());
            received += frame.len() as u64;
        }
        assert_eq!(received, size, "{name}");
        assert!(largest <= super::ARTIFACT_CHUNK_BYTES, "{name}: a body frame of {largest} bytes");
    }
}

/// Posts `form` (with the CSRF token of `cookie`'s session, read from `csrf_page`) and returns the status and body.
async fn post_form(app: &Router, cookie: &str, csrf: &str, path: &str, form: &str) -> (StatusCode, String) {
    let request = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("{form}&_csrf={csrf}")))
        .unwrap_or_default();
    let (status, _, body) = send(app, request).await;
    (status, body)
}

#[tokio::test]
async fn settings_change_the_options_and_schedules_and_a_viewer_changes_nothing() {
    for db in testing::databases().await {
        let name = db.name;
        let (state, app, _job, _) = running_build(&db).await;
        let s = &state.store;
        let hash = web::hash_password(PASSWORD).unwrap_or_else(|e| panic!("{e}"));
        s.add_user("alice", &hash, true).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        s.add_user("victor", &hash, false).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let admin = sign_in(&app, "alice", PASSWORD).await.unwrap_or_else(|| panic!("{name}: sign-in failed"));
        let path = "/projects/acme%2Fapp/settings";
        let csrf = csrf_token(&page(&app, &admin, path).await);

        let (status, body) = post_form(
            &app,
            &admin,
            &csrf,
            &format!("{path}/options"),
            "max_concurrent_jobs=3&auto_cancel_redundant=on",
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}: {body}");
        let p = s.project_by_slug("acme/app").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.max_concurrent_jobs, p.auto_cancel_redundant), (Some(3), true), "{name}");
        let settings = page(&app, &admin, path).await;
        assert!(settings.contains("value=\"3\"") && settings.contains(" checked>"), "{name}: {settings}");
        let (status, _) = post_form(&app, &admin, &csrf, &format!("{path}/options"), "max_concurrent_jobs=").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}");
        let p = s.project_by_slug("acme/app").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.max_concurrent_jobs, p.auto_cancel_redundant), (None, false), "{name}: limit removed");

        // Schedules: added as `coordinator schedule add` adds them (a derived name when none is given).
        let (status, body) =
            post_form(&app, &admin, &csrf, &format!("{path}/schedules"), "cron=0+3+*+*+*&branch=main&name=").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}: {body}");
        let (status, _) = post_form(
            &app,
            &admin,
            &csrf,
            &format!("{path}/schedules"),
            "cron=30+4+*+*+1&branch=release&workflow=main&name=weekly",
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}");
        let schedules = s.schedules(Some(p.id)).await.unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = schedules.iter().map(|s| (s.name.as_str(), s.workflow.as_deref())).collect();
        assert_eq!(names, [("0 3 * * * main", None), ("weekly", Some("main"))], "{name}");
        assert!(schedules.iter().all(|s| s.next_tick_at > now_ms()), "{name}: next ticks in the future");
        let settings = page(&app, &admin, path).await;
        assert!(settings.contains("weekly") && settings.contains("30 4 * * 1"), "{name}: {settings}");
        for (form, needle) in [
            ("cron=61+3+*+*+*&branch=main", "field cron"),
            ("cron=0+3+*+*&branch=main", "field cron"),
            ("cron=0+3+*+*+*&branch=", "field branch"),
        ] {
            let (status, body) = post_form(&app, &admin, &csrf, &format!("{path}/schedules"), form).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {form}");
            assert!(body.contains(needle), "{name}: {form}: {body}");
        }
        let (status, _) =
            post_form(&app, &admin, &csrf, &format!("{path}/schedules"), "cron=0+5+*+*+*&branch=x&name=weekly").await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: a taken name");
        let (status, _) = post_form(&app, &admin, &csrf, &format!("{path}/schedules/delete"), "name=weekly").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}");
        let (status, _) = post_form(&app, &admin, &csrf, &format!("{path}/schedules/delete"), "name=weekly").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: deleted already");
        assert_eq!(s.schedules(Some(p.id)).await.unwrap_or_else(|e| panic!("{e}")).len(), 1, "{name}");

        // A viewer reads the same pages, has no forms, and every POST but sign-out is refused.
        let viewer = sign_in(&app, "victor", PASSWORD).await.unwrap_or_else(|| panic!("{name}: viewer sign-in"));
        let settings = page(&app, &viewer, path).await;
        let viewer_csrf = csrf_token(&settings);
        assert!(!settings.contains("settings/options") && !settings.contains("settings/env\""), "{name}: {settings}");
        let pipeline = page(&app, &viewer, "/projects/acme%2Fapp/pipelines/1").await;
        assert!(!pipeline.contains("/cancel"), "{name}: a viewer is offered a cancel button: {pipeline}");
        let writes = s.write_transactions();
        for (route, form) in [
            (format!("{path}/options"), "max_concurrent_jobs=1"),
            (format!("{path}/schedules"), "cron=0+1+*+*+*&branch=main"),
            (format!("{path}/schedules/delete"), "name=0+3+*+*+*+main"),
            (format!("{path}/env"), "name=X_VAR&value=some-value-1234"),
            (format!("{path}/env/delete"), "name=X_VAR"),
            ("/projects/acme%2Fapp/pipelines/1/workflows/1/cancel".to_string(), ""),
        ] {
            let (status, body) = post_form(&app, &viewer, &viewer_csrf, &route, form).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name}: a viewer's POST {route}");
            assert!(body.contains("victor is a viewer"), "{name}: {body}");
        }
        assert_eq!(s.write_transactions(), writes, "{name}: a viewer's POSTs wrote nothing");
        let (status, _) = post_form(&app, &viewer, &viewer_csrf, "/sign-out", "").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{name}: a viewer signs out");
    }
}

/// A bound against a hanging test (not a timing assertion): the live pipeline's next wake-up.
async fn next_change(stream: &mut futures_util::stream::BoxStream<'static, ()>) -> Option<()> {
    tokio::time::timeout(std::time::Duration::from_secs(120), stream.next())
        .await
        .unwrap_or_else(|_| panic!("the live pipeline was not woken"))
}

#[tokio::test]
async fn the_live_pipeline_page_is_woken_by_the_runner_api_and_ends_with_the_pipeline() {
    for db in testing::databases().await {
        let name = db.name;
        let (state, app, job, token) = running_build(&db).await;
        // An hour: every wake-up within the test came from a committed write, not from the fallback.
        let data =
            CoordinatorDashboard::new(state.clone()).with_pipeline_fallback(std::time::Duration::from_secs(3600));
        let mut changes = data.pipeline_changes("acme/app", 1).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(next_change(&mut changes).await.is_some(), "{name}: the first look comes at once");
        assert!(data.pipeline_changes("acme/app", 99).await.is_err(), "{name}: no pipeline 99");

        // The build job completes through the runner API: the page wakes; `test` is queued now.
        let waiting = tokio::spawn(async move {
            let change = next_change(&mut changes).await;
            (change, changes)
        });
        let now = u64::try_from(now_ms()).unwrap_or(0);
        let result = serde_json::json!({"job_id": job.id.to_string(), "status": "success", "exit_code": 0,
            "started_at": now, "finished_at": now, "steps": []});
        let request = Request::post(format!("/api/v1/jobs/{}/complete", job.id))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(result.to_string()))
            .unwrap_or_default();
        let (status, _, body) = send(&app, request).await;
        assert!(status.is_success(), "{name}: complete: {status} {body}");
        let (change, mut changes) = waiting.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(change.is_some(), "{name}: woken by the completion");

        // The rest of the pipeline runs; the stream reports the finished pipeline, then ends.
        let s = &state.store;
        let runner = job.runner_id.unwrap_or_else(|| panic!("{name}: a leased job has a runner"));
        let test = s
            .lease_job(runner, &["medium".to_string()], 60_000)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: test was not queued"));
        let result = JobResult {
            job_id: test.id.to_string(),
            status: JobOutcome::Failed,
            exit_code: Some(1),
            message: None,
            started_at: now,
            finished_at: now,
            steps: Vec::new(),
        };
        s.complete_job(test.id, runner, &result).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut seen = 0;
        while next_change(&mut changes).await.is_some() {
            seen += 1;
            assert!(seen < 10, "{name}: the stream did not end with the pipeline");
        }
        assert!(seen >= 1, "{name}: the finished pipeline was reported before the end");

        // Through the router: the finished pipeline's events are one update (the page's content, title and
        // favicon) and the end.
        let hash = web::hash_password(PASSWORD).unwrap_or_else(|e| panic!("{e}"));
        s.add_user("alice", &hash, true).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let cookie = sign_in(&app, "alice", PASSWORD).await.unwrap_or_else(|| panic!("{name}: sign-in failed"));
        let events = page(&app, &cookie, "/projects/acme%2Fapp/pipelines/1/events").await;
        assert!(events.starts_with("event: update\ndata: {"), "{name}: {events}");
        assert!(events.contains("failed"), "{name}: {events}");
        assert!(events.contains("\"favicon\":\"failed\"") && events.contains("● failed"), "{name}: {events}");
        assert!(events.trim_end().ends_with("event: end\ndata: done"), "{name}: {events}");
        // A finished pipeline's page does not listen.
        let pipeline = page(&app, &cookie, "/projects/acme%2Fapp/pipelines/1").await;
        assert!(!pipeline.contains("data-events"), "{name}: {pipeline}");
    }
}

/// Issue 8: one project's branch list (the loose index scan of `branches(Some(..))`) lists each branch once with
/// its newest pipeline, most recently active first — what the all-projects `GROUP BY` form says for that project.
#[tokio::test]
async fn a_projects_branches_are_each_listed_once_with_their_newest_pipeline() {
    for db in testing::databases().await {
        let name = db.name;
        let project = crate::pipeline::tests::local_project(&db, YAML).await;
        let data_dir = db.dir.path().join("data");
        for branch in ["main", "feature", "main", "main", "feature", "main"] {
            let req = crate::pipeline::TriggerRequest {
                source: "api".into(),
                branch: Some(branch.into()),
                ..Default::default()
            };
            crate::pipeline::create(&db.store, &data_dir, &project, &req).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let data = CoordinatorDashboard::new(AppState::new(db.store.clone(), data_dir, key));
        let listed = |branches: &[(String, crate::store::pipelines::PipelineRow)]| {
            branches.iter().map(|(b, row)| (b.clone(), row.number)).collect::<Vec<_>>()
        };
        let one = data.branches(Some(project.id)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let all = data.branches(None).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = vec![("main".to_string(), 6), ("feature".to_string(), 5)];
        assert_eq!(listed(&one[&project.id]), expected, "{name}");
        assert_eq!(listed(&all[&project.id]), expected, "{name}");
        let page = data.project("app").await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(page.branches, ["main", "feature"], "{name}");
        // A project without pipelines has no branches.
        let empty = db
            .store
            .add_project(&NewProject {
                slug: "empty".into(),
                clone_url: "https://github.com/acme/empty.git".into(),
                local_path: None,
                webhook_secret_enc: None,
                default_branch: "main".into(),
                fork_secrets: false,
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(data.branches(Some(empty.id)).await.unwrap_or_else(|e| panic!("{name}: {e}")).is_empty(), "{name}");
    }
}
