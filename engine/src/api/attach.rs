//! Container output over HTTP: the hijacked `attach` stream and the `logs` body, both in docker's framing.
//!
//! Without a TTY every chunk is one frame: an 8-byte header `[stream, 0, 0, 0, len (u32, big endian)]` (stream
//! 1 = stdout, 2 = stderr) then the bytes; with a TTY the bytes go raw. docker's `run` attaches *before* it
//! starts the container, so an attach to a created container only prepares pipes and parks their container
//! ends in [`Attachments`]; the `start` that follows hands them to the monitor as its stdin/stdout/stderr
//! ([`crate::container::monitor::spawn_with_stdio`]), exactly as a foreground `engine run` hands it its own
//! terminal. The monitor's status pipe then gives the exit code, kept here for `wait?condition=removed`
//! (a `--rm` container has no state left to read it from). Attaching to a container that already runs
//! follows its log instead: output only, see docs/engine-api.md.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use nix::fcntl::OFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use super::{blocking, ApiError, ApiResult, ApiState, Query};
use crate::container::logs::LogOptions;
use crate::container::ContainerStore;
use crate::root::Root;

pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// Streams parked for containers about to start, and exit codes reported by the monitors this server started.
#[derive(Default)]
pub struct Attachments {
    pending: Mutex<HashMap<String, [OwnedFd; 3]>>,
    /// Containers whose monitor's status pipe a thread reads: `None` until the exit is reported.
    exits: Mutex<HashMap<String, Option<i32>>>,
    /// Notified on every exit report (waiters block on it instead of polling).
    exit_reported: Condvar,
    /// Tells an attach stream its container has exited (see [`Attachments::finish_watch`]).
    exit_signals: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Attachments {
    /// The container ends of the pipes of an attach waiting for container `id` to start.
    pub fn take(&self, id: &str) -> Option<[OwnedFd; 3]> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }

    fn park(&self, id: &str, fds: [OwnedFd; 3]) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), fds);
    }

    /// A thread now reads the exit report of container `id`'s monitor.
    pub fn watch(&self, id: &str) {
        self.exits.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), None);
    }

    /// The monitor of `id` reported `code` (`None`: it went away without a report).
    ///
    /// The attach stream is told as well: the monitor relays all of the container's output before it reports
    /// the exit, but a `--rm` monitor keeps the pipes open through its cleanup (unmount, cgroups, files), tens
    /// of milliseconds the client would otherwise wait for EOF.
    pub fn finish_watch(&self, id: &str, code: Option<i32>) {
        {
            let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
            match code {
                Some(c) => exits.insert(id.to_owned(), Some(c)),
                None => exits.remove(id),
            };
        }
        self.exit_reported.notify_all();
        if let Some(tx) = self.exit_signals.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            let _ = tx.send(());
        }
    }

    /// The exit code of a watched container, waiting (at most 10 s) for a report on its way: a `--rm`
    /// container's directory goes just before its monitor reports. `None` if nobody watches `id`.
    pub fn await_exit(&self, id: &str) -> Option<i32> {
        let end = Instant::now() + Duration::from_secs(10);
        let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match exits.get(id) {
                Some(Some(code)) => {
                    let code = *code;
                    exits.remove(id);
                    return Some(code);
                }
                Some(None) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    exits = self.exit_reported.wait_timeout(exits, left).unwrap_or_else(|p| p.into_inner()).0;
                }
                None => return None,
            }
        }
    }

    /// Blocks until the next exit report of container `id` if this server watches it and it has not reported
    /// yet (at most `longest`, so a waiter still notices a closed connection or a change made by another
    /// process); otherwise sleeps `poll`, the state file being the only witness then.
    pub fn pause_for_exit(&self, id: &str, poll: Duration, longest: Duration) {
        let exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(exits.get(id), Some(None)) {
            let _ = self.exit_reported.wait_timeout(exits, longest);
        } else {
            drop(exits);
            std::thread::sleep(poll);
        }
    }

    /// Forgets a reported exit code (the waiter read it from the container's state instead).
    pub fn forget_exit(&self, id: &str) {
        let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(exits.get(id), Some(Some(_))) {
            exits.remove(id);
        }
    }
}

