//! Network devices through netlink (the `rtnetlink` crate): bridges, veth pairs, addresses and routes, on the
//! host and inside a container's network namespace.
//!
//! `rtnetlink` is async; the rest of the engine is synchronous. A [`Netlink`] session is a current-thread tokio
//! runtime (no threads of its own) with one connection on the host, reused for every step of one network
//! change; the free functions open a session for a single call.
//!
//! Configuring the inside of a container: a netlink socket talks to the namespace it was opened in. [`Netlink::
//! attach`] creates the veth pair with one request — the host end plugged into the bridge and up, the other end
//! created directly inside the target namespace (`IFLA_NET_NS_FD`, given as a path: `/proc/<pid>/ns/net` or a
//! bind-mounted netns file) under its final name `ethN` with its MAC, up. Creating it there rather than moving
//! it afterwards spares an RCU grace period (~20 ms here). A second connection, whose socket a short-lived
//! thread opens after `setns`ing into the namespace (only that thread changes namespace), then adds the address
//! and the default route, and brings `lo` up if it is down.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::future::{try_join, try_join4};
use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::ipam::Subnet;

/// Prefix of the bridges the engine makes (`dd-<12 hex of the network ID>`).
pub const BRIDGE_PREFIX: &str = "dd-";
/// Start of a bridge's alias naming the network record it belongs to.
const OWNER_ALIAS: &str = "drydock-network:";
/// IFALIASZ: the kernel's limit on an alias, terminating NUL included.
const IFALIAS_MAX: usize = 256;

/// A bridge made by an engine, as found on the host.
#[derive(Debug, Clone)]
pub struct OwnedBridge {
    pub name: String,
    index: u32,
    /// The network record (`<root>/networks/<id>.json`) the bridge was made for.
    pub owner: PathBuf,
    pub subnet: Option<Subnet>,
}

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const ENOENT: i32 = 2;

/// Errors changing network devices.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a netlink socket: {0} (the engine needs CAP_NET_ADMIN: run it as root)")]
    Socket(io::Error),
    #[error("cannot {what}: {message}")]
    Netlink { what: String, message: String },
    #[error("cannot enter network namespace {path}: {message} (is the container still running?)")]
    Netns { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |e| Error::Netlink { what, message: message_of(&e) }
}

fn message_of(e: &rtnetlink::Error) -> String {
    match errno(e) {
        Some(n) => io::Error::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    }
}

/// The errno of a netlink error reply, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// One netlink session: a current-thread tokio runtime and one connection in this thread's network namespace,
/// reused for every operation of one network change (a connect makes a single session for the bridge check and
/// the veth pair). The runtime has no threads of its own: the connection is driven only inside [`Self::run`].
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    host: Handle,
}

