//! The `checkout` step: the local git repository at the requested revision, `.git` included (so `git log`
//! and `git describe` work in the job), cloned with libgit2 into a host directory that is then copied into
//! the primary container. Uncommitted changes are not part of it: a job sees a commit, as on CircleCI.

use std::path::{Path, PathBuf};

use git2::build::RepoBuilder;
use git2::{BranchType, Oid, Repository};

use super::error::ExecError;

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
    // The job sees the project's own origin (the host path means nothing inside the container).
    match src.find_remote("origin").ok().and_then(|r| r.url().map(str::to_owned)) {
        Some(origin) => repo.remote_set_url("origin", &origin).map_err(|e| err("cannot set origin", e))?,
        None => repo.remote_delete("origin").map_err(|e| err("cannot remove origin", e))?,
    }
    Ok(oid)
}
