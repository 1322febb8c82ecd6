//! A stalled git server (issue 8): a TCP server that accepts connections and never answers must not hang
//! pipeline creation. libgit2's server timeouts are process-wide globals that may only be set while no other
//! thread uses git2, so this is its own test binary holding a single test, which sets them before anything else
//! runs (as `coordinator`'s `main` does). SQLite only: the timeout is the mirror's, not the database's; the
//! webhook batch's bookkeeping is tested on both backends in the library's tests.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use coordinator::api::{self, AppState};
use coordinator::repo::{self, FetchTimeouts, Mirror, RepoError};
use coordinator::secrets::SecretKey;
use coordinator::store::projects::NewProject;
use coordinator::store::{sqlite_url, Store};
use tower::ServiceExt;

/// Accepts every connection and keeps it open, reading what comes and answering nothing, until the process ends.
fn stalled_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A local repository with one commit holding a one-job configuration; returns its SHA.
fn repository(dir: &std::path::Path) -> String {
    let repo = git2::Repository::init(dir).unwrap_or_else(|e| panic!("{e}"));
    let config = "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\n\
                  workflows:\n  main:\n    jobs: [build]\n";
    let blob = repo.blob(config.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut circleci = repo.treebuilder(None).unwrap_or_else(|e| panic!("{e}"));
    circleci.insert("config.yml", blob, 0o100644).unwrap_or_else(|e| panic!("{e}"));
    let circleci = circleci.write().unwrap_or_else(|e| panic!("{e}"));
    let mut root = repo.treebuilder(None).unwrap_or_else(|e| panic!("{e}"));
    root.insert(".circleci", circleci, 0o040000).unwrap_or_else(|e| panic!("{e}"));
    let tree = repo.find_tree(root.write().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
    let sig = git2::Signature::now("Ada", "ada@example.invalid").unwrap_or_else(|e| panic!("{e}"));
    let oid = repo.commit(Some("refs/heads/main"), &sig, &sig, "config", &tree, &[]).unwrap_or_else(|e| panic!("{e}"));
    oid.to_string()
}

fn push(full_name: &str, sha: &str) -> Vec<u8> {
    let fixture = include_str!("fixtures/github/push-branch.json");
    let mut payload: serde_json::Value = serde_json::from_str(fixture).unwrap_or_else(|e| panic!("{e}"));
    payload["ref"] = "refs/heads/main".into();
    payload["after"] = sha.into();
    payload["repository"]["full_name"] = full_name.into();
    payload.to_string().into_bytes()
}

#[test]
fn a_stalled_git_server_fails_the_fetch_within_the_timeout() {
    let timeouts = FetchTimeouts { connect: Duration::from_secs(2), read: Duration::from_millis(800) };
    // SAFETY: the first thing this binary's only test does; no other thread has used git2 yet.
    unsafe { repo::set_fetch_timeouts(timeouts) }.unwrap_or_else(|e| panic!("{e}"));
    let port = stalled_server();
    let url = format!("https://127.0.0.1:{port}/octocat/Hello-World.git");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    // The mirror itself: a clear error after about the read timeout, not a hang.
    let mirror = Mirror::open(&dir.path().join("direct"), "p", &url).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let err = mirror.fetch().expect_err("a server that never answers cannot be fetched from");
    let took = started.elapsed();
    assert!(matches!(err, RepoError::FetchTimedOut { .. }), "{err}");
    assert!(err.is_fetch_failure());
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("timed out") && text.contains("read timeout 800 ms"), "{text}");
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(10), "took {took:?}");

    // Through a webhook batch: the stalled project's delivery is recorded with an error naming the project and
    // the URL; another project's delivery in the same batch still gets its pipeline.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&sqlite_url(&data_dir)).await.unwrap_or_else(|e| panic!("{e}"));
        let key = SecretKey::load_or_create(&data_dir.join("secret.key")).unwrap_or_else(|e| panic!("{e}"));
        let local = dir.path().join("local");
        let sha = repository(&local);
        let mut ids = Vec::new();
        for (slug, clone_url) in
            [("octocat/Hello-World", url.clone()), ("octocat/Spoon-Knife", local.display().to_string())]
        {
            let project = store
                .add_project(&NewProject {
                    slug: slug.into(),
                    clone_url,
                    local_path: None,
                    webhook_secret_enc: Some(key.encrypt("secret")),
                    default_branch: "main".into(),
                    fork_secrets: false,
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            ids.push(project.id);
        }
        let state = AppState::new(store.clone(), data_dir, key);
        let app = api::router(state.clone());
        for (delivery, slug) in [("stalled-1", "octocat/Hello-World"), ("fine-1", "octocat/Spoon-Knife")] {
            let body = push(slug, &sha);
            let req = Request::builder()
                .method("POST")
                .uri("/webhooks/github")
                .header("x-github-event", "push")
                .header("x-github-delivery", delivery)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", coordinator::github::webhook::sign(b"secret", &body))
                .body(Body::from(body))
                .unwrap_or_else(|e| panic!("{e}"));
            let status = app.clone().oneshot(req).await.unwrap_or_else(|e| panic!("{e}")).status();
            assert_eq!(status.as_u16(), 202, "{delivery}");
        }

        let started = Instant::now();
        let processed = api::webhooks::process_batch(&state, Duration::from_secs(600)).await;
        assert_eq!(processed.ok(), Some(2), "both deliveries processed in one batch");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

        let outcome: (String, Option<i64>) =
            sqlx::query_as("SELECT outcome, pipeline_id FROM webhook_deliveries WHERE delivery_id = 'stalled-1'")
                .fetch_one(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.1.is_none(), "no pipeline for the stalled project");
        let text = outcome.0;
        assert!(
            text.starts_with("error: ")
                && text.contains("octocat/Hello-World")
                && text.contains(&url)
                && text.contains("timed out"),
            "{text}"
        );
        let stalled = store.pipelines(ids[0], 10).await.unwrap_or_else(|e| panic!("{e}"));
        let fine = store.pipelines(ids[1], 10).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((stalled.len(), fine.len()), (0, 1), "nothing lost: the other project's pipeline was created");
        // The project's dashboard page shows the failure (`Project::fetch_error`).
        let project = store.project(ids[0]).await.unwrap_or_else(|e| panic!("{e}"));
        let recorded = project.fetch_error.map(|e| e.message).unwrap_or_default();
        assert!(recorded.contains("timed out") && recorded.contains(&url), "{recorded}");
    });
}
