//! `exec`: run another process in a running container, through libcontainer's tenant builder (it joins the
//! container's namespaces and cgroup and applies the same capabilities, seccomp profile and
//! `noNewPrivileges`). The process section is written by [`super::spec::process_json`], exactly as for the
//! container's own process. The exec'd process is this CLI's child: its stdio are ours (or a pty with `-t`),
//! and its exit code is ours.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::store::ContainerStore;
use super::tty::{ConsoleListener, RawMode};
use super::workload::DrydockExecutor;
use super::{error_chain, io_err, spec, sys_err, user, Error, Result};

/// What `exec` runs and how.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
}

fn dup_fd(fd: i32) -> Result<OwnedFd> {
    let new = nix::unistd::dup(fd).map_err(sys_err("cannot duplicate a descriptor"))?;
    // SAFETY: `dup` returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Checks that container `id` runs and writes the process section for `opts` next to its record; returns the
/// file's path (each call gets its own: a monitor's healthcheck may exec while `engine exec` does).
fn write_process(store: &ContainerStore, id: &str, opts: &ExecOptions) -> Result<PathBuf> {
    let c = store.load(id)?;
    let state = store.state(id)?;
    if !state.is_running() || state.pid == 0 {
        return Err(Error::NotRunning(id.to_owned()));
    }
    if opts.cmd.is_empty() {
        return Err(Error::InvalidInput {
            what: "command",
            value: String::new(),
            hint: "give the command to run".into(),
        });
    }
    let dir = store.dir(id);
    let rootfs = super::rootfs::Mounted::container(store, &c)?;
    let u = user::resolve(rootfs.path(), opts.user.as_deref().unwrap_or(&c.config.user))?;
    drop(rootfs);
    let mut env = c.config.env.clone();
    for e in &opts.env {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
        env.push(e.clone());
    }
    let env = spec::process_env(&env, &c.config.hostname, &u.home, opts.tty);
    let cwd = opts.workdir.clone().unwrap_or_else(|| c.config.working_dir.clone());
    let mut process =
        spec::process_json(&spec::ProcessSpec { args: &opts.cmd, env, cwd: &cwd, user: &u, terminal: opts.tty });
    // The exec'd process starts before we receive the pty's master: its size travels in the spec, and our
    // executor sets it on the pty before `execve`, so the command never sees a 0x0 terminal.
    let sent = sent_size_file();
    let size = super::tty::window_size(0).or_else(|| sent.as_deref().and_then(super::tty::read_size_file));
    if let Some((rows, cols)) = opts.tty.then_some(size).flatten() {
        process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let process_path = dir.join(format!("exec-{}-{n}.json", std::process::id()));
    std::fs::write(&process_path, process.to_string())
        .map_err(io_err(format!("cannot write {}", process_path.display())))?;
    Ok(process_path)
}

/// The container's seccomp program, for an `exec` process (it gets the same profile as the container).
fn exec_seccomp(store: &ContainerStore, id: &str) -> Result<Option<std::sync::Arc<Vec<u8>>>> {
    let c = store.load(id)?;
    if super::seccomp::enabled(&c.host_config.security_opt) {
        Ok(Some(super::seccomp::program(store.root())?))
    } else {
        Ok(None)
    }
}

/// Runs `opts.cmd` in container `id`; returns its exit code (0 at once with `detach`).
pub fn exec(store: &ContainerStore, id: &str, opts: &ExecOptions) -> Result<i32> {
    let process_path = write_process(store, id, opts)?;
    let dir = store.dir(id);

    let mut builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(store.runtime_root(id))?
        .with_executor(DrydockExecutor { init: false, seccomp: exec_seccomp(store, id)? });
    let console = if opts.tty {
        let l = ConsoleListener::bind(&dir, &format!("exec-{}.sock", std::process::id()))?;
        builder = builder.with_console_socket(Some(l.path()));
        Some(l)
    } else {
        let stdin: OwnedFd = if opts.interactive {
            dup_fd(0)?
        } else {
            File::open("/dev/null").map_err(io_err("cannot open /dev/null"))?.into()
        };
        builder = builder.with_stdin(stdin).with_stdout(dup_fd(1)?).with_stderr(dup_fd(2)?);
        None
    };
    // libcgroups warns about every v1 controller this host lacks: noise on the user's terminal, so the
    // runtime's own logging is off for this call (errors still come back as values).
    let built = tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        let _cwd = super::cwd_lock();
        builder.as_tenant().with_process(Some(&process_path)).with_detach(opts.tty).build()
    });
    let _ = std::fs::remove_file(&process_path);
    let pid = built.map_err(|e| Error::Runtime(format!("cannot exec in container {id}: {}", error_chain(&e))))?;
    if opts.detach {
        return Ok(0);
    }
    if let Some(console) = console {
        let master = console.receive_master()?;
        super::tty::follow_window_size(sent_size_file().as_deref(), master.as_raw_fd());
        let _raw = if opts.interactive { RawMode::enter(0) } else { None };
        pump_tty(&master, opts.interactive);
    }
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(sys_err("cannot wait for the exec'd process")(e)),
        }
    }
}