impl Netlink {
    /// Opens a session on the host (the calling thread's network namespace).
    pub fn open() -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(Error::Socket)?;
        let host = {
            let _context = rt.enter();
            let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
            rt.spawn(connection);
            handle
        };
        Ok(Netlink { rt, host })
    }

    fn run<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        self.rt.block_on(f)
    }

    /// A connection inside the network namespace `netns`, driven by this session's runtime. The socket is made
    /// by a short-lived thread that `setns`es there (a netlink socket belongs to the namespace it was opened
    /// in); the calling thread never changes namespace.
    fn connect_inside(&self, netns: &File, path: &Path) -> Result<Handle> {
        let runtime = self.rt.handle().clone();
        let netns = netns.try_clone().map_err(|e| Error::Netns { path: path.to_path_buf(), message: e.to_string() })?;
        let owned = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("netns-socket".into())
            .spawn(move || {
                setns(&netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::Netns { path: owned, message: e.to_string() })?;
                let _context = runtime.enter();
                rtnetlink::new_connection().map_err(Error::Socket)
            })
            .map_err(|e| Error::Netns { path: path.to_path_buf(), message: format!("cannot start a thread: {e}") })?;
        let (connection, handle, _) = thread.join().unwrap_or_else(|_| {
            Err(Error::Netns { path: path.to_path_buf(), message: "the thread opening a socket there panicked".into() })
        })?;
        self.rt.spawn(connection);
        Ok(handle)
    }

    /// Whether a network device called `name` exists on the host.
    pub fn exists(&self, name: &str) -> Result<bool> {
        self.run(async { Ok(index_of(&self.host, name).await?.is_some()) })
    }

    /// Creates bridge `name` with address `gateway/prefix` and brings it up; an existing bridge is kept (its
    /// address added if missing), so this also restores a network's bridge after a reboot.
    ///
    /// `owner` goes into the device's alias (`ip link` shows it): the path of the network's record, so that a
    /// bridge whose engine root was deleted can be recognised and swept ([`Netlink::owned_bridges`]).
    pub fn ensure_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8, owner: &Path) -> Result<()> {
        let h = &self.host;
        let alias =
            owner.to_str().filter(|o| o.len() + OWNER_ALIAS.len() < IFALIAS_MAX).map(|o| [OWNER_ALIAS, o].concat());
        self.run(async {
            let index = match index_of(h, name).await? {
                Some(i) => i,
                None => {
                    h.link()
                        .add(LinkBridge::new(name).up().build())
                        .execute()
                        .await
                        .map_err(nl(format!("create bridge {name}")))?;
                    index_of(h, name).await?.ok_or_else(|| Error::Netlink {
                        what: format!("create bridge {name}"),
                        message: "the bridge vanished right after its creation".into(),
                    })?
                }
            };
            match h.address().add(index, IpAddr::V4(gateway), prefix).execute().await {
                Err(e) if errno(&e) == Some(EEXIST) => {}
                r => r.map_err(nl(format!("add address {gateway}/{prefix} to {name}")))?,
            }
            let mut up = LinkUnspec::new_with_index(index).up().build();
            if let Some(alias) = alias {
                up.attributes.push(LinkAttribute::IfAlias(alias));
            }
            h.link().set(up).execute().await.map_err(nl(format!("bring {name} up")))
        })
    }

    /// The host's bridges named `dd-*` that carry an owner alias (see [`Netlink::ensure_bridge`]): name, the
    /// owning record's path and the bridge's first IPv4 subnet.
    pub fn owned_bridges(&self) -> Result<Vec<OwnedBridge>> {
        let h = &self.host;
        self.run(async {
            let mut found = Vec::new();
            let mut links = h.link().get().execute();
            while let Some(m) = links.try_next().await.map_err(nl("list network devices"))? {
                let Some(name) = name_of(&m).filter(|n| n.starts_with(BRIDGE_PREFIX)) else { continue };
                let owner = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfAlias(a) => a.strip_prefix(OWNER_ALIAS).map(PathBuf::from),
                    _ => None,
                });
                if let Some(owner) = owner {
                    found.push(OwnedBridge { name: name.to_owned(), index: m.header.index, owner, subnet: None });
                }
            }
            for b in &mut found {
                let mut addresses = h.address().get().set_link_index_filter(b.index).execute();
                while let Some(a) = addresses.try_next().await.map_err(nl(format!("list addresses of {}", b.name)))? {
                    let v4 = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    });
                    if let (Some(ip), None) = (v4, b.subnet) {
                        b.subnet = Some(Subnet::containing(ip, a.header.prefix_len));
                    }
                }
            }
            Ok(found)
        })
    }

    /// Deletes network device `name` (a bridge, or the host end of a veth pair, which takes its peer with it).
    /// A device that does not exist is not an error.
    pub fn delete(&self, name: &str) -> Result<()> {
        let h = &self.host;
        self.run(async {
            let Some(index) = index_of(h, name).await? else { return Ok(()) };
            match h.link().del(index).execute().await {
                Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(()),
                r => r.map_err(nl(format!("delete network device {name}"))),
            }
        })
    }

    /// Every IPv4 route on the host (all tables) except default routes, with the name of its device.
    pub fn host_routes(&self) -> Result<Vec<(Subnet, String)>> {
        let h = &self.host;
        self.run(async {
            let mut names = std::collections::HashMap::new();
            let mut links = h.link().get().execute();
            while let Some(m) = links.try_next().await.map_err(nl("list network devices"))? {
                if let Some(n) = name_of(&m) {
                    names.insert(m.header.index, n.to_owned());
                }
            }
            let mut routes = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
            let mut out = Vec::new();
            while let Some(r) = routes.try_next().await.map_err(nl("list routes"))? {
                let prefix = r.header.destination_prefix_length;
                if prefix == 0 {
                    continue;
                }
                let mut dest = None;
                let mut oif = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = Some(*d),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                if let Some(d) = dest {
                    let dev = oif.and_then(|i| names.get(&i).cloned()).unwrap_or_default();
                    out.push((Subnet::containing(d, prefix), dev));
                }
            }
            Ok(out)
        })
    }

    /// The devices plugged into any of `bridges` (by name), with the bridge each is in.
    pub fn ports_of(&self, bridges: &[String]) -> Result<Vec<(String, String)>> {
        let h = &self.host;
        self.run(async {
            let mut names = std::collections::HashMap::new();
            let mut controllers = Vec::new();
            let mut links = h.link().get().execute();
            while let Some(m) = links.try_next().await.map_err(nl("list network devices"))? {
                let Some(name) = name_of(&m) else { continue };
                names.insert(m.header.index, name.to_owned());
                let controller = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Controller(i) => Some(*i),
                    _ => None,
                });
                if let Some(c) = controller {
                    controllers.push((name.to_owned(), c));
                }
            }
            Ok(controllers
                .into_iter()
                .filter_map(|(port, c)| names.get(&c).filter(|b| bridges.contains(b)).map(|b| (port, b.clone())))
                .collect())
        })
    }

    /// Creates the veth pair — the host end plugged into the bridge and up, the container end made directly
    /// inside the namespace under its final name and MAC — then gives the container end its address (and the
    /// default route) over a connection inside the namespace. Returns the interface name it got there (`eth0`,
    /// `eth1`, …). On failure nothing is left behind.
    pub fn attach(&self, a: &Attachment<'_>) -> Result<String> {
        let netns =
            File::open(a.netns).map_err(|e| Error::Netns { path: a.netns.to_path_buf(), message: e.to_string() })?;
        let inside = self.connect_inside(&netns, a.netns)?;
        let result = self.run(plug_and_configure(&self.host, &inside, a, &netns));
        if result.is_err() {
            let _ = self.delete(a.host_veth);
        }
        result
    }
}

