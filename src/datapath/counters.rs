//! Per-worker counters: one writer (the worker), many readers (the control plane).
//!
//! Each worker owns one cache-padded [`WorkerCounters`]; it updates them with relaxed
//! load + store (no locked read-modify-write: there is one writer), and the control
//! plane sums them across workers. Nothing here allocates after start-up.

use super::io::{KernelDrops, Side};
use crate::classify::NonIpKind;
use crate::policy::{Action, Policy, Reason, Verdict, COUNTER_SLOTS};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares [`Counter`], the worker's scalar counters, once each: the variant, its key
/// (the final report's `events`), its Prometheus metric and that metric's help. The
/// order of declaration is the order of /metrics.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident: $key:literal, $metric:literal, $help:literal;)*) => {
        /// Scalar counters of a worker (one metric each, labelled by worker).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Counter {
            pub const COUNT: usize = [$($key),*].len();
            pub const ALL: [Counter; Self::COUNT] = [$(Counter::$variant),*];

            /// Its key in the final report's `events`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Counter::$variant => $key,)*
                }
            }

            /// Its Prometheus metric.
            pub fn metric(self) -> &'static str {
                match self {
                    $(Counter::$variant => $metric,)*
                }
            }

            /// Its metric's help text.
            pub fn help(self) -> &'static str {
                match self {
                    $(Counter::$variant => $help,)*
                }
            }
        }
    };
}

counters! {
    /// Replies (RST / ICMP) built and queued.
    RepliesSent: "replies_sent", "op25b_replies_sent_total",
        "Replies (TCP RST / ICMP prohibited) built and queued for rejected segments.";
    /// Rejects answered by silence because the token bucket was empty.
    RepliesRateLimited: "replies_rate_limited", "op25b_replies_rate_limited_total",
        "Rejected segments answered by silence because the reply token bucket was empty (policy.reject_rate).";
    /// Rejects answered by silence because no free frame or the builder refused.
    RepliesFailed: "replies_failed", "op25b_replies_failed_total",
        "Rejected segments answered by silence because no free frame was at hand or the reply could not be built.";
    /// Frames dropped because the TX ring had no room (per burst, the overflow).
    TxRingFull: "tx_ring_full", "op25b_tx_ring_full_drops_total",
        "Frames dropped because the TX ring of the outgoing interface had no room.";
    /// Fill ring needed frames but the free list was empty.
    FillStarved: "fill_starved", "op25b_fill_starved_total",
        "Times a fill ring needed frames and the worker had none free.";
    /// Times a side's overload guard engaged (worker.rs, "Overload guard").
    OverloadGuardEngaged: "overload_guard_engaged", "op25b_overload_guard_engaged_total",
        "Times a worker's overload guard engaged on an interface (sustained overload: the kernel kept dropping frames for an empty fill ring), bounding its receive backlog.";
    /// TX kicks (sendto) and fill-ring wakeups.
    Wakeups: "wakeups", "op25b_worker_wakeups_total",
        "TX kicks (sendto) and fill-ring wakeups the worker made.";
    /// Times the worker slept in poll().
    Sleeps: "sleeps", "op25b_worker_sleeps_total",
        "Times the worker slept in poll() when idle.";
    /// Loop iterations that found no frame and no completion.
    EmptyPolls: "empty_polls", "op25b_worker_empty_polls_total",
        "Loop iterations that found no frame and no completion.";
    /// Policy snapshots picked up (generation changes seen).
    PolicySwaps: "policy_swaps", "op25b_worker_policy_swaps_total",
        "New policy snapshots the worker picked up.";
    /// SMTP notice: SYNs answered with a cookie SYN-ACK.
    NoticeSynAcks: "notice_syn_acks", "op25b_smtp_notice_syn_acks_total",
        "SMTP notice: SYNs answered with a cookie SYN-ACK (reply: smtp-notice).";
    /// SMTP notice: greetings sent (the client's ACK carried a valid cookie).
    NoticeGreetings: "notice_greetings", "op25b_smtp_notice_greetings_total",
        "SMTP notice: 554 greetings sent to a client whose ACK carried a valid cookie (notices completed).";
    /// SMTP notice: segments answered with a RST instead (data before the greeting, a
    /// bad or late cookie, the client's FIN, a SYN over the budget).
    NoticeRefused: "notice_refused", "op25b_smtp_notice_refused_total",
        "SMTP notice: segments answered with a RST instead (data before the greeting, a bad or late cookie, a SYN over the reply budget).";
}

