//! The coordinator's runner API (`docs/runner-protocol.md`) as blocking calls over `ureq`: one method per
//! endpoint, answers parsed into `config_schema::wire` types, and errors sorted by what the agent does about
//! them — [`ApiError::Away`] (connection refused, timeouts, `5xx`: retry with [`Backoff`]),
//! [`ApiError::LeaseLost`] (stop the job, report nothing), [`ApiError::Conflict`] (a log gap: resend from the
//! offset given), and the rest, which no retry fixes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use config_schema::wire::{JobAssignment, JobEvent, JobResult, TestResults, UnixMillis};
use serde::{Deserialize, Serialize};
use ureq::http;

/// What went wrong talking to the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not reachable, or it answered `5xx`: retry later.
    #[error("the coordinator is away ({0}); retrying")]
    Away(String),
    #[error("the coordinator no longer leases this job to this runner (409 lease_lost): stopping it")]
    LeaseLost,
    /// A log chunk left a gap; the coordinator has the step's log up to `expected_offset`.
    #[error("the coordinator expects log offset {expected_offset:?} (409 conflict)")]
    Conflict { expected_offset: Option<u64> },
    /// A leased job whose assignment this runner cannot read (a newer or broken coordinator).
    #[error("cannot read the assignment of job {job_id}: {message}")]
    BadAssignment { job_id: String, message: String },
    #[error("the coordinator refused the runner token (401): {0}")]
    Unauthorized(String),
    /// Any other answer: a bug on one side or a refused request; retrying does not help.
    #[error("{method} {path}: the coordinator answered {status} {code}: {message}")]
    Refused { method: &'static str, path: String, status: u16, code: String, message: String },
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// A JSON problem as the coordinator writes it.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    expected_offset: Option<u64>,
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    registration_token: &'a str,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    resource_classes: &'a [String],
}

/// The answer to a registration: the runner's identity and its token (shown once).
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    pub runner_id: String,
    pub token: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Deserialize)]
pub struct Heartbeat {
    pub lease_expires_at: UnixMillis,
    #[serde(default)]
    pub cancel: bool,
}

/// One workspace layer of an upstream job.
#[derive(Debug, Clone, Deserialize)]
pub struct LayerRef {
    pub url: String,
    #[serde(default)]
    pub size_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Layers {
    #[serde(default)]
    layers: Vec<LayerRef>,
}

/// A coordinator at `base` (`http://host:port`), as one runner.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

enum Body<'a> {
    Empty,
    Json(Vec<u8>),
    File(&'a Path),
}

impl Client {
    /// A client without a runner token (for [`Client::register`]).
    pub fn new(base: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("drydock-runner/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(10)))
            // A long-poll lease waits up to 30 s; anything longer than this is a coordinator gone quiet.
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .build()
            .new_agent();
        Client { base: base.trim_end_matches('/').to_owned(), token: None, agent }
    }

    /// The same coordinator, calling as the runner holding `token`.
    pub fn with_token(&self, token: &str) -> Client {
        Client { token: Some(token.to_owned()), ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn call(&self, method: &'static str, path: &str, body: Body) -> Result<http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let mut b = http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        let bad = |e: http::Error| ApiError::Refused {
            method,
            path: path.to_owned(),
            status: 0,
            code: "bad_request".into(),
            message: format!("cannot build the request: {e}"),
        };
        let sent = match body {
            Body::Empty => self.agent.run(b.header("Content-Length", "0").body(()).map_err(bad)?),
            Body::Json(bytes) => self.agent.run(b.header("Content-Type", "application/json").body(bytes).map_err(bad)?),
            Body::File(file) => {
                let f = std::fs::File::open(file)
                    .map_err(|e| ApiError::Away(format!("cannot read {}: {e}", file.display())))?;
                self.agent.run(b.header("Content-Type", "application/octet-stream").body(f).map_err(bad)?)
            }
        };
        let mut response = sent.map_err(|e| ApiError::Away(format!("{method} {url}: {e}")))?;
        let status = response.status().as_u16();
        if status < 300 {
            return Ok(response);
        }
        let text = response.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
        let problem: Problem = serde_json::from_str(&text).unwrap_or_default();
        Err(match (status, problem.error.as_str()) {
            (s, _) if s >= 500 => ApiError::Away(format!("{method} {url}: {s} {}", problem.message)),
            (409, "lease_lost") => ApiError::LeaseLost,
            (409, "conflict") if problem.expected_offset.is_some() => {
                ApiError::Conflict { expected_offset: problem.expected_offset }
            }
            (401, _) => ApiError::Unauthorized(problem.message),
            _ => ApiError::Refused {
                method,
                path: path.to_owned(),
                status,
                code: problem.error,
                message: if problem.message.is_empty() { text } else { problem.message },
            },
        })
    }

    fn json<T: Serialize + ?Sized>(value: &T) -> Body<'static> {
        // Serialising plain wire data cannot fail (string keys, no non-finite floats).
        Body::Json(serde_json::to_vec(value).unwrap_or_default())
    }

    fn read<T: for<'de> Deserialize<'de>>(path: &str, mut r: http::Response<ureq::Body>) -> Result<T> {
        let text = r
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| ApiError::Away(format!("reading the answer to {path}: {e}")))?;
        serde_json::from_str(&text).map_err(|e| ApiError::Refused {
            method: "POST",
            path: path.to_owned(),
            status: 200,
            code: "bad_answer".into(),
            message: format!("the answer is not what this runner reads ({e}); upgrade the runner or the coordinator"),
        })
    }

