//! `GET /projects/{slug}/settings`: environment variables (add, replace, delete; values write-only, shown as
//! `xxxx` and at most the last 4 characters), contexts, schedules (add, delete), concurrency and auto-cancel.

use axum::extract::{Path, State};
use axum::response::{Html, Redirect};
use axum::{Extension, Form};
use serde::{Deserialize, Serialize};

use super::{html, layout};
use crate::auth::Authenticated;
use crate::data::Dashboard;
use crate::error::{WebError, WebResult};
use crate::model::{EnvVarName, NewSchedule, ProjectOptions, ProjectSettings};
use crate::view::encode_segment;
use crate::AppState;

/// The longest value the form takes (the POST body limit is larger).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Serialize)]
struct SettingsPage {
    settings: ProjectSettings,
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
) -> WebResult<Html<String>> {
    let settings = state.data.project_settings(&slug).await?;
    let title = format!("Settings — {}", settings.project.name);
    html("settings.html", &layout(&auth, title, "projects"), &SettingsPage { settings })
}

fn settings_path(slug: &str) -> String {
    format!("/projects/{}/settings", encode_segment(slug))
}

#[derive(Deserialize)]
pub struct EnvForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

// Not Debug: the form holds a secret value.
fn parse_name(name: &str) -> WebResult<EnvVarName> {
    EnvVarName::parse(name.trim()).map_err(|e| WebError::BadRequest(format!("field name: {e}")))
}

/// `POST /projects/{slug}/settings/env`: adds a variable or replaces its value.
pub async fn set_env<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
    Form(form): Form<EnvForm>,
) -> WebResult<Redirect> {
    let name = parse_name(&form.name)?;
    if form.value.is_empty() {
        return Err(WebError::BadRequest("field value: the value is empty: paste the secret's value".into()));
    }
    if form.value.len() > MAX_VALUE_BYTES {
        return Err(WebError::BadRequest(format!(
            "field value: the value is {} bytes: use at most {MAX_VALUE_BYTES}",
            form.value.len()
        )));
    }
    state.data.set_env_var(&auth.user, &slug, &name, &form.value).await?;
    tracing::info!(user = %auth.user.name, project = %slug, env.name = %name, "environment variable set");
    Ok(Redirect::to(&settings_path(&slug)))
}

#[derive(Deserialize)]
pub struct DeleteEnvForm {
    #[serde(default)]
    name: String,
}

/// `POST /projects/{slug}/settings/env/delete`.
pub async fn delete_env<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
    Form(form): Form<DeleteEnvForm>,
) -> WebResult<Redirect> {
    let name = parse_name(&form.name)?;
    state.data.delete_env_var(&auth.user, &slug, &name).await?;
    tracing::info!(user = %auth.user.name, project = %slug, env.name = %name, "environment variable deleted");
    Ok(Redirect::to(&settings_path(&slug)))
}

#[derive(Deserialize)]
pub struct OptionsForm {
    /// Empty: no limit.
    #[serde(default)]
    max_concurrent_jobs: String,
    /// A checkbox: present when ticked.
    auto_cancel_redundant: Option<String>,
}

/// `POST /projects/{slug}/settings/options`.
pub async fn set_options<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
    Form(form): Form<OptionsForm>,
) -> WebResult<Redirect> {
    let limit = form.max_concurrent_jobs.trim();
    let max_concurrent_jobs = if limit.is_empty() {
        None
    } else {
        Some(limit.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            WebError::BadRequest(format!(
                "field max_concurrent_jobs: {limit:?} is not a number of jobs: use 1 or more, or leave it empty"
            ))
        })?)
    };
    let options = ProjectOptions { max_concurrent_jobs, auto_cancel_redundant: form.auto_cancel_redundant.is_some() };
    state.data.set_project_options(&auth.user, &slug, &options).await?;
    Ok(Redirect::to(&settings_path(&slug)))
}

#[derive(Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cron: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    workflow: String,
}

/// The longest name, cron, branch or workflow the schedule form takes.
const MAX_SCHEDULE_FIELD_BYTES: usize = 256;

/// A form field trimmed; `None` when empty; 400 naming the field when too long.
fn schedule_field(field: &str, value: &str) -> WebResult<Option<String>> {
    let value = value.trim();
    if value.len() > MAX_SCHEDULE_FIELD_BYTES {
        return Err(WebError::BadRequest(format!(
            "field {field}: {} bytes: use at most {MAX_SCHEDULE_FIELD_BYTES}",
            value.len()
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_string()))
}

/// `POST /projects/{slug}/settings/schedules`: adds a schedule (`name` optional, `cron`, `branch`, `workflow`
/// optional).
pub async fn add_schedule<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
    Form(form): Form<ScheduleForm>,
) -> WebResult<Redirect> {
    let cron = schedule_field("cron", &form.cron)?.ok_or_else(|| {
        WebError::BadRequest("field cron: empty: give five fields, e.g. `0 3 * * *` for 03:00 UTC daily".into())
    })?;
    let branch = schedule_field("branch", &form.branch)?
        .ok_or_else(|| WebError::BadRequest("field branch: empty: name the branch to build".into()))?;
    let schedule = NewSchedule {
        name: schedule_field("name", &form.name)?,
        cron,
        branch,
        workflow: schedule_field("workflow", &form.workflow)?,
    };
    state.data.add_schedule(&auth.user, &slug, &schedule).await?;
    tracing::info!(user = %auth.user.name, project = %slug, schedule.cron = %schedule.cron, "schedule added");
    Ok(Redirect::to(&settings_path(&slug)))
}

#[derive(Deserialize)]
pub struct DeleteScheduleForm {
    #[serde(default)]
    name: String,
}

/// `POST /projects/{slug}/settings/schedules/delete` (`name`).
pub async fn delete_schedule<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(slug): Path<String>,
    Form(form): Form<DeleteScheduleForm>,
) -> WebResult<Redirect> {
    let name = schedule_field("name", &form.name)?
        .ok_or_else(|| WebError::BadRequest("field name: empty: name the schedule to delete".into()))?;
    state.data.delete_schedule(&auth.user, &slug, &name).await?;
    tracing::info!(user = %auth.user.name, project = %slug, schedule.name = %name, "schedule deleted");
    Ok(Redirect::to(&settings_path(&slug)))
}
