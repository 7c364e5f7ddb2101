//! The schema of what op25b counts: every metric of `GET /metrics` declared once, as
//! data ([`families`]): its name, help, type, labels and where its value comes from (a
//! [`Reading`]). /metrics is rendered from it ([`super::metrics`]), `op25b status`
//! reads its figures back by these names ([`super::status`]), and the worker's scalar
//! counters ([`Counter`]: key, metric, help) are declared once beside them in the
//! datapath. The workers' and the XDP programs' counters are merged in one place,
//! [`Counts`], which the metrics, the counter line and the final report all read.

use super::{MetricsState, ReloadStatus};
use crate::datapath::counters::{port_labels, Counter, Snapshot, WorkerCounters};
use crate::datapath::fast_path::FastPathView;
use crate::datapath::io::Side;
use crate::datapath::settings::FastPathMode;
use crate::datapath::xdp::PathStats;
use crate::policy::{Action, Reason};
use crossbeam_utils::CachePadded;
use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Every judge's counters, read at one moment: each worker's, and the verdicts the XDP
/// programs reached in the kernel ([`Snapshot::from_kernel`]).
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub workers: Vec<Snapshot>,
    pub kernel: Snapshot,
}

impl Counts {
    /// Reads every worker's counters and the XDP programs' verdicts.
    pub fn read(workers: &[Arc<CachePadded<WorkerCounters>>], fast: &FastPathView) -> Counts {
        Counts {
            workers: workers.iter().map(|c| c.snapshot()).collect(),
            kernel: Snapshot::from_kernel(&fast.verdicts()),
        }
    }

    /// Each judge with its `worker` label: the workers by number, then `xdp`.
    pub fn judges(&self) -> impl Iterator<Item = (String, &Snapshot)> {
        let workers = self.workers.iter().enumerate();
        workers
            .map(|(w, s)| (w.to_string(), s))
            .chain([("xdp".to_string(), &self.kernel)])
    }

    /// Every frame handled: the sum over all judges.
    pub fn total(&self) -> Snapshot {
        let mut sum = Snapshot::default();
        for s in self.workers.iter().chain([&self.kernel]) {
            sum.merge(s);
        }
        sum
    }
}

/// Everything `GET /metrics` shows, read once from [`MetricsState`] (and /proc): plain
/// data, so the text is a function of it alone.
#[derive(Clone, Debug)]
pub struct Reading {
    pub counts: Counts,
    /// Per worker: seconds since it last went round its loop.
    pub heartbeat_age: Vec<f64>,
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
            counts: Counts::read(&state.counters, &state.fast_path),
            heartbeat_age,
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

/// A metric's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Where a metric's series come from.
#[derive(Clone, Copy)]
pub enum Source {
    /// A worker's scalar counter, one series per worker.
    Event(Counter),
    /// Every series, with its label values, from the reading.
    Read(fn(&Reading, &mut Series<'_>)),
}

/// One metric: declared once, rendered by [`super::metrics`].
#[derive(Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Its label names, in the order of every series.
    pub labels: &'static [&'static str],
    pub source: Source,
}

/// Writes the series of one family: its name, its labels with the values given, the
/// value.
pub struct Series<'a> {
    pub out: &'a mut String,
    pub family: &'a Family,
}

impl Series<'_> {
    /// One series: `values` in the order of the family's labels.
    pub fn put(&mut self, values: &[&str], v: impl Display) {
        debug_assert_eq!(
            values.len(),
            self.family.labels.len(),
            "{}",
            self.family.name
        );
        let o = &mut *self.out;
        o.push_str(self.family.name);
        if !values.is_empty() {
            o.push('{');
            for (i, (l, v)) in self.family.labels.iter().zip(values).enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(o, "{sep}{l}=\"{v}\"");
            }
            o.push('}');
        }
        let _ = writeln!(o, " {v}");
    }
}

