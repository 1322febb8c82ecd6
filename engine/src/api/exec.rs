//! Exec endpoints: `POST /containers/{id}/exec` records what to run, `POST /exec/{id}/start` runs it (hijacked
//! stream, or detached), `GET /exec/{id}/json` reports its exit code, `POST /exec/{id}/resize` sets the pty's size.
//!
//! The process is started by running this binary's own `engine exec` as a child with its stdio on pipes,
//! rather than by calling libcontainer's tenant builder here: that builder forks, and forking this
//! multi-threaded server outside `fork`+`exec` is unsafe; a child process also keeps `engine exec`'s exact
//! semantics (user, env, seccomp, exit codes 126/127). Exec records live in memory: they vanish with the
//! server, as docker's do with the daemon.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::attach::{copy_input, copy_output, end_stream, pipe_pair, stream_type};
use super::{blocking, parse_json, read_body, ApiError, ApiResult, ApiState, Json};
use crate::container::ContainerStore;

/// One exec instance.
#[derive(Debug, Clone)]
struct ExecRecord {
    container_id: String,
    cmd: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    pid: u32,
}

/// The exec instances this server created.
#[derive(Default)]
pub struct Execs(Mutex<HashMap<String, ExecRecord>>);

impl Execs {
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut ExecRecord) -> T) -> ApiResult<T> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get_mut(id).map(f).ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    fn finished(&self, id: &str, code: i32) {
        let _ = self.with(id, |r| {
            r.running = false;
            r.exit_code = Some(code);
        });
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    privileged: bool,
}

/// `POST /containers/{id}/exec`: 201 `{"Id"}`; 409 when the container does not run.
pub async fn create(State(state): State<ApiState>, Path(name): Path<String>, body: Body) -> ApiResult<Response> {
    let body: CreateBody = parse_json(&read_body(body).await?)?;
    let cmd = body.cmd.filter(|c| !c.is_empty()).ok_or_else(|| ApiError::bad_request("No exec command specified"))?;
    if body.privileged {
        return Err(ApiError::bad_request("privileged exec is not supported by this engine"));
    }
    let root = state.root.clone();
    let scope = state.scope.clone();
    let container_id = blocking(move || {
        let store = ContainerStore::open(&root);
        let c = super::scoped_container(scope.as_ref(), &store, &name)?;
        if !store.state(&c.id)?.is_running() {
            return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
        }
        Ok(c.id)
    })
    .await?;
    let id = crate::network::random_id();
    let record = ExecRecord {
        container_id,
        cmd,
        env: body.env.unwrap_or_default(),
        workdir: body.working_dir.filter(|w| !w.is_empty()),
        user: body.user.filter(|u| !u.is_empty()),
        tty: body.tty,
        stdin: body.attach_stdin,
        stdout: body.attach_stdout,
        stderr: body.attach_stderr,
        started: false,
        running: false,
        exit_code: None,
        pid: 0,
    };
    state.execs.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), record);
    Ok((StatusCode::CREATED, Json(json!({ "Id": id }))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    /// `[height, width]` of the client's terminal (API 1.42+): the pty's size from the start.
    console_size: Option<Vec<u16>>,
}

/// Where the window size of exec `id` is left for its `engine exec -t` child (see `container::tty::WINSIZE_ENV`).
fn size_file(state: &ApiState, id: &str) -> std::path::PathBuf {
    state.root.tmp_dir().join(format!("exec-{id}.winsize"))
}

/// `engine --root ROOT exec [-i] [-t] [-e …] [-w …] [-u …] -- CONTAINER CMD…`.
fn exec_command(state: &ApiState, r: &ExecRecord) -> ApiResult<Command> {
    let exe = std::env::current_exe().map_err(|e| ApiError::internal(format!("cannot find the engine binary: {e}")))?;
    let mut c = Command::new(exe);
    c.arg("--root").arg(state.root.path()).arg("exec");
    if r.stdin {
        c.arg("-i");
    }
    if r.tty {
        c.arg("-t");
    }
    for e in &r.env {
        c.arg("-e").arg(e);
    }
    if let Some(w) = &r.workdir {
        c.arg("-w").arg(w);
    }
    if let Some(u) = &r.user {
        c.arg("-u").arg(u);
    }
    c.arg("--").arg(&r.container_id).args(&r.cmd);
    Ok(c)
}

/// Waits for the `engine exec` child on a blocking thread, records its exit code, then signals `done`.
fn watch(state: &ApiState, id: String, mut child: std::process::Child, done: Option<oneshot::Sender<()>>) {
    let execs = state.execs.clone();
    let sizes = size_file(state, &id);
    tokio::task::spawn_blocking(move || {
        let code = match child.wait() {
            Ok(s) => s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)),
            Err(_) => crate::error::EXIT_ENGINE.into(),
        };
        let _ = std::fs::remove_file(&sizes);
        execs.finished(&id, code);
        if let Some(done) = done {
            let _ = done.send(());
        }
    });
}

