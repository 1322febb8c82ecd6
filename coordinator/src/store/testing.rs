//! Test databases: a fresh SQLite file in a temp dir, and a fresh database on a PostgreSQL cluster — the one
//! `script/test` started (`DRYDOCK_TEST_POSTGRES_URL`, a URL to its `postgres` database) or, when that is unset, a
//! throwaway cluster this test process starts in a temp dir as the `postgres` user on a free loopback port and
//! stops at exit. Without PostgreSQL a test runs on SQLite only and says so, except under `CI=true`, where it
//! fails: CI must never pass by skipping a backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sqlx::Connection;

use super::Store;

/// One backend's fresh, migrated store.
pub struct TestDb {
    pub name: &'static str,
    pub store: Store,
    /// The database's URL: a second [`Store::open`] of it is a restarted coordinator's.
    pub url: String,
    /// The store's data directory (and the SQLite file's home).
    #[allow(dead_code, reason = "keeps the directory alive; API tests use it as the data dir")]
    pub dir: tempfile::TempDir,
}

impl TestDb {
    /// The data directory's secret key, and the GitHub project `octocat/Hello-World` (default branch `main`)
    /// cloned from `clone_url` — from `local_path` when given — whose webhook secret is `webhook_secret`.
    pub async fn github_project(
        &self,
        clone_url: String,
        local_path: Option<String>,
        webhook_secret: &str,
    ) -> (crate::secrets::SecretKey, super::projects::Project) {
        let key = crate::secrets::SecretKey::load_or_create(&self.dir.path().join("secret.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let project = self
            .store
            .add_project(&super::projects::NewProject {
                slug: "octocat/Hello-World".into(),
                clone_url,
                local_path,
                webhook_secret_enc: Some(key.encrypt(webhook_secret)),
                default_branch: "main".into(),
                fork_secrets: false,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (key, project)
    }
}

/// A fresh store on each available backend: SQLite always, PostgreSQL when it can run (see the module doc).
pub async fn databases() -> Vec<TestDb> {
    let mut out = vec![sqlite().await];
    match postgres_server() {
        Some(server) => out.push(postgres(server).await),
        None => eprintln!("PostgreSQL is not available: this test ran on SQLite only"),
    }
    out
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let url = super::sqlite_url(dir.path());
    let store = Store::open(&url).await.unwrap_or_else(|e| panic!("sqlite store: {e}"));
    TestDb { name: "sqlite", store, url, dir }
}

async fn postgres(server: &str) -> TestDb {
    let name = format!("drydock_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::AnyConnection::connect(server).await.unwrap_or_else(|e| panic!("connect {server}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let _ = admin.close().await;
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(server);
    let url = format!("{base}/{name}");
    let store = Store::open(&url).await.unwrap_or_else(|e| panic!("postgres store: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    TestDb { name: "postgres", store, url, dir }
}

/// The URL of a PostgreSQL server's maintenance database, starting a cluster on first use.
pub fn postgres_server() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        sqlx::any::install_default_drivers();
        if let Some(url) = std::env::var("DRYDOCK_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) {
            return Some(url);
        }
        match start_cluster() {
            Ok(url) => Some(url),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true and PostgreSQL cannot run: {e}: install it (script/bootstrap) and run as root")
            }
            Err(e) => {
                eprintln!("cannot start PostgreSQL: {e}");
                None
            }
        }
    })
    .as_deref()
}

static CLUSTER_DIR: OnceLock<PathBuf> = OnceLock::new();

/// `initdb` + `pg_ctl start` in a temp dir as `postgres`; an `atexit` hook stops it and removes the dir.
fn start_cluster() -> Result<String, String> {
    let bin = postgres_bin_dir().ok_or("no /usr/lib/postgresql/*/bin/initdb")?;
    let dir = tempfile::Builder::new().prefix("drydock-pg-").tempdir().map_err(|e| format!("temp dir: {e}"))?.keep();
    run(Command::new("chown").args(["postgres:postgres"]).arg(&dir))?;
    let data = dir.join("data");
    run(as_postgres(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
        .arg(&data))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("free port: {e}"))?
        .port();
    let options =
        format!("-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200", dir.display());
    run(as_postgres(&bin.join("pg_ctl"))
        .args(["-w", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-o", &options, "start"]))?;
    let _ = CLUSTER_DIR.set(dir);
    // SAFETY: registering a plain `extern "C" fn` without captured state.
    unsafe { libc::atexit(stop_cluster) };
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

extern "C" fn stop_cluster() {
    if let (Some(dir), Some(bin)) = (CLUSTER_DIR.get(), postgres_bin_dir()) {
        let _ =
            as_postgres(&bin.join("pg_ctl")).args(["-m", "immediate", "-D"]).arg(dir.join("data")).arg("stop").output();
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program).current_dir("/");
    c
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
