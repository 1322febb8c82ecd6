//! `rm`: remove a container — refused while it runs unless forced (then it is killed first). The directory is
//! renamed into `tmp/` under the root lock and deleted afterwards, so a crash never leaves half a record.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::store::ContainerStore;
use super::{io_err, Error, Result};

/// Removes container `id`; with `force` a running container is killed first.
pub fn remove(store: &ContainerStore, id: &str, force: bool) -> Result<()> {
    let state = store.state(id)?;
    if state.is_running() {
        if !force {
            return Err(Error::RemoveRunning(id.to_owned()));
        }
        let state = store.update_state(id, |s| s.stop_requested = true)?;
        super::kill::signal_init(state.pid, state.pid_start, Signal::SIGKILL)?;
        super::stop::wait_stopped(store, id, Duration::from_secs(10));
    }
    remove_files(store, id)
}

/// Takes container `id` out of the store at once: its directory is renamed into `tmp/` under the lock (a mount
/// inside moves along). Returns the new path; the caller unmounts and deletes it.
pub fn detach_dir(store: &ContainerStore, id: &str) -> Result<std::path::PathBuf> {
    let dir = store.dir(id);
    let _lock = store.lock()?;
    let trash = store.root().tmp_dir().join(format!("rm-{}-{id}", std::process::id()));
    fs::rename(&dir, &trash).map_err(io_err(format!("cannot remove {}", dir.display())))?;
    Ok(trash)
}

/// Deletes everything of container `id` (runtime state, cgroups, mount, directory). Missing is fine.
pub fn remove_files(store: &ContainerStore, id: &str) -> Result<()> {
    let dir = store.dir(id);
    let lock = store.lock()?;
    if !dir.exists() {
        return Ok(());
    }
    super::monitor::cleanup_runtime(store, id);
    let trash = store.root().tmp_dir().join(format!("rm-{}-{id}", std::process::id()));
    fs::rename(&dir, &trash).map_err(io_err(format!("cannot remove {}", dir.display())))?;
    drop(lock);
    fs::remove_dir_all(&trash).map_err(io_err(format!("cannot remove {}", trash.display())))
}
