//! A container's networks: what `--network`, `--network-alias` and `--ip` name (resolved at create), joining
//! those networks in the monitor at each start and publishing ports through the userland proxy, leaving them
//! when the container's process exits or the container is removed, `network connect`/`disconnect` for an
//! existing container, and the `NetworkSettings` section of `inspect`. The networks themselves — bridges,
//! veths, addresses, hosts files, firewall — are [`crate::network`]'s.
//!
//! Start order in the monitor (see [`super::monitor`]): libcontainer's `build()` gives the init pid, whose
//! namespace `/proc/<pid>/ns/net` is connected to each network in turn (the first gets `eth0` and the default
//! route), then the proxy binds the published host ports for the first network's address, and only then does
//! the container's command start. Any failure rolls everything back (`leave`, then the container is deleted)
//! and the start fails with the error, so a busy port never leaves a half-started container.
//!
//! The proxy runs in a child process of the monitor, not in threads of the monitor itself: the monitor stays
//! single-threaded (libcontainer forks from it again at a restart, which is unsafe with other threads holding
//! locks), and the proxy can be stopped at exit and bound afresh at the next start. The child dies with the
//! monitor (`PR_SET_PDEATHSIG`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getpid, getppid, ForkResult, Pid};
use serde_json::{json, Map, Value};

use super::store::{Container, ContainerStore, NetworkAttachment, State};
use super::{sys_err, Error, Result};
use crate::network::ports::PublishedPort;
use crate::network::proxy::Proxy;
use crate::network::{
    self, ContainerEndpointRequest, Endpoint, NetworkStore, DEFAULT_NETWORK, HOST_NETWORK, NONE_NETWORK,
};
use crate::root::Root;

/// `network_mode` of containers made before networks existed: an isolated namespace with only `lo`.
pub const LEGACY_MODE: &str = "default";

/// The prefix of the network mode of a container that shares another's network namespace
/// (`--network container:NAME|ID`; recorded with the full ID).
pub const CONTAINER_MODE: &str = "container:";

/// True if containers in this mode have a network namespace that networks can be connected to.
pub fn connectable(mode: &str) -> bool {
    mode != HOST_NETWORK && mode != NONE_NETWORK && mode != LEGACY_MODE && joined_container(mode).is_none()
}

/// The ID of the container whose network namespace a container in this mode shares.
pub fn joined_container(mode: &str) -> Option<&str> {
    mode.strip_prefix(CONTAINER_MODE)
}

