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

use crate::datapath::counters::{beat_clock, Counter, Snapshot, WorkerCounters, PORTS};
use crate::datapath::io::Side;
use crate::datapath::settings::FastPathMode;
use crate::datapath::PolicyCell;
use crate::policy::Reason;
use crossbeam_utils::CachePadded;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The outcome of reloads, for the operator socket's `reload_status` (which `op25b
/// reload` waits on) and the metrics.
#[derive(Clone, Debug)]
pub struct ReloadStatus {
    /// Reloads begun since start (SIGHUPs taken; several coalesce into one).
    pub started: u64,
    /// Reload attempts finished since start.
    pub attempts: u64,
    pub applied: u64,
    pub refused: u64,
    /// Unix time of the last attempt (start-up counts as the first success).
    pub last_at: u64,
    pub last_ok: bool,
    pub last_success_at: u64,
    /// What the last attempt did, or why it was refused.
    pub message: String,
    /// Restart-only settings that differ between the file and what runs.
    pub restart_pending: Vec<String>,
}

impl ReloadStatus {
    /// At start: the config in force loaded successfully now.
    pub fn at_start() -> Self {
        let now = unix_now();
        Self {
            started: 0,
            attempts: 0,
            applied: 0,
            refused: 0,
            last_at: now,
            last_ok: true,
            last_success_at: now,
            message: "configuration loaded at start".into(),
            restart_pending: Vec::new(),
        }
    }

    pub fn to_json(&self, generation: u64) -> serde_json::Value {
        serde_json::json!({
            "pid": std::process::id(),
            "started": self.started,
            "attempts": self.attempts,
            "applied": self.applied,
            "refused": self.refused,
            "last_at": self.last_at,
            "last_ok": self.last_ok,
            "last_success_at": self.last_success_at,
            "message": self.message,
            "restart_pending": self.restart_pending,
            "generation": generation,
        })
    }
}

/// What the endpoint reads.
pub struct MetricsState {
    pub counters: Vec<Arc<CachePadded<WorkerCounters>>>,
    pub policy: Arc<PolicyCell>,
    pub mode: String,
    /// The XDP programs' counters and the fast path's state.
    pub fast_path: Arc<crate::datapath::fast_path::FastPathView>,
    pub started: Instant,
    /// Unix time of the start.
    pub started_unix: f64,
    pub reload: Mutex<ReloadStatus>,
    /// The runtime overlay.
    pub overlay: Arc<super::operator::OverlayShared>,
    /// The RADIUS accounting listener's counters (zeros without `radius:`).
    pub radius: Arc<super::radius::Counters>,
    /// `control.http_top`: serve `GET /top` on `control.listen` too.
    pub http_top: bool,
    /// The sources whose attempts the XDP program dropped (drained from its map by the
    /// control thread, [`crate::control::topk::KernelList`]), merged into [`top`].
    pub kernel_top: Mutex<Vec<crate::control::topk::Entry>>,
}

/// The reload status as JSON (the operator socket's `reload_status`).
pub fn reload_status_json(state: &MetricsState) -> serde_json::Value {
    let r = state
        .reload
        .lock()
        .map(|r| r.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    r.to_json(state.policy.generation())
}

/// The merged top-`n` list as JSON (`op25b top`; `GET /top` with `control.http_top`).
pub fn top_json(state: &MetricsState, n: usize) -> serde_json::Value {
    serde_json::json!({
        "generated_at": unix_now(),
        "workers": state.counters.len(),
        "slots_per_worker": crate::control::topk::WORKER_SLOTS,
        "kernel_slots": crate::control::topk::KERNEL_SLOTS,
        "offenders": top(state, n),
    })
}

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

/// The merged top-`n` sources of blocked outbound attempts over all workers and the
/// XDP program's drops.
pub fn top(state: &MetricsState, n: usize) -> Vec<crate::control::topk::Offender> {
    let mut lists: Vec<Vec<crate::control::topk::Entry>> = state
        .counters
        .iter()
        .map(|c| c.top.lock().map(|l| l.clone()).unwrap_or_default())
        .collect();
    lists.push(
        state
            .kernel_top
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone()),
    );
    crate::control::topk::merge(
        lists.iter().map(Vec::as_slice),
        |slot| state.policy.class_slot_name(slot),
        crate::control::topk::epoch(),
        n,
    )
}

