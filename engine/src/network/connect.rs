//! `network connect` / `network disconnect`, and the calls the container runtime makes when a container starts
//! ([`NetworkStore::connect`]) and stops or is removed ([`NetworkStore::disconnect_all`]).
//!
//! Connect: under the root lock, reap endpoints whose namespace is gone, make sure the network is active (subnet,
//! bridge, firewall), allocate the address (`--ip` or the lowest free one), create the veth pair and configure the
//! container end (see [`super::link::Netlink::attach`]), record the endpoint, then rewrite the hosts files of every
//! container on the network (networks with name resolution only). The first network of a container that has a way
//! out (not `--internal`) carries its default route. Disconnect undoes it: deleting the host end of the pair
//! deletes both ends (when the container's namespace is gone, the kernel has done that), the address is free
//! again. Bridges stay: a user network's until `network rm`, the built-in `bridge`'s until `network prune`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use super::link::{self, Attachment, Netlink};
use super::{host_lock, ipam, random_id, EndpointRecord, Error, Network, NetworkStore, Result, DRIVER_BRIDGE};
use crate::root::RootLock;

/// What the runtime (or `network connect`) asks for.
#[derive(Debug, Clone)]
pub struct ContainerEndpointRequest {
    pub container_id: String,
    pub container_name: String,
    /// `--network-alias` / `--alias`: more names this container answers to on this network.
    pub aliases: Vec<String>,
    /// `--ip`: a fixed address (user-defined networks only).
    pub ip: Option<Ipv4Addr>,
    /// The container's network namespace: `/proc/<pid>/ns/net` or a bind-mounted namespace file.
    pub netns_path: PathBuf,
}

/// What the container got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// `02:42:…`.
    pub mac: String,
    /// The interface inside the container (`eth0`, `eth1`, …).
    pub ifname: String,
    /// The container's default route goes through this network.
    pub default_route: bool,
}

