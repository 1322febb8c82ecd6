//! `start` (and the second half of `run`): hand the container to a new monitor (see [`super::monitor`]) and
//! either return once it runs (`-d`) or stay attached — output arrives through the inherited descriptors, this
//! process forwards signals to the container (docker's sig-proxy; `SIGWINCH` goes to the monitor, which resizes
//! the pty) and returns the container's exit code.

use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::monitor::{self, Started};
use super::store::{process_alive, ContainerStore};
use super::tty::RawMode;
use super::{sys_err, Error, Result};

/// Signals an attached CLI passes on to the container.
const PROXIED: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

fn check_startable(store: &ContainerStore, id: &str) -> Result<bool> {
    let state = store.state(id)?;
    Ok(!state.is_running())
}

/// Starts container `id` detached; returns false if it was already running (docker does not complain).
pub fn start(store: &ContainerStore, id: &str) -> Result<bool> {
    if !check_startable(store, id)? {
        return Ok(false);
    }
    let mut spawned = monitor::spawn(store.root(), id, false)?;
    match spawned.started()? {
        Started::Pid(_) => Ok(true),
        Started::Failed(code, message) => Err(failure(id, code, message)),
    }
}

fn failure(id: &str, code: u8, message: String) -> Error {
    if code == super::EXIT_ENGINE {
        Error::Start { id: id.to_owned(), message }
    } else {
        Error::Invoke { code, message }
    }
}

/// Starts container `id` attached to this process's stdio; returns its exit code.
pub fn start_attached(store: &ContainerStore, id: &str) -> Result<i32> {
    if !check_startable(store, id)? {
        return Err(Error::AlreadyRunning(id.to_owned()));
    }
    let c = store.load(id)?;
    // Block the proxied signals before the monitor starts so none is lost between its start and our loop.
    let mut mask = SigSet::empty();
    for s in PROXIED.iter().chain([Signal::SIGWINCH].iter()) {
        mask.add(*s);
    }
    mask.thread_block().map_err(sys_err("cannot block signals"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys_err("cannot create a signalfd"))?;
    let _raw = if c.config.tty && c.config.open_stdin { RawMode::enter(0) } else { None };
    let spawned = monitor::spawn(store.root(), id, true);
    // The monitor must not inherit our mask for the container: it sets its own, and the executor clears it.
    let mut spawned = spawned?;
    let pid = match spawned.started()? {
        Started::Pid(pid) => pid,
        Started::Failed(code, message) => {
            let _ = mask.thread_unblock();
            return Err(failure(id, code, message));
        }
    };
    let state = store.raw_state(id)?;
    loop {
        let mut fds = [PollFd::new(spawned.fd(), PollFlags::POLLIN), PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("cannot wait for the container")(e)),
            Ok(_) => {}
        }
        let status_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let signal_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                if sig == Signal::SIGWINCH {
                    if process_alive(state.monitor_pid, state.monitor_start) {
                        let _ = kill(Pid::from_raw(state.monitor_pid), Signal::SIGWINCH);
                    }
                } else {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
            }
        }
        if status_ready {
            let code = spawned.exited();
            let _ = mask.thread_unblock();
            return match code {
                Some(code) => Ok(code),
                // The monitor died without a word: report what the state says.
                None => Ok(store.state(id).map(|s| s.exit_code).unwrap_or(super::EXIT_ENGINE as i32)),
            };
        }
    }
}
