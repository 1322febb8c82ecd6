//! The per-container monitor: the process that owns a running container, like conmon.
//!
//! ## Process structure
//! ```text
//! engine run/start (CLI)
//!   └─ fork ─ setsid ─ fork ─ monitor (the engine CLI: runs on in the fork; API server and embedders:
//!        exec /proc/self/exe container-monitor <id> --status-fd 3 [--attach])
//!        (intermediate exits at once: the monitor is re-parented to init and outlives the CLI)
//!        monitor ── libcontainer: intermediate process ── container init (CLONE_PARENT: the monitor's child)
//! ```
//! Why this shape:
//! - **Every start goes through a monitor, attached or not.** One code path records logs, exit codes, OOM kills
//!   and restarts; a foreground `run` is just a CLI that attaches to it. The container's init is the monitor's
//!   child (libcontainer clones it with `CLONE_PARENT`), so the monitor learns its exit status from `waitpid`,
//!   with no polling.
//! - **Double fork + setsid**: the monitor is in its own session (no terminal signals from the CLI's shell) and
//!   is not the CLI's child, so the CLI can exit (`-d`) or die without taking the container with it.
//! - **No re-exec from the CLI**: the `engine` CLI is single-threaded (but for the warm-ahead thread of
//!   [`super::prestart`], whose loop holds no lock), so its forked copy runs the monitor directly — re-executing
//!   the 100+ MB engine binary cost ~2–3 ms of every start (execve, page faults, process start-up; measured in
//!   docs/engine-containers.md). Its resident memory stays small all the same: what the CLI touched is given
//!   back once the container has run a moment (see [`super::trim`]). A multi-threaded caller (the API server,
//!   the runner) could fork while another thread holds a lock the child would inherit, so it re-executes the
//!   binary as `container-monitor` (see [`run_if_monitor`]); its command line shows what it is in `ps`.
//! - **Attach through inherited file descriptors**, not a socket: for a foreground run the monitor simply inherits
//!   the CLI's stdin/stdout/stderr; it tees the container's output to them and to the log, and (without a tty)
//!   gives the CLI's stdin to the container directly. A status pipe (fd 3) tells the CLI "started <pid>", then
//!   "exit <code>" — or why the start failed. The CLI forwards signals to the container (docker's sig-proxy)
//!   and `SIGWINCH` to the monitor, which copies the terminal size onto the container's pty.
//!
//! ## Private mount namespace
//! The monitor first moves into a mount namespace of its own (`unshare(CLONE_NEWNS)`, `/` made `rprivate`), and
//! mounts the container's rootfs, cgroup view and volumes there. libcontainer's intermediate process parses
//! `/proc/self/mountinfo` a dozen times per start (libcgroups v1 looks up each controller's mount point), and
//! its cost grows with every mount in the namespace: with the mounts in the host's namespace, each running
//! container added ~14 lines, and `run --rm true` took 22 ms with none running but 47 ms with 30 running
//! (measured here). Now every start sees the host's mounts and its own only, and a killed monitor's mounts go
//! with its namespace. Other processes reach a running container's files through
//! `/proc/<monitor>/root/…/merged` ([`super::rootfs::Mounted::container`]).
//!
//! The monitor blocks its signals and reads them from a signalfd; its loop is `poll` over the container's
//! output pipes (or pty master), the attached stdin and the signalfd. No async runtime, and one thread besides
//! the main one only for a container with a healthcheck: its probes (see [`super::health`]).
//!
//! Before the container's command runs, the monitor connects the container's network namespace to its networks
//! and binds its published ports (the proxy then runs in a child of the monitor); see [`super::network`].
//!
//! On exit it records the status (exit code, `OOMKilled` from the memory cgroup's `oom_kill` counter), stops the
//! proxy, leaves the networks, deletes libcontainer's state and cgroup, unmounts the rootfs, then applies the
//! restart policy with docker's backoff (100 ms doubling, reset after 10 s of running, at most 1 min), or
//! removes the container (`--rm`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};

use super::logs::LogWriter;
use super::network::ProxyProcess;
use super::rootfs::RootfsDirs;
use super::store::{process_alive, process_start_time, Container, ContainerStore, State, Status};
use super::workload::DrydockExecutor;
use super::{error_chain, io_err, spec, sys_err, user, Error, Result, EXIT_ENGINE};
use crate::root::Root;
use crate::volume::VolumeStore;

