//! What the daemon says about its counters: the periodic counter line, systemd's
//! `STATUS=` line and the final report of `op25b run`.

use crate::datapath::counters::{Counter, Snapshot, WorkerCounters};
use crate::datapath::io::Side;
use crate::datapath::{self};
use crossbeam_utils::CachePadded;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The figures of the counter line, its log fields and systemd's status line, read
/// from one snapshot of every frame handled ([`crate::control::observe::schema::Counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Frames judged, received on the subscriber side (workers and XDP).
    pub out_frames: u64,
    /// ... received on the upstream side.
    pub in_frames: u64,
    /// Of them, judged by the XDP programs.
    pub xdp_judged: u64,
    pub blocked_out: u64,
    pub blocked_in: u64,
    pub replies: u64,
    pub replies_limited: u64,
    pub tx_ring_full: u64,
    pub fill_starved: u64,
    pub kernel_drops: u64,
    pub overload_guard_engaged: u64,
    pub frames_free: u64,
    pub frames_total: u64,
}

impl Figures {
    pub fn of(s: &Snapshot) -> Figures {
        Figures {
            out_frames: s.judged(Side::Subscriber),
            in_frames: s.judged(Side::Upstream),
            xdp_judged: s.xdp_judged[0] + s.xdp_judged[1],
            blocked_out: s.blocked(Side::Subscriber),
            blocked_in: s.blocked(Side::Upstream),
            replies: s.get(Counter::RepliesSent),
            replies_limited: s.get(Counter::RepliesRateLimited),
            tx_ring_full: s.get(Counter::TxRingFull),
            fill_starved: s.get(Counter::FillStarved),
            kernel_drops: s.kernel[0].total() + s.kernel[1].total(),
            overload_guard_engaged: s.get(Counter::OverloadGuardEngaged),
            frames_free: s.census.free,
            frames_total: s.census.total,
        }
    }
}

/// Per second of `pick` from `prev` to `now`, `secs` apart.
fn rate(now: &Figures, prev: &Figures, secs: f64, pick: fn(&Figures) -> u64) -> f64 {
    pick(now).saturating_sub(pick(prev)) as f64 / secs.max(1e-9)
}

pub fn stats_line(now: &Snapshot, prev: &Snapshot, secs: f64) -> String {
    let (n, p) = (Figures::of(now), Figures::of(prev));
    let rate = |pick: fn(&Figures) -> u64| rate(&n, &p, secs, pick);
    format!(
        "out {:.0} fps (total {}), in {:.0} fps (total {}), of them judged in XDP {:.0} fps (total {}), blocked out {} in {}, replies {} (limited {}), tx full {}, fill starved {}, kernel drops {}, overload guard engaged {}, frames {}/{} free",
        rate(|f| f.out_frames),
        n.out_frames,
        rate(|f| f.in_frames),
        n.in_frames,
        rate(|f| f.xdp_judged),
        n.xdp_judged,
        n.blocked_out,
        n.blocked_in,
        n.replies,
        n.replies_limited,
        n.tx_ring_full,
        n.fill_starved,
        n.kernel_drops,
        n.overload_guard_engaged,
        n.frames_free,
        n.frames_total,
    )
}

/// How often the `STATUS=` line for systemd is refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The one-line state for systemd's `STATUS=` (shown by `systemctl status`).
pub struct StatusLine {
    prev: Snapshot,
    prev_fast: u64,
    at: Instant,
}

impl StatusLine {
    pub fn new(now: Snapshot, fast: u64) -> Self {
        Self {
            prev: now,
            prev_fast: fast,
            at: Instant::now(),
        }
    }

    pub fn next(&mut self, now: Snapshot, fast: u64, mode: &str, generation: u64) -> String {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        let (n, p) = (Figures::of(&now), Figures::of(&self.prev));
        let rate = |pick: fn(&Figures) -> u64| rate(&n, &p, secs, pick);
        let line = format!(
            "running ({mode}), policy generation {generation}: judged out {:.0} fps, in {:.0} fps (in XDP {:.0} fps), fast path {:.0} fps, blocked {:.0}/s",
            rate(|f| f.out_frames),
            rate(|f| f.in_frames),
            rate(|f| f.xdp_judged),
            fast.saturating_sub(self.prev_fast) as f64 / secs,
            rate(|f| f.blocked_out + f.blocked_in),
        );
        self.prev = now;
        self.prev_fast = fast;
        self.at = Instant::now();
        line
    }
}

