//! `POST /build`: the classic builder's endpoint (what `DOCKER_BUILDKIT=0 docker build` and docker-compose v1
//! call). The request body is the context as a tar (plain or gzip); the query names the tags (`t`, repeatable),
//! the Dockerfile inside the context (`dockerfile`), `buildargs` and `labels` (JSON objects), `target`,
//! `nocache`, `pull`, `q` and `networkmode`.
//!
//! The context is staged in a file under the engine root; the build runs as an `engine build … -` child process
//! with that file as its stdin, as `exec` does: the builder forks container monitors, which must not happen from this multi-threaded server. Its output lines are streamed as
//! `{"stream": "…\n"}`; at the end come `{"aux": {"ID": "sha256:…"}}` on success, or `{"error": …,
//! "errorDetail": {"message": …}}` with the builder's last error line, which the docker CLI prints before it
//! exits with code 1. BuildKit sessions (`version=2`) are refused with a clear message: the docker CLI then needs
//! `DOCKER_BUILDKIT=0`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;

use super::attach::channel_body;
use super::errors::{ApiError, ApiResult};
use super::images::progress_line as line;
use super::ApiState;

/// The `engine build` arguments for a request's query pairs. A scoped server (a CI job's engine) builds on the
/// default bridge or without a network only: `host` would give RUN steps the runner host's loopback services,
/// and another network may belong to another job.
fn build_args(pairs: &[(String, String)], scoped: bool) -> ApiResult<Vec<String>> {
    let mut args = Vec::new();
    let json_map = |key: &str, value: &str| -> ApiResult<BTreeMap<String, Option<String>>> {
        if value.is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_str(value).map_err(|e| ApiError::bad_request(format!("invalid {key}: {e} (a JSON object)")))
    };
    let truthy = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes");
    for (key, value) in pairs {
        match key.as_str() {
            "t" if !value.is_empty() => args.extend(["-t".to_owned(), value.clone()]),
            "dockerfile" if !value.is_empty() => {
                // The Dockerfile lives in the context: a path out of it would read the server's files.
                let inside = crate::image::layer::clean_relative(std::ffi::OsStr::new(value));
                if value.starts_with('/') || inside.is_none() {
                    return Err(ApiError::bad_request(format!(
                        "dockerfile `{value}` must be a path inside the build context"
                    )));
                }
                args.extend(["-f".to_owned(), value.clone()])
            }
            "target" if !value.is_empty() => args.extend(["--target".to_owned(), value.clone()]),
            "networkmode" if !value.is_empty() && value != "default" => {
                if scoped && !matches!(value.as_str(), "bridge" | "none") {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "network mode `{value}` is not available to a build on this engine: it is scoped to one \
                             CI job (`engine serve --scope`); use the default network or `none`"
                        ),
                    ));
                }
                args.extend(["--network".to_owned(), value.clone()])
            }
            "nocache" if truthy(value) => args.push("--no-cache".to_owned()),
            "pull" if !value.is_empty() && value != "0" && value != "false" => args.push("--pull".to_owned()),
            "q" if truthy(value) => args.push("-q".to_owned()),
            "buildargs" => {
                for (k, v) in json_map("buildargs", value)? {
                    // A null value means "take it from the environment", which the server has no business doing.
                    if let Some(v) = v {
                        args.extend(["--build-arg".to_owned(), format!("{k}={v}")]);
                    }
                }
            }
            "labels" => {
                for (k, v) in json_map("labels", value)? {
                    args.extend(["--label".to_owned(), format!("{k}={}", v.unwrap_or_default())]);
                }
            }
            "version" if value == "2" => {
                return Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "BuildKit builds are not supported by engine serve: set DOCKER_BUILDKIT=0 for the classic builder",
                ))
            }
            _ => {}
        }
    }
    Ok(args)
}