/// Resolves `--network` (default: the built-in `bridge`), `--network-alias` and `--ip` at create: the network
/// mode and the networks to join at start.
pub fn plan(
    root: &Root,
    network: Option<&str>,
    aliases: &[String],
    ip: Option<&str>,
) -> Result<(String, Vec<NetworkAttachment>)> {
    let requested = match network {
        None | Some("" | LEGACY_MODE) => DEFAULT_NETWORK,
        Some(n) => n,
    };
    let ip = ip.map(network::ipam::parse_address).transpose().map_err(network::Error::from)?;
    let user_defined_only = |what: &'static str, value: String, hint: &str| Error::InvalidInput {
        what,
        value,
        hint: format!("{hint} (create one with `engine network create`)"),
    };
    if let Some(other) = joined_container(requested) {
        // CircleCI's docker executor shares one namespace between the job's images; this is how.
        let target = super::store::ContainerStore::open(root).resolve(other)?;
        if let Some(deeper) = joined_container(&target.host_config.network_mode) {
            // Join the namespace's owner directly, so the chain does not depend on the middle container.
            return Ok((format!("{CONTAINER_MODE}{deeper}"), Vec::new()));
        }
        return Ok((format!("{CONTAINER_MODE}{}", target.id), Vec::new()));
    }
    let store = NetworkStore::open(root)?;
    let net = store.resolve(requested)?;
    if net.builtin {
        if let Some(a) = aliases.first() {
            return Err(user_defined_only(
                "--network-alias",
                a.clone(),
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
        if let Some(ip) = ip {
            return Err(user_defined_only(
                "--ip",
                ip.to_string(),
                "user specified IP address is supported on user defined networks only",
            ));
        }
        if net.name != DEFAULT_NETWORK {
            return Ok((net.name, Vec::new()));
        }
    }
    for a in aliases {
        if !network::valid_name(a) {
            return Err(Error::InvalidInput {
                what: "--network-alias",
                value: a.clone(),
                hint: "use letters, digits, '_', '.' and '-', starting with a letter or digit".into(),
            });
        }
    }
    let attachment = NetworkAttachment { network_id: net.id, name: net.name.clone(), aliases: aliases.to_vec(), ip };
    Ok((net.name, vec![attachment]))
}

/// In the monitor, once the container's init process `pid` exists and before its command runs: joins every
/// network of `c`, first one first. If one fails, those joined so far are left again.
pub fn join(root: &Root, c: &Container, pid: i32) -> Result<Vec<Endpoint>> {
    if c.host_config.networks.is_empty() {
        return Ok(Vec::new());
    }
    let store = NetworkStore::open(root)?;
    let mut endpoints = Vec::new();
    for a in &c.host_config.networks {
        let req = ContainerEndpointRequest {
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            aliases: a.aliases.clone(),
            ip: a.ip,
            netns_path: PathBuf::from(format!("/proc/{pid}/ns/net")),
        };
        match store.connect(&a.network_id, &req) {
            Ok(ep) => endpoints.push(ep),
            Err(e) => {
                let _ = store.disconnect_all(&c.id);
                return Err(match e {
                    network::Error::NotFound(_) => network::Error::NotFound(a.name.clone()),
                    e => e,
                }
                .into());
            }
        }
    }
    Ok(endpoints)
}

/// Leaves every network (the container's process has exited, or the container is being removed). Not being
/// connected anywhere is fine.
pub fn leave(root: &Root, c: &Container) -> Result<()> {
    if !connectable(&c.host_config.network_mode) {
        return Ok(());
    }
    Ok(NetworkStore::open(root)?.disconnect_all(&c.id)?)
}

/// `rm`: leaves every network like [`leave`], then makes sure no veth of the container is left on their
/// bridges — after its exit the kernel destroys the pair with the namespace, asynchronously; `rm` does not
/// return before it is gone.
pub fn leave_for_removal(root: &Root, c: &Container) -> Result<()> {
    if !connectable(&c.host_config.network_mode) {
        return Ok(());
    }
    let store = NetworkStore::open(root)?;
    store.disconnect_all(&c.id)?;
    let ids: Vec<String> = c.host_config.networks.iter().map(|a| a.network_id.clone()).collect();
    Ok(store.sweep_departed(&ids)?)
}

/// The userland proxy of a running container: a child process of the monitor.
#[derive(Debug)]
pub struct ProxyProcess {
    pid: Pid,
}

impl ProxyProcess {
    /// Stops the proxy (its ports are free once this returns).
    pub fn stop(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

/// Binds `c`'s published ports on the host — failing with docker's "port is already allocated" if one is
/// taken — and relays them to `ip` from a child process. Returns `None` when nothing is published.
pub fn publish(c: &Container, ip: Ipv4Addr) -> Result<Option<(ProxyProcess, Vec<PublishedPort>)>> {
    if c.host_config.port_bindings.is_empty() {
        return Ok(None);
    }
    let proxy = Proxy::bind(&c.host_config.port_bindings, IpAddr::V4(ip))?;
    let published = proxy.published();
    let keep = proxy.raw_fds();
    let parent = getpid();
    // SAFETY: the monitor is single-threaded, so the child may run ordinary Rust code after the fork.
    match unsafe { fork() }.map_err(sys_err("cannot fork the port proxy"))? {
        ForkResult::Child => {
            // SAFETY: prctl on this process; `_exit` leaves without running the monitor's destructors.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if getppid() != parent {
                    libc::_exit(0);
                }
            }
            close_all_but(&keep);
            let code = match proxy.serve() {
                Ok(never) => match never {},
                Err(_) => super::EXIT_ENGINE as i32,
            };
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(proxy);
            Ok(Some((ProxyProcess { pid: child }, published)))
        }
    }
}

/// In the proxy child: stdio to /dev/null, every other inherited descriptor (status pipe, container pipes,
/// signalfd) closed except the listeners in `keep`.
fn close_all_but(keep: &[i32]) {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect())
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closing a descriptor inherited from the monitor that nothing in this process uses.
        unsafe { libc::close(fd) };
    }
}

/// `network connect NET CTR`: the container joins `network` at every start from now on and, if it runs, at
/// once.
pub fn connect(
    store: &ContainerStore,
    id: &str,
    network: &str,
    aliases: Vec<String>,
    ip: Option<Ipv4Addr>,
) -> Result<()> {
    let c = store.load(id)?;
    let networks = NetworkStore::open(store.root())?;
    let net = networks.resolve(network)?;
    if !connectable(&c.host_config.network_mode) || net.name == HOST_NETWORK || net.name == NONE_NETWORK {
        return Err(Error::InvalidInput {
            what: "network",
            value: net.name,
            hint: format!(
                "container {} uses network mode {}: it cannot be connected to other networks (docker's rule)",
                c.name, c.host_config.network_mode
            ),
        });
    }
    if c.host_config.networks.iter().any(|a| a.network_id == net.id) {
        return Err(network::Error::AlreadyConnected { container: c.name, network: net.name }.into());
    }
    let attachment = NetworkAttachment { network_id: net.id.clone(), name: net.name.clone(), aliases, ip };
    let state = store.state(id)?;
    if state.is_running() && state.pid > 0 {
        let req = ContainerEndpointRequest {
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            aliases: attachment.aliases.clone(),
            ip,
            netns_path: PathBuf::from(format!("/proc/{}/ns/net", state.pid)),
        };
        networks.connect(&net.id, &req)?;
    } else if ip.is_some() && net.builtin {
        return Err(network::Error::IpOnDefault.into());
    }
    let lock = store.lock()?;
    let mut c = store.load(id)?;
    c.host_config.networks.push(attachment);
    store.save(&c, &lock)
}