impl NetworkStore {
    /// Connects a container's network namespace to `network` (name or ID). Do not call with the root lock held.
    pub fn connect(&self, network: &str, req: &ContainerEndpointRequest) -> Result<Endpoint> {
        let started = Instant::now();
        let lock = self.root.lock()?;
        let locked_us = started.elapsed().as_micros();
        let mut n = self.resolve(network)?;
        if n.driver != DRIVER_BRIDGE {
            return Err(Error::NotConnectable(n.name, n.driver));
        }
        if req.ip.is_some() && n.builtin {
            return Err(Error::IpOnDefault);
        }
        for alias in &req.aliases {
            if !super::valid_name(alias) {
                return Err(Error::InvalidInput {
                    what: "alias",
                    value: alias.clone(),
                    hint: "use letters, digits, '_', '.' and '-', starting with a letter or digit".into(),
                });
            }
        }
        let stale = self.reap_stale(&mut n);
        let taken_name = n.endpoints.values().any(|e| e.container_name == req.container_name);
        if n.endpoints.contains_key(&req.container_id) || taken_name {
            return Err(Error::AlreadyConnected { container: req.container_name.clone(), network: n.name });
        }
        let identity = link::netns_identity(&req.netns_path).ok_or_else(|| link::Error::Netns {
            path: req.netns_path.clone(),
            message: "no such network namespace".into(),
        })?;
        let netlink = Netlink::open()?;
        let activating = Instant::now();
        {
            let host = host_lock()?;
            self.activate(&mut n, &lock, &host, &netlink)?;
        }
        let activate_us = activating.elapsed().as_micros();
        let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) else {
            return Err(Error::Corrupt {
                path: self.record_path(&n.id),
                message: "a bridge network without subnet".into(),
            });
        };
        let mut used: Vec<Ipv4Addr> = n.endpoints.values().map(|e| e.address).collect();
        used.push(gateway);
        let address = match req.ip {
            Some(ip) => {
                ipam::check_requested(subnet, ip, &used, &n.name)?;
                ip
            }
            None => ipam::next_free(subnet, &used)?,
        };
        let has_default_route =
            self.list()?.iter().filter_map(|o| o.endpoints.get(&req.container_id)).any(|e| e.default_route);
        let default_route = !n.internal && !has_default_route;
        let endpoint_id = random_id();
        let host_veth = format!("ddv{}", &endpoint_id[..12]);
        let mac = ipam::mac_for(address);
        let attaching = Instant::now();
        let attached = netlink.attach(&Attachment {
            bridge: &n.bridge_name(),
            host_veth: &host_veth,
            netns: &req.netns_path,
            address,
            prefix: subnet.prefix(),
            mac,
            default_gateway: default_route.then_some(gateway),
        });
        let ifname = match attached {
            Ok(ifname) => ifname,
            Err(e) => {
                let _ = self.finish_change(&mut n, &stale, &lock);
                return Err(e.into());
            }
        };
        let attach_us = attaching.elapsed().as_micros();
        let record = EndpointRecord {
            container_name: req.container_name.clone(),
            endpoint_id: endpoint_id.clone(),
            address,
            mac: ipam::format_mac(&mac),
            aliases: req.aliases.clone(),
            ifname: ifname.clone(),
            host_veth: host_veth.clone(),
            netns_path: req.netns_path.clone(),
            netns_identity: identity,
            default_route,
        };
        n.endpoints.insert(req.container_id.clone(), record.clone());
        if let Err(e) = self.save(&n, &lock) {
            let _ = netlink.delete(&host_veth);
            return Err(e);
        }
        if n.resolves_names() {
            let mut affected: Vec<String> = n.endpoints.keys().cloned().collect();
            affected.extend(stale);
            self.refresh_hosts(&affected, &lock)?;
        }
        tracing::debug!(
            network = %n.name,
            container.id = %req.container_id,
            lock_wait_us = locked_us,
            activate_us,
            attach_us,
            elapsed_us = started.elapsed().as_micros(),
            "connected"
        );
        Ok(Endpoint {
            network_id: n.id.clone(),
            network_name: n.name.clone(),
            endpoint_id,
            ip: address,
            prefix: subnet.prefix(),
            gateway,
            mac: record.mac,
            ifname,
            default_route,
        })
    }

    /// Disconnects `container` (ID, unique ID prefix or name, as recorded on the network) from `network`.
    pub fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        let lock = self.root.lock()?;
        let mut n = self.resolve(network)?;
        if n.driver != DRIVER_BRIDGE {
            return Err(Error::NotConnectable(n.name, n.driver));
        }
        self.disconnect_locked(&mut n, container, &lock)
    }

    /// Disconnects a container from every network it is on (container stop and rm). Not connected anywhere
    /// is fine.
    ///
    /// When the container's namespace is gone (its process exited: the usual case), nothing is deleted: the
    /// kernel destroys the veth pairs with the namespace, asynchronously and within milliseconds. Deleting them
    /// here instead would wait for the kernel's namespace cleanup (~10–15 ms) on the container's exit path.
    pub fn disconnect_all(&self, container_id: &str) -> Result<()> {
        let started = Instant::now();
        let lock = self.root.lock()?;
        let mut first_error = None;
        for mut n in self.list()? {
            if n.endpoints.contains_key(container_id) {
                if let Err(e) = self.disconnect_locked(&mut n, container_id, &lock) {
                    first_error.get_or_insert(e);
                }
            }
        }
        tracing::debug!(container.id = %container_id, elapsed_us = started.elapsed().as_micros(), "left every network");
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes the veth pairs still plugged into the bridges of `networks` (IDs) that no endpoint records: those
    /// of containers whose namespace is gone and that the kernel has not destroyed yet (it does so within
    /// milliseconds of the container's exit; see [`Self::disconnect_all`]). `rm` calls it, so a removed container
    /// leaves no veth behind. Under the root lock: no connect is then between making its pair and recording it.
    pub fn sweep_departed(&self, networks: &[String]) -> Result<()> {
        let lock = self.root.lock()?;
        let all = self.list()?;
        let ours: Vec<&Network> = all
            .iter()
            .filter(|n| networks.contains(&n.id) && n.driver == DRIVER_BRIDGE && n.subnet.is_some())
            .collect();
        if ours.is_empty() {
            return Ok(());
        }
        let bridges: Vec<String> = ours.iter().map(|n| n.bridge_name()).collect();
        let recorded: Vec<&str> =
            ours.iter().flat_map(|n| n.endpoints.values().map(|e| e.host_veth.as_str())).collect();
        let netlink = Netlink::open()?;
        for (port, _) in netlink.ports_of(&bridges)? {
            if port.starts_with("ddv") && !recorded.contains(&port.as_str()) {
                netlink.delete(&port)?;
            }
        }
        drop(lock);
        Ok(())
    }

    fn disconnect_locked(&self, n: &mut Network, container: &str, lock: &RootLock) -> Result<()> {
        let stale = self.reap_stale(n);
        let id = match find_endpoint(n, container) {
            Some(id) => id,
            // Its namespace is gone already: reaping it was the disconnect.
            None if stale.iter().any(|s| s == container) => {
                self.finish_change(n, &stale, lock)?;
                return Ok(());
            }
            None => return Err(Error::NotConnected { container: container.to_owned(), network: n.name.clone() }),
        };
        if let Some(e) = n.endpoints.get(&id) {
            // The namespace lives on (`network disconnect` of a running container): the pair must go now.
            link::delete(&e.host_veth)?;
        }
        n.endpoints.remove(&id);
        let mut affected = stale;
        affected.push(id);
        self.finish_change(n, &affected, lock)
    }

    /// Saves a network after endpoints left and rewrites the hosts files of the containers that were and are on
    /// it (networks with name resolution only). The built-in bridge keeps its bridge and subnet (docker0's
    /// behaviour): only `network prune` gives them back.
    fn finish_change(&self, n: &mut Network, left: &[String], lock: &RootLock) -> Result<()> {
        self.save(n, lock)?;
        if !n.resolves_names() {
            return Ok(());
        }
        let mut affected: Vec<String> = n.endpoints.keys().cloned().collect();
        affected.extend(left.iter().cloned());
        self.refresh_hosts(&affected, lock)
    }
}

/// The endpoint key for a container given by ID, name or unique ID prefix.
fn find_endpoint(n: &Network, container: &str) -> Option<String> {
    if n.endpoints.contains_key(container) {
        return Some(container.to_owned());
    }
    if let Some((id, _)) = n.endpoints.iter().find(|(_, e)| e.container_name == container) {
        return Some(id.clone());
    }
    let mut matches = n.endpoints.keys().filter(|id| !container.is_empty() && id.starts_with(container));
    match (matches.next(), matches.next()) {
        (Some(id), None) => Some(id.clone()),
        _ => None,
    }
}