/// One frame of docker's multiplexed stream (or the raw bytes with a TTY).
pub fn frame(stream: u8, bytes: &[u8], tty: bool) -> Bytes {
    if tty {
        return Bytes::copy_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    Bytes::from(out)
}

/// A `Write` that sends each write as one frame down a channel (the log reader runs on a blocking thread).
struct FrameWriter {
    tx: mpsc::Sender<Bytes>,
    stream: u8,
    tty: bool,
    wanted: bool,
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.wanted && !buf.is_empty() {
            self.tx
                .blocking_send(frame(self.stream, buf, self.tty))
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Write` that sends raw chunks down a channel, for tar streams produced on a blocking thread (`export`,
/// `images/get`). Wrap it in a `BufWriter`: tar writes 512-byte pieces.
pub struct ChannelWriter(pub mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.blocking_send(Bytes::copy_from_slice(buf)).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A response body produced by `write` on a blocking thread. Errors after the status went out can only end the
/// stream early (the client sees a truncated tar); check what can fail before calling this.
pub fn tar_body(write: impl FnOnce(&mut dyn Write) -> Result<(), String> + Send + 'static) -> Body {
    let (tx, rx) = mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        let mut out = io::BufWriter::with_capacity(64 * 1024, ChannelWriter(tx));
        match write(&mut out).and_then(|()| out.flush().map_err(|e| e.to_string())) {
            Ok(()) => {}
            Err(e) => tracing::warn!("tar stream ended early: {e}"),
        }
    });
    channel_body(rx)
}

/// Runs the log reader of container `id` on a blocking thread; its frames arrive on the returned channel,
/// which closes when the log ends (or, with `follow`, when the container stops). Dropping the receiver stops
/// the reader at its next write.
pub fn log_stream(root: Root, id: String, opts: LogOptions, tty: bool, wanted: [bool; 2]) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    tokio::task::spawn_blocking(move || {
        let store = ContainerStore::open(&root);
        let mut out = FrameWriter { tx: tx.clone(), stream: 1, tty, wanted: wanted[0] };
        let mut err = FrameWriter { tx, stream: 2, tty, wanted: wanted[1] };
        if let Err(e) = crate::container::logs::logs(&store, &id, &opts, &mut out, &mut err) {
            tracing::debug!(container.id = %id, "log stream ended: {e}");
        }
    });
    rx
}

/// A response body fed by a channel of chunks.
pub fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<Bytes, io::Error>(chunk), rx))
    }))
}

pub(super) fn stream_type(tty: bool) -> &'static str {
    if tty {
        RAW_STREAM
    } else {
        MULTIPLEXED_STREAM
    }
}

/// Both ends of a pipe, close-on-exec (the monitor gets its ends through `dup2`, which clears the flag).
pub(super) fn pipe_pair() -> ApiResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ApiError::internal(format!("cannot create a pipe: {e}")))
}

/// What an attach to a created container hands the pump: our ends of its pipes.
struct HostEnds {
    stdout: OwnedFd,
    stderr: OwnedFd,
    stdin: Option<OwnedFd>,
    /// Fires when the container's monitor reports the exit.
    exited: oneshot::Receiver<()>,
}

/// Makes the pipes of an attach and parks the container ends for `start`.
fn prepare(attachments: &Attachments, id: &str, tty: bool, stdin: bool) -> ApiResult<HostEnds> {
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = if tty {
        // With a TTY the monitor writes everything to its stdout; stderr only needs to be a valid descriptor.
        let dup = out_w.try_clone().map_err(|e| ApiError::internal(format!("cannot duplicate a pipe: {e}")))?;
        let (r, _w) = pipe_pair()?;
        (r, dup)
    } else {
        pipe_pair()?
    };
    let (in_container, in_host) = if stdin {
        let (r, w) = pipe_pair()?;
        (r, Some(w))
    } else {
        let null =
            std::fs::File::open("/dev/null").map_err(|e| ApiError::internal(format!("cannot open /dev/null: {e}")))?;
        (OwnedFd::from(null), None)
    };
    attachments.park(id, [in_container, out_w, err_w]);
    let (tx, exited) = oneshot::channel();
    attachments.exit_signals.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), tx);
    Ok(HostEnds { stdout: out_r, stderr: err_r, stdin: in_host, exited })
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=`: hijacks the connection.
pub async fn attach(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    q: Query,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrade_asked =
        req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    if !upgrade_asked {
        return Err(ApiError::bad_request(
            "attach hijacks the connection: send `Connection: Upgrade` and `Upgrade: tcp` (the docker CLI does)",
        ));
    }
    let root = state.root.clone();
    let scope = state.scope.clone();
    let (id, tty, open_stdin, running) = blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        let s = store.state(&c.id)?;
        Ok((c.id, c.config.tty, c.config.open_stdin, s.is_running()))
    })
    .await?;
    let wanted = [q.flag("stdout"), q.flag("stderr")];
    let source = if running {
        let opts = LogOptions { follow: true, tail: if q.flag("logs") { None } else { Some(0) }, ..Default::default() };
        Source::Log(log_stream(state.root.clone(), id.clone(), opts, tty, wanted))
    } else {
        Source::Pipes(prepare(&state.attach, &id, tty, q.flag("stdin") && open_stdin)?)
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => pump(TokioIo::new(upgraded), source, tty, wanted).await,
            Err(e) => tracing::debug!(container.id = %id, "attach upgrade failed: {e}"),
        }
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(stream_type(tty)));
    Ok(res)
}

enum Source {
    Pipes(HostEnds),
    Log(mpsc::Receiver<Bytes>),
}