/// The monitor's half of the status pipe protocol (one line per message).
const STARTED: &str = "started";
const FAILED: &str = "failed";
const EXITED: &str = "exit";
/// How long a container runs before its monitor gives back the pages of its startup (see `trim`).
const TRIM_AFTER: Duration = Duration::from_millis(100);

/// A monitor just spawned by the CLI: the read end of its status pipe.
pub struct Spawned {
    status: BufReader<File>,
}

/// How a monitor start ended, as reported over the status pipe.
#[derive(Debug)]
pub enum Started {
    /// The container runs as this host pid.
    Pid(i32),
    /// The start failed; exit code and message.
    Failed(u8, String),
}

impl Spawned {
    /// Waits for the monitor to report the start.
    pub fn started(&mut self) -> Result<Started> {
        let line = self.line()?;
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(STARTED), Some(pid), _) => pid
                .parse()
                .map(Started::Pid)
                .map_err(|_| Error::Runtime(format!("container monitor sent an invalid pid: {line}"))),
            (Some(FAILED), Some(code), msg) => {
                Ok(Started::Failed(code.parse().unwrap_or(EXIT_ENGINE), msg.unwrap_or("").to_owned()))
            }
            _ => Err(Error::Runtime(
                "the container monitor exited before starting the container (see `engine logs`)".into(),
            )),
        }
    }

    /// Waits for the exit code (attached monitors only); `None` if the monitor went away without one.
    pub fn exited(&mut self) -> Option<i32> {
        let line = self.line().ok()?;
        line.strip_prefix(EXITED).and_then(|c| c.trim().parse().ok())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.status.get_ref().as_fd()
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.status.read_line(&mut line).map_err(io_err("cannot read from the container monitor"))?;
        Ok(line.trim_end().to_owned())
    }
}

/// Starts a monitor for container `id` (see the module doc for the process structure). With `attach`, the
/// monitor inherits this process's stdin/stdout/stderr.
pub fn spawn(root: &Root, id: &str, attach: bool) -> Result<Spawned> {
    spawn_inner(root, id, attach, None)
}

/// Starts an attached monitor whose stdin, stdout and stderr are `stdio` instead of this process's: how
/// `engine serve` attaches a hijacked API connection (it pumps the other ends of these pipes). The caller may
/// drop its copies once this returns.
pub fn spawn_with_stdio(root: &Root, id: &str, stdio: &[OwnedFd; 3]) -> Result<Spawned> {
    spawn_inner(root, id, true, Some(stdio.each_ref().map(AsRawFd::as_raw_fd)))
}

fn spawn_inner(root: &Root, id: &str, attach: bool, stdio: Option<[RawFd; 3]>) -> Result<Spawned> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("cannot create a pipe"))?;
    let cstr = |s: &str| std::ffi::CString::new(s).map_err(|_| Error::Runtime(format!("argument contains NUL: {s}")));
    let exe = cstr("/proc/self/exe")?;
    let mut args = vec![
        cstr("engine")?,
        cstr("--root")?,
        cstr(&root.path().display().to_string())?,
        // libcontainer and libcgroups log warnings (unsupported v1 controllers …) that are noise to a user.
        cstr("--log-level")?,
        cstr("off")?,
        cstr("container-monitor")?,
        cstr(id)?,
        cstr("--status-fd")?,
        cstr("3")?,
    ];
    if attach {
        args.push(cstr("--attach")?);
    }
    let devnull = std::ffi::CString::new("/dev/null").unwrap_or_default();
    // Decided before the fork: whether the monitor may run on in the forked process (see `forks_in_process`).
    let in_process = stdio.is_none() && forks_in_process();
    // Built before the fork: `engine serve` forks from a multi-threaded process, where the child may not allocate.
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: between fork and exec the children only make raw system calls (async-signal-safe), so this holds
    // for the multi-threaded API server. Running on without exec (`in_process`) is only chosen when no other
    // thread could hold a lock at the fork (see `forks_in_process`); glibc's fork keeps malloc consistent.
    match unsafe { fork() }.map_err(sys_err("cannot fork the container monitor"))? {
        ForkResult::Child => unsafe {
            let _ = setsid();
            match fork() {
                Ok(ForkResult::Child) => {
                    if let Some(fds) = stdio {
                        // Lift the sources above the standard descriptors and fd 3 first, so that no dup2 below
                        // overwrites another's source.
                        let high = fds.map(|fd| libc::fcntl(fd, libc::F_DUPFD, 10));
                        for (target, fd) in high.into_iter().enumerate() {
                            libc::dup2(fd, target as RawFd);
                        }
                    }
                    let wfd = w.as_raw_fd();
                    if wfd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0);
                    } else {
                        libc::dup2(wfd, 3);
                    }
                    if !attach {
                        let null = libc::open(devnull.as_ptr(), libc::O_RDWR);
                        for fd in 0..3 {
                            libc::dup2(null, fd);
                        }
                    }
                    if in_process {
                        // Only what leaked in from outside (no close-on-exec): the process's own descriptors —
                        // tokio's process-wide signal pipe among them, which a later netlink session needs —
                        // stay valid, as after a plain fork.
                        close_inherited_descriptors();
                        IN_MONITOR.store(true, Ordering::Relaxed);
                        // What `ps -o comm`, `top` and `pgrep` show (the command line stays the CLI's).
                        libc::prctl(libc::PR_SET_NAME, c"engine-monitor".as_ptr());
                        let code = run(root, id, Some(3), attach);
                        // Not `exit`: the CLI's atexit handlers and buffered output belong to the CLI.
                        libc::_exit(code & 0xff)
                    }
                    libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
                    libc::execv(exe.as_ptr(), argv.as_ptr());
                    libc::_exit(EXIT_ENGINE as i32)
                }
                _ => libc::_exit(0),
            }
        },
        ForkResult::Parent { child } => {
            drop(w);
            let _ = waitpid(child, None);
            Ok(Spawned { status: BufReader::new(File::from(r)) })
        }
    }
}

