//! Terminals and small pieces of kernel plumbing around a container's start: the console socket through which
//! libcontainer hands over the pty master (`-t`), window sizes, raw mode for the attached terminal, and
//! bringing `lo` up in a new network namespace.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use super::{io_err, sys_err, Error, Result};

/// A listening console socket (`<dir>/<name>`). Container directories can be deeper than the 108 bytes a
/// socket address holds, so it is bound relative to the directory (as libcontainer does with its own sockets).
pub struct ConsoleListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleListener {
    pub fn bind(dir: &Path, name: &str) -> Result<ConsoleListener> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let _cwd = super::cwd_lock();
        let cwd = std::env::current_dir().map_err(io_err("cannot read the current directory"))?;
        std::env::set_current_dir(dir).map_err(io_err(format!("cannot enter {}", dir.display())))?;
        let bound = UnixListener::bind(name);
        let _ = std::env::set_current_dir(&cwd);
        let listener = bound.map_err(io_err("cannot create the console socket"))?;
        Ok(ConsoleListener { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives the pty master that the container's init sent (it is already queued once `build` returned).
    pub fn receive_master(self) -> Result<OwnedFd> {
        let (stream, _) = self.listener.accept().map_err(io_err("cannot accept on the console socket"))?;
        let _ = std::fs::remove_file(&self.path);
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(sys_err("cannot receive the pty master"))?;
        for cmsg in msg.cmsgs().map_err(sys_err("cannot receive the pty master"))? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor in our table for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(Error::Runtime("the container did not send its pty master".into()))
    }
}

/// Copies the window size of terminal `from` onto terminal `to` (no-op if `from` is not a terminal).
pub fn copy_window_size(from: RawFd, to: RawFd) {
    let mut ws: libc::winsize = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a `winsize` we own.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The file, in a container's directory, through which a window size reaches its monitor when the monitor has
/// no terminal of its own to copy it from (a container started over the API: `POST /containers/{id}/resize`
/// writes it, then sends the monitor `SIGWINCH`). Holds `ROWS COLS`.
pub const WINSIZE_FILE: &str = "winsize";
/// The same for an `engine exec -t` the API server runs as its child: the variable names the file.
pub const WINSIZE_ENV: &str = "DRYDOCK_WINSIZE_FILE";

/// Writes `ROWS COLS` to `path` atomically (a temp file renamed over it), for [`follow_window_size`].
pub fn write_size_file(path: &Path, rows: u16, cols: u16) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{rows} {cols}\n"))?;
    std::fs::rename(&tmp, path)
}

/// The size a [`write_size_file`] left in `path`, if any (zeros and garbage are none).
pub fn read_size_file(path: &Path) -> Option<(u16, u16)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    match (words.next(), words.next()) {
        (Some(Ok(rows)), Some(Ok(cols))) if rows > 0 && cols > 0 => Some((rows, cols)),
        _ => None,
    }
}

/// Sets terminal `fd`'s window size.
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a `winsize` we own.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Gives pty `to` the size in `file` when it holds one (a size sent over the API), else our terminal's (fd 0;
/// a no-op when that is not a terminal).
pub fn follow_window_size(file: Option<&Path>, to: RawFd) {
    match file.and_then(read_size_file) {
        Some((rows, cols)) => set_window_size(to, rows, cols),
        None => copy_window_size(0, to),
    }
}

/// The (rows, columns) of terminal `fd`, if it is one with a size.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws: libc::winsize = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a `winsize` we own.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts terminal `fd` in raw mode; the original mode comes back when the guard is dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// `None` if `fd` is not a terminal.
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: fd is one of our standard descriptors, open for the process lifetime.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let saved = tcgetattr(borrowed).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(borrowed, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let _ = tcsetattr(borrowed, SetArg::TCSANOW, &self.saved);
    }
}

/// `struct ifreq` with the flags member, as SIOCGIFFLAGS/SIOCSIFFLAGS use it.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Brings `lo` up in the network namespace of process `pid` (a new namespace starts with it down). The
/// monitor enters the namespace, flips the flag and comes back; it is single-threaded, so nothing else runs in
/// the wrong namespace meanwhile.
pub fn loopback_up(pid: i32) -> Result<()> {
    use nix::sched::{setns, CloneFlags};
    let own = File::open("/proc/self/ns/net").map_err(io_err("cannot open our network namespace"))?;
    let theirs =
        File::open(format!("/proc/{pid}/ns/net")).map_err(io_err("cannot open the container's network namespace"))?;
    setns(&theirs, CloneFlags::CLONE_NEWNET).map_err(sys_err("cannot enter the container's network namespace"))?;
    let result = set_lo_up();
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(sys_err("cannot return to our network namespace"))?;
    result
}

fn set_lo_up() -> Result<()> {
    // SAFETY: plain socket + ioctl calls on a struct we own; the socket is closed on every path.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(Error::Io {
                context: "cannot create a socket".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req = IfReqFlags { name: [0; 16], flags: 0, _pad: [0; 22] };
        req.name[..2].copy_from_slice(b"lo");
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Error::Io {
                context: "cannot read the flags of lo".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Error::Io { context: "cannot bring lo up".into(), source: std::io::Error::last_os_error() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_files_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(WINSIZE_FILE);
        assert_eq!(read_size_file(&path), None);
        write_size_file(&path, 40, 120).expect("write");
        assert_eq!(read_size_file(&path), Some((40, 120)));
        std::fs::write(&path, "0 80").expect("write");
        assert_eq!(read_size_file(&path), None);
        std::fs::write(&path, "tall wide").expect("write");
        assert_eq!(read_size_file(&path), None);
    }
}