/// What `op25b run` prints when it stops: counters, conservation, fast path, link drops,
/// per worker.
pub struct FinalReport<'a> {
    pub sum: &'a Snapshot,
    /// Every class name seen since start, with its counter slot.
    pub class_slots: &'a [(usize, String)],
    pub conserved: bool,
    pub counters: &'a [Arc<CachePadded<WorkerCounters>>],
    pub exits: &'a [datapath::WorkerExit],
    /// What went wrong at shutdown (empty: a clean one).
    pub notes: &'a [String],
    /// The XDP mode in use ("native XDP, copy mode", ...).
    pub mode: &'a str,
    /// The XDP programs' own counters and verdicts per side (the maps outlive the
    /// detached programs), and `datapath.fast_path` in force.
    pub fast_stats: [datapath::xdp::PathStats; 2],
    pub fast_verdicts: [datapath::xdp::KernelVerdicts; 2],
    pub fast_mode: datapath::settings::FastPathMode,
    pub fast_enabled: bool,
    /// The kernel's copy of the policy: in force at stop, and its failed writes.
    pub kernel_valid: bool,
    pub kernel_errors: u64,
    /// Interface drop counters at start and at stop.
    pub links: [[Option<datapath::nic::LinkDrops>; 2]; 2],
    pub seconds: f64,
}

impl FinalReport<'_> {
    pub fn to_json(&self) -> serde_json::Value {
        let mut report = self.sum.to_json(self.class_slots);
        report["frames_conserved"] =
            serde_json::json!(self.conserved && self.sum.census.conserved());
        report["workers"] = serde_json::json!(self.counters.len());
        // The XDP programs' own counters (the maps outlive the detached programs).
        let [fp_sub, fp_up] = self.fast_stats;
        let [v_sub, v_up] = &self.fast_verdicts;
        let side = |fp: datapath::xdp::PathStats, v: &datapath::xdp::KernelVerdicts| {
            let mut j = fp.to_json();
            j["verdicts"] = v.to_json();
            j["dropped_by_verdict"] = serde_json::json!(v.verdicts[1].iter().sum::<u64>());
            j
        };
        report["fast_path"] = serde_json::json!({
            "enabled": self.fast_enabled,
            "mode": self.fast_mode.as_str(),
            "kernel_policy_valid": self.kernel_valid,
            "kernel_policy_write_errors": self.kernel_errors,
            "subscriber": side(fp_sub, v_sub),
            "upstream": side(fp_up, v_up),
        });
        // The interfaces' own drop counters over the run (None: /sys of another namespace).
        let link = |i: usize| match (self.links[0][i], self.links[1][i]) {
            (Some(a), Some(b)) => serde_json::json!(b.since(a)),
            _ => serde_json::Value::Null,
        };
        report["link_drops"] = serde_json::json!({"subscriber": link(0), "upstream": link(1)});
        report["per_worker"] = self
            .counters
            .iter()
            .zip(self.exits)
            .map(|(c, e)| {
                let s = c.snapshot();
                serde_json::json!({
                    "rx_frames": {"subscriber": s.rx_frames[0], "upstream": s.rx_frames[1]},
                    "tx_frames": {"subscriber": s.tx_frames[0], "upstream": s.tx_frames[1]},
                    "frames_conserved": e.census.conserved(),
                })
            })
            .collect::<Vec<_>>()
            .into();
        report["mode"] = serde_json::json!(self.mode);
        report["shutdown"] = serde_json::json!(if self.notes.is_empty() {
            "clean shutdown".to_string()
        } else {
            self.notes.join("; ")
        });
        report["seconds"] = serde_json::json!(self.seconds);
        report
    }
}

