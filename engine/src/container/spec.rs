//! The OCI runtime spec (`bundle/config.json`) for a container, as docker would write it: namespaces,
//! docker's default capabilities, masked and read-only paths, the default seccomp profile (see [`super::seccomp`]),
//! `noNewPrivileges`, cgroup limits under an explicit `cgroupsPath` (`/drydock/<id>`), rlimits capped at this
//! host's hard limits, standard mounts, and `/etc/{hosts,hostname,resolv.conf}` bind-mounted from the container
//! directory.
//!
//! The spec is written as JSON data (the shape is easiest to check against docker's `config.json` that way) and
//! then parsed into `oci_spec::runtime::Spec`, so a field libcontainer would not understand fails here.
//!
//! Cgroups: this host is v1 with a cgroup2 mount at `/sys/fs/cgroup/unified` ("hybrid"); libcgroups detects
//! hybrid and drives the v1 controllers, which is what we want — no forcing needed. `--network host` keeps the
//! host's network namespace; otherwise the container gets a new one, which the monitor connects to the
//! container's networks (see [`super::network`]). User mounts come from [`super::mounts`], parents first.

use std::path::Path;

use serde_json::{json, Value};

use super::store::{Container, ContainerStore};
use super::user::ExecUser;
use super::{Error, Result};

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths (a `/dev/null` or empty read-only tmpfs over each).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// `PATH` when the image sets none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default `RLIMIT_NOFILE` (soft, hard), before capping at this host's hard limit.
const NOFILE: (u64, u64) = (1024, 524_288);

/// The cgroup of a container (absolute: placed as is under each v1 hierarchy).
pub fn cgroups_path(id: &str) -> String {
    format!("/drydock/{id}")
}

/// The process section of the spec: what runs, as whom, where.
pub struct ProcessSpec<'a> {
    pub args: &'a [String],
    pub env: Vec<String>,
    pub cwd: &'a str,
    pub user: &'a ExecUser,
    pub terminal: bool,
}

/// The environment docker gives a process: the configured one plus `PATH` (if missing), `HOSTNAME`, `HOME`
/// (from passwd) and `TERM=xterm` with a terminal — without overriding what the user set.
pub fn process_env(configured: &[String], hostname: &str, home: &str, tty: bool) -> Vec<String> {
    let mut env = configured.to_vec();
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split_once('=').map_or(e.as_str(), |(a, _)| a) == k);
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.insert(1, format!("HOSTNAME={hostname}"));
    }
    if tty && !has(&env, "TERM") {
        env.push("TERM=xterm".to_owned());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// The host's current hard limit for `resource` (we cannot raise it: no `CAP_SYS_RESOURCE`).
fn host_hard_limit(resource: nix::sys::resource::Resource) -> u64 {
    nix::sys::resource::getrlimit(resource).map(|(_, hard)| hard).unwrap_or(u64::MAX)
}

/// The process section as JSON (also used by `exec` for the tenant process).
pub fn process_json(p: &ProcessSpec<'_>) -> Value {
    let hard = host_hard_limit(nix::sys::resource::Resource::RLIMIT_NOFILE);
    let nofile_hard = NOFILE.1.min(hard);
    let nofile_soft = NOFILE.0.min(nofile_hard);
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    // Docker gives non-root processes no effective or permitted capabilities, only the bounding set.
    let (effective, permitted): (Vec<&str>, Vec<&str>) =
        if p.user.uid == 0 { (caps.clone(), caps.clone()) } else { (Vec::new(), Vec::new()) };
    json!({
        "terminal": p.terminal,
        "user": { "uid": p.user.uid, "gid": p.user.gid, "additionalGids": p.user.additional_gids },
        "args": p.args,
        "env": p.env,
        "cwd": if p.cwd.is_empty() { "/" } else { p.cwd },
        "capabilities": { "bounding": caps, "effective": effective, "permitted": permitted },
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": nofile_hard, "soft": nofile_soft }],
        "noNewPrivileges": true,
        "oomScoreAdj": 0,
    })
}

/// Writes `bundle/config.json` for container `c`, whose rootfs is mounted at `rootfs`.
/// `cgroup_view` is the read-only cgroup v1 tree the monitor prepared (see [`super::cgroupfs`]), bound at
/// `/sys/fs/cgroup`; without one, libcontainer mounts cgroups itself.
pub fn write(
    store: &ContainerStore,
    c: &Container,
    rootfs: &Path,
    process: &ProcessSpec<'_>,
    cgroup_view: Option<&Path>,
) -> Result<()> {
    let dir = store.dir(&c.id);
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).map_err(super::io_err(format!("cannot create {}", bundle.display())))?;
    let mut value = document(&dir, c, rootfs, process, cgroup_view)?;
    if let Some(other) = super::network::joined_container(&c.host_config.network_mode) {
        share_network_namespace(store, &mut value, other)?;
    }
    let spec: oci_spec::runtime::Spec =
        serde_json::from_value(value).map_err(|e| Error::Runtime(format!("generated runtime spec is invalid: {e}")))?;
    let path = bundle.join("config.json");
    spec.save(&path).map_err(|e| Error::Runtime(format!("cannot write {}: {e}", path.display())))
}

