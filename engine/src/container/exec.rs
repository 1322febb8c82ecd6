//! `exec`: run another process in a running container, through libcontainer's tenant builder (it joins the
//! container's namespaces and cgroup and applies the same capabilities, seccomp profile and
//! `noNewPrivileges`). The process section is written by [`super::spec::process_json`], exactly as for the
//! container's own process. The exec'd process is this CLI's child: its stdio are ours (or a pty with `-t`),
//! and its exit code is ours.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};

use super::rootfs::RootfsDirs;
use super::store::ContainerStore;
use super::tty::{copy_window_size, ConsoleListener, RawMode};
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

/// Runs `opts.cmd` in container `id`; returns its exit code (0 at once with `detach`).
pub fn exec(store: &ContainerStore, id: &str, opts: &ExecOptions) -> Result<i32> {
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
    let dirs = RootfsDirs::of(&dir, &c);
    let u = user::resolve(&dirs.merged, opts.user.as_deref().unwrap_or(&c.config.user))?;
    let mut env = c.config.env.clone();
    for e in &opts.env {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
        env.push(e.clone());
    }
    let env = spec::process_env(&env, &c.config.hostname, &u.home, opts.tty);
    let cwd = opts.workdir.clone().unwrap_or_else(|| c.config.working_dir.clone());
    let process =
        spec::process_json(&spec::ProcessSpec { args: &opts.cmd, env, cwd: &cwd, user: &u, terminal: opts.tty });
    let process_path = dir.join(format!("exec-{}.json", std::process::id()));
    std::fs::write(&process_path, process.to_string())
        .map_err(io_err(format!("cannot write {}", process_path.display())))?;

    let mut builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(dir.join("runtime"))?
        .with_executor(DrydockExecutor { init: false });
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
        builder.as_tenant().with_process(Some(&process_path)).with_detach(opts.tty).build()
    });
    let _ = std::fs::remove_file(&process_path);
    let pid = built.map_err(|e| Error::Runtime(format!("cannot exec in container {id}: {}", error_chain(&e))))?;
    if opts.detach {
        return Ok(0);
    }
    if let Some(console) = console {
        let master = console.receive_master()?;
        copy_window_size(0, master.as_raw_fd());
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

/// Copies our stdin to the pty and the pty to our stdout until the pty closes.
fn pump_tty(master: &OwnedFd, interactive: bool) {
    let mut buf = [0u8; 8192];
    let mut stdin_open = interactive;
    // SAFETY: fd 0 is open for the process lifetime.
    let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            return;
        }
        let m = fds[0].revents().unwrap_or(PollFlags::empty());
        let i = fds.get(1).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
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