/// The class names behind the per-class counter slots ([`COUNTER_SLOTS`]): a name keeps
/// its slot for the life of the process, so a reload that adds, removes or renames
/// classes (and so shifts their [`crate::policy::ClassId`]s) never moves a count to
/// another name, and a class that comes back continues its count. Every policy gets its
/// id -> slot table from here before it is published ([`super::PolicyCell`]), and a
/// worker counts under the slot of the policy it judged the frame with. The last slot
/// is shared by the names beyond the first `COUNTER_SLOTS - 1` ever seen, reported as
/// [`OVERFLOW_CLASS`].
#[derive(Debug, Default)]
pub struct ClassSlots {
    names: Vec<String>,
    by_name: std::collections::HashMap<String, u16>,
    overflowed: bool,
}

/// The name reported for the shared last counter slot.
pub const OVERFLOW_CLASS: &str = "(other)";

impl ClassSlots {
    /// Gives `policy` its id -> slot table (new names get new slots); a policy that
    /// already has one keeps it.
    pub fn assign(&mut self, policy: &Policy) {
        let slots: Box<[u16]> = policy
            .classes()
            .iter()
            .map(|c| self.slot_of(&c.name))
            .collect();
        policy.set_counter_slots(slots);
    }

    fn slot_of(&mut self, name: &str) -> u16 {
        if let Some(&s) = self.by_name.get(name) {
            return s;
        }
        if self.names.len() >= COUNTER_SLOTS - 1 {
            self.overflowed = true;
            return (COUNTER_SLOTS - 1) as u16;
        }
        let s = self.names.len() as u16;
        self.names.push(name.to_string());
        self.by_name.insert(name.to_string(), s);
        s
    }

    /// Every (slot, name) given out so far, sorted by name (the overflow slot last, if
    /// used).
    pub fn named(&self) -> Vec<(usize, String)> {
        let mut v: Vec<(usize, String)> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        if self.overflowed {
            v.push((COUNTER_SLOTS - 1, OVERFLOW_CLASS.to_string()));
        }
        v
    }

    /// The name behind `slot`.
    pub fn name(&self, slot: usize) -> Option<&str> {
        match self.names.get(slot) {
            Some(n) => Some(n),
            None if slot == COUNTER_SLOTS - 1 && self.overflowed => Some(OVERFLOW_CLASS),
            None => None,
        }
    }
}

/// The ports reported separately for blocked frames; everything else is "other".
pub const PORTS: [u16; 3] = [25, 465, 587];
pub const PORT_SLOTS: usize = PORTS.len() + 1;

/// Map a destination port to its slot in the per-port counters.
#[inline]
pub fn port_slot(port: Option<u16>) -> usize {
    port.and_then(|p| PORTS.iter().position(|&x| x == p))
        .unwrap_or(PORTS.len())
}

/// The name of each port slot, in slot order: the port, then `other` (labels of
/// /metrics, keys of the final report).
pub fn port_labels() -> [String; PORT_SLOTS] {
    std::array::from_fn(|i| PORTS.get(i).map_or("other".into(), u16::to_string))
}

/// Frame-ownership gauges (see docs/architecture.md): where the worker's UMEM frames are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrameCensus {
    /// Frames the worker's UMEM holds in total.
    pub total: u64,
    /// On the worker's free list.
    pub free: u64,
    /// Given to the kernel through a fill ring, not yet received (per side).
    pub fill: [u64; 2],
    /// Queued for transmit, not yet completed (per side).
    pub tx: [u64; 2],
}

impl FrameCensus {
    /// True when every frame is accounted for exactly once.
    pub fn conserved(&self) -> bool {
        self.free + self.fill[0] + self.fill[1] + self.tx[0] + self.tx[1] == self.total
    }
}

