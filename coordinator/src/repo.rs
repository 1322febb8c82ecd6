//! Per-project bare git mirrors: the coordinator reads `.circleci/config.yml` and commit details at a SHA from here.
//!
//! A [`Mirror`] lives under `<data dir>/mirrors/<project id>` and tracks one remote (`origin`): a local path,
//! `file://` or `https://` URL. [`Mirror::fetch`] copies every branch and tag (pruning the ones gone upstream);
//! concurrent fetches of one mirror, from threads or processes, are serialised by an exclusive `flock` on
//! `drydock-fetch.lock` inside the mirror, so pipelines created at once for one project never corrupt it.
//!
//! Transports: libgit2's local transport, and https through the system OpenSSL (git2's `https` feature, which builds
//! offline against Debian's libssl-dev; a vendored OpenSSL or libssh2 would need sources we cannot fetch). There is
//! no ssh transport: give GitHub projects their https clone URL.
//!
//! Timeouts: libgit2 waits on a server without limit unless told otherwise, so a stalled server (accepting the
//! connection and never answering) would hold a pipeline's creation — and the webhook batch it is part of —
//! forever. [`set_fetch_timeouts`] sets libgit2's process-wide connect and read timeouts ([`FetchTimeouts`]);
//! `coordinator` sets them once at start-up, before any thread exists. A fetch that runs into one fails with
//! [`RepoError::FetchTimedOut`]. The read timeout bounds each wait for the next bytes, not the whole fetch: a large
//! repository still downloading is not cut off.
//!
//! User-given names are never handed to `git rev-parse` syntax: [`Mirror::resolve`] tries a full SHA, a branch, a
//! tag, a full ref name, then a SHA prefix, in that order, so `HEAD@{1}` or `:/text` are simply not found.

use std::fs::{self, File, OpenOptions};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use git2::{AutotagOption, FetchOptions, FetchPrune, ObjectType, Oid, Repository};
use nix::fcntl::{Flock, FlockArg};

/// Largest file [`Mirror::read_file`] returns (config files are far smaller; this bounds memory per request).
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Where a mirror lives: `<data dir>/mirrors/<project id>`.
const MIRRORS_DIR: &str = "mirrors";
/// The lock file inside the mirror that serialises fetches.
const LOCK_FILE: &str = "drydock-fetch.lock";
/// The one remote of a mirror.
const REMOTE: &str = "origin";
/// Every branch and tag, forced (upstream force-pushes win), pruned by [`Mirror::fetch`].
const REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// How long a fetch waits on a server, process-wide (libgit2 keeps them in globals; see [`set_fetch_timeouts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTimeouts {
    /// Longest wait for a TCP connection to the server.
    pub connect: Duration,
    /// Longest wait for the server's next bytes (each read and write), once connected.
    pub read: Duration,
}

impl FetchTimeouts {
    /// 10 s to connect (GitHub answers in well under a second; a slow network may take a few) and 60 s per read:
    /// GitHub sends progress messages while it prepares a pack, so a minute without a byte means a stalled
    /// server, and a webhook batch waits at most that long behind one.
    pub const DEFAULT: FetchTimeouts =
        FetchTimeouts { connect: Duration::from_secs(10), read: Duration::from_secs(60) };
}

/// The timeouts last given to [`set_fetch_timeouts`], in milliseconds, for error messages (0: none set).
static CONNECT_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);
static READ_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

