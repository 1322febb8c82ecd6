//! Jobs for people and tools (admin token): a job with its steps and test counts, a step's log by byte range
//! (`?offset=&limit=`, offsets in the log as stored, i.e. after masking) or followed live as server-sent events
//! until the step ends, and the artifacts of the job's current attempt, listed or downloaded (streamed from disk).

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream;
use serde::Deserialize;

use super::jobs::require_admin;
use super::pipelines::id;
use super::{AppState, Problem};

/// Most bytes one range read returns (and the default `limit`).
pub const MAX_LOG_READ: u64 = 4 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs/{job_id}", get(job))
        .route("/api/v1/jobs/{job_id}/steps/{step}/log", get(log))
        .route("/api/v1/jobs/{job_id}/steps/{step}/log/follow", get(follow))
        .route("/api/v1/jobs/{job_id}/artifacts", get(artifacts))
}

async fn job(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let job = state.store.job(id(&raw, "job")?).await?;
    let steps = state.store.steps(job.id, job.attempt).await?;
    let tests: serde_json::Map<String, serde_json::Value> =
        state.store.test_result_counts(job.id).await?.into_iter().map(|(k, n)| (k, n.into())).collect();
    Ok(Json(serde_json::json!({"job": job, "steps": steps, "test_results": tests})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogRange {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
}

fn step_number(raw: &str) -> Result<i64, Problem> {
    raw.parse::<u32>().map(i64::from).map_err(|_| Problem::not_found(format!("step `{raw}` not found")))
}

fn range_query(raw: Option<&str>) -> Result<LogRange, Problem> {
    let raw = raw.unwrap_or_default();
    parse_range(raw)
        .map_err(|e| Problem::bad_request(format!("query `{raw}`: {e}: give `offset` and `limit` as byte counts")))
}

/// `?offset=N&limit=M` parsed by hand: axum's `Query` rejection is plain text, not a problem.
fn parse_range(raw: &str) -> Result<LogRange, String> {
    let mut range = LogRange { offset: 0, limit: None };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || value.parse::<u64>().map_err(|_| format!("`{key}` must be a whole number, not `{value}`"));
        match key {
            "offset" => range.offset = number()?,
            "limit" => range.limit = Some(number()?),
            other => return Err(format!("unknown parameter `{other}`")),
        }
    }
    Ok(range)
}

/// Bytes `offset..offset+limit` of the step's log (clamped to what exists); headers say where the slice starts,
/// how long the log is now and whether it is complete.
async fn log(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, step)): UrlPath<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let range = range_query(uri.query())?;
    let job = state.store.job(id(&raw, "job")?).await?;
    let step = step_number(&step)?;
    let ended = state.store.step_ended(job.id, step).await?;
    let end = range.offset.saturating_add(range.limit.unwrap_or(MAX_LOG_READ).min(MAX_LOG_READ));
    let read = state.store.read_log_range(job.id, job.attempt, step, range.offset..end).await?;
    let (start, total, body) = (read.start, read.total_bytes, read.bytes);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (header::HeaderName::from_static("x-log-offset"), start.to_string()),
            (header::HeaderName::from_static("x-log-total-bytes"), total.to_string()),
            (header::HeaderName::from_static("x-log-complete"), ended.to_string()),
        ],
        body,
    )
        .into_response())
}

/// The step's log from `?offset=` on as `text/event-stream`: `log` events (`{"offset", "data"}`, the event ID is
/// the offset after it) as the log grows, then one `end` event once the step has ended and everything was sent.
async fn follow(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, step)): UrlPath<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let range = range_query(uri.query())?;
    let job = state.store.job(id(&raw, "job")?).await?;
    let step = step_number(&step)?;
    let (job_id, attempt) = (job.id, job.attempt);
    let store = state.store.clone();
    // Woken by the runner API when the step's log grows or it ends (`crate::log_events`), with a fallback re-read;
    // each turn reads only what arrived since the last, at most MAX_LOG_READ bytes. State: (next offset, watch);
    // once the step has ended and everything was sent, one `end` event, then the stream stops.
    let watch = state.log_events.watch((job_id, step));
    let events = stream::unfold(Some((range.offset, watch)), move |turn| {
        let store = store.clone();
        async move {
            let (offset, mut watch) = turn?;
            loop {
                // "Ended" is read before the log, so nothing written in between is missed.
                let read = async {
                    let ended = store.step_ended(job_id, step).await?;
                    let end = offset.saturating_add(MAX_LOG_READ);
                    Ok::<_, crate::store::StoreError>((
                        ended,
                        store.read_log_range(job_id, attempt, step, offset..end).await?,
                    ))
                };
                let (ended, read) = match read.await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(job.id = job_id, step, error = %e, "followed log ended: the store failed");
                        let event = Event::default().event("error").data("the coordinator's database failed");
                        return Some((Ok::<_, Infallible>(event), None));
                    }
                };
                if !read.bytes.is_empty() {
                    let next = read.start + read.bytes.len() as u64;
                    let data = String::from_utf8_lossy(&read.bytes).into_owned();
                    let event = Event::default()
                        .event("log")
                        .id(next.to_string())
                        .json_data(serde_json::json!({"offset": read.start, "data": data}))
                        .unwrap_or_else(|_| Event::default().event("log"));
                    return Some((Ok(event), Some((next, watch))));
                }
                if ended {
                    let event = Event::default().event("end").data(read.total_bytes.to_string());
                    return Some((Ok(event), None));
                }
                watch.wait().await;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

async fn artifacts(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let job = state.store.job(id(&raw, "job")?).await?;
    let list: Vec<serde_json::Value> = state
        .store
        .attempt_artifacts(job.id, job.attempt)
        .await?
        .into_iter()
        .map(|(path, size)| {
            let url = format!("/api/v1/jobs/{}/artifacts/{path}", job.id);
            serde_json::json!({"path": path, "size_bytes": size, "url": url})
        })
        .collect();
    Ok(Json(serde_json::json!({"artifacts": list})).into_response())
}

/// `GET /api/v1/jobs/{job_id}/artifacts/{*path}`: the artifact's bytes, streamed from its file.
pub async fn download_artifact(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath((raw, path)): UrlPath<(String, String)>,
) -> Result<Response, Problem> {
    require_admin(&state, &headers).await?;
    let job = state.store.job(id(&raw, "job")?).await?;
    let (size, file) = state.store.artifact_file(job.id, job.attempt, &path).await?;
    let f = tokio::fs::File::open(&file)
        .await
        .map_err(|e| Problem::internal(format!("cannot open the file of artifact `{path}`: {e}")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::CONTENT_LENGTH, size.to_string())],
        Body::from_stream(super::runners::file_stream(f)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_ranges_are_parsed_with_messages() {
        let r = super::parse_range("offset=5&limit=10").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.offset, r.limit), (5, Some(10)));
        assert!(super::parse_range("offset=-1").is_err_and(|e| e.contains("whole number")));
        assert!(super::parse_range("from=1").is_err_and(|e| e.contains("unknown parameter `from`")));
    }
}
