//! `GET /events`: docker's event stream for containers (`create`, `start`, `die` with `exitCode`, `destroy`).
//!
//! The engine is daemonless: containers change state in other processes (monitors, the CLI), so there is no
//! in-process bus to subscribe to. The stream is derived by comparing snapshots of the container store every
//! [`POLL`]: an event is reported within that interval, and a container that is created and destroyed within
//! one interval is never seen; one that exits and is removed within an interval gets a `die` without
//! `exitCode`. Past events are not kept, so `since` replays nothing; `until` ends the stream.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::attach::channel_body;
use super::containers::parse_filters;
use super::{in_scope, ApiError, ApiResult, ApiState, Query};
use crate::container::{Container, ContainerStore};

/// How often the container store is compared with the last snapshot.
pub const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    running: bool,
    exit_code: i32,
    finished_at: String,
}

/// Parses docker's `since`/`until`: Unix seconds with an optional fraction (the CLI converts durations and
/// dates to that before sending).
fn parse_time(key: &str, v: &str) -> ApiResult<f64> {
    v.parse::<f64>().map_err(|_| ApiError::bad_request(format!("invalid {key} `{v}`: expected Unix seconds")))
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Docker's filters for events: `type`, `event`, `container` (ID prefix or name), `image`, `label`. Values of
/// one key are alternatives; keys must all match.
fn matches(filters: &HashMap<String, Vec<String>>, action: &str, c: &Container) -> bool {
    filters.iter().all(|(key, values)| {
        values.iter().any(|v| match key.as_str() {
            "type" => v == "container",
            "event" => v == action,
            "container" => c.id.starts_with(v.as_str()) || c.name == v.trim_start_matches('/'),
            "image" => c.config.image == *v,
            "label" => match v.split_once('=') {
                Some((k, val)) => c.config.labels.get(k).is_some_and(|x| x == val),
                None => c.config.labels.contains_key(v),
            },
            _ => true,
        })
    })
}

fn event(action: &str, c: &Container, exit_code: Option<i32>) -> Value {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut attributes = json!({ "name": c.name, "image": c.config.image });
    for (k, v) in &c.config.labels {
        attributes[k] = json!(v);
    }
    if let Some(code) = exit_code {
        attributes["exitCode"] = json!(code.to_string());
    }
    json!({
        "status": action,
        "id": c.id,
        "from": c.config.image,
        "Type": "container",
        "Action": action,
        "Actor": { "ID": c.id, "Attributes": attributes },
        "scope": "local",
        "time": t.as_secs(),
        "timeNano": t.as_nanos() as u64,
    })
}

/// `GET /events?since=&until=&filters=`.
pub async fn events(State(state): State<ApiState>, q: Query) -> ApiResult<Response> {
    let mut filters: HashMap<String, Vec<String>> = HashMap::new();
    for f in parse_filters(q.get("filters"))? {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        filters.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    if let Some(s) = q.get("since").filter(|s| !s.is_empty()) {
        parse_time("since", s)?;
    }
    let until = q.get("until").filter(|u| !u.is_empty()).map(|u| parse_time("until", u)).transpose()?;
    let (tx, rx) = mpsc::channel(64);
    let root = state.root.clone();
    let scope = state.scope.clone();
    tokio::task::spawn_blocking(move || {
        let store = ContainerStore::open(&root);
        // A listing that fails (a container half-removed under our feet) is skipped, not taken for "no
        // containers": that would report every container destroyed and created again.
        let snapshot = |store: &ContainerStore| -> Option<HashMap<String, (Container, Seen)>> {
            let list = store.list().ok()?;
            let map = list
                .into_iter()
                .filter(|(c, _)| in_scope(scope.as_ref(), &c.config.labels))
                .map(|(c, s)| {
                    let seen = Seen { running: s.is_running(), exit_code: s.exit_code, finished_at: s.finished_at };
                    (c.id.clone(), (c, seen))
                })
                .collect();
            Some(map)
        };
        let mut last = snapshot(&store).unwrap_or_default();
        loop {
            if tx.is_closed() || until.is_some_and(|u| now() >= u) {
                return;
            }
            std::thread::sleep(POLL);
            let Some(current) = snapshot(&store) else { continue };
            let mut out = Vec::new();
            for (id, (c, seen)) in &current {
                match last.get(id) {
                    None => {
                        out.push(("create", c, None));
                        if seen.running {
                            out.push(("start", c, None));
                        } else if !seen.finished_at.is_empty() {
                            // Created, run and exited between two looks.
                            out.push(("start", c, None));
                            out.push(("die", c, Some(seen.exit_code)));
                        }
                    }
                    Some((_, before)) => {
                        let ran_since = seen.finished_at != before.finished_at && !seen.finished_at.is_empty();
                        if seen.running && (!before.running || ran_since) {
                            if before.running {
                                out.push(("die", c, None));
                            }
                            out.push(("start", c, None));
                        } else if !seen.running && before.running {
                            out.push(("die", c, Some(seen.exit_code)));
                        } else if !seen.running && ran_since {
                            // Started and exited between two looks.
                            out.push(("start", c, None));
                            out.push(("die", c, Some(seen.exit_code)));
                        }
                    }
                }
            }
            for (id, (c, before)) in &last {
                if !current.contains_key(id) {
                    // It exited and was removed between two looks: its exit code was never seen.
                    if before.running {
                        out.push(("die", c, None));
                    }
                    out.push(("destroy", c, None));
                }
            }
            for (action, c, code) in out {
                if matches(&filters, action, c) {
                    let mut line = event(action, c, code).to_string();
                    line.push('\n');
                    if tx.blocking_send(axum::body::Bytes::from(line)).is_err() {
                        return;
                    }
                }
            }
            last = current;
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}
