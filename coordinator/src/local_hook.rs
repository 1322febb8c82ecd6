//! Offline projects: `coordinator project add NAME --local PATH` installs a git `post-receive` hook in that
//! repository, so a `git push` into it triggers a pipeline per pushed branch or tag, as a GitHub webhook would.
//!
//! The hook runs `coordinator … trigger NAME --branch B --sha S` (or `--tag T`) with the same data directory
//! (and `--database-url`, when one was given explicitly) as `project add`: it needs no running server, writes
//! through the store like every verb, and a serving coordinator's runners find the queued jobs on their next
//! look (at most a second later). Deleted refs (`new` all zeros) and refs other than branches and tags are
//! skipped. The hook never makes the push fail (git ignores a post-receive hook's exit status anyway); a trigger
//! that fails prints why, which the pusher sees as `remote: …` lines.
//!
//! An existing `post-receive` hook that Drydock did not write is left alone: installing refuses, saying so (add
//! the printed line to that hook, or move it aside). `core.hooksPath` is honoured.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The first lines of every hook this module writes; a hook that starts so may be replaced.
const MARKER: &str = "# drydock post-receive hook";

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{path} is not a git repository: {reason}")]
    NotARepository { path: String, reason: String },
    #[error(
        "{path} exists and is not Drydock's: add this line to it, or move it aside and add the project again: \
         {line}"
    )]
    Foreign { path: PathBuf, line: String },
    #[error("cannot write the hook {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What the hook runs: this coordinator binary with the project's database.
#[derive(Debug, Clone)]
pub struct HookCommand {
    /// The `coordinator` binary (absolute).
    pub coordinator: PathBuf,
    pub data_dir: PathBuf,
    /// Written into the hook only when given explicitly (it may carry a password: the hook is then mode 0700).
    pub database_url: Option<String>,
    pub project: String,
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl HookCommand {
    /// The `coordinator … trigger PROJECT` prefix the hook calls, quoted for `sh`.
    fn trigger_prefix(&self) -> String {
        let mut words = vec![quote(&self.coordinator.to_string_lossy())];
        words.push("--data-dir".into());
        words.push(quote(&self.data_dir.to_string_lossy()));
        if let Some(url) = &self.database_url {
            words.push("--database-url".into());
            words.push(quote(url));
        }
        words.push("trigger".into());
        words.push("--source".into());
        words.push("local".into());
        words.push(quote(&self.project));
        words.join(" ")
    }

    /// The whole hook script.
    pub fn script(&self) -> String {
        format!(
            r#"#!/bin/sh
{MARKER} (written by `coordinator project add --local`; rewritten when the project is added again).
# Triggers a pipeline of project {project} for every branch or tag pushed here. Reads git's
# "<old sha> <new sha> <ref>" lines on standard input.
zero=0000000000000000000000000000000000000000
while read -r old new ref; do
    [ "$new" = "$zero" ] && continue
    case "$ref" in
        refs/heads/*) kind=--branch; name=${{ref#refs/heads/}} ;;
        refs/tags/*) kind=--tag; name=${{ref#refs/tags/}} ;;
        *) continue ;;
    esac
    # git sets GIT_DIR (and more) for hooks; the coordinator opens its own mirror of this repository.
    env -u GIT_DIR -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
        {prefix} "$kind" "$name" --sha "$new" \
        || echo "drydock: no pipeline for $ref: the trigger failed (see above)" >&2
done
exit 0
"#,
            project = self.project,
            prefix = self.trigger_prefix(),
        )
    }
}

/// The hooks directory of the repository at `repo` (bare or not), honouring `core.hooksPath`.
pub fn hooks_dir(repo: &Path) -> Result<PathBuf, HookError> {
    let r = git2::Repository::open(repo)
        .map_err(|e| HookError::NotARepository { path: repo.display().to_string(), reason: e.message().into() })?;
    let configured = r.config().ok().and_then(|c| c.get_path("core.hooksPath").ok());
    Ok(match configured {
        Some(p) if p.is_absolute() => p,
        // Relative to the working tree (or, bare, the repository) as git resolves it.
        Some(p) => r.workdir().unwrap_or_else(|| r.path()).join(p),
        None => r.path().join("hooks"),
    })
}

/// Whether a `post-receive` hook may be installed in `repo` (none there yet, or Drydock's own).
pub fn check_post_receive(repo: &Path, command: &HookCommand) -> Result<(), HookError> {
    let path = hooks_dir(repo)?.join("post-receive");
    match std::fs::read_to_string(&path) {
        Ok(existing) if !existing.lines().nth(1).is_some_and(|l| l.starts_with(MARKER)) => {
            let line = format!(
                "while read -r old new ref; do case \"$ref\" in refs/heads/*) {} --branch \"${{ref#refs/heads/}}\" \
                 --sha \"$new\";; esac; done",
                command.trigger_prefix()
            );
            Err(HookError::Foreign { path, line })
        }
        _ => Ok(()),
    }
}

/// Installs (or replaces Drydock's own) `post-receive` hook in `repo`; returns its path.
pub fn install_post_receive(repo: &Path, command: &HookCommand) -> Result<PathBuf, HookError> {
    check_post_receive(repo, command)?;
    let dir = hooks_dir(repo)?;
    let path = dir.join("post-receive");
    let script = command.script();
    let write = |e| HookError::Write { path: path.clone(), source: e };
    std::fs::create_dir_all(&dir).map_err(write)?;
    // Written beside and renamed into place: a push never runs half a hook.
    let tmp = dir.join(".post-receive.drydock-tmp");
    let mut file = std::fs::File::create(&tmp).map_err(write)?;
    file.write_all(script.as_bytes()).map_err(write)?;
    file.sync_all().map_err(write)?;
    // Executable by its owner only when it names a database URL (which may carry a password).
    let mode = if command.database_url.is_some() { 0o700 } else { 0o755 };
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> HookCommand {
        HookCommand {
            coordinator: "/opt/drydock/bin/coordinator".into(),
            data_dir: "/var/lib/it's here".into(),
            database_url: None,
            project: "app".into(),
        }
    }

    #[test]
    fn the_script_quotes_paths_and_skips_deletions() {
        let script = command().script();
        assert!(script.starts_with("#!/bin/sh\n# drydock post-receive hook"), "{script}");
        assert!(script.contains(r"--data-dir '/var/lib/it'\''s here' trigger --source local 'app'"), "{script}");
        assert!(script.contains("[ \"$new\" = \"$zero\" ] && continue"), "{script}");
        assert!(!script.contains("--database-url"), "{script}");
    }

    #[test]
    fn a_foreign_hook_is_left_alone_and_drydocks_own_is_replaced() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        git2::Repository::init_bare(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let path = install_post_receive(dir.path(), &command()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path, dir.path().join("hooks/post-receive"));
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
        assert_eq!(mode, 0o755);
        let mut again = command();
        again.database_url = Some("postgres://ci:pw@db/ci".into());
        install_post_receive(dir.path(), &again).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
        assert_eq!(mode, 0o700, "a hook naming a database URL is its owner's only");
        std::fs::write(&path, "#!/bin/sh\necho mine\n").unwrap_or_else(|e| panic!("{e}"));
        let err = install_post_receive(dir.path(), &command()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("is not Drydock's"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), "#!/bin/sh\necho mine\n");
        let not_repo = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(install_post_receive(not_repo.path(), &command()), Err(HookError::NotARepository { .. })));
    }
}
