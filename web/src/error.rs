//! What a page answers when it cannot show what was asked: a typed error that renders as a small HTML page with
//! the right status; store failures and template bugs are logged once here and shown as a generic message.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::data::DataError;
use crate::view::{self, Layout, RenderError};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    Data(#[from] DataError),
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A form or query field is wrong; the message names the field and says what to do.
    #[error("{0}")]
    BadRequest(String),
    /// A POST without the session's CSRF token.
    #[error("the form is stale or came from another site: reload the page and try again")]
    Csrf,
    /// A signed-in viewer tried to change something.
    #[error(
        "user {user} is a viewer and cannot change anything: ask an admin (coordinator user add NAME --role admin)"
    )]
    Forbidden { user: String },
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::Data(DataError::NotFound { .. }) => StatusCode::NOT_FOUND,
            WebError::Data(DataError::Conflict { .. }) => StatusCode::CONFLICT,
            WebError::Data(DataError::Backend { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Data(DataError::Invalid { .. }) => StatusCode::BAD_REQUEST,
            WebError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Csrf | WebError::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }

    fn public_message(&self) -> String {
        match self {
            WebError::Data(DataError::Backend { .. }) => {
                "the dashboard cannot reach its data right now: try again in a moment".to_string()
            }
            WebError::Render(_) => "this page failed to render: the coordinator's log says why".to_string(),
            other => other.to_string(),
        }
    }
}

#[derive(Serialize)]
struct ErrorPage {
    status: u16,
    reason: &'static str,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "dashboard request failed");
        }
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or(""),
            message: self.public_message(),
        };
        let layout = Layout {
            title: format!("{} {}", page.status, page.reason),
            favicon: "idle",
            user: None,
            csrf: String::new(),
            section: "",
            refresh_s: None,
            can_change: false,
        };
        let body = view::context(&layout, &page).and_then(|c| view::render("error.html", &c));
        match body {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "the error page failed to render");
                (status, page.message).into_response()
            }
        }
    }
}

pub type WebResult<T> = Result<T, WebError>;
