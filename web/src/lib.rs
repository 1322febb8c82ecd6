//! The dashboard (issue [8/9]): server-rendered pages over a data trait, mounted by the coordinator.
//!
//! The coordinator implements [`Dashboard`] and merges [`router`] (or [`router_with`]) into its axum app; this
//! crate never depends on it. Pages are tera templates (autoescaped) embedded in the binary with the static
//! assets; the little JavaScript there is (live logs over SSE, paging a log backwards, confirm buttons) is one
//! file under `/static`, so the Content-Security-Policy allows no inline script. docs/dashboard.md describes the
//! pages, the trait and the security decisions.
//!
//! Routes owned here: `/`, `/sign-in`, `/sign-out`, `/projects/…`, `/jobs/…`, `/runners`, `/static/…`; the
//! coordinator keeps `/api/…` and `/webhooks/…`.

pub mod ansi;
pub mod assets;
pub mod auth;
pub mod dag;
pub mod data;
pub mod error;
pub mod log_view;
pub mod model;
mod pages;
pub mod password;
pub mod security;
pub mod throttle;
pub mod view;

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

pub use data::{
    ArtifactDownload, Dashboard, DataError, DataResult, LogChunk, LogSlice, NewSession, RerunScope, Session,
    UserCredentials,
};
pub use password::{hash_password, verify_password, PasswordError};

/// How the dashboard is deployed.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// The URL people and GitHub reach the coordinator at (`https://ci.example.com`), for the webhook set-up
    /// instructions; without it they use the request's `Host`.
    pub public_url: Option<String>,
    /// Mark cookies `Secure` on every response, not only on requests that came over HTTPS
    /// (`X-Forwarded-Proto: https`). Set it when TLS ends at a proxy that does not send that header.
    pub always_secure_cookies: bool,
}

/// What every handler gets: the data, the configuration and the sign-in throttle.
#[derive(Debug, Clone)]
pub struct AppState<S> {
    pub data: S,
    pub config: Arc<WebConfig>,
    pub throttle: Arc<throttle::SignInThrottle>,
}

/// The dashboard's routes with the default [`WebConfig`].
pub fn router<S: Dashboard>(state: S) -> Router {
    router_with(state, WebConfig::default())
}

/// The dashboard's routes.
pub fn router_with<S: Dashboard>(data: S, config: WebConfig) -> Router {
    let state = AppState { data, config: Arc::new(config), throttle: Arc::default() };
    let signed_in = Router::new()
        .route("/", get(pages::projects::page::<S>))
        .route("/sign-out", post(pages::sign_in::sign_out::<S>))
        .route("/projects/{slug}", get(pages::project::page::<S>))
        .route("/projects/{slug}/pipelines/{number}", get(pages::pipeline::page::<S>))
        .route("/projects/{slug}/pipelines/{number}/events", get(pages::pipeline::events::<S>))
        .route(
            "/projects/{slug}/pipelines/{number}/workflows/{workflow_id}/{action}",
            post(pages::pipeline::workflow_action::<S>),
        )
        .route("/projects/{slug}/pipelines/{number}/jobs/{job_id}/approve", post(pages::pipeline::approve::<S>))
        .route("/projects/{slug}/settings", get(pages::settings::page::<S>))
        .route("/projects/{slug}/settings/env", post(pages::settings::set_env::<S>))
        .route("/projects/{slug}/settings/env/delete", post(pages::settings::delete_env::<S>))
        .route("/projects/{slug}/settings/options", post(pages::settings::set_options::<S>))
        .route("/projects/{slug}/settings/schedules", post(pages::settings::add_schedule::<S>))
        .route("/projects/{slug}/settings/schedules/delete", post(pages::settings::delete_schedule::<S>))
        .route("/jobs/{job_id}", get(pages::job::page::<S>))
        .route("/jobs/{job_id}/steps/{step}/log", get(pages::job::log::<S>))
        .route("/jobs/{job_id}/steps/{step}/log/stream", get(pages::job::log_stream::<S>))
        .route("/jobs/{job_id}/artifacts/{*path}", get(pages::job::artifact::<S>))
        .route("/runners", get(pages::runners::page::<S>))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_session::<S>));
    Router::new()
        .route("/sign-in", get(pages::sign_in::form::<S>).post(pages::sign_in::submit::<S>))
        .route("/static/{name}", get(assets::serve))
        .merge(signed_in)
        .layer(middleware::from_fn(security::headers))
        .with_state(state)
}