/// Set in a monitor that runs on in the forked CLI process (see [`allow_in_process`]); the CLI's log writer checks
/// it, so that libcontainer's warnings do not reach the user's terminal from the monitor.
static IN_MONITOR: AtomicBool = AtomicBool::new(false);
/// Set by a caller that lets [`spawn`] run the monitor in the forked process (see [`allow_in_process`]).
static IN_PROCESS_ALLOWED: AtomicBool = AtomicBool::new(false);

/// Lets [`spawn`] run the monitor on in the forked process instead of re-executing the engine binary, when
/// the process is single-threaded at that moment (besides the [`super::prestart::warm_ahead`] thread, whose
/// loop holds no lock). The re-exec costs ~2–3 ms of a container start (execve, page faults of a large binary,
/// the start-up of a new process); the forked copy of a short-lived CLI is already warm. For the `engine` CLI,
/// which calls this first; the API server and other embedders (multi-threaded) keep the re-exec.
pub fn allow_in_process() {
    IN_PROCESS_ALLOWED.store(true, Ordering::Relaxed);
}

/// True in a monitor process (so far only known for one forked without re-exec).
pub fn in_monitor() -> bool {
    IN_MONITOR.load(Ordering::Relaxed)
}

/// Closes the descriptors above 3 that are not close-on-exec: inherited by the CLI from whoever started it (a
/// shell's pipe, say), which a detached monitor must not keep open. Everything the engine opens itself is
/// close-on-exec and stays.
fn close_inherited_descriptors() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<RawFd> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    for fd in fds.into_iter().filter(|&fd| fd > 3) {
        // SAFETY: F_GETFD only reads flags; a descriptor without FD_CLOEXEC is not owned by anything in this
        // process (std, tokio and the engine open everything close-on-exec), so closing it invalidates nothing.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::close(fd);
            }
        }
    }
}

/// Whether a monitor forked now may run on without exec: allowed by the caller, and no other thread could hold
/// a lock the child would inherit (the warm-ahead thread's loop takes none).
fn forks_in_process() -> bool {
    if !IN_PROCESS_ALLOWED.load(Ordering::Relaxed) {
        return false;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    threads == 1 || (threads == 2 && super::prestart::warming())
}

/// For a binary that embeds the engine library (`runner`, …): [`spawn`] re-executes `/proc/self/exe` as
/// `engine --root ROOT --log-level off container-monitor ID --status-fd FD [--attach]`, which only the `engine`
/// CLI parses. Such a binary calls this first thing in `main` and exits with the code when it returns `Some`.
pub fn run_if_monitor() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root_flag, root, log_flag, _, verb, id, rest @ ..] = args.as_slice() else {
        return None;
    };
    if root_flag != "--root" || log_flag != "--log-level" || verb != "container-monitor" {
        return None;
    }
    let (status_fd, attach) = match rest {
        [flag, fd] if flag == "--status-fd" => (fd.parse().ok(), false),
        [flag, fd, a] if flag == "--status-fd" && a == "--attach" => (fd.parse().ok(), true),
        _ => return None,
    };
    match Root::open(std::path::Path::new(root)) {
        Ok(root) => Some(run(&root, id, status_fd, attach)),
        Err(e) => {
            eprintln!("container monitor: {e}");
            Some(i32::from(super::EXIT_ENGINE))
        }
    }
}

