//! `GET /`: every project with its branches and each branch's latest pipeline.

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use serde::Serialize;

use super::{html, layout};
use crate::auth::Authenticated;
use crate::data::Dashboard;
use crate::error::WebResult;
use crate::model::ProjectSummary;
use crate::AppState;

#[derive(Serialize)]
struct ProjectsPage {
    projects: Vec<ProjectSummary>,
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
) -> WebResult<Html<String>> {
    let projects = state.data.projects().await?;
    html("projects.html", &layout(&auth, "Projects", "projects"), &ProjectsPage { projects })
}
