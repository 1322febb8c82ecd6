//! Container records on disk and their lookup by name, ID or ID prefix.
//!
//! ```text
//! <root>/containers/<id>/config.json     the record: what to run and how (fixed at create; `rename` edits Name)
//! <root>/containers/<id>/state.json      the state: status, pids, exit code, times (written by CLI and monitor)
//! <root>/containers/<id>/<id>-json.log   stdout/stderr as docker's json-file log
//! <root>/containers/<id>/hosts, hostname, resolv.conf   bind-mounted into the container
//! <root>/containers/<id>/upper, work, merged            the overlay root filesystem (see rootfs)
//! <root>/containers/<id>/bundle/config.json             the OCI runtime spec, rewritten at every start
//! <root>/containers/<id>/runtime/<id>/                  libcontainer's own state
//! ```
//! Both JSON files are replaced atomically (write to a temporary file, rename), so readers never need the lock;
//! writers hold the root lock ([`crate::root::Root::lock`]) around read-modify-write of a state.
//!
//! A state that says `running` is only believed while the monitor that wrote it is alive: its pid *and* its
//! start time (from `/proc/<pid>/stat`) must match, so a recycled pid is not mistaken for it. A container whose
//! monitor died (e.g. `kill -9`) is reported as exited (see [`ContainerStore::refresh`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::health::Health;
use super::{io_err, Error, Result};
use crate::image::config::Empty;
use crate::image::HealthConfig;
use crate::network::ports::{PortBinding, PublishedPort};
use crate::root::{Root, RootLock};

/// What a container runs: docker's `Config` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunSettings {
    pub hostname: String,
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    /// The image as the user named it.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL when `-t` is not given (docker's `StopTimeout`).
    pub stop_timeout: Option<i64>,
    /// The image's `EXPOSE`d ports (`80/tcp`): what `-P` publishes.
    #[serde(default)]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// The image's `VOLUME`s.
    #[serde(default)]
    pub volumes: BTreeMap<String, Empty>,
    /// The image's `HEALTHCHECK` merged with the `--health-*` flags (`["NONE"]`: disabled); see
    /// [`super::health`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
}

/// A restart policy: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

impl RestartPolicy {
    /// Parses docker's `--restart` value.
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let bad =
            |hint: &str| Error::InvalidInput { what: "restart policy", value: s.to_owned(), hint: hint.to_owned() };
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        match (name, count) {
            ("no" | "" | "always" | "unless-stopped", None) => Ok(RestartPolicy {
                name: if name.is_empty() { "no".into() } else { name.to_owned() },
                maximum_retry_count: 0,
            }),
            ("on-failure", None) => Ok(RestartPolicy { name: name.to_owned(), maximum_retry_count: 0 }),
            ("on-failure", Some(c)) => {
                let n = c.parse::<u32>().map_err(|_| bad("the retry count must be a non-negative number"))?;
                Ok(RestartPolicy { name: name.to_owned(), maximum_retry_count: n })
            }
            ("always" | "unless-stopped" | "no", Some(_)) => Err(bad("only on-failure takes a retry count")),
            _ => Err(bad("use no, on-failure[:max-retries], always or unless-stopped")),
        }
    }

    pub fn is_none(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }
}

/// How a container is set up around its process: docker's `HostConfig` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `-v` values as given (docker's `Binds`); what is mounted is [`HostConfig::mount_points`].
    pub binds: Vec<String>,
    /// `bridge` (the default), `host`, `none`, or a user-defined network's name. (`default`, from records made
    /// before networks existed: an isolated namespace with only `lo`.)
    pub network_mode: String,
    /// The networks joined at every start, first one first (it gets `eth0` and the default route): `--network`
    /// and `network connect`. Empty for `host` and `none`.
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// `-p` and `-P`, resolved at create: the proxy binds them at each start.
    #[serde(default)]
    pub port_bindings: Vec<PortBinding>,
    #[serde(default)]
    pub publish_all_ports: bool,
    /// Every mount of the container (`-v`, `--mount`, `--tmpfs`, `--volumes-from`, the image's `VOLUME`s),
    /// resolved at create: volume names chosen, anonymous volumes created.
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// `--volumes-from` values as given.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// `--add-host` entries as `NAME:IP` (`host-gateway` kept as given and written at each start).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    pub restart_policy: RestartPolicy,
    /// Memory limit in bytes (0: none).
    pub memory: i64,
    /// CPU quota in 1e-9 CPUs (0: none).
    pub nano_cpus: i64,
    /// Maximum number of processes (0: none).
    pub pids_limit: i64,
    pub auto_remove: bool,
    pub init: bool,
    /// `seccomp=unconfined` turns the default seccomp profile off, as docker's `--security-opt`.
    pub security_opt: Vec<String>,
}