/// Entry point of `engine container-monitor`: supervises container `id` until it is gone. Returns the
/// process exit code.
pub fn run(root: &Root, id: &str, status_fd: Option<RawFd>, attach: bool) -> i32 {
    private_mount_namespace();
    // SAFETY: the fd was set up for us by `spawn` and nothing else owns it.
    let status = status_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Some(s) = &status {
        let _ = fcntl(s.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    let store = ContainerStore::open(root);
    let mut monitor = match Monitor::new(store, id, status, attach) {
        Ok(m) => m,
        Err(e) => return EXIT_ENGINE as i32 + report_early(status_fd, &e),
    };
    monitor.supervise()
}

/// Moves the monitor into a mount namespace of its own (see the module doc, "Private mount namespace"): a copy
/// of the host's, made `rprivate` (no mount propagates either way; the container has its own namespace anyway).
/// Best effort: without it the container's mounts are made in the host's namespace, as they were before.
fn private_mount_namespace() {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        tracing::warn!("cannot give the container monitor a mount namespace of its own: {e}");
        return;
    }
    if let Err(e) = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>) {
        tracing::warn!("cannot stop the container monitor's mounts from propagating to the host: {e}");
    }
}

fn report_early(_fd: Option<RawFd>, e: &Error) -> i32 {
    eprintln!("Error: {e}");
    0
}

struct Monitor {
    store: ContainerStore,
    c: Container,
    status: Option<File>,
    attach: bool,
    signals: SignalFd,
    /// The attached terminal's stdout/stderr still accept writes.
    out_open: [bool; 2],
    /// The userland proxy of the published ports while the container runs (see [`super::network`]).
    proxy: Option<ProxyProcess>,
}

/// A running container as the monitor holds it.
struct Running {
    pid: Pid,
    started: Instant,
    /// stdout and stderr read ends (non-tty) or the pty master (tty, in slot 0).
    outputs: Vec<(OwnedFd, usize)>,
    /// Write end of the container's stdin pipe, kept open for `-i` without attach; the pty master with a tty.
    stdin_sink: Option<OwnedFd>,
}

impl Monitor {
    fn new(store: ContainerStore, id: &str, status: Option<File>, attach: bool) -> Result<Monitor> {
        let c = store.load(id)?;
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGWINCH,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGPIPE,
        ] {
            mask.add(s);
        }
        mask.thread_block().map_err(sys_err("cannot block signals"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys_err("cannot create a signalfd"))?;
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
        Ok(Monitor { store, c, status, attach, signals, out_open: [true, true], proxy: None })
    }

    fn report(&mut self, line: &str) {
        if let Some(s) = &mut self.status {
            if writeln!(s, "{line}").is_err() {
                self.status = None;
            }
        }
    }

    /// The precompiled default seccomp profile, unless the container runs unconfined.
    fn seccomp_program(&self) -> Result<Option<std::sync::Arc<Vec<u8>>>> {
        if super::seccomp::enabled(&self.c.host_config.security_opt) {
            Ok(Some(super::seccomp::program(self.store.root())?))
        } else {
            Ok(None)
        }
    }

