//! The userland proxy behind published ports: it listens on the host port and relays each TCP connection and
//! UDP flow to the container's address on its network. It runs inside the container's monitor process, so it
//! lives and dies with the container.
//!
//! Why a proxy rather than nftables DNAT: DNAT does not apply to connections from the host to its own loopback
//! (`127.0.0.1:8080`, what tests and developers use most) unless `route_localnet` is switched on for the host's
//! interfaces, which weakens the host's martian filtering; a proxy handles loopback, every local address and
//! remote clients the same way, needs no rule cleanup when a monitor is killed (its sockets close with it), and
//! binding the port up front reports "port is already allocated" at start. The price — the container sees the
//! gateway as the client address — is the one docker pays with its own `docker-proxy`.
//!
//! Budget: the monitor must stay under 2 MB RSS, so this is std only — blocking sockets, one thread per listener
//! and two per TCP connection (or one per UDP flow), each with a 64 KiB stack and a 16 KiB buffer.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::ports::{listen_ip, PortBinding, Protocol, PublishedPort};

const STACK: usize = 64 * 1024;
const BUFFER: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A UDP flow without traffic for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// Errors binding published ports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("driver failed programming external connectivity: Bind for {address} failed: port is already allocated (choose another host port)")]
    InUse { address: String },
    #[error("cannot bind {address}: {source}")]
    Bind { address: String, source: io::Error },
    #[error("cannot start a proxy thread: {0}")]
    Thread(io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Bound host sockets, not yet relaying.
pub struct Proxy {
    relays: Vec<(Listener, PublishedPort, SocketAddr)>,
}

impl Proxy {
    /// Binds every binding's host port (the first free one of a range; a kernel-chosen one for `(0, 0)`),
    /// relaying to `container_ip`. Nothing stays bound if one fails.
    pub fn bind(bindings: &[PortBinding], container_ip: IpAddr) -> Result<Proxy> {
        let mut relays = Vec::new();
        for b in bindings {
            let ip = listen_ip(b);
            let candidates: Vec<u16> = (b.host_ports.0..=b.host_ports.1).collect();
            let mut last_err = None;
            let mut bound = None;
            for port in candidates {
                let addr = SocketAddr::new(ip, port);
                let result = match b.protocol {
                    Protocol::Tcp => TcpListener::bind(addr).map(Listener::Tcp),
                    Protocol::Udp => UdpSocket::bind(addr).map(Listener::Udp),
                };
                match result {
                    Ok(l) => {
                        bound = Some(l);
                        break;
                    }
                    Err(e) => last_err = Some((addr, e)),
                }
            }
            let listener = match (bound, last_err) {
                (Some(l), _) => l,
                (None, Some((addr, e))) if e.kind() == io::ErrorKind::AddrInUse => {
                    return Err(Error::InUse { address: addr.to_string() })
                }
                (None, Some((addr, source))) => return Err(Error::Bind { address: addr.to_string(), source }),
                (None, None) => {
                    return Err(Error::Bind {
                        address: format!("{ip}"),
                        source: io::Error::new(io::ErrorKind::InvalidInput, "empty port range"),
                    })
                }
            };
            let local = match &listener {
                Listener::Tcp(l) => l.local_addr(),
                Listener::Udp(u) => u.local_addr(),
            }
            .map_err(|source| Error::Bind { address: ip.to_string(), source })?;
            let published = PublishedPort {
                container_port: b.container_port,
                protocol: b.protocol,
                host_ip: ip,
                host_port: local.port(),
            };
            relays.push((listener, published, SocketAddr::new(container_ip, b.container_port)));
        }
        Ok(Proxy { relays })
    }

    /// The ports actually bound (random ones resolved): record them for `engine port`.
    pub fn published(&self) -> Vec<PublishedPort> {
        self.relays.iter().map(|(_, p, _)| p.clone()).collect()
    }

    /// The bound sockets' descriptors (a process that forks to run the proxy keeps these and closes the rest).
    pub fn raw_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.relays
            .iter()
            .map(|(l, _, _)| match l {
                Listener::Tcp(t) => t.as_raw_fd(),
                Listener::Udp(u) => u.as_raw_fd(),
            })
            .collect()
    }

    /// Starts relaying in background threads and returns; the relays run until the process exits.
    pub fn spawn(self) -> Result<()> {
        for (listener, _, target) in self.relays {
            let builder = thread::Builder::new().name("proxy".into()).stack_size(STACK);
            match listener {
                Listener::Tcp(l) => builder.spawn(move || accept_loop(l, target)),
                Listener::Udp(u) => builder.spawn(move || udp_loop(u, target)),
            }
            .map_err(Error::Thread)?;
        }
        Ok(())
    }

    /// Relays until the process is killed (for a process whose only job is the proxy).
    pub fn serve(self) -> Result<std::convert::Infallible> {
        self.spawn()?;
        loop {
            thread::park();
        }
    }
}