/// `POST /exec/{id}/start`: with `Detach`, 200 at once; otherwise the connection is hijacked (docker's framing
/// without a TTY) and closed once the process has exited and its output is drained.
pub async fn start(State(state): State<ApiState>, Path(id): Path<String>, mut req: Request) -> ApiResult<Response> {
    let upgrade_asked = req.headers().get(header::UPGRADE).is_some();
    let bytes = read_body(std::mem::take(req.body_mut())).await?;
    let body: StartBody = if bytes.is_empty() { StartBody::default() } else { parse_json(&bytes)? };
    let record = state.execs.with(&id, |r| {
        if r.started {
            return Err(ApiError::conflict(format!("exec instance {id} has already been started")));
        }
        r.started = true;
        r.running = true;
        Ok(r.clone())
    })??;
    let mut cmd = exec_command(&state, &record)?;
    if record.tty {
        let path = size_file(&state, &id);
        if let Some(&[rows, cols]) = body.console_size.as_deref() {
            if rows > 0 && cols > 0 {
                let _ = std::fs::create_dir_all(state.root.tmp_dir());
                crate::container::tty::write_size_file(&path, rows, cols)
                    .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
            }
        }
        cmd.env(crate::container::tty::WINSIZE_ENV, path);
    }
    if body.detach {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| ApiError::internal(format!("cannot run engine exec: {e}")))?;
        state.execs.with(&id, |r| r.pid = child.id())?;
        watch(&state, id, child, None);
        return Ok(StatusCode::OK.into_response());
    }
    if !upgrade_asked {
        return Err(ApiError::bad_request(
            "exec start without Detach hijacks the connection: send `Connection: Upgrade` and `Upgrade: tcp`",
        ));
    }
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = if record.tty {
        let (r, _w) = pipe_pair()?;
        (r, out_w.try_clone().map_err(|e| ApiError::internal(format!("cannot duplicate a pipe: {e}")))?)
    } else {
        pipe_pair()?
    };
    let (in_child, in_host): (Stdio, Option<OwnedFd>) = if record.stdin {
        let (r, w) = pipe_pair()?;
        (Stdio::from(r), Some(w))
    } else {
        (Stdio::null(), None)
    };
    cmd.stdin(in_child).stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    let child = cmd.spawn().map_err(|e| ApiError::internal(format!("cannot run engine exec: {e}")))?;
    // Only the child may hold the write ends now, or the stream would never see EOF.
    drop(cmd);
    state.execs.with(&id, |r| r.pid = child.id())?;
    let (done_tx, done_rx) = oneshot::channel();
    watch(&state, id.clone(), child, Some(done_tx));
    let wanted = [record.stdout, record.stderr];
    let tty = record.tty;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return tracing::debug!(exec.id = %id, "exec upgrade failed: {e}"),
        };
        let (client_in, mut client_out) = tokio::io::split(io);
        let stdin_task =
            in_host.and_then(|fd| pipe::Sender::from_owned_fd(fd).ok()).map(|sink| copy_input(client_in, sink));
        if let (Ok(out), Ok(err)) = (pipe::Receiver::from_owned_fd(out_r), pipe::Receiver::from_owned_fd(err_r)) {
            let copy = copy_output(out, err, &mut client_out, tty, wanted, None);
            tokio::pin!(copy);
            let mut done_rx = done_rx;
            tokio::select! {
                _ = &mut copy => { let _ = (&mut done_rx).await; }
                // A background process in the container may keep the pipes open after the exec'd process
                // exits: drain what is there, then end the stream as docker does.
                _ = &mut done_rx => { let _ = tokio::time::timeout(Duration::from_millis(500), &mut copy).await; }
            }
        }
        end_stream(client_out, stdin_task).await;
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(stream_type(tty)));
    Ok(res)
}

/// `GET /exec/{id}/json`.
pub async fn inspect(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let r = state.execs.with(&id, |r| r.clone())?;
    let (entrypoint, arguments) = r.cmd.split_first().map_or(("", &[][..]), |(e, a)| (e.as_str(), a));
    Ok(Json(json!({
        "ID": id,
        "Running": r.running,
        "ExitCode": r.exit_code,
        "ProcessConfig": {
            "tty": r.tty,
            "entrypoint": entrypoint,
            "arguments": arguments,
            "privileged": false,
            "user": r.user.clone().unwrap_or_default(),
        },
        "OpenStdin": r.stdin,
        "OpenStdout": r.stdout,
        "OpenStderr": r.stderr,
        "CanRemove": false,
        "ContainerID": r.container_id,
        "DetachKeys": "",
        "Pid": r.pid,
    })))
}

/// `POST /exec/{id}/resize?h=&w=`: the size goes to the exec's `engine exec -t` child (a size file, then
/// `SIGWINCH`), which sets it on the pty it holds. An exec without a TTY, or not running, has nothing to resize.
pub async fn resize(State(state): State<ApiState>, Path(id): Path<String>, q: super::Query) -> ApiResult<StatusCode> {
    let (rows, cols) = super::containers::window_size_query(&q)?;
    let (tty, running, pid) = state.execs.with(&id, |r| (r.tty, r.running, r.pid))?;
    if tty && running && pid != 0 {
        let path = size_file(&state, &id);
        crate::container::tty::write_size_file(&path, rows, cols)
            .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
        let pid = i32::try_from(pid).map_err(|_| ApiError::internal("exec pid out of range"))?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGWINCH);
    }
    Ok(StatusCode::OK)
}
