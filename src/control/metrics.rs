//! Prometheus text-format endpoint (`GET /metrics`) on `control.listen`. Read-only: it
//! exposes counters and gauges and nothing that changes state. One thread, one request
//! at a time (a scrape every few seconds); never touches frames.

use crate::datapath::counters::{Counter, Side, WorkerCounters, PORTS};
use crate::datapath::PolicyCell;
use crate::policy::Reason;
use crossbeam_utils::CachePadded;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the endpoint reads.
pub struct MetricsState {
    pub counters: Vec<Arc<CachePadded<WorkerCounters>>>,
    pub policy: Arc<PolicyCell>,
    /// Class names of the current policy, in id order (replaced on reload).
    pub class_names: Mutex<Vec<String>>,
    pub mode: String,
    /// The XDP programs' counters and the fast path's state.
    pub fast_path: Arc<crate::datapath::fast_path::FastPathView>,
    pub started: Instant,
    /// Unix time of the last reload attempt and whether it succeeded.
    pub last_reload: Mutex<Option<(u64, bool)>>,
}

/// Binds the listener (before the datapath starts, so a bad address fails start-up).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves on a thread until `stop`.
pub fn serve(
    listener: TcpListener,
    state: Arc<MetricsState>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("op25b-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = handle(stream, &state);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
}

fn handle(stream: std::net::TcpStream, state: &MetricsState) -> std::io::Result<()> {
    // At most 16 KiB of request line and headers: a client cannot make us buffer more.
    let mut reader = BufReader::new(std::io::Read::take(&stream, 16 * 1024));
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut w = &stream;
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body, ctype) =
        if request.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            (
                "200 OK",
                render(state),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        } else if request.starts_with("GET ") && (path == "/top" || path.starts_with("/top?")) {
            let n = path
                .split_once("?n=")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(20)
                .clamp(1, 1000);
            let body = serde_json::json!({
                "generated_at": unix_now(),
                "workers": state.counters.len(),
                "slots_per_worker": crate::topk::WORKER_SLOTS,
                "offenders": top(state, n),
            });
            ("200 OK", format!("{body}\n"), "application/json")
        } else if request.starts_with("GET ") {
            (
                "404 Not Found",
                "served: GET /metrics, GET /top[?n=N]\n".to_string(),
                "text/plain",
            )
        } else {
            (
                "405 Method Not Allowed",
                "read-only endpoint: GET /metrics, GET /top\n".to_string(),
                "text/plain",
            )
        };
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

/// The merged top-`n` sources of blocked outbound attempts over all workers.
pub fn top(state: &MetricsState, n: usize) -> Vec<crate::topk::Offender> {
    let lists: Vec<Vec<crate::topk::Entry>> = state
        .counters
        .iter()
        .map(|c| c.top.lock().map(|l| l.clone()).unwrap_or_default())
        .collect();
    let classes = state
        .class_names
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    crate::topk::merge(
        lists.iter().map(Vec::as_slice),
        &classes,
        crate::topk::epoch(),
        n,
    )
}

/// The exposition text.
pub fn render(state: &MetricsState) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let snaps: Vec<_> = state.counters.iter().map(|c| c.snapshot()).collect();
    let classes = state
        .class_names
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    let sides = Side::BOTH;
    let side_dir = |s: Side| match s {
        Side::Subscriber => "outbound",
        Side::Upstream => "inbound",
    };

    let _ = writeln!(
        o,
        "# HELP op25b_frames_total Frames received, by worker, direction and verdict."
    );
    let _ = writeln!(o, "# TYPE op25b_frames_total counter");
    for (w, s) in snaps.iter().enumerate() {
        for side in sides {
            for (a, action) in ["forward", "drop", "reject"].iter().enumerate() {
                for r in Reason::ALL {
                    let n = s.verdicts[side.index()][a][r.index()];
                    if n > 0 {
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
    }
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
    let _ = writeln!(
        o,
        "# HELP op25b_blocked_total Blocked TCP segments by direction and destination port."
    );
    let _ = writeln!(o, "# TYPE op25b_blocked_total counter");
    for side in sides {
        for (p, port) in PORTS
            .iter()
            .map(|p| p.to_string())
            .chain(["other".to_string()])
            .enumerate()
        {
            let n: u64 = snaps.iter().map(|s| s.blocked_ports[side.index()][p]).sum();
            let _ = writeln!(
                o,
                "op25b_blocked_total{{direction=\"{}\",port=\"{port}\"}} {n}",
                side_dir(side)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP op25b_blocked_by_class_total Blocked segments by subscriber class."
    );
    let _ = writeln!(o, "# TYPE op25b_blocked_by_class_total counter");
    for (i, name) in classes.iter().enumerate() {
        let n: u64 = snaps
            .iter()
            .map(|s| s.blocked_classes.get(i).copied().unwrap_or(0))
            .sum();
        let _ = writeln!(o, "op25b_blocked_by_class_total{{class=\"{name}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP op25b_events_total Datapath events (replies, ring full, wakeups...)."
    );
    let _ = writeln!(o, "# TYPE op25b_events_total counter");
    for (w, s) in snaps.iter().enumerate() {
        for c in Counter::ALL {
            let _ = writeln!(
                o,
                "op25b_events_total{{worker=\"{w}\",event=\"{}\"}} {}",
                c.as_str(),
                s.get(c)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP op25b_kernel_drops_total Frames the kernel dropped before a worker saw them (AF_XDP socket statistics)."
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
    let _ = writeln!(
        o,
        "# HELP op25b_top_offender_attempts Blocked outbound attempts of the 10 top sources (space-saving estimate; `op25b top` for the full list)."
    );
    let _ = writeln!(o, "# TYPE op25b_top_offender_attempts gauge");
    for (rank, t) in top(state, 10).iter().enumerate() {
        let _ = writeln!(
            o,
            "op25b_top_offender_attempts{{rank=\"{}\",src=\"{}\",class=\"{}\"}} {}",
            rank + 1,
            t.src,
            t.class.as_deref().unwrap_or(""),
            t.attempts
        );
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
        "Frames the XDP program sent straight to the other interface in the kernel (never seen by a worker), by receiving interface.",
        "counter",
        fp.map(|s| s.fast),
    );
    per_interface(
        &mut o,
        "op25b_fast_path_tcp_frames_total",
        "Of op25b_fast_path_frames_total, the TCP segments (to ports no class blocks in that direction).",
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
    let _ = writeln!(o, "# HELP op25b_xdp_to_userspace_frames_total Frames the XDP program sent to the workers, by receiving interface and why: port (TCP to a port the policy may block), fragment, unparsed (headers it does not fully parse), off (fast path off or the other interface cannot take redirected frames).");
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
    per_interface(
        &mut o,
        "op25b_fast_path_active",
        "1 while the XDP program of the interface may take the fast path (datapath.fast_path on and the other interface takes redirected frames).",
        "gauge",
        [0, 1].map(|i| u64::from(state.fast_path.active[i].load(Ordering::Relaxed))),
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
    for (i, (v4, v6)) in summary.prefixes_per_class.iter().enumerate() {
        let name = classes.get(i).map(String::as_str).unwrap_or("?");
        let _ = writeln!(
            o,
            "op25b_policy_prefixes{{class=\"{name}\",family=\"ipv4\"}} {v4}"
        );
        let _ = writeln!(
            o,
            "op25b_policy_prefixes{{class=\"{name}\",family=\"ipv6\"}} {v6}"
        );
    }
    if let Ok(Some((at, ok))) = state.last_reload.lock().map(|g| *g) {
        let _ = writeln!(
            o,
            "# HELP op25b_last_reload_timestamp_seconds Unix time of the last reload attempt."
        );
        let _ = writeln!(o, "# TYPE op25b_last_reload_timestamp_seconds gauge");
        let _ = writeln!(o, "op25b_last_reload_timestamp_seconds {at}");
        let _ = writeln!(
            o,
            "# HELP op25b_last_reload_success 1 if the last reload was applied."
        );
        let _ = writeln!(o, "# TYPE op25b_last_reload_success gauge");
        let _ = writeln!(o, "op25b_last_reload_success {}", u8::from(ok));
    }
    let _ = writeln!(o, "# HELP op25b_info XDP mode in use.");
    let _ = writeln!(o, "# TYPE op25b_info gauge");
    let _ = writeln!(
        o,
        "op25b_info{{mode=\"{}\",version=\"{}\"}} 1",
        state.mode,
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(o, "# HELP op25b_uptime_seconds Seconds since start.");
    let _ = writeln!(o, "# TYPE op25b_uptime_seconds gauge");
    let _ = writeln!(
        o,
        "op25b_uptime_seconds {:.1}",
        state.started.elapsed().as_secs_f64()
    );
    o
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