    fn supervise(&mut self) -> i32 {
        let id = self.c.id.clone();
        let mut log = match LogWriter::open(&self.store.log_path(&id)) {
            Ok(l) => l,
            Err(e) => {
                self.report(&format!("{FAILED} {EXIT_ENGINE} {e}"));
                return EXIT_ENGINE as i32;
            }
        };
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            let running = match self.start(first) {
                Ok(r) => r,
                Err(e) => {
                    let code = e.exit_code();
                    let msg = e.to_string();
                    let _ = self.store.update_state(&id, |s| {
                        s.status = if first { Status::Created } else { Status::Exited };
                        s.error = msg.clone();
                        s.exit_code = code as i32;
                        s.pid = 0;
                        s.monitor_pid = 0;
                        s.ports.clear();
                    });
                    self.teardown();
                    if first {
                        self.report(&format!("{FAILED} {code} {}", msg.replace('\n', " ")));
                    } else {
                        self.report(&format!("{EXITED} {code}"));
                    }
                    return code as i32;
                }
            };
            // The healthcheck's probe thread, for this run only; `starting` is recorded before the start is
            // reported, so `run -d` is never followed by an inspect without `State.Health`.
            let health = super::health::HealthMonitor::start(&self.store, &self.c);
            if first {
                self.report(&format!("{STARTED} {}", running.pid));
                if !self.attach {
                    self.status = None;
                }
            }
            first = false;
            let ran = running.started;
            let exit_code = self.wait(running, &mut log);
            drop(health);
            if self.c.host_config.auto_remove {
                return self.finish_removed(exit_code);
            }
            let oom = oom_killed(&id);
            self.teardown();
            let state = self.store.update_state(&id, |s| {
                s.status = Status::Exited;
                s.exit_code = exit_code;
                s.oom_killed = oom;
                s.pid = 0;
                s.ports.clear();
                s.finished_at = crate::image::now_rfc3339();
            });
            let state = match state {
                Ok(s) => s,
                Err(_) => break exit_code,
            };
            if !self.should_restart(&state) {
                break self.finish(exit_code);
            }
            if ran.elapsed() >= Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            let _ = self.store.update_state(&id, |s| {
                s.status = Status::Restarting;
                s.restart_count += 1;
            });
            if !self.sleep_unless_stopped(backoff) {
                let _ = self.store.update_state(&id, |s| s.status = Status::Exited);
                break self.finish(exit_code);
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    /// After the last exit: `--rm` removal, the exit code to the attached CLI.
    fn finish(&mut self, exit_code: i32) -> i32 {
        if self.c.host_config.auto_remove {
            let _ = super::remove::remove_files(&self.store, &self.c.id);
        } else {
            let _ = self.store.update_state(&self.c.id, |s| s.monitor_pid = 0);
        }
        self.report(&format!("{EXITED} {exit_code}"));
        exit_code
    }

    /// `--rm`: the container disappears at once (its directory is moved into `tmp/` under the lock), the
    /// attached CLI gets the exit code, and only then is the slow part done — cgroup removal and the unmount
    /// (each can wait for an RCU grace period) and deleting the files. `--rm` excludes restart policies.
    fn finish_removed(&mut self, exit_code: i32) -> i32 {
        // libcontainer's state directory (outside the container's directory since it moved to /run).
        let runtime = self.store.runtime_root(&self.c.id).join(&self.c.id);
        // The exit code is recorded before the record goes: a waiter that is not the attached CLI (the API
        // server's `wait`, polling the state) reads it there.
        let _ = self.store.update_state(&self.c.id, |s| {
            s.status = Status::Exited;
            s.exit_code = exit_code;
            s.pid = 0;
            s.finished_at = crate::image::now_rfc3339();
        });
        // The directory moves with its mounts (the rootfs, the cgroup view), unmounted below from the new place.
        let trash = super::remove::detach_dir(&self.store, &self.c.id);
        self.report(&format!("{EXITED} {exit_code}"));
        self.status = None;
        self.leave_networks();
        if let Ok(volumes) = VolumeStore::open(self.store.root()) {
            let _ = super::mounts::remove_anonymous(&self.store, &volumes, &self.c);
        }
        remove_cgroups(&self.c.id);
        let _ = std::fs::remove_dir_all(&runtime);
        if let Ok(trash) = trash {
            super::cgroupfs::unmount(&trash);
            let mut dirs = RootfsDirs::of(&trash, &self.c);
            dirs.merged = trash.join("merged");
            dirs.unmount();
            let _ = std::fs::remove_dir_all(&trash);
        }
        exit_code
    }

    fn should_restart(&self, state: &State) -> bool {
        let policy = &self.c.host_config.restart_policy;
        if state.stop_requested || policy.is_none() {
            return false;
        }
        match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                state.exit_code != 0
                    && (policy.maximum_retry_count == 0 || state.restart_count < policy.maximum_retry_count)
            }
            _ => false,
        }
    }

