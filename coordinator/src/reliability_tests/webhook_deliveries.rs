//! 1,000 signed push deliveries posted over HTTP by 8 concurrent clients, 100 of them redeliveries (the same
//! `X-GitHub-Delivery` sent again, possibly while the first copy is still being stored) → 900 answers `202`,
//! 100 answers `200`, and exactly 900 pipelines once the background processor has caught up: none lost, none
//! doubled, on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use crate::api::AppState;
use crate::github::webhook::sign;
use crate::store::projects::NewProject;
use crate::store::testing;

const UNIQUE: usize = 900;
const REDELIVERED: usize = 100;
const CLIENTS: usize = 8;
const SECRET: &str = "It's a Secret to Everybody";
const CONFIG: &str =
    "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  \
                      main:\n    jobs: [build]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_deliveries_with_a_hundred_redeliveries_make_exactly_900_pipelines() {
    for db in testing::databases().await {
        let name = db.name;
        let repo_dir = db.dir.path().join("repo");
        let sha = super::repository(&repo_dir, CONFIG);
        let key = crate::secrets::SecretKey::load_or_create(&db.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let project = db
            .store
            .add_project(&NewProject {
                slug: "octocat/Hello-World".into(),
                clone_url: repo_dir.display().to_string(),
                local_path: Some(repo_dir.display().to_string()),
                webhook_secret_enc: Some(key.encrypt(SECRET)),
                default_branch: "main".into(),
                fork_secrets: false,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let state = AppState::new(db.store.clone(), db.dir.path().join("data"), key);
        let addr = super::serve(&state).await;

        let fixture = include_str!("../../tests/fixtures/github/push-branch.json");
        let mut payload: serde_json::Value = serde_json::from_str(fixture).unwrap_or_else(|e| panic!("{e}"));
        payload["ref"] = "refs/heads/main".into();
        payload["after"] = sha.clone().into();
        let body = payload.to_string().into_bytes();
        let signature = sign(SECRET.as_bytes(), &body);

        // Delivery i < 100 is sent twice; the copies land on different clients, so they can race each other.
        let mut ids: Vec<String> = (0..UNIQUE).map(|i| format!("delivery-{name}-{i:04}")).collect();
        ids.extend((0..REDELIVERED).map(|i| format!("delivery-{name}-{i:04}")));
        let url = format!("http://{addr}/webhooks/github");
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let mine: Vec<String> = ids.iter().skip(c).step_by(CLIENTS).cloned().collect();
                let (url, body, signature) = (url.clone(), body.clone(), signature.clone());
                tokio::task::spawn_blocking(move || {
                    let agent = super::http_agent();
                    mine.iter()
                        .map(|id| {
                            let response = agent
                                .post(&url)
                                .header("x-github-event", "push")
                                .header("x-github-delivery", id)
                                .header("x-hub-signature-256", &signature)
                                .header("content-type", "application/json")
                                .send(&body[..])
                                .unwrap_or_else(|e| panic!("POST {url} ({id}): {e}"));
                            (id.clone(), response.status().as_u16())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut answers = Vec::new();
        for client in clients {
            answers.extend(client.await.unwrap_or_else(|e| panic!("client task: {e}")));
        }
        let accepted = answers.iter().filter(|(_, s)| *s == 202).count();
        let duplicates = answers.iter().filter(|(_, s)| *s == 200).count();
        assert_eq!((accepted, duplicates, answers.len()), (UNIQUE, REDELIVERED, UNIQUE + REDELIVERED), "{name}");

        // The processor works while the clients post; wait until it has caught up (a guard against a hang, not a
        // timing assertion: the deadline is far beyond any plausible duration).
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let left = db.store.unprocessed_deliveries(1).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: deliveries still unprocessed after 10 minutes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let count = |sql: &'static str| {
            let pool = db.store.pool().clone();
            async move {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                n
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM webhook_deliveries").await, UNIQUE as i64, "{name}");
        assert_eq!(count("SELECT COUNT(*) FROM pipelines").await, UNIQUE as i64, "{name}: pipelines");
        assert_eq!(
            count("SELECT COUNT(DISTINCT pipeline_id) FROM webhook_deliveries WHERE outcome = 'pipeline'").await,
            UNIQUE as i64,
            "{name}: every delivery names its own pipeline"
        );
        assert_eq!(count("SELECT COUNT(*) FROM jobs").await, UNIQUE as i64, "{name}: one build job each");
        let pipelines = db.store.pipelines(project.id, 2 * UNIQUE as i64).await.unwrap_or_else(|e| panic!("{e}"));
        let mut numbers: Vec<i64> = pipelines.iter().map(|p| p.number).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=UNIQUE as i64).collect::<Vec<_>>(), "{name}: pipeline numbers 1..=900, no gap");
        assert!(pipelines.iter().all(|p| p.trigger.sha == sha), "{name}");
    }
}
