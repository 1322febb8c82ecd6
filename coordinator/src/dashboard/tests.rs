//! The dashboard over the real store on both backends: a pipeline stored and run as the runner API does it,
//! then signing in through the real router (`server::app`) and reading the pages.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use config_schema::wire::{JobOutcome, JobResult, StepStatus};
use tower::ServiceExt;
use web::model::{EnvVarName, User};
use web::Dashboard;

use super::CoordinatorDashboard;
use crate::api::AppState;
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
            slug: "app".into(),
            clone_url: "https://github.com/acme/app.git".into(),
            local_path: None,
            webhook_secret_enc: Some(state.secret_key.encrypt(HOOK_SECRET)),
            default_branch: "main".into(),
            fork_secrets: false,
        };
        let project = s.add_project(&project).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let admin = User { id: "0".into(), name: "test".into() };
        let var = EnvVarName::parse("DEPLOY_TOKEN").unwrap_or_else(|e| panic!("{e}"));
        data.set_env_var(&admin, "app", &var, SECRET).await.unwrap_or_else(|e| panic!("{name}: {e}"));
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

        let projects = page(&app, &cookie, "/").await;
        assert!(projects.contains("app") && projects.contains("main"), "{name}: {projects}");
        let project_page = page(&app, &cookie, "/projects/app").await;
        assert!(project_page.contains("/projects/app/pipelines/1"), "{name}: {project_page}");
        let pipeline = page(&app, &cookie, &format!("/projects/app/pipelines/{}", created.number)).await;
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
        let settings = page(&app, &cookie, "/projects/app/settings").await;
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