    /// Sleeps `d`, returning false early if the container was stopped (or removed) meanwhile.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            match self.store.raw_state(&self.c.id) {
                Ok(s) if !s.stop_requested => {}
                _ => return false,
            }
            std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
        }
        true
    }

    /// Stops the proxy, leaves the networks, deletes libcontainer's state and cgroup, unmounts the rootfs.
    fn teardown(&mut self) {
        self.leave_networks();
        cleanup_runtime(&self.store, &self.c.id);
    }

    /// Stops the proxy and disconnects from every network (the veth pairs go, addresses are free again).
    fn leave_networks(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        if let Err(e) = super::network::leave(self.store.root(), &self.c) {
            tracing::warn!(container.id = %self.c.id, "cannot leave the container's networks: {e}");
        }
    }

    /// Mounts the rootfs, writes the spec, creates and starts the container.
    fn start(&mut self, first: bool) -> Result<Running> {
        let id = self.c.id.clone();
        let me = std::process::id() as i32;
        let me_start = process_start_time(me).unwrap_or(0);
        let ever_started;
        {
            let lock = self.store.lock()?;
            let mut state = self.store.raw_state(&id)?;
            ever_started = !state.started_at.is_empty();
            if state.is_running() && state.monitor_pid != me && process_alive(state.monitor_pid, state.monitor_start) {
                return Err(Error::AlreadyRunning(id));
            }
            if !first && state.stop_requested {
                return Err(Error::NotRunning(id));
            }
            state.status = Status::Running;
            state.monitor_pid = me;
            state.monitor_start = me_start;
            state.pid = 0;
            state.error.clear();
            if first {
                state.stop_requested = false;
                state.oom_killed = false;
                state.exit_code = 0;
            }
            self.store.save_state(&id, &state, &lock)?;
        }
        // Ahead of libcontainer (see `prestart`): the migration lock's grace period passes while we mount.
        let hierarchies = super::cgroupfs::host_hierarchies(&id);
        let mut warmer = super::prestart::MigrationLockWarmer::start(&hierarchies);
        super::prestart::procfs_handle();
        // The record may have changed since the last start (`network connect`, `rename`).
        self.c = self.store.load(&id)?;
        let dir = self.store.dir(&id);
        let dirs = RootfsDirs::of(&dir, &self.c);
        // What an earlier run may have left (a monitor killed before its teardown); a container never started
        // has nothing to clean up, unless a monitor died during its first start (libcontainer's state is there;
        // a mounted rootfs or view is reused or remade below either way).
        if ever_started || !first || self.store.runtime_root(&id).join(&id).exists() {
            cleanup_runtime(&self.store, &id);
        }
        dirs.mount()?;
        if !self.c.host_config.mount_points.is_empty() {
            super::mounts::prepare(
                &VolumeStore::open(self.store.root())?,
                &self.c.host_config.mount_points,
                &dirs.merged,
            )?;
        }
        let tty = self.c.config.tty;
        let user = user::resolve(&dirs.merged, &self.c.config.user)?;
        let env = spec::process_env(&self.c.config.env, &self.c.config.hostname, &user.home, tty);
        let mut args = vec![self.c.path.clone()];
        args.extend(self.c.args.iter().cloned());
        let process =
            spec::ProcessSpec { args: &args, env, cwd: &self.c.config.working_dir, user: &user, terminal: tty };
        let cgroup_view = super::cgroupfs::prepare(&dir, &hierarchies)?;
        spec::write(&self.store, &self.c, &dirs.merged, &process, cgroup_view.as_deref())?;
        let runtime = self.store.runtime_root(&id);
        std::fs::create_dir_all(&runtime).map_err(io_err(format!("cannot create {}", runtime.display())))?;

        let mut builder = ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(&runtime)?
            .with_executor(DrydockExecutor { init: self.c.host_config.init, seccomp: self.seccomp_program()? });
        let mut outputs = Vec::new();
        let mut stdin_sink = None;
        let console = if tty {
            let listener = super::tty::ConsoleListener::bind(&dir, "console.sock")?;
            builder = builder.with_console_socket(Some(listener.path()));
            Some(listener)
        } else {
            let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("cannot create a pipe"))?;
            let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("cannot create a pipe"))?;
            builder = builder.with_stdout(out_w).with_stderr(err_w);
            outputs.push((out_r, 0));
            outputs.push((err_r, 1));
            if self.c.config.open_stdin && self.attach {
                let stdin = nix::unistd::dup(0).map_err(sys_err("cannot duplicate stdin"))?;
                // SAFETY: `dup` returned a new descriptor that we own.
                builder = builder.with_stdin(unsafe { OwnedFd::from_raw_fd(stdin) });
            } else if self.c.config.open_stdin {
                // `-i` without anyone attached: stdin stays open (reads block), as docker's open stdin.
                let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("cannot create a pipe"))?;
                builder = builder.with_stdin(in_r);
                stdin_sink = Some(in_w);
            } else {
                let null = File::open("/dev/null").map_err(io_err("cannot open /dev/null"))?;
                builder = builder.with_stdin(null);
            }
            None
        };
        if let Some(w) = &mut warmer {
            w.settle();
        }
        let built = builder.as_init(dir.join("bundle")).with_systemd(false).with_detach(true).build();
        drop(warmer);
        let mut container = built.map_err(|e| Error::Start { id: id.clone(), message: error_chain(&e) })?;
        let pid = container.pid().ok_or_else(|| Error::Runtime("libcontainer reported no pid".into()))?;
        if let Some(console) = console {
            let master = console.receive_master()?;
            // Before the process starts: a size sent over the API (`ConsoleSize` at create, or a resize), else
            // the attached terminal's.
            let sent = dir.join(super::tty::WINSIZE_FILE);
            super::tty::follow_window_size(Some(&sent), master.as_raw_fd());
            outputs.push((
                nix::unistd::dup(master.as_raw_fd())
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                    .map_err(sys_err("cannot duplicate the pty"))?,
                0,
            ));
            stdin_sink = Some(master);
        }
        // Networks and published ports before the command runs; a failure here (address taken, port busy) is
        // rolled back by the caller's teardown: proxy stopped, networks left, the created container deleted.
        let mode = &self.c.host_config.network_mode;
        if mode != "host" && super::network::joined_container(mode).is_none() {
            super::tty::loopback_up(pid.as_raw())?;
        }
        let endpoints = super::network::join(self.store.root(), &self.c, pid.as_raw())?;
        super::create::extra_hosts_at_start(
            &self.store.dir(&id).join("hosts"),
            &self.c.host_config,
            endpoints.first().map(|ep| ep.gateway),
        )?;
        let mut ports = Vec::new();
        if let Some(ep) = endpoints.first() {
            if let Some((proxy, published)) = super::network::publish(&self.c, ep.ip)? {
                self.proxy = Some(proxy);
                ports = published;
            }
        }
        container.start().map_err(|e| Error::Start { id: id.clone(), message: error_chain(&e) })?;
        let pid_start = process_start_time(pid.as_raw()).unwrap_or(0);
        self.store.update_state(&id, |s| {
            s.pid = pid.as_raw();
            s.pid_start = pid_start;
            s.started_at = crate::image::now_rfc3339();
            s.ports = ports;
        })?;
        Ok(Running { pid, started: Instant::now(), outputs, stdin_sink })
    }

    /// Pumps output into the log (and the attached terminal) until the container exits; returns its exit code.
    fn wait(&mut self, running: Running, log: &mut LogWriter) -> i32 {
        let Running { pid, outputs, stdin_sink, .. } = running;
        let mut open: Vec<bool> = outputs.iter().map(|_| true).collect();
        let tty = self.c.config.tty;
        let mut stdin_open = tty && self.attach && self.c.config.open_stdin;
        let mut exit: Option<i32> = None;
        let mut drain_deadline: Option<Instant> = None;
        let mut buf = vec![0u8; 32 * 1024];
        // Startup code and data are not needed while supervising: their pages go back once the container has
        // run for TRIM_AFTER. Most containers of a CI job (`true`, a test command) exit before that, and trimming
        // a monitor that is about to exit would only add its CPU time to the start.
        let mut trim_at = Some(Instant::now() + TRIM_AFTER);
        loop {
            if exit.is_some() && (open.iter().all(|o| !o) || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
                break;
            }
            let stdin_fd = unsafe { BorrowedFd::borrow_raw(0) };
            let mut fds: Vec<PollFd> = Vec::with_capacity(4);
            fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
            let mut which: Vec<usize> = Vec::new();
            for (i, (fd, _)) in outputs.iter().enumerate() {
                if open[i] {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(i);
                }
            }
            let stdin_index = if stdin_open {
                fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
                Some(fds.len() - 1)
            } else {
                None
            };
            let timeout = match (exit, trim_at) {
                (Some(_), _) => PollTimeout::from(100u16),
                (None, Some(at)) => {
                    let left = at.saturating_duration_since(Instant::now()).as_millis();
                    PollTimeout::from(u16::try_from(left).unwrap_or(u16::MAX))
                }
                (None, None) => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(0) if exit.is_some() => break,
                Ok(0) => {
                    if trim_at.is_some_and(|at| Instant::now() >= at) {
                        trim_at = None;
                        super::trim::release_startup_memory();
                    }
                    continue;
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
            drop(fds);
            if !revents[0].is_empty() {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    if info.ssi_signo == Signal::SIGWINCH as u32 {
                        if let Some(m) = &stdin_sink {
                            let sent = self.store.dir(&self.c.id).join(super::tty::WINSIZE_FILE);
                            super::tty::follow_window_size(Some(&sent), m.as_raw_fd());
                        }
                    }
                }
                if exit.is_none() {
                    exit = reap(pid);
                    if exit.is_some() {
                        drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                    }
                }
            }
            for (k, &i) in which.iter().enumerate() {
                let ev = revents[k + 1];
                if ev.is_empty() {
                    continue;
                }
                let (fd, stream) = (&outputs[i].0, outputs[i].1);
                match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                    Ok(0) | Err(_) => {
                        open[i] = false;
                        log.flush_partial(stream);
                    }
                    Ok(n) => {
                        let _ = log.write(stream, &buf[..n]);
                        if self.attach {
                            self.forward(stream, &buf[..n]);
                        }
                    }
                }
            }
            if let Some(si) = stdin_index {
                if !revents[si].is_empty() {
                    match nix::unistd::read(0, &mut buf) {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(n) => {
                            if let Some(m) = &stdin_sink {
                                let _ = write_all(m.as_raw_fd(), &buf[..n]);
                            }
                        }
                    }
                }
            }
            if exit.is_none() && open.iter().all(|o| !o) {
                // Output closed: the container is exiting; wait for it.
                exit = wait_blocking(pid);
            }
        }
        log.flush_partial(0);
        log.flush_partial(1);
        drop(stdin_sink);
        exit.or_else(|| wait_blocking(pid)).unwrap_or(EXIT_ENGINE as i32)
    }

    fn forward(&mut self, stream: usize, bytes: &[u8]) {
        if self.out_open[stream] && write_all(stream as RawFd + 1, bytes).is_err() {
            self.out_open[stream] = false;
        }
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> nix::Result<()> {
    // SAFETY: fd is open for the duration of this call (ours or inherited stdio).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn reap(pid: Pid) -> Option<i32> {
    waitpid(pid, Some(WaitPidFlag::WNOHANG)).ok().and_then(exit_code)
}

fn wait_blocking(pid: Pid) -> Option<i32> {
    loop {
        match waitpid(pid, None) {
            Ok(s) => {
                if let Some(c) = exit_code(s) {
                    return Some(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// True if the memory cgroup of container `id` recorded an OOM kill (v1 `memory.oom_control`).
fn oom_killed(id: &str) -> bool {
    let path = format!("/sys/fs/cgroup/memory{}/memory.oom_control", spec::cgroups_path(id));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok())))
        .is_some_and(|n| n > 0)
}

/// Removes what a run leaves behind: libcontainer's state and cgroups (killing any process left in them) and
/// the rootfs mount. Safe to call when nothing is there.
pub fn cleanup_runtime(store: &ContainerStore, id: &str) {
    // libcgroups warns about each v1 controller this host lacks; that is noise wherever this runs.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        cleanup_runtime_quietly(store, id)
    });
}

fn cleanup_runtime_quietly(store: &ContainerStore, id: &str) {
    super::cgroupfs::unmount(&store.dir(id));
    // The state of a container started before the runtime root moved to /run may still be in its directory.
    for runtime in [store.runtime_root(id).join(id), store.dir(id).join("runtime").join(id)] {
        if !runtime.exists() {
            continue;
        }
        match libcontainer::container::Container::load(runtime.clone()) {
            Ok(mut c) => {
                if c.delete(true).is_err() {
                    let _ = std::fs::remove_dir_all(&runtime);
                }
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(&runtime);
            }
        }
    }
    remove_cgroups(id);
    if let Ok(c) = store.load(id) {
        RootfsDirs::of(&store.dir(id), &c).unmount();
    }
}

/// Removes the container's v1 cgroups if libcontainer left any (e.g. its state was already gone). The
/// container's last processes may still be on their way out: an EBUSY is retried for a moment.
pub(crate) fn remove_cgroups(id: &str) {
    let rel = spec::cgroups_path(id);
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for e in entries.flatten() {
        let dir = e.path().join(rel.trim_start_matches('/'));
        for _ in 0..50 {
            match std::fs::remove_dir(&dir) {
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(2)),
                _ => break,
            }
        }
    }
}
