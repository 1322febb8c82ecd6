//! `setup_remote_docker`: a Docker engine for the job that is not the job's container (CircleCI's semantics).
//! When a job's steps contain the step, [`RemoteDocker::prepare`] (before the containers are created) makes a
//! per-job host directory, bind-mounted into the primary at [`MOUNT_DIR`], and finds the static docker client,
//! bind-mounted read-only as `/usr/local/bin/docker` and `docker-compose`. The step itself
//! ([`RemoteDocker::start`]) runs `engine serve --socket DIR/docker.sock --scope drydock.job=<id>` as a child
//! process on the job's engine root and waits until it reports that it listens and answers `GET /_ping`; the
//! step then links `/var/run/docker.sock` to the socket in the primary, and the step loop sets `DOCKER_HOST` for
//! every later step. When the job ends (dropped: success, failure, cancel) the server is stopped and every
//! container, network and volume carrying the scope label is removed; images stay (a shared cache, as docker
//! layer caching would be).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use engine::container::ContainerStore;
use engine::network::NetworkStore;
use engine::root::Root;
use engine::volume::VolumeStore;

/// Where the socket's host directory appears in the primary container.
pub const MOUNT_DIR: &str = "/run/drydock";
/// What later steps get as `DOCKER_HOST`.
pub const DOCKER_HOST: &str = "unix:///run/drydock/docker.sock";
/// Run as root in the primary once the server answers: `/var/run/docker.sock` becomes a link to the socket,
/// unless the image already has something there (a real socket the job mounted, or its own link).
pub const LINK_SOCKET_SCRIPT: &str =
    "[ -e /var/run/docker.sock ] || [ -L /var/run/docker.sock ] || { mkdir -p /var/run && ln -s /run/drydock/docker.sock /var/run/docker.sock; }";
/// The label every object the job's server creates carries (`drydock.job=<id>`).
pub const SCOPE_LABEL: &str = "drydock.job";
/// The environment variable naming the docker client to mount.
pub const CLIENT_ENV: &str = "DRYDOCK_DOCKER_CLIENT";
/// The client's name next to the runner's own executable.
pub const CLIENT_SIBLING: &str = "drydock-docker";
/// Where the client is mounted in the primary, under both names.
pub const CLIENT_PATHS: [&str; 2] = ["/usr/local/bin/docker", "/usr/local/bin/docker-compose"];

/// How long `engine serve` may take to listen (it opens the engine root, nothing else).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The line `engine serve` logs (at `info`) once its socket is bound.
const LISTENING_LOG: &str = "serving the Docker Engine API";
/// A unix socket path's limit (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why the job's remote Docker engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteDockerError {
    #[error(
        "no docker client to mount for setup_remote_docker: $DRYDOCK_DOCKER_CLIENT is not set and {sibling} does not exist \
         (set DRYDOCK_DOCKER_CLIENT to a statically linked docker CLI, or install drydock-docker next to the runner)"
    )]
    ClientNotFound { sibling: String },
    #[error(
        "no docker client to mount for setup_remote_docker: $DRYDOCK_DOCKER_CLIENT is {path}, which is not a file \
         (point it at a statically linked docker CLI; {sibling} is only looked at when DRYDOCK_DOCKER_CLIENT is unset)"
    )]
    ClientNotAFile { path: String, sibling: String },
    #[error("the docker client appeared after the job's containers were created: run the job again")]
    ClientAppeared,
    #[error("cannot find the `engine` binary next to {exe} or on PATH: build it (`cargo build -p engine`) and put it beside the runner")]
    EngineNotFound { exe: String },
    #[error("the remote docker socket path {path} is longer than a unix socket allows ({len} > 107 bytes): use a shorter --data-dir")]
    SocketPathTooLong { path: String, len: usize },
    #[error("{path}: a path with `:` or `,` cannot be bind-mounted: use a --data-dir (or DRYDOCK_DOCKER_CLIENT) without them")]
    UnmountablePath { path: String },
    #[error("cannot start `{engine} serve`: {source}")]
    Spawn {
        engine: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`engine serve` exited before it listened ({status}): {stderr}")]
    Exited { status: String, stderr: String },
    #[error(
        "`engine serve` did not report listening on {socket} within {secs}s (its stderr: {stderr}): it was stopped"
    )]
    NotReady { socket: String, secs: u64, stderr: String },
    #[error("the remote docker engine on {socket}: {message}")]
    Api { socket: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RemoteDockerError {
    let context = context.into();
    move |source| RemoteDockerError::Io { context, source }
}

/// The docker client to mount: `$DRYDOCK_DOCKER_CLIENT`, else `drydock-docker` next to this executable.
pub fn client_binary() -> Result<PathBuf, RemoteDockerError> {
    let exe = std::env::current_exe().unwrap_or_default();
    let sibling = exe.parent().map(|d| d.join(CLIENT_SIBLING)).unwrap_or_else(|| PathBuf::from(CLIENT_SIBLING));
    match std::env::var_os(CLIENT_ENV).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(RemoteDockerError::ClientNotAFile {
                    path: path.display().to_string(),
                    sibling: sibling.display().to_string(),
                })
            }
        }
        None if sibling.is_file() => Ok(sibling),
        None => Err(RemoteDockerError::ClientNotFound { sibling: sibling.display().to_string() }),
    }
}

