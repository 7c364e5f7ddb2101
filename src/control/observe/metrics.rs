//! Prometheus text format for `GET /metrics`: every counter, gauge and the process
//! metrics, rendered from what observation reads ([`MetricsState`]).

use super::{MetricsState, ReloadStatus};
use crate::datapath::counters::{Counter, Snapshot, PORTS};
use crate::datapath::io::Side;
use crate::datapath::settings::FastPathMode;
use crate::datapath::xdp::PathStats;
use crate::policy::Reason;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// The exposition text.
pub fn render(state: &MetricsState) -> String {
    text(&Reading::read(state))
}

/// Everything `GET /metrics` shows, read once from [`MetricsState`] (and /proc): plain
/// data, so the text is a function of it alone.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Each worker's counters.
    pub workers: Vec<Snapshot>,
    /// Per worker: seconds since it last went round its loop.
    pub heartbeat_age: Vec<f64>,
    /// The XDP programs' verdicts ([`Snapshot::from_kernel`]).
    pub kernel: Snapshot,
    /// Every class name seen since start, with its counter slot (stable across reloads).
    pub class_slots: Vec<(usize, String)>,
    /// The XDP programs' own counters, per side.
    pub path: [PathStats; 2],
    pub fast_active: [bool; 2],
    pub fast_mode: FastPathMode,
    pub kernel_policy_valid: bool,
    pub kernel_policy_write_errors: u64,
    pub generation: u64,
    pub table_bytes: usize,
    /// Per class of the policy in force: (name, IPv4 prefixes, IPv6 prefixes).
    pub prefixes: Vec<(String, usize, usize)>,
    pub reload: ReloadStatus,
    /// The XDP mode in use.
    pub mode: String,
    /// Overlay entries per source.
    pub overlay_entries: Vec<(&'static str, usize)>,
    pub radius_requests: Vec<(&'static str, u64)>,
    pub radius_refused: Vec<(&'static str, u64)>,
    /// Overlay changes by op.
    pub overlay_changes: [(&'static str, u64); 4],
    /// The state file's errors by kind.
    pub state_errors: [(&'static str, u64); 2],
    pub process: ProcessStats,
    pub uptime_seconds: f64,
}

impl Reading {
    /// Reads `state` (and /proc/self) once.
    pub fn read(state: &MetricsState) -> Reading {
        let now_ms = crate::clock::beat_ms();
        let heartbeat_age = state
            .counters
            .iter()
            .map(|c| match c.heartbeat_ms() {
                0 => state.started.elapsed().as_secs_f64(),
                b => now_ms.saturating_sub(b) as f64 / 1e3,
            })
            .collect();
        let policy = state.policy.load();
        let summary = policy.summary();
        let prefixes = policy
            .classes()
            .iter()
            .zip(&summary.prefixes_per_class)
            .map(|(c, &(v4, v6))| (c.name.clone(), v4, v6))
            .collect();
        let reload = state
            .reload
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let overlay_entries = {
            let store = state
                .overlay
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            crate::control::overlay::store::EntrySource::ALL
                .iter()
                .map(|&src| (src.as_str(), store.count(src)))
                .collect()
        };
        let ov = &state.overlay;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Reading {
            workers: state.counters.iter().map(|c| c.snapshot()).collect(),
            heartbeat_age,
            kernel: Snapshot::from_kernel(&state.fast_path.verdicts()),
            class_slots: state.policy.class_slots(),
            path: state.fast_path.stats(),
            fast_active: [0, 1].map(|i| state.fast_path.active[i].load(Ordering::Relaxed)),
            fast_mode: state.fast_path.mode(),
            kernel_policy_valid: state.policy.kernel_valid(),
            kernel_policy_write_errors: load(&state.policy.kernel_errors),
            generation: state.policy.generation(),
            table_bytes: summary.table_bytes,
            prefixes,
            reload,
            mode: state.mode.clone(),
            overlay_entries,
            radius_requests: state.radius.all().to_vec(),
            radius_refused: state.radius.refused().to_vec(),
            overlay_changes: [
                ("add", load(&ov.added)),
                ("remove", load(&ov.removed)),
                ("expire", load(&ov.expired)),
                ("auto_quarantine", load(&ov.auto_quarantined)),
            ],
            state_errors: [
                ("bad_line", load(&ov.saves.bad_lines)),
                ("save_failed", load(&ov.saves.failed)),
            ],
            process: ProcessStats::read(state.started_unix),
            uptime_seconds: state.started.elapsed().as_secs_f64(),
        }
    }
}

/// The exposition text of a [`Reading`].
pub fn text(state: &Reading) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let snaps = &state.workers;
    let sides = Side::BOTH;
    render_verdicts(&mut o, snaps, &state.kernel, &state.class_slots);
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
    for (w, age) in state.heartbeat_age.iter().enumerate() {
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
    let fp = state.path;
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
        state.fast_active.map(u64::from),
    );
    let mode = state.fast_mode;
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
        u8::from(state.kernel_policy_valid)
    );
    let _ = writeln!(o, "# HELP op25b_xdp_kernel_policy_write_errors_total Writes of the XDP program's copy of the policy or overlay that failed (each retry that fails counts too).");
    let _ = writeln!(
        o,
        "# TYPE op25b_xdp_kernel_policy_write_errors_total counter"
    );
    let _ = writeln!(
        o,
        "op25b_xdp_kernel_policy_write_errors_total {}",
        state.kernel_policy_write_errors
    );
    let _ = writeln!(o, "# HELP op25b_policy_generation Generation of the policy in force (1 at start, +1 per reload).");
    let _ = writeln!(o, "# TYPE op25b_policy_generation gauge");
    let _ = writeln!(o, "op25b_policy_generation {}", state.generation);
    let _ = writeln!(
        o,
        "# HELP op25b_policy_table_bytes Memory of the policy's lookup tables."
    );
    let _ = writeln!(o, "# TYPE op25b_policy_table_bytes gauge");
    let _ = writeln!(o, "op25b_policy_table_bytes {}", state.table_bytes);
    let _ = writeln!(
        o,
        "# HELP op25b_policy_prefixes Subscriber prefixes per class and family."
    );
    let _ = writeln!(o, "# TYPE op25b_policy_prefixes gauge");
    for (name, v4, v6) in &state.prefixes {
        let _ = writeln!(
            o,
            "op25b_policy_prefixes{{class=\"{name}\",family=\"ipv4\"}} {v4}"
        );
        let _ = writeln!(
            o,
            "op25b_policy_prefixes{{class=\"{name}\",family=\"ipv6\"}} {v6}"
        );
    }
    let r = &state.reload;
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
    let _ = writeln!(
        o,
        "# HELP op25b_overlay_entries Runtime overlay entries (per-subscriber classes) by source."
    );
    let _ = writeln!(o, "# TYPE op25b_overlay_entries gauge");
    for (src, n) in &state.overlay_entries {
        let _ = writeln!(o, "op25b_overlay_entries{{source=\"{src}\"}} {n}");
    }
    let _ = writeln!(o, "# HELP op25b_radius_requests_total RADIUS Accounting-Requests by result: accepted (answered and applied), duplicate (a retransmission: answered again, not applied), stale_timestamp and too_many_prefixes (refused: not applied, not answered), unknown_client, bad_authenticator, malformed (dropped).");
    let _ = writeln!(o, "# TYPE op25b_radius_requests_total counter");
    for (result, v) in &state.radius_requests {
        let _ = writeln!(o, "op25b_radius_requests_total{{result=\"{result}\"}} {v}");
    }
    let _ = writeln!(o, "# HELP op25b_radius_entries_refused_total Overlay entries of accepted RADIUS requests that were refused: overlay_full (radius.max_entries reached), prefix_too_short (radius.min_ipv6_prefix_len), out_of_order (a Start whose Event-Timestamp is older than the entry of the session holding the address).");
    let _ = writeln!(o, "# TYPE op25b_radius_entries_refused_total counter");
    for (reason, v) in &state.radius_refused {
        let _ = writeln!(
            o,
            "op25b_radius_entries_refused_total{{reason=\"{reason}\"}} {v}"
        );
    }
    let _ = writeln!(o, "# HELP op25b_overlay_changes_total Runtime overlay entries added (or replaced), removed and expired; of the added, the auto-quarantined.");
    let _ = writeln!(o, "# TYPE op25b_overlay_changes_total counter");
    for (op, v) in state.overlay_changes {
        let _ = writeln!(o, "op25b_overlay_changes_total{{op=\"{op}\"}} {v}");
    }
    let _ = writeln!(o, "# HELP op25b_overlay_state_errors_total The overlay's state file: lines skipped at start (bad_line: not UTF-8, not JSON, not a valid entry) and saves that failed (save_failed; each is retried, and the stop saves).");
    let _ = writeln!(o, "# TYPE op25b_overlay_state_errors_total counter");
    for (kind, v) in state.state_errors {
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
    process_metrics(&mut o, &state.process);
    let _ = writeln!(o, "# HELP op25b_uptime_seconds Seconds since start.");
    let _ = writeln!(o, "# TYPE op25b_uptime_seconds gauge");
    let _ = writeln!(o, "op25b_uptime_seconds {:.1}", state.uptime_seconds);
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

/// The standard `process_*` metrics' values, from /proc/self.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub start_time_seconds: f64,
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: usize,
    pub max_fds: u64,
}

impl ProcessStats {
    /// Reads /proc/self; `started_unix` stands in for a start time it cannot read.
    pub fn read(started_unix: f64) -> ProcessStats {
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
        ProcessStats {
            start_time_seconds: started_unix,
            cpu_seconds: cpu,
            resident_memory_bytes: rss_pages * page,
            virtual_memory_bytes: vsize,
            open_fds: fds.saturating_sub(1),
            max_fds,
        }
    }
}

/// The standard `process_*` metrics.
fn process_metrics(o: &mut String, p: &ProcessStats) {
    for (name, help, kind, v) in [
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            format!("{:.3}", p.start_time_seconds),
        ),
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            format!("{:.2}", p.cpu_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            p.resident_memory_bytes.to_string(),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            p.virtual_memory_bytes.to_string(),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            p.open_fds.to_string(),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            p.max_fds.to_string(),
        ),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        let _ = writeln!(o, "{name} {v}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Worker and kernel counters with a different value in every field, two workers,
    /// both sides: what the golden tests render.
    pub(crate) fn golden_counters() -> (Vec<Snapshot>, Snapshot, Vec<(usize, String)>) {
        use crate::classify::NonIpKind;
        use crate::datapath::counters::{FrameCensus, KernelDrops, WorkerCounters};
        use crate::datapath::xdp::KernelVerdicts;
        use crate::policy::{ReplyKind, Verdict};
        let mut workers = Vec::new();
        for w in 0..2u64 {
            let c = WorkerCounters::new();
            for side in Side::BOTH {
                let k = side.index() as u64 + 1 + 10 * w;
                c.rx(side, 1000 * k, 64_000 * k);
                c.tx(side, 900 * k, 60_000 * k);
                for _ in 0..k {
                    c.verdict(side, Verdict::Forward(Reason::PortOpen), None, Some(443));
                }
                c.verdict(side, Verdict::Drop(Reason::BlockedPort), Some(0), Some(25));
                c.verdict(
                    side,
                    Verdict::Reject(Reason::BlockedPort, ReplyKind::TcpReset),
                    Some(1),
                    Some(587),
                );
                c.verdict(side, Verdict::Drop(Reason::InboundSmtp), Some(5), Some(465));
                c.non_ip(side, NonIpKind::Arp);
                c.set_kernel(
                    side,
                    KernelDrops {
                        rx_dropped: 3 * k,
                        rx_ring_full: 5 * k,
                        fill_empty: 7 * k,
                    },
                );
                c.set_backlog(side, 11 * k as usize);
                c.set_guard(side, k % 2 == 1);
            }
            // Named one by one: the values stay with their counters whatever the order.
            for (i, counter) in [
                Counter::EmptyPolls,
                Counter::Sleeps,
                Counter::Wakeups,
                Counter::FillStarved,
                Counter::TxRingFull,
                Counter::RepliesSent,
                Counter::RepliesRateLimited,
                Counter::RepliesFailed,
                Counter::PolicySwaps,
                Counter::NoticeSynAcks,
                Counter::NoticeGreetings,
                Counter::NoticeRefused,
                Counter::OverloadGuardEngaged,
            ]
            .into_iter()
            .enumerate()
            {
                c.add(counter, 100 * (w + 1) + i as u64);
            }
            c.set_census(&FrameCensus {
                total: 4096,
                free: 4000 - w,
                fill: [40, 50 + w],
                tx: [3, 3],
            });
            c.policy_generation
                .store(7 + w, std::sync::atomic::Ordering::Relaxed);
            workers.push(c.snapshot());
        }
        let mut k = [KernelVerdicts::default(), KernelVerdicts::default()];
        k[0].verdicts[0][Reason::PortOpen.index()] = 500;
        k[0].verdicts[1][Reason::BlockedPort.index()] = 30;
        k[0].blocked_ports[0] = 20;
        k[0].blocked_ports[3] = 10;
        k[0].blocked_classes[2] = 30;
        k[1].verdicts[1][Reason::InboundSmtp.index()] = 9;
        k[1].blocked_ports[0] = 9;
        k[1].blocked_classes[0] = 9;
        let slots = vec![
            (0, "dynamic".to_string()),
            (1, "business".to_string()),
            (2, "quarantine".to_string()),
            (5, "(other)".to_string()),
        ];
        (workers, Snapshot::from_kernel(&k), slots)
    }

    /// A [`Reading`] with a different value in every field.
    fn golden_reading() -> Reading {
        let (workers, kernel, class_slots) = golden_counters();
        let path = |k: u64| PathStats {
            fast: 1000 * k,
            fast_bytes: 70_000 * k,
            user_port: 11 * k,
            user_fragment: 12 * k,
            user_unparsed: 13 * k,
            user_off: 14 * k,
            fast_tcp: 900 * k,
            passed: 15 * k,
            non_ip: std::array::from_fn(|i| 20 * k + i as u64),
            user_reply: 16 * k,
            user_no_policy: 17 * k,
            too_big: 18 * k,
        };
        Reading {
            workers,
            heartbeat_age: vec![0.012, 1.5],
            kernel,
            class_slots,
            path: [path(1), path(2)],
            fast_active: [true, false],
            fast_mode: FastPathMode::Kernel,
            kernel_policy_valid: true,
            kernel_policy_write_errors: 4,
            generation: 8,
            table_bytes: 123_456,
            prefixes: vec![("dynamic".into(), 10, 2), ("business".into(), 3, 1)],
            reload: ReloadStatus {
                started: 3,
                attempts: 3,
                applied: 2,
                refused: 1,
                last_at: 1_700_000_100,
                last_ok: false,
                last_success_at: 1_700_000_050,
                message: "refused".into(),
                restart_pending: vec!["interfaces.queues".into()],
            },
            mode: "native XDP, copy mode".into(),
            overlay_entries: vec![("radius", 5), ("operator", 2), ("auto", 1)],
            radius_requests: vec![
                ("accepted", 40),
                ("duplicate", 1),
                ("stale_timestamp", 2),
                ("too_many_prefixes", 3),
                ("unknown_client", 4),
                ("bad_authenticator", 5),
                ("malformed", 6),
            ],
            radius_refused: vec![
                ("overlay_full", 7),
                ("prefix_too_short", 8),
                ("out_of_order", 9),
            ],
            overlay_changes: [
                ("add", 10),
                ("remove", 11),
                ("expire", 12),
                ("auto_quarantine", 13),
            ],
            state_errors: [("bad_line", 14), ("save_failed", 15)],
            process: ProcessStats {
                start_time_seconds: 1_700_000_000.25,
                cpu_seconds: 12.5,
                resident_memory_bytes: 50_000_000,
                virtual_memory_bytes: 900_000_000,
                open_fds: 17,
                max_fds: 1024,
            },
            uptime_seconds: 100.04,
        }
    }

    /// Compares `got` with the golden file `name` under src/control/observe/golden/
    /// (`OP25B_BLESS=1` writes it instead, to record the output of today's code).
    pub(crate) fn golden(name: &str, got: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/control/observe/golden")
            .join(name);
        if std::env::var_os("OP25B_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (OP25B_BLESS=1 writes it)", path.display()));
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            panic!(
                "{name} differs from its golden file at line {}:\n got: {:?}\nwant: {:?}",
                line + 1,
                got.lines().nth(line),
                want.lines().nth(line)
            );
        }
    }

    /// /metrics stays byte for byte what it was: every name, label, help text and value
    /// (scripts, dashboards, alert rules and the lab tests read them).
    #[test]
    fn metrics_text_matches_golden() {
        golden("metrics.prom", &text(&golden_reading()));
    }

    /// The XDP program's verdicts are one more judge under the same metric names: its
    /// own `worker="xdp"` series of op25b_frames_total, and in the blocked totals, so
    /// `sum()` over any of them counts every blocked frame once.
    #[test]
    fn kernel_verdicts_feed_the_same_metrics() {
        use crate::datapath::counters::{port_slot, WorkerCounters};
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
        let m = crate::control::observe::prometheus::Samples::parse(&o).unwrap();
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
}
