//! Files a job hands on: `persist_to_workspace` / `attach_workspace` (a directory per workflow run under the
//! runner's data directory, `workspaces/<workflow id>/`, that later jobs of the same run attach) and
//! `store_artifacts` (copied out to `artifacts/<build number>/<job>/<destination>`, listed with sizes).
//! Copies go through the engine's `cp` tar streams, so paths in the container are resolved inside its root
//! filesystem and cannot lead out of it.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use engine::container::ContainerStore;

use super::error::ExecError;

fn io(context: String) -> impl FnOnce(std::io::Error) -> ExecError {
    move |source| ExecError::Io { context, source }
}

/// The workspace directory of a workflow run.
pub fn workspace_dir(data_dir: &Path, workflow_id: &str) -> PathBuf {
    data_dir.join("workspaces").join(workflow_id)
}

/// A relative path that stays below its root (no `..`, not absolute), or an error naming the step's field.
fn relative(field: &str, path: &str) -> Result<PathBuf, ExecError> {
    let p = Path::new(path.trim_start_matches("./"));
    let names_nothing = !p.components().any(|c| matches!(c, Component::Normal(_)));
    if p.is_absolute() || names_nothing || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ExecError::StepInput {
            field: field.to_owned(),
            value: path.to_owned(),
            hint: "give a path relative to the root, without `..`, naming a file or directory".into(),
        });
    }
    Ok(p.to_path_buf())
}

/// Refuses `rel` when a directory on its way below `root` is a symlink (see
/// [`engine::image::layer::parents_stay_in_root`]), naming the step's field.
fn stays_in(field: &str, value: &str, root: &Path, rel: &Path) -> Result<(), ExecError> {
    if engine::image::layer::parents_stay_in_root(root, rel) {
        return Ok(());
    }
    Err(ExecError::StepInput {
        field: field.to_owned(),
        value: value.to_owned(),
        hint: format!("a directory on the way in {} is a symlink; refusing to write through it", root.display()),
    })
}

/// Copies `path` (absolute, in the container) to the host directory `dest_dir`, as `dest_dir/<base name>`.
pub(crate) fn copy_out(store: &ContainerStore, id: &str, path: &str, dest_dir: &Path) -> Result<(), ExecError> {
    std::fs::create_dir_all(dest_dir).map_err(io(format!("cannot create {}", dest_dir.display())))?;
    let tmp =
        tempfile::NamedTempFile::new_in(dest_dir).map_err(io(format!("cannot write in {}", dest_dir.display())))?;
    let file = tmp.reopen().map_err(io("cannot reopen a temporary file".into()))?;
    engine::container::cp::archive(store, id, path, std::io::BufWriter::new(file))?;
    let input = tmp.reopen().map_err(io("cannot reopen a temporary file".into()))?;
    engine::container::cp::host_extract(std::io::BufReader::new(input), dest_dir)?;
    Ok(())
}

/// `persist_to_workspace`: each of `paths` (relative to `root`, itself absolute) into the workspace.
pub fn persist(
    store: &ContainerStore,
    id: &str,
    workspace: &Path,
    root: &str,
    paths: &[String],
    note: &mut dyn FnMut(String),
) -> Result<(), ExecError> {
    for path in paths {
        let rel = relative("persist_to_workspace.paths", path)?;
        let source = format!("{}/{}", root.trim_end_matches('/'), rel.display());
        if engine::container::cp::stat(store, id, &source)?.is_none() {
            return Err(ExecError::StepInput {
                field: "persist_to_workspace.paths".into(),
                value: path.clone(),
                hint: format!("{source} does not exist in the container"),
            });
        }
        // An earlier step may have persisted a symlink: never write through one onto the host.
        stays_in("persist_to_workspace.paths", path, workspace, &rel)?;
        let dest_dir = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => workspace.join(p),
            _ => workspace.to_path_buf(),
        };
        copy_out(store, id, &source, &dest_dir)?;
        note(format!("Persisted {source} to the workspace\n"));
    }
    Ok(())
}

