//! Networks: docker's bridge networks (plus the built-in `bridge`, `host` and `none`) on Linux bridges and veth
//! pairs made through netlink, per-network address management, name resolution through `/etc/hosts`, isolation
//! and outbound NAT with nftables, and published ports through a userland proxy. One file per concern:
//! [`create`], [`connect`] (connect/disconnect), [`remove`] (rm/prune), [`inspect`], [`ipam`], [`link`]
//! (netlink), [`firewall`] (nft), [`hosts`], [`ports`] (`-p` parsing and `engine port` output), [`proxy`].
//!
//! # State
//! Each network is a JSON record `<root>/networks/<id>.json` (name, driver, subnet, gateway, options, labels and
//! its endpoints: container, address, MAC, interface, host veth, namespace). Records change under the root lock
//! ([`Root::lock`]). Host-wide resources shared by every Drydock root on the machine — subnets, the nftables
//! table — change under a second lock, `/run/drydock/network.lock`, always taken after the root lock.
//!
//! A user-defined network's bridge `dd-<first 12 hex of its ID>` exists from `network create` to `network rm` (docker's
//! behaviour; it also makes its subnet visible as a host route to other roots). The built-in `bridge` network takes a
//! subnet and a bridge when its first container connects and then keeps both, like docker's `docker0` (creating and
//! deleting a bridge and its nftables elements at every `run --rm` cost ~140 ms); an engine that never runs a container
//! leaves nothing on the host, and `network prune` gives an unused built-in bridge back. `connect` recreates a missing
//! bridge (after a reboot). An endpoint whose namespace is gone (container killed without a disconnect) is reaped the
//! next time its network changes: its namespace file no longer has the recorded identity, the kernel already destroyed
//! the veth pair, and its address is freed.
//!
//! # API for the container runtime
//! ```text
//! let networks = NetworkStore::open(&root)?;                 // records the built-ins on first use (takes the lock)
//! let net = networks.resolve("mynet")?;                      // name, full ID or unique ID prefix
//! // create/start: after the container's init process exists (its netns is /proc/<pid>/ns/net) and before the
//! // user process starts — in the monitor, where `loopback_up` is called today. NOT with the root lock held.
//! let ep: Endpoint = networks.connect("mynet", &ContainerEndpointRequest {
//!     container_id, container_name, aliases, ip: None, netns_path: "/proc/<pid>/ns/net".into() })?;
//! // → ep.ip, ep.prefix, ep.gateway, ep.mac, ep.ifname ("eth0" for the first network: it gets the default route)
//! // stop / exit / rm: networks.disconnect_all(container_id)?   (also `disconnect(net, id)` for one network)
//! // rm, after that: networks.sweep_departed(&network_ids)?     (veths the kernel has not destroyed yet)
//! // the hosts file <root>/containers/<id>/hosts is rewritten in place by connect/disconnect; to write its
//! // initial content the runtime may append `hosts::section(&networks.hosts_entries_for(id)?)`.
//! // published ports: ports::parse_publish("8080:80") → proxy::Proxy::bind(&bindings, ep.ip)? → .spawn() in
//! // the monitor (or .serve() → ! in a dedicated process); record proxy.published() for `engine port`.
//! ```
//! `none` and `host` cannot be connected to: the runtime handles them itself (no netns / the host's).

pub mod connect;
pub mod create;
pub mod firewall;
pub mod hosts;
pub mod inspect;
pub mod ipam;
pub mod link;
pub mod ports;
pub mod proxy;
pub mod remove;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use connect::{ContainerEndpointRequest, Endpoint};
pub use create::CreateOptions;
use ipam::Subnet;

use crate::root::{Root, RootLock};

/// Names of the built-in networks.
pub const DEFAULT_NETWORK: &str = "bridge";
pub const HOST_NETWORK: &str = "host";
pub const NONE_NETWORK: &str = "none";

/// Drivers.
pub const DRIVER_BRIDGE: &str = "bridge";
pub const DRIVER_HOST: &str = "host";
pub const DRIVER_NULL: &str = "null";

