//! Network devices through netlink (the `rtnetlink` crate): bridges, veth pairs, addresses and routes, on the
//! host and inside a container's network namespace.
//!
//! `rtnetlink` is async; the rest of the engine is synchronous. Each call here builds a small current-thread
//! tokio runtime, opens one netlink socket, does its work and drops both — a few hundred microseconds, paid only
//! when a network changes.
//!
//! Configuring the inside of a container: a netlink socket talks to the namespace it was opened in. So
//! [`attach`] creates the veth pair on the host, moves one end into the target namespace (given as a path:
//! `/proc/<pid>/ns/net` or a bind-mounted netns file), then starts a short-lived thread that `setns`es into the
//! namespace — only that thread changes namespace — and opens its own socket there to rename the end to
//! `ethN`, set its MAC and address, bring it and `lo` up and add the default route.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::ipam::Subnet;

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

/// Runs `f` with a fresh netlink handle on a current-thread runtime, in this thread's network namespace.
fn block_on<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(Error::Socket)?;
    rt.block_on(async move {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        let task = tokio::spawn(connection);
        let result = f(handle).await;
        task.abort();
        result
    })
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

/// Whether a network device called `name` exists on the host.
pub fn exists(name: &str) -> Result<bool> {
    block_on(|h| async move { Ok(index_of(&h, name).await?.is_some()) })
}

/// Creates bridge `name` with address `gateway/prefix` and brings it up; an existing bridge is kept (its
/// address added if missing), so this also restores a network's bridge after a reboot.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    block_on(|h| async move {
        let index = match index_of(&h, name).await? {
            Some(i) => i,
            None => {
                h.link()
                    .add(LinkBridge::new(name).build())
                    .execute()
                    .await
                    .map_err(nl(format!("create bridge {name}")))?;
                index_of(&h, name).await?.ok_or_else(|| Error::Netlink {
                    what: format!("create bridge {name}"),
                    message: "the bridge vanished right after its creation".into(),
                })?
            }
        };
        match h.address().add(index, IpAddr::V4(gateway), prefix).execute().await {
            Err(e) if errno(&e) == Some(EEXIST) => {}
            r => r.map_err(nl(format!("add address {gateway}/{prefix} to {name}")))?,
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bring {name} up")))
    })
}

/// Deletes network device `name` (a bridge, or the host end of a veth pair, which takes its peer with it).
/// A device that does not exist is not an error.
pub fn delete(name: &str) -> Result<()> {
    block_on(|h| async move {
        let Some(index) = index_of(&h, name).await? else { return Ok(()) };
        match h.link().del(index).execute().await {
            Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(()),
            r => r.map_err(nl(format!("delete network device {name}"))),
        }
    })
}

