//! `kill`: send a signal (default `SIGKILL`) to a running container's init process. The recorded pid is only
//! signalled if its start time still matches, so a recycled pid is never hit.

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::store::{process_alive, ContainerStore};
use super::{Error, Result};

/// Parses `KILL`, `SIGKILL`, `sigkill` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Error::InvalidInput {
        what: "signal",
        value: s.to_owned(),
        hint: "use a name like SIGTERM or TERM, or a number".into(),
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
}

/// Sends `signal` to container `id`. Like docker, a kill counts as a manual stop for the restart policy.
pub fn kill(store: &ContainerStore, id: &str, signal: Signal) -> Result<()> {
    let state = store.state(id)?;
    if !state.is_running() {
        return Err(Error::NotRunning(id.to_owned()));
    }
    store.update_state(id, |s| s.stop_requested = true)?;
    signal_init(state.pid, state.pid_start, signal)?;
    // A frozen process only acts on the signal once thawed (runc does the same).
    super::pause::thaw_if_paused(store, id)
}

/// Signals the container's init if it is still the process we recorded.
pub fn signal_init(pid: i32, pid_start: u64, signal: Signal) -> Result<()> {
    if pid > 0 && process_alive(pid, pid_start) {
        match send(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(Error::Sys { context: format!("cannot signal process {pid}"), source: e }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_docker_form() {
        assert_eq!(parse_signal("KILL").ok(), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm").ok(), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("15").ok(), Some(Signal::SIGTERM));
        assert!(parse_signal("NOPE").is_err());
    }
}
