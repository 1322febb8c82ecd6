//! Where the API server is: `unix:///path/to.sock` or `tcp://host:port`, as `DOCKER_HOST` spells it.
//!
//! Name resolution is done here, not by the C library: the static client runs inside busybox or Alpine images
//! where a statically linked glibc cannot load NSS modules, so `getaddrinfo` would fail for any name. IP
//! literals and `localhost` are resolved without it; other names fall back to the system resolver (which works
//! in a dynamically linked `engine`, and in the static client only where glibc's NSS libraries are present).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;

use super::{Error, Result, Socket};

/// The docker CLI's default: the daemon's unix socket.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The port of `tcp://host` without one (dockerd's plain-HTTP port).
const DEFAULT_TCP_PORT: u16 = 2375;

/// A parsed engine address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

impl Host {
    /// Parses `unix:///path` or `tcp://host[:port]` (a bare `/path` is taken as a unix socket, as docker does).
    pub fn parse(s: &str) -> Result<Host> {
        let invalid = |reason: &str| Error::InvalidHost { host: s.to_owned(), reason: reason.to_owned() };
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid("a unix socket needs an absolute path: unix:///run/drydock.sock"));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s)));
        }
        let Some(rest) = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("http://")) else {
            return Err(invalid(
                "expected unix:///path or tcp://host:port (ssh://, npipe:// and TLS are not supported)",
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(invalid("no host after tcp://"));
        }
        // `[::1]:2375`, `host:2375`, `host`.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing bracket: tcp://[::1]:2375"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(invalid("expected :PORT after the IPv6 address")),
            };
            (addr.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            None => DEFAULT_TCP_PORT,
            Some(p) => p.parse().map_err(|_| invalid(&format!("`{p}` is not a port number")))?,
        };
        if host.is_empty() {
            return Err(invalid("no host before the port"));
        }
        Ok(Host::Tcp { host, port })
    }

    /// The host from the environment: `DRYDOCK_HOST`, else `DOCKER_HOST` (empty values count as unset).
    pub fn from_env() -> Result<Option<Host>> {
        for var in ["DRYDOCK_HOST", "DOCKER_HOST"] {
            if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                let v = v.to_string_lossy();
                return Host::parse(&v).map(Some).map_err(|e| match e {
                    Error::InvalidHost { host, reason } => {
                        Error::InvalidHost { host, reason: format!("{reason} (from ${var})") }
                    }
                    other => other,
                });
            }
        }
        Ok(None)
    }

    /// The `Host` header: `docker` for a unix socket (as the docker CLI sends), `host:port` for TCP.
    pub fn authority(&self) -> String {
        match self {
            Host::Unix(_) => "docker".to_owned(),
            Host::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Host::Tcp { host, port } => format!("{host}:{port}"),
        }
    }

    /// The socket address of a TCP host: IP literals and `localhost` directly, other names through the system
    /// resolver (see the module doc).
    pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
        let unresolved = |reason: String| Error::InvalidHost {
            host: format!("tcp://{host}:{port}"),
            reason: format!("cannot resolve `{host}`: {reason}; use an IP address (the static client has no NSS)"),
        };
        (host, port)
            .to_socket_addrs()
            .map_err(|e| unresolved(e.to_string()))?
            .next()
            .ok_or_else(|| unresolved("no address".to_owned()))
    }

    pub(crate) async fn connect(&self) -> Result<Socket> {
        let connect_error = |source| Error::Connect { host: self.to_string(), source };
        match self {
            Host::Unix(path) => Ok(Socket::Unix(tokio::net::UnixStream::connect(path).await.map_err(connect_error)?)),
            Host::Tcp { host, port } => {
                let addr = Host::resolve(host, *port)?;
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                Ok(Socket::Tcp(stream))
            }
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp { .. } => write!(f, "tcp://{}", self.authority()),
        }
    }
}