/// Every metric, in the order of /metrics: the verdicts and traffic, the worker's
/// scalar counters ([`Counter`]), then the rest.
pub fn families() -> impl Iterator<Item = Family> {
    let events = Counter::ALL.map(|c| Family {
        name: c.metric(),
        help: c.help(),
        kind: Kind::Counter,
        labels: &["worker"],
        source: Source::Event(c),
    });
    TRAFFIC
        .iter()
        .copied()
        .chain(events)
        .chain(STATE.iter().copied())
}

/// The direction of frames received on `side`, as the metrics name it.
pub fn direction(side: Side) -> &'static str {
    match side {
        Side::Subscriber => "outbound",
        Side::Upstream => "inbound",
    }
}

/// One series per worker and interface.
fn per_worker_side(r: &Reading, s: &mut Series<'_>, v: fn(&Snapshot, usize) -> u64) {
    for (w, snap) in r.counts.workers.iter().enumerate() {
        let w = w.to_string();
        for side in Side::BOTH {
            s.put(&[&w, side.as_str()], v(snap, side.index()));
        }
    }
}

/// One series per interface.
fn per_side(s: &mut Series<'_>, v: [u64; 2]) {
    for side in Side::BOTH {
        s.put(&[side.as_str()], v[side.index()]);
    }
}

