//! `network create`: validate the name and options, choose or check the subnet, bring the bridge up with the
//! gateway address, add the firewall elements, then record the network. Nothing is recorded if a step fails,
//! and nothing is left on the host.

use std::collections::BTreeMap;

use super::ipam::{self, Subnet};
use super::{
    firewall, host_lock, link, random_id, valid_name, Error, Network, NetworkStore, Result, DRIVER_BRIDGE, DRIVER_HOST,
    DRIVER_NULL, OPT_MASQUERADE,
};

/// What `network create` takes from the command line.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    /// `bridge` (the default); `host` and `null` exist only as the built-in networks.
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`-o`); `com.docker.network.bridge.enable_ip_masquerade=false` turns NAT off.
    pub options: BTreeMap<String, String>,
}

impl NetworkStore {
    /// Creates a bridge network; returns its record.
    pub fn create(&self, opts: &CreateOptions) -> Result<Network> {
        if !valid_name(&opts.name) {
            return Err(Error::InvalidName(opts.name.clone()));
        }
        let driver = opts.driver.clone().unwrap_or_else(|| DRIVER_BRIDGE.to_owned());
        match driver.as_str() {
            DRIVER_BRIDGE => {}
            DRIVER_HOST | DRIVER_NULL => {
                return Err(Error::InvalidInput {
                    what: "driver",
                    value: driver.clone(),
                    hint: format!("only one instance of \"{driver}\" network is allowed (use the built-in one)"),
                })
            }
            other => return Err(Error::UnknownDriver(other.to_owned())),
        }
        for (k, v) in &opts.options {
            if k == OPT_MASQUERADE && !matches!(v.as_str(), "true" | "false") {
                return Err(Error::InvalidInput {
                    what: "option",
                    value: format!("{k}={v}"),
                    hint: "use true or false".into(),
                });
            }
        }
        let user_subnet = opts.subnet.as_deref().map(ipam::parse_user_subnet).transpose()?;
        let user_gateway = opts.gateway.as_deref().map(ipam::parse_address).transpose()?;
        if let (Some(g), None) = (user_gateway, user_subnet) {
            return Err(Error::InvalidInput {
                what: "--gateway",
                value: g.to_string(),
                hint: "a gateway needs a --subnet to belong to".into(),
            });
        }
        if let (Some(g), Some(s)) = (user_gateway, user_subnet) {
            ipam::check_requested(s, g, &[], &opts.name)?;
        }
        let mut options = opts.options.clone();
        options.entry(OPT_MASQUERADE.to_owned()).or_insert_with(|| firewall::masquerade_default().to_string());

        let lock = self.root.lock()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.name == opts.name) {
            return Err(Error::NameTaken(opts.name.clone()));
        }
        let host = host_lock()?;
        let subnet = match user_subnet {
            Some(s) => {
                check_user_subnet(s, &existing, &host)?;
                s
            }
            None => super::choose_pool_subnet(&existing, &host)?,
        };
        let mut network = Network {
            id: random_id(),
            name: opts.name.clone(),
            driver,
            created: crate::image::now_rfc3339(),
            subnet: Some(subnet),
            gateway: Some(user_gateway.unwrap_or_else(|| subnet.first_host())),
            user_ipam: user_subnet.is_some(),
            internal: opts.internal,
            labels: opts.labels.clone(),
            options,
            builtin: false,
            endpoints: BTreeMap::new(),
        };
        self.activate(&mut network, &lock, &host, &link::Netlink::open()?)?;
        if let Err(e) = self.save(&network, &lock) {
            let _ = self.deactivate(&network, &lock, &host);
            return Err(e);
        }
        Ok(network)
    }
}

/// A `--subnet` may not overlap another network of this root, nor the bridge of another Drydock root.
fn check_user_subnet(subnet: Subnet, existing: &[Network], host: &super::HostLock) -> Result<()> {
    super::remove::sweep_orphaned_bridges(host)?;
    if let Some(other) = existing.iter().find(|n| n.subnet.is_some_and(|s| s.overlaps(&subnet))) {
        return Err(Error::Overlap { subnet, other: format!("network {}", other.name) });
    }
    for (route, dev) in link::host_routes()? {
        if dev.starts_with(link::BRIDGE_PREFIX) && route.overlaps(&subnet) {
            return Err(Error::Overlap { subnet, other: format!("{route} on {dev}") });
        }
    }
    Ok(())
}
