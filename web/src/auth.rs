//! Sessions and CSRF: who is signed in, and that a POST came from one of our own forms.
//!
//! - A session is a random 32-byte token in the `drydock_session` cookie (HttpOnly, SameSite=Strict, Path=/,
//!   Secure when the request came over HTTPS); the store keeps only its SHA-256, through the data trait.
//! - Each session has its own random CSRF token. [`require_session`] guards every route but sign-in and the
//!   static files: a GET without a session is sent to sign-in, and every other method needs the session's token
//!   in the form field `_csrf` (compared in constant time) or is refused with 403 before any handler runs.
//! - Roles: a [`crate::model::Role::Viewer`] reads every page, and every POST but sign-out answers 403 (before
//!   the body is read); the pages leave out the buttons and forms a viewer cannot use.
//! - The sign-in form itself has no session yet: it uses a double-submit token (a `drydock_signin` cookie that
//!   the form must echo), which stops other sites from signing a browser in to an account of theirs.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::data::Dashboard;
use crate::error::WebError;
use crate::model::User;
use crate::AppState;

pub const SESSION_COOKIE: &str = "drydock_session";
pub const SIGN_IN_COOKIE: &str = "drydock_signin";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
/// How long a session lasts.
pub const SESSION_TTL_MS: u64 = 14 * 24 * 3600 * 1000;
/// POST bodies the dashboard reads (forms only): larger ones are refused with 413.
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// The signed-in user, put in the request's extensions by [`require_session`] for the handlers.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub csrf: String,
    pub token_hash: String,
}

/// 32 random bytes from the OS, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of a session token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the browser talks to us over HTTPS: configured so, or said by the proxy in front
/// (`X-Forwarded-Proto: https`).
pub fn is_https(headers: &HeaderMap, always: bool) -> bool {
    always
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when `secure`; `max_age_s` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    // Names are constants and values hex tokens: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session of this request, if its cookie names a live one.
pub async fn current_session<S: Dashboard>(
    state: &AppState<S>,
    headers: &HeaderMap,
) -> Result<Option<Authenticated>, WebError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hash = token_hash(token);
    let Some(session) = state.data.session(&hash).await? else { return Ok(None) };
    if session.expires_at <= state.data.now() {
        return Ok(None);
    }
    Ok(Some(Authenticated { user: session.user, csrf: session.csrf_token, token_hash: hash }))
}

/// Middleware for every route behind sign-in (see the module doc).
pub async fn require_session<S: Dashboard>(State(state): State<AppState<S>>, request: Request, next: Next) -> Response {
    let session = match current_session(&state, request.headers()).await {
        Ok(session) => session,
        Err(e) => return e.into_response(),
    };
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let Some(session) = session else {
        if is_read {
            let next = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            return Redirect::to(&format!("/sign-in?{query}")).into_response();
        }
        return (StatusCode::FORBIDDEN, "sign in first").into_response();
    };
    let mut request = request;
    // Viewers look; every change but signing out is refused before the body is read.
    if !is_read && !session.user.role.can_change() && request.uri().path() != "/sign-out" {
        tracing::info!(user = %session.user.name, path = %request.uri().path(), "a viewer's POST refused");
        return WebError::Forbidden { user: session.user.name.clone() }.into_response();
    }
    if !is_read {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => bytes,
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response(),
        };
        if !form_has_token(&bytes, &session.csrf) {
            tracing::warn!(user = %session.user.name, path = %parts.uri.path(), "POST without the session's CSRF token refused");
            return WebError::Csrf.into_response();
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// Whether the urlencoded form `body` carries `expected` in its `_csrf` field.
pub fn form_has_token(body: &[u8], expected: &str) -> bool {
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else { return false };
    let mut given = fields.iter().filter(|(k, _)| k == CSRF_FIELD);
    match (given.next(), given.next()) {
        (Some((_, token)), None) => tokens_match(token, expected),
        _ => false,
    }
}

/// Where to go after signing in: a path on this site only (`/…`, not `//host` nor `/\host`), else `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.contains(['\r', '\n']) => {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; drydock_session=abc; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn set_cookie_is_strict_and_secure_on_https() {
        let plain = set_cookie(SESSION_COOKIE, "t", 60, false);
        assert_eq!(plain, "drydock_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
        assert!(set_cookie(SESSION_COOKIE, "t", 60, true).to_str().unwrap().ends_with("; Secure"));
        let mut headers = HeaderMap::new();
        assert!(!is_https(&headers, false));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        assert!(is_https(&headers, false));
    }

    #[test]
    fn csrf_tokens_must_match_exactly_once() {
        assert!(form_has_token(b"a=1&_csrf=tok", "tok"));
        assert!(!form_has_token(b"a=1&_csrf=tox", "tok"));
        assert!(!form_has_token(b"a=1", "tok"));
        assert!(!form_has_token(b"_csrf=tok&_csrf=tok", "tok"));
        assert!(!form_has_token(b"_csrf=", ""));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/projects/a?page=2")), "/projects/a?page=2");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