/// What [`exec_captured`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedExec {
    /// The exit code (128+N if killed by signal N); `None` if the timeout killed it.
    pub exit_code: Option<i32>,
    /// Its stdout and stderr, interleaved as written, cut at the `limit` given.
    pub output: Vec<u8>,
}

/// Runs `opts.cmd` in container `id` as [`exec`] does, but with stdin from `/dev/null` and stdout and stderr
/// captured into one buffer (at most `limit` bytes kept; the rest is read and dropped so the process never
/// blocks on a full pipe). It is SIGKILLed if it still runs after `timeout`. `tty`, `interactive` and `detach`
/// are ignored. Healthcheck probes run through here.
pub fn exec_captured(
    store: &ContainerStore,
    id: &str,
    opts: &ExecOptions,
    timeout: Duration,
    limit: usize,
) -> Result<CapturedExec> {
    let (pid, read_end) = spawn_piped(store, id, opts)?;
    Ok(collect(pid, &read_end, Instant::now() + timeout, limit))
}

/// Starts `opts.cmd` in container `id` with stdin from `/dev/null` and stdout and stderr into one pipe; returns
/// the process (our child) and the pipe's non-blocking read end.
fn spawn_piped(store: &ContainerStore, id: &str, opts: &ExecOptions) -> Result<(Pid, OwnedFd)> {
    let opts = ExecOptions { tty: false, interactive: false, detach: false, ..opts.clone() };
    let process_path = write_process(store, id, &opts)?;
    let built = (|| {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("cannot create a pipe"))?;
        // Only our end is non-blocking: the process's writes must block on a full pipe, not fail.
        fcntl(read_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(sys_err("cannot set up a pipe"))?;
        let stderr = write_end.try_clone().map_err(io_err("cannot duplicate a pipe"))?;
        let null: OwnedFd = File::open("/dev/null").map_err(io_err("cannot open /dev/null"))?.into();
        let builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(store.runtime_root(id))?
            .with_executor(DrydockExecutor { init: false, seccomp: exec_seccomp(store, id)? })
            .with_stdin(null)
            .with_stdout(write_end)
            .with_stderr(stderr);
        let pid = tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            let _cwd = super::cwd_lock();
            builder.as_tenant().with_process(Some(&process_path)).with_detach(false).build()
        })
        .map_err(|e| Error::Runtime(format!("cannot exec in container {id}: {}", error_chain(&e))))?;
        Ok::<_, Error>((pid, read_end))
    })();
    let _ = std::fs::remove_file(&process_path);
    built
}

/// How [`exec_streamed`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamedExit {
    /// The process exited with this code (128+N if killed by signal N).
    Exited(i32),
    /// It wrote nothing for the idle timeout and was SIGKILLed.
    IdleTimeout,
    /// `cancel` was set and it was SIGKILLed.
    Canceled,
}

