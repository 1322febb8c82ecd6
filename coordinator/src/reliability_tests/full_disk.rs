//! A full disk under the coordinator's data directory (a 2 MiB tmpfs holding the artifacts and, on SQLite, the
//! database): a runner pushing a job's log and an artifact past it gets `507 insufficient_storage` naming the
//! disk, the upload leaves no partial file, every log chunk accepted before still reads back, the coordinator
//! keeps answering, and once space is freed the job completes; SQLite's integrity check passes afterwards.
//! On PostgreSQL the database lives elsewhere, so only the artifact meets the full disk.
//!
//! Needs root (to mount the tmpfs): without it the test says so and passes, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;

use crate::api::AppState;
use crate::store::pipelines::PipelineTrigger;
use crate::store::projects::NewProject;
use crate::store::runners::TokenKind;
use crate::store::{testing, Store};

const CONFIG: &str =
    "version: 2.1\njobs:\n  build: {docker: [{image: busybox}], steps: [{run: 'true'}]}\nworkflows:\n  main:\n    jobs: \
     [build]\n";
/// Bytes of log per chunk (the protocol allows 64 KiB).
const CHUNK_BYTES: usize = 32 * 1024;

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new().prefix("drydock-full-disk-").tempdir().map_err(|e| format!("{e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).output();
    }
}

/// Sends one request; returns status and JSON body (`null` when empty).
fn call(agent: &ureq::Agent, method: &str, url: &str, token: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let sent = match method {
        "GET" => agent.get(url).header("authorization", &auth).call(),
        "PUT" => agent.put(url).header("authorization", &auth).send(&body[..]),
        _ => agent.post(url).header("authorization", &auth).header("content-type", "application/json").send(&body[..]),
    };
    let mut response = sent.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| panic!("client task: {e}"))
}

/// Files under `dir` whose name starts with `prefix`, recursively.
fn leftovers(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(leftovers(&path, prefix));
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_keeps_earlier_logs_and_lets_the_job_complete() {
    let backends = testing::databases().await;
    for db in backends {
        let tmpfs = match Tmpfs::mount("2m") {
            Ok(t) => t,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true and a tmpfs cannot be mounted ({e}): run the tests as root")
            }
            Err(e) => {
                eprintln!("cannot mount a tmpfs ({e}): the full-disk test did not run (it needs root)");
                return;
            }
        };
        let data_dir = tmpfs.path().to_path_buf();
        // SQLite: the database file on the small disk too; PostgreSQL: the test's own database.
        let (name, store) = match db.name {
            "sqlite" => {
                let store = Store::open(&crate::store::sqlite_url(&data_dir)).await.unwrap_or_else(|e| panic!("{e}"));
                ("sqlite", store)
            }
            other => (other, db.store.clone()),
        };
        run_on(name, store, &data_dir).await;
    }
}

