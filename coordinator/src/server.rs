//! `coordinator serve`: opens (and migrates) the store, starts the background tasks and serves the API until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::api::{self, AppState};
use crate::secrets::{SecretError, SecretKey};
use crate::store::Store;

/// The key file that encrypts secrets at rest (created with mode 0600 on first use).
pub fn secret_key_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("secret.key")
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub lease_ttl_ms: i64,
    pub max_artifact_bytes: u64,
    /// GitHub API base URL and token for commit statuses (none: no statuses).
    pub github: Option<(String, String)>,
    /// Or a GitHub App installation: API base URL and the App (commit statuses and git access with the
    /// installation's short-lived token).
    pub github_app: Option<(String, GitHubApp)>,
    /// The URL people and GitHub reach the coordinator at: commit statuses link to it and the dashboard's
    /// webhook set-up shows it (default: the listen address).
    pub public_url: Option<String>,
    /// Also run a local `runner agent` (`--with-runner`, see [`crate::local_runner`]).
    pub with_runner: Option<crate::local_runner::LocalRunnerOptions>,
}

/// A GitHub App installation the coordinator authenticates as (`serve --github-app-id …`).
#[derive(Debug, Clone)]
pub struct GitHubApp {
    pub app_id: u64,
    /// The App's private key file (PEM, PKCS#1 or PKCS#8 RSA), as GitHub hands it out.
    pub private_key: PathBuf,
    pub installation_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the GitHub App's private key {}: {source}", path.display())]
    AppKey { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("commit statuses: {0}")]
    Status(#[from] crate::github::status::StatusError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}: pick another address with --listen")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    LocalRunner(#[from] crate::local_runner::LocalRunnerError),
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    /// `secret.key.new` exists: values in the database may be sealed with it (`crate::key_rotation`).
    #[error("{0}")]
    RotationInterrupted(String),
}

/// The state a server with `options` runs on (store opened and migrated).
pub async fn state(options: &ServeOptions) -> Result<AppState, ServeError> {
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|source| ServeError::DataDir { path: options.data_dir.clone(), source })?;
    if let Some(message) = crate::key_rotation::interrupted(&secret_key_path(&options.data_dir)) {
        return Err(ServeError::RotationInterrupted(message));
    }
    let store = Store::open(&options.database_url).await?;
    let key = SecretKey::load_or_create(&secret_key_path(&options.data_dir))?;
    let mut state = AppState::new(store, options.data_dir.clone(), key);
    state.lease_ttl_ms = options.lease_ttl_ms;
    state.max_artifact_bytes = options.max_artifact_bytes;
    Ok(state)
}

/// Serves until a shutdown signal.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    // Read before anything starts: a wrong path is an error of the command line, not of a running server.
    let app_key = match &options.github_app {
        Some((_, app)) => Some(
            std::fs::read(&app.private_key)
                .map_err(|source| ServeError::AppKey { path: app.private_key.clone(), source })?,
        ),
        None => None,
    };
    let mut state = state(&options).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: options.listen, source })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(listen = %local, data_dir = %options.data_dir.display(), "coordinator serving");
    // Scripts and tests read this line to learn the port when `--listen` asked for port 0.
    println!("listening on http://{local}");
    if let Some((api, token)) = &options.github {
        let client = crate::github::status::StatusClient::new(api, token)?;
        state.git_access = Some(crate::github::access::GitAccess::Token(token.as_str().into()));
        let public_url = options.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
        state.statuses = Some(std::sync::Arc::new(crate::statuses::StatusReporter { client, public_url }));
    }
    if let (Some((api, app)), Some(key)) = (&options.github_app, &app_key) {
        let client = || crate::github::status::StatusClient::new_app(api, app.app_id, key, app.installation_id);
        state.git_access = Some(crate::github::access::GitAccess::App(std::sync::Arc::new(client()?)));
        let public_url = options.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
        state.statuses = Some(std::sync::Arc::new(crate::statuses::StatusReporter { client: client()?, public_url }));
    }
    let background = [
        tokio::spawn(crate::scheduler::expire_leases_forever(state.clone())),
        tokio::spawn(crate::scheduler::fire_schedules_forever(state.clone())),
        tokio::spawn(api::webhooks::process_deliveries_forever(state.clone())),
        tokio::spawn(crate::statuses::drain_forever(state.clone())),
    ];
    let runner = match &options.with_runner {
        Some(runner) => Some(crate::local_runner::start(&state.store, &format!("http://{local}"), runner).await?),
        None => None,
    };
    let web_config = web::WebConfig { public_url: options.public_url.clone(), ..web::WebConfig::default() };
    let app = app(state.clone(), web_config);
    let stopped = async move {
        shutdown().await;
        // The local runner finishes its jobs against a server that still answers, then the server stops.
        if let Some(child) = runner {
            crate::local_runner::stop(child).await;
        }
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(stopped).await.map_err(ServeError::Serve);
    // The background tasks loop forever; closing the pool under them made their next query fail ("attempted to
    // acquire a connection on a closed pool", logged as an error at every shutdown). Stop them first: each
    // works in transactions, so one stopped mid-way rolls back and the next start redoes it.
    for task in &background {
        task.abort();
    }
    for task in background {
        let _ = task.await;
    }
    state.store.close().await;
    served?;
    Ok(())
}

/// Everything `serve` answers: the API and webhooks (`/api`, `/webhooks`) and the dashboard (every other path).
pub fn app(state: AppState, web_config: web::WebConfig) -> axum::Router {
    let dashboard = crate::dashboard::CoordinatorDashboard::new(state.clone());
    api::router(state).merge(web::router_with(dashboard, web_config))
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
