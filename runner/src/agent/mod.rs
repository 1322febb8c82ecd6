//! `runner agent`: takes jobs from a coordinator and runs them with the same executor as `runner exec`
//! (`docs/runner-agent.md`; the protocol is `docs/runner-protocol.md`). It registers once (the runner token is
//! kept in `<data-dir>/agent.json`, mode 0600, and reused on restart), then runs `concurrency` lease loops: each
//! long-polls for a job, runs it ([`job::run_assignment`]) and polls again. A coordinator that is away is
//! retried with [`client::Backoff`]. [`Signals`] carries SIGTERM: the first stops leasing (running jobs finish,
//! then [`run`] returns), the second cancels the running jobs (reported `canceled`).

pub mod client;
pub mod events;
pub mod job;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use client::{retrying, ApiError, Backoff, Client};

/// How long one lease call waits for a job (the protocol's maximum).
pub const LEASE_WAIT_MS: u64 = 30_000;

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "no runner token in {state} and no registration token: pass --token (from `coordinator token create --runner`)"
    )]
    NoToken { state: String },
    #[error("cannot register with {url}: {source}")]
    Register {
        url: String,
        #[source]
        source: ApiError,
    },
    #[error("the coordinator refused this runner's token ({message}): delete {state} and start again with --token to register anew")]
    TokenRefused { state: String, message: String },
    #[error("{state}: {message}")]
    State { state: String, message: String },
}

/// What `runner agent` was told.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub url: String,
    pub registration_token: Option<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub resource_classes: Vec<String>,
    pub concurrency: usize,
    pub data_dir: PathBuf,
    pub engine_root: PathBuf,
}

/// Set from signal handlers.
#[derive(Debug, Default)]
pub struct Signals {
    /// First SIGTERM/SIGINT: lease no more jobs; exit when the running ones are done.
    pub stop_leasing: AtomicBool,
    /// Second: cancel the running jobs.
    pub cancel_jobs: AtomicBool,
}

/// `<data-dir>/agent.json`: who this runner is at which coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentState {
    pub url: String,
    pub runner_id: String,
    pub token: String,
    pub name: String,
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent.json")
}

/// The saved registration for `url`, if any (a registration with another coordinator is ignored).
pub fn load_state(data_dir: &Path, url: &str) -> Result<Option<AgentState>, AgentError> {
    let path = state_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::State { state: path.display().to_string(), message: e.to_string() }),
    };
    let state: AgentState = serde_json::from_str(&text).map_err(|e| AgentError::State {
        state: path.display().to_string(),
        message: format!("not a runner registration ({e}): delete it to register again"),
    })?;
    Ok((state.url.trim_end_matches('/') == url.trim_end_matches('/')).then_some(state))
}

/// Saves `state` (mode 0600: it holds the runner token), replacing the file atomically.
pub fn save_state(data_dir: &Path, state: &AgentState) -> Result<(), AgentError> {
    let path = state_path(data_dir);
    let err = |e: std::io::Error| AgentError::State { state: path.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let tmp = data_dir.join(".agent.json.tmp");
    let mut f =
        std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// The runner's token: the saved one, else a registration (retried while the coordinator is away).
fn registration(opts: &AgentOptions, signals: &Signals) -> Result<AgentState, AgentError> {
    if let Some(state) = load_state(&opts.data_dir, &opts.url)? {
        tracing::info!(runner.id = %state.runner_id, "using the saved registration");
        return Ok(state);
    }
    let Some(token) = &opts.registration_token else {
        return Err(AgentError::NoToken { state: state_path(&opts.data_dir).display().to_string() });
    };
    let client = Client::new(&opts.url);
    let stop = || signals.stop_leasing.load(Ordering::Relaxed);
    let registered =
        retrying("register", &stop, || client.register(token, &opts.name, &opts.labels, &opts.resource_classes))
            .map_err(|source| AgentError::Register { url: opts.url.clone(), source })?;
    let state = AgentState {
        url: opts.url.clone(),
        runner_id: registered.runner_id,
        token: registered.token,
        name: opts.name.clone(),
    };
    save_state(&opts.data_dir, &state)?;
    tracing::info!(runner.id = %state.runner_id, runner.name = %state.name, "registered");
    Ok(state)
}

/// Runs the agent until `signals.stop_leasing` is set and every running job is done.
pub fn run(opts: &AgentOptions, signals: &Signals) -> Result<(), AgentError> {
    let state = registration(opts, signals)?;
    let client = Client::new(&opts.url).with_token(&state.token);
    let refused: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let stopping =
        || signals.stop_leasing.load(Ordering::Relaxed) || refused.lock().map(|r| r.is_some()).unwrap_or(true);
    std::thread::scope(|scope| {
        for n in 0..opts.concurrency.max(1) {
            let client = &client;
            let refused = &refused;
            let stopping = &stopping;
            scope.spawn(move || {
                let ctx = job::JobContext {
                    client,
                    engine_root: &opts.engine_root,
                    data_dir: &opts.data_dir,
                    cancel_all: &signals.cancel_jobs,
                };
                let mut backoff = Backoff::default();
                while !stopping() {
                    match client.lease(LEASE_WAIT_MS) {
                        Ok(Some(assignment)) => {
                            backoff.reset();
                            job::run_assignment(&assignment, &ctx);
                        }
                        Ok(None) => backoff.reset(),
                        Err(ApiError::BadAssignment { job_id, message }) => {
                            backoff.reset();
                            job::report_unreadable(client, &job_id, &message);
                        }
                        Err(ApiError::Unauthorized(message)) => {
                            if let Ok(mut r) = refused.lock() {
                                r.get_or_insert(message);
                            }
                        }
                        Err(e) => {
                            let wait = backoff.delay();
                            tracing::warn!(lease_loop = n, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot lease");
                            client::sleep_unless(wait, stopping);
                        }
                    }
                }
            });
        }
    });
    match refused.into_inner().ok().flatten() {
        Some(message) => {
            Err(AgentError::TokenRefused { state: state_path(&opts.data_dir).display().to_string(), message })
        }
        None => Ok(()),
    }
}

/// `k=v,k2=v2` labels.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("--labels: `{pair}` is not key=value"));
        };
        if k.is_empty() {
            return Err(format!("--labels: `{pair}` has an empty key"));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_saved_0600_and_reused_only_for_the_same_coordinator() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let state =
            AgentState { url: "http://c:1".into(), runner_id: "r1".into(), token: "drt_x".into(), name: "n".into() };
        save_state(dir.path(), &state).expect("save");
        let mode = std::fs::metadata(dir.path().join("agent.json")).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_state(dir.path(), "http://c:1/").expect("load").map(|s| s.token), Some("drt_x".into()));
        assert!(load_state(dir.path(), "http://other:1").expect("load").is_none());
    }

    #[test]
    fn labels_parse_and_errors_name_the_pair() {
        let l = parse_labels("os=linux, gpu=yes").expect("valid");
        assert_eq!(l.get("gpu").map(String::as_str), Some("yes"));
        assert!(parse_labels("os").expect_err("no =").contains("`os`"));
    }
}
