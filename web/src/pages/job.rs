//! `GET /jobs/{id}`: steps (collapsible, with durations and logs), test results (failures first), artifacts,
//! environment names, runner and times; plus the log pages, the live log stream and artifact downloads.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::{html, layout};
use crate::ansi::ChunkRenderer;
use crate::auth::Authenticated;
use crate::data::{Dashboard, DataError};
use crate::error::{WebError, WebResult};
use crate::log_view::{self, LogPage};
use crate::model::{Job, Status, TestCase, TestResult};
use crate::view::{self, duration, Layout};
use crate::AppState;

#[derive(Serialize)]
struct JobPage {
    job: Job,
    steps: Vec<StepView>,
    /// Failures first (all of them), then the others up to [`MAX_TESTS_SHOWN`].
    tests: Vec<TestCase>,
    total_tests: usize,
    failed_tests: usize,
    /// Passed or skipped tests left out of a long list.
    tests_hidden: usize,
    queue_time: String,
    run_time: String,
}

#[derive(Serialize)]
struct StepView {
    index: u32,
    name: String,
    status: Status,
    duration: String,
    exit_code: Option<i32>,
    /// Open on load: the running step, the first failed one, else none.
    open: bool,
    /// Whether its log can still grow (the page opens a live stream for it).
    live: bool,
    /// The tail page of the open step's log; the others load theirs when unfolded.
    log: Option<LogPage>,
}

pub async fn page<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path(job_id): Path<String>,
) -> WebResult<Html<String>> {
    let job = state.data.job(&job_id).await?;
    let now = state.data.now();
    let open_index = job
        .steps
        .iter()
        .find(|s| s.status == Status::Running)
        .or_else(|| job.steps.iter().find(|s| s.status.is_failure()))
        .map(|s| s.index);
    let mut steps = Vec::with_capacity(job.steps.len());
    for step in &job.steps {
        let open = Some(step.index) == open_index;
        let log = if open {
            Some(log_view::read_page(&state.data, &job.id, step.index, None, step.log_bytes).await?)
        } else {
            None
        };
        steps.push(StepView {
            index: step.index,
            name: step.name.clone(),
            status: step.status,
            duration: match step.started_at {
                Some(start) => duration(step.finished_at.unwrap_or(now).saturating_sub(start)),
                None => String::new(),
            },
            exit_code: step.exit_code,
            open,
            live: !step.status.is_finished(),
            log,
        });
    }
    let total_tests = job.tests.len();
    let (tests, failed_tests) = tests_to_show(&job.tests);
    let queue_time = duration(job.started_at.unwrap_or(now).saturating_sub(job.queued_at));
    let run_time = match job.started_at {
        Some(start) => duration(job.finished_at.unwrap_or(now).saturating_sub(start)),
        None => String::new(),
    };
    let title = format!("{} — {} #{}", job.name, job.project.name, job.pipeline_number);
    let page_layout = layout(&auth, title, "projects").with_status(job.status);
    let view = JobPage {
        steps,
        tests_hidden: total_tests - tests.len(),
        tests,
        total_tests,
        failed_tests,
        queue_time,
        run_time,
        job,
    };
    html("job.html", &page_layout, &view)
}

/// Tests listed on the job page besides the failures (a suite of 20,000 tests would make a page of megabytes).
pub const MAX_TESTS_SHOWN: usize = 500;

/// The tests to list, failures and errors first (every one of them), then the rest up to [`MAX_TESTS_SHOWN`]
/// in all; and how many failed.
fn tests_to_show(all: &[TestCase]) -> (Vec<TestCase>, usize) {
    let mut tests = all.to_vec();
    tests.sort_by(|a, b| a.result.cmp(&b.result).then_with(|| a.classname.cmp(&b.classname)).then(a.name.cmp(&b.name)));
    let failed = tests.iter().filter(|t| matches!(t.result, TestResult::Failure | TestResult::Error)).count();
    tests.truncate(MAX_TESTS_SHOWN.max(failed));
    (tests, failed)
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// The page ends at this byte (absent: the tail).
    end: Option<u64>,
    /// `1`: only the lines and the "earlier" link, for the script to insert.
    fragment: Option<u8>,
}

#[derive(Serialize)]
struct LogPageView {
    job_id: String,
    job_name: String,
    step_index: u32,
    step_name: String,
    log: LogPage,
}

