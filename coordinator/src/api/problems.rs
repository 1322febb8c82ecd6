//! Every error under `/api` and `/webhooks` is a JSON problem, including the answers axum makes by itself: an
//! unknown route (`404 not_found`, from the catch-all route [`unknown_route`]), a method a route does not take
//! (`405 method_not_allowed` with an `allow` list), and any other plain-text rejection (a path segment that is
//! not valid UTF-8, …), which [`as_problems`] rewrites into `{"error", "message"}` with the text as the message.
//! Handlers themselves answer with [`Problem`]; this module only catches what never reaches one.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Problem;

/// Largest plain-text error body carried over into a problem's message.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// The catch-all under `/api/`: a path no route has.
pub async fn unknown_route(method: Method, uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no API route {method} {}: the routes are listed in /api/v1/openapi.json", uri.path()))
}

/// Middleware: turns an error answer that is not JSON into a problem (keeping the status and headers).
pub async fn as_problems(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_TEXT_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = allowed_methods(&path);
        if !allowed.is_empty() && !parts.headers.contains_key(header::ALLOW) {
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                parts.headers.insert(header::ALLOW, v);
            }
        }
        format!("{path} does not take {method}: use {}", allowed.join(" or "))
    } else if text.is_empty() {
        format!("{method} {path}: {}", status.canonical_reason().unwrap_or("error").to_lowercase())
    } else {
        format!("{method} {path}: {text}")
    };
    let problem = Problem::new(status, code(status), message);
    let mut answer = problem.into_response();
    // Headers the original answer carried (`allow`, `retry-after`…) stay; its length and type are the problem's.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in parts.headers.iter() {
        answer.headers_mut().insert(name.clone(), value.clone());
    }
    answer
}

/// The methods the OpenAPI document gives `path` (axum's own 405 carries no `allow` header for merged routers).
fn allowed_methods(path: &str) -> Vec<String> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(super::openapi::document);
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut out: Vec<String> = Vec::new();
    for (template, item) in document["paths"].as_object().into_iter().flatten() {
        let parts: Vec<&str> = template.split('/').collect();
        // `{path}` as the last part of an artifact route takes the rest of the path (axum's `{*path}`).
        let rest = parts.last().is_some_and(|p| *p == "{path}");
        let fits = if rest { segments.len() >= parts.len() } else { segments.len() == parts.len() };
        let matches = fits && parts.iter().zip(&segments).all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s);
        if matches {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()) {
                if !out.contains(&method) {
                    out.push(method);
                }
            }
        }
    }
    out.sort();
    out
}

/// The problem code for a status axum answered by itself.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "bad_request",
        s if s.is_server_error() => "unavailable",
        _ => "error",
    }
}
