//! `rm`: remove a container — refused while it runs unless forced (then it is killed first). The directory is
//! renamed into `tmp/` under the root lock and deleted afterwards, so a crash never leaves half a record. The
//! container leaves its networks (again: harmless if its monitor already did), and with `-v` its anonymous
//! volumes are removed unless another container mounts them.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::store::ContainerStore;
use super::{io_err, Error, Result};
use crate::volume::VolumeStore;

/// Removes container `id`; with `force` a running container is killed first; with `volumes` its anonymous
/// volumes go too.
pub fn remove(store: &ContainerStore, id: &str, force: bool, volumes: bool) -> Result<()> {
    let state = store.state(id)?;
    if state.is_running() {
        if !force {
            return Err(Error::RemoveRunning(id.to_owned()));
        }
        let state = store.update_state(id, |s| s.stop_requested = true)?;
        super::kill::signal_init(state.pid, state.pid_start, Signal::SIGKILL)?;
        super::stop::wait_stopped(store, id, Duration::from_secs(10));
    }
    let c = store.load(id)?;
    remove_files(store, id)?;
    if volumes {
        super::mounts::remove_anonymous(store, &VolumeStore::open(store.root())?, &c)?;
    }
    Ok(())
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
    let mut leave_after = None;
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(c) = store.load(id) {
        // Under the root lock the network store cannot take it: leave after the directory is gone.
        leave_after = Some(c);
    }
    super::monitor::cleanup_runtime(store, id);
    let trash = store.root().tmp_dir().join(format!("rm-{}-{id}", std::process::id()));
    fs::rename(&dir, &trash).map_err(io_err(format!("cannot remove {}", dir.display())))?;
    drop(lock);
    if let Some(c) = leave_after {
        super::network::leave_for_removal(store.root(), &c)?;
    }
    fs::remove_dir_all(&trash).map_err(io_err(format!("cannot remove {}", trash.display())))
}
