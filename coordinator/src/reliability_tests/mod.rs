//! Reliability tests of issue 8 that run the coordinator's real HTTP stack (a TCP listener, axum, the background
//! delivery processor) on both database backends: [`webhook_deliveries`] (1,000 concurrent deliveries with 100
//! redeliveries → exactly 900 pipelines) and [`full_disk`] (logs and artifacts pushed past a full tmpfs → clear
//! `507` answers, nothing corrupt). Shared set-up lives here.

mod full_disk;
mod webhook_deliveries;

use std::net::SocketAddr;
use std::path::Path;

use crate::api::AppState;

/// A local repository with one commit holding `config` as `.circleci/config.yml` on `main`; returns its SHA.
pub(crate) fn repository(dir: &Path, config: &str) -> String {
    let repo = git2::Repository::init(dir).unwrap_or_else(|e| panic!("git init {}: {e}", dir.display()));
    std::fs::create_dir_all(dir.join(".circleci")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(".circleci/config.yml"), config).unwrap_or_else(|e| panic!("{e}"));
    let mut index = repo.index().unwrap_or_else(|e| panic!("{e}"));
    index.add_path(Path::new(".circleci/config.yml")).unwrap_or_else(|e| panic!("{e}"));
    index.write().unwrap_or_else(|e| panic!("{e}"));
    let tree_id = index.write_tree().unwrap_or_else(|e| panic!("{e}"));
    let tree = repo.find_tree(tree_id).unwrap_or_else(|e| panic!("{e}"));
    let sig = git2::Signature::now("Ada", "ada@example.invalid").unwrap_or_else(|e| panic!("{e}"));
    repo.commit(Some("refs/heads/main"), &sig, &sig, "add config", &tree, &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string()
}

/// Serves `state`'s API on a free loopback port (as `coordinator serve` does, without the dashboard) and runs the
/// background delivery processor; both stop when the test's runtime ends.
pub(crate) async fn serve(state: &AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("local addr: {e}"));
    let app = crate::api::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::spawn(crate::api::webhooks::process_deliveries_forever(state.clone()));
    addr
}

/// A blocking HTTP client that reports every status instead of failing on 4xx/5xx.
pub(crate) fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().new_agent()
}