/// One network a container joins at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The network's name when the container joined (for messages; the ID is what is connected).
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`: a fixed address.
    #[serde(default, rename = "IPAddress")]
    pub ip: Option<Ipv4Addr>,
}

/// What a mount point mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// One mount of a container, as docker's `MountPoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: MountKind,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// The host path mounted: a bind's source or a volume's `_data` (empty for tmpfs).
    #[serde(default)]
    pub source: PathBuf,
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    /// `rprivate` unless given (binds).
    #[serde(default)]
    pub propagation: String,
    /// Do not copy the image's content into a new volume.
    #[serde(default)]
    pub no_copy: bool,
    /// A volume created for this container alone (`-v /path`, image `VOLUME`): `rm -v` and `--rm` remove it.
    #[serde(default)]
    pub anonymous: bool,
    /// tmpfs: mount options (`size=…`, `mode=…`, `noexec`, …).
    #[serde(default)]
    pub options: Vec<String>,
}

/// A container record (`config.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    /// Without the leading `/` docker shows in inspect.
    pub name: String,
    pub created: String,
    /// The image ID (`sha256:…`).
    pub image_id: String,
    pub path: String,
    pub args: Vec<String>,
    pub config: RunSettings,
    pub host_config: HostConfig,
    /// Unpacked image layer directories, bottom first (overlay lowerdirs are these reversed).
    pub layers: Vec<PathBuf>,
}

/// A container's lifecycle status, in docker's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// The mutable state of a container (`state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: Status,
    /// The container's init process as seen from the host (0 when not running).
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub pid_start: u64,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub restart_count: u32,
    /// Set by `stop`/`kill`: the restart policy must not bring the container back.
    pub stop_requested: bool,
    /// The host ports the proxy bound at this start (for `port` and `ps`); empty when not running.
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// The healthcheck's status and last results, from the first start of a container that has one (written by
    /// the monitor's probe thread, see [`super::health`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// libcontainer's state directory for every engine root of this host (see [`ContainerStore::runtime_root`]).
pub const RUNTIME_ROOT: &str = "/run/drydock/runtime";

impl State {
    pub fn is_running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Restarting | Status::Paused)
    }

    /// The status word docker shows in `ps --format {{.State}}`.
    pub fn state_str(&self) -> &'static str {
        self.status.as_str()
    }
}

/// The containers of one engine root.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    root: Root,
}

impl ContainerStore {
    pub fn open(root: &Root) -> ContainerStore {
        ContainerStore { root: root.clone() }
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.containers_dir().join(id)
    }