/// `--network container:X`: the network namespace of X's running process, and X's `/etc/hosts`,
/// `/etc/resolv.conf` and `/etc/hostname` (so names X learns are seen here too), as docker shares them.
fn share_network_namespace(store: &ContainerStore, doc: &mut Value, other: &str) -> Result<()> {
    let state = store.state(other).map_err(|e| match e {
        Error::NotFound(_) => Error::InvalidInput {
            what: "--network",
            value: format!("container:{other}"),
            hint: "the container whose network this one shares was removed; recreate this container".into(),
        },
        e => e,
    })?;
    if !state.is_running() || state.pid <= 0 {
        let name = store.load(other).map(|c| c.name).unwrap_or_else(|_| other.to_owned());
        return Err(Error::InvalidInput {
            what: "--network",
            value: format!("container:{name}"),
            hint: format!("cannot join the network of a non-running container: start {name} first"),
        });
    }
    if let Some(namespaces) = doc.pointer_mut("/linux/namespaces").and_then(Value::as_array_mut) {
        for ns in namespaces.iter_mut().filter(|ns| ns["type"] == "network") {
            ns["path"] = json!(format!("/proc/{}/ns/net", state.pid));
        }
    }
    let shared = store.dir(other);
    if let Some(mounts) = doc.pointer_mut("/mounts").and_then(Value::as_array_mut) {
        for m in mounts.iter_mut() {
            for file in ["hosts", "resolv.conf", "hostname"] {
                if m["destination"] == format!("/etc/{file}") && m["type"] == "bind" {
                    m["source"] = json!(shared.join(file));
                }
            }
        }
    }
    Ok(())
}