/// The `engine` binary: next to this executable, else the first on `PATH`.
pub fn engine_binary() -> Result<PathBuf, RemoteDockerError> {
    let exe = std::env::current_exe().unwrap_or_default();
    if let Some(sibling) = exe.parent().map(|d| d.join("engine")).filter(|p| p.is_file()) {
        return Ok(sibling);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("engine"))
        .find(|p| p.is_file())
        .ok_or_else(|| RemoteDockerError::EngineNotFound { exe: exe.display().to_string() })
}

/// What the job's server said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
}

/// One job's remote Docker engine: its host directory, its client, and (once the step ran) its server.
pub struct RemoteDocker {
    /// The scope label's value: unique per job run.
    pub id: String,
    dir: PathBuf,
    /// The client to mount; `None`: the step fails saying why (a job that never reaches the step still runs).
    client: Option<PathBuf>,
    engine_root: PathBuf,
    server: Option<Child>,
    /// Keep what the server created (with the job's containers, `--keep`); the server is stopped regardless.
    pub keep: bool,
}

impl RemoteDocker {
    /// Makes the job's host directory `DATA/remote-docker/<id>/` (the parent is 0700: on the host only root
    /// reaches the socket) and looks for the client.
    pub fn prepare(data_dir: &Path, engine_root: &Path, keep: bool) -> Result<RemoteDocker, RemoteDockerError> {
        let id = engine::network::random_id()[..16].to_owned();
        let parent = data_dir.join("remote-docker");
        std::fs::create_dir_all(&parent).map_err(io_err(format!("cannot create {}", parent.display())))?;
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot restrict {}", parent.display())))?;
        let dir = parent.join(&id);
        let socket = dir.join("docker.sock");
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(RemoteDockerError::SocketPathTooLong { path: socket.display().to_string(), len });
        }
        check_mountable(&dir)?;
        std::fs::create_dir(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        // The container's user may not be root: it has to reach the socket through the bind mount.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("cannot set the mode of {}", dir.display())))?;
        let client = client_binary().and_then(|c| check_mountable(&c).map(|()| c)).ok();
        Ok(RemoteDocker { id, dir, client, engine_root: engine_root.to_owned(), server: None, keep })
    }

    /// The primary container's bind mounts: the socket's directory, and the client under both names.
    pub fn binds(&self) -> Vec<String> {
        let mut binds = vec![format!("{}:{MOUNT_DIR}", self.dir.display())];
        if let Some(client) = &self.client {
            binds.extend(CLIENT_PATHS.iter().map(|to| format!("{}:{to}:ro", client.display())));
        }
        binds
    }

