//! Prometheus text format for `GET /metrics`: every metric of the schema
//! ([`super::schema::families`]), rendered from what observation reads
//! ([`MetricsState`], once, into a [`Reading`]).

use super::schema::{families, Family, Reading, Series, Source};
use super::MetricsState;
use std::fmt::Write as _;

/// The exposition text.
pub fn render(state: &MetricsState) -> String {
    text(&Reading::read(state))
}

/// The exposition text of a [`Reading`].
pub fn text(r: &Reading) -> String {
    let mut o = String::with_capacity(16 * 1024);
    for f in families() {
        render_family(&mut o, &f, r);
    }
    o
}

/// One metric: its help, its type and every series.
pub fn render_family(o: &mut String, f: &Family, r: &Reading) {
    let _ = writeln!(o, "# HELP {} {}", f.name, f.help);
    let _ = writeln!(o, "# TYPE {} {}", f.name, f.kind.as_str());
    let mut s = Series { out: o, family: f };
    match f.source {
        Source::Event(c) => {
            for (w, snap) in r.counts.workers.iter().enumerate() {
                s.put(&[&w.to_string()], snap.get(c));
            }
        }
        Source::Read(read) => read(r, &mut s),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::observe::schema::{Counts, ProcessStats};
    use crate::control::observe::ReloadStatus;
    use crate::datapath::counters::{Counter, Snapshot};
    use crate::datapath::io::Side;
    use crate::datapath::settings::FastPathMode;
    use crate::datapath::xdp::PathStats;
    use crate::policy::Reason;

    /// Worker and kernel counters with a different value in every field, two workers,
    /// both sides: what the golden tests render.
    pub(crate) fn golden_counters() -> (Vec<Snapshot>, Snapshot, Vec<(usize, String)>) {
        use crate::classify::NonIpKind;
        use crate::datapath::counters::{FrameCensus, WorkerCounters};
        use crate::datapath::io::KernelDrops;
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
    pub(crate) fn golden_reading() -> Reading {
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
            counts: Counts { workers, kernel },
            heartbeat_age: vec![0.012, 1.5],
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
        golden("metrics.prom", &same_build(&text(&golden_reading())));
    }

    /// The text with op25b_build_info's labels as the golden file has them: the version,
    /// git revision and compiler are the build's own, not the renderer's.
    fn same_build(text: &str) -> String {
        text.lines()
            .map(|l| {
                if l.starts_with("op25b_build_info{") {
                    "op25b_build_info{version=\"V\",revision=\"R\",rustc=\"C\"} 1"
                } else {
                    l
                }
            })
            .fold(String::with_capacity(text.len()), |mut o, l| {
                o.push_str(l);
                o.push('\n');
                o
            })
    }

    /// The build's own labels are rendered (the golden file holds placeholders).
    #[test]
    fn build_info_names_this_build() {
        let t = text(&golden_reading());
        let line = t
            .lines()
            .find(|l| l.starts_with("op25b_build_info{"))
            .expect("op25b_build_info");
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(
            line.contains("revision=\"") && line.ends_with("} 1"),
            "{line}"
        );
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
        let reading = Reading {
            counts: Counts {
                workers: vec![w.snapshot()],
                kernel: Snapshot::from_kernel(&k),
            },
            class_slots: slots.to_vec(),
            ..golden_reading()
        };
        for f in families().take(3) {
            render_family(&mut o, &f, &reading);
        }
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