/// Runs `opts.cmd` in container `id` as [`exec_captured`] does, but hands its output (stdout and stderr
/// interleaved) to `on_output` as it arrives. It is SIGKILLed when it has written nothing for `idle_timeout`
/// (CircleCI's `no_output_timeout`) or when `cancel` becomes true (checked every 10 ms). The runner's steps run
/// through here.
pub fn exec_streamed(
    store: &ContainerStore,
    id: &str,
    opts: &ExecOptions,
    idle_timeout: Option<Duration>,
    cancel: &std::sync::atomic::AtomicBool,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<StreamedExit> {
    let (pid, output) = spawn_piped(store, id, opts)?;
    let last_output = std::cell::Cell::new(Instant::now());
    let mut reason = StreamedExit::Canceled;
    let code = pump_until_exit(
        pid,
        &output,
        &mut |bytes| {
            last_output.set(Instant::now());
            on_output(bytes);
        },
        &mut || {
            if cancel.load(Ordering::Relaxed) {
                reason = StreamedExit::Canceled;
                return true;
            }
            if idle_timeout.is_some_and(|t| last_output.get().elapsed() >= t) {
                reason = StreamedExit::IdleTimeout;
                return true;
            }
            false
        },
    );
    Ok(code.map_or(reason, StreamedExit::Exited))
}

/// Reads `output` until `pid` exits (its children may keep the pipe open: the exit is what counts) or the
/// deadline passes, when it is killed.
fn collect(pid: Pid, output: &OwnedFd, deadline: Instant, limit: usize) -> CapturedExec {
    let mut out = Vec::new();
    let exit_code = pump_until_exit(
        pid,
        output,
        &mut |bytes| out.extend_from_slice(&bytes[..bytes.len().min(limit.saturating_sub(out.len()))]),
        &mut || Instant::now() >= deadline,
    );
    CapturedExec { exit_code, output: out }
}

/// The loop under [`collect`] and [`exec_streamed`]: hands what `pid` writes to `output` to `on_output` until it
/// exits (its exit code, 128+N if killed by signal N; its children may keep the pipe open, the exit is what
/// counts), or until `stop` says so, checked at least every 10 ms — then it is SIGKILLed and `None` returned.
fn pump_until_exit(
    pid: Pid,
    output: &OwnedFd,
    on_output: &mut dyn FnMut(&[u8]),
    stop: &mut dyn FnMut() -> bool,
) -> Option<i32> {
    let mut buf = [0u8; 8192];
    let mut open = true;
    let mut drain = |open: &mut bool| loop {
        match nix::unistd::read(output.as_raw_fd(), &mut buf) {
            Ok(0) => {
                *open = false;
                return;
            }
            Ok(n) => on_output(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    };
    loop {
        let exit_code = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => None,
            // Not our child any more (cannot happen short of a bug): report it as failed.
            Err(_) => Some(-1),
        };
        if let Some(code) = exit_code {
            drain(&mut open);
            return Some(code);
        }
        if stop() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return None;
        }
        // Wake for output, else every 10 ms to look for the exit.
        if open {
            let mut fds = [PollFd::new(output.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(10u16)).is_ok_and(|n| n > 0) {
                drain(&mut open);
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The size file the API server names for an `engine exec -t` it runs (`POST /exec/{id}/resize` writes it and
/// sends us `SIGWINCH`; see `tty::WINSIZE_ENV`).
fn sent_size_file() -> Option<PathBuf> {
    std::env::var_os(super::tty::WINSIZE_ENV).map(PathBuf::from)
}

/// Copies our stdin to the pty and the pty to our stdout until the pty closes; a `SIGWINCH` (our terminal was
/// resized, or the API server sent a size) copies the new size onto the pty, as `docker exec -t` does.
fn pump_tty(master: &OwnedFd, interactive: bool) {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut buf = [0u8; 8192];
    let mut stdin_open = interactive;
    // SAFETY: fd 0 is open for the process lifetime.
    let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    let mut winch = SigSet::empty();
    winch.add(Signal::SIGWINCH);
    let resize = winch
        .thread_block()
        .ok()
        .and_then(|()| SignalFd::with_flags(&winch, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok());
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if let Some(sfd) = &resize {
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        }
        let stdin_index = fds.len();
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            return;
        }
        let m = fds[0].revents().unwrap_or(PollFlags::empty());
        let w = if resize.is_some() { fds[1].revents().unwrap_or(PollFlags::empty()) } else { PollFlags::empty() };
        let i = fds.get(stdin_index).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
        if !w.is_empty() {
            if let Some(sfd) = &resize {
                while let Ok(Some(_)) = sfd.read_signal() {}
            }
            super::tty::follow_window_size(sent_size_file().as_deref(), master.as_raw_fd());
        }
        if !m.is_empty() {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &buf[..n]);
                    let _ = std::io::Write::flush(&mut std::io::stdout().lock());
                }
            }
        }
        if !i.is_empty() {
            match nix::unistd::read(0, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = nix::unistd::write(master.as_fd(), &buf[..n]);
                }
            }
        }
    }
}
