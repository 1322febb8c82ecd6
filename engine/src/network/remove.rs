//! `network rm` and `network prune`: a user-defined network without containers loses its bridge, its firewall elements
//! and its record; `prune` also gives an unused built-in `bridge`'s device, elements and subnet back (the built-in
//! network keeps them otherwise, as docker's `docker0`). Endpoints whose namespace is gone do not count as containers
//! (see `NetworkStore::reap_stale`). The built-in networks cannot be removed.
//!
//! Bridges whose engine root is gone (deleted with `rm -rf` while networks existed) are swept by
//! [`sweep_orphaned_bridges`]: each bridge carries the path of its network's record in its alias, and a bridge
//! whose record no longer exists loses its device and firewall elements. That runs under the host lock before
//! a subnet is chosen or checked (a leaked bridge would hold its subnet forever) and on `network prune`. An
//! engine root visible only inside a private mount namespace would look deleted from outside it: roots are
//! expected on the host's filesystem. `network prune` also removes the nftables elements of bridges that no
//! longer exist at all ([`sweep_host`]; e.g. deleted by hand with `ip link del`).

use std::ffi::OsStr;
use std::net::Ipv4Addr;

use super::ipam::Subnet;
use super::{firewall, host_lock, link, Error, HostLock, Network, NetworkStore, Result, DRIVER_BRIDGE};

/// Deletes the bridges and firewall elements of networks whose record is gone; returns the bridges deleted.
/// Only aliases shaped like one of our records (`…/networks/<id>.json`) are considered.
pub fn sweep_orphaned_bridges(_host: &HostLock) -> Result<Vec<String>> {
    let netlink = link::Netlink::open()?;
    let mut swept = Vec::new();
    for b in netlink.owned_bridges()? {
        let shaped = b.owner.is_absolute()
            && b.owner.extension() == Some(OsStr::new("json"))
            && b.owner.parent().and_then(|p| p.file_name()) == Some(OsStr::new("networks"));
        if !shaped || b.owner.exists() {
            continue;
        }
        netlink.delete(&b.name)?;
        let subnet = b.subnet.unwrap_or_else(|| Subnet::containing(Ipv4Addr::UNSPECIFIED, 32));
        firewall::disable(&firewall::Rules { bridge: &b.name, subnet, internal: true, masquerade: true })?;
        tracing::info!(bridge = %b.name, record = %b.owner.display(), "removed a bridge whose engine root is gone");
        swept.push(b.name);
    }
    Ok(swept)
}

/// [`sweep_orphaned_bridges`], then the firewall elements of bridges that no longer exist at all (see
/// [`firewall::sweep`]): what `network prune` runs.
pub fn sweep_host(host: &HostLock) -> Result<()> {
    sweep_orphaned_bridges(host)?;
    let existing: Vec<(String, Option<Subnet>)> =
        link::Netlink::open()?.owned_bridges()?.into_iter().map(|b| (b.name, b.subnet)).collect();
    for element in firewall::sweep(&existing)? {
        tracing::info!(%element, "removed a firewall element of a deleted bridge");
    }
    Ok(())
}

impl NetworkStore {
    /// Removes a network by name, ID or unique ID prefix; returns its record.
    pub fn remove(&self, name: &str) -> Result<Network> {
        let lock = self.root.lock()?;
        let mut n = self.resolve(name)?;
        if n.builtin {
            return Err(Error::Predefined(n.name));
        }
        let stale = self.reap_stale(&mut n);
        if !n.endpoints.is_empty() {
            return Err(Error::ActiveEndpoints { name: n.name, id: n.id });
        }
        let host = host_lock()?;
        self.deactivate(&n, &lock, &host)?;
        drop(host);
        self.delete_record(&n, &lock)?;
        self.refresh_hosts(&stale, &lock)?;
        Ok(n)
    }

    /// Removes every user-defined network no container is connected to; returns their names. An unused
    /// built-in `bridge` gives its bridge device, firewall elements and subnet back (it is not removed).
    /// Bridges left by deleted engine roots are swept too (not listed: they belong to no network here).
    pub fn prune(&self) -> Result<Vec<String>> {
        sweep_host(&host_lock()?)?;
        let mut removed = Vec::new();
        for n in self.list()? {
            if n.builtin {
                if n.driver == DRIVER_BRIDGE && n.subnet.is_some() {
                    self.release_idle_builtin(&n.id)?;
                }
                continue;
            }
            match self.remove(&n.id) {
                Ok(n) => removed.push(n.name),
                // In use (live endpoints), or removed by someone else meanwhile.
                Err(Error::ActiveEndpoints { .. }) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Gives back the device, firewall elements and subnet of the built-in bridge network `id` if no live
    /// container is on it.
    fn release_idle_builtin(&self, id: &str) -> Result<()> {
        let lock = self.root.lock()?;
        let mut n = self.resolve(id)?;
        let stale = self.reap_stale(&mut n);
        if n.endpoints.is_empty() && n.subnet.is_some() {
            let host = host_lock()?;
            self.deactivate(&n, &lock, &host)?;
            n.subnet = None;
            n.gateway = None;
        }
        if !stale.is_empty() || n.subnet.is_none() {
            self.save(&n, &lock)?;
        }
        Ok(())
    }
}