/// `attach_workspace`: the workspace's contents into directory `at` of the container (created); false if no
/// job of this run persisted anything.
pub fn attach(store: &ContainerStore, id: &str, workspace: &Path, at: &str) -> Result<bool, ExecError> {
    if !workspace.is_dir() {
        return Ok(false);
    }
    let at = at.trim_end_matches('/');
    let (parent, name) = match at.rsplit_once('/') {
        Some(("", name)) => ("/".to_owned(), name.to_owned()),
        Some((p, name)) => (p.to_owned(), name.to_owned()),
        None => {
            return Err(ExecError::StepInput {
                field: "attach_workspace.at".into(),
                value: at.to_owned(),
                hint: "give an absolute directory".into(),
            })
        }
    };
    let mkdir = engine::container::exec::ExecOptions {
        cmd: vec!["mkdir".into(), "-p".into(), parent.clone()],
        ..Default::default()
    };
    engine::container::exec::exec_captured(store, id, &mkdir, std::time::Duration::from_secs(60), 4096)?;
    let tmp = tempfile::NamedTempFile::new().map_err(io("cannot create a temporary file".into()))?;
    let file = tmp.reopen().map_err(io("cannot reopen a temporary file".into()))?;
    engine::container::cp::host_archive(workspace, &name, std::io::BufWriter::new(file))?;
    let input = tmp.reopen().map_err(io("cannot reopen a temporary file".into()))?;
    engine::container::cp::extract(store, id, &parent, std::io::BufReader::new(input))?;
    Ok(true)
}

/// `store_artifacts`: `path` (absolute, in the container) to `artifacts_dir/<destination>`; returns every file
/// stored with its size, relative to `artifacts_dir`.
pub fn store_artifacts(
    store: &ContainerStore,
    id: &str,
    artifacts_dir: &Path,
    path: &str,
    destination: Option<&str>,
) -> Result<Vec<(String, u64)>, ExecError> {
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
    let dest = relative("store_artifacts.destination", destination.unwrap_or(&base))?;
    stays_in("store_artifacts.destination", destination.unwrap_or(&base), artifacts_dir, &dest)?;
    let dest_path = artifacts_dir.join(&dest);
    let parent = dest_path.parent().unwrap_or(artifacts_dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(format!("cannot create {}", parent.display())))?;
    // Copied under its own name, then renamed to the destination.
    let staging = tempfile::tempdir_in(&parent).map_err(io(format!("cannot write in {}", parent.display())))?;
    copy_out(store, id, path, staging.path())?;
    let copied = staging.path().join(&base);
    if dest_path.exists() {
        let _ = std::fs::remove_dir_all(&dest_path).or_else(|_| std::fs::remove_file(&dest_path));
    }
    std::fs::rename(&copied, &dest_path).map_err(io(format!("cannot store {}", dest_path.display())))?;
    let mut files = Vec::new();
    list(artifacts_dir, &dest_path, &mut files);
    files.sort();
    Ok(files)
}

fn list(root: &Path, path: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            list(root, &entry.path(), out);
        }
    } else if meta.is_file() {
        // Only regular files: a symlink the job made (`out/t -> /var/lib/…/agent.json`) would otherwise be
        // followed when the agent uploads the artifact, sending a host file to the coordinator.
        let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
        out.push((rel, meta.len()));
    }
}

/// Where a job's workspaces and artifacts go when it runs for a coordinator (`runner agent`) rather than
/// locally: the executor still copies files out of the container into a host directory first, then hands that
/// directory to these calls. Errors are sentences for the step's log.
pub trait RemoteFiles: Send + Sync {
    /// Downloads the workspace layers of the job's upstream jobs and unpacks them into `dir` (existing, empty),
    /// in order; false when there are none.
    fn fetch_workspace(&self, dir: &Path) -> Result<bool, String>;
    /// Uploads `dir` (what one `persist_to_workspace` step copied out) as a new workspace layer.
    fn upload_workspace(&self, dir: &Path) -> Result<(), String>;
    /// Uploads one stored artifact, `file` on the host, under its destination path `rel`.
    fn upload_artifact(&self, rel: &str, file: &Path) -> Result<(), String>;
    /// Sends what one `store_test_results` step read from `path`.
    fn test_results(&self, path: &str, cases: &[config_schema::wire::TestCase]) -> Result<(), String>;
}

/// A shared [`RemoteFiles`].
pub type Remote = Arc<dyn RemoteFiles>;

#[cfg(test)]
mod tests {
    use super::*;

    /// An artifact directory a job filled: its symlinks are not artifacts (uploading one would follow it to a
    /// host file).
    #[test]
    fn artifact_lists_hold_regular_files_only() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("out")).expect("mkdir");
        std::fs::write(dir.path().join("out/report.txt"), "ok").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out/t")).expect("symlink");
        let mut files = Vec::new();
        list(dir.path(), &dir.path().join("out"), &mut files);
        assert_eq!(files, vec![("out/report.txt".to_string(), 2)]);
    }
}
