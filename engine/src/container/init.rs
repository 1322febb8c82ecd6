//! `--init`: a tiny PID 1 for the container, like docker's tini. It runs in the container's own init process
//! (see [`super::workload`]): fork the command, then forward every catchable signal to it, reap every zombie
//! (orphans are re-parented to PID 1), and exit with the command's status once it is gone — 128+N if it was
//! killed by signal N.

use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setpgid, ForkResult, Pid};

/// Runs `args` under a reaping, signal-forwarding PID 1. Never returns.
pub fn run(args: &[String]) -> ! {
    let mut all = SigSet::all();
    // These cannot be caught and must stay deliverable.
    all.remove(Signal::SIGKILL);
    all.remove(Signal::SIGSTOP);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None);
    // SAFETY: we are single-threaded here (libcontainer's init process); the child only calls async-signal-safe
    // functions before exec.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            super::workload::reset_signals();
            super::workload::exec_or_exit(args)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(_) => super::workload::exec_or_exit(args),
    };
    loop {
        let Ok(sig) = all.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => exit(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: leaving the process; nothing to clean up in this forked init.
    unsafe { libc::_exit(code) }
}