/// Sets libgit2's server connect and read timeouts for every later fetch of this process.
///
/// # Safety
/// libgit2 keeps these in plain globals, read without synchronisation by every network operation: call this
/// before any other thread of the process can use git2 (the `coordinator` binary calls it first thing in `main`,
/// before the async runtime starts its threads).
pub unsafe fn set_fetch_timeouts(timeouts: FetchTimeouts) -> Result<(), RepoError> {
    let millis = |d: Duration, option: &'static str| {
        // 0 means "no timeout" to libgit2: a zero duration is refused rather than silently meaning forever.
        match libc::c_int::try_from(d.as_millis()) {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(RepoError::InvalidTimeout { option, millis: d.as_millis() }),
        }
    };
    let connect_ms = millis(timeouts.connect, "connect")?;
    let read_ms = millis(timeouts.read, "read")?;
    let set = |result: Result<(), git2::Error>| result.map_err(|source| RepoError::SetTimeouts { source });
    // SAFETY: the caller guarantees no other thread uses git2 meanwhile (this function's contract).
    set(unsafe { git2::opts::set_server_connect_timeout_in_milliseconds(connect_ms) })?;
    // SAFETY: as above.
    set(unsafe { git2::opts::set_server_timeout_in_milliseconds(read_ms) })?;
    CONNECT_TIMEOUT_MS.store(connect_ms as u64, Ordering::Relaxed);
    READ_TIMEOUT_MS.store(read_ms as u64, Ordering::Relaxed);
    Ok(())
}

/// What went wrong with a mirror; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("project id {id:?} cannot name a mirror directory: use letters, digits, '.', '_' and '-' only")]
    InvalidProjectId { id: String },
    #[error("repository URL is empty: give a local path, file:// or https:// URL")]
    EmptyUrl,
    #[error("repository URL {url:?} holds control characters; give a local path, file:// or https:// URL")]
    InvalidUrl { url: String },
    #[error("cannot create mirror directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("mirror {path}: cannot {op}: {source}")]
    Git { path: PathBuf, op: &'static str, source: git2::Error },
    #[error("cannot lock {path} for fetching: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot fetch {url} into mirror {path}: {source}; check that the URL is right and reachable")]
    Fetch { url: String, path: PathBuf, source: git2::Error },
    #[error(
        "fetching {url} into mirror {path} timed out (connect timeout {connect_ms} ms, read timeout {read_ms} ms): \
         {source}; the server accepted no connection or stopped answering — check that it is up and reachable, \
         or raise --git-read-timeout-secs / --git-connect-timeout-secs"
    )]
    FetchTimedOut { url: String, path: PathBuf, connect_ms: u64, read_ms: u64, source: git2::Error },
    #[error("the git {option} timeout must be between 1 ms and 24 days, not {millis} ms")]
    InvalidTimeout { option: &'static str, millis: u128 },
    #[error("cannot set libgit2's server timeouts: {source}")]
    SetTimeouts { source: git2::Error },
    #[error(
        "{url} refused the access token (user x-access-token) when fetching into mirror {path}: check that the \
         token can read this repository (its scopes, or the GitHub App's installation) and has not expired"
    )]
    TokenRefused { url: String, path: PathBuf },
    #[error(
        "{url} asks for credentials (a private repository, or a wrong URL) and the coordinator has none for it \
         (fetching into mirror {path}: {source}): give `coordinator serve --github-token` a token that can read it"
    )]
    CredentialsNeeded { url: String, path: PathBuf, source: git2::Error },
    #[error("no branch, tag or commit named {git_ref:?} in the mirror of {url}; check the name, or fetch again")]
    RefNotFound { git_ref: String, url: String },
    #[error("{git_ref:?} is an ambiguous commit prefix in the mirror of {url}; give more characters of the SHA")]
    AmbiguousRef { git_ref: String, url: String },
    #[error("{sha:?} is not a full 40-character hex commit SHA; resolve the name first")]
    InvalidSha { sha: String },
    #[error("commit {sha} is not in the mirror of {url}; fetch again, or check the SHA")]
    CommitNotFound { sha: String, url: String },
    #[error("file path {path:?} must be relative to the repository root, without '..'")]
    InvalidPath { path: String },
    #[error("{path} at commit {sha} is not a file")]
    NotAFile { path: String, sha: String },
    #[error("{path} at commit {sha} is {size_bytes} bytes, more than the {limit_bytes}-byte limit")]
    FileTooLarge { path: String, sha: String, size_bytes: usize, limit_bytes: usize },
}

impl RepoError {
    /// The remote could not be fetched (unreachable, stalled, refused credentials), as opposed to a name or file
    /// not found in a fetched mirror: what the project's dashboard page shows until a fetch succeeds.
    pub fn is_fetch_failure(&self) -> bool {
        matches!(
            self,
            RepoError::Fetch { .. }
                | RepoError::FetchTimedOut { .. }
                | RepoError::TokenRefused { .. }
                | RepoError::CredentialsNeeded { .. }
        )
    }
}

