//! `--init`: a tiny PID 1 for the container, like docker's tini. It runs in the container's own init process
//! (see [`super::workload`]): fork the command, then forward every catchable signal to it, reap every zombie
//! (orphans are re-parented to PID 1), and exit with the command's status once it is gone — 128+N if it was
//! killed by signal N.

use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setpgid, ForkResult, Pid};

/// Runs `args` under a reaping, signal-forwarding PID 1. Never returns.
pub fn run(args: &[String]) -> ! {
    set_title(args);
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

/// Makes PID 1 read `drydock-init -- CMD…` in `ps` inside the container, as docker's shows `docker-init -- CMD…`,
/// instead of the engine's own command line (which names host paths): the process name via `PR_SET_NAME`, and
/// the command line by overwriting the argument area in place (what `setproctitle` does; moving the area with
/// `PR_SET_MM` would need `CAP_SYS_RESOURCE`). A longer title is cut to the area's size.
fn set_title(args: &[String]) {
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"drydock-init".as_ptr()) };
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the `(comm)`, which may itself hold spaces: arg_start and arg_end are fields 48 and 49.
    let Some((_, rest)) = stat.rsplit_once(')') else { return };
    let fields: Vec<usize> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let (Some(&start), Some(&end)) = (fields.get(45), fields.get(46)) else { return };
    if start == 0 || end <= start {
        return;
    }
    let mut title: Vec<u8> = Vec::new();
    for word in ["drydock-init", "--"].into_iter().chain(args.iter().map(String::as_str)) {
        title.extend_from_slice(word.as_bytes());
        title.push(0);
    }
    let len = end - start;
    title.resize(len, 0);
    // The last byte stays NUL so readers see a terminated list even when the title was cut.
    title[len - 1] = 0;
    // SAFETY: [start, end) is this process's own argument area (from the kernel), mapped writable on the stack
    // of the initial thread; nothing in this forked init reads the old arguments again.
    unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, len) };
}

fn exit(code: i32) -> ! {
    // SAFETY: leaving the process; nothing to clean up in this forked init.
    unsafe { libc::_exit(code) }
}
