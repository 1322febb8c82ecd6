//! Static assets embedded in the binary: the stylesheet, the one script (live logs, log paging, confirm
//! buttons) and the status favicons. Served from `/static/{name}`; no build step makes them.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const ASSETS: &[(&str, &str, &str)] = &[
    ("dashboard.css", "text/css; charset=utf-8", include_str!("../static/dashboard.css")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../static/dashboard.js")),
    ("favicon-idle.svg", "image/svg+xml", include_str!("../static/favicon-idle.svg")),
    ("favicon-running.svg", "image/svg+xml", include_str!("../static/favicon-running.svg")),
    ("favicon-success.svg", "image/svg+xml", include_str!("../static/favicon-success.svg")),
    ("favicon-failed.svg", "image/svg+xml", include_str!("../static/favicon-failed.svg")),
];

/// `GET /static/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=300")], *body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