/// Commit details shown on pipelines and sent with statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The whole message (summary and body), decoded as UTF-8 with replacement characters where it is not.
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Author time, seconds since the Unix epoch.
    pub time_unix: i64,
}

/// A bare mirror of one project's repository. Cheap to clone; every call opens the repository afresh, so a
/// `Mirror` is `Send + Sync` and can be shared across tasks (run its calls in `spawn_blocking`: they do I/O).
#[derive(Debug, Clone)]
pub struct Mirror {
    path: PathBuf,
    url: String,
    access_token: Option<AccessToken>,
}

/// An https access token; never printed.
#[derive(Clone)]
struct AccessToken(String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(…)")
    }
}

impl Mirror {
    /// Opens the mirror of `project_id` under `data_dir`, creating an empty bare repository the first time, and
    /// points its remote at `url` (a later `open` with another URL re-points it). Fetches nothing.
    pub fn open(data_dir: &Path, project_id: &str, url: &str) -> Result<Mirror, RepoError> {
        if !valid_project_id(project_id) {
            return Err(RepoError::InvalidProjectId { id: project_id.to_string() });
        }
        let url = url.trim();
        if url.is_empty() {
            return Err(RepoError::EmptyUrl);
        }
        if url.chars().any(char::is_control) {
            return Err(RepoError::InvalidUrl { url: url.escape_debug().to_string() });
        }
        let path = data_dir.join(MIRRORS_DIR).join(project_id);
        fs::create_dir_all(&path).map_err(|source| RepoError::CreateDir { path: path.clone(), source })?;
        let mirror = Mirror { path, url: url.to_string(), access_token: None };
        // Two first opens at once must not both initialise: hold the fetch lock while creating.
        let _lock = mirror.lock()?;
        let repo = match Repository::open_bare(&mirror.path) {
            Ok(repo) => repo,
            Err(_) => Repository::init_bare(&mirror.path).map_err(|e| mirror.git("create a bare repository", e))?,
        };
        match repo.find_remote(REMOTE) {
            Ok(remote) if remote.url() == Some(url) => {}
            Ok(_) => repo.remote_set_url(REMOTE, url).map_err(|e| mirror.git("set the remote URL", e))?,
            Err(_) => {
                repo.remote_with_fetch(REMOTE, url, REFSPECS[0]).map_err(|e| mirror.git("add the remote", e))?;
            }
        }
        Ok(mirror)
    }

    /// The same mirror, fetching over https with `token` as the password (user `x-access-token`): a GitHub
    /// personal access token or App installation token, for private repositories. The token is kept in memory
    /// only, never in the mirror's config.
    pub fn with_access_token(mut self, token: &str) -> Mirror {
        self.access_token = Some(AccessToken(token.to_string()));
        self
    }

    /// The mirror's directory (a bare repository).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The remote URL the mirror fetches from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches every branch and tag from the remote, deleting those gone upstream. Blocks while another fetch of
    /// the same mirror (any thread or process) runs.
    pub fn fetch(&self) -> Result<(), RepoError> {
        self.fetch_refspecs(&REFSPECS, true)
    }

    /// Fetches GitHub's `refs/pull/<number>/head`: the head of a pull request from a fork is reachable only there.
    /// Nothing is pruned.
    pub fn fetch_pull_request(&self, number: u64) -> Result<(), RepoError> {
        let refspec = format!("+refs/pull/{number}/head:refs/pull/{number}/head");
        self.fetch_refspecs(&[refspec.as_str()], false)
    }

