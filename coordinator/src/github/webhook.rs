//! GitHub webhook deliveries: signature check and payload parsing, the untrusted edge of `POST /webhooks/github`.
//!
//! [`verify_signature`] checks `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the project's webhook
//! secret, compared in constant time) before anything else looks at the body. [`parse_event`] turns the body into
//! typed events holding only the fields Drydock uses; [`WebhookEvent::trigger`] says whether an event starts a
//! pipeline and with what. Webhooks must be configured with content type `application/json`.
//!
//! What triggers: `push` to a branch or tag (not a deletion: `deleted` or an all-zero `after`), and `pull_request`
//! with action `opened`, `synchronize` or `reopened`. A pull request whose head repository differs from the base
//! repository (or was deleted) is a fork: the coordinator withholds secrets from it unless the project opts in.

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;

/// Largest body accepted (GitHub caps payloads at 25 MB).
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;

/// Why a delivery's signature is not accepted; the server answers 401 and stores nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the project has no webhook secret; set one in the project and in GitHub's webhook settings")]
    NoSecret,
    #[error("missing X-Hub-Signature-256 header; set a secret in GitHub's webhook settings")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header: expected `sha256=` and 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body; check that the webhook secret matches the project's")]
    Mismatch,
}

/// Why a delivery's body cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{event} payload is {size_bytes} bytes, more than the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge { event: String, size_bytes: usize },
    #[error("{event} payload is form-encoded; set the webhook's content type to application/json in GitHub")]
    FormEncoded { event: String },
    #[error("{event} payload: at `{path}` (line {line}, column {column}): {message}")]
    Json { event: String, path: String, line: usize, column: usize, message: String },
    #[error("{event} payload: `{path}` {reason}")]
    Invalid { event: String, path: &'static str, reason: String },
}

/// A parsed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// Sent when a webhook is created.
    Ping {
        zen: Option<String>,
        hook_id: Option<u64>,
    },
    Push(PushEvent),
    PullRequest(PullRequestEvent),
    /// An event Drydock does not act on (`issues`, `check_run`, …), accepted and dropped.
    Ignored {
        event: String,
        reason: String,
    },
}

/// The parts of a `push` payload Drydock uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub forced: bool,
    pub compare: Option<String>,
    pub repository: Repository,
    pub head_commit: Option<HeadCommit>,
    pub pusher: Option<Pusher>,
    pub sender: Option<User>,
}

/// The parts of a `pull_request` payload Drydock uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    pub html_url: Option<String>,
    pub user: Option<User>,
    pub head: PullRequestRef,
    pub base: PullRequestRef,
}

