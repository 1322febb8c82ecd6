//! IP address management for bridge networks: IPv4 subnets, the default pool new networks take their subnet
//! from, and the allocation of container addresses inside one network.
//!
//! The pool is `10.213.0.0/16` split into `/24`s unless `DRYDOCK_NETWORK_POOL` (a CIDR) and
//! `DRYDOCK_NETWORK_POOL_SIZE` (a prefix length) say otherwise. `10.213/16` is chosen because it is rarely used
//! by home routers, VPNs, docker (`172.17–31/16`, `192.168/16`) or podman (`10.88/16`, `10.89/16`). A candidate
//! is skipped when it overlaps another network of this engine root or any route on the host (other than the
//! default route) — which also covers the bridges of other Drydock roots on the same machine, since an active
//! bridge has a connected route. The gateway is the subnet's first address; containers get the next free ones.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The default pool and the size of the subnets cut from it.
pub const DEFAULT_POOL: &str = "10.213.0.0/16";
pub const DEFAULT_POOL_SIZE: u8 = 24;
/// Environment variables overriding [`DEFAULT_POOL`] and [`DEFAULT_POOL_SIZE`].
pub const POOL_ENV: &str = "DRYDOCK_NETWORK_POOL";
pub const POOL_SIZE_ENV: &str = "DRYDOCK_NETWORK_POOL_SIZE";

