//! Work the monitor does ahead of libcontainer, so that libcontainer's intermediate and init processes (forked
//! from the monitor, see [`super::monitor`]) find it done instead of each paying for it on the critical path of
//! a start. Measured with strace on this host; the figures are in docs/engine-containers.md ("Performance").
//!
//! - **The procfs handle.** libcontainer and libcgroups resolve every `/proc` path through pathrs, which keeps one
//!   private procfs mount (`fsopen("proc")` with `subset=pid`, detached) in a process-wide cache. Nothing in the
//!   monitor opened it before, so the intermediate process created the superblock itself (the slowest system
//!   calls of its life) and the init process inherited it from there. [`procfs_handle`] fills the cache in the
//!   monitor; the forks inherit the descriptor (close-on-exec: it never reaches the container's command).
//! - **The cgroup migration lock.** Moving a process between cgroup v1 cgroups takes the kernel's global
//!   `cgroup_threadgroup_rwsem` for writing, and taking it from idle waits for an RCU grace period (10–15 ms on
//!   this loaded host, measured): libcontainer's first `cgroup.procs` write paid it in the intermediate
//!   process. The lock stays cheap to take while it was taken within the last grace period, so
//!   [`MigrationLockWarmer`] has a thread write `0` (this process) to the `cgroup.procs` of the monitor's own
//!   cgroup — a migration that moves nothing but takes the lock (a `tasks` write of `0` skips it) — every
//!   millisecond from before the rootfs is mounted until libcontainer has placed the container: the grace period
//!   then passes while the monitor does its other work, and libcontainer's writes find the lock warm. The
//!   thread neither allocates nor takes locks in its loop, so libcontainer's forks of the monitor are safe.
//! - **Warming ahead.** The first write of a warm-up still waits for the grace period, and it holds the kernel's
//!   `cgroup_mutex` while it waits: the monitor's own `mkdir` of the container's cgroups queued behind it
//!   (measured 7–16 ms of the monitor blocked in `cgroup_mkdir`, per run, with perf's sched_switch stacks). So the
//!   CLI (`engine run`, `engine start`) and the API server (container create and start) call [`warm_ahead`] as
//!   soon as they know a container will start: the grace period then passes while they resolve the image, mount
//!   the rootfs, write the spec and exec the monitor, whose warmer finds the lock warm.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::cgroupfs::Hierarchy;

/// Opens (and caches, process-wide) the hardened procfs handle pathrs gives libcontainer. Best effort: without
/// it libcontainer opens its own.
pub fn procfs_handle() {
    if let Err(e) = pathrs::procfs::ProcfsHandle::new() {
        tracing::debug!("cannot open a procfs handle ahead of libcontainer: {e}");
    }
}

/// Keeps the cgroup migration lock warm while it lives (see the module doc); stops and joins its thread on drop.
pub struct MigrationLockWarmer {
    stop: Arc<AtomicBool>,
    /// Set by the thread once it runs its loop (std's thread set-up, which allocates, is over).
    looping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MigrationLockWarmer {
    /// Starts the warmer on this process's own cgroup in the first of `hierarchies`; `None` on a host without
    /// cgroup v1 (cgroup2 has no such lock round trip for a fresh cgroup) or if the thread cannot start.
    pub fn start(hierarchies: &[Hierarchy]) -> Option<MigrationLockWarmer> {
        let procs = hierarchies.first()?.own.join("cgroup.procs");
        let file = match OpenOptions::new().write(true).open(&procs) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %procs.display(), "cannot open the cgroup's cgroup.procs: {e}");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let looping = Arc::new(AtomicBool::new(false));
        let (flag, entered) = (stop.clone(), looping.clone());
        let thread = std::thread::Builder::new()
            .name("cgroup-warmer".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                entered.store(true, Ordering::Release);
                let fd = file.as_raw_fd();
                // "0" is this process, already in this cgroup: the kernel takes the lock and moves nothing. A
                // failed write (cgroup gone) ends the loop.
                // SAFETY: writing a 1-byte buffer we own to a descriptor this closure owns (`file`).
                // Parked rather than asleep between writes, so that `finish` wakes it at once: the monitor
                // joins it between libcontainer's create and the start of the container's command.
                while !flag.load(Ordering::Relaxed) && unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } == 1 {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
                drop(file);
            })
            .ok()?;
        Some(MigrationLockWarmer { stop, looping, thread: Some(thread) })
    }

    /// Returns once the thread runs its loop, where it neither allocates nor locks, so that this process may be
    /// forked without the child inheriting a lock the thread held. A thread not there within 100 ms (a very
    /// loaded host) is stopped instead.
    pub fn settle(&mut self) {
        for _ in 0..100 {
            if self.looping.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for MigrationLockWarmer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Until when (nanoseconds of [`monotonic_ns`]) the process-wide warm-ahead thread keeps writing; 0 = stop.
static WARM_UNTIL_NS: AtomicU64 = AtomicU64::new(0);
/// True while the warm-ahead thread runs.
static WARMING: AtomicBool = AtomicBool::new(false);

/// Nanoseconds since the process's first call (a monotonic clock; no allocation, no lock after the first call).
fn monotonic_ns() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Keeps the cgroup migration lock warm from now for `ahead` (see the module doc, "Warming ahead"), on this
/// process's own cgroup, from one process-wide thread; later calls extend the time. A no-op on a host without
/// cgroup v1. Like [`MigrationLockWarmer`], the thread's loop neither allocates nor takes locks, so the caller
/// may fork (the monitor's double fork) while it runs.
pub fn warm_ahead(ahead: Duration) {
    let until = monotonic_ns().saturating_add(u64::try_from(ahead.as_nanos()).unwrap_or(u64::MAX));
    WARM_UNTIL_NS.fetch_max(until, Ordering::AcqRel);
    if WARMING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let Some(procs) = super::cgroupfs::host_hierarchies("").first().map(|h| h.own.join("cgroup.procs")) else {
        WARMING.store(false, Ordering::Release);
        return;
    };
    let file = match OpenOptions::new().write(true).open(&procs) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(path = %procs.display(), "cannot open the cgroup's cgroup.procs: {e}");
            WARMING.store(false, Ordering::Release);
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("cgroup-warm-ahead".into()).stack_size(64 * 1024).spawn(move || {
        let fd = file.as_raw_fd();
        loop {
            // SAFETY: writing a 1-byte buffer we own to a descriptor this closure owns (`file`).
            let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } == 1;
            if written && monotonic_ns() < WARM_UNTIL_NS.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            WARMING.store(false, Ordering::Release);
            // A caller may have extended the time between the check and the store, and seen the thread running:
            // take the work back rather than leave its request unserved.
            if written
                && monotonic_ns() < WARM_UNTIL_NS.load(Ordering::Acquire)
                && WARMING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                continue;
            }
            break;
        }
        drop(file);
    });
    if spawned.is_err() {
        WARMING.store(false, Ordering::Release);
    }
}

/// True while the [`warm_ahead`] thread runs.
pub fn warming() -> bool {
    WARMING.load(Ordering::Acquire)
}

/// Ends [`warm_ahead`]'s time now (the container it warmed for has started); the thread stops within 1 ms.
pub fn stop_warming() {
    WARM_UNTIL_NS.store(0, Ordering::Release);
}