/// A pull request's head or base.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestRef {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    /// `null` when the head's repository (a fork) was deleted.
    pub repo: Option<Repository>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    pub clone_url: String,
    pub html_url: Option<String>,
    pub default_branch: Option<String>,
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HeadCommit {
    pub id: String,
    pub message: String,
    pub author: CommitAuthor,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitAuthor {
    pub name: String,
    pub email: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pusher {
    pub name: String,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
}

/// What a triggering event asks for: a pipeline of `repo_full_name` at `sha`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The repository the pipeline belongs to (the base repository of a pull request).
    pub repo_full_name: String,
    pub clone_url: String,
    /// The commit to build (a pull request's head).
    pub sha: String,
    /// The pushed branch, or a pull request's head branch.
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub pull_request: Option<PullRequestInfo>,
    /// The head commit's message for a push; a pull request's title (its payload carries no commit message).
    pub commit_message: String,
    /// The head commit's author for a push (else the pusher); the pull request's author's login.
    pub author: String,
    pub compare_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestInfo {
    pub number: u64,
    /// The head's `owner/name`; `None` when that repository was deleted.
    pub head_repo: Option<String>,
    pub base_repo: String,
    /// The head comes from another repository than the base (or from a deleted one): secrets are withheld.
    pub is_fork: bool,
    pub head_ref: String,
}

/// Checks `X-Hub-Signature-256` (`sha256=<64 hex digits>`) against HMAC-SHA256(`secret`, `body`) in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::NoSecret)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value GitHub would send for `body` (tests, benchmarks, and redelivery tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Parses a delivery's body according to its `X-GitHub-Event` header.
pub fn parse_event(event: &str, body: &[u8]) -> Result<WebhookEvent, PayloadError> {
    match event {
        "ping" => {
            #[derive(Deserialize)]
            struct Ping {
                zen: Option<String>,
                hook_id: Option<u64>,
            }
            let ping: Ping = parse_json(event, body)?;
            Ok(WebhookEvent::Ping { zen: ping.zen, hook_id: ping.hook_id })
        }
        "push" => {
            let push: PushEvent = parse_json(event, body)?;
            check_sha(event, "after", &push.after)?;
            check_sha(event, "before", &push.before)?;
            check_repository(event, "repository", &push.repository)?;
            if !push.git_ref.starts_with("refs/") {
                return Err(invalid(event, "ref", format!("is {:?}, not a full ref name (refs/…)", push.git_ref)));
            }
            Ok(WebhookEvent::Push(push))
        }
        "pull_request" => {
            let pr: PullRequestEvent = parse_json(event, body)?;
            check_sha(event, "pull_request.head.sha", &pr.pull_request.head.sha)?;
            check_sha(event, "pull_request.base.sha", &pr.pull_request.base.sha)?;
            check_repository(event, "repository", &pr.repository)?;
            if pr.pull_request.head.git_ref.is_empty() {
                return Err(invalid(event, "pull_request.head.ref", "is empty".to_string()));
            }
            Ok(WebhookEvent::PullRequest(pr))
        }
        "" => Err(invalid(event, "X-GitHub-Event", "header is missing".to_string())),
        other => Ok(WebhookEvent::Ignored {
            event: other.to_string(),
            reason: "Drydock acts on push and pull_request events only".to_string(),
        }),
    }
}

impl WebhookEvent {
    /// The pipeline this event asks for, if any.
    pub fn trigger(&self) -> Option<Trigger> {
        match self {
            WebhookEvent::Push(push) => push.trigger(),
            WebhookEvent::PullRequest(pr) => pr.trigger(),
            WebhookEvent::Ping { .. } | WebhookEvent::Ignored { .. } => None,
        }
    }

    /// The `X-GitHub-Event` name of this event.
    pub fn name(&self) -> &str {
        match self {
            WebhookEvent::Ping { .. } => "ping",
            WebhookEvent::Push(_) => "push",
            WebhookEvent::PullRequest(_) => "pull_request",
            WebhookEvent::Ignored { event, .. } => event,
        }
    }
}

impl PushEvent {
    /// A branch or tag push; `None` for a deletion or another kind of ref.
    pub fn trigger(&self) -> Option<Trigger> {
        if self.deleted || self.after.bytes().all(|b| b == b'0') {
            return None;
        }
        let (branch, tag) = if let Some(branch) = self.git_ref.strip_prefix("refs/heads/") {
            (Some(branch.to_string()), None)
        } else if let Some(tag) = self.git_ref.strip_prefix("refs/tags/") {
            (None, Some(tag.to_string()))
        } else {
            return None;
        };
        let (commit_message, author) = match &self.head_commit {
            Some(commit) => (commit.message.clone(), commit.author.name.clone()),
            None => (String::new(), self.pusher.as_ref().map(|p| p.name.clone()).unwrap_or_default()),
        };
        Some(Trigger {
            repo_full_name: self.repository.full_name.clone(),
            clone_url: self.repository.clone_url.clone(),
            sha: self.after.to_ascii_lowercase(),
            branch,
            tag,
            pull_request: None,
            commit_message,
            author,
            compare_url: self.compare.clone(),
        })
    }
}

impl PullRequestEvent {
    /// Actions `opened`, `synchronize` and `reopened` build the head commit; others (`closed`, `labeled`, …) do not.
    pub fn trigger(&self) -> Option<Trigger> {
        if !matches!(self.action.as_str(), "opened" | "synchronize" | "reopened") {
            return None;
        }
        let pr = &self.pull_request;
        let head_repo = pr.head.repo.as_ref().map(|r| r.full_name.clone());
        let base_repo =
            pr.base.repo.as_ref().map(|r| r.full_name.clone()).unwrap_or_else(|| self.repository.full_name.clone());
        let is_fork = head_repo.as_deref() != Some(base_repo.as_str());
        let author = pr.user.as_ref().or(self.sender.as_ref()).map(|u| u.login.clone()).unwrap_or_default();
        Some(Trigger {
            repo_full_name: self.repository.full_name.clone(),
            clone_url: self.repository.clone_url.clone(),
            sha: pr.head.sha.to_ascii_lowercase(),
            branch: Some(pr.head.git_ref.clone()),
            tag: None,
            pull_request: Some(PullRequestInfo {
                number: self.number,
                head_repo,
                base_repo,
                is_fork,
                head_ref: pr.head.git_ref.clone(),
            }),
            commit_message: pr.title.clone(),
            author,
            compare_url: pr.html_url.clone(),
        })
    }
}

fn parse_json<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, PayloadError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge { event: event.to_string(), size_bytes: body.len() });
    }
    if body.starts_with(b"payload=") {
        return Err(PayloadError::FormEncoded { event: event.to_string() });
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        PayloadError::Json {
            event: event.to_string(),
            path,
            line: inner.line(),
            column: inner.column(),
            message: json_message(&inner),
        }
    })?;
    // Trailing bytes after the object would mean a truncated or concatenated body.
    deserializer.end().map_err(|inner| PayloadError::Json {
        event: event.to_string(),
        path: ".".to_string(),
        line: inner.line(),
        column: inner.column(),
        message: json_message(&inner),
    })?;
    Ok(value)
}

