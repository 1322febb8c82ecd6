//! `GET /runners`: every registered runner, online or not, with its labels, current job and last contact.

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use serde::Serialize;

use super::{html, layout};
use crate::auth::Authenticated;
use crate::data::Dashboard;
use crate::error::WebResult;
use crate::model::Runner;
use crate::AppState;

#[derive(Serialize)]
struct RunnersPage {
    runners: Vec<Runner>,
    online: usize,
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
) -> WebResult<Html<String>> {
    let runners = state.data.runners().await?;
    let online = runners.iter().filter(|r| r.online).count();
    html("runners.html", &layout(&auth, "Runners", "runners"), &RunnersPage { runners, online })
}
