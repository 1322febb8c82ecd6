//! The `checkout` step: the project's repository at the requested revision, `.git` included (so `git log`
//! and `git describe` work in the job), cloned with libgit2 into a host directory that is then copied into
//! the primary container. Uncommitted changes are not part of it: a job sees a commit, as on CircleCI.
//!
//! Two sources ([`Source`]): a repository on this host ([`clone_at`]: `runner exec`'s project, or an agent's
//! path / `file://` URL), and one served over `http://` or `https://` ([`fetch_at`]: a GitHub project's clone
//! URL in `runner agent`). A remote is fetched with only the refs the revision needs (the job's branch or tag,
//! else the commit itself, else every branch and tag), authenticated by a credentials callback — HTTP Basic
//! with the user `x-access-token` and `checkout.credential` as the password, GitHub's convention for app and
//! personal tokens — so the token is never part of a URL, of `.git/config` or of a message. Network waits are
//! bounded by libgit2's connect and read timeouts ([`super::libgit2`]) and the job's cancel flag.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use git2::build::RepoBuilder;
use git2::{BranchType, CredentialType, Direction, FetchOptions, Oid, ProxyOptions, RemoteCallbacks, Repository};

use super::error::ExecError;
use super::libgit2;

fn err(what: &str, e: git2::Error) -> ExecError {
    ExecError::Checkout(format!("{what}: {}", e.message()))
}

/// What the local repository says about the pipeline: its HEAD commit and branch and its `origin` URL.
#[derive(Debug, Clone, Default)]
pub struct RepoInfo {
    /// The repository's top directory.
    pub dir: PathBuf,
    pub head: Option<String>,
    pub branch: Option<String>,
    pub origin_url: Option<String>,
}

/// Looks for a git repository at or above `dir`; `None` outside one.
pub fn discover(dir: &Path) -> Option<RepoInfo> {
    libgit2::init();
    let repo = Repository::discover(dir).ok()?;
    let top = repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf();
    let head = repo.head().ok();
    let sha = head.as_ref().and_then(|h| h.peel_to_commit().ok()).map(|c| c.id().to_string());
    let branch = head.as_ref().filter(|h| h.is_branch()).and_then(|h| h.shorthand().map(str::to_owned));
    let origin_url = repo.find_remote("origin").ok().and_then(|r| r.url().map(str::to_owned));
    Some(RepoInfo { dir: top, head: sha, branch, origin_url })
}

/// Clones `source` into `dest` (which must not exist) and checks out `revision` — on a local branch named
/// `branch` when given (as CircleCI does), else detached. Returns the commit checked out.
pub fn clone_at(source: &Path, dest: &Path, revision: &str, branch: Option<&str>) -> Result<Oid, ExecError> {
    libgit2::init();
    let src = Repository::open(source).map_err(|e| err(&format!("cannot open {}", source.display()), e))?;
    let oid = src
        .revparse_single(revision)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| err(&format!("revision `{revision}` is not a commit of {}", source.display()), e))?
        .id();
    let url = source.to_str().ok_or_else(|| ExecError::Checkout(format!("{} is not UTF-8", source.display())))?;
    let repo =
        RepoBuilder::new().clone(url, dest).map_err(|e| err(&format!("cannot clone {}", source.display()), e))?;
    // A commit that no branch of the source reaches was not cloned: fetch it by its ID.
    if repo.find_commit(oid).is_err() {
        let mut remote = repo.find_remote("origin").map_err(|e| err("cannot find the clone's origin", e))?;
        remote
            .fetch(&[oid.to_string()], None, None)
            .map_err(|e| err(&format!("cannot fetch {oid} from {}", source.display()), e))?;
    }
    check_out(&repo, oid, branch)?;
    // The job sees the project's own origin (the host path means nothing inside the container).
    match src.find_remote("origin").ok().and_then(|r| r.url().map(str::to_owned)) {
        Some(origin) => repo.remote_set_url("origin", &origin).map_err(|e| err("cannot set origin", e))?,
        None => repo.remote_delete("origin").map_err(|e| err("cannot remove origin", e))?,
    }
    Ok(oid)
}

/// Checks out commit `oid` of `repo` (forced), on a local branch `branch` (created or moved) or detached.
fn check_out(repo: &Repository, oid: Oid, branch: Option<&str>) -> Result<(), ExecError> {
    let commit = repo.find_commit(oid).map_err(|e| err(&format!("commit {oid} is not in the clone"), e))?;
    repo.checkout_tree(commit.as_object(), Some(git2::build::CheckoutBuilder::new().force()))
        .map_err(|e| err("cannot check out the tree", e))?;
    match branch {
        Some(b) => {
            if repo.find_branch(b, BranchType::Local).is_err() {
                repo.branch(b, &commit, true).map_err(|e| err(&format!("cannot create branch {b}"), e))?;
            } else {
                let refname = format!("refs/heads/{b}");
                repo.reference(&refname, oid, true, "checkout").map_err(|e| err(&format!("cannot move {b}"), e))?;
            }
            repo.set_head(&format!("refs/heads/{b}")).map_err(|e| err("cannot set HEAD", e))?;
        }
        None => repo.set_head_detached(oid).map_err(|e| err("cannot set HEAD", e))?,
    }
    Ok(())
}