/// serde_json's message without its own " at line L column C" suffix (the error shows them separately).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn check_sha(event: &str, path: &'static str, sha: &str) -> Result<(), PayloadError> {
    if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid(event, path, format!("is {:?}, not a 40-digit hex commit SHA", truncated(sha))))
    }
}

fn check_repository(event: &str, path: &'static str, repository: &Repository) -> Result<(), PayloadError> {
    let valid = repository
        .full_name
        .split_once('/')
        .is_some_and(|(owner, name)| !owner.is_empty() && !name.is_empty() && !name.contains('/'));
    if !valid {
        let reason = format!("full_name is {:?}, not owner/name", truncated(&repository.full_name));
        return Err(invalid(event, path, reason));
    }
    if repository.clone_url.is_empty() {
        return Err(invalid(event, path, "clone_url is empty".to_string()));
    }
    Ok(())
}

fn truncated(text: &str) -> String {
    text.chars().take(80).collect()
}

fn invalid(event: &str, path: &'static str, reason: String) -> PayloadError {
    PayloadError::Invalid { event: event.to_string(), path, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/github/{name}.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const AFTER: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const PR_HEAD: &str = "c6f2a4bd94fbb4a1ab1c85cbbd4d5e4a3f1c8e2b";

    #[test]
    fn ping() {
        let event = parse_event("ping", &fixture("ping")).unwrap();
        assert_eq!(
            event,
            WebhookEvent::Ping { zen: Some("Keep it logically awesome.".to_string()), hook_id: Some(109948940) }
        );
        assert_eq!(event.trigger(), None);
    }

    #[test]
    fn push_to_a_branch() {
        let event = parse_event("push", &fixture("push-branch")).unwrap();
        assert_eq!(
            event.trigger(),
            Some(Trigger {
                repo_full_name: "octocat/Hello-World".to_string(),
                clone_url: "https://github.com/octocat/Hello-World.git".to_string(),
                sha: AFTER.to_string(),
                branch: Some("feature/login".to_string()),
                tag: None,
                pull_request: None,
                commit_message: "Update README.md\n\nExplain the project".to_string(),
                author: "Monalisa Octocat".to_string(),
                compare_url: Some(
                    "https://github.com/octocat/Hello-World/compare/7638417db6d5...6113728f27ae".to_string()
                ),
            })
        );
    }

    #[test]
    fn push_of_a_tag() {
        let trigger = parse_event("push", &fixture("push-tag")).unwrap().trigger().unwrap();
        assert_eq!((trigger.branch, trigger.tag.as_deref()), (None, Some("v1.2.0")));
        assert_eq!(trigger.sha, AFTER);
        assert_eq!(trigger.commit_message, "Release 1.2.0");
    }

    #[test]
    fn branch_deletion_triggers_nothing() {
        let event = parse_event("push", &fixture("push-delete")).unwrap();
        assert!(matches!(&event, WebhookEvent::Push(push) if push.deleted));
        assert_eq!(event.trigger(), None);
        // An all-zero `after` alone is a deletion too (older payloads lack `deleted`).
        let mut json: serde_json::Value = serde_json::from_slice(&fixture("push-delete")).unwrap();
        json.as_object_mut().unwrap().remove("deleted");
        let event = parse_event("push", &serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!(event.trigger(), None);
    }

    #[test]
    fn pull_request_from_a_fork() {
        let trigger = parse_event("pull_request", &fixture("pull_request-opened-fork")).unwrap().trigger().unwrap();
        assert_eq!(trigger.repo_full_name, "octocat/Hello-World");
        assert_eq!(trigger.sha, PR_HEAD);
        assert_eq!(trigger.branch.as_deref(), Some("new-topic"));
        assert_eq!(trigger.commit_message, "Amazing new feature");
        assert_eq!(trigger.author, "hubot");
        assert_eq!(
            trigger.pull_request,
            Some(PullRequestInfo {
                number: 1347,
                head_repo: Some("hubot/Hello-World".to_string()),
                base_repo: "octocat/Hello-World".to_string(),
                is_fork: true,
                head_ref: "new-topic".to_string(),
            })
        );
    }

    #[test]
    fn pull_request_from_the_same_repository() {
        let trigger =
            parse_event("pull_request", &fixture("pull_request-opened-same-repo")).unwrap().trigger().unwrap();
        let info = trigger.pull_request.unwrap();
        assert_eq!((info.number, info.is_fork), (1348, false));
        assert_eq!(info.head_repo.as_deref(), Some("octocat/Hello-World"));
    }

    #[test]
    fn pull_request_whose_fork_was_deleted_counts_as_a_fork() {
        let trigger =
            parse_event("pull_request", &fixture("pull_request-synchronize-deleted-fork")).unwrap().trigger().unwrap();
        let info = trigger.pull_request.unwrap();
        assert_eq!((info.head_repo, info.is_fork), (None, true));
    }

    #[test]
    fn closed_and_other_pull_request_actions_trigger_nothing() {
        let event = parse_event("pull_request", &fixture("pull_request-closed")).unwrap();
        assert!(matches!(&event, WebhookEvent::PullRequest(pr) if pr.action == "closed"));
        assert_eq!(event.trigger(), None);
        for action in ["labeled", "edited", "assigned", "ready_for_review"] {
            let mut json: serde_json::Value = serde_json::from_slice(&fixture("pull_request-opened-fork")).unwrap();
            json["action"] = action.into();
            let event = parse_event("pull_request", &serde_json::to_vec(&json).unwrap()).unwrap();
            assert_eq!(event.trigger(), None, "{action}");
        }
        for action in ["synchronize", "reopened"] {
            let mut json: serde_json::Value = serde_json::from_slice(&fixture("pull_request-opened-fork")).unwrap();
            json["action"] = action.into();
            let event = parse_event("pull_request", &serde_json::to_vec(&json).unwrap()).unwrap();
            assert!(event.trigger().is_some(), "{action}");
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut json: serde_json::Value = serde_json::from_slice(&fixture("pull_request-opened-fork")).unwrap();
        json["pull_request"]["head"]["sha"] = "HEAD~1".into();
        let err = parse_event("pull_request", &serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("`pull_request.head.sha`"), "{err}");

        let mut json: serde_json::Value = serde_json::from_slice(&fixture("push-branch")).unwrap();
        json["repository"]["full_name"] = "no-slash".into();
        let err = parse_event("push", &serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not owner/name"), "{err}");

        let mut json: serde_json::Value = serde_json::from_slice(&fixture("push-branch")).unwrap();
        json["head_commit"].as_object_mut().unwrap().remove("author");
        let err = parse_event("push", &serde_json::to_vec_pretty(&json).unwrap()).unwrap_err();
        assert!(matches!(&err, PayloadError::Json { path, .. } if path == "head_commit"), "{err}");
        assert!(err.to_string().contains("missing field `author`"), "{err}");
    }

    #[test]
    fn signature_matches_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" docs.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(verify_signature(b"It's a Secret to Everybody", b"Hello, World!", Some(header)), Ok(()));
        assert_eq!(sign(b"It's a Secret to Everybody", b"Hello, World!"), header);
    }

    #[test]
    fn signature_errors() {
        let secret = b"s3cret";
        let body = br#"{"zen":"hi"}"#;
        let good = sign(secret, body);
        assert_eq!(verify_signature(secret, body, Some(&good)), Ok(()));
        assert_eq!(verify_signature(secret, body, Some(&format!("  {good} "))), Ok(()));
        assert_eq!(verify_signature(secret, body, Some(&good.to_uppercase().replace("SHA256=", "sha256="))), Ok(()));
        assert_eq!(verify_signature(secret, body, None), Err(SignatureError::Missing));
        assert_eq!(verify_signature(b"", body, Some(&good)), Err(SignatureError::NoSecret));
        for bad in ["", "sha1=abc", "sha256=", "sha256=zz", &good[..good.len() - 1], &format!("{good}00")] {
            assert_eq!(verify_signature(secret, body, Some(bad)), Err(SignatureError::Malformed), "{bad:?}");
        }
        assert_eq!(verify_signature(b"other", body, Some(&good)), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(secret, br#"{"zen":"ho"}"#, Some(&good)), Err(SignatureError::Mismatch));
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(verify_signature(secret, body, Some(&flipped)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn json_errors_name_the_path_and_position() {
        let body = b"{\n  \"ref\": \"refs/heads/main\",\n  \"before\": 12\n}";
        let err = parse_event("push", body).unwrap_err();
        match &err {
            PayloadError::Json { path, line, column, .. } => {
                assert_eq!(path, "before");
                assert_eq!((*line, *column), (3, 14));
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().starts_with("push payload: at `before` (line 3, column 14): invalid type"), "{err}");

        let err = parse_event("ping", b"{\"zen\": \"x\"} trailing").unwrap_err();
        assert!(matches!(err, PayloadError::Json { .. }), "{err}");
        let err = parse_event("push", b"payload=%7B%7D").unwrap_err();
        assert!(err.to_string().contains("application/json"), "{err}");
        assert!(matches!(parse_event("", b"{}"), Err(PayloadError::Invalid { .. })));
        assert!(matches!(parse_event("push", &vec![b' '; MAX_PAYLOAD_BYTES + 1]), Err(PayloadError::TooLarge { .. })));
    }

    #[test]
    fn unknown_events_are_ignored_without_parsing() {
        let event = parse_event("check_run", b"not even json").unwrap();
        assert!(matches!(&event, WebhookEvent::Ignored { event, .. } if event == "check_run"));
        assert_eq!(event.trigger(), None);
        assert_eq!(event.name(), "check_run");
    }
}

/// Robustness: random, mutated, deeply nested and huge bodies and headers give errors, never panics, and whatever
/// parses yields well-formed triggers.
#[cfg(test)]
mod robustness_tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [&str; 4] = ["push", "pull_request", "ping", "issues"];
    const FIXTURES: [&str; 8] = [
        "ping",
        "push-branch",
        "push-tag",
        "push-delete",
        "pull_request-opened-fork",
        "pull_request-opened-same-repo",
        "pull_request-synchronize-deleted-fork",
        "pull_request-closed",
    ];

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/github/{name}.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn event_for(fixture: &str) -> &'static str {
        if fixture.starts_with("push") {
            "push"
        } else if fixture.starts_with("pull_request") {
            "pull_request"
        } else {
            "ping"
        }
    }

    /// Parses and, when it parses, checks the trigger's invariants.
    fn check(event: &str, body: &[u8]) {
        if let Ok(parsed) = parse_event(event, body) {
            if let Some(trigger) = parsed.trigger() {
                assert_eq!(trigger.sha.len(), 40);
                assert!(trigger.sha.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(trigger.branch.is_some() != trigger.tag.is_some());
                assert!(trigger.repo_full_name.contains('/'));
            }
        }
    }

    /// JSON values of every kind, including awkward ones.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            ".{0,50}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("0".repeat(40))),
            Just(serde_json::Value::from("refs/heads/")),
            Just(serde_json::Value::from("refs/tags/\u{0}\u{202e}")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Replaces the value at a random path of `root` (chosen by `choices`) with `replacement`.
    fn replace_somewhere(node: &mut serde_json::Value, choices: &[usize], replacement: serde_json::Value) {
        let Some((choice, rest)) = choices.split_first() else {
            *node = replacement;
            return;
        };
        match node {
            serde_json::Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(choice % map.len()).cloned().unwrap_or_default();
                if let Some(child) = map.get_mut(&key) {
                    replace_somewhere(child, rest, replacement);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                let len = items.len();
                replace_somewhere(&mut items[choice % len], rest, replacement);
            }
            _ => *node = replacement,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(event in prop::sample::select(&EVENTS[..]), body in prop::collection::vec(any::<u8>(), 0..512)) {
            check(event, &body);
        }

        #[test]
        fn byte_mutations_of_real_payloads_never_panic(
            fixture_name in prop::sample::select(&FIXTURES[..]),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut body = fixture(fixture_name);
            for (index, byte, kind) in edits {
                let at = index.index(body.len().max(1));
                match kind {
                    0 if at < body.len() => body[at] = byte,
                    1 => body.insert(at.min(body.len()), byte),
                    _ if at < body.len() => { body.remove(at); }
                    _ => {}
                }
            }
            check(event_for(fixture_name), &body);
        }

        #[test]
        fn field_replacements_in_real_payloads_never_panic(
            fixture_name in prop::sample::select(&FIXTURES[..]),
            path in prop::collection::vec(any::<usize>(), 0..5),
            replacement in json_value(),
        ) {
            let mut json: serde_json::Value = serde_json::from_slice(&fixture(fixture_name)).unwrap();
            replace_somewhere(&mut json, &path, replacement);
            check(event_for(fixture_name), &serde_json::to_vec(&json).unwrap());
        }

        #[test]
        fn random_signature_headers_are_refused(header in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(verify_signature(b"secret", &body, Some(&header)).is_err());
        }
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        for event in ["push", "pull_request", "ping"] {
            // In a field Drydock does not read (serde skips it) and in one it reads.
            for field in ["extra", "ref", "zen"] {
                let mut body = format!("{{\"{field}\":").into_bytes();
                body.extend(std::iter::repeat_n(b'[', 200_000));
                body.extend(std::iter::repeat_n(b']', 200_000));
                body.push(b'}');
                let result = parse_event(event, &body);
                if event == "ping" && field != "zen" {
                    // A ping requires nothing else: skipping the deep value must simply work.
                    assert!(result.is_ok(), "{result:?}");
                } else {
                    assert!(matches!(result, Err(PayloadError::Json { .. })), "{event} {field}: {result:?}");
                }
            }
        }
    }

    #[test]
    fn huge_payloads_are_refused_before_parsing() {
        let mut body = fixture("push-branch");
        body.resize(MAX_PAYLOAD_BYTES + 1, b' ');
        assert!(matches!(parse_event("push", &body), Err(PayloadError::TooLarge { .. })));
        // Just under the limit, a huge string field still parses (GitHub sends long commit lists).
        let mut json: serde_json::Value = serde_json::from_slice(&fixture("push-branch")).unwrap();
        json["head_commit"]["message"] = "m".repeat(MAX_PAYLOAD_BYTES - 64 * 1024).into();
        let body = serde_json::to_vec(&json).unwrap();
        assert!(body.len() < MAX_PAYLOAD_BYTES);
        let trigger = parse_event("push", &body).unwrap().trigger().unwrap();
        assert_eq!(trigger.commit_message.len(), MAX_PAYLOAD_BYTES - 64 * 1024);
    }
}
