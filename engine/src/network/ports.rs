//! Published ports: docker's `-p`/`--publish` syntax (`[IP:][HOST[-HOST]:]CTR[-CTR][/tcp|udp]`, IPv6 host
//! addresses in brackets), `-P` (every exposed port to a random host port), and the text `engine port` and the
//! `PORTS` column of `ps` print. What a binding turns into at run time is the userland proxy ([`super::proxy`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// Errors in port specifications.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid port specification \"{spec}\": {hint}")]
    Invalid { spec: String, hint: String },
    #[error("No public port '{port}' published for {container}")]
    NotPublished { port: String, container: String },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One container port to publish, before the proxy binds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// `None`: every address (`0.0.0.0`).
    pub host_ip: Option<IpAddr>,
    /// Host ports to try, first free wins; `(0, 0)` is a random port chosen by the kernel.
    pub host_ports: (u16, u16),
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A port the proxy actually bound: what `engine port` prints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

impl PublishedPort {
    /// `0.0.0.0:8080`, `[::1]:8080`.
    pub fn host_address(&self) -> String {
        match self.host_ip {
            IpAddr::V4(a) => format!("{a}:{}", self.host_port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.host_port),
        }
    }
}

/// Parses one `-p` value into one binding per container port.
pub fn parse_publish(spec: &str) -> Result<Vec<PortBinding>> {
    let bad = |hint: &str| Error::Invalid { spec: spec.to_owned(), hint: hint.to_owned() };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, "tcp")) | Some((r, "")) => (r, Protocol::Tcp),
        Some((r, "udp")) => (r, Protocol::Udp),
        Some((_, p)) => return Err(bad(&format!("unsupported protocol `{p}`: use tcp or udp"))),
        None => (spec, Protocol::Tcp),
    };
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after.split_once(']').ok_or_else(|| bad("unclosed [ in the host address"))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad("the host address in brackets is not an IP address"))?;
        let tail = tail.strip_prefix(':').ok_or_else(|| bad("expected `:` after the bracketed host address"))?;
        (Some(ip), tail)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip_part, host_part, ctr_part) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, "", *c),
        (None, [h, c]) => (None, *h, *c),
        (None, [ip, h, c]) => (Some(*ip), *h, *c),
        (Some(_), [h, c]) => (None, *h, *c),
        _ => return Err(bad("use [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")),
    };
    let host_ip = match ip_part {
        Some("") | None => host_ip,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| bad(&format!("`{ip}` is not an IP address")))?),
    };
    if ctr_part.is_empty() {
        return Err(bad("no container port given"));
    }
    let ctr = parse_range(ctr_part).ok_or_else(|| bad(&format!("invalid container port `{ctr_part}`")))?;
    let host = if host_part.is_empty() {
        None
    } else {
        Some(parse_range(host_part).ok_or_else(|| bad(&format!("invalid host port `{host_part}`")))?)
    };
    let ctr_len = ctr.1 - ctr.0;
    let mut out = Vec::new();
    for (i, port) in (ctr.0..=ctr.1).enumerate() {
        let host_ports = match host {
            None => (0, 0),
            // A host range for one container port: the first free port of the range.
            Some(h) if ctr_len == 0 => h,
            Some(h) if h.1 - h.0 == ctr_len => (h.0 + i as u16, h.0 + i as u16),
            Some(_) => return Err(bad("the host and container port ranges differ in size")),
        };
        out.push(PortBinding { host_ip, host_ports, container_port: port, protocol });
    }
    Ok(out)
}

/// `N` or `N-M` with 1 ≤ N ≤ M ≤ 65535.
fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    (a >= 1 && a <= b).then_some((a, b))
}

/// Parses an exposed port as images record it (`80/tcp`, `53/udp`, `8080`).
pub fn parse_exposed(s: &str) -> Result<(u16, Protocol)> {
    let bindings = parse_publish(s)?;
    match bindings.as_slice() {
        [b] if b.host_ports == (0, 0) && b.host_ip.is_none() => Ok((b.container_port, b.protocol)),
        _ => Err(Error::Invalid { spec: s.to_owned(), hint: "an exposed port is PORT[/PROTOCOL]".into() }),
    }
}

/// `--expose PORT[/PROTO]` or `--expose START-END[/PROTO]`: the image-config keys (`80/tcp`) it adds.
pub fn parse_expose(s: &str) -> Result<Vec<String>> {
    let bindings = parse_publish(s)?;
    if bindings.iter().any(|b| b.host_ports != (0, 0) || b.host_ip.is_some()) {
        return Err(Error::Invalid {
            spec: s.to_owned(),
            hint: "--expose takes PORT[/PROTOCOL] or a range A-B".into(),
        });
    }
    Ok(bindings.iter().map(|b| format!("{}/{}", b.container_port, b.protocol)).collect())
}

