//! `GET /projects/{slug}/pipelines/{number}`: the trigger, the configuration error if any, and each workflow
//! with its job graph and buttons (approve, cancel, rerun, rerun failed), which POST back here.

use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use axum::Extension;
use serde::Serialize;

use super::{html, layout};
use crate::auth::Authenticated;
use crate::dag::{self, Graph};
use crate::data::{Dashboard, RerunScope};
use crate::error::{WebError, WebResult};
use crate::model::{JobKind, Pipeline, Status, Workflow};
use crate::view::{duration, encode_segment};
use crate::AppState;

#[derive(Serialize)]
struct PipelinePage {
    pipeline: Pipeline,
    /// `https://github.com/{owner}/{repo}/commit/{sha}` for GitHub projects.
    commit_url: Option<String>,
    short_sha: String,
    workflows: Vec<WorkflowView>,
}

#[derive(Serialize)]
struct WorkflowView {
    id: String,
    name: String,
    status: Status,
    duration: String,
    graph: Graph,
    can_cancel: bool,
    can_rerun: bool,
    can_rerun_failed: bool,
    /// Approval jobs waiting for someone: (id, name).
    approvals: Vec<(String, String)>,
}

fn workflow_view(workflow: &Workflow, now: u64) -> WorkflowView {
    WorkflowView {
        id: workflow.id.clone(),
        name: workflow.name.clone(),
        status: workflow.status,
        duration: duration(workflow.finished_at.unwrap_or(now).saturating_sub(workflow.created_at)),
        graph: dag::layout(&workflow.jobs, now),
        can_cancel: !workflow.status.is_finished(),
        can_rerun: workflow.status.is_finished(),
        can_rerun_failed: workflow.status.is_finished()
            && workflow.jobs.iter().any(|j| j.status.is_failure() || j.status == Status::Canceled),
        approvals: workflow
            .jobs
            .iter()
            .filter(|j| j.kind == JobKind::Approval && j.status == Status::OnHold)
            .map(|j| (j.id.clone(), j.name.clone()))
            .collect(),
    }
}

/// A SHA is only linked when it looks like one (it is put into a URL).
fn is_sha(sha: &str) -> bool {
    (7..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path((slug, number)): Path<(String, u64)>,
) -> WebResult<Html<String>> {
    let pipeline = state.data.pipeline(&slug, number).await?;
    let now = state.data.now();
    let sha = &pipeline.trigger.sha;
    let commit_url = match &pipeline.project.repository.github {
        Some(gh) if is_sha(sha) => Some(format!("https://github.com/{}/{}/commit/{sha}", gh.owner, gh.name)),
        _ => None,
    };
    let view = PipelinePage {
        commit_url,
        short_sha: sha.chars().take(7).collect(),
        workflows: pipeline.workflows.iter().map(|w| workflow_view(w, now)).collect(),
        pipeline,
    };
    let title = format!("{} #{}", view.pipeline.project.name, view.pipeline.number);
    let page_layout = layout(&auth, title, "projects").with_status(view.pipeline.status);
    html("pipeline.html", &page_layout, &view)
}

/// `POST …/workflows/{id}/{cancel|rerun|rerun-failed}`.
pub async fn workflow_action<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path((slug, number, workflow_id, action)): Path<(String, u64, String, String)>,
) -> WebResult<Redirect> {
    match action.as_str() {
        "cancel" => state.data.cancel_workflow(&auth.user, &workflow_id).await?,
        "rerun" => state.data.rerun_workflow(&auth.user, &workflow_id, RerunScope::Workflow).await?,
        "rerun-failed" => state.data.rerun_workflow(&auth.user, &workflow_id, RerunScope::FailedJobs).await?,
        other => {
            return Err(WebError::BadRequest(format!(
                "{other:?} is not a workflow action: use cancel, rerun or rerun-failed"
            )))
        }
    }
    tracing::info!(user = %auth.user.name, workflow.id = %workflow_id, action = %action, "workflow action");
    Ok(Redirect::to(&pipeline_path(&slug, number)))
}

/// `POST …/jobs/{id}/approve`.
pub async fn approve<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path((slug, number, job_id)): Path<(String, u64, String)>,
) -> WebResult<Redirect> {
    state.data.approve_job(&auth.user, &job_id).await?;
    tracing::info!(user = %auth.user.name, job.id = %job_id, "job approved");
    Ok(Redirect::to(&pipeline_path(&slug, number)))
}

/// The pipeline page's path, with the slug percent-encoded.
pub fn pipeline_path(slug: &str, number: u64) -> String {
    format!("/projects/{}/pipelines/{number}", encode_segment(slug))
}
