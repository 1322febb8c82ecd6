//! `pause` / `unpause`: freeze and thaw every process of a container with the cgroup freezer, as docker does —
//! `freezer.state` on cgroup v1 hosts (this one), `cgroup.freeze` on a unified (v2-only) host. The state's
//! status becomes `paused` (a paused container still counts as running for `ps`, `stop` and `kill`). `commit`
//! pauses the container while it reads the upper directory, so the layer is a consistent snapshot.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::store::{ContainerStore, Status};
use super::{io_err, spec, Error, Result};

/// How long to wait for the kernel to report every task frozen.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

enum Freezer {
    /// cgroup v1: `<mount>/freezer/<path>/freezer.state` with `FROZEN` / `THAWED`.
    V1(PathBuf),
    /// cgroup v2: `<mount>/<path>/cgroup.freeze` with `1` / `0`, read back from `cgroup.events`.
    V2(PathBuf),
}

fn freezer(id: &str) -> Result<Freezer> {
    let rel = spec::cgroups_path(id);
    let v1 = PathBuf::from(format!("/sys/fs/cgroup/freezer{rel}"));
    if v1.join("freezer.state").exists() {
        return Ok(Freezer::V1(v1));
    }
    let v2 = PathBuf::from(format!("/sys/fs/cgroup{rel}"));
    if v2.join("cgroup.freeze").exists() {
        return Ok(Freezer::V2(v2));
    }
    Err(Error::Runtime(format!(
        "container {id} has no freezer cgroup (looked for {} and {}): the host's cgroups lack the freezer",
        v1.display(),
        v2.display()
    )))
}

fn set_frozen(id: &str, frozen: bool) -> Result<()> {
    match freezer(id)? {
        Freezer::V1(dir) => {
            let path = dir.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            fs::write(&path, want).map_err(io_err(format!("cannot write {}", path.display())))?;
            let deadline = Instant::now() + FREEZE_TIMEOUT;
            loop {
                let now = fs::read_to_string(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
                if now.trim() == want {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    // Leave it as it was rather than half-frozen.
                    let _ = fs::write(&path, "THAWED");
                    return Err(Error::Runtime(format!(
                        "container {id} did not reach {want} within {FREEZE_TIMEOUT:?}"
                    )));
                }
                if frozen {
                    // The kernel may need a nudge while tasks are in uninterruptible sleep.
                    let _ = fs::write(&path, want);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Freezer::V2(dir) => {
            let path = dir.join("cgroup.freeze");
            fs::write(&path, if frozen { "1" } else { "0" })
                .map_err(io_err(format!("cannot write {}", path.display())))?;
            let events = dir.join("cgroup.events");
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            let deadline = Instant::now() + FREEZE_TIMEOUT;
            while !fs::read_to_string(&events).unwrap_or_default().lines().any(|l| l.trim() == want) {
                if Instant::now() > deadline {
                    let _ = fs::write(&path, "0");
                    return Err(Error::Runtime(format!("container {id} did not freeze within {FREEZE_TIMEOUT:?}")));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
    }
}

/// `pause CTR`: freezes a running container.
pub fn pause(store: &ContainerStore, id: &str) -> Result<()> {
    let c = store.load(id)?;
    let state = store.state(&c.id)?;
    match state.status {
        Status::Paused => {
            return Err(Error::InvalidInput { what: "container", value: c.name, hint: "it is already paused".into() })
        }
        _ if !state.is_running() => return Err(Error::NotRunning(c.name)),
        _ => {}
    }
    set_frozen(&c.id, true)?;
    store.update_state(&c.id, |s| {
        if s.status == Status::Running {
            s.status = Status::Paused;
        }
    })?;
    Ok(())
}

/// `unpause CTR`: thaws a paused container.
pub fn unpause(store: &ContainerStore, id: &str) -> Result<()> {
    let c = store.load(id)?;
    let state = store.state(&c.id)?;
    if state.status != Status::Paused {
        return Err(Error::InvalidInput { what: "container", value: c.name, hint: "it is not paused".into() });
    }
    set_frozen(&c.id, false)?;
    store.update_state(&c.id, |s| {
        if s.status == Status::Paused {
            s.status = Status::Running;
        }
    })?;
    Ok(())
}

/// Thaws the container's cgroup whatever its recorded status (so a signal sent to a paused container is
/// delivered), and records it as running again.
pub fn thaw_if_paused(store: &ContainerStore, id: &str) -> Result<()> {
    if store.state(id)?.status == Status::Paused {
        set_frozen(id, false)?;
        store.update_state(id, |s| {
            if s.status == Status::Paused {
                s.status = Status::Running;
            }
        })?;
    }
    Ok(())
}

/// Keeps a running container frozen for as long as it lives (for `commit`); thaws on drop. A container that is
/// not running, or already paused by the user, is left alone.
pub struct PauseGuard<'a> {
    store: &'a ContainerStore,
    id: String,
    active: bool,
}

impl<'a> PauseGuard<'a> {
    pub fn new(store: &'a ContainerStore, id: &str) -> Result<PauseGuard<'a>> {
        let state = store.state(id)?;
        let active = state.status == Status::Running && state.is_running();
        if active {
            set_frozen(id, true)?;
        }
        Ok(PauseGuard { store, id: id.to_owned(), active })
    }
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = set_frozen(&self.id, false) {
                tracing::error!(container.id = %self.id, error = %e, "cannot thaw the container after commit");
            }
            let _ = self.store;
        }
    }
}
