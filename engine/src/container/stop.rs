//! `stop`: the image's STOPSIGNAL (default `SIGTERM`), then `SIGKILL` after the grace period (`-t`, else the
//! container's stop timeout, else 10 s). Marks the stop as manual so the restart policy leaves it stopped.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::kill::{parse_signal, signal_init};
use super::store::ContainerStore;
use super::Result;

/// Waits until container `id` is no longer running (or is gone); false on timeout.
pub fn wait_stopped(store: &ContainerStore, id: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        match store.state(id) {
            Ok(s) if s.is_running() => {}
            _ => return true,
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops container `id`; returns false if it was not running.
pub fn stop(store: &ContainerStore, id: &str, timeout: Option<i64>) -> Result<bool> {
    let c = store.load(id)?;
    let state = store.state(id)?;
    if !state.is_running() {
        return Ok(false);
    }
    let state = store.update_state(id, |s| s.stop_requested = true)?;
    let signal = match &c.config.stop_signal {
        Some(s) => parse_signal(s)?,
        None => Signal::SIGTERM,
    };
    let grace = timeout.or(c.config.stop_timeout).unwrap_or(10).max(0) as u64;
    signal_init(state.pid, state.pid_start, signal)?;
    // A paused container must be thawed to act on the signal (docker stops paused containers too).
    super::pause::thaw_if_paused(store, id)?;
    if wait_stopped(store, id, Duration::from_secs(grace)) {
        return Ok(true);
    }
    let state = store.state(id)?;
    signal_init(state.pid, state.pid_start, Signal::SIGKILL)?;
    wait_stopped(store, id, Duration::from_secs(10));
    Ok(true)
}