/// Binds `bindings` and relays forever: the monitor's proxy entry point. Returns only if binding fails.
pub fn serve(bindings: &[PortBinding], container_ip: IpAddr) -> Result<std::convert::Infallible> {
    Proxy::bind(bindings, container_ip)?.serve()
}

fn accept_loop(listener: TcpListener, target: SocketAddr) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let spawned = thread::Builder::new().name("proxy-conn".into()).stack_size(STACK).spawn(move || {
            let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else { return };
            let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else { return };
            let back = thread::Builder::new()
                .name("proxy-back".into())
                .stack_size(STACK)
                .spawn(move || pump(upstream2, client2));
            pump(client, upstream);
            if let Ok(h) = back {
                let _ = h.join();
            }
        });
        // Out of threads: drop this connection, keep accepting.
        drop(spawned);
    }
}

/// Copies `from` to `to` until end of stream, then half-closes `to` so the other side sees EOF.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn udp_loop(socket: UdpSocket, target: SocketAddr) {
    let flows: Arc<Mutex<HashMap<SocketAddr, UdpSocket>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf) else { continue };
        let existing = flows.lock().ok().and_then(|f| f.get(&client).and_then(|s| s.try_clone().ok()));
        let upstream = match existing {
            Some(s) => s,
            None => {
                let Some(s) = new_flow(&socket, client, target, &flows) else { continue };
                s
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}

/// A socket connected to the container for one client, and a thread relaying its replies back.
fn new_flow(
    socket: &UdpSocket,
    client: SocketAddr,
    target: SocketAddr,
    flows: &Arc<Mutex<HashMap<SocketAddr, UdpSocket>>>,
) -> Option<UdpSocket> {
    let any: SocketAddr = match target.ip() {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let upstream = UdpSocket::bind(any).ok()?;
    upstream.connect(target).ok()?;
    upstream.set_read_timeout(Some(UDP_IDLE)).ok()?;
    let (reply_from, reply_to) = (upstream.try_clone().ok()?, socket.try_clone().ok()?);
    let flows2 = Arc::clone(flows);
    thread::Builder::new()
        .name("proxy-udp".into())
        .stack_size(STACK)
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = reply_from.recv(&mut buf) {
                if reply_to.send_to(&buf[..n], client).is_err() {
                    break;
                }
            }
            if let Ok(mut f) = flows2.lock() {
                f.remove(&client);
            }
        })
        .ok()?;
    let kept = upstream.try_clone().ok()?;
    if let Ok(mut f) = flows.lock() {
        f.insert(client, kept);
    }
    Some(upstream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tcp_and_udp_are_relayed() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // An echo "container" on loopback.
        let echo = TcpListener::bind((lo, 0))?;
        let echo_port = echo.local_addr()?.port();
        thread::spawn(move || {
            for s in echo.incoming().flatten() {
                let mut r = s;
                let mut w = match r.try_clone() {
                    Ok(w) => w,
                    Err(_) => continue,
                };
                let _ = io::copy(&mut r, &mut w);
            }
        });
        let udp_echo = UdpSocket::bind((lo, 0))?;
        let udp_port = udp_echo.local_addr()?.port();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp_echo.recv_from(&mut buf) {
                let _ = udp_echo.send_to(&buf[..n], from);
            }
        });
        let mut bindings = Vec::new();
        for (port, protocol) in [(echo_port, Protocol::Tcp), (udp_port, Protocol::Udp)] {
            bindings.push(PortBinding { host_ip: Some(lo), host_ports: (0, 0), container_port: port, protocol });
        }
        let proxy = Proxy::bind(&bindings, lo)?;
        let published = proxy.published();
        assert!(published.iter().all(|p| p.host_port != 0));
        proxy.spawn()?;

        let mut c = TcpStream::connect((lo, published[0].host_port))?;
        c.write_all(b"hello")?;
        c.shutdown(Shutdown::Write)?;
        let mut got = String::new();
        c.read_to_string(&mut got)?;
        assert_eq!(got, "hello");

        let u = UdpSocket::bind((lo, 0))?;
        u.set_read_timeout(Some(Duration::from_secs(5)))?;
        u.send_to(b"ping", (lo, published[1].host_port))?;
        let mut buf = [0u8; 16];
        let (n, _) = u.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"ping");

        // A taken port is reported as docker does.
        let taken = TcpListener::bind((lo, 0))?;
        let port = taken.local_addr()?.port();
        let b =
            PortBinding { host_ip: Some(lo), host_ports: (port, port), container_port: 80, protocol: Protocol::Tcp };
        assert!(matches!(Proxy::bind(&[b], lo), Err(Error::InUse { .. })));
        Ok(())
    }
}