    /// `POST /api/v1/runners/register`.
    pub fn register(
        &self,
        registration_token: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        resource_classes: &[String],
    ) -> Result<Registered> {
        let path = "/api/v1/runners/register";
        let body = RegisterRequest { registration_token, name, labels, resource_classes };
        let r = self.call("POST", path, Self::json(&body))?;
        Self::read(path, r)
    }

    /// `POST /api/v1/runners/lease`: a job, or `None` when none came within `wait_ms`.
    pub fn lease(&self, wait_ms: u64) -> Result<Option<JobAssignment>> {
        let path = "/api/v1/runners/lease";
        let r = self.call("POST", path, Self::json(&serde_json::json!({ "wait_ms": wait_ms })))?;
        if r.status().as_u16() == 204 {
            return Ok(None);
        }
        let value: serde_json::Value = Self::read(path, r)?;
        match serde_json::from_value::<JobAssignment>(value.clone()) {
            // The ID becomes a path segment on the runner (its job directory, removed afterwards) and in every
            // URL about the job: `..` or `/` in it would name the runner's own data.
            Ok(a) if !is_plain_id(&a.job.id) => Err(ApiError::Refused {
                method: "POST",
                path: path.to_owned(),
                status: 200,
                code: "bad_answer".into(),
                message: format!("the lease names job `{}`: an ID must be letters, digits, `-` or `_`", a.job.id),
            }),
            Ok(a) => Ok(Some(a)),
            // The job is leased to us now: say so rather than let its lease run out.
            Err(e) => match value.pointer("/job/id").and_then(|v| v.as_str()) {
                Some(id) => Err(ApiError::BadAssignment {
                    job_id: id.to_owned(),
                    message: format!("{e}; upgrade the runner or the coordinator"),
                }),
                None => Err(ApiError::Refused {
                    method: "POST",
                    path: path.to_owned(),
                    status: 200,
                    code: "bad_answer".into(),
                    message: format!("the lease answer is not a job assignment ({e})"),
                }),
            },
        }
    }

    /// `POST /api/v1/jobs/{id}/heartbeat`.
    pub fn heartbeat(&self, job_id: &str) -> Result<Heartbeat> {
        let path = format!("/api/v1/jobs/{}/heartbeat", segment(job_id));
        let r = self.call("POST", &path, Body::Empty)?;
        Self::read(&path, r)
    }

    /// `POST /api/v1/jobs/{id}/events`: `events` in order.
    pub fn events(&self, job_id: &str, events: &[JobEvent]) -> Result<()> {
        let path = format!("/api/v1/jobs/{}/events", segment(job_id));
        self.call("POST", &path, Self::json(events)).map(drop)
    }

    /// `POST /api/v1/jobs/{id}/test-results`.
    pub fn test_results(&self, results: &TestResults) -> Result<()> {
        let path = format!("/api/v1/jobs/{}/test-results", segment(&results.job_id));
        self.call("POST", &path, Self::json(results)).map(drop)
    }

    /// `PUT /api/v1/jobs/{id}/artifacts/{path}`: `file`'s bytes under the artifact path `rel`.
    pub fn put_artifact(&self, job_id: &str, rel: &str, file: &Path) -> Result<()> {
        let encoded: Vec<String> = rel.split('/').filter(|s| !s.is_empty()).map(segment).collect();
        let path = format!("/api/v1/jobs/{}/artifacts/{}", segment(job_id), encoded.join("/"));
        self.call("PUT", &path, Body::File(file)).map(drop)
    }

    /// `PUT /api/v1/jobs/{id}/workspace`: one layer (a tar file).
    pub fn put_workspace(&self, job_id: &str, tar: &Path) -> Result<()> {
        let path = format!("/api/v1/jobs/{}/workspace", segment(job_id));
        self.call("PUT", &path, Body::File(tar)).map(drop)
    }