/// One worker's counters. Cache-padded by the owner (`CachePadded<WorkerCounters>`).
#[derive(Debug)]
pub struct WorkerCounters {
    rx_frames: [AtomicU64; 2],
    rx_bytes: [AtomicU64; 2],
    tx_frames: [AtomicU64; 2],
    tx_bytes: [AtomicU64; 2],
    /// [rx side][`Action`][reason]
    verdicts: [[[AtomicU64; Reason::COUNT]; Action::COUNT]; 2],
    /// Blocked (drop + reject) frames per rx side and port slot.
    blocked_ports: [[AtomicU64; PORT_SLOTS]; 2],
    /// Blocked frames per source class (outbound) or destination class (inbound), by
    /// counter slot ([`ClassSlots`]).
    blocked_classes: Box<[AtomicU64]>,
    /// [rx side][`NonIpKind`]: frames that are not IPv4/IPv6 (forwarded).
    non_ip: [[AtomicU64; NonIpKind::COUNT]; 2],
    scalars: [AtomicU64; Counter::COUNT],
    census: [AtomicU64; 6],
    /// Kernel socket counters per side (XDP_STATISTICS), see [`KernelDrops`].
    kernel: [[AtomicU64; 3]; 2],
    /// Per side: 1 while the overload guard is engaged.
    guard: [AtomicU64; 2],
    /// Per side: the receive backlog at the worker's last tick (frames in the RX ring).
    backlog: [AtomicU64; 2],
    /// Policy generation this worker last loaded.
    pub policy_generation: AtomicU64,
    /// [`crate::clock::beat_ms`] milliseconds when the worker last went round its loop (0: not
    /// yet). The control thread's watchdog and the metrics read it.
    heartbeat_ms: AtomicU64,
    /// The worker's top blocked sources, copied out about once a second (the worker
    /// only ever `try_lock`s it, so it never waits for the control thread).
    pub top: std::sync::Mutex<Vec<crate::topk::TopEntry>>,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    // One writer: a plain load + store is enough and avoids a locked instruction.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Default for WorkerCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerCounters {
    pub fn new() -> Self {
        Self {
            rx_frames: Default::default(),
            rx_bytes: Default::default(),
            tx_frames: Default::default(),
            tx_bytes: Default::default(),
            verdicts: Default::default(),
            blocked_ports: Default::default(),
            blocked_classes: (0..COUNTER_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            non_ip: Default::default(),
            scalars: Default::default(),
            census: Default::default(),
            kernel: Default::default(),
            guard: Default::default(),
            backlog: Default::default(),
            policy_generation: AtomicU64::new(0),
            heartbeat_ms: AtomicU64::new(0),
            top: std::sync::Mutex::new(Vec::with_capacity(crate::topk::WORKER_SLOTS)),
        }
    }

    /// Records that the worker is going round its loop (every 64 iterations and after
    /// every idle wait).
    #[inline]
    pub fn beat(&self, now: std::time::Instant) {
        self.heartbeat_ms
            .store(crate::clock::beat_ms_at(now).max(1), Relaxed);
    }

    /// [`crate::clock::beat_ms`] milliseconds of the last [`WorkerCounters::beat`]; 0 before the
    /// first.
    pub fn heartbeat_ms(&self) -> u64 {
        self.heartbeat_ms.load(Relaxed)
    }

    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        bump(&self.scalars[c as usize], n);
    }

    #[inline]
    pub fn rx(&self, side: Side, frames: u64, bytes: u64) {
        bump(&self.rx_frames[side.index()], frames);
        bump(&self.rx_bytes[side.index()], bytes);
    }

    #[inline]
    pub fn tx(&self, side: Side, frames: u64, bytes: u64) {
        bump(&self.tx_frames[side.index()], frames);
        bump(&self.tx_bytes[side.index()], bytes);
    }

    /// Counts a verdict; `class_slot` is the counter slot of the frame's class
    /// ([`Policy::counter_slot`] of the policy that judged it).
    #[inline]
    pub fn verdict(&self, side: Side, v: Verdict, class_slot: Option<usize>, port: Option<u16>) {
        bump(
            &self.verdicts[side.index()][v.action_index()][v.reason().index()],
            1,
        );
        if v.is_blocked() {
            bump(&self.blocked_ports[side.index()][port_slot(port)], 1);
            if let Some(c) = class_slot.and_then(|s| self.blocked_classes.get(s)) {
                bump(c, 1);
            }
        }
    }

    /// Counts a frame received on `side` that is not IPv4/IPv6.
    #[inline]
    pub fn non_ip(&self, side: Side, kind: NonIpKind) {
        bump(&self.non_ip[side.index()][kind.index()], 1);
    }

    pub fn set_census(&self, c: &FrameCensus) {
        let v = [c.total, c.free, c.fill[0], c.fill[1], c.tx[0], c.tx[1]];
        for (slot, v) in self.census.iter().zip(v) {
            slot.store(v, Relaxed);
        }
    }

    /// Stores the kernel's socket counters of `side` (they are cumulative already).
    pub fn set_kernel(&self, side: Side, k: KernelDrops) {
        for (slot, v) in
            self.kernel[side.index()]
                .iter()
                .zip([k.rx_dropped, k.rx_ring_full, k.fill_empty])
        {
            slot.store(v, Relaxed);
        }
    }

