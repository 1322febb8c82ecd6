//! Sign-in and sign-out: local users with argon2 password hashes, sessions through the data trait, wrong
//! passwords throttled per user name ([`crate::throttle`]).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::{Deserialize, Serialize};

use crate::auth::{self, Authenticated, SESSION_COOKIE, SESSION_TTL_MS, SIGN_IN_COOKIE};
use crate::data::{Dashboard, NewSession};
use crate::error::{WebError, WebResult};
use crate::password;
use crate::view::{self, Layout};
use crate::AppState;

/// How long the sign-in form's double-submit token lives.
const SIGN_IN_TOKEN_TTL_S: u64 = 3600;

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(rename = "_csrf", default)]
    csrf: String,
    next: Option<String>,
}

#[derive(Serialize)]
struct SignInPage<'a> {
    next: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

fn render_form(token: &str, secure: bool, page: &SignInPage<'_>, status: StatusCode) -> WebResult<Response> {
    let layout = Layout {
        title: "Sign in".into(),
        favicon: "idle",
        user: None,
        csrf: token.to_string(),
        section: "sign-in",
        refresh_s: None,
        can_change: false,
    };
    let html = view::render("sign_in.html", &view::context(&layout, page)?)?;
    let cookie = auth::set_cookie(SIGN_IN_COOKIE, token, SIGN_IN_TOKEN_TTL_S, secure);
    Ok((status, [(header::SET_COOKIE, cookie)], axum::response::Html(html)).into_response())
}

/// `GET /sign-in?next=/…`: the form (or on to `next` when already signed in).
pub async fn form<S: Dashboard>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> WebResult<Response> {
    let next = auth::safe_next(query.next.as_deref());
    if auth::current_session(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    let secure = auth::is_https(&headers, state.config.always_secure_cookies);
    let page = SignInPage { next: &next, username: "", error: None };
    render_form(&auth::new_token(), secure, &page, StatusCode::OK)
}

/// `POST /sign-in`: checks the double-submit token, then the password; starts a session.
pub async fn submit<S: Dashboard>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> WebResult<Response> {
    let expected = auth::cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if !auth::tokens_match(&form.csrf, expected) {
        return Err(WebError::Csrf);
    }
    let secure = auth::is_https(&headers, state.config.always_secure_cookies);
    let next = auth::safe_next(form.next.as_deref());
    let now = state.data.now();
    if let Some(until) = state.throttle.locked_until(&form.username, now) {
        tracing::warn!(user = %form.username, "sign-in refused: too many wrong passwords");
        let message = format!("too many wrong passwords for this user: try again after {}", crate::view::time(until));
        let page = SignInPage { next: &next, username: &form.username, error: Some(&message) };
        return render_form(&auth::new_token(), secure, &page, StatusCode::TOO_MANY_REQUESTS);
    }
    let user = match state.data.user_credentials(&form.username).await? {
        Some(credentials) => match password::verify_password(&form.password, &credentials.password_hash) {
            Ok(true) => Some(credentials.user),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(user = %form.username, error = %e, "stored password hash unreadable");
                None
            }
        },
        None => {
            password::burn_verification(&form.password);
            None
        }
    };
    let Some(user) = user else {
        state.throttle.failed(&form.username, now);
        tracing::info!(user = %form.username, "sign-in refused: wrong user name or password");
        let page = SignInPage { next: &next, username: &form.username, error: Some("wrong user name or password") };
        return render_form(&auth::new_token(), secure, &page, StatusCode::UNAUTHORIZED);
    };
    state.throttle.succeeded(&form.username);
    let token = auth::new_token();
    state
        .data
        .create_session(NewSession {
            token_hash: auth::token_hash(&token),
            user_id: user.id.clone(),
            csrf_token: auth::new_token(),
            expires_at: now.saturating_add(SESSION_TTL_MS),
        })
        .await?;
    tracing::info!(user = %user.name, "signed in");
    let session = auth::set_cookie(SESSION_COOKIE, &token, SESSION_TTL_MS / 1000, secure);
    let clear = auth::set_cookie(SIGN_IN_COOKIE, "", 0, secure);
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(header::SET_COOKIE, session);
    response.headers_mut().append(header::SET_COOKIE, clear);
    Ok(response)
}

/// `POST /sign-out`: ends the session (the CSRF check ran in the middleware).
pub async fn sign_out<S: Dashboard>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Extension(auth): Extension<Authenticated>,
) -> WebResult<Response> {
    state.data.delete_session(&auth.token_hash).await?;
    let secure = auth::is_https(&headers, state.config.always_secure_cookies);
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, auth::set_cookie(SESSION_COOKIE, "", 0, secure));
    Ok(response)
}