/// Copies the container's output to the hijacked connection (and the client's input to the container's stdin)
/// until the output ends; then closes the connection, which is how the client learns the container is done.
async fn pump<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static>(
    io: IO,
    source: Source,
    tty: bool,
    wanted: [bool; 2],
) {
    let (client_in, mut client_out) = tokio::io::split(io);
    match source {
        Source::Log(mut rx) => {
            while let Some(chunk) = rx.recv().await {
                if client_out.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = client_out.shutdown().await;
        }
        Source::Pipes(ends) => {
            let stdin_task = match ends.stdin.map(pipe::Sender::from_owned_fd) {
                Some(Ok(sink)) => Some(copy_input(client_in, sink)),
                Some(Err(e)) => {
                    tracing::warn!("cannot use the stdin pipe: {e}");
                    None
                }
                None => None,
            };
            let out = pipe::Receiver::from_owned_fd(ends.stdout);
            let err = pipe::Receiver::from_owned_fd(ends.stderr);
            match (out, err) {
                (Ok(out), Ok(err)) => copy_output(out, err, &mut client_out, tty, wanted, Some(ends.exited)).await,
                (Err(e), _) | (_, Err(e)) => tracing::warn!("cannot use the output pipes: {e}"),
            }
            end_stream(client_out, stdin_task).await;
        }
    }
}

/// Copies the client's input to the container's stdin pipe. The client's half-close (docker's CloseWrite at
/// stdin EOF) ends the copy; dropping the sender then gives the container EOF.
pub(super) fn copy_input<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut client_in: R,
    mut sink: pipe::Sender,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::io::copy(&mut client_in, &mut sink).await.is_err() {
            // The container stopped reading (it exited): what the client still sends is read and dropped, else
            // the close finds unread input and resets the connection, and the client sees ECONNRESET instead
            // of the end of the output.
            drop(sink);
            let _ = tokio::io::copy(&mut client_in, &mut tokio::io::sink()).await;
        }
    })
}

/// Ends a hijacked stream: the end of the output first, then a short grace for the client to close its side,
/// so input it sent meanwhile (a terminal's EOF character, keys typed as the container exited) is read rather
/// than left unread, which would turn our close into a reset.
pub(super) async fn end_stream<W: tokio::io::AsyncWrite + Unpin>(
    mut client_out: W,
    stdin_task: Option<tokio::task::JoinHandle<()>>,
) {
    let _ = client_out.shutdown().await;
    if let Some(mut t) = stdin_task {
        if tokio::time::timeout(Duration::from_secs(2), &mut t).await.is_err() {
            t.abort();
        }
    }
}

/// Copies the container's output pipes to the client until both close — or, once `exited` fires, until both
/// are drained (non-blocking reads: everything written before the exit report is in the pipe by then; only the
/// writes to the client are waited for, so a slow client loses nothing).
pub(super) async fn copy_output<W: tokio::io::AsyncWrite + Unpin>(
    mut out: pipe::Receiver,
    mut err: pipe::Receiver,
    client: &mut W,
    tty: bool,
    wanted: [bool; 2],
    exited: Option<oneshot::Receiver<()>>,
) {
    let mut open = [true, !tty];
    let (mut b1, mut b2) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let mut exited = exited;
    let mut draining = false;
    while open[0] || open[1] {
        let (stream, n) = if draining {
            // Drain what is already in the pipes without waiting: stdout, then stderr.
            // A read(2) on the descriptor itself, not tokio's `try_read`: that one answers WouldBlock from its cached
            // readiness until the reactor has seen the pipe's last event, which would drop output written just
            // before the exit report.
            let (stream, r) = if open[0] {
                (0usize, read_now(out.as_raw_fd(), &mut b1))
            } else {
                (1usize, read_now(err.as_raw_fd(), &mut b2))
            };
            match r {
                Ok(n) if n > 0 => (stream, Ok(n)),
                _ => {
                    open[stream] = false;
                    continue;
                }
            }
        } else {
            tokio::select! {
                r = out.read(&mut b1), if open[0] => (0usize, r.map_err(|_| ())),
                r = err.read(&mut b2), if open[1] => (1usize, r.map_err(|_| ())),
                r = async {
                    match exited.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                } => {
                    // A dropped sender means nobody will report the exit: keep waiting for EOF instead.
                    draining = r.is_ok();
                    exited = None;
                    continue;
                }
            }
        };
        match n {
            Ok(0) | Err(_) => open[stream] = false,
            Ok(n) => {
                if !wanted[stream] {
                    continue;
                }
                let bytes = if stream == 0 { &b1[..n] } else { &b2[..n] };
                if client.write_all(&frame(stream as u8 + 1, bytes, tty)).await.is_err() {
                    // The client is gone: dropping the pipes makes the monitor's writes fail (EPIPE) rather than
                    // block, and it carries on logging.
                    return;
                }
            }
        }
    }
    let _ = client.flush().await;
}

/// One non-blocking read(2) of what is in pipe `fd` now (the descriptor is in non-blocking mode).
fn read_now(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
            Ok(n) => return Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_big_endian_length() {
        assert_eq!(&frame(1, b"hi\n", false)[..], &[1, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
        assert_eq!(&frame(2, b"", false)[..], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&frame(1, b"raw", true)[..], b"raw");
    }
}
