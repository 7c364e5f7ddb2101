//! The control endpoint on `control.listen`: Prometheus text format (`GET /metrics`),
//! and the abuse-desk list (`GET /top`) only with `control.http_top: true` (it names
//! subscriber addresses; `op25b top` reads it from the operator socket). Read-only:
//! nothing here changes state, and nothing here is needed for a reload (`op25b reload`
//! and the reload status are on the operator socket). Never touches frames.
//!
//! It must not be a way to take the box down or blind it: a failed bind (a local user
//! squatting the port during a restart) does not stop the datapath, the endpoint retries
//! it; a request's head must arrive within [`HEAD_DEADLINE`] and the whole request is
//! answered within [`REQUEST_DEADLINE`]; up to [`MAX_CLIENTS`] requests are served at
//! once, at most [`MAX_PER_PEER`] of them from one peer (one remote address, or one
//! local user: a connection from this host is told apart by the uid that owns its
//! socket), so one slow or idle client does not hold up the scrapes.

use super::metrics::render;
use super::{top_json, MetricsState};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests served at once; more are answered 503 at once.
pub const MAX_CLIENTS: usize = 8;
/// Requests served at once from one peer (address, and uid for a local one); more are
/// answered 503 at once.
pub const MAX_PER_PEER: usize = 2;
/// Deadline for the request head (request line and headers): an idle connection is
/// closed after this.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// Deadline for a whole request: reading it and writing the answer.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How often a failed bind of `control.listen` is retried.
pub const BIND_RETRY: Duration = Duration::from_secs(2);

/// Who a connection is from, for [`MAX_PER_PEER`]: its address; for a connection from
/// this host (any loopback address, or this end's own address) whose client socket is
/// found, the uid that owns it, whatever local address it came from, so two local users
/// are two peers and one user gains nothing from 127.0.0.2, 127.0.0.3, ... Addresses are
/// canonical: an IPv4 client of a dual-stack listener is its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote address, or `0.0.0.0` for a local peer known by its uid.
    pub ip: std::net::IpAddr,
    pub uid: Option<u32>,
}

impl Peer {
    pub fn of(stream: &TcpStream) -> Option<Peer> {
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let remote = canon(stream.peer_addr().ok()?);
        let local = canon(stream.local_addr().ok()?);
        let here = remote.ip().is_loopback() || remote.ip() == local.ip();
        let uid = here.then(|| socket_uid(remote, local)).flatten();
        Some(Peer {
            ip: if uid.is_some() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                remote.ip()
            },
            uid,
        })
    }
}

/// The uid owning the local TCP socket `local` connected to `remote`: the client's end
/// of a connection from this host, in /proc/net/tcp (an IPv4 socket) or
/// /proc/net/tcp6 (an IPv6 one, or an IPv6 socket speaking IPv4 through mapped
/// addresses).
pub fn socket_uid(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    fn hex(ip: std::net::IpAddr, port: u16) -> String {
        let ip = match ip {
            std::net::IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
            std::net::IpAddr::V6(v6) => v6
                .octets()
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        };
        format!("{ip}:{port:04X}")
    }
    fn find(file: &str, l: &str, r: &str) -> Option<u32> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 7 && f[1] == l && f[2] == r)
                .then(|| f[7].parse().ok())
                .flatten()
        })
    }
    let mapped = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    match (local.ip(), remote.ip()) {
        (std::net::IpAddr::V4(_), std::net::IpAddr::V4(_)) => find(
            "/proc/net/tcp",
            &hex(local.ip(), local.port()),
            &hex(remote.ip(), remote.port()),
        )
        .or_else(|| {
            find(
                "/proc/net/tcp6",
                &hex(mapped(local.ip()), local.port()),
                &hex(mapped(remote.ip()), remote.port()),
            )
        }),
        _ => find(
            "/proc/net/tcp6",
            &hex(local.ip(), local.port()),
            &hex(remote.ip(), remote.port()),
        ),
    }
}

/// Connections being served: in all, and per [`Peer`].
#[derive(Debug, Default)]
pub struct Slots {
    total: usize,
    per_peer: std::collections::HashMap<Peer, usize>,
}

impl Slots {
    /// True when every slot is taken.
    pub fn full(&self) -> bool {
        self.total >= MAX_CLIENTS
    }

    /// Takes a slot for `peer` if it is under both limits.
    pub fn take(&mut self, peer: Peer) -> bool {
        let n = self.per_peer.get(&peer).copied().unwrap_or(0);
        if self.total >= MAX_CLIENTS || n >= MAX_PER_PEER {
            return false;
        }
        self.total += 1;
        self.per_peer.insert(peer, n + 1);
        true
    }

    /// Gives back a slot taken for `peer`.
    pub fn give(&mut self, peer: Peer) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }
}