    fn fetch_refspecs(&self, refspecs: &[&str], prune: bool) -> Result<(), RepoError> {
        let _lock = self.lock()?;
        let started = Instant::now();
        let repo = self.repo()?;
        let mut remote = repo.remote_anonymous(&self.url).map_err(|e| self.git("set up the remote", e))?;
        // Set once the server refused the token (libgit2 asks again after a refusal). Declared before `options`,
        // whose callback borrows it.
        let refused = std::cell::Cell::new(false);
        let mut options = FetchOptions::new();
        if let Some(AccessToken(token)) = &self.access_token {
            let mut callbacks = git2::RemoteCallbacks::new();
            let mut offered = false;
            let refused = &refused;
            callbacks.credentials(move |_url, _user, allowed| {
                // Offering the same token again would loop: a second question means it was refused.
                if offered || !allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                    refused.set(offered);
                    return Err(git2::Error::from_str("the access token was refused"));
                }
                offered = true;
                git2::Cred::userpass_plaintext("x-access-token", token)
            });
            options.remote_callbacks(callbacks);
        }
        options.download_tags(AutotagOption::None);
        options.prune(if prune { FetchPrune::On } else { FetchPrune::Off });
        remote.fetch(refspecs, Some(&mut options), None).map_err(|source| {
            let (url, path) = (self.url.clone(), self.path.clone());
            if refused.get() {
                RepoError::TokenRefused { url, path }
            } else if source.code() == git2::ErrorCode::Auth {
                match self.access_token {
                    Some(_) => RepoError::TokenRefused { url, path },
                    None => RepoError::CredentialsNeeded { url, path, source },
                }
            } else if is_timeout(&source) {
                RepoError::FetchTimedOut {
                    url,
                    path,
                    connect_ms: CONNECT_TIMEOUT_MS.load(Ordering::Relaxed),
                    read_ms: READ_TIMEOUT_MS.load(Ordering::Relaxed),
                    source,
                }
            } else {
                RepoError::Fetch { url, path, source }
            }
        })?;
        let stats = remote.stats();
        tracing::info!(
            mirror.path = %self.path.display(),
            mirror.url = %self.url,
            fetch.objects = stats.received_objects(),
            fetch.received_bytes = stats.received_bytes(),
            fetch.duration_ms = started.elapsed().as_millis() as u64,
            "fetched mirror"
        );
        Ok(())
    }

    /// Resolves a branch name, tag name, full ref name (`refs/…`), full SHA or SHA prefix (at least 4 hex digits)
    /// to the full SHA of the commit it names (tags are peeled). Branches win over tags, tags over SHA prefixes.
    pub fn resolve(&self, git_ref: &str) -> Result<String, RepoError> {
        let repo = self.repo()?;
        let not_found = || RepoError::RefNotFound { git_ref: git_ref.to_string(), url: self.url.clone() };
        // git2's `Reference::is_valid_name` panics on a NUL byte; no ref name has one (or any control character).
        if git_ref.is_empty() || git_ref.chars().any(char::is_control) {
            return Err(not_found());
        }
        if is_full_sha(git_ref) {
            let oid = Oid::from_str(git_ref).map_err(|_| not_found())?;
            return match repo.find_commit(oid) {
                Ok(commit) => Ok(commit.id().to_string()),
                Err(_) => Err(not_found()),
            };
        }
        let mut candidates = vec![format!("refs/heads/{git_ref}"), format!("refs/tags/{git_ref}")];
        if git_ref.starts_with("refs/") {
            candidates.insert(0, git_ref.to_string());
        }
        for name in candidates {
            if !git2::Reference::is_valid_name(&name) {
                continue;
            }
            if let Ok(reference) = repo.find_reference(&name) {
                let commit = reference.peel_to_commit().map_err(|_| not_found())?;
                return Ok(commit.id().to_string());
            }
        }
        if git_ref.len() >= 4 && git_ref.len() < 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
            return match repo.find_object_by_prefix(git_ref, Some(ObjectType::Commit)) {
                Ok(object) => Ok(object.id().to_string()),
                Err(e) if e.code() == git2::ErrorCode::Ambiguous => {
                    Err(RepoError::AmbiguousRef { git_ref: git_ref.to_string(), url: self.url.clone() })
                }
                Err(_) => Err(not_found()),
            };
        }
        Err(not_found())
    }

    /// The contents of `path` (relative to the repository root, `/`-separated) at commit `sha`, or `None` when no
    /// such path exists there. A directory or submodule at `path` is an error, and so is a file over
    /// [`MAX_FILE_BYTES`]. A symbolic link yields its target path, as git stores it.
    pub fn read_file(&self, sha: &str, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        self.read_file_limited(sha, path, MAX_FILE_BYTES)
    }

    /// [`Mirror::read_file`] with a caller-chosen size limit in bytes.
    pub fn read_file_limited(&self, sha: &str, path: &str, limit_bytes: usize) -> Result<Option<Vec<u8>>, RepoError> {
        let relative = repository_path(path)?;
        let repo = self.repo()?;
        let commit = self.find_commit(&repo, sha)?;
        let tree = commit.tree().map_err(|e| self.git("read the commit's tree", e))?;
        let entry = match tree.get_path(&relative) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.git("look up a path", e)),
        };
        let not_a_file = || RepoError::NotAFile { path: path.to_string(), sha: sha.to_string() };
        if entry.kind() != Some(ObjectType::Blob) {
            return Err(not_a_file());
        }
        let odb = repo.odb().map_err(|e| self.git("open the object database", e))?;
        let (size_bytes, _) = odb.read_header(entry.id()).map_err(|e| self.git("read an object header", e))?;
        if size_bytes > limit_bytes {
            return Err(RepoError::FileTooLarge {
                path: path.to_string(),
                sha: sha.to_string(),
                size_bytes,
                limit_bytes,
            });
        }
        let blob = repo.find_blob(entry.id()).map_err(|e| self.git("read a file", e))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// The message, author and author time of commit `sha` (a full SHA).
    pub fn commit_info(&self, sha: &str) -> Result<CommitInfo, RepoError> {
        let repo = self.repo()?;
        let commit = self.find_commit(&repo, sha)?;
        let author = commit.author();
        Ok(CommitInfo {
            message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
            author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
            author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
            time_unix: author.when().seconds(),
        })
    }

    fn find_commit<'r>(&self, repo: &'r Repository, sha: &str) -> Result<git2::Commit<'r>, RepoError> {
        if !is_full_sha(sha) {
            return Err(RepoError::InvalidSha { sha: sha.to_string() });
        }
        let oid = Oid::from_str(sha).map_err(|_| RepoError::InvalidSha { sha: sha.to_string() })?;
        repo.find_commit(oid).map_err(|_| RepoError::CommitNotFound { sha: sha.to_string(), url: self.url.clone() })
    }

    fn repo(&self) -> Result<Repository, RepoError> {
        Repository::open_bare(&self.path).map_err(|e| self.git("open the repository", e))
    }

    fn git(&self, op: &'static str, source: git2::Error) -> RepoError {
        RepoError::Git { path: self.path.clone(), op, source }
    }

    /// An exclusive lock on the mirror, released when dropped. `flock` locks belong to the open file, so two
    /// threads of this process exclude each other as two processes do.
    fn lock(&self) -> Result<Flock<File>, RepoError> {
        let path = self.path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| RepoError::Lock { path: path.clone(), source })?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| RepoError::Lock { path, source: std::io::Error::from(errno) })
    }
}

