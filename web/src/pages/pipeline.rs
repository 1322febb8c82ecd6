//! `GET /projects/{slug}/pipelines/{number}`: the trigger, the configuration error if any, and each workflow
//! with its job graph and buttons (approve, cancel, rerun, rerun failed), which POST back here; and
//! `…/events`, the page's live updates over server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, Redirect};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;

use super::{html, layout};
use crate::auth::Authenticated;
use crate::dag::{self, Graph};
use crate::data::{Dashboard, RerunScope};
use crate::error::{WebError, WebResult};
use crate::model::{JobKind, Pipeline, Status, Workflow};
use crate::view::{self, duration, encode_segment, Layout};
use crate::AppState;

#[derive(Serialize)]
struct PipelinePage {
    pipeline: Pipeline,
    /// `https://github.com/{owner}/{repo}/commit/{sha}` for GitHub projects.
    commit_url: Option<String>,
    short_sha: String,
    workflows: Vec<WorkflowView>,
    /// The live updates' URL while the pipeline runs.
    events_url: Option<String>,
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

/// The page's view and layout for `pipeline` as of `now`.
fn pipeline_view(auth: &Authenticated, pipeline: Pipeline, now: u64) -> (PipelinePage, Layout) {
    let sha = &pipeline.trigger.sha;
    let commit_url = match &pipeline.project.repository.github {
        Some(gh) if is_sha(sha) => Some(format!("https://github.com/{}/{}/commit/{sha}", gh.owner, gh.name)),
        _ => None,
    };
    let events_url = (!pipeline.status.is_finished())
        .then(|| format!("{}/events", pipeline_path(&pipeline.project.slug, pipeline.number)));
    let view = PipelinePage {
        commit_url,
        short_sha: sha.chars().take(7).collect(),
        workflows: pipeline.workflows.iter().map(|w| workflow_view(w, now)).collect(),
        events_url,
        pipeline,
    };
    let title = format!("{} #{}", view.pipeline.project.name, view.pipeline.number);
    let page_layout = layout(auth, title, "projects").with_status(view.pipeline.status);
    (view, page_layout)
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path((slug, number)): Path<(String, u64)>,
) -> WebResult<Html<String>> {
    let pipeline = state.data.pipeline(&slug, number).await?;
    let (view, page_layout) = pipeline_view(&auth, pipeline, state.data.now());
    html("pipeline.html", &page_layout, &view)
}

/// One live update of the pipeline page: its content rendered as on the page (escaped by the templates), the
/// document title and the favicon.
#[derive(Serialize)]
struct LiveUpdate {
    html: String,
    title: String,
    favicon: &'static str,
}

async fn live_update<S: Dashboard>(state: &AppState<S>, auth: &Authenticated, slug: &str, number: u64) -> Event {
    let rendered = async {
        let pipeline = state.data.pipeline(slug, number).await?;
        let (view, page_layout) = pipeline_view(auth, pipeline, state.data.now());
        let html = view::render("pipeline_content.html", &view::context(&page_layout, &view)?)?;
        let update =
            LiveUpdate { html, title: format!("{} — Drydock", page_layout.title), favicon: page_layout.favicon };
        Ok::<_, WebError>(serde_json::to_string(&update).unwrap_or_default())
    };
    match rendered.await {
        Ok(json) => Event::default().event("update").data(json),
        Err(e) => {
            // The browser keeps what it shows; the next change tries again.
            tracing::warn!(error = %e, pipeline = number, "a live pipeline update failed");
            Event::default().comment("update failed")
        }
    }
}

/// `GET /projects/{slug}/pipelines/{number}/events`: server-sent events for the open pipeline page. Each change
/// the data side reports (see [`Dashboard::pipeline_changes`]) becomes an `update` event whose data is JSON:
/// `html` (the page's content, rendered by the same template, escaped), `title` and `favicon`; after the
/// pipeline finished, one `end` event (data `done`) tells the script to stop listening.
pub async fn events<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path((slug, number)): Path<(String, u64)>,
) -> WebResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let changes = state.data.pipeline_changes(&slug, number).await?;
    let events = changes
        .then(move |()| {
            let (state, auth, slug) = (state.clone(), auth.clone(), slug.clone());
            async move { Ok(live_update(&state, &auth, &slug, number).await) }
        })
        .chain(stream::once(async { Ok(Event::default().event("end").data("done")) }));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