    /// The socket on the host.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The label selector of what the server creates.
    pub fn scope(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.id)
    }

    /// The step: starts `engine serve` for the job (once; a second step reuses it) and waits until it answers.
    pub fn start(&mut self) -> Result<EngineVersion, RemoteDockerError> {
        if self.client.is_none() {
            // Looked for again to say why: the same places, unchanged since the containers were created.
            return Err(match client_binary().and_then(|c| check_mountable(&c)) {
                Err(e) => e,
                Ok(()) => RemoteDockerError::ClientAppeared,
            });
        }
        let socket = self.socket();
        if self.server.is_none() {
            self.server = Some(spawn_server(&self.engine_root, &socket, &self.scope())?);
        }
        // The container's user may not be root (the server makes the socket 0660 root:root).
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .map_err(io_err(format!("cannot open up {}", socket.display())))?;
        let api = |message: String| RemoteDockerError::Api { socket: socket.display().to_string(), message };
        let (status, body) = http_get(&socket, "/_ping").map_err(|e| api(format!("GET /_ping: {e}")))?;
        if status != 200 || body.trim() != "OK" {
            return Err(api(format!("GET /_ping answered {status} {}", body.trim())));
        }
        let (status, body) = http_get(&socket, "/version").map_err(|e| api(format!("GET /version: {e}")))?;
        if status != 200 {
            return Err(api(format!("GET /version answered {status} {}", body.trim())));
        }
        let json = body.find('{').and_then(|start| body.rfind('}').map(|end| &body[start..=end])).unwrap_or("{}");
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| api(format!("GET /version: not JSON ({e})")))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("unknown").to_owned();
        let version = EngineVersion {
            version: field("Version"),
            api_version: field("ApiVersion"),
            os: field("Os"),
            arch: field("Arch"),
        };
        tracing::info!(scope = %self.scope(), version = %version.version, api_version = %version.api_version, "remote docker engine ready");
        Ok(version)
    }

    /// Stops the server, then removes the scope's containers, networks and volumes (unless `keep`) and the
    /// host directory. Returns what could not be done (also logged).
    pub fn shutdown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(child) = self.server.take() {
            if let Err(e) = stop_server(child) {
                problems.push(format!("cannot stop the job's engine serve: {e}"));
            }
        }
        if !self.keep {
            if let Err(e) = remove_scope(&self.engine_root, &self.id) {
                problems.push(e);
            }
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("cannot remove {}: {e}", self.dir.display()));
                }
            }
        }
        for p in &problems {
            tracing::warn!(scope = %self.scope(), "{p}");
        }
        problems
    }
}

impl Drop for RemoteDocker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn check_mountable(path: &Path) -> Result<(), RemoteDockerError> {
    let text = path.display().to_string();
    if text.contains([':', ',']) {
        return Err(RemoteDockerError::UnmountablePath { path: text });
    }
    Ok(())
}

/// `engine --root R --log-level info serve --socket S --scope drydock.job=ID`, ready: its stderr is read until
/// the line it logs once its socket is bound (no polling), and read on afterwards so it never blocks.
fn spawn_server(engine_root: &Path, socket: &Path, scope: &str) -> Result<Child, RemoteDockerError> {
    let engine = engine_binary()?;
    let mut command = Command::new(&engine);
    command
        .arg("--root")
        .arg(engine_root)
        .args(["--log-level", "info", "serve", "--socket"])
        .arg(socket)
        .args(["--scope", scope])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Its own process group: a terminal's Ctrl-C reaches the runner, which stops the server after cleaning
    // up; and it dies with the thread that started it if the runner is killed.
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let mut child =
        command.spawn().map_err(|source| RemoteDockerError::Spawn { engine: engine.display().to_string(), source })?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(RemoteDockerError::Exited { status: "no stderr".into(), stderr: String::new() });
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            tracing::debug!(target: "engine_serve", "{line}");
            // After readiness nobody listens: the lines are only drained.
            let _ = tx.send(line);
        }
    });
    let mut tail: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(LISTENING_LOG) => return Ok(child),
            Ok(line) => {
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(RemoteDockerError::Exited { status, stderr: tail.join("\n") });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RemoteDockerError::NotReady {
                    socket: socket.display().to_string(),
                    secs: READY_TIMEOUT.as_secs(),
                    stderr: tail.join("\n"),
                });
            }
        }
    }
}