    /// `GET /api/v1/jobs/{id}/workspace`: the upstream jobs' layers, in order.
    pub fn workspace_layers(&self, job_id: &str) -> Result<Vec<LayerRef>> {
        let path = format!("/api/v1/jobs/{}/workspace", segment(job_id));
        let r = self.call("GET", &path, Body::Empty)?;
        Self::read::<Layers>(&path, r).map(|l| l.layers)
    }

    /// `GET` a layer's URL (as the coordinator gave it: a path under the base) into `out`.
    pub fn download(&self, url: &str, out: &mut dyn std::io::Write) -> Result<u64> {
        // Only a path under the base, absolute (`/api/…`) or as a full URL that is exactly the base followed by
        // `/`: `https://ci.example.com.evil.net/…` or a relative `@evil.net/…` would take the token elsewhere.
        let base = self.base.trim_end_matches('/');
        let path = match url.strip_prefix(base) {
            Some(rest) if url.contains("://") && rest.starts_with('/') => rest,
            _ if !url.contains("://") && url.starts_with('/') && !url.starts_with("//") => url,
            _ => {
                return Err(ApiError::Refused {
                    method: "GET",
                    path: url.to_owned(),
                    status: 0,
                    code: "bad_request".into(),
                    message: "a workspace layer outside the coordinator: refusing to send the runner token there"
                        .into(),
                })
            }
        };
        let mut r = self.call("GET", path, Body::Empty)?;
        std::io::copy(&mut r.body_mut().as_reader(), out)
            .map_err(|e| ApiError::Away(format!("downloading {path}: {e}")))
    }

    /// `POST /api/v1/jobs/{id}/complete`.
    pub fn complete(&self, result: &JobResult) -> Result<()> {
        let path = format!("/api/v1/jobs/{}/complete", segment(&result.job_id));
        self.call("POST", &path, Self::json(result)).map(drop)
    }
}

/// One URL path segment, percent-encoded (RFC 3986 unreserved characters kept).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Exponential backoff for a coordinator that is away: 1 s doubling to 30 s, each wait with ±25 % jitter (so
/// many runners do not return in step).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: Backoff::FIRST }
    }
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(30);

    /// The next wait (jittered), doubling the one after.
    pub fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        // A factor in [0.75, 1.25) from the clock's nanoseconds: enough spread, no generator to seed.
        let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
        base.mul_f64(factor)
    }

    pub fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }
}

/// Sleeps `d`, waking every 100 ms to ask `stop`; true when stopped early.
pub fn sleep_unless(d: Duration, stop: &dyn Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + d;
    loop {
        if stop() {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= end {
            return false;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// Calls `f` until it answers something other than [`ApiError::Away`], waiting with [`Backoff`] between tries;
/// gives up (returning the last `Away`) when `stop` says so.
pub fn retrying<T>(what: &str, stop: &dyn Fn() -> bool, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut backoff = Backoff::default();
    loop {
        match f() {
            Err(ApiError::Away(reason)) => {
                let wait = backoff.delay();
                tracing::warn!(what, reason = %reason, retry_in_ms = wait.as_millis() as u64, "coordinator away");
                if sleep_unless(wait, stop) {
                    return Err(ApiError::Away(reason));
                }
            }
            other => return other,
        }
    }
}

/// Whether a job ID from the coordinator is safe as a path segment: non-empty, letters, digits, `-`, `_`.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| b.delay()).collect();
        let bases = [1, 2, 4, 8, 16, 30, 30, 30];
        for (w, base) in waits.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(*w >= base.mul_f64(0.75) && *w < base.mul_f64(1.25), "{w:?} vs {base:?}");
        }
        b.reset();
        assert!(b.delay() < Duration::from_millis(1250));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("j-1"), "j-1");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn job_ids_that_could_name_runner_paths_are_refused() {
        assert!(is_plain_id("42") && is_plain_id("j-88e0_1"));
        for bad in ["", ".", "..", "a/b", "a b", "%2e%2e"] {
            assert!(!is_plain_id(bad), "{bad:?}");
        }
    }

    /// A layer URL must stay on the coordinator: the runner token goes with the request.
    #[test]
    fn layer_urls_off_the_coordinator_are_refused_before_any_request() {
        let client = Client::new("http://127.0.0.1:9/");
        let mut sink = Vec::new();
        for url in
            ["http://127.0.0.1:9.evil.net/x", "http://127.0.0.1:9@evil.net/x", "@evil.net/x", "//evil.net/x", "x"]
        {
            let err = client.download(url, &mut sink).map(|_| ()).unwrap_err();
            assert!(matches!(err, ApiError::Refused { status: 0, .. }), "{url}: {err}");
        }
    }
}