/// Errors of address management.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid subnet `{0}`: use an IPv4 CIDR such as 10.214.0.0/24")]
    InvalidSubnet(String),
    #[error("invalid subnet `{given}`: the address has host bits set (use {suggested})")]
    HostBits { given: String, suggested: String },
    #[error("invalid subnet `{0}`: the prefix must be between /8 and /30 to leave room for containers")]
    PrefixRange(String),
    #[error("invalid IP address `{0}`: use a dotted IPv4 address such as 10.214.0.5")]
    InvalidAddress(String),
    #[error("address {address} is not in subnet {subnet}: choose one inside it")]
    OutsideSubnet { address: Ipv4Addr, subnet: Subnet },
    #[error("address {0} is reserved (network, broadcast or gateway address): choose another")]
    Reserved(Ipv4Addr),
    #[error("address {address} is already in use on network {network}: choose another or leave --ip out")]
    InUse { address: Ipv4Addr, network: String },
    #[error("no free address left in subnet {0}: remove containers from the network or create a larger one")]
    Exhausted(Subnet),
    #[error(
        "no free subnet left in the pool {pool} (every /{size} overlaps a route or another network): \
         remove unused networks, give --subnet, or set {POOL_ENV}"
    )]
    PoolExhausted { pool: Subnet, size: u8 },
    #[error("invalid {POOL_SIZE_ENV} `{0}`: use a prefix length between the pool's and 30")]
    InvalidPoolSize(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An IPv4 subnet in CIDR form whose address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// A subnet from an address and prefix, masking off host bits.
    pub fn containing(address: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet { network: Ipv4Addr::from(u32::from(address) & mask(prefix)), prefix }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The `n`th address of the subnet (0 = the network address), if it is inside.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = self.size();
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.network).wrapping_add(n)))
    }

    /// The number of addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & mask(self.prefix) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The first address, the gateway by convention.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(1))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    /// Parses `a.b.c.d/n`; an address with host bits set is refused with the subnet it probably meant.
    fn from_str(s: &str) -> Result<Subnet> {
        let bad = || Error::InvalidSubnet(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let subnet = Subnet::containing(addr, prefix);
        if subnet.network != addr {
            return Err(Error::HostBits { given: s.to_owned(), suggested: subnet.to_string() });
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;
    fn try_from(s: String) -> Result<Subnet> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// Parses a subnet given by a user for a network (`--subnet`): a CIDR with room for a gateway and containers.
pub fn parse_user_subnet(s: &str) -> Result<Subnet> {
    let subnet: Subnet = s.parse()?;
    if !(8..=30).contains(&subnet.prefix) {
        return Err(Error::PrefixRange(s.to_owned()));
    }
    Ok(subnet)
}

/// Parses an IPv4 address given on the command line.
pub fn parse_address(s: &str) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| Error::InvalidAddress(s.to_owned()))
}

/// The pool new networks take subnets from: ([`POOL_ENV`] or the default, [`POOL_SIZE_ENV`] or the default).
pub fn pool_from_env() -> Result<(Subnet, u8)> {
    let pool = match std::env::var(POOL_ENV) {
        Ok(s) if !s.is_empty() => s.parse::<Subnet>()?,
        _ => DEFAULT_POOL.parse::<Subnet>()?,
    };
    let size = match std::env::var(POOL_SIZE_ENV) {
        Ok(s) if !s.is_empty() => {
            let size: u8 = s.trim_start_matches('/').parse().map_err(|_| Error::InvalidPoolSize(s.clone()))?;
            if size < pool.prefix || size > 30 {
                return Err(Error::InvalidPoolSize(s));
            }
            size
        }
        _ => DEFAULT_POOL_SIZE.max(pool.prefix),
    };
    Ok((pool, size))
}

/// The first `/size` subnet of `pool` that overlaps none of `taken`.
pub fn choose_subnet(pool: Subnet, size: u8, taken: &[Subnet]) -> Result<Subnet> {
    let count = 1u64 << (u32::from(size) - u32::from(pool.prefix));
    let step = 1u64 << (32 - u32::from(size));
    for i in 0..count {
        let start = u64::from(u32::from(pool.network)) + i * step;
        let candidate = Subnet { network: Ipv4Addr::from(start as u32), prefix: size };
        if !taken.iter().any(|t| t.overlaps(&candidate)) {
            return Ok(candidate);
        }
    }
    Err(Error::PoolExhausted { pool, size })
}

/// Checks a requested address (`--ip`) against the subnet and the addresses already used (gateway included).
pub fn check_requested(subnet: Subnet, address: Ipv4Addr, used: &[Ipv4Addr], network: &str) -> Result<()> {
    if !subnet.contains(address) {
        return Err(Error::OutsideSubnet { address, subnet });
    }
    if address == subnet.network() || address == subnet.broadcast() {
        return Err(Error::Reserved(address));
    }
    if used.contains(&address) {
        return Err(Error::InUse { address, network: network.to_owned() });
    }
    Ok(())
}

/// The lowest free host address of `subnet` that is not in `used` (which holds the gateway).
pub fn next_free(subnet: Subnet, used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
    let last = subnet.size().saturating_sub(1);
    (1..last).filter_map(|n| subnet.nth(n as u32)).find(|a| !used.contains(a)).ok_or(Error::Exhausted(subnet))
}

/// Docker's MAC address for a container address: `02:42:` followed by the four address bytes.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn subnets_parse_and_refuse_host_bits() {
        assert_eq!(subnet("10.1.2.0/24").to_string(), "10.1.2.0/24");
        assert_eq!(
            "10.1.2.3/24".parse::<Subnet>(),
            Err(Error::HostBits { given: "10.1.2.3/24".into(), suggested: "10.1.2.0/24".into() })
        );
        assert!(matches!("10.1.2.0".parse::<Subnet>(), Err(Error::InvalidSubnet(_))));
        assert!(matches!("10.1.2.0/33".parse::<Subnet>(), Err(Error::InvalidSubnet(_))));
        assert!(matches!(parse_user_subnet("10.1.2.0/31"), Err(Error::PrefixRange(_))));
        assert_eq!(subnet("10.1.2.0/24").broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        assert!(subnet("10.0.0.0/8").overlaps(&subnet("10.213.4.0/24")));
        assert!(!subnet("10.213.3.0/24").overlaps(&subnet("10.213.4.0/24")));
    }

    #[test]
    fn pool_skips_taken_subnets() -> Result<()> {
        let pool = subnet("10.213.0.0/16");
        assert_eq!(choose_subnet(pool, 24, &[])?.to_string(), "10.213.0.0/24");
        let taken = [subnet("10.213.0.0/24"), subnet("10.213.1.128/25")];
        assert_eq!(choose_subnet(pool, 24, &taken)?.to_string(), "10.213.2.0/24");
        assert!(matches!(choose_subnet(pool, 24, &[subnet("10.0.0.0/8")]), Err(Error::PoolExhausted { .. })));
        Ok(())
    }

    #[test]
    fn addresses_allocate_lowest_first_and_check_requests() -> Result<()> {
        let s = subnet("10.213.7.0/24");
        let gw = s.first_host();
        assert_eq!(next_free(s, &[gw])?, Ipv4Addr::new(10, 213, 7, 2));
        assert_eq!(next_free(s, &[gw, Ipv4Addr::new(10, 213, 7, 2)])?, Ipv4Addr::new(10, 213, 7, 3));
        let tiny = subnet("10.213.8.0/30");
        assert!(matches!(
            next_free(tiny, &[tiny.first_host(), Ipv4Addr::new(10, 213, 8, 2)]),
            Err(Error::Exhausted(_))
        ));
        assert!(check_requested(s, Ipv4Addr::new(10, 213, 7, 9), &[gw], "n").is_ok());
        assert!(matches!(check_requested(s, gw, &[gw], "n"), Err(Error::InUse { .. })));
        assert!(matches!(check_requested(s, Ipv4Addr::new(10, 213, 7, 255), &[gw], "n"), Err(Error::Reserved(_))));
        assert!(matches!(check_requested(s, Ipv4Addr::new(10, 9, 7, 9), &[gw], "n"), Err(Error::OutsideSubnet { .. })));
        Ok(())
    }

    #[test]
    fn macs_follow_docker() {
        assert_eq!(format_mac(&mac_for(Ipv4Addr::new(10, 213, 0, 2))), "02:42:0a:d5:00:02");
    }
}
