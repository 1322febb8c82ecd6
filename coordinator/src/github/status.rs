//! Commit statuses: `pending` when a workflow starts, then `success`, `failure` or `error`, each linking to the
//! dashboard, posted as `POST /repos/{owner}/{repo}/statuses/{sha}` through octocrab.
//!
//! The API base URL is configurable (`https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise
//! Server); tests point it at a local HTTP server. Credentials are a personal access token
//! ([`StatusClient::new`]) or a GitHub App installation ([`StatusClient::new_app`]: octocrab signs a JWT with the
//! app's private key, trades it for an installation token at `POST /app/installations/{id}/access_tokens`, and
//! renews that token before it expires).
//!
//! A 5xx answer or a transport failure is retried with exponential backoff (4 attempts by default); a 4xx answer
//! is not, since sending the same request again cannot help. Descriptions over GitHub's 140-character limit are
//! cut to 139 characters and `…`.

use std::time::Duration;

use octocrab::models::{AppId, InstallationId};
use octocrab::Octocrab;
use serde::Serialize;

/// GitHub refuses descriptions longer than this (in characters).
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// The state of a commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// Why a status was not posted.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("GitHub API base URL {url:?} is not usable: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("GitHub App private key is not an RSA key in PEM form: {reason}")]
    InvalidAppKey { reason: String },
    #[error("the GitHub client needs a tokio runtime; create it inside one")]
    NoRuntime,
    #[error("cannot set up the GitHub client: {reason}")]
    Client { reason: String },
    #[error("this GitHub client uses a personal access token, not a GitHub App installation")]
    NotAnApp,
    #[error("repository {name:?} is not `owner/name`")]
    InvalidRepo { name: String },
    #[error("{sha:?} is not a 40-digit hex commit SHA")]
    InvalidSha { sha: String },
    #[error("GitHub refused the status for {repo}@{sha}: HTTP {status}: {message}; {hint}")]
    Rejected { repo: String, sha: String, status: u16, message: String, hint: &'static str },
    #[error("GitHub failed to store the status for {repo}@{sha} after {attempts} attempts: HTTP {status}: {message}")]
    ServerError { repo: String, sha: String, status: u16, message: String, attempts: u32 },
    #[error(
        "cannot reach GitHub at {base_url} after {attempts} attempts: {reason}; check the API URL and the network"
    )]
    Unreachable { base_url: String, attempts: u32, reason: String },
}

/// How often and how patiently to retry 5xx answers and transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each later one.
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 4, first_delay: Duration::from_millis(500) }
    }
}

/// Posts commit statuses to one GitHub (or GitHub Enterprise) API.
#[derive(Debug, Clone)]
pub struct StatusClient {
    client: Octocrab,
    base_url: String,
    retry: RetryPolicy,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    state: StatusState,
    context: &'a str,
    description: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    target_url: &'a str,
}

impl StatusClient {
    /// A client authenticating with a personal access token. Must be called inside a tokio runtime (octocrab
    /// starts a background task for its connection pool).
    pub fn new(api_base_url: &str, token: &str) -> Result<Self, StatusError> {
        let builder = builder(api_base_url)?.personal_token(token.to_string());
        let client = builder.build().map_err(|e| StatusError::Client { reason: e.to_string() })?;
        Ok(StatusClient { client, base_url: api_base_url.to_string(), retry: RetryPolicy::default() })
    }