/// A libgit2 error from one of its server timeouts. The plain socket stream says `GIT_TIMEOUT` ("timed out");
/// through OpenSSL (https) the code is lost: the socket's read gave up with `EAGAIN`, which OpenSSL reports as
/// "SSL error: syscall failure: Resource temporarily unavailable" (glibc's `strerror(EAGAIN)`; a blocking socket says `EAGAIN` only then).
fn is_timeout(e: &git2::Error) -> bool {
    let message = e.message();
    e.code() == git2::ErrorCode::Timeout
        || message.contains("timed out")
        || message.contains("Resource temporarily unavailable")
}

fn valid_project_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A repository-relative path: no root, no `..`, no empty path; `./` parts are dropped.
fn repository_path(path: &str) -> Result<PathBuf, RepoError> {
    let invalid = || RepoError::InvalidPath { path: path.to_string() };
    let mut relative = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => return Err(invalid()),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid());
    }
    Ok(relative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{Signature, Time};

    /// A non-bare upstream repository built with git2, with helpers to commit files on branches.
    struct Upstream {
        repo: Repository,
    }

    impl Upstream {
        fn new(dir: &Path) -> Upstream {
            Upstream { repo: Repository::init(dir).unwrap() }
        }

        /// Commits `files` on top of `branch` (created from `parent` when new) and returns the SHA.
        fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str, time_unix: i64) -> String {
            let parent =
                self.repo.find_reference(&format!("refs/heads/{branch}")).ok().map(|r| r.peel_to_commit().unwrap());
            let mut builder = git2::build::TreeUpdateBuilder::new();
            let base_tree = match &parent {
                Some(p) => p.tree().unwrap(),
                None => {
                    let empty = self.repo.treebuilder(None).unwrap().write().unwrap();
                    self.repo.find_tree(empty).unwrap()
                }
            };
            for (path, content) in files {
                let blob = self.repo.blob(content.as_bytes()).unwrap();
                builder.upsert(*path, blob, git2::FileMode::Blob);
            }
            let tree_id = builder.create_updated(&self.repo, &base_tree).unwrap();
            let tree = self.repo.find_tree(tree_id).unwrap();
            let sig = Signature::new("Ada Lovelace", "ada@example.com", &Time::new(time_unix, 0)).unwrap();
            let parents: Vec<&git2::Commit> = parent.iter().collect();
            let oid =
                self.repo.commit(Some(&format!("refs/heads/{branch}")), &sig, &sig, message, &tree, &parents).unwrap();
            oid.to_string()
        }

        fn tag(&self, name: &str, sha: &str) {
            let object = self.repo.revparse_single(sha).unwrap();
            let sig = Signature::new("Ada Lovelace", "ada@example.com", &Time::new(1_700_000_000, 0)).unwrap();
            self.repo.tag(name, &object, &sig, "release", false).unwrap();
        }
    }

    fn setup() -> (tempfile::TempDir, Upstream, Mirror) {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::new(&dir.path().join("upstream"));
        let url = dir.path().join("upstream").display().to_string();
        let mirror = Mirror::open(&dir.path().join("data"), "proj-1", &url).unwrap();
        (dir, upstream, mirror)
    }

    #[test]
    fn fetch_resolve_read_and_commit_info() {
        let (dir, upstream, mirror) = setup();
        let c1 = upstream.commit("main", &[(".circleci/config.yml", "version: 2.1\n")], "first\n\nbody", 1_700_000_000);
        let c2 = upstream.commit("main", &[("README", "hi")], "second", 1_700_000_100);
        let f1 = upstream.commit("feature/x", &[("feature.txt", "f")], "feature", 1_700_000_200);
        upstream.tag("v1.0", &c1);

        assert_eq!(mirror.path(), dir.path().join("data/mirrors/proj-1"));
        assert!(matches!(mirror.resolve("main"), Err(RepoError::RefNotFound { .. })));
        mirror.fetch().unwrap();

        assert_eq!(mirror.resolve("main").unwrap(), c2);
        assert_eq!(mirror.resolve("refs/heads/main").unwrap(), c2);
        assert_eq!(mirror.resolve("feature/x").unwrap(), f1);
        assert_eq!(mirror.resolve("v1.0").unwrap(), c1, "annotated tag peeled to its commit");
        assert_eq!(mirror.resolve(&c2).unwrap(), c2);
        assert_eq!(mirror.resolve(&c2[..10]).unwrap(), c2);
        assert!(matches!(mirror.resolve("nope"), Err(RepoError::RefNotFound { .. })));
        assert!(matches!(mirror.resolve("main@{1}"), Err(RepoError::RefNotFound { .. })));
        assert!(matches!(mirror.resolve(":/first"), Err(RepoError::RefNotFound { .. })));
        // Found by the robustness test: git2 panicked on a NUL byte in a ref name.
        assert!(matches!(mirror.resolve("main\0"), Err(RepoError::RefNotFound { .. })));
        assert!(matches!(mirror.resolve(&"0".repeat(40)), Err(RepoError::RefNotFound { .. })));

        assert_eq!(mirror.read_file(&c1, ".circleci/config.yml").unwrap().unwrap(), b"version: 2.1\n");
        assert_eq!(mirror.read_file(&c2, "./.circleci/config.yml").unwrap().unwrap(), b"version: 2.1\n");
        assert_eq!(mirror.read_file(&c1, "README").unwrap(), None);
        assert_eq!(mirror.read_file(&c2, "README").unwrap().unwrap(), b"hi");
        assert!(matches!(mirror.read_file(&c2, ".circleci"), Err(RepoError::NotAFile { .. })));
        assert!(matches!(mirror.read_file(&c2, "../etc/passwd"), Err(RepoError::InvalidPath { .. })));
        assert!(matches!(mirror.read_file(&c2, "/README"), Err(RepoError::InvalidPath { .. })));
        assert!(matches!(mirror.read_file("main", "README"), Err(RepoError::InvalidSha { .. })));
        assert!(matches!(mirror.read_file(&"1".repeat(40), "README"), Err(RepoError::CommitNotFound { .. })));
        assert!(matches!(
            mirror.read_file_limited(&c2, ".circleci/config.yml", 4),
            Err(RepoError::FileTooLarge { size_bytes: 13, limit_bytes: 4, .. })
        ));

        let info = mirror.commit_info(&c1).unwrap();
        assert_eq!(
            info,
            CommitInfo {
                message: "first\n\nbody".to_string(),
                author_name: "Ada Lovelace".to_string(),
                author_email: "ada@example.com".to_string(),
                time_unix: 1_700_000_000,
            }
        );
    }

    #[test]
    fn second_fetch_sees_new_commits_and_prunes_deleted_branches() {
        let (dir, upstream, mirror) = setup();
        let c1 = upstream.commit("main", &[("a", "1")], "one", 1_700_000_000);
        upstream.commit("gone", &[("b", "2")], "two", 1_700_000_000);
        mirror.fetch().unwrap();
        assert_eq!(mirror.resolve("main").unwrap(), c1);
        assert!(mirror.resolve("gone").is_ok());

        let c3 = upstream.commit("main", &[("a", "3")], "three", 1_700_000_300);
        upstream.repo.find_reference("refs/heads/gone").unwrap().delete().unwrap();
        upstream.tag("v2", &c3);
        assert_eq!(mirror.resolve("main").unwrap(), c1, "nothing changes before a fetch");

        // A mirror opened again (say after a restart) and the file:// form of the URL behave the same.
        let url = format!("file://{}", dir.path().join("upstream").display());
        let mirror = Mirror::open(&dir.path().join("data"), "proj-1", &url).unwrap();
        mirror.fetch().unwrap();
        assert_eq!(mirror.resolve("main").unwrap(), c3);
        assert_eq!(mirror.resolve("v2").unwrap(), c3);
        assert!(matches!(mirror.resolve("gone"), Err(RepoError::RefNotFound { .. })));
        assert_eq!(mirror.read_file(&c3, "a").unwrap().unwrap(), b"3");
    }

    #[test]
    fn concurrent_fetches_of_one_mirror_all_succeed() {
        let (_dir, upstream, mirror) = setup();
        let mut last = String::new();
        for i in 0..20 {
            let n = i.to_string();
            last = upstream.commit("main", &[("n", n.as_str())], "n", 1_700_000_000 + i);
        }
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let mirror = mirror.clone();
                std::thread::spawn(move || mirror.fetch())
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().unwrap();
        }
        assert_eq!(mirror.resolve("main").unwrap(), last);
    }

    #[test]
    fn fetch_pull_request_head() {
        let (_dir, upstream, mirror) = setup();
        upstream.commit("main", &[("a", "1")], "one", 1_700_000_000);
        // GitHub keeps a fork's pull request head under refs/pull/N/head in the base repository.
        let head = upstream.commit("tmp", &[("pr", "x")], "pr", 1_700_000_000);
        upstream.repo.reference("refs/pull/7/head", Oid::from_str(&head).unwrap(), true, "pr").unwrap();
        upstream.repo.find_reference("refs/heads/tmp").unwrap().delete().unwrap();
        mirror.fetch().unwrap();
        assert!(matches!(mirror.resolve("refs/pull/7/head"), Err(RepoError::RefNotFound { .. })));
        mirror.fetch_pull_request(7).unwrap();
        assert_eq!(mirror.resolve("refs/pull/7/head").unwrap(), head);
        assert_eq!(mirror.read_file(&head, "pr").unwrap().unwrap(), b"x");
    }

    #[test]
    fn an_access_token_is_never_shown_or_stored() {
        let (dir, upstream, mirror) = setup();
        let c1 = upstream.commit("main", &[("a", "1")], "one", 1_700_000_000);
        let mirror = mirror.with_access_token("ghs_very_secret");
        assert!(!format!("{mirror:?}").contains("ghs_very_secret"));
        mirror.fetch().unwrap();
        assert_eq!(mirror.resolve("main").unwrap(), c1);
        let config = fs::read_to_string(dir.path().join("data/mirrors/proj-1/config")).unwrap();
        assert!(!config.contains("ghs_very_secret"), "{config}");
    }

    #[test]
    fn https_transport_is_built_in() {
        assert!(git2::Version::get().https(), "libgit2 was built without https: git2's `https` feature is off");
        // Nothing listens on the port: the https transport runs and fails to connect (it is not "unsupported").
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let mirror = Mirror::open(dir.path(), "p", &format!("https://127.0.0.1:{port}/o/r.git")).unwrap();
        let err = mirror.fetch().unwrap_err();
        let RepoError::Fetch { source, .. } = &err else { panic!("{err}") };
        assert_ne!(source.class(), git2::ErrorClass::Invalid, "{err}");
        assert!(!err.to_string().contains("unsupported URL protocol"), "{err}");
    }

    #[test]
    fn bad_inputs_are_refused_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["", "..", "a/b", "a b", "../x"] {
            let err = Mirror::open(dir.path(), id, "/x").unwrap_err();
            assert!(matches!(err, RepoError::InvalidProjectId { .. }), "{id:?}: {err}");
        }
        assert!(matches!(Mirror::open(dir.path(), "p", "  "), Err(RepoError::EmptyUrl)));
        assert!(matches!(Mirror::open(dir.path(), "p", "/x\0y"), Err(RepoError::InvalidUrl { .. })));
        let mirror = Mirror::open(dir.path(), "p", &dir.path().join("missing").display().to_string()).unwrap();
        let err = mirror.fetch().unwrap_err();
        assert!(matches!(err, RepoError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("check that the URL is right"), "{err}");
    }
}

