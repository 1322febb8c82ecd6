//! `GET /projects/{slug}?branch=…&page=N`: a project's pipelines, newest first, filtered by branch and paged;
//! with the webhook set-up instructions.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Html;
use axum::Extension;
use serde::{Deserialize, Serialize};

use super::{html, layout};
use crate::auth::Authenticated;
use crate::data::Dashboard;
use crate::error::{WebError, WebResult};
use crate::model::{PipelineQuery, PipelineSummary, Project};
use crate::AppState;

/// Pipelines per page.
pub const PER_PAGE: u64 = 25;

#[derive(Debug, Deserialize)]
pub struct ProjectQuery {
    branch: Option<String>,
    page: Option<String>,
}

#[derive(Serialize)]
struct ProjectPage {
    project: Project,
    pipelines: Vec<PipelineSummary>,
    branch: Option<String>,
    page: u64,
    pages: u64,
    total: u64,
    /// Query strings (already urlencoded) of the neighbouring pages.
    previous_query: Option<String>,
    next_query: Option<String>,
    webhook_url: String,
}

fn page_query(branch: Option<&str>, page: u64) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(branch) = branch {
        pairs.push(("branch", branch.to_string()));
    }
    pairs.push(("page", page.to_string()));
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
    Query(query): Query<ProjectQuery>,
    headers: HeaderMap,
) -> WebResult<Html<String>> {
    let page: u64 = match query.page.as_deref() {
        None | Some("") => 1,
        Some(text) => text
            .parse()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| WebError::BadRequest(format!("page {text:?} is not a page number: use 1 or more")))?,
    };
    let branch = query.branch.filter(|b| !b.is_empty());
    let project = state.data.project(&slug).await?;
    let listing = state
        .data
        .pipelines(
            &slug,
            &PipelineQuery { branch: branch.clone(), offset: (page - 1).saturating_mul(PER_PAGE), limit: PER_PAGE },
        )
        .await?;
    let pages = listing.total.div_ceil(PER_PAGE).max(1);
    let base = match &state.config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("coordinator.example");
            let scheme = if crate::auth::is_https(&headers, false) { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    let view = ProjectPage {
        previous_query: (page > 1).then(|| page_query(branch.as_deref(), page - 1)),
        next_query: (page < pages).then(|| page_query(branch.as_deref(), page + 1)),
        project,
        pipelines: listing.pipelines,
        branch,
        page,
        pages,
        total: listing.total,
        webhook_url: format!("{base}/webhooks/github"),
    };
    let title = view.project.project.name.clone();
    html("project.html", &layout(&auth, title, "projects"), &view)
}