    /// Records `side`'s receive backlog (frames waiting in its RX ring).
    pub fn set_backlog(&self, side: Side, frames: usize) {
        self.backlog[side.index()].store(frames as u64, Relaxed);
    }

    /// Records whether `side`'s overload guard is engaged.
    pub fn set_guard(&self, side: Side, engaged: bool) {
        self.guard[side.index()].store(u64::from(engaged), Relaxed);
    }

    /// A consistent-enough copy for reporting (each field is read once).
    pub fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let mut s = Snapshot::default();
        for i in 0..2 {
            s.rx_frames[i] = l(&self.rx_frames[i]);
            s.rx_bytes[i] = l(&self.rx_bytes[i]);
            s.tx_frames[i] = l(&self.tx_frames[i]);
            s.tx_bytes[i] = l(&self.tx_bytes[i]);
            for a in 0..Action::COUNT {
                for r in 0..Reason::COUNT {
                    s.verdicts[i][a][r] = l(&self.verdicts[i][a][r]);
                }
            }
            for p in 0..PORT_SLOTS {
                s.blocked_ports[i][p] = l(&self.blocked_ports[i][p]);
            }
            for k in 0..NonIpKind::COUNT {
                s.non_ip[i][k] = l(&self.non_ip[i][k]);
            }
        }
        s.blocked_classes = self.blocked_classes.iter().map(l).collect();
        for (i, c) in self.scalars.iter().enumerate() {
            s.scalars[i] = l(c);
        }
        let c: Vec<u64> = self.census.iter().map(l).collect();
        s.census = FrameCensus {
            total: c[0],
            free: c[1],
            fill: [c[2], c[3]],
            tx: [c[4], c[5]],
        };
        for i in 0..2 {
            let k = &self.kernel[i];
            s.kernel[i] = KernelDrops {
                rx_dropped: l(&k[0]),
                rx_ring_full: l(&k[1]),
                fill_empty: l(&k[2]),
            };
            s.guard[i] = l(&self.guard[i]) != 0;
            s.backlog[i] = l(&self.backlog[i]);
        }
        s.policy_generation = l(&self.policy_generation);
        s
    }
}

/// Plain copy of one worker's (or the sum of all workers') counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub rx_frames: [u64; 2],
    pub rx_bytes: [u64; 2],
    pub tx_frames: [u64; 2],
    pub tx_bytes: [u64; 2],
    /// [rx side][`Action`][reason].
    pub verdicts: [[[u64; Reason::COUNT]; Action::COUNT]; 2],
    pub blocked_ports: [[u64; PORT_SLOTS]; 2],
    /// By counter slot ([`ClassSlots`]).
    pub blocked_classes: Vec<u64>,
    /// [rx side][`NonIpKind`].
    pub non_ip: [[u64; NonIpKind::COUNT]; 2],
    pub scalars: [u64; Counter::COUNT],
    pub census: FrameCensus,
    /// Frames the kernel could not give the worker, per side.
    pub kernel: [KernelDrops; 2],
    /// Per side: whether the overload guard is engaged.
    pub guard: [bool; 2],
    /// Per side: frames waiting in the RX ring at the worker's last tick.
    pub backlog: [u64; 2],
    pub policy_generation: u64,
    /// Per side: frames the XDP program judged in the kernel (mode kernel: forwarded or
    /// dropped with a verdict); their verdicts are in `verdicts` (never a worker's, so
    /// not in `rx_frames`). See `Snapshot::from_kernel` (datapath::xdp).
    pub xdp_judged: [u64; 2],
}

impl Snapshot {
    pub fn get(&self, c: Counter) -> u64 {
        self.scalars[c as usize]
    }

    /// Frames judged on `side`: by the workers (each frame a worker receives gets a
    /// verdict) and by the XDP program.
    pub fn judged(&self, side: Side) -> u64 {
        self.rx_frames[side.index()] + self.xdp_judged[side.index()]
    }

    /// Frames with `action` received on `side`.
    pub fn action_total(&self, side: Side, action: Action) -> u64 {
        self.verdicts[side.index()][action.index()].iter().sum()
    }

    /// Frames received on `side` that were blocked (dropped or rejected).
    pub fn blocked(&self, side: Side) -> u64 {
        Action::BLOCKING
            .iter()
            .map(|&a| self.action_total(side, a))
            .sum()
    }