/// `GET /jobs/{id}/steps/{n}/log?end=…[&fragment=1]`: one page of a step's log.
pub async fn log<S: Dashboard>(
    State(state): State<AppState<S>>,
    Extension(auth): Extension<Authenticated>,
    Path((job_id, step)): Path<(String, u32)>,
    Query(query): Query<LogQuery>,
) -> WebResult<Response> {
    let job = state.data.job(&job_id).await?;
    let Some(found) = job.steps.iter().find(|s| s.index == step) else {
        return Err(DataError::NotFound { what: format!("step {step} of job {job_id}") }.into());
    };
    let page = log_view::read_page(&state.data, &job.id, step, query.end, found.log_bytes).await?;
    let view = LogPageView {
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        step_index: step,
        step_name: found.name.clone(),
        log: page,
    };
    let template = if query.fragment == Some(1) { "log_lines.html" } else { "log_page.html" };
    let title = format!("{} — {}", found.name, job.name);
    Ok(html(template, &layout(&auth, title, "projects"), &view)?.into_response())
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    from: Option<u64>,
}

/// `GET /jobs/{id}/steps/{n}/log/stream?from=…`: server-sent events, each a `log` event whose data is the new
/// lines rendered as HTML (escaped) and whose id is the byte offset after them, then one `end` event (data
/// `done`: browsers drop events without data). A browser
/// that reconnects sends `Last-Event-ID` and continues from there. Colours carry from chunk to chunk; a chunk
/// that goes on with an open line marks its first line `cont` and the script joins it to the last one.
pub async fn log_stream<S: Dashboard>(
    State(state): State<AppState<S>>,
    Path((job_id, step)): Path<(String, u32)>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> WebResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let from = resumed.or(query.from).unwrap_or(0);
    // Whether the browser's last line is still open: the byte before `from` is not a newline.
    let mid_line = if from > 0 {
        let before = state.data.read_log(&job_id, step, from - 1..from).await?;
        before.bytes.last().is_some_and(|b| *b != b'\n')
    } else {
        false
    };
    let chunks = state.data.log_stream(&job_id, step, from).await?;
    let mut renderer = ChunkRenderer::new(mid_line);
    let events = chunks
        .map(move |chunk| {
            let end = chunk.offset + chunk.data.len() as u64;
            let rendered = renderer.push(&chunk.data);
            let html = view::context(&Layout::empty(), &serde_json::json!({ "log": rendered }))
                .and_then(|c| view::render("log_lines.html", &c));
            match html {
                Ok(html) => Ok(Event::default().event("log").id(end.to_string()).data(html.trim_end())),
                Err(e) => {
                    tracing::error!(error = %e, "a live log chunk failed to render");
                    Ok(Event::default().event("log").id(end.to_string()).data(""))
                }
            }
        })
        .chain(stream::once(async { Ok(Event::default().event("end").data("done")) }));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /jobs/{id}/artifacts/{path}`: the artifact as a download, never rendered by the browser as a page of
/// this site (an uploaded HTML file must not run here).
pub async fn artifact<S: Dashboard>(
    State(state): State<AppState<S>>,
    Path((job_id, path)): Path<(String, String)>,
) -> WebResult<Response> {
    if path.split('/').any(|segment| segment == "..") {
        return Err(WebError::BadRequest(format!("artifact path {path:?} has '..': use the path the job listed")));
    }
    let download = state.data.artifact(&job_id, &path).await?;
    let file_name: String = path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let file_name = if file_name.is_empty() { "artifact".to_string() } else { file_name };
    let mut response = Body::from_stream(download.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size_bytes));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert("content-security-policy", HeaderValue::from_static("sandbox"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, result: TestResult) -> TestCase {
        TestCase { classname: "c".into(), name: name.into(), file: None, result, message: None, run_time_ms: 1 }
    }

    #[test]
    fn failures_come_first_and_are_never_cut() {
        let mut all: Vec<TestCase> =
            (0..MAX_TESTS_SHOWN + 10).map(|i| case(&format!("ok{i:04}"), TestResult::Success)).collect();
        all.push(case("boom", TestResult::Error));
        all.push(case("bad", TestResult::Failure));
        let (shown, failed) = tests_to_show(&all);
        assert_eq!(failed, 2);
        assert_eq!(shown.len(), MAX_TESTS_SHOWN);
        assert_eq!((shown[0].name.as_str(), shown[1].name.as_str()), ("bad", "boom"));
        let many_failures: Vec<TestCase> =
            (0..MAX_TESTS_SHOWN + 3).map(|i| case(&i.to_string(), TestResult::Failure)).collect();
        assert_eq!(tests_to_show(&many_failures).0.len(), MAX_TESTS_SHOWN + 3);
    }
}
