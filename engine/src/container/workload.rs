//! What libcontainer runs as the last step inside the container: our [`Executor`], in place of libcontainer's
//! default one, for three reasons.
//!
//! 1. Docker's exit codes when the command cannot run: `execvp` failing with `ENOENT` exits 127 ("executable file
//!    not found in $PATH"), any other failure (`EACCES`, a directory, a bad binary) exits 126, each with docker's
//!    message on the container's stderr. libcontainer's default executor would fail the init process with a
//!    generic error instead, and its `validate` checks the path before start with its own wording.
//! 2. A clean process: the monitor blocks signals (it reads them from a signalfd) and Rust ignores `SIGPIPE`;
//!    both would be inherited through `exec`, so the mask is cleared and `SIGPIPE` reset first.
//! 3. `--init`: instead of exec'ing the command, PID 1 stays this process and runs [`super::init::run`] — a
//!    reaper that forwards signals — so no init binary has to exist in (or be mounted into) the image.

use std::ffi::CString;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// The executor of Drydock containers (and of `exec` processes, with `init: false`).
#[derive(Clone, Debug, Default)]
pub struct DrydockExecutor {
    pub init: bool,
    /// The seccomp BPF program to install right before `execve` (see [`super::seccomp`]); `None` when
    /// unconfined.
    pub seccomp: Option<std::sync::Arc<Vec<u8>>>,
}

impl Executor for DrydockExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args: Vec<String> = spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default();
        if args.is_empty() {
            return Err(ExecutorError::InvalidArg);
        }
        reset_signals();
        // `consoleSize` (set by `exec -t`): the size of the caller's terminal, on our pty before the command runs.
        if let Some(size) = spec.process().as_ref().and_then(|p| p.console_size()) {
            let ws =
                libc::winsize { ws_row: size.height() as u16, ws_col: size.width() as u16, ws_xpixel: 0, ws_ypixel: 0 };
            // SAFETY: TIOCSWINSZ reads a `winsize` we own; fd 0 is the pty slave when a console size is given.
            unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
        }
        if let Some(program) = &self.seccomp {
            if let Err(e) = super::seccomp::load(program) {
                let line = format!("drydock: cannot install the seccomp profile: {}\n", e.desc());
                // SAFETY: writing a valid buffer to fd 2, then leaving without running destructors.
                unsafe {
                    libc::write(2, line.as_ptr().cast(), line.len());
                    libc::_exit(super::EXIT_ENGINE as i32)
                }
            }
        }
        if self.init {
            super::init::run(&args);
        }
        exec_or_exit(&args)
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        Ok(())
    }
}

/// Clears the blocked-signal mask and restores default dispositions of signals a parent may have ignored.
pub fn reset_signals() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in [Signal::SIGPIPE, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD] {
        // SAFETY: restoring the default disposition installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

/// Replaces this process with `args` (looked up in `PATH`); on failure writes docker's message to stderr and
/// exits 127 (not found) or 126 (cannot invoke).
pub fn exec_or_exit(args: &[String]) -> ! {
    let cargs: Vec<CString> = args.iter().map(|a| CString::new(a.as_bytes()).unwrap_or_default()).collect();
    let program = cargs.first().cloned().unwrap_or_default();
    let err = match nix::unistd::execvp(&program, &cargs) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let name = &args[0];
    let (code, message) = match err {
        nix::errno::Errno::ENOENT if !name.contains('/') => {
            (127, format!("exec: \"{name}\": executable file not found in $PATH"))
        }
        nix::errno::Errno::ENOENT => (127, format!("exec: \"{name}\": stat {name}: no such file or directory")),
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM | nix::errno::Errno::EISDIR => {
            (126, format!("exec: \"{name}\": permission denied"))
        }
        e => (126, format!("exec: \"{name}\": {}", e.desc().to_lowercase())),
    };
    let line = format!("drydock: {message}\n");
    // SAFETY: writing a valid buffer to fd 2, then leaving without running destructors (we are a forked child).
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(code)
    }
}
