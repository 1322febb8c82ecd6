//! The page handlers, one file per page: each reads through the data trait, builds its view, renders its
//! template.

pub mod job;
pub mod pipeline;
pub mod project;
pub mod projects;
pub mod runners;
pub mod settings;
pub mod sign_in;

use axum::response::Html;
use serde::Serialize;

use crate::auth::Authenticated;
use crate::error::WebResult;
use crate::view::{self, Layout};

/// The layout of a signed-in page.
fn layout(auth: &Authenticated, title: impl Into<String>, section: &'static str) -> Layout {
    Layout {
        title: title.into(),
        favicon: "idle",
        user: Some(auth.user.clone()),
        csrf: auth.csrf.clone(),
        section,
        refresh_s: None,
        can_change: auth.user.role.can_change(),
    }
}

/// Renders `template` with `layout` and `page`.
fn html(template: &str, layout: &Layout, page: &impl Serialize) -> WebResult<Html<String>> {
    let context = view::context(layout, page)?;
    Ok(Html(view::render(template, &context)?))
}