/// `network disconnect NET CTR`: leaves `network` now (if running) and at later starts. With `force`, not
/// being connected is not an error.
pub fn disconnect(store: &ContainerStore, id: &str, network: &str, force: bool) -> Result<()> {
    let networks = NetworkStore::open(store.root())?;
    let net = networks.resolve(network)?;
    let c = store.load(id)?;
    let recorded = c.host_config.networks.iter().any(|a| a.network_id == net.id);
    let live = net.endpoints.contains_key(&c.id);
    if !recorded && !live {
        if force {
            return Ok(());
        }
        return Err(network::Error::NotConnected { container: c.name, network: net.name }.into());
    }
    if live {
        networks.disconnect(&net.id, &c.id)?;
    }
    let lock = store.lock()?;
    let mut c = store.load(id)?;
    c.host_config.networks.retain(|a| a.network_id != net.id);
    store.save(&c, &lock)
}

/// docker's `NetworkSettings` for `inspect`: the networks with their live endpoints, the published ports, and
/// at the top level the default `bridge` network's address (docker fills those only for that network).
pub fn inspect_json(root: &Root, c: &Container, state: &State) -> Value {
    let all = NetworkStore::open(root).and_then(|s| s.list()).unwrap_or_default();
    let mut networks = Map::new();
    let mut top = json!({"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": ""});
    let running = state.is_running();
    let mode = &c.host_config.network_mode;
    if !connectable(mode) && mode != LEGACY_MODE && joined_container(mode).is_none() {
        networks.insert(mode.clone(), endpoint_json(all.iter().find(|n| n.name == *mode), c, None, None));
    }
    for a in &c.host_config.networks {
        let net = all.iter().find(|n| n.id == a.network_id);
        let ep = net.and_then(|n| n.endpoints.get(&c.id)).filter(|_| running);
        let v = endpoint_json(net, c, ep, Some(a));
        if net.is_some_and(|n| n.builtin && n.name == DEFAULT_NETWORK) && ep.is_some() {
            for k in ["IPAddress", "IPPrefixLen", "Gateway", "MacAddress"] {
                top[k] = v[k].clone();
            }
        }
        networks.insert(net.map_or(a.name.clone(), |n| n.name.clone()), v);
    }
    let mut ports = Map::new();
    if running {
        for e in c.config.exposed_ports.keys() {
            ports.insert(e.clone(), Value::Null);
        }
        for p in &state.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let entry = json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()});
            match ports.get_mut(&key).and_then(Value::as_array_mut) {
                Some(list) => list.push(entry),
                None => {
                    ports.insert(key, json!([entry]));
                }
            }
        }
    }
    let sandbox = if running && state.pid > 0 { format!("/proc/{}/ns/net", state.pid) } else { String::new() };
    json!({
        "Bridge": "",
        "SandboxKey": sandbox,
        "Ports": ports,
        "IPAddress": top["IPAddress"],
        "IPPrefixLen": top["IPPrefixLen"],
        "Gateway": top["Gateway"],
        "MacAddress": top["MacAddress"],
        "Networks": networks,
    })
}

fn endpoint_json(
    net: Option<&network::Network>,
    c: &Container,
    ep: Option<&network::EndpointRecord>,
    attachment: Option<&NetworkAttachment>,
) -> Value {
    let aliases = attachment.map(|a| a.aliases.as_slice()).unwrap_or_default();
    let ipam = match attachment.and_then(|a| a.ip) {
        Some(ip) => json!({"IPv4Address": ip.to_string()}),
        None => Value::Null,
    };
    let resolves = net.is_some_and(|n| n.resolves_names());
    let dns_names: Value = if resolves {
        let mut names = vec![c.name.clone()];
        names.extend(aliases.iter().cloned());
        names.push(c.id[..12.min(c.id.len())].to_owned());
        json!(names)
    } else {
        Value::Null
    };
    let (ip, prefix, gateway, mac, endpoint_id) = match (ep, net) {
        (Some(e), Some(n)) => (
            e.address.to_string(),
            n.subnet.map_or(0, |s| s.prefix()),
            n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            e.mac.clone(),
            e.endpoint_id.clone(),
        ),
        _ => Default::default(),
    };
    json!({
        "IPAMConfig": ipam,
        "Links": Value::Null,
        "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
        "MacAddress": mac,
        "NetworkID": net.map(|n| n.id.clone()).unwrap_or_default(),
        "EndpointID": endpoint_id,
        "Gateway": gateway,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "DNSNames": dns_names,
    })
}