/// Robustness: any ref name or path a user or payload supplies gives an answer or an error, never a panic, and a
/// resolved ref is always a full SHA.
#[cfg(test)]
mod robustness_tests {
    use super::*;
    use proptest::prelude::*;

    fn mirror_with_one_commit() -> (tempfile::TempDir, Mirror, String) {
        let dir = tempfile::tempdir().unwrap();
        let upstream = Repository::init(dir.path().join("up")).unwrap();
        let blob = upstream.blob(b"x").unwrap();
        let mut tree = upstream.treebuilder(None).unwrap();
        tree.insert("file", blob, 0o100644).unwrap();
        let tree = upstream.find_tree(tree.write().unwrap()).unwrap();
        let sig = git2::Signature::now("a", "a@b").unwrap();
        let sha = upstream.commit(Some("refs/heads/main"), &sig, &sig, "m", &tree, &[]).unwrap().to_string();
        let mirror = Mirror::open(&dir.path().join("data"), "p", &dir.path().join("up").display().to_string()).unwrap();
        mirror.fetch().unwrap();
        (dir, mirror, sha)
    }

    #[test]
    fn any_ref_name_or_path_is_handled() {
        // One repository for all cases (making one per case is what would take the time).
        let (_dir, mirror, sha) = mirror_with_one_commit();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 512, ..Default::default() });
        let inputs = (".{0,60}", "[a-z./\\\\\u{0}-\u{7f}]{0,40}");
        let result = runner.run(&inputs, |(name, path)| {
            if let Ok(resolved) = mirror.resolve(&name) {
                prop_assert_eq!(&resolved, &sha);
            }
            let _ = mirror.read_file(&sha, &path);
            let _ = mirror.read_file(&name, &path);
            let _ = mirror.commit_info(&name);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