/// Where `checkout` takes the commit from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A repository on this host: `runner exec`'s project, or an agent's path or `file://` URL.
    Local(RepoInfo),
    /// A repository served over `http://` or `https://`, fetched by [`fetch_at`].
    Remote(RemoteRepository),
    /// A URL no transport here serves (`ssh://`, `git@host:…`): the checkout step fails, naming it.
    Unsupported(String),
}

impl Source {
    /// What a `checkout.repository_url` names: an absolute path or `file://` URL, an `http(s)://` URL (with
    /// `credential` as its password), or something unsupported.
    pub fn from_url(url: &str, credential: Option<&str>) -> Source {
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.starts_with('/') {
            return Source::Local(RepoInfo { dir: PathBuf::from(path), ..RepoInfo::default() });
        }
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http" | "https") => Source::Remote(RemoteRepository {
                url: url.to_owned(),
                credential: credential.filter(|c| !c.is_empty()).map(str::to_owned),
            }),
            _ => Source::Unsupported(url.to_owned()),
        }
    }
}

/// The user name of HTTP Basic auth with a token as the password: GitHub's convention for app installation
/// tokens, also accepted for personal access tokens (and by GitLab and Gitea for theirs).
pub const TOKEN_USER: &str = "x-access-token";

/// A repository on an HTTP(S) git server.
#[derive(Clone)]
pub struct RemoteRepository {
    /// The clone URL as the coordinator gave it.
    pub url: String,
    /// The password sent with [`TOKEN_USER`] when the server asks (`401`); never written anywhere.
    pub credential: Option<String>,
}

impl std::fmt::Debug for RemoteRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRepository")
            .field("url", &display_url(&self.url))
            .field("credential", &self.credential.as_ref().map(|_| "********"))
            .finish()
    }
}

/// `url` without a password in its user information (`https://u:p@h/x` → `https://u@h/x`): the form shown in
/// messages and kept as the clone's `origin`.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Callbacks of one connection to `remote`: the credential (offered once: a second request for it means the
/// server refused it) and the cancel flag, checked whenever data arrives.
fn callbacks<'a>(remote: &'a RemoteRepository, cancel: &'a AtomicBool) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut offered = false;
    cb.credentials(move |_url, _user, allowed| {
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(git2::Error::from_str("the server asks for a kind of credential other than a password"));
        }
        let Some(token) = remote.credential.as_deref() else {
            return Err(git2::Error::from_str(
                "the server asks for credentials (HTTP 401) and the job has none (the assignment's checkout.credential is empty)",
            ));
        };
        if std::mem::replace(&mut offered, true) {
            return Err(git2::Error::from_str(&format!(
                "the server refused the credential (HTTP 401; user {TOKEN_USER}): check the project's token and its access to the repository"
            )));
        }
        git2::Cred::userpass_plaintext(TOKEN_USER, token)
    });
    cb.transfer_progress(move |_| !cancel.load(Ordering::Relaxed));
    cb.sideband_progress(move |_| !cancel.load(Ordering::Relaxed));
    cb
}

fn fetch_options<'a>(remote: &'a RemoteRepository, cancel: &'a AtomicBool) -> FetchOptions<'a> {
    let mut proxy = ProxyOptions::new();
    proxy.auto(); // http.proxy / https_proxy, as git does
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(remote, cancel)).proxy_options(proxy);
    opts
}

/// libgit2's message about a failed HTTP exchange, with what the usual statuses mean for a clone.
fn explain(message: &str) -> String {
    let hint = if message.ends_with("status code: 403") {
        " (HTTP 403: the credential has no access to this repository)"
    } else if message.ends_with("status code: 404") {
        " (HTTP 404: no such repository, or one the credential cannot see)"
    } else {
        ""
    };
    format!("{message}{hint}")
}