/// docker's option switching masquerading off for one network.
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// Where the host-wide network lock lives.
pub const HOST_LOCK_PATH: &str = "/run/drydock/network.lock";

/// Errors of network operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network ID prefix `{0}` is ambiguous: it matches several networks (give more characters)")]
    Ambiguous(String),
    #[error("network with name {0} already exists (choose another name or remove it first)")]
    NameTaken(String),
    #[error("invalid network name \"{0}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("error while removing network: network {name} id {id} has active endpoints (disconnect or remove its containers first)")]
    ActiveEndpoints { name: String, id: String },
    #[error("plugin \"{0}\" not found: only the bridge driver can create networks")]
    UnknownDriver(String),
    #[error("container cannot be connected to network {0}: it is a {1} network (use --network {0} when creating the container)")]
    NotConnectable(String, String),
    #[error("endpoint with name {container} already exists in network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("user specified IP address is supported on user defined networks only (create one with `engine network create`)")]
    IpOnDefault,
    #[error("invalid {what} `{value}`: {hint}")]
    InvalidInput { what: &'static str, value: String, hint: String },
    #[error("pool overlaps with other one on this address space: {subnet} overlaps {other} (choose another --subnet)")]
    Overlap { subnet: Subnet, other: String },
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    #[error(transparent)]
    Link(#[from] link::Error),
    #[error(transparent)]
    Firewall(#[from] firewall::Error),
    #[error(transparent)]
    Ports(#[from] ports::Error),
    #[error(transparent)]
    Root(#[from] crate::root::Error),
    #[error("network record {path} is corrupt: {message} (remove the file, then recreate the network)")]
    Corrupt { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A network as recorded on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    /// `None` for `host` and `none`, and for the built-in `bridge` while no container uses it.
    #[serde(default)]
    pub subnet: Option<Subnet>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// The subnet (and gateway) were given with `--subnet`/`--gateway` and are kept as is.
    #[serde(default)]
    pub user_ipam: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `bridge`, `host` and `none`, made by the engine.
    #[serde(default)]
    pub builtin: bool,
    /// Connected containers by container ID.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

/// One container's attachment to a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointRecord {
    pub container_name: String,
    /// 64 hex characters (docker's EndpointID).
    pub endpoint_id: String,
    pub address: Ipv4Addr,
    pub mac: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `eth0`, `eth1`, … inside the container.
    pub ifname: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    pub netns_path: PathBuf,
    /// (device, inode) of the namespace when it was connected: see [`link::netns_identity`].
    pub netns_identity: (u64, u64),
    /// This endpoint carries the container's default route.
    #[serde(default)]
    pub default_route: bool,
}

impl Network {
    /// The Linux bridge of a bridge network.
    pub fn bridge_name(&self) -> String {
        format!("dd-{}", &self.id[..12.min(self.id.len())])
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// Name resolution by container name and alias is for user-defined bridge networks only (docker).
    pub fn resolves_names(&self) -> bool {
        self.driver == DRIVER_BRIDGE && !self.builtin
    }

    pub fn masquerade(&self) -> bool {
        self.options.get(OPT_MASQUERADE).map(String::as_str) != Some("false")
    }
}

/// The host-wide network lock (see the module doc); released when dropped.
pub struct HostLock {
    _lock: Flock<File>,
}

/// Takes the host-wide network lock. Call with the root lock held.
pub fn host_lock() -> Result<HostLock> {
    let path = Path::new(HOST_LOCK_PATH);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("cannot open {}", path.display())))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(HostLock { _lock: lock }),
            Err((f, nix::errno::Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(io_err(format!("cannot lock {}", path.display()))(e.into())),
        }
    }
}

/// The networks of one engine root.
#[derive(Debug, Clone)]
pub struct NetworkStore {
    root: Root,
}

impl NetworkStore {
    /// Opens the store, recording the built-in networks the first time.
    pub fn open(root: &Root) -> Result<NetworkStore> {
        let store = NetworkStore { root: root.clone() };
        let dir = store.dir();
        fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let recorded = store.list()?;
        let have = |name: &str| recorded.iter().any(|n| n.name == name && n.builtin);
        if !(have(DEFAULT_NETWORK) && have(HOST_NETWORK) && have(NONE_NETWORK)) {
            let lock = root.lock()?;
            let existing = store.list()?;
            for (name, driver) in
                [(DEFAULT_NETWORK, DRIVER_BRIDGE), (HOST_NETWORK, DRIVER_HOST), (NONE_NETWORK, DRIVER_NULL)]
            {
                if existing.iter().any(|n| n.name == name) {
                    continue;
                }
                let mut options = BTreeMap::new();
                if driver == DRIVER_BRIDGE {
                    options.insert(OPT_MASQUERADE.to_owned(), firewall::masquerade_default().to_string());
                }
                let net = Network {
                    id: random_id(),
                    name: name.to_owned(),
                    driver: driver.to_owned(),
                    created: crate::image::now_rfc3339(),
                    subnet: None,
                    gateway: None,
                    user_ipam: false,
                    internal: false,
                    labels: BTreeMap::new(),
                    options,
                    builtin: true,
                    endpoints: BTreeMap::new(),
                };
                store.save(&net, &lock)?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("networks")
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir().join(format!("{id}.json"))
    }

    /// Every network: built-ins first, then by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        let dir = self.dir();
        let mut out = Vec::new();
        let entries = fs::read_dir(&dir).map_err(io_err(format!("cannot read {}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            out.push(load(&path)?);
        }
        out.sort_by(|a, b| b.builtin.cmp(&a.builtin).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Finds a network by exact name, full ID, then unique ID prefix (docker's order).
    pub fn resolve(&self, s: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == s || n.id == s) {
            return Ok(n.clone());
        }
        let mut found = all.iter().filter(|n| !s.is_empty() && n.id.starts_with(s));
        match (found.next(), found.next()) {
            (Some(n), None) => Ok(n.clone()),
            (Some(_), Some(_)) => Err(Error::Ambiguous(s.to_owned())),
            _ => Err(Error::NotFound(s.to_owned())),
        }
    }

    /// Writes a record atomically (staged, then renamed). Call with the lock held.
    fn save(&self, n: &Network, _lock: &RootLock) -> Result<()> {
        let path = self.record_path(&n.id);
        let tmp = self.dir().join(format!(".{}.json.tmp", n.id));
        let bytes =
            serde_json::to_vec_pretty(n).map_err(|e| Error::Corrupt { path: path.clone(), message: e.to_string() })?;
        fs::write(&tmp, bytes).map_err(io_err(format!("cannot write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io_err(format!("cannot write {}", path.display())))
    }

    fn delete_record(&self, n: &Network, _lock: &RootLock) -> Result<()> {
        let path = self.record_path(&n.id);
        fs::remove_file(&path).map_err(io_err(format!("cannot remove {}", path.display())))
    }

    /// The hosts-file entries container `container_id` should see: every endpoint of every user-defined
    /// network it is on (itself included), by container name, aliases and short ID.
    pub fn hosts_entries_for(&self, container_id: &str) -> Result<Vec<hosts::HostsEntry>> {
        Ok(entries_for(&self.list()?, container_id))
    }

    /// The hosts file of a container.
    pub fn hosts_path(&self, container_id: &str) -> PathBuf {
        self.root.containers_dir().join(container_id).join("hosts")
    }

    /// Rewrites the hosts files of `containers` from the current records. Call with the lock held.
    fn refresh_hosts(&self, containers: &[String], _lock: &RootLock) -> Result<()> {
        let all = self.list()?;
        for id in containers {
            let path = self.hosts_path(id);
            hosts::rewrite(&path, &entries_for(&all, id))
                .map_err(io_err(format!("cannot update {}", path.display())))?;
        }
        Ok(())
    }

    /// Makes sure a bridge network's subnet, bridge device and firewall elements exist. Call with the lock
    /// held and the host lock; saves the record if a subnet had to be chosen.
    fn activate(&self, n: &mut Network, lock: &RootLock, _host: &HostLock, netlink: &link::Netlink) -> Result<()> {
        let fresh_subnet = n.subnet.is_none();
        if n.subnet.is_none() {
            let others: Vec<Network> = self.list()?.into_iter().filter(|o| o.id != n.id).collect();
            let subnet = choose_pool_subnet(&others, _host)?;
            n.subnet = Some(subnet);
            n.gateway = Some(subnet.first_host());
            self.save(n, lock)?;
        }
        let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) else {
            return Err(Error::Corrupt {
                path: self.record_path(&n.id),
                message: "a bridge network without subnet".into(),
            });
        };
        let bridge = n.bridge_name();
        let existed = netlink.exists(&bridge)?;
        if existed && !fresh_subnet {
            // Bridge and firewall elements are made and removed together under the host lock: an existing bridge
            // has its elements. Skipping the check spares an `nft` process on every container start.
            return Ok(());
        }
        if let Err(e) = netlink.ensure_bridge(&bridge, gateway, subnet.prefix(), &self.record_path(&n.id)) {
            if !existed {
                let _ = netlink.delete(&bridge);
            }
            return Err(e.into());
        }
        let rules = firewall::Rules { bridge: &bridge, subnet, internal: n.internal, masquerade: n.masquerade() };
        if let Err(e) = firewall::enable(&rules) {
            if !existed {
                let _ = netlink.delete(&bridge);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes a bridge network's device and firewall elements (the record stays). Call with both locks held.
    fn deactivate(&self, n: &Network, _lock: &RootLock, _host: &HostLock) -> Result<()> {
        let bridge = n.bridge_name();
        let mut first_error = link::delete(&bridge).err().map(Error::from);
        if let Some(subnet) = n.subnet {
            let rules = firewall::Rules { bridge: &bridge, subnet, internal: n.internal, masquerade: n.masquerade() };
            if let Err(e) = firewall::disable(&rules) {
                first_error.get_or_insert(e.into());
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Drops endpoints whose namespace is gone (see the module doc). Returns the containers dropped.
    fn reap_stale(&self, n: &mut Network) -> Vec<String> {
        let stale: Vec<String> = n
            .endpoints
            .iter()
            .filter(|(_, e)| link::netns_identity(&e.netns_path) != Some(e.netns_identity))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            // The kernel destroys the pair with the namespace (asynchronously): nothing to delete here.
            n.endpoints.remove(id);
        }
        stale
    }
}

/// A subnet from the pool that overlaps no other network of this root and no host route. Bridges left by
/// deleted engine roots are swept first, so that they do not hold subnets of the pool forever.
fn choose_pool_subnet(others: &[Network], host: &HostLock) -> Result<Subnet> {
    remove::sweep_orphaned_bridges(host)?;
    let (pool, size) = ipam::pool_from_env()?;
    let mut taken: Vec<Subnet> = others.iter().filter_map(|o| o.subnet).collect();
    taken.extend(link::host_routes()?.into_iter().map(|(s, _)| s));
    Ok(ipam::choose_subnet(pool, size, &taken)?)
}

fn entries_for(all: &[Network], container_id: &str) -> Vec<hosts::HostsEntry> {
    let mut entries = Vec::new();
    for n in all.iter().filter(|n| n.resolves_names() && n.endpoints.contains_key(container_id)) {
        for (id, e) in &n.endpoints {
            let mut names = vec![e.container_name.clone()];
            names.extend(e.aliases.iter().filter(|a| **a != e.container_name).cloned());
            names.push(id[..12.min(id.len())].to_owned());
            names.dedup();
            entries.push(hosts::HostsEntry { address: e.address, names });
        }
    }
    entries
}

fn load(path: &Path) -> Result<Network> {
    let bytes = fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt { path: path.to_path_buf(), message: e.to_string() })
}

/// 64 random hex characters (network and endpoint IDs).
pub fn random_id() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// docker's rule for network (and volume) names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