/// The exposition text.
pub fn render(state: &MetricsState) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let snaps: Vec<_> = state.counters.iter().map(|c| c.snapshot()).collect();
    // Every class name seen since start, with its counter slot (stable across reloads).
    let class_slots = state.policy.class_slots();
    let sides = Side::BOTH;
    let kernel = Snapshot::from_kernel(&state.fast_path.verdicts());
    render_verdicts(&mut o, &snaps, &kernel, &class_slots);
    for (metric, help, pick) in [
        (
            "op25b_rx_frames_total",
            "Frames received on an interface.",
            0usize,
        ),
        ("op25b_rx_bytes_total", "Bytes received on an interface.", 1),
        (
            "op25b_tx_frames_total",
            "Frames sent out of an interface (forwards and replies).",
            2,
        ),
        ("op25b_tx_bytes_total", "Bytes sent out of an interface.", 3),
    ] {
        let _ = writeln!(o, "# HELP {metric} {help}");
        let _ = writeln!(o, "# TYPE {metric} counter");
        for (w, s) in snaps.iter().enumerate() {
            for side in sides {
                let v = match pick {
                    0 => s.rx_frames[side.index()],
                    1 => s.rx_bytes[side.index()],
                    2 => s.tx_frames[side.index()],
                    _ => s.tx_bytes[side.index()],
                };
                let _ = writeln!(
                    o,
                    "{metric}{{worker=\"{w}\",interface=\"{}\"}} {v}",
                    side.as_str()
                );
            }
        }
    }
    // One metric per datapath event, named for what it counts.
    for (c, name, help) in EVENT_METRICS {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} counter");
        for (w, s) in snaps.iter().enumerate() {
            let _ = writeln!(o, "{name}{{worker=\"{w}\"}} {}", s.get(c));
        }
    }
    let _ = writeln!(o, "# HELP op25b_worker_heartbeat_age_seconds Seconds since the worker last went round its loop (an idle worker beats every 100 ms; the systemd watchdog pings stop when one is stalled).");
    let _ = writeln!(o, "# TYPE op25b_worker_heartbeat_age_seconds gauge");
    let now_ms = beat_clock();
    for (w, c) in state.counters.iter().enumerate() {
        let b = c.heartbeat_ms();
        let age = if b == 0 {
            state.started.elapsed().as_secs_f64()
        } else {
            now_ms.saturating_sub(b) as f64 / 1e3
        };
        let _ = writeln!(
            o,
            "op25b_worker_heartbeat_age_seconds{{worker=\"{w}\"}} {age:.3}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP op25b_kernel_drops_total Frames the kernel dropped before a worker saw them (AF_XDP socket statistics). The reasons overlap: in copy mode a frame dropped for an empty fill ring counts in rx_dropped and fill_empty; frames lost = rx_dropped + rx_ring_full."
    );
    let _ = writeln!(o, "# TYPE op25b_kernel_drops_total counter");
    for (w, s) in snaps.iter().enumerate() {
        for side in Side::BOTH {
            let k = &s.kernel[side.index()];
            for (reason, v) in [
                ("rx_dropped", k.rx_dropped),
                ("rx_ring_full", k.rx_ring_full),
                ("fill_empty", k.fill_empty),
            ] {
                let _ = writeln!(
                    o,
                    "op25b_kernel_drops_total{{worker=\"{w}\",interface=\"{}\",reason=\"{reason}\"}} {v}",
                    side.as_str()
                );
            }
        }
    }
    // Per worker and interface: (name, help, value).
    type SideGauge = (
        &'static str,
        &'static str,
        fn(&crate::datapath::counters::Snapshot, usize) -> u64,
    );
    let side_gauges: [SideGauge; 2] = [
        (
            "op25b_overload_guard_active",
            "1 while the worker's overload guard holds the interface's fill ring shallow (sustained overload), else 0.",
            |s, i| u64::from(s.guard[i]),
        ),
        (
            "op25b_rx_backlog_frames",
            "Frames received and waiting in the worker's RX ring (sampled every 64 loop iterations; with workers.overload_guard on).",
            |s, i| s.backlog[i],
        ),
    ];
    for (name, help, value) in side_gauges {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for (w, s) in snaps.iter().enumerate() {
            for side in Side::BOTH {
                let _ = writeln!(
                    o,
                    "{name}{{worker=\"{w}\",interface=\"{}\"}} {}",
                    side.as_str(),
                    value(s, side.index())
                );
            }
        }
    }
    let _ = writeln!(o, "# HELP op25b_umem_frames UMEM frames by where they are.");
    let _ = writeln!(o, "# TYPE op25b_umem_frames gauge");
    for (w, s) in snaps.iter().enumerate() {
        let c = &s.census;
        for (place, v) in [
            ("free", c.free),
            ("fill_subscriber", c.fill[0]),
            ("fill_upstream", c.fill[1]),
            ("tx_subscriber", c.tx[0]),
            ("tx_upstream", c.tx[1]),
        ] {
            let _ = writeln!(
                o,
                "op25b_umem_frames{{worker=\"{w}\",place=\"{place}\"}} {v}"
            );
        }
    }
    let fp = state.fast_path.stats();
    let per_interface = |o: &mut String, name: &str, help: &str, kind: &str, v: [u64; 2]| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for side in Side::BOTH {
            let _ = writeln!(
                o,
                "{name}{{interface=\"{}\"}} {}",
                side.as_str(),
                v[side.index()]
            );
        }
    };
    per_interface(
        &mut o,
        "op25b_fast_path_frames_total",
        "Frames the XDP program sent straight to the other interface in the kernel (never seen by a worker; with datapath.fast_path kernel also those it judged, in op25b_frames_total{worker=\"xdp\",verdict=\"forward\"}), by receiving interface.",
        "counter",
        fp.map(|s| s.fast),
    );
    per_interface(
        &mut o,
        "op25b_fast_path_tcp_frames_total",
        "Of op25b_fast_path_frames_total, the TCP segments forwarded without a lookup (to ports no class blocks in that direction).",
        "counter",
        fp.map(|s| s.fast_tcp),
    );
    per_interface(
        &mut o,
        "op25b_xdp_passed_to_stack_frames_total",
        "Frames the XDP program handed to the kernel stack because no worker socket was registered for their RX queue (start-up, shutdown) or the other interface had no redirect entry.",
        "counter",
        fp.map(|s| s.passed),
    );
    per_interface(
        &mut o,
        "op25b_fast_path_bytes_total",
        "Bytes of the frames counted in op25b_fast_path_frames_total.",
        "counter",
        fp.map(|s| s.fast_bytes),
    );
    let _ = writeln!(o, "# HELP op25b_xdp_to_userspace_frames_total Frames the XDP program sent to the workers, by receiving interface and why: port (mode unblockable: TCP to a port the policy may block), fragment, unparsed (headers it does not fully parse), off (mode off, or the other interface cannot take redirected frames), reply (mode kernel: blocked, and the class replies), no_policy (mode kernel: its copy of the policy is not complete, see op25b_xdp_kernel_policy_valid).");
    let _ = writeln!(o, "# TYPE op25b_xdp_to_userspace_frames_total counter");
    for side in sides {
        for (reason, n) in fp[side.index()].user_reasons() {
            let _ = writeln!(
                o,
                "op25b_xdp_to_userspace_frames_total{{interface=\"{}\",reason=\"{reason}\"}} {n}",
                side.as_str()
            );
        }
    }
    let _ = writeln!(o, "# HELP op25b_non_ip_frames_total Frames that are not IPv4/IPv6, forwarded unjudged, by receiving interface, kind (arp, mpls, pbb, llc: 802.3 length field, pppoe_control: PPPoE discovery and PPP control protocols, pppoe_compressed: a compressed PPP protocol that is not IP, other) and path (kernel: the XDP fast path; worker: frames the workers saw, fast path off or not taken).");
    let _ = writeln!(o, "# TYPE op25b_non_ip_frames_total counter");
    for side in sides {
        for kind in crate::classify::NonIpKind::ALL {
            let k = kind.index();
            let worker: u64 = snaps.iter().map(|s| s.non_ip[side.index()][k]).sum();
            for (path, n) in [("kernel", fp[side.index()].non_ip[k]), ("worker", worker)] {
                let _ = writeln!(
                    o,
                    "op25b_non_ip_frames_total{{interface=\"{}\",kind=\"{}\",path=\"{path}\"}} {n}",
                    side.as_str(),
                    kind.as_str()
                );
            }
        }
    }
    per_interface(
        &mut o,
        "op25b_xdp_dropped_too_big_frames_total",
        "Frames the XDP program dropped because they needed a worker but were larger than a UMEM frame holds (interfaces.frame_size; links with an MTU above it).",
        "counter",
        fp.map(|s| s.too_big),
    );
    per_interface(
        &mut o,
        "op25b_fast_path_active",
        "1 while the XDP program of the interface may decide in the kernel (datapath.fast_path kernel or unblockable, and the other interface takes redirected frames).",
        "gauge",
        [0, 1].map(|i| u64::from(state.fast_path.active[i].load(Ordering::Relaxed))),
    );
    let mode = state.fast_path.mode();
    let _ = writeln!(o, "# HELP op25b_fast_path_mode datapath.fast_path in force: 1 for the mode (kernel: the XDP program judges; unblockable: it forwards only what no class can block; off: every frame through the workers), 0 for the others.");
    let _ = writeln!(o, "# TYPE op25b_fast_path_mode gauge");
    for m in [
        FastPathMode::Kernel,
        FastPathMode::Unblockable,
        FastPathMode::Off,
    ] {
        let _ = writeln!(
            o,
            "op25b_fast_path_mode{{mode=\"{}\"}} {}",
            m.as_str(),
            u8::from(m == mode)
        );
    }
    let _ = writeln!(o, "# HELP op25b_xdp_kernel_policy_valid 1 while the XDP program's copy of the policy and overlay is complete and in force; 0 after a failed write (retried every second), when every frame it would judge goes to the workers (op25b_xdp_to_userspace_frames_total{{reason=\"no_policy\"}}).");
    let _ = writeln!(o, "# TYPE op25b_xdp_kernel_policy_valid gauge");
    let _ = writeln!(
        o,
        "op25b_xdp_kernel_policy_valid {}",
        u8::from(state.policy.kernel_valid())
    );
    let _ = writeln!(o, "# HELP op25b_xdp_kernel_policy_write_errors_total Writes of the XDP program's copy of the policy or overlay that failed (each retry that fails counts too).");
    let _ = writeln!(
        o,
        "# TYPE op25b_xdp_kernel_policy_write_errors_total counter"
    );
    let _ = writeln!(
        o,
        "op25b_xdp_kernel_policy_write_errors_total {}",
        state.policy.kernel_errors.load(Ordering::Relaxed)
    );
    let policy = state.policy.load();
    let summary = policy.summary();
    let _ = writeln!(o, "# HELP op25b_policy_generation Generation of the policy in force (1 at start, +1 per reload).");
    let _ = writeln!(o, "# TYPE op25b_policy_generation gauge");
    let _ = writeln!(o, "op25b_policy_generation {}", state.policy.generation());
    let _ = writeln!(
        o,
        "# HELP op25b_policy_table_bytes Memory of the policy's lookup tables."
    );
    let _ = writeln!(o, "# TYPE op25b_policy_table_bytes gauge");
    let _ = writeln!(o, "op25b_policy_table_bytes {}", summary.table_bytes);
    let _ = writeln!(
        o,
        "# HELP op25b_policy_prefixes Subscriber prefixes per class and family."
    );
    let _ = writeln!(o, "# TYPE op25b_policy_prefixes gauge");
    for (class, (v4, v6)) in policy.classes().iter().zip(&summary.prefixes_per_class) {
        let name = &class.name;
        let _ = writeln!(
            o,
            "op25b_policy_prefixes{{class=\"{name}\",family=\"ipv4\"}} {v4}"
        );
        let _ = writeln!(
            o,
            "op25b_policy_prefixes{{class=\"{name}\",family=\"ipv6\"}} {v6}"
        );
    }
    let r = state
        .reload
        .lock()
        .map(|r| r.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    for (name, help, kind, v) in [
        (
            "op25b_config_last_reload_successful",
            "1 if the last reload was applied (1 from start: the start-up config loaded).",
            "gauge",
            u64::from(r.last_ok),
        ),
        (
            "op25b_config_last_reload_timestamp_seconds",
            "Unix time of the last reload attempt (the start time before any).",
            "gauge",
            r.last_at,
        ),
        (
            "op25b_config_last_reload_success_timestamp_seconds",
            "Unix time of the last applied reload (the start time before any).",
            "gauge",
            r.last_success_at,
        ),
        (
            "op25b_config_restart_pending",
            "Restart-only settings that differ between the config file (as of the last reload) and what runs; 0 when a restart would change nothing.",
            "gauge",
            r.restart_pending.len() as u64,
        ),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        let _ = writeln!(o, "{name} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP op25b_config_reloads_total Reload attempts by result (applied, refused)."
    );
    let _ = writeln!(o, "# TYPE op25b_config_reloads_total counter");
    let _ = writeln!(
        o,
        "op25b_config_reloads_total{{result=\"applied\"}} {}",
        r.applied
    );
    let _ = writeln!(
        o,
        "op25b_config_reloads_total{{result=\"refused\"}} {}",
        r.refused
    );
    let _ = writeln!(o, "# HELP op25b_info XDP mode in use.");
    let _ = writeln!(o, "# TYPE op25b_info gauge");
    let _ = writeln!(
        o,
        "op25b_info{{mode=\"{}\",version=\"{}\"}} 1",
        state.mode,
        env!("CARGO_PKG_VERSION")
    );
    {
        let store = state
            .overlay
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(o, "# HELP op25b_overlay_entries Runtime overlay entries (per-subscriber classes) by source.");
        let _ = writeln!(o, "# TYPE op25b_overlay_entries gauge");
        for src in super::overlay::Source::ALL {
            let _ = writeln!(
                o,
                "op25b_overlay_entries{{source=\"{}\"}} {}",
                src.as_str(),
                store.count(src)
            );
        }
    }
    let _ = writeln!(o, "# HELP op25b_radius_requests_total RADIUS Accounting-Requests by result: accepted (answered and applied), duplicate (a retransmission: answered again, not applied), stale_timestamp and too_many_prefixes (refused: not applied, not answered), unknown_client, bad_authenticator, malformed (dropped).");
    let _ = writeln!(o, "# TYPE op25b_radius_requests_total counter");
    for (result, v) in state.radius.all() {
        let _ = writeln!(o, "op25b_radius_requests_total{{result=\"{result}\"}} {v}");
    }
    let _ = writeln!(o, "# HELP op25b_radius_entries_refused_total Overlay entries of accepted RADIUS requests that were refused: overlay_full (radius.max_entries reached), prefix_too_short (radius.min_ipv6_prefix_len), out_of_order (a Start whose Event-Timestamp is older than the entry of the session holding the address).");
    let _ = writeln!(o, "# TYPE op25b_radius_entries_refused_total counter");
    for (reason, v) in state.radius.refused() {
        let _ = writeln!(
            o,
            "op25b_radius_entries_refused_total{{reason=\"{reason}\"}} {v}"
        );
    }
    let _ = writeln!(o, "# HELP op25b_overlay_changes_total Runtime overlay entries added (or replaced), removed and expired; of the added, the auto-quarantined.");
    let _ = writeln!(o, "# TYPE op25b_overlay_changes_total counter");
    for (op, v) in [
        ("add", &state.overlay.added),
        ("remove", &state.overlay.removed),
        ("expire", &state.overlay.expired),
        ("auto_quarantine", &state.overlay.auto_quarantined),
    ] {
        let _ = writeln!(
            o,
            "op25b_overlay_changes_total{{op=\"{op}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let saves = &state.overlay.saves;
    let _ = writeln!(o, "# HELP op25b_overlay_state_errors_total The overlay's state file: lines skipped at start (bad_line: not UTF-8, not JSON, not a valid entry) and saves that failed (save_failed; each is retried, and the stop saves).");
    let _ = writeln!(o, "# TYPE op25b_overlay_state_errors_total counter");
    for (kind, v) in [
        ("bad_line", saves.bad_lines.load(Ordering::Relaxed)),
        ("save_failed", saves.failed.load(Ordering::Relaxed)),
    ] {
        let _ = writeln!(o, "op25b_overlay_state_errors_total{{kind=\"{kind}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP op25b_build_info The running build: version, git revision, compiler."
    );
    let _ = writeln!(o, "# TYPE op25b_build_info gauge");
    let _ = writeln!(
        o,
        "op25b_build_info{{version=\"{}\",revision=\"{}\",rustc=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("OP25B_REVISION"),
        env!("OP25B_RUSTC")
    );
    process_metrics(&mut o, state.started_unix);
    let _ = writeln!(o, "# HELP op25b_uptime_seconds Seconds since start.");
    let _ = writeln!(o, "# TYPE op25b_uptime_seconds gauge");
    let _ = writeln!(
        o,
        "op25b_uptime_seconds {:.1}",
        state.started.elapsed().as_secs_f64()
    );
    o
}

/// The metrics the verdicts feed, one total each whoever judged: the workers' (one
/// `op25b_frames_total` series set per worker) and the XDP program's (`worker="xdp"`;
/// its verdicts are also in `op25b_blocked_total` and `op25b_blocked_by_class_total`).
/// Every series exists from the start, zeros included, so `increase()` sees the first
/// count.
fn render_verdicts(
    o: &mut String,
    snaps: &[Snapshot],
    kernel: &Snapshot,
    class_slots: &[(usize, String)],
) {
    let sides = Side::BOTH;
    let side_dir = |s: Side| match s {
        Side::Subscriber => "outbound",
        Side::Upstream => "inbound",
    };
    let _ = writeln!(
        o,
        "# HELP op25b_frames_total Frames judged, by worker (worker=\"xdp\": the XDP program, in the kernel), direction and verdict."
    );
    let _ = writeln!(o, "# TYPE op25b_frames_total counter");
    let judges = snaps
        .iter()
        .enumerate()
        .map(|(w, s)| (w.to_string(), s))
        .chain([("xdp".to_string(), kernel)]);
    for (w, s) in judges {
        for side in sides {
            for (a, action) in ["forward", "drop", "reject"].iter().enumerate() {
                for r in Reason::ALL {
                    let n = s.verdicts[side.index()][a][r.index()];
                    let _ = writeln!(
                        o,
                        "op25b_frames_total{{worker=\"{w}\",direction=\"{}\",verdict=\"{action}\",reason=\"{}\"}} {n}",
                        side_dir(side),
                        r.as_str()
                    );
                }
            }
        }
    }
    let all = || snaps.iter().chain([kernel]);
    let _ = writeln!(
        o,
        "# HELP op25b_blocked_total Blocked TCP segments by direction and destination port (the workers' and the XDP program's)."
    );
    let _ = writeln!(o, "# TYPE op25b_blocked_total counter");
    for side in sides {
        for (p, port) in PORTS
            .iter()
            .map(|p| p.to_string())
            .chain(["other".to_string()])
            .enumerate()
        {
            let n: u64 = all().map(|s| s.blocked_ports[side.index()][p]).sum();
            let _ = writeln!(
                o,
                "op25b_blocked_total{{direction=\"{}\",port=\"{port}\"}} {n}",
                side_dir(side)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP op25b_blocked_by_class_total Blocked segments by subscriber class name (every class seen since start; a count stays with its name across reloads)."
    );
    let _ = writeln!(o, "# TYPE op25b_blocked_by_class_total counter");
    for (slot, name) in class_slots {
        let n: u64 = all()
            .map(|s| s.blocked_classes.get(*slot).copied().unwrap_or(0))
            .sum();
        let _ = writeln!(o, "op25b_blocked_by_class_total{{class=\"{name}\"}} {n}");
    }
}

/// Datapath events exported one metric each: (counter, name, help).
const EVENT_METRICS: [(Counter, &str, &str); 13] = [
    (Counter::RepliesSent, "op25b_replies_sent_total", "Replies (TCP RST / ICMP prohibited) built and queued for rejected segments."),
    (Counter::RepliesRateLimited, "op25b_replies_rate_limited_total", "Rejected segments answered by silence because the reply token bucket was empty (policy.reject_rate)."),
    (Counter::RepliesFailed, "op25b_replies_failed_total", "Rejected segments answered by silence because no free frame was at hand or the reply could not be built."),
    (Counter::TxRingFull, "op25b_tx_ring_full_drops_total", "Frames dropped because the TX ring of the outgoing interface had no room."),
    (Counter::FillStarved, "op25b_fill_starved_total", "Times a fill ring needed frames and the worker had none free."),
    (Counter::OverloadGuardEngaged, "op25b_overload_guard_engaged_total", "Times a worker's overload guard engaged on an interface (sustained overload: the kernel kept dropping frames for an empty fill ring), bounding its receive backlog."),
    (Counter::Wakeups, "op25b_worker_wakeups_total", "TX kicks (sendto) and fill-ring wakeups the worker made."),
    (Counter::Sleeps, "op25b_worker_sleeps_total", "Times the worker slept in poll() when idle."),
    (Counter::EmptyPolls, "op25b_worker_empty_polls_total", "Loop iterations that found no frame and no completion."),
    (Counter::PolicySwaps, "op25b_worker_policy_swaps_total", "New policy snapshots the worker picked up."),
    (Counter::NoticeSynAcks, "op25b_smtp_notice_syn_acks_total", "SMTP notice: SYNs answered with a cookie SYN-ACK (reply: smtp-notice)."),
    (Counter::NoticeGreetings, "op25b_smtp_notice_greetings_total", "SMTP notice: 554 greetings sent to a client whose ACK carried a valid cookie (notices completed)."),
    (Counter::NoticeRefused, "op25b_smtp_notice_refused_total", "SMTP notice: segments answered with a RST instead (data before the greeting, a bad or late cookie, a SYN over the reply budget)."),
];

/// The standard `process_*` metrics from /proc/self.
fn process_metrics(o: &mut String, started_unix: f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime, stime: fields 14, 15 (index 11, 12 after the name); vsize 23; rss 24.
    let ticks = crate::datapath::nic::clock_ticks_per_second() as f64;
    let cpu = (num(11) + num(12)) as f64 / ticks;
    let vsize = num(20);
    let rss_pages = num(21);
    let page = crate::datapath::nic::page_size();
    // starttime (field 22): clock ticks after boot; btime in /proc/stat: boot, unix time.
    let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let started_unix = match (btime, num(19)) {
        (Some(b), st) if st > 0 => b as f64 + st as f64 / ticks,
        _ => started_unix,
    };
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| {
                    x.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    for (name, help, kind, v) in [
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            format!("{started_unix:.3}"),
        ),
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            format!("{cpu:.2}"),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            (rss_pages * page).to_string(),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            vsize.to_string(),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            fds.saturating_sub(1).to_string(),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            max_fds.to_string(),
        ),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        let _ = writeln!(o, "{name} {v}");
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

    /// The XDP program's verdicts are one more judge under the same metric names: its
    /// own `worker="xdp"` series of op25b_frames_total, and in the blocked totals, so
    /// `sum()` over any of them counts every blocked frame once.
    #[test]
    fn kernel_verdicts_feed_the_same_metrics() {
        use crate::datapath::counters::port_slot;
        use crate::datapath::xdp::KernelVerdicts;
        use crate::policy::Verdict;
        let w = WorkerCounters::new();
        w.rx(Side::Subscriber, 1, 60);
        w.verdict(
            Side::Subscriber,
            Verdict::Reject(Reason::BlockedPort, crate::policy::ReplyKind::TcpReset),
            Some(0),
            Some(25),
        );
        let mut k = [KernelVerdicts::default(), KernelVerdicts::default()];
        k[0].verdicts[1][Reason::BlockedPort.index()] = 3;
        k[0].blocked_ports[port_slot(Some(587))] = 3;
        k[0].blocked_classes[2] = 3;
        k[0].verdicts[0][Reason::PortOpen.index()] = 5;
        k[1].verdicts[1][Reason::InboundSmtp.index()] = 2;
        k[1].blocked_ports[port_slot(Some(25))] = 2;
        k[1].blocked_classes[0] = 2;
        let mut o = String::new();
        let slots = [(0, "dynamic".to_string()), (2, "quarantine".to_string())];
        render_verdicts(&mut o, &[w.snapshot()], &Snapshot::from_kernel(&k), &slots);
        let m = crate::control::prometheus::Samples::parse(&o).unwrap();
        let xdp = |dir, verdict, reason| {
            m.get(
                "op25b_frames_total",
                &[
                    ("worker", "xdp"),
                    ("direction", dir),
                    ("verdict", verdict),
                    ("reason", reason),
                ],
            )
        };
        assert_eq!(xdp("outbound", "drop", "blocked_port"), Some(3.0), "{o}");
        assert_eq!(xdp("outbound", "forward", "port_open"), Some(5.0));
        assert_eq!(xdp("inbound", "drop", "inbound_smtp"), Some(2.0));
        // Every series of the xdp judge exists, zeros included, like a worker's.
        assert_eq!(xdp("outbound", "reject", "blocked_port"), Some(0.0));
        let series = |w| m.matching("op25b_frames_total", &[("worker", w)]).count();
        assert_eq!(series("xdp"), series("0"));
        assert_eq!(m.sum("op25b_frames_total", &[]), 11.0);
        assert_eq!(m.sum("op25b_frames_total", &[("verdict", "drop")]), 5.0);
        assert_eq!(
            m.get(
                "op25b_blocked_total",
                &[("direction", "outbound"), ("port", "587")]
            ),
            Some(3.0)
        );
        assert_eq!(
            m.get(
                "op25b_blocked_total",
                &[("direction", "outbound"), ("port", "25")]
            ),
            Some(1.0)
        );
        assert_eq!(
            m.get(
                "op25b_blocked_total",
                &[("direction", "inbound"), ("port", "25")]
            ),
            Some(2.0)
        );
        assert_eq!(m.sum("op25b_blocked_total", &[]), 6.0);
        assert_eq!(
            m.get("op25b_blocked_by_class_total", &[("class", "quarantine")]),
            Some(3.0)
        );
        assert_eq!(
            m.get("op25b_blocked_by_class_total", &[("class", "dynamic")]),
            Some(3.0)
        );
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