/// The periodic counter line: the numbers as fields (JSON logs get them as keys) and a
/// readable message.
pub fn log_stats(
    now: &Snapshot,
    prev: &Snapshot,
    secs: f64,
    fast_now: &[datapath::xdp::PathStats; 2],
    prev_fast: &[datapath::xdp::PathStats; 2],
) {
    let (n, p) = (Figures::of(now), Figures::of(prev));
    let rate = |pick: fn(&Figures) -> u64| rate(&n, &p, secs, pick).round() as u64;
    let fps = |i: usize| fast_now[i].since(&prev_fast[i]).fast as f64 / secs.max(1e-9);
    tracing::info!(
        target: "op25b::stats",
        out_fps = rate(|f| f.out_frames),
        out_frames = n.out_frames,
        in_fps = rate(|f| f.in_frames),
        in_frames = n.in_frames,
        xdp_judged_fps = rate(|f| f.xdp_judged),
        xdp_judged_frames = n.xdp_judged,
        blocked_out = n.blocked_out,
        blocked_in = n.blocked_in,
        replies = n.replies,
        replies_limited = n.replies_limited,
        tx_ring_full = n.tx_ring_full,
        fill_starved = n.fill_starved,
        kernel_drops = n.kernel_drops,
        frames_free = n.frames_free,
        frames_total = n.frames_total,
        fast_out_fps = fps(0).round() as u64,
        fast_in_fps = fps(1).round() as u64,
        "{}, fast path out {:.0} fps in {:.0} fps",
        stats_line(now, prev, secs),
        fps(0),
        fps(1)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::observe::metrics::tests::{golden, golden_counters};

    /// The final report's JSON and the counter line stay byte for byte what they were
    /// (scripts/soak.py, bench.sh and the lab tests read the report's keys).
    #[test]
    fn report_and_stats_line_match_golden() {
        let (workers, kernel, slots) = golden_counters();
        let mut sum = Snapshot::default();
        for w in &workers {
            sum.merge(w);
        }
        sum.merge(&kernel);
        let counters: Vec<Arc<CachePadded<WorkerCounters>>> = (0..2)
            .map(|w| {
                let c = WorkerCounters::new();
                c.rx(Side::Subscriber, 10 + w, 640);
                c.tx(Side::Upstream, 9 + w, 600);
                Arc::new(CachePadded::new(c))
            })
            .collect();
        let census = crate::datapath::counters::FrameCensus {
            total: 8,
            free: 8,
            ..Default::default()
        };
        let exits = [
            datapath::WorkerExit { census },
            datapath::WorkerExit { census },
        ];
        let path = datapath::xdp::PathStats {
            fast: 70,
            fast_tcp: 60,
            user_port: 5,
            too_big: 1,
            ..Default::default()
        };
        let mut verdicts = [
            datapath::xdp::KernelVerdicts::default(),
            datapath::xdp::KernelVerdicts::default(),
        ];
        verdicts[0].verdicts[1][crate::policy::Reason::BlockedPort.index()] = 30;
        verdicts[1].verdicts[0][crate::policy::Reason::PortOpen.index()] = 4;
        let drops = |n: u64| datapath::nic::LinkDrops {
            rx_dropped: n,
            tx_dropped: n + 3,
        };
        let notes = ["worker 1 stopped late".to_string()];
        let report = FinalReport {
            sum: &sum,
            class_slots: &slots,
            conserved: true,
            counters: &counters,
            exits: &exits,
            notes: &notes,
            mode: "native XDP, copy mode",
            fast_stats: [path, path],
            fast_verdicts: verdicts,
            fast_mode: datapath::settings::FastPathMode::Kernel,
            fast_enabled: true,
            kernel_valid: true,
            kernel_errors: 2,
            links: [[Some(drops(1)), None], [Some(drops(5)), None]],
            seconds: 12.5,
        };
        let json = serde_json::to_string_pretty(&report.to_json()).unwrap();
        golden("report.json", &(json + "\n"));
        let mut prev = sum.clone();
        prev.rx_frames = [prev.rx_frames[0] / 2, prev.rx_frames[1] / 3];
        prev.xdp_judged = [1, 2];
        prev.verdicts[0][1] = [0; crate::policy::Reason::COUNT];
        let line =
            stats_line(&sum, &prev, 2.0) + "\n" + &stats_line(&sum, &Snapshot::default(), 12.5);
        golden("stats_line.txt", &(line + "\n"));
    }
}