    /// Adds another snapshot (to sum workers). Census totals add up too.
    pub fn merge(&mut self, o: &Snapshot) {
        for i in 0..2 {
            self.rx_frames[i] += o.rx_frames[i];
            self.rx_bytes[i] += o.rx_bytes[i];
            self.tx_frames[i] += o.tx_frames[i];
            self.tx_bytes[i] += o.tx_bytes[i];
            for a in 0..Action::COUNT {
                for r in 0..Reason::COUNT {
                    self.verdicts[i][a][r] += o.verdicts[i][a][r];
                }
            }
            for p in 0..PORT_SLOTS {
                self.blocked_ports[i][p] += o.blocked_ports[i][p];
            }
            for k in 0..NonIpKind::COUNT {
                self.non_ip[i][k] += o.non_ip[i][k];
            }
            self.kernel[i].rx_dropped += o.kernel[i].rx_dropped;
            self.kernel[i].rx_ring_full += o.kernel[i].rx_ring_full;
            self.kernel[i].fill_empty += o.kernel[i].fill_empty;
            self.xdp_judged[i] += o.xdp_judged[i];
            self.guard[i] |= o.guard[i];
            self.backlog[i] += o.backlog[i];
            self.census.fill[i] += o.census.fill[i];
            self.census.tx[i] += o.census.tx[i];
        }
        if self.blocked_classes.len() < o.blocked_classes.len() {
            self.blocked_classes.resize(o.blocked_classes.len(), 0);
        }
        for (a, b) in self.blocked_classes.iter_mut().zip(&o.blocked_classes) {
            *a += b;
        }
        for i in 0..Counter::COUNT {
            self.scalars[i] += o.scalars[i];
        }
        self.census.total += o.census.total;
        self.census.free += o.census.free;
        self.policy_generation = self.policy_generation.max(o.policy_generation);
    }

    /// Every received frame got exactly one verdict: the verdicts are the workers'
    /// frames and those the XDP program judged.
    pub fn verdicts_account_for_rx(&self) -> bool {
        (0..2).all(|i| {
            let decided: u64 = self.verdicts[i].iter().flatten().sum();
            decided == self.rx_frames[i] + self.xdp_judged[i]
        })
    }

    /// JSON for the final report and for tests (field names are documented in
    /// docs/operations.md).
    /// `slots` names the counter slots ([`ClassSlots::named`]).
    pub fn to_json(&self, slots: &[(usize, String)]) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut sides = Map::new();
        for side in Side::BOTH {
            let i = side.index();
            let mut verdicts = Map::new();
            for action in Action::ALL {
                for r in Reason::ALL {
                    let n = self.verdicts[i][action.index()][r.index()];
                    if n > 0 {
                        verdicts.insert(format!("{}/{}", action.as_str(), r.as_str()), json!(n));
                    }
                }
            }
            let mut ports = Map::new();
            for (p, name) in port_labels().into_iter().enumerate() {
                ports.insert(name, json!(self.blocked_ports[i][p]));
            }
            let non_ip: Map<String, Value> = NonIpKind::ALL
                .iter()
                .map(|k| (k.as_str().to_string(), json!(self.non_ip[i][k.index()])))
                .collect();
            sides.insert(
                side.as_str().into(),
                json!({
                    "rx_frames": self.rx_frames[i], "rx_bytes": self.rx_bytes[i],
                    "judged_in_xdp": self.xdp_judged[i],
                    "tx_frames": self.tx_frames[i], "tx_bytes": self.tx_bytes[i],
                    "verdicts": Value::Object(verdicts),
                    "blocked_ports": Value::Object(ports),
                    "non_ip": Value::Object(non_ip),
                    "kernel_drops": self.kernel[i],
                    "overload_guard": self.guard[i],
                }),
            );
        }
        let mut classes = Map::new();
        for (slot, name) in slots {
            let n = self.blocked_classes.get(*slot).copied().unwrap_or(0);
            classes.insert(name.clone(), json!(n));
        }
        let mut scalars = Map::new();
        for c in Counter::ALL {
            scalars.insert(c.as_str().into(), json!(self.get(c)));
        }
        json!({
            "received_on": Value::Object(sides),
            "blocked_by_class": Value::Object(classes),
            "events": Value::Object(scalars),
            "frames": self.census,
            "frames_conserved": self.census.conserved(),
            "verdicts_account_for_rx": self.verdicts_account_for_rx(),
            "policy_generation": self.policy_generation,
        })
    }
}