/// `-P`: every exposed port to a random host port on every address.
pub fn publish_all<'a>(exposed: impl IntoIterator<Item = &'a str>) -> Result<Vec<PortBinding>> {
    let mut out = Vec::new();
    for e in exposed {
        let (container_port, protocol) = parse_exposed(e)?;
        out.push(PortBinding { host_ip: None, host_ports: (0, 0), container_port, protocol });
    }
    Ok(out)
}

/// The address the proxy listens on for a binding.
pub fn listen_ip(b: &PortBinding) -> IpAddr {
    b.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `engine port CONTAINER [PRIVATE_PORT[/PROTO]]` lines: `80/tcp -> 0.0.0.0:8080` (without a filter), or just
/// `0.0.0.0:8080` (with one), as docker prints them.
pub fn port_lines(published: &[PublishedPort], filter: Option<&str>, container: &str) -> Result<Vec<String>> {
    let mut sorted = published.to_vec();
    sorted.sort();
    let Some(f) = filter else {
        return Ok(sorted
            .iter()
            .map(|p| format!("{}/{} -> {}", p.container_port, p.protocol, p.host_address()))
            .collect());
    };
    let (port, protocol) = parse_exposed(f)?;
    let lines: Vec<String> = sorted
        .iter()
        .filter(|p| p.container_port == port && p.protocol == protocol)
        .map(PublishedPort::host_address)
        .collect();
    if lines.is_empty() {
        return Err(Error::NotPublished { port: format!("{port}/{protocol}"), container: container.to_owned() });
    }
    Ok(lines)
}

/// The `PORTS` column of `ps`: `0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`.
pub fn ps_column(published: &[PublishedPort]) -> String {
    let mut sorted = published.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(|p| format!("{}->{}/{}", p.host_address(), p.container_port, p.protocol))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortBinding {
        match parse_publish(spec).as_deref() {
            Ok([b]) => b.clone(),
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn publish_specs_parse_like_docker() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let b = one("80");
        assert_eq!((b.host_ip, b.host_ports, b.container_port, b.protocol), (None, (0, 0), 80, Protocol::Tcp));
        assert_eq!(one("8080:80").host_ports, (8080, 8080));
        let b = one("127.0.0.1:8080:80/udp");
        assert_eq!((b.host_ip, b.host_ports, b.protocol), (Some(lo), (8080, 8080), Protocol::Udp));
        let b = one("127.0.0.1::80");
        assert_eq!((b.host_ip, b.host_ports), (Some(lo), (0, 0)));
        assert_eq!(one("[::1]:8080:80").host_ip, Some("::1".parse().unwrap_or(lo)));
        assert_eq!(one("8000-8010:80").host_ports, (8000, 8010));
        let r = parse_publish("8000-8001:80-81").unwrap_or_default();
        assert_eq!(r.iter().map(|b| (b.host_ports.0, b.container_port)).collect::<Vec<_>>(), [(8000, 80), (8001, 81)]);
        assert_eq!(parse_publish("80-82").map(|v| v.len()), Ok(3));
    }

    #[test]
    fn bad_publish_specs_say_why() {
        for (spec, hint) in [
            ("80/sctp", "unsupported protocol `sctp`"),
            ("http", "invalid container port `http`"),
            ("0", "invalid container port `0`"),
            ("70000", "invalid container port `70000`"),
            ("x:80", "invalid host port `x`"),
            ("nothost:80:80", "`nothost` is not an IP address"),
            ("8000-8002:80-81", "ranges differ in size"),
            ("1:2:3:4", "use [IP:][HOST_PORT:]CONTAINER_PORT"),
            ("8080:", "no container port given"),
        ] {
            match parse_publish(spec) {
                Err(e) => assert!(e.to_string().contains(hint), "{spec}: {e}"),
                Ok(b) => panic!("{spec} parsed: {b:?}"),
            }
        }
    }

    #[test]
    fn port_output_matches_docker() -> Result<()> {
        let published = vec![
            PublishedPort {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                host_port: 8080,
            },
            PublishedPort {
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: 5353,
            },
        ];
        assert_eq!(port_lines(&published, None, "c")?, ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]);
        assert_eq!(port_lines(&published, Some("80"), "c")?, ["0.0.0.0:8080"]);
        assert_eq!(
            port_lines(&published, Some("81/tcp"), "c"),
            Err(Error::NotPublished { port: "81/tcp".into(), container: "c".into() })
        );
        assert_eq!(ps_column(&published), "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp");
        assert_eq!(publish_all(["80/tcp", "53/udp"])?.len(), 2);
        Ok(())
    }
}