async fn run_on(name: &'static str, store: Store, data_dir: &Path) {
    let key = crate::secrets::SecretKey::load_or_create(&data_dir.join("secret.key")).unwrap_or_else(|e| panic!("{e}"));
    let project = store
        .add_project(&NewProject {
            slug: "acme/app".into(),
            clone_url: "https://example.invalid/acme/app.git".into(),
            local_path: None,
            webhook_secret_enc: None,
            default_branch: "main".into(),
            fork_secrets: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let trigger = PipelineTrigger {
        source: "api".into(),
        branch: Some("main".into()),
        sha: "0123abc".into(),
        ..Default::default()
    };
    store
        .create_pipeline(project.id, &trigger, &crate::store::jobs::tests::planned(CONFIG, "main"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let registration = store.create_token(TokenKind::RunnerRegistration).await.unwrap_or_else(|e| panic!("{e}"));
    let mut state = AppState::new(store.clone(), data_dir.to_path_buf(), key);
    state.max_artifact_bytes = 64 * 1024 * 1024;
    let base = format!("http://{}", super::serve(&state).await);

    // Register and lease the job, then leave ballast: freeing it later is the operator making room.
    let agent = super::http_agent();
    let (token, job) = {
        let (agent, base) = (agent.clone(), base.clone());
        blocking(move || {
            let body = serde_json::json!({"registration_token": registration, "name": "r1"}).to_string();
            let (status, reg) = call(&agent, "POST", &format!("{base}/api/v1/runners/register"), "", body.into_bytes());
            assert_eq!(status, 201, "{name}: {reg}");
            let token = reg["token"].as_str().unwrap_or_default().to_string();
            let (status, lease) =
                call(&agent, "POST", &format!("{base}/api/v1/runners/lease"), &token, br#"{"wait_ms":0}"#.to_vec());
            assert_eq!(status, 200, "{name}: {lease}");
            (token, lease["job"]["id"].as_str().unwrap_or_default().to_string())
        })
        .await
    };
    let ballast = data_dir.join("ballast");
    std::fs::write(&ballast, vec![0u8; 384 * 1024]).unwrap_or_else(|e| panic!("{e}"));

    // Log chunks until the disk is full (SQLite), or a few (PostgreSQL: its disk is not this one).
    let chunks = if name == "sqlite" { 200 } else { 8 };
    let (accepted_bytes, refusal) = {
        let (agent, base, token, job) = (agent.clone(), base.clone(), token.clone(), job.clone());
        blocking(move || {
            let url = format!("{base}/api/v1/jobs/{job}/events");
            let mut offset = 0usize;
            for i in 0..chunks {
                let data: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), CHUNK_BYTES).collect();
                let events = serde_json::json!([
                    {"type": "step_started", "job_id": job, "step": 0, "name": "fill", "at": 1},
                    {"type": "log", "job_id": job, "step": 0, "stream": "stdout", "offset": offset, "data": data},
                ]);
                let (status, body) = call(&agent, "POST", &url, &token, events.to_string().into_bytes());
                if status != 200 {
                    return (offset, Some((status, body)));
                }
                offset += CHUNK_BYTES;
            }
            (offset, None)
        })
        .await
    };
    match (name, &refusal) {
        ("sqlite", Some((status, body))) => {
            assert_eq!(*status, StatusCode::INSUFFICIENT_STORAGE.as_u16(), "{name}: {body}");
            assert_eq!(body["error"].as_str(), Some("insufficient_storage"), "{name}: {body}");
            assert!(body["message"].as_str().unwrap_or_default().contains("disk is full"), "{name}: {body}");
        }
        ("sqlite", None) => panic!("{name}: {accepted_bytes} bytes of log fit on a 2 MiB disk"),
        (_, Some((status, body))) => panic!("{name}: a log chunk was refused: {status} {body}"),
        (_, None) => {}
    }
    assert!(accepted_bytes > 0, "{name}: not even one chunk was stored");

    // An artifact larger than the disk: 507 naming the data directory, and no partial upload left behind.
    let (status, body) = {
        let (agent, base, token, job) = (agent.clone(), base.clone(), token.clone(), job.clone());
        blocking(move || {
            let url = format!("{base}/api/v1/jobs/{job}/artifacts/big.bin");
            call(&agent, "PUT", &url, &token, vec![b'z'; 3 * 1024 * 1024])
        })
        .await
    };
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE.as_u16(), "{name}: {body}");
    assert_eq!(body["error"].as_str(), Some("insufficient_storage"), "{name}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(&data_dir.display().to_string()), "{name}: the message names the disk: {body}");
    assert_eq!(leftovers(&data_dir.join("artifacts"), ".upload-"), Vec::<PathBuf>::new(), "{name}");

    // Every chunk accepted before the disk filled reads back, byte for byte.
    let job_id: i64 = job.parse().unwrap_or_else(|e| panic!("job id {job}: {e}"));
    let log: String =
        store.job_log(job_id, 1).await.unwrap_or_else(|e| panic!("{e}")).iter().map(|c| c.data.clone()).collect();
    assert_eq!(log.len(), accepted_bytes, "{name}");
    for (i, chunk) in log.as_bytes().chunks(CHUNK_BYTES).enumerate() {
        assert!(chunk.iter().all(|b| *b == b'a' + (i % 26) as u8), "{name}: chunk {i} reads back changed");
    }

    // The coordinator still answers while the disk is full (reads need no space)…
    {
        let (agent, base, token, job) = (agent.clone(), base.clone(), token.clone(), job.clone());
        blocking(move || {
            let (status, body) = call(&agent, "GET", &format!("{base}/api/v1/jobs/{job}/workspace"), &token, vec![]);
            assert_eq!(status, 200, "{name}: {body}");
        })
        .await;
    }
    // …and with room again, the job completes and nothing else is queued.
    std::fs::remove_file(&ballast).unwrap_or_else(|e| panic!("{e}"));
    {
        let (agent, base, token, job) = (agent.clone(), base.clone(), token.clone(), job.clone());
        blocking(move || {
            let (status, body) = call(&agent, "POST", &format!("{base}/api/v1/jobs/{job}/heartbeat"), &token, vec![]);
            assert_eq!(status, 200, "{name}: {body}");
            let result = serde_json::json!({"job_id": job, "status": "failed", "started_at": 1, "finished_at": 2});
            let url = format!("{base}/api/v1/jobs/{job}/complete");
            let (status, body) = call(&agent, "POST", &url, &token, result.to_string().into_bytes());
            assert_eq!(status, 200, "{name}: {body}");
            let (status, body) =
                call(&agent, "POST", &format!("{base}/api/v1/runners/lease"), &token, br#"{"wait_ms":0}"#.to_vec());
            assert_eq!(status, 204, "{name}: {body}");
        })
        .await;
    }
    assert_eq!(store.job(job_id).await.map(|j| j.state).ok().as_deref(), Some("failed"), "{name}");
    if name == "sqlite" {
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check, "ok", "{name}");
    }
    store.close().await;
}