/// Every IPv4 route on the host (all tables) except default routes, with the name of its device.
pub fn host_routes() -> Result<Vec<(Subnet, String)>> {
    block_on(|h| async move {
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

/// One container interface to create: a veth pair between `bridge` and the namespace at `netns`.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub bridge: &'a str,
    /// Name of the host end (≤ 15 characters).
    pub host_veth: &'a str,
    /// Temporary name of the container end until it is renamed inside the namespace (≤ 15 characters).
    pub peer_veth: &'a str,
    pub netns: &'a Path,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    /// Add a default route via this gateway (the container's first network that has a way out).
    pub default_gateway: Option<Ipv4Addr>,
}

/// Creates the veth pair, plugs the host end into the bridge and configures the container end inside the
/// namespace; returns the interface name it got there (`eth0`, `eth1`, …). On failure nothing is left behind.
pub fn attach(a: &Attachment<'_>) -> Result<String> {
    let netns =
        File::open(a.netns).map_err(|e| Error::Netns { path: a.netns.to_path_buf(), message: e.to_string() })?;
    let result = plug(a, &netns).and_then(|()| configure_inside(a, netns));
    if result.is_err() {
        let _ = delete(a.host_veth);
    }
    result
}

fn plug(a: &Attachment<'_>, netns: &File) -> Result<()> {
    let fd = netns.as_raw_fd();
    block_on(|h| async move {
        let bridge = index_of(&h, a.bridge).await?.ok_or_else(|| Error::Netlink {
            what: format!("attach to bridge {}", a.bridge),
            message: "the bridge does not exist".into(),
        })?;
        h.link()
            .add(LinkVeth::new(a.host_veth, a.peer_veth).build())
            .execute()
            .await
            .map_err(nl(format!("create veth pair {}", a.host_veth)))?;
        let host = index_of(&h, a.host_veth).await?;
        let peer = index_of(&h, a.peer_veth).await?;
        let (Some(host), Some(peer)) = (host, peer) else {
            return Err(Error::Netlink {
                what: format!("create veth pair {}", a.host_veth),
                message: "the pair vanished right after its creation".into(),
            });
        };
        h.link()
            .set(LinkUnspec::new_with_index(host).controller(bridge).up().build())
            .execute()
            .await
            .map_err(nl(format!("attach {} to {}", a.host_veth, a.bridge)))?;
        h.link()
            .set(LinkUnspec::new_with_index(peer).setns_by_fd(fd).build())
            .execute()
            .await
            .map_err(nl(format!("move {} into the container's network namespace", a.peer_veth)))
    })
}

fn configure_inside(a: &Attachment<'_>, netns: File) -> Result<String> {
    let path = a.netns.to_path_buf();
    let peer = a.peer_veth.to_owned();
    let (address, prefix, mac, gateway) = (a.address, a.prefix, a.mac, a.default_gateway);
    let thread = std::thread::Builder::new()
        .name("netns-config".into())
        .spawn(move || -> Result<String> {
            // Only this thread enters the namespace; it ends right after, so nothing else is affected.
            setns(&netns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::Netns { path: path.clone(), message: e.to_string() })?;
            block_on(|h| async move {
                let mut taken = Vec::new();
                let mut links = h.link().get().execute();
                while let Some(m) = links.try_next().await.map_err(nl("list the container's network devices"))? {
                    taken.extend(name_of(&m).map(str::to_owned));
                }
                let ifname =
                    (0..).map(|n| format!("eth{n}")).find(|n| !taken.contains(n)).unwrap_or_else(|| "eth0".into());
                if let Some(lo) = index_of(&h, "lo").await? {
                    h.link()
                        .set(LinkUnspec::new_with_index(lo).up().build())
                        .execute()
                        .await
                        .map_err(nl("bring lo up in the container"))?;
                }
                let index = index_of(&h, &peer).await?.ok_or_else(|| Error::Netlink {
                    what: format!("find {peer} in the container's network namespace"),
                    message: "it did not arrive".into(),
                })?;
                h.link()
                    .set(LinkUnspec::new_with_index(index).name(ifname.clone()).address(mac.to_vec()).build())
                    .execute()
                    .await
                    .map_err(nl(format!("rename {peer} to {ifname}")))?;
                h.address()
                    .add(index, IpAddr::V4(address), prefix)
                    .execute()
                    .await
                    .map_err(nl(format!("add address {address}/{prefix} to {ifname}")))?;
                h.link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(nl(format!("bring {ifname} up")))?;
                if let Some(gw) = gateway {
                    let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(index).build();
                    match h.route().add(route).execute().await {
                        Err(e) if errno(&e) == Some(EEXIST) => {}
                        r => r.map_err(nl(format!("add the default route via {gw}")))?,
                    }
                }
                Ok(ifname)
            })
        })
        .map_err(|e| Error::Netns { path: a.netns.to_path_buf(), message: format!("cannot start a thread: {e}") })?;
    thread.join().unwrap_or_else(|_| {
        Err(Error::Netns { path: a.netns.to_path_buf(), message: "the configuring thread panicked".into() })
    })
}

/// The identity of a network namespace file: (device, inode) of the nsfs inode it refers to. A recorded
/// endpoint whose namespace path no longer has this identity belongs to a container that is gone.
pub fn netns_identity(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::stat::stat(path).ok()?;
    Some((st.st_dev, st.st_ino))
}