/// SIGTERM, then SIGKILL when it has not exited within [`STOP_TIMEOUT`].
fn stop_server(mut child: Child) -> Result<(), String> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    if rx.recv_timeout(STOP_TIMEOUT).is_err() {
        tracing::warn!(pid = pid.as_raw(), timeout_s = STOP_TIMEOUT.as_secs(), "engine serve ignored SIGTERM: killed");
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    match waiter.join() {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the thread waiting for it panicked".into()),
    }
}

/// Removes every container, then network, then volume labelled `drydock.job=<id>`.
fn remove_scope(engine_root: &Path, id: &str) -> Result<(), String> {
    let root = Root::open(engine_root).map_err(|e| format!("engine state directory: {e}"))?;
    let held =
        |labels: &std::collections::BTreeMap<String, String>| labels.get(SCOPE_LABEL).map(String::as_str) == Some(id);
    let mut problems = Vec::new();
    let containers = ContainerStore::open(&root);
    match containers.list() {
        Ok(list) => {
            for (c, _) in list.into_iter().filter(|(c, _)| held(&c.config.labels)) {
                if let Err(e) = engine::container::remove::remove(&containers, &c.id, true, true) {
                    problems.push(format!("cannot remove container {}: {e}", &c.id[..c.id.len().min(12)]));
                }
            }
        }
        Err(e) => problems.push(format!("cannot list containers: {e}")),
    }
    match NetworkStore::open(&root).and_then(|s| s.list().map(|l| (s, l))) {
        Ok((store, list)) => {
            for n in list.into_iter().filter(|n| !n.builtin && held(&n.labels)) {
                if let Err(e) = store.remove(&n.id) {
                    problems.push(format!("cannot remove network {}: {e}", n.name));
                }
            }
        }
        Err(e) => problems.push(format!("cannot list networks: {e}")),
    }
    match VolumeStore::open(&root).and_then(|s| s.list().map(|l| (s, l))) {
        Ok((store, list)) => {
            for v in list.into_iter().filter(|v| held(&v.labels)) {
                if let Err(e) = store.remove(&v.name, true, &|_| None) {
                    problems.push(format!("cannot remove volume {}: {e}", v.name));
                }
            }
        }
        Err(e) => problems.push(format!("cannot list volumes: {e}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("remote docker clean-up (scope {SCOPE_LABEL}={id}): {}", problems.join("; ")))
    }
}

/// A GET over the unix socket (HTTP/1.1, one request per connection); returns the status and the body.
fn http_get(socket: &Path, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP response: {head}"))
        })?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_mount_the_socket_directory_and_the_client_twice() {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let client = data.path().join("docker");
        std::fs::write(&client, b"").unwrap_or_else(|e| panic!("{e}"));
        let mut rd = RemoteDocker {
            id: "abc".into(),
            dir: data.path().join("remote-docker/abc"),
            client: Some(client.clone()),
            engine_root: data.path().join("root"),
            server: None,
            keep: true,
        };
        let binds = rd.binds();
        assert_eq!(binds[0], format!("{}/remote-docker/abc:/run/drydock", data.path().display()));
        assert_eq!(binds[1], format!("{}:/usr/local/bin/docker:ro", client.display()));
        assert_eq!(binds[2], format!("{}:/usr/local/bin/docker-compose:ro", client.display()));
        assert_eq!(rd.scope(), "drydock.job=abc");
        rd.client = None;
        assert_eq!(rd.binds().len(), 1);
        let e = RemoteDockerError::ClientNotFound { sibling: "/x/drydock-docker".into() }.to_string();
        assert!(e.contains("DRYDOCK_DOCKER_CLIENT is not set") && e.contains("/x/drydock-docker does not"), "{e}");
    }

    #[test]
    fn paths_that_break_bind_syntax_are_refused() {
        assert!(check_mountable(Path::new("/var/lib/x")).is_ok());
        assert!(check_mountable(Path::new("/var/lib/a:b")).is_err());
        assert!(check_mountable(Path::new("/var/lib/a,b")).is_err());
    }
}