/// Binds the listener.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves on a thread until `stop`. Without a `listener` (the bind at start failed) it
/// retries binding `addr` every [`BIND_RETRY`], logging the first failure and each
/// minute after.
pub fn serve(
    listener: Option<TcpListener>,
    addr: SocketAddr,
    state: Arc<MetricsState>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("op25b-control".into())
        .spawn(move || {
            let slots = Arc::new(Mutex::new(Slots::default()));
            let mut listener = listener;
            let mut last_try = Instant::now();
            let mut last_log: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(l) = &listener else {
                    std::thread::sleep(Duration::from_millis(50));
                    if last_try.elapsed() < BIND_RETRY {
                        continue;
                    }
                    last_try = Instant::now();
                    match bind(addr) {
                        Ok(l) => {
                            tracing::info!(listen = %addr, "control.listen {addr} bound: metrics at http://{addr}/metrics");
                            listener = Some(l);
                        }
                        Err(e) => {
                            if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                                last_log = Some(Instant::now());
                                tracing::error!(listen = %addr, "control.listen {addr}: {e}; still retrying every {} s (the datapath runs regardless)", BIND_RETRY.as_secs());
                            }
                        }
                    }
                    continue;
                };
                match l.accept() {
                    Ok((stream, _)) => {
                        // Full: refused before the (costlier) lookup of who it is.
                        if slots.lock().unwrap_or_else(|p| p.into_inner()).full() {
                            let _ = busy(stream);
                            continue;
                        }
                        let Some(peer) = Peer::of(&stream) else {
                            continue;
                        };
                        let lock = |s: &Mutex<Slots>| {
                            s.lock().unwrap_or_else(|p| p.into_inner()).take(peer)
                        };
                        if !lock(&slots) {
                            let _ = busy(stream);
                            continue;
                        }
                        let (state, slots2) = (state.clone(), slots.clone());
                        let spawned = std::thread::Builder::new()
                            .name("op25b-http".into())
                            .spawn(move || {
                                let _ = handle(stream, &state);
                                slots2.lock().unwrap_or_else(|p| p.into_inner()).give(peer);
                            });
                        if spawned.is_err() {
                            slots.lock().unwrap_or_else(|p| p.into_inner()).give(peer);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
}

/// Answers 503 without waiting for anything (the accept loop must not slow down for a
/// flood of refused connections): what has arrived of the request is read, the answer
/// written into the empty send buffer, and the connection closed.
fn busy(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(true)?;
    let _ = (&stream).read(&mut [0u8; 2048]);
    let body = "too many requests at once; retry\n";
    write!(
        &stream,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads the request head (at most 16 KiB) before `deadline`.
fn read_head(mut stream: &TcpStream, deadline: Instant) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request deadline",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() >= 16 * 1024 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn handle(stream: TcpStream, state: &MetricsState) -> std::io::Result<()> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    stream.set_nonblocking(false)?;
    let head = read_head(&stream, Instant::now() + HEAD_DEADLINE)?;
    let request = head.lines().next().unwrap_or("");
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let get = request.starts_with("GET ");
    let route = |p: &str| path == p || path.starts_with(&format!("{p}?"));
    let (status, body, ctype) = if get && route("/metrics") {
        (
            "200 OK",
            render(state),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    } else if get && route("/top") && state.http_top {
        let n = path
            .split_once("?n=")
            .and_then(|(_, n)| n.parse::<usize>().ok())
            .unwrap_or(20)
            .clamp(1, 1000);
        (
            "200 OK",
            format!("{}\n", top_json(state, n)),
            "application/json",
        )
    } else if get {
        (
            "404 Not Found",
            format!("served: {}\n", served(state)),
            "text/plain",
        )
    } else {
        (
            "405 Method Not Allowed",
            format!("read-only endpoint: {}\n", served(state)),
            "text/plain",
        )
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    write_before(&stream, answer.as_bytes(), deadline)
}

/// The paths served, for 404 and 405 answers.
fn served(state: &MetricsState) -> &'static str {
    if state.http_top {
        "GET /metrics, GET /top[?n=N]"
    } else {
        "GET /metrics (op25b top and op25b reload use the operator socket, control.socket)"
    }
}

/// Writes `bytes` in pieces, each with the time left until `deadline`: a client that
/// reads slowly is cut off at the deadline (a write timeout alone applies per write).
fn write_before(mut stream: &TcpStream, bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    for piece in bytes.chunks(16 * 1024) {
        let mut rest = piece;
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request deadline",
                ));
            }
            stream.set_write_timeout(Some(left))?;
            let n = stream.write(rest)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            rest = &rest[n..];
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_peer_is_told_apart_by_its_uid() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let peer = Peer::of(&server).unwrap();
        assert_ne!(peer.ip, client.local_addr().unwrap().ip(), "known by uid");
        // /proc/self belongs to this process's effective uid.
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(peer.uid, Some(me), "the client's socket is this process's");
        // A second connection of the same user is the same peer.
        let c2 = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(
                "127.0.0.1".parse().unwrap(),
                l.local_addr().unwrap().port(),
            ),
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let (s2, _) = l.accept().unwrap();
        assert_eq!(Peer::of(&s2).unwrap(), peer);
        drop(c2);
        // Through a dual-stack listener an IPv4 client shows as ::ffff:127.0.0.1: the
        // same user is the same peer (it was an unknown remote address before).
        if let Ok(l6) = TcpListener::bind("[::]:0") {
            let port = l6.local_addr().unwrap().port();
            let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (s6, _) = l6.accept().unwrap();
            assert_eq!(Peer::of(&s6).unwrap(), peer, "an IPv4 client of [::]");
        }
    }

    #[test]
    fn one_peer_cannot_take_every_slot() {
        let mut slots = Slots::default();
        let local = |uid| Peer {
            ip: "127.0.0.1".parse().unwrap(),
            uid: Some(uid),
        };
        // One local user gets MAX_PER_PEER slots, however many it asks for.
        let taken = (0..100).filter(|_| slots.take(local(1000))).count();
        assert_eq!(taken, MAX_PER_PEER);
        // Another user (the Prometheus scraper) still gets in.
        assert!(slots.take(local(65534)));
        slots.give(local(65534));
        // Given back, a slot can be taken again.
        slots.give(local(1000));
        assert!(slots.take(local(1000)));
        assert!(!slots.take(local(1000)));
        // The global limit holds across peers.
        let mut all = Slots::default();
        let n = (0..100u32).filter(|&u| all.take(local(u))).count();
        assert_eq!(n, MAX_CLIENTS);
    }
}