const fn metric(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    read: fn(&Reading, &mut Series<'_>),
) -> Family {
    Family {
        name,
        help,
        kind,
        labels,
        source: Source::Read(read),
    }
}

use Kind::{Counter as C, Gauge as G};

/// The verdicts (every judge, [`Counts`]) and the traffic of each worker.
static TRAFFIC: [Family; 7] = [
    metric("op25b_frames_total", "Frames judged, by worker (worker=\"xdp\": the XDP program, in the kernel), direction and verdict.", C,
        &["worker", "direction", "verdict", "reason"], |r, s| {
        // Every series exists from the start, zeros included, so `increase()` sees the
        // first count.
        for (w, snap) in r.counts.judges() {
            for side in Side::BOTH {
                for action in Action::ALL {
                    for reason in Reason::ALL {
                        let n = snap.verdicts[side.index()][action.index()][reason.index()];
                        s.put(&[&w, direction(side), action.as_str(), reason.as_str()], n);
                    }
                }
            }
        }
    }),
    metric("op25b_blocked_total", "Blocked TCP segments by direction and destination port (the workers' and the XDP program's).", C, &["direction", "port"], |r, s| {
        let all = || r.counts.workers.iter().chain([&r.counts.kernel]);
        for side in Side::BOTH {
            for (p, port) in port_labels().iter().enumerate() {
                let n: u64 = all().map(|x| x.blocked_ports[side.index()][p]).sum();
                s.put(&[direction(side), port], n);
            }
        }
    }),
    metric("op25b_blocked_by_class_total", "Blocked segments by subscriber class name (every class seen since start; a count stays with its name across reloads).", C, &["class"], |r, s| {
        let all = || r.counts.workers.iter().chain([&r.counts.kernel]);
        for (slot, name) in &r.class_slots {
            let n: u64 = all().map(|x| x.blocked_classes.get(*slot).copied().unwrap_or(0)).sum();
            s.put(&[name], n);
        }
    }),
    metric("op25b_rx_frames_total", "Frames received on an interface.", C, &["worker", "interface"],
        |r, s| per_worker_side(r, s, |x, i| x.rx_frames[i])),
    metric("op25b_rx_bytes_total", "Bytes received on an interface.", C, &["worker", "interface"],
        |r, s| per_worker_side(r, s, |x, i| x.rx_bytes[i])),
    metric("op25b_tx_frames_total", "Frames sent out of an interface (forwards and replies).", C, &["worker", "interface"],
        |r, s| per_worker_side(r, s, |x, i| x.tx_frames[i])),
    metric("op25b_tx_bytes_total", "Bytes sent out of an interface.", C, &["worker", "interface"],
        |r, s| per_worker_side(r, s, |x, i| x.tx_bytes[i])),
];

/// The workers' state, the XDP programs', the policy's, the reloads', the overlay's,
/// RADIUS's and the process's.
static STATE: [Family; 38] = [
    metric("op25b_worker_heartbeat_age_seconds", "Seconds since the worker last went round its loop (an idle worker beats every 100 ms; the systemd watchdog pings stop when one is stalled).", G, &["worker"], |r, s| {
        for (w, age) in r.heartbeat_age.iter().enumerate() {
            s.put(&[&w.to_string()], format_args!("{age:.3}"));
        }
    }),
    metric("op25b_kernel_drops_total", "Frames the kernel dropped before a worker saw them (AF_XDP socket statistics). The reasons overlap: in copy mode a frame dropped for an empty fill ring counts in rx_dropped and fill_empty; frames lost = rx_dropped + rx_ring_full.", C,
        &["worker", "interface", "reason"], |r, s| {
        for (w, snap) in r.counts.workers.iter().enumerate() {
            let w = w.to_string();
            for side in Side::BOTH {
                let k = &snap.kernel[side.index()];
                for (reason, v) in [
                    ("rx_dropped", k.rx_dropped),
                    ("rx_ring_full", k.rx_ring_full),
                    ("fill_empty", k.fill_empty),
                ] {
                    s.put(&[&w, side.as_str(), reason], v);
                }
            }
        }
    }),
    metric("op25b_overload_guard_active", "1 while the worker's overload guard holds the interface's fill ring shallow (sustained overload), else 0.", G, &["worker", "interface"],
        |r, s| per_worker_side(r, s, |x, i| u64::from(x.guard[i]))),
    metric("op25b_rx_backlog_frames", "Frames received and waiting in the worker's RX ring (sampled every 64 loop iterations; with workers.overload_guard on).", G, &["worker", "interface"],
        |r, s| per_worker_side(r, s, |x, i| x.backlog[i])),
    metric("op25b_umem_frames", "UMEM frames by where they are.", G, &["worker", "place"], |r, s| {
        for (w, snap) in r.counts.workers.iter().enumerate() {
            let w = w.to_string();
            let c = &snap.census;
            for (place, v) in [
                ("free", c.free),
                ("fill_subscriber", c.fill[0]),
                ("fill_upstream", c.fill[1]),
                ("tx_subscriber", c.tx[0]),
                ("tx_upstream", c.tx[1]),
            ] {
                s.put(&[&w, place], v);
            }
        }
    }),
    metric("op25b_fast_path_frames_total", "Frames the XDP program sent straight to the other interface in the kernel (never seen by a worker; with datapath.fast_path kernel also those it judged, in op25b_frames_total{worker=\"xdp\",verdict=\"forward\"}), by receiving interface.", C, &["interface"],
        |r, s| per_side(s, r.path.map(|p| p.fast))),
    metric("op25b_fast_path_tcp_frames_total", "Of op25b_fast_path_frames_total, the TCP segments forwarded without a lookup (to ports no class blocks in that direction).", C, &["interface"],
        |r, s| per_side(s, r.path.map(|p| p.fast_tcp))),
    metric("op25b_xdp_passed_to_stack_frames_total", "Frames the XDP program handed to the kernel stack because no worker socket was registered for their RX queue (start-up, shutdown) or the other interface had no redirect entry.", C, &["interface"],
        |r, s| per_side(s, r.path.map(|p| p.passed))),
    metric("op25b_fast_path_bytes_total", "Bytes of the frames counted in op25b_fast_path_frames_total.", C, &["interface"],
        |r, s| per_side(s, r.path.map(|p| p.fast_bytes))),
    metric("op25b_xdp_to_userspace_frames_total", "Frames the XDP program sent to the workers, by receiving interface and why: port (mode unblockable: TCP to a port the policy may block), fragment, unparsed (headers it does not fully parse), off (mode off, or the other interface cannot take redirected frames), reply (mode kernel: blocked, and the class replies), no_policy (mode kernel: its copy of the policy is not complete, see op25b_xdp_kernel_policy_valid).", C,
        &["interface", "reason"], |r, s| {
        for side in Side::BOTH {
            for (reason, n) in r.path[side.index()].user_reasons() {
                s.put(&[side.as_str(), reason], n);
            }
        }
    }),
    metric("op25b_non_ip_frames_total", "Frames that are not IPv4/IPv6, forwarded unjudged, by receiving interface, kind (arp, mpls, pbb, llc: 802.3 length field, pppoe_control: PPPoE discovery and PPP control protocols, pppoe_compressed: a compressed PPP protocol that is not IP, other) and path (kernel: the XDP fast path; worker: frames the workers saw, fast path off or not taken).", C,
        &["interface", "kind", "path"], |r, s| {
        for side in Side::BOTH {
            let i = side.index();
            for kind in crate::classify::NonIpKind::ALL {
                let k = kind.index();
                let worker: u64 = r.counts.workers.iter().map(|x| x.non_ip[i][k]).sum();
                for (path, n) in [("kernel", r.path[i].non_ip[k]), ("worker", worker)] {
                    s.put(&[side.as_str(), kind.as_str(), path], n);
                }
            }
        }
    }),
    metric("op25b_xdp_dropped_too_big_frames_total", "Frames the XDP program dropped because they needed a worker but were larger than a UMEM frame holds (interfaces.frame_size; links with an MTU above it).", C, &["interface"],
        |r, s| per_side(s, r.path.map(|p| p.too_big))),
    metric("op25b_fast_path_active", "1 while the XDP program of the interface may decide in the kernel (datapath.fast_path kernel or unblockable, and the other interface takes redirected frames).", G, &["interface"],
        |r, s| per_side(s, r.fast_active.map(u64::from))),
    metric("op25b_fast_path_mode", "datapath.fast_path in force: 1 for the mode (kernel: the XDP program judges; unblockable: it forwards only what no class can block; off: every frame through the workers), 0 for the others.", G, &["mode"], |r, s| {
        for m in [FastPathMode::Kernel, FastPathMode::Unblockable, FastPathMode::Off] {
            s.put(&[m.as_str()], u8::from(m == r.fast_mode));
        }
    }),
    metric("op25b_xdp_kernel_policy_valid", "1 while the XDP program's copy of the policy and overlay is complete and in force; 0 after a failed write (retried every second), when every frame it would judge goes to the workers (op25b_xdp_to_userspace_frames_total{reason=\"no_policy\"}).", G, &[],
        |r, s| s.put(&[], u8::from(r.kernel_policy_valid))),
    metric("op25b_xdp_kernel_policy_write_errors_total", "Writes of the XDP program's copy of the policy or overlay that failed (each retry that fails counts too).", C, &[],
        |r, s| s.put(&[], r.kernel_policy_write_errors)),
    metric("op25b_policy_generation", "Generation of the policy in force (1 at start, +1 per reload).", G, &[],
        |r, s| s.put(&[], r.generation)),
    metric("op25b_policy_table_bytes", "Memory of the policy's lookup tables.", G, &[],
        |r, s| s.put(&[], r.table_bytes)),
    metric("op25b_policy_prefixes", "Subscriber prefixes per class and family.", G, &["class", "family"], |r, s| {
        for (name, v4, v6) in &r.prefixes {
            s.put(&[name, "ipv4"], v4);
            s.put(&[name, "ipv6"], v6);
        }
    }),
    metric("op25b_config_last_reload_successful", "1 if the last reload was applied (1 from start: the start-up config loaded).", G, &[],
        |r, s| s.put(&[], u64::from(r.reload.last_ok))),
    metric("op25b_config_last_reload_timestamp_seconds", "Unix time of the last reload attempt (the start time before any).", G, &[],
        |r, s| s.put(&[], r.reload.last_at)),
    metric("op25b_config_last_reload_success_timestamp_seconds", "Unix time of the last applied reload (the start time before any).", G, &[],
        |r, s| s.put(&[], r.reload.last_success_at)),
    metric("op25b_config_restart_pending", "Restart-only settings that differ between the config file (as of the last reload) and what runs; 0 when a restart would change nothing.", G, &[],
        |r, s| s.put(&[], r.reload.restart_pending.len())),
    metric("op25b_config_reloads_total", "Reload attempts by result (applied, refused).", C, &["result"], |r, s| {
        s.put(&["applied"], r.reload.applied);
        s.put(&["refused"], r.reload.refused);
    }),
    metric("op25b_info", "XDP mode in use.", G, &["mode", "version"],
        |r, s| s.put(&[&r.mode, env!("CARGO_PKG_VERSION")], 1)),
    metric("op25b_overlay_entries", "Runtime overlay entries (per-subscriber classes) by source.", G, &["source"], |r, s| {
        for (src, n) in &r.overlay_entries {
            s.put(&[src], n);
        }
    }),
    metric("op25b_radius_requests_total", "RADIUS Accounting-Requests by result: accepted (answered and applied), duplicate (a retransmission: answered again, not applied), stale_timestamp and too_many_prefixes (refused: not applied, not answered), unknown_client, bad_authenticator, malformed (dropped).", C, &["result"], |r, s| {
        for (result, n) in &r.radius_requests {
            s.put(&[result], n);
        }
    }),
    metric("op25b_radius_entries_refused_total", "Overlay entries of accepted RADIUS requests that were refused: overlay_full (radius.max_entries reached), prefix_too_short (radius.min_ipv6_prefix_len), out_of_order (a Start whose Event-Timestamp is older than the entry of the session holding the address).", C, &["reason"], |r, s| {
        for (reason, n) in &r.radius_refused {
            s.put(&[reason], n);
        }
    }),
    metric("op25b_overlay_changes_total", "Runtime overlay entries added (or replaced), removed and expired; of the added, the auto-quarantined.", C, &["op"], |r, s| {
        for (op, n) in r.overlay_changes {
            s.put(&[op], n);
        }
    }),
    metric("op25b_overlay_state_errors_total", "The overlay's state file: lines skipped at start (bad_line: not UTF-8, not JSON, not a valid entry) and saves that failed (save_failed; each is retried, and the stop saves).", C, &["kind"], |r, s| {
        for (kind, n) in r.state_errors {
            s.put(&[kind], n);
        }
    }),
    metric("op25b_build_info", "The running build: version, git revision, compiler.", G, &["version", "revision", "rustc"], |_, s| {
        let build = [env!("CARGO_PKG_VERSION"), env!("OP25B_REVISION"), env!("OP25B_RUSTC")];
        s.put(&build, 1);
    }),
    metric("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", G, &[],
        |r, s| s.put(&[], format_args!("{:.3}", r.process.start_time_seconds))),
    metric("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", C, &[],
        |r, s| s.put(&[], format_args!("{:.2}", r.process.cpu_seconds))),
    metric("process_resident_memory_bytes", "Resident memory size in bytes.", G, &[],
        |r, s| s.put(&[], r.process.resident_memory_bytes)),
    metric("process_virtual_memory_bytes", "Virtual memory size in bytes.", G, &[],
        |r, s| s.put(&[], r.process.virtual_memory_bytes)),
    metric("process_open_fds", "Number of open file descriptors.", G, &[],
        |r, s| s.put(&[], r.process.open_fds)),
    metric("process_max_fds", "Maximum number of open file descriptors.", G, &[],
        |r, s| s.put(&[], r.process.max_fds)),
    metric("op25b_uptime_seconds", "Seconds since start.", G, &[],
        |r, s| s.put(&[], format_args!("{:.1}", r.uptime_seconds))),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// configs/prometheus/metric-names.txt (which scripts/check_monitoring.sh checks the
    /// alert rules and the dashboard against) names exactly the schema's metrics.
    #[test]
    fn schema_names_match_metric_names_txt() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/prometheus/metric-names.txt"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut listed: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let mut schema: Vec<&str> = families().map(|f| f.name).collect();
        listed.sort_unstable();
        schema.sort_unstable();
        assert_eq!(listed, schema, "{path} and observe/schema.rs disagree");
        let unique: std::collections::BTreeSet<_> = schema.iter().collect();
        assert_eq!(unique.len(), schema.len(), "a metric declared twice");
    }
}