/// Whether a network device called `name` exists on the host.
pub fn exists(name: &str) -> Result<bool> {
    Netlink::open()?.exists(name)
}

/// [`Netlink::delete`] in a session of its own.
pub fn delete(name: &str) -> Result<()> {
    Netlink::open()?.delete(name)
}

/// [`Netlink::host_routes`] in a session of its own.
pub fn host_routes() -> Result<Vec<(Subnet, String)>> {
    Netlink::open()?.host_routes()
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    match h.link().get().match_name(name.to_owned()).execute().try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(None),
        Err(e) => Err(nl(format!("look up network device {name}"))(e)),
    }
}

fn name_of(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// One container interface to create: a veth pair between `bridge` and the namespace at `netns`.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub bridge: &'a str,
    /// Name of the host end (≤ 15 characters).
    pub host_veth: &'a str,
    pub netns: &'a Path,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    /// Add a default route via this gateway (the container's first network that has a way out).
    pub default_gateway: Option<Ipv4Addr>,
}

async fn plug_and_configure(host: &Handle, inside: &Handle, a: &Attachment<'_>, netns: &File) -> Result<String> {
    // Requests on one socket are handled by the kernel in order, so steps that do not need an answer first are
    // sent together (pipelined) rather than one round trip each; the two sockets work concurrently.
    let bridge = async {
        index_of(host, a.bridge).await?.ok_or_else(|| Error::Netlink {
            what: format!("attach to bridge {}", a.bridge),
            message: "the bridge does not exist".into(),
        })
    };
    let ((taken, lo_down), bridge) = try_join(container_links(inside), bridge).await?;
    let ifname = (0..).map(|n| format!("eth{n}")).find(|n| !taken.contains(n)).unwrap_or_else(|| "eth0".into());
    // One request: the pair, the host end in the bridge and up, the peer created in the namespace (no move,
    // which would cost an RCU grace period) with its final name and MAC. (The peer cannot be created up: the
    // kernel opens it before the pair is linked, and veth refuses with ENOTCONN.)
    let peer = LinkUnspec::new_with_name(&ifname).address(a.mac.to_vec()).setns_by_fd(netns.as_raw_fd()).build();
    let pair = LinkVeth::new(a.host_veth, &ifname)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .up()
        .build();
    host.link().add(pair).execute().await.map_err(nl(format!("create veth pair {}", a.host_veth)))?;
    let index = index_of(inside, &ifname).await?.ok_or_else(|| Error::Netlink {
        what: format!("find {ifname} in the container's network namespace"),
        message: "it did not arrive".into(),
    })?;
    let (address, prefix) = (a.address, a.prefix);
    let lo_up = async {
        match lo_down {
            Some(lo) => inside
                .link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(nl("bring lo up in the container")),
            None => Ok(()),
        }
    };
    let add_address = async {
        inside
            .address()
            .add(index, IpAddr::V4(address), prefix)
            .execute()
            .await
            .map_err(nl(format!("add address {address}/{prefix} to {ifname}")))
    };
    let up = async {
        inside
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bring {ifname} up")))
    };
    // Needs the address and the link up: sent after them on the same socket.
    let route = async {
        let Some(gw) = a.default_gateway else { return Ok(()) };
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(index).build();
        match inside.route().add(route).execute().await {
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            r => r.map_err(nl(format!("add the default route via {gw}"))),
        }
    };
    try_join4(lo_up, add_address, up, route).await?;
    Ok(ifname)
}

/// The names of the devices in a container's namespace, and the index of `lo` if it is down (a bare namespace;
/// the monitor has brought it up already).
async fn container_links(inside: &Handle) -> Result<(Vec<String>, Option<u32>)> {
    let mut taken = Vec::new();
    let mut lo_down = None;
    let mut links = inside.link().get().execute();
    while let Some(m) = links.try_next().await.map_err(nl("list the container's network devices"))? {
        if let Some(name) = name_of(&m) {
            if name == "lo" && !m.header.flags.contains(LinkFlags::Up) {
                lo_down = Some(m.header.index);
            }
            taken.push(name.to_owned());
        }
    }
    Ok((taken, lo_down))
}

/// The identity of a network namespace file: (device, inode) of the nsfs inode it refers to. A recorded
/// endpoint whose namespace path no longer has this identity belongs to a container that is gone.
pub fn netns_identity(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::stat::stat(path).ok()?;
    Some((st.st_dev, st.st_ino))
}