/// `POST /build`.
pub async fn build(State(state): State<ApiState>, uri: Uri, body: Body) -> ApiResult<Response> {
    let axum::extract::Query(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    let args = build_args(&pairs, state.scope.is_some())?;
    // The context is staged in a file under the engine root (not held in memory), then is the child's stdin.
    let (staged, size) = super::stage_body(&state.root, body, "the build context").await?;
    if size == 0 {
        return Err(ApiError::bad_request("the request body must be the build context as a tar"));
    }
    let context = staged.reopen().map_err(|e| ApiError::internal(format!("cannot reopen the build context: {e}")))?;
    let exe = std::env::current_exe().map_err(|e| ApiError::internal(format!("cannot find the engine binary: {e}")))?;
    let iid = tempfile::NamedTempFile::new().map_err(|e| ApiError::internal(format!("cannot create a file: {e}")))?;
    let (out_r, out_w) = super::attach::pipe_pair()?;
    let err_w = out_w.try_clone().map_err(|e| ApiError::internal(format!("cannot duplicate a pipe: {e}")))?;
    let mut child = Command::new(exe)
        .arg("--root")
        .arg(state.root.path())
        .arg("build")
        .args(&args)
        .arg("--iidfile")
        .arg(iid.path())
        .arg("-")
        .stdin(Stdio::from(context))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn()
        .map_err(|e| ApiError::internal(format!("cannot run engine build: {e}")))?;
    let (tx, rx) = mpsc::channel(64);
    tokio::task::spawn_blocking(move || {
        let _staged = staged;
        let mut last_error = String::new();
        for text in BufReader::new(std::fs::File::from(out_r)).lines() {
            let Ok(text) = text else { break };
            if let Some(message) = text.strip_prefix("Error: ") {
                last_error = message.to_owned();
                continue;
            }
            let _ = tx.blocking_send(line(json!({ "stream": format!("{text}\n") })));
        }
        let status = child.wait();
        match status {
            Ok(s) if s.success() => {
                let id = std::fs::read_to_string(iid.path()).unwrap_or_default();
                let _ = tx.blocking_send(line(json!({ "aux": { "ID": id.trim() } })));
            }
            other => {
                let code = other.ok().and_then(|s| s.code()).unwrap_or(1);
                if last_error.is_empty() {
                    last_error = format!("the build failed (engine build exited {code})");
                }
                let _ = tx.blocking_send(line(
                    json!({ "error": last_error, "errorDetail": { "code": code, "message": last_error } }),
                ));
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn query_maps_to_engine_build_flags() {
        let args = build_args(
            &pairs(&[
                ("t", "app:1"),
                ("t", "app:latest"),
                ("dockerfile", "ci/Dockerfile"),
                ("buildargs", r#"{"V":"2","FROM_ENV":null}"#),
                ("labels", r#"{"team":"ci"}"#),
                ("nocache", "1"),
                ("q", "0"),
                ("networkmode", "default"),
                ("rm", "1"),
            ]),
            false,
        )
        .unwrap_or_default();
        assert_eq!(
            args,
            [
                "-t",
                "app:1",
                "-t",
                "app:latest",
                "-f",
                "ci/Dockerfile",
                "--build-arg",
                "V=2",
                "--label",
                "team=ci",
                "--no-cache"
            ]
        );
    }

    #[test]
    fn bad_json_and_buildkit_are_refused_clearly() {
        let e = build_args(&pairs(&[("buildargs", "{nope")]), false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("invalid buildargs"), "{e}");
        let e = build_args(&pairs(&[("version", "2")]), false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("DOCKER_BUILDKIT=0"), "{e}");
    }

    #[test]
    fn a_scoped_build_keeps_to_the_default_network_or_none() {
        for mode in ["host", "container:abc", "othernet"] {
            let e = build_args(&pairs(&[("networkmode", mode)]), true).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("scoped to one CI job"), "{mode}: {e}");
            assert!(build_args(&pairs(&[("networkmode", mode)]), false).is_ok(), "{mode} unscoped");
        }
        for mode in ["default", "bridge", "none"] {
            assert!(build_args(&pairs(&[("networkmode", mode)]), true).is_ok(), "{mode}");
        }
    }
}