    /// A client authenticating as installation `installation_id` of GitHub App `app_id`, whose private key
    /// (PKCS#1 or PKCS#8 RSA, PEM) is `private_key_pem`. Must be called inside a tokio runtime.
    pub fn new_app(
        api_base_url: &str,
        app_id: u64,
        private_key_pem: &[u8],
        installation_id: u64,
    ) -> Result<Self, StatusError> {
        let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem)
            .map_err(|e| StatusError::InvalidAppKey { reason: e.to_string() })?;
        let app = builder(api_base_url)?
            .app(AppId(app_id), key)
            .build()
            .map_err(|e| StatusError::Client { reason: e.to_string() })?;
        let client = app
            .installation(InstallationId(installation_id))
            .map_err(|e| StatusError::Client { reason: e.to_string() })?;
        Ok(StatusClient { client, base_url: api_base_url.to_string(), retry: RetryPolicy::default() })
    }

    /// The GitHub App installation token this client uses (fetched or renewed when needed), for https git access
    /// to the installation's repositories (see [`crate::repo::Mirror::with_access_token`]). A client made with a
    /// personal access token has none: [`StatusError::NotAnApp`].
    pub async fn installation_token(&self) -> Result<String, StatusError> {
        use octocrab::secrecy::ExposeSecret;
        match self.client.installation_token().await {
            Ok(token) => Ok(token.expose_secret().to_string()),
            Err(octocrab::Error::InstallationTokenInvalidAuth { .. }) => Err(StatusError::NotAnApp),
            Err(octocrab::Error::GitHub { source, .. }) => Err(StatusError::Rejected {
                repo: String::new(),
                sha: String::new(),
                status: source.status_code.as_u16(),
                message: source.message.clone(),
                hint: hint(source.status_code.as_u16()),
            }),
            Err(e) => {
                Err(StatusError::Unreachable { base_url: self.base_url.clone(), attempts: 1, reason: error_chain(&e) })
            }
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy { max_attempts: retry.max_attempts.max(1), ..retry };
        self
    }

    /// Sets the status `context` of commit `sha` in `repo_full_name` (`owner/name`) to `state`.
    pub async fn post(
        &self,
        repo_full_name: &str,
        sha: &str,
        state: StatusState,
        context: &str,
        description: &str,
        target_url: &str,
    ) -> Result<(), StatusError> {
        let (owner, name) = split_repo(repo_full_name)?;
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StatusError::InvalidSha { sha: sha.to_string() });
        }
        let route = format!("/repos/{owner}/{name}/statuses/{sha}");
        let body = StatusBody { state, context, description: truncate_description(description), target_url };
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            // Any 2xx is success, whatever its body: reading the body as JSON would turn an empty or odd body into
            // an error and a second, needless post.
            let result = match self.client._post(route.as_str(), Some(&body)).await {
                Ok(response) => octocrab::map_github_error(response).await.map(drop),
                Err(e) => Err(e),
            };
            let retryable = match result {
                Ok(_) => {
                    tracing::debug!(github.repo = repo_full_name, github.sha = sha, status.state = ?state, "posted status");
                    return Ok(());
                }
                Err(octocrab::Error::GitHub { source, .. }) => {
                    let status = source.status_code.as_u16();
                    if !source.status_code.is_server_error() {
                        return Err(StatusError::Rejected {
                            repo: repo_full_name.to_string(),
                            sha: sha.to_string(),
                            status,
                            message: source.message.clone(),
                            hint: hint(status),
                        });
                    }
                    StatusError::ServerError {
                        repo: repo_full_name.to_string(),
                        sha: sha.to_string(),
                        status,
                        message: source.message.clone(),
                        attempts: attempt,
                    }
                }
                Err(e) => StatusError::Unreachable {
                    base_url: self.base_url.clone(),
                    attempts: attempt,
                    reason: error_chain(&e),
                },
            };
            if attempt >= self.retry.max_attempts {
                return Err(retryable);
            }
            tracing::warn!(
                github.repo = repo_full_name,
                github.sha = sha,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                error = %retryable,
                "posting a commit status failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }
}

fn builder(
    api_base_url: &str,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
    StatusError,
> {
    let invalid =
        |reason: &str| StatusError::InvalidBaseUrl { url: api_base_url.to_string(), reason: reason.to_string() };
    if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
        return Err(invalid("it must start with https:// (or http:// for a local server)"));
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(StatusError::NoRuntime);
    }
    Ok(Octocrab::builder()
        .base_uri(api_base_url)
        .map_err(|e| invalid(&e.to_string()))?
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30))))
}

/// `owner/name`, each part made of the characters GitHub allows (so the route needs no escaping).
fn split_repo(full_name: &str) -> Result<(&str, &str), StatusError> {
    let invalid = || StatusError::InvalidRepo { name: full_name.to_string() };
    let (owner, name) = full_name.split_once('/').ok_or_else(invalid)?;
    let part_ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if part_ok(owner) && part_ok(name) {
        Ok((owner, name))
    } else {
        Err(invalid())
    }
}

/// At most [`MAX_DESCRIPTION_CHARS`] characters: longer text is cut and ends with `…`.
pub fn truncate_description(description: &str) -> String {
    if description.chars().count() <= MAX_DESCRIPTION_CHARS {
        return description.to_string();
    }
    let mut cut: String = description.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => "check the token (or the GitHub App's key and installation)",
        403 => {
            "check that the token may write commit statuses (repo:status scope, or statuses: write) and the rate limit"
        }
        404 => "check the repository name and that the token can see it",
        422 => "check that the commit exists in the repository and the state, context and URL are valid",
        _ => "check the request",
    }
}