/// Fetches `revision` (a commit ID, or a branch or tag name) from `remote` into a new repository at `dest`
/// (which must not exist) and checks it out — on a local branch `branch` when given, else detached. Only the
/// refs it needs are fetched: the one whose tip is the revision, else the job's `branch` or `tag` (the
/// revision is usually on it), else the commit by its ID (servers that allow it, as GitHub does), else every
/// branch and tag. Full history of what is fetched, so `git log` works. Returns the commit checked out.
pub fn fetch_at(
    remote: &RemoteRepository,
    dest: &Path,
    revision: &str,
    branch: Option<&str>,
    tag: Option<&str>,
    cancel: &AtomicBool,
) -> Result<Oid, ExecError> {
    let shown = display_url(&remote.url);
    let fail = |what: &str, e: git2::Error| {
        if cancel.load(Ordering::Relaxed) {
            ExecError::Checkout(format!("{what} {shown}: canceled"))
        } else {
            ExecError::Checkout(format!("{what} {shown}: {}", explain(e.message())))
        }
    };
    libgit2::load_tls_trust()?;
    let repo = Repository::init(dest).map_err(|e| err(&format!("cannot create {}", dest.display()), e))?;
    // An anonymous remote: the URL as given is used for the fetch and stored nowhere.
    let mut anon = repo.remote_anonymous(&remote.url).map_err(|e| fail("bad repository URL", e))?;

    // The ref advertisement first: one request that tells an unreachable server or a refused credential
    // apart from a missing revision, and says which ref holds the revision.
    let advertised: Vec<(String, Oid)> = {
        let mut proxy = ProxyOptions::new();
        proxy.auto();
        let conn = anon
            .connect_auth(Direction::Fetch, Some(callbacks(remote, cancel)), Some(proxy))
            .map_err(|e| fail("cannot fetch from", e))?;
        let heads = conn.list().map_err(|e| fail("cannot list the refs of", e))?;
        let heads: Vec<(String, Oid)> = heads.iter().map(|h| (h.name().to_owned(), h.oid())).collect();
        heads
    };
    anon.disconnect().map_err(|e| fail("cannot disconnect from", e))?;

    let wanted: Option<Oid> = Oid::from_str(revision).ok().filter(|_| revision.len() == 40);
    let find_ref = |name: &str| advertised.iter().find(|(n, _)| n == name).map(|(n, o)| (n.clone(), *o));
    // The revision as a name (`main`, `v1.0`) when it is not a commit ID.
    let named = if wanted.is_none() {
        let candidates = [revision.to_owned(), format!("refs/heads/{revision}"), format!("refs/tags/{revision}")];
        let found = candidates.iter().find_map(|c| find_ref(c));
        Some(found.ok_or_else(|| {
            ExecError::Checkout(format!("revision `{revision}` is neither a commit ID nor a branch or tag of {shown}"))
        })?)
    } else {
        None
    };
    let target = wanted.or(named.as_ref().map(|(_, o)| *o));

    // Refspecs to try in order, each a fetch; stop when the commit is there.
    let refspec = |name: &str| match name.strip_prefix("refs/heads/") {
        Some(b) => format!("+{name}:refs/remotes/origin/{b}"),
        None if name.starts_with("refs/tags/") => format!("+{name}:{name}"),
        None => name.to_owned(), // refs/pull/…: the objects are kept, no local ref
    };
    let mut attempts: Vec<Vec<String>> = Vec::new();
    let preferred = branch.map(|b| format!("refs/heads/{b}")).into_iter().chain(tag.map(|t| format!("refs/tags/{t}")));
    let tip: Vec<String> = preferred
        .clone()
        .chain(advertised.iter().map(|(n, _)| n.clone()))
        .filter(|n| n != "HEAD" && !n.ends_with("^{}"))
        .filter(|n| find_ref(n).is_some_and(|(_, o)| Some(o) == target))
        .take(1)
        .collect();
    if let Some(name) = tip.first() {
        attempts.push(vec![refspec(name)]);
    }
    let on_job_refs: Vec<String> = preferred.filter(|n| find_ref(n).is_some()).map(|n| refspec(&n)).collect();
    if !on_job_refs.is_empty() {
        attempts.push(on_job_refs);
    }
    if let Some(oid) = wanted {
        attempts.push(vec![oid.to_string()]);
    }
    attempts.push(vec!["+refs/heads/*:refs/remotes/origin/*".into(), "+refs/tags/*:refs/tags/*".into()]);
    attempts.dedup();

    let mut last_error = None;
    let mut found = None;
    for specs in &attempts {
        let mut opts = fetch_options(remote, cancel);
        match anon.fetch(specs, Some(&mut opts), None) {
            Ok(()) => last_error = None,
            // A server that does not serve unadvertised commits by ID refuses that fetch: try the next one.
            Err(e) if cancel.load(Ordering::Relaxed) => return Err(fail("cannot fetch from", e)),
            Err(e) => {
                tracing::debug!(url = %shown, refspecs = ?specs, error = %e.message(), "fetch attempt failed");
                last_error = Some(e);
                continue;
            }
        }
        found = target.filter(|o| repo.find_commit(*o).is_ok());
        if found.is_some() {
            break;
        }
    }
    let oid = match (found, last_error) {
        (Some(oid), _) => oid,
        (None, Some(e)) => return Err(fail("cannot fetch from", e)),
        (None, None) => {
            return Err(ExecError::Checkout(format!(
                "revision {revision} is not on {shown} (fetched every branch and tag): was it force-pushed away?"
            )))
        }
    };
    check_out(&repo, oid, branch)?;
    repo.remote("origin", &shown).map_err(|e| err("cannot set origin", e))?;
    Ok(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(display_url("https://github.com/acme/app.git"), "https://github.com/acme/app.git");
        assert_eq!(
            display_url("https://x-access-token:ghs_1@github.com/a/b.git"),
            "https://x-access-token@github.com/a/b.git"
        );
        assert_eq!(display_url("https://bob@host/a@b"), "https://bob@host/a@b");
        assert_eq!(display_url("/srv/git/app"), "/srv/git/app");
    }

    #[test]
    fn http_statuses_are_explained() {
        assert!(explain("unexpected http status code: 403").contains("no access"));
        assert!(explain("unexpected http status code: 404").contains("no such repository"));
        assert_eq!(explain("failed to connect"), "failed to connect");
    }

    /// A repository with `first`, `second` on `main` and `third` on `feature`.
    fn origin(dir: &Path) -> [Oid; 3] {
        let repo = Repository::init(dir).expect("init");
        let sig = git2::Signature::now("T", "t@drydock.invalid").expect("signature");
        let commit = |refname: &str, text: &str, parents: &[Oid]| {
            std::fs::write(dir.join("README"), text).expect("write");
            let mut index = repo.index().expect("index");
            index.add_path(Path::new("README")).expect("add");
            let tree = repo.find_tree(index.write_tree().expect("tree")).expect("tree");
            let parents: Vec<git2::Commit> = parents.iter().map(|p| repo.find_commit(*p).expect("parent")).collect();
            let parents: Vec<&git2::Commit> = parents.iter().collect();
            repo.commit(Some(refname), &sig, &sig, text, &tree, &parents).expect("commit")
        };
        let first = commit("refs/heads/main", "first", &[]);
        let second = commit("refs/heads/main", "second", &[first]);
        let third = commit("refs/heads/feature", "third", &[second]);
        [first, second, third]
    }

    fn remote(dir: &Path) -> RemoteRepository {
        RemoteRepository { url: format!("file://{}", dir.display()), credential: None }
    }

    #[test]
    fn fetch_at_checks_out_ancestors_tips_and_names_and_says_when_a_revision_is_missing() {
        let src = tempfile::tempdir().expect("tempdir");
        let [first, _second, third] = origin(src.path());
        let cancel = AtomicBool::new(false);
        let out = tempfile::tempdir().expect("tempdir");

        // An ancestor of the job's branch: on that branch, with its history.
        let dest = out.path().join("a");
        let oid = fetch_at(&remote(src.path()), &dest, &first.to_string(), Some("main"), None, &cancel).expect("fetch");
        assert_eq!(oid, first);
        let repo = Repository::open(&dest).expect("open");
        assert_eq!(repo.head().expect("head").shorthand(), Some("main"));
        assert_eq!(repo.head().expect("head").target(), Some(first));
        assert_eq!(std::fs::read_to_string(dest.join("README")).expect("README"), "first");
        let origin_url = repo.find_remote("origin").expect("origin").url().map(str::to_owned);
        assert_eq!(origin_url, Some(remote(src.path()).url));

        // The tip of a branch the job does not name: detached, history included.
        let dest = out.path().join("b");
        assert_eq!(
            fetch_at(&remote(src.path()), &dest, &third.to_string(), None, None, &cancel).expect("fetch"),
            third
        );
        let repo = Repository::open(&dest).expect("open");
        assert!(repo.head_detached().expect("detached"));
        let mut walk = repo.revwalk().expect("revwalk");
        walk.push_head().expect("push");
        assert_eq!(walk.count(), 3);

        // A branch name as the revision.
        let dest = out.path().join("c");
        assert_eq!(fetch_at(&remote(src.path()), &dest, "feature", None, None, &cancel).expect("fetch"), third);

        // A commit the server does not have.
        let missing = "0123456789abcdef0123456789abcdef01234567";
        let e = fetch_at(&remote(src.path()), &out.path().join("d"), missing, Some("main"), None, &cancel)
            .expect_err("missing");
        assert!(e.to_string().contains(&format!("revision {missing} is not on file://")), "{e}");
        let e = fetch_at(&remote(src.path()), &out.path().join("e"), "nosuch", None, None, &cancel).expect_err("name");
        assert!(e.to_string().contains("`nosuch` is neither a commit ID nor a branch or tag"), "{e}");
    }
}