/// The whole spec document.
pub fn document(
    dir: &Path,
    c: &Container,
    rootfs: &Path,
    process: &ProcessSpec<'_>,
    cgroup_view: Option<&Path>,
) -> Result<Value> {
    let hc = &c.host_config;
    let host_network = hc.network_mode == "host";
    let mut namespaces =
        vec![json!({"type": "pid"}), json!({"type": "mount"}), json!({"type": "ipc"}), json!({"type": "uts"})];
    if !host_network {
        namespaces.push(json!({"type": "network"}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        match cgroup_view {
            Some(view) => json!({"destination": "/sys/fs/cgroup", "type": "bind", "source": view,
                                 "options": ["rbind", "rro", "nosuid", "noexec", "nodev"]}),
            None => json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["ro", "nosuid", "noexec", "nodev"]}),
        },
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    let mut user_mounts: Vec<Value> = ["resolv.conf", "hostname", "hosts"]
        .iter()
        .map(|file| {
            json!({"destination": format!("/etc/{file}"), "type": "bind",
                   "source": dir.join(file), "options": ["rbind", "rprivate"]})
        })
        .collect();
    user_mounts.extend(super::mounts::oci_mounts(&hc.mount_points));
    super::mounts::sort_parents_first(&mut user_mounts);
    mounts.extend(user_mounts);
    let mut resources = json!({ "devices": [{"allow": false, "access": "rwm"}] });
    if hc.memory > 0 {
        // No extra swap: memory+swap = memory (the host has no swap anyway; docker would allow 2x).
        resources["memory"] = json!({"limit": hc.memory, "swap": hc.memory});
    }
    if hc.nano_cpus > 0 {
        let period: u64 = 100_000;
        let quota = (hc.nano_cpus as u128 * period as u128 / 1_000_000_000) as i64;
        resources["cpu"] = json!({"quota": quota, "period": period});
    }
    if hc.pids_limit > 0 {
        resources["pids"] = json!({"limit": hc.pids_limit});
    }
    let linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path(&c.id),
        "resources": resources,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "rootfsPropagation": "private",
    });
    // No `linux.seccomp`: the executor installs the precompiled default profile itself (see `seccomp`).
    let hostname = if host_network {
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
    } else {
        c.config.hostname.clone()
    };
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process_json(process),
        "root": { "path": rootfs, "readonly": false },
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_gets_docker_defaults_without_overriding() {
        let env = process_env(&["A=1".into()], "abc", "/root", true);
        assert_eq!(
            env,
            [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME=abc",
                "A=1",
                "TERM=xterm",
                "HOME=/root"
            ]
        );
        let env = process_env(&["PATH=/x".into(), "HOME=/h".into()], "abc", "/root", false);
        assert_eq!(env, ["PATH=/x", "HOSTNAME=abc", "HOME=/h"]);
    }

    #[test]
    fn document_parses_as_an_oci_spec() {
        let c = Container {
            id: "a".repeat(64),
            name: "x".into(),
            created: String::new(),
            image_id: String::new(),
            path: "sh".into(),
            args: vec![],
            config: Default::default(),
            host_config: super::super::HostConfig {
                memory: 32 << 20,
                nano_cpus: 1_500_000_000,
                pids_limit: 20,
                ..Default::default()
            },
            layers: vec![],
        };
        let user = ExecUser { uid: 0, gid: 0, additional_gids: vec![], home: "/root".into() };
        let args = vec!["sh".to_owned()];
        let p = ProcessSpec { args: &args, env: vec![], cwd: "", user: &user, terminal: false };
        let doc = document(Path::new("/c"), &c, Path::new("/c/merged"), &p, None).unwrap_or_else(|e| panic!("{e}"));
        let spec: oci_spec::runtime::Spec = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}"));
        let res = spec.linux().as_ref().and_then(|l| l.resources().clone()).unwrap_or_default();
        assert_eq!(res.cpu().as_ref().and_then(|c| c.quota()), Some(150_000));
        assert_eq!(res.pids().as_ref().map(|p| p.limit()), Some(20));
        // Seccomp is loaded by our executor from a precompiled program, never compiled from the spec.
        assert!(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()).is_none());
        let cgroup = |doc: &Value| {
            doc["mounts"].as_array().and_then(|m| m.iter().find(|m| m["destination"] == "/sys/fs/cgroup")).cloned()
        };
        assert_eq!(cgroup(&doc).map(|m| m["type"].clone()), Some(json!("cgroup")));
        // With the monitor's prepared view: one recursive, recursively read-only bind of it.
        let doc = document(Path::new("/c"), &c, Path::new("/c/merged"), &p, Some(Path::new("/c/cgroupfs")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cgroup(&doc),
            Some(json!({"destination": "/sys/fs/cgroup", "type": "bind", "source": "/c/cgroupfs",
                        "options": ["rbind", "rro", "nosuid", "noexec", "nodev"]}))
        );
    }
}