/// An error and its sources, outermost first (octocrab's own message omits the I/O cause).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    /// One request as the fake GitHub saw it.
    #[derive(Debug, Clone)]
    struct Recorded {
        method: Method,
        path: String,
        authorization: Option<String>,
        body: serde_json::Value,
    }

    /// A local HTTP server standing in for GitHub's API: records every request and answers from a script
    /// (then 201 once the script is used up). Access-token requests get a fixed installation token.
    struct FakeGitHub {
        base_url: String,
        requests: Arc<Mutex<Vec<Recorded>>>,
        _server: tokio::task::JoinHandle<()>,
    }

    impl FakeGitHub {
        async fn start(prefix: &str, script: Vec<(u16, &'static str)>) -> FakeGitHub {
            let requests = Arc::new(Mutex::new(Vec::new()));
            let script = Arc::new(Mutex::new(VecDeque::from(script)));
            let recorded = requests.clone();
            let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let recorded = recorded.clone();
                let script = script.clone();
                async move {
                    let authorization =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let path = uri.path().to_string();
                    recorded.lock().unwrap().push(Recorded { method, path: path.clone(), authorization, body });
                    if path.ends_with("/access_tokens") {
                        let token = r#"{"token":"ghs_installation_token","expires_at":"2099-01-01T00:00:00Z","permissions":{"statuses":"write"}}"#;
                        return (StatusCode::CREATED, token).into_response();
                    }
                    let (status, body) = script.lock().unwrap().pop_front().unwrap_or((201, r#"{"id":1,"state":"pending"}"#));
                    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
                }
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            FakeGitHub { base_url: format!("http://{address}{prefix}"), requests, _server: server }
        }

        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }
    }

    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const QUICK: RetryPolicy = RetryPolicy { max_attempts: 3, first_delay: Duration::from_millis(1) };

    #[tokio::test]
    async fn posts_a_status_with_token_auth_under_an_enterprise_prefix() {
        let github = FakeGitHub::start("/api/v3", vec![]).await;
        let client = StatusClient::new(&github.base_url, "ghp_secret").unwrap();
        let long = format!("{}tail", "x".repeat(200));
        client
            .post("octocat/Hello-World", SHA, StatusState::Pending, "drydock/build", &long, "http://ci.local/p/1")
            .await
            .unwrap();
        client.post("octocat/Hello-World", SHA, StatusState::Success, "drydock/build", "passed", "").await.unwrap();

        let requests = github.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let first = &requests[0];
        assert_eq!(first.method, Method::POST);
        assert_eq!(first.path, format!("/api/v3/repos/octocat/Hello-World/statuses/{SHA}"));
        assert_eq!(first.authorization.as_deref(), Some("Bearer ghp_secret"));
        let description = format!("{}…", "x".repeat(139));
        assert_eq!(
            first.body,
            serde_json::json!({
                "state": "pending",
                "context": "drydock/build",
                "description": description,
                "target_url": "http://ci.local/p/1",
            })
        );
        assert_eq!(
            requests[1].body,
            serde_json::json!({"state": "success", "context": "drydock/build", "description": "passed"})
        );
    }

    #[tokio::test]
    async fn any_2xx_is_success_whatever_the_body() {
        let github = FakeGitHub::start("", vec![(201, ""), (200, "not json")]).await;
        let client = StatusClient::new(&github.base_url, "t").unwrap().with_retry(QUICK);
        client.post("o/r", SHA, StatusState::Success, "ci", "ok", "").await.unwrap();
        client.post("o/r", SHA, StatusState::Success, "ci", "ok", "").await.unwrap();
        assert_eq!(github.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_422_is_not_retried_and_says_what_to_check() {
        let body = r#"{"message":"No commit found for SHA: 6113728f","documentation_url":"https://docs.github.com"}"#;
        let github = FakeGitHub::start("", vec![(422, body)]).await;
        let client = StatusClient::new(&github.base_url, "t").unwrap().with_retry(QUICK);
        let err = client.post("o/r", SHA, StatusState::Failure, "ci", "failed", "").await.unwrap_err();
        assert!(matches!(err, StatusError::Rejected { status: 422, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("No commit found for SHA") && text.contains("check that the commit exists"), "{text}");
        assert_eq!(github.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_500_is_retried_with_backoff() {
        let github = FakeGitHub::start("", vec![(500, r#"{"message":"oops"}"#), (502, "")]).await;
        let client = StatusClient::new(&github.base_url, "t").unwrap().with_retry(QUICK);
        client.post("o/r", SHA, StatusState::Error, "ci", "x", "").await.unwrap();
        assert_eq!(github.requests().len(), 3);

        let github = FakeGitHub::start("", vec![(500, r#"{"message":"oops"}"#); 3]).await;
        let client = StatusClient::new(&github.base_url, "t").unwrap().with_retry(QUICK);
        let err = client.post("o/r", SHA, StatusState::Error, "ci", "x", "").await.unwrap_err();
        assert!(matches!(err, StatusError::ServerError { status: 500, attempts: 3, .. }), "{err}");
        assert!(err.to_string().contains("oops"), "{err}");
        assert_eq!(github.requests().len(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let client = StatusClient::new(&format!("http://{address}"), "t").unwrap().with_retry(QUICK);
        let err = client.post("o/r", SHA, StatusState::Error, "ci", "x", "").await.unwrap_err();
        assert!(matches!(err, StatusError::Unreachable { attempts: 3, .. }), "{err}");
    }

    #[tokio::test]
    async fn bad_arguments_send_nothing() {
        let github = FakeGitHub::start("", vec![]).await;
        let client = StatusClient::new(&github.base_url, "t").unwrap();
        let err = client.post("o/r", "HEAD", StatusState::Success, "ci", "", "").await.unwrap_err();
        assert!(matches!(err, StatusError::InvalidSha { .. }));
        let err = client.post("o/r/../x", SHA, StatusState::Success, "ci", "", "").await.unwrap_err();
        assert!(matches!(err, StatusError::InvalidRepo { .. }));
        assert!(github.requests().is_empty());
    }

    #[tokio::test]
    async fn github_app_auth_trades_a_jwt_for_an_installation_token() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github");
        let private_key = std::fs::read(format!("{dir}/app-private-key.pem")).unwrap();
        let public_key = std::fs::read(format!("{dir}/app-public-key.pem")).unwrap();
        let github = FakeGitHub::start("/api/v3", vec![]).await;
        let client = StatusClient::new_app(&github.base_url, 1234, &private_key, 42).unwrap();
        client.post("o/r", SHA, StatusState::Success, "ci", "ok", "").await.unwrap();
        client.post("o/r", SHA, StatusState::Success, "ci", "ok again", "").await.unwrap();

        let requests = github.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        let status_path = format!("/api/v3/repos/o/r/statuses/{SHA}");
        // The installation token is fetched once and reused.
        assert_eq!(paths, ["/api/v3/app/installations/42/access_tokens", &status_path, &status_path]);
        assert_eq!(requests[0].method, Method::POST);

        let jwt = requests[0].authorization.as_deref().unwrap().strip_prefix("Bearer ").unwrap();
        #[derive(serde::Deserialize)]
        struct Claims {
            iss: u64,
            iat: u64,
            exp: u64,
        }
        let key = octocrab::jsonwebtoken::DecodingKey::from_rsa_pem(&public_key).unwrap();
        let validation = octocrab::jsonwebtoken::Validation::new(octocrab::jsonwebtoken::Algorithm::RS256);
        let claims = octocrab::jsonwebtoken::decode::<Claims>(jwt, &key, &validation).unwrap().claims;
        assert_eq!(claims.iss, 1234);
        assert!(claims.exp > claims.iat && claims.exp - claims.iat <= 600, "GitHub accepts JWTs of at most 10 minutes");

        for request in &requests[1..] {
            assert_eq!(request.authorization.as_deref(), Some("Bearer ghs_installation_token"));
        }
        // The cached token serves git access too, without another exchange.
        assert_eq!(client.installation_token().await.unwrap(), "ghs_installation_token");
        assert_eq!(github.requests().len(), 3);
        let pat = StatusClient::new(&github.base_url, "ghp_x").unwrap();
        assert!(matches!(pat.installation_token().await, Err(StatusError::NotAnApp)));
        assert!(matches!(
            StatusClient::new_app(&github.base_url, 1, b"not a key", 42),
            Err(StatusError::InvalidAppKey { .. })
        ));
    }

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        assert_eq!(truncate_description("short"), "short");
        let exact = "é".repeat(140);
        assert_eq!(truncate_description(&exact), exact);
        let long = "ü".repeat(141);
        let cut = truncate_description(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with("ü…"));
    }

    #[test]
    fn repository_names_are_checked() {
        assert_eq!(split_repo("octocat/Hello-World.rs").unwrap(), ("octocat", "Hello-World.rs"));
        for bad in ["", "octocat", "a/b/c", "/b", "a/", "a/..", "a b/c", "a/b?x=1", "a/b#"] {
            assert!(matches!(split_repo(bad), Err(StatusError::InvalidRepo { .. })), "{bad:?}");
        }
    }

    #[test]
    fn client_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(matches!(StatusClient::new("https://api.github.com", "t"), Err(StatusError::NoRuntime)));
        assert!(matches!(StatusClient::new("ftp://x", "t"), Err(StatusError::InvalidBaseUrl { .. })));
    }
}