    /// libcontainer's root path for container `id` (its state lives in `<that>/<id>/`): under `/run`, a tmpfs,
    /// as docker keeps runc's state in `/run/docker/runtime-runc` — it means nothing after a reboot, and on a disk
    /// mounted with `discard` each rewrite of it waited for the device on the critical path of a start (perf's
    /// sched_switch stacks: `blkdev_issue_discard` under libcontainer's `state.json` truncation). Container IDs
    /// are 256 random bits, so engine roots sharing `/run/drydock/runtime` never meet. Without a `/run`
    /// directory (an unusual host), the container directory holds it as before.
    pub fn runtime_root(&self, id: &str) -> PathBuf {
        // A container started by an engine from before the move keeps its state where that engine put it.
        let old = self.dir(id).join("runtime");
        if old.join(id).exists() {
            return old;
        }
        if Path::new("/run").is_dir() {
            PathBuf::from(RUNTIME_ROOT)
        } else {
            self.dir(id).join("runtime")
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(format!("{id}-json.log"))
    }

    pub fn lock(&self) -> Result<RootLock> {
        Ok(self.root.lock()?)
    }

    /// Every container ID on disk (directories with a record).
    pub fn ids(&self) -> Result<Vec<String>> {
        let dir = self.root.containers_dir();
        let mut ids = self.directory_ids()?;
        ids.retain(|n| dir.join(n).join("config.json").is_file());
        Ok(ids)
    }

    /// The container directories, sorted, including one being created or removed (no record yet, or no longer):
    /// callers that read each record anyway skip those themselves, which saves a `statx` per container.
    fn directory_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.containers_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("cannot list {}", dir.display()))(e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The record of container `id`.
    pub fn load(&self, id: &str) -> Result<Container> {
        read_json(&self.dir(id).join("config.json"))?.ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Every container with its (refreshed) state, newest first.
    pub fn list(&self) -> Result<Vec<(Container, State)>> {
        let mut all = Vec::new();
        for id in self.directory_ids()? {
            // A container without a record (being created, or removed while we list) is simply not listed.
            let Ok(c) = self.load(&id) else { continue };
            let state = self.state(&id)?;
            all.push((c, state));
        }
        all.sort_by(|a, b| b.0.created.cmp(&a.0.created));
        Ok(all)
    }

    /// Finds a container by full ID, exact name (with or without `/`), or unique ID prefix — docker's order.
    pub fn resolve(&self, s: &str) -> Result<Container> {
        // A full ID (what API clients send after create) is its own directory: no listing, which stats every
        // container's record (200 containers: 200 statx per request).
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) && self.dir(s).join("config.json").is_file() {
            return self.load(s);
        }
        let ids = self.directory_ids()?;
        let name = s.strip_prefix('/').unwrap_or(s);
        let mut records = Vec::new();
        for id in &ids {
            if let Ok(c) = self.load(id) {
                if c.name == name {
                    return Ok(c);
                }
                records.push(c);
            }
        }
        if s.is_empty() {
            return Err(Error::NotFound(s.to_owned()));
        }
        let mut matching = records.into_iter().filter(|c| c.id.starts_with(s));
        match (matching.next(), matching.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(Error::Ambiguous(s.to_owned())),
            _ => Err(Error::NotFound(s.to_owned())),
        }
    }

    /// Saves a record (atomically).
    pub fn save(&self, c: &Container, _lock: &RootLock) -> Result<()> {
        write_json(&self.dir(&c.id).join("config.json"), c)
    }

    /// The state as recorded, without the liveness check.
    pub fn raw_state(&self, id: &str) -> Result<State> {
        Ok(read_json(&self.dir(id).join("state.json"))?.unwrap_or_default())
    }

    /// The state, with a dead monitor's `running` turned into `exited` (see [`ContainerStore::refresh`]).
    pub fn state(&self, id: &str) -> Result<State> {
        let state = self.raw_state(id)?;
        if state.is_running() && !process_alive(state.monitor_pid, state.monitor_start) {
            return self.refresh(id);
        }
        Ok(state)
    }

    /// Re-checks a `running` state under the lock; if its monitor is gone, the container is killed (nobody
    /// would record its exit or drain its output any more) and recorded as exited with an error.
    pub fn refresh(&self, id: &str) -> Result<State> {
        let lock = self.lock()?;
        let mut state = self.raw_state(id)?;
        if state.is_running() && !process_alive(state.monitor_pid, state.monitor_start) {
            if process_alive(state.pid, state.pid_start) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(state.pid), nix::sys::signal::Signal::SIGKILL);
            }
            super::monitor::cleanup_runtime(self, id);
            state.status = Status::Exited;
            state.error = format!("container monitor (pid {}) died; the container was killed", state.monitor_pid);
            if state.exit_code == 0 {
                state.exit_code = 137;
            }
            state.pid = 0;
            // The proxy died with the monitor (PDEATHSIG); the network endpoints are reaped with the namespace.
            state.ports.clear();
            state.finished_at = crate::image::now_rfc3339();
            self.save_state(id, &state, &lock)?;
        }
        Ok(state)
    }

    /// Saves a state (atomically). Callers hold the root lock.
    pub fn save_state(&self, id: &str, state: &State, _lock: &RootLock) -> Result<()> {
        write_json(&self.dir(id).join("state.json"), state)
    }

    /// Applies `f` to the state under the root lock and saves it.
    pub fn update_state(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<State> {
        let lock = self.lock()?;
        let mut state = self.raw_state(id)?;
        f(&mut state);
        self.save_state(id, &state, &lock)?;
        Ok(state)
    }

    /// True if some container other than `except` is called `name`.
    pub fn name_taken(&self, name: &str, except: Option<&str>) -> Result<Option<String>> {
        for id in self.ids()? {
            if Some(id.as_str()) == except {
                continue;
            }
            if let Ok(c) = self.load(&id) {
                if c.name == name {
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }
}

/// Reads a JSON file; `None` if it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match read_small(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("cannot read {}", path.display()))(e)),
    }
}

/// Reads a whole small file. Unlike `fs::read`, no `statx` for a size hint first: records are a few KiB, and
/// `ps` reads two per container.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(4096);
    // `Take` hides the `File` specialisation of `read_to_end` that asks for the size.
    fs::File::open(path)?.take(u64::MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes a JSON file atomically: a temporary file in the same directory, then a rename.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| Error::Corrupt { path: path.to_path_buf(), message: e.to_string() })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, path)
    };
    write().map_err(io_err(format!("cannot write {}", path.display())))
}

/// Start time of process `pid` in clock ticks since boot, if it exists (and is not a zombie).
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3; the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// True if `pid` is alive and started at `start` (so it is the process we recorded, not a recycled pid).
pub fn process_alive(pid: i32, start: u64) -> bool {
    process_start_time(pid).is_some_and(|s| s == start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_as_docker() {
        assert_eq!(RestartPolicy::parse("on-failure:2").ok().map(|p| p.maximum_retry_count), Some(2));
        assert!(RestartPolicy::parse("always").is_ok());
        assert!(RestartPolicy::parse("unless-stopped").is_ok());
        assert!(RestartPolicy::parse("no").is_ok_and(|p| p.is_none()));
        assert!(RestartPolicy::parse("always:3").is_err());
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn own_process_is_alive_and_stale_start_is_not() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).unwrap_or_default();
        assert!(start > 0);
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(0, 0));
    }
}
