//! The worker loop: receive a burst, decide it, act once per ring (DPDK l3fwd's shape:
//! docs/architecture.md, "The worker loop").
//!
//! Generic over [`FrameIo`], so the same loop runs on AF_XDP rings and on the in-memory
//! rings of the tests and benchmarks. Per loop iteration and per side:
//!
//! 1. reap TX completions into the free list;
//! 2. top the fill ring up to its target from the free list;
//! 3. receive up to `burst` frames, classify each (one policy snapshot per burst);
//! 4. forward the passed frames to the other side's TX ring in one batch, recycle the
//!    dropped ones onto the free list, turn rejects into replies (built into free
//!    frames, rate-limited) queued on this side's TX ring in one batch;
//! 5. kick TX when the ring asks for it.
//!
//! Frame conservation: every frame is on the free list, in a fill ring (or its RX
//! ring), or in a TX ring (or its completion ring). [`Worker::census`] counts them; a
//! debug assertion checks the sum after every iteration and the tests check it always.
//!
//! # Overload guard
//!
//! The fill ring is the receive buffer: it holds `fill_target` frames (the ring size) so
//! that a worker descheduled for a while loses nothing. Under *sustained* overload the
//! same depth turns into a standing queue: the RX ring stays full of frames written
//! long ago, each read misses the caches (and the TLB: 16,384 frames span 32 MiB), the
//! worker slows down, and the queue keeps itself full (the bimodal runs of
//! docs/bench/log.md, "Overload"). So each side samples its receive backlog (frames
//! given to the fill ring that the kernel has filled and the worker not yet taken) at
//! every tick, and once per [`GUARD_WINDOW`] reads the kernel's fill-ring-empty count:
//! when the window's average backlog was at least a quarter of the full depth *and* the
//! count grew within the last [`GUARD_HOLD`] (the deep buffer ran dry: frames are being
//! lost anyway), the side's fill target drops to `overload_fill` frames. The RX backlog
//! is then bounded by that, the frames in circulation come off the top of the free list
//! (still in cache), and the excess is dropped by the kernel before it copies it. The
//! full depth comes back after [`GUARD_CALM_WINDOWS`] windows in a row whose average
//! backlog was under half the shallow depth (the ring no longer stands full: the worker
//! keeps up), or when the count has not grown for [`GUARD_HOLD`]. The first matters:
//! under the guard a stall that the deep ring would absorb overflows the shallow one,
//! and those drops alone would keep the guard engaged, and losing, at a load the worker
//! keeps up with. A stall the deep ring absorbs loses nothing and so
//! never engages the guard. One that overflows it and is followed by load well below
//! capacity drains in a fraction of a window; at a load within a few percent of
//! capacity the backlog drains slowly enough that the guard may engage, until the
//! calm windows.

use super::counters::{Counter, FrameCensus, WorkerCounters};
use super::io::{Frame, FrameIo, Side};
use super::settings::DatapathSettings;
use super::PolicyCell;
use crate::classify::notice::{self, CookieKey, NoticeStep};
use crate::classify::{self, reply, Addrs, BurstClassifier, Classified, FrameInfo, Net};
use crate::policy::{Direction, Policy, ReplyKind, Verdict};
use crate::topk::{self, TopK, WORKER_SLOTS};
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loop parameters, compiled from the [`DatapathSettings`] ([`WorkerConfig::new`]; tests
/// and benchmarks write their own).
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// Frames per receive burst.
    pub burst: usize,
    /// Frames each side keeps in its fill ring.
    pub fill_target: usize,
    /// Fill-ring depth while the overload guard is engaged (module doc); `None`: no
    /// guard, the fill ring always holds `fill_target`.
    pub overload_fill: Option<usize>,
    /// Spin (yielding) instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// Replies per second and bucket depth.
    pub reply_rate: u32,
    pub reply_burst: u32,
    /// The SMTP notice's SYN-cookie secret (the same for every worker).
    pub cookie_key: CookieKey,
}

impl WorkerConfig {
    /// The loop parameters of `settings`, with the notice's cookie secret.
    pub fn new(settings: &DatapathSettings, cookie_key: CookieKey) -> Self {
        Self {
            burst: settings.burst as usize,
            fill_target: settings.fill_target(),
            overload_fill: settings.overload_fill(),
            busy_poll: settings.busy_poll,
            reply_rate: settings.reply_rate.per_second,
            reply_burst: settings.reply_rate.burst,
            cookie_key,
        }
    }
}

/// What one iteration did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub received: usize,
    pub completed: usize,
}

impl Progress {
    pub fn idle(&self) -> bool {
        self.received == 0 && self.completed == 0
    }
}

/// Token bucket for replies. Refilled lazily when a reject asks for a token.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    depth: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, depth: u32) -> Self {
        Self {
            tokens: f64::from(depth),
            rate: f64::from(rate),
            depth: f64::from(depth),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        self.take_if_at_least(1.0)
    }

    /// Takes one token if at least `n` are there (a notice's SYN-ACK keeps one back for
    /// its greeting).
    fn take_if_at_least(&mut self, n: f64) -> bool {
        if self.tokens < n {
            let now = Instant::now();
            let dt = now.duration_since(self.last).as_secs_f64();
            self.last = now;
            self.tokens = (self.tokens + dt * self.rate).min(self.depth);
        }
        if self.tokens >= n {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Frames queued this burst for one side's TX ring, with their lengths.
struct TxBatch<D> {
    frames: Vec<Frame<D>>,
    bytes: Vec<u32>,
}

impl<D> TxBatch<D> {
    fn with_capacity(n: usize) -> Self {
        Self {
            frames: Vec::with_capacity(n),
            bytes: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, f: Frame<D>, len: u32) {
        self.frames.push(f);
        self.bytes.push(len);
    }
}

/// The frames the worker holds outside the rings (the free list), and how many it has
/// handed to each side's fill and TX rings.
struct Pool<D> {
    free: Vec<Frame<D>>,
    fill_out: [usize; 2],
    tx_out: [usize; 2],
}

/// Completions taken per call while reaping.
const REAP_CHUNK: usize = 64;

/// The guard judges each side once per window: the average receive backlog over the
/// window's ticks, and whether the kernel's fill-empty count grew within the last
/// [`GUARD_HOLD`].
pub const GUARD_WINDOW: Duration = Duration::from_millis(100);
/// How long the kernel's fill-empty count must stay still before the guard lets go
/// (it lets go sooner after [`GUARD_CALM_WINDOWS`] calm windows; module doc).
pub const GUARD_HOLD: Duration = Duration::from_secs(1);
/// Consecutive calm windows (under half the shallow depth waiting on average) after which
/// the guard lets go. Calm windows also come inside an overload, when the kernel's
/// receive thread on the worker's core delivers less for a while; each release there
/// lets the deep ring stand for a window before the guard engages again
/// (docs/bench/log.md, "when it lets go").
pub const GUARD_CALM_WINDOWS: u32 = 3;

/// The overload guard's state for one side (module doc, "Overload guard").
#[derive(Debug)]
struct Guard {
    engaged: bool,
    /// Start of the current window (the first tick).
    window_start: Option<Instant>,
    /// Receive backlog samples of the current window.
    backlog_sum: u64,
    samples: u64,
    /// The kernel's fill-empty count when last read (once per window).
    fill_empty: u64,
    /// The end of the last window in which that count grew.
    last_drop: Option<Instant>,
    /// Calm windows in a row.
    calm_windows: u32,
}

impl Guard {
    fn new() -> Self {
        Self {
            engaged: false,
            window_start: None,
            backlog_sum: 0,
            samples: 0,
            fill_empty: 0,
            last_drop: None,
            calm_windows: 0,
        }
    }

    /// One tick with the receive backlog now. At the end of a window `fill_empty`
    /// reads the kernel's count (a syscall, once per window), and the guard engages
    /// when the window's average backlog was at least `standing` and the count grew
    /// within the last [`GUARD_HOLD`] (on a shared core the drops come in the NAPI
    /// thread's turns, the standing backlog in the worker's). It lets go after
    /// [`GUARD_CALM_WINDOWS`] windows in a row whose average backlog was below `calm`
    /// (the worker keeps up with what arrives), or when the count has not grown for
    /// [`GUARD_HOLD`]. Returns the new state when it changed.
    fn tick(
        &mut self,
        now: Instant,
        backlog: usize,
        (standing, calm): (usize, usize),
        fill_empty: impl FnOnce() -> u64,
    ) -> Option<bool> {
        self.backlog_sum += backlog as u64;
        self.samples += 1;
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) < GUARD_WINDOW {
            return None;
        }
        let average = self.backlog_sum / self.samples;
        self.window_start = Some(now);
        self.backlog_sum = 0;
        self.samples = 0;
        let count = fill_empty();
        if count > self.fill_empty {
            self.last_drop = Some(now);
        }
        self.fill_empty = count;
        let dropping = self
            .last_drop
            .is_some_and(|at| now.saturating_duration_since(at) < GUARD_HOLD);
        if !self.engaged && dropping && average >= standing as u64 {
            self.engaged = true;
            return Some(true);
        }
        // Not on the drops alone: with the shallow ring a stall that the deep ring
        // would absorb overflows it, and those drops would keep the guard engaged at a
        // load the worker keeps up with.
        if average < calm as u64 {
            self.calm_windows = self.calm_windows.saturating_add(1);
        } else {
            self.calm_windows = 0;
        }
        if self.engaged && (!dropping || self.calm_windows >= GUARD_CALM_WINDOWS) {
            self.engaged = false;
            return Some(false);
        }
        None
    }
}

/// One worker: a queue pair (subscriber queue i, upstream queue i) over one frame area.
pub struct Worker<I: FrameIo> {
    io: I,
    cfg: WorkerConfig,
    policy: Arc<PolicyCell>,
    counters: Arc<CachePadded<WorkerCounters>>,
    total: usize,
    pool: Pool<I::Desc>,
    rx_buf: Vec<Frame<I::Desc>>,
    /// The receive burst parsed and its IPv6 subscribers looked up together.
    burst: BurstClassifier,
    /// Per destination side: forwarded frames to the other side, replies to this one.
    tx: [TxBatch<I::Desc>; 2],
    bucket: TokenBucket,
    generation: u64,
    /// Top sources of blocked outbound attempts (abuse-desk list).
    top: Box<TopK<WORKER_SLOTS>>,
    /// Coarse clock for the list (seconds, updated about once a second).
    now_s: u64,
    /// Per side: the overload guard.
    guard: [Guard; 2],
}

impl<I: FrameIo> Worker<I> {
    /// Takes every frame of `io` onto the free list and primes both fill rings.
    pub fn new(
        mut io: I,
        cfg: WorkerConfig,
        policy: Arc<PolicyCell>,
        counters: Arc<CachePadded<WorkerCounters>>,
    ) -> Self {
        let mut free = io.take_frames();
        let total = free.len();
        // Every frame fits on the free list at once: pushing never allocates.
        free.reserve_exact(total.saturating_sub(free.len()));
        let burst = cfg.burst.max(1);
        let mut w = Self {
            io,
            cfg: WorkerConfig { burst, ..cfg },
            policy,
            counters,
            total,
            pool: Pool {
                free,
                fill_out: [0; 2],
                tx_out: [0; 2],
            },
            rx_buf: Vec::with_capacity(burst),
            burst: BurstClassifier::with_capacity(burst),
            tx: [TxBatch::with_capacity(burst), TxBatch::with_capacity(burst)],
            bucket: TokenBucket::new(cfg.reply_rate, cfg.reply_burst),
            generation: 0,
            top: Box::new(TopK::new()),
            now_s: crate::clock::secs(),
            guard: [Guard::new(), Guard::new()],
        };
        for side in Side::BOTH {
            w.refill(side);
        }
        w.publish_census();
        w
    }

    /// Where every frame is right now.
    pub fn census(&self) -> FrameCensus {
        FrameCensus {
            total: self.total as u64,
            free: self.pool.free.len() as u64,
            fill: [self.pool.fill_out[0] as u64, self.pool.fill_out[1] as u64],
            tx: [self.pool.tx_out[0] as u64, self.pool.tx_out[1] as u64],
        }
    }

    pub fn io(&self) -> &I {
        &self.io
    }

    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// The worker's coarse clock (seconds), the one the notice's cookie slots use.
    pub fn clock_secs(&self) -> u64 {
        self.now_s
    }

    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    fn publish_census(&self) {
        let c = self.census();
        debug_assert!(c.conserved(), "frame conservation broken: {c:?}");
        self.counters.set_census(&c);
    }

    /// The fill-ring depth `side` keeps now: shallower while its overload guard is
    /// engaged.
    pub fn fill_target(&self, side: Side) -> usize {
        match self.cfg.overload_fill {
            Some(n) if self.guard[side.index()].engaged => n.min(self.cfg.fill_target),
            _ => self.cfg.fill_target,
        }
    }

    /// Whether `side`'s overload guard is engaged.
    pub fn guard_engaged(&self, side: Side) -> bool {
        self.guard[side.index()].engaged
    }

    /// Frames received on `side` and waiting in its RX ring.
    pub fn rx_backlog(&mut self, side: Side) -> usize {
        let pending = self.io.fill_pending(side);
        self.pool.fill_out[side.index()].saturating_sub(pending)
    }

    /// Advances both sides' overload guards (the run loop calls it every 64 iterations
    /// and after every wait; tests call it with a clock of their own).
    pub fn guard_tick(&mut self, now: Instant) {
        // Engage: a quarter of the full depth standing in the RX ring, on average over
        // a window (twice the guard's own depth). Let go: under half the guard's depth.
        let Some(shallow) = self.cfg.overload_fill else {
            return;
        };
        let levels = (
            self.cfg.fill_target / 4,
            shallow.min(self.cfg.fill_target) / 2,
        );
        for side in Side::BOTH {
            let backlog = self.rx_backlog(side);
            self.counters.set_backlog(side, backlog);
            let io = &self.io;
            let changed = self.guard[side.index()]
                .tick(now, backlog, levels, || io.kernel_drops(side).fill_empty);
            if let Some(engaged) = changed {
                self.counters.set_guard(side, engaged);
                if engaged {
                    self.counters.add(Counter::OverloadGuardEngaged, 1);
                }
            }
        }
    }

    /// Gives `side`'s fill ring as many free frames as it is short of its target.
    fn refill(&mut self, side: Side) {
        let s = side.index();
        let want = self.fill_target(side).saturating_sub(self.pool.fill_out[s]);
        if want == 0 {
            return;
        }
        let n = want.min(self.pool.free.len());
        if n < want {
            self.counters.add(Counter::FillStarved, 1);
        }
        let n = self.io.fill_free(side, n);
        if n > 0 && self.io.fill(side, &mut self.pool.free, n) == n {
            self.pool.fill_out[s] += n;
        }
    }

    fn reap(&mut self, side: Side) -> usize {
        let s = side.index();
        let mut total = 0;
        loop {
            let n = self.io.completions(side, REAP_CHUNK, &mut self.pool.free);
            self.pool.tx_out[s] -= n;
            total += n;
            if n < REAP_CHUNK {
                return total;
            }
        }
    }

    /// Queues `batch` on `side`'s TX ring; what does not fit goes back to the free list.
    fn send(
        io: &mut I,
        counters: &WorkerCounters,
        pool: &mut Pool<I::Desc>,
        side: Side,
        batch: &mut TxBatch<I::Desc>,
    ) {
        let queued = batch.frames.len();
        if queued == 0 {
            return;
        }
        let k = io.tx_free(side, queued);
        let sent = if k > 0 {
            io.tx(side, &mut batch.frames, k)
        } else {
            0
        };
        pool.tx_out[side.index()] += sent;
        let sent_bytes: u64 = batch.bytes[..sent].iter().map(|&b| u64::from(b)).sum();
        counters.tx(side, sent as u64, sent_bytes);
        if !batch.frames.is_empty() {
            counters.add(Counter::TxRingFull, batch.frames.len() as u64);
            pool.free.append(&mut batch.frames);
        }
        batch.bytes.clear();
    }

    fn kick(&mut self, side: Side) {
        if self.pool.tx_out[side.index()] > 0 && self.io.tx_needs_kick(side) {
            // Errors here (ENOBUFS, EAGAIN...) are transient; xsk-rs already maps them
            // to Ok, anything else shows up as frames that never complete.
            let _ = self.io.kick_tx(side);
            self.counters.add(Counter::Wakeups, 1);
        }
    }

    /// Receives, decides and acts on one burst from `side`.
    fn service(&mut self, side: Side) -> Progress {
        let completed = self.reap(side);
        self.refill(side);
        let n = self.io.rx(side, self.cfg.burst, &mut self.rx_buf);
        self.pool.fill_out[side.index()] -= n;
        if n > 0 {
            self.decide_and_act(side);
        }
        self.kick(side);
        self.kick(side.other());
        Progress {
            received: n,
            completed,
        }
    }

    /// Decides every frame of `rx_buf` (received on `side`) and acts on them.
    fn decide_and_act(&mut self, side: Side) {
        let guard = self.policy.policy.load();
        self.note_generation();
        let policy: &Policy = &guard;
        // The overlay's class ids belong to one policy: during a reload, between the two
        // swaps, a worker judges by the file policy alone.
        let overlay_guard = self.policy.load_overlay();
        let overlay = overlay_guard.for_policy(policy);
        let direction = side.rx_direction();
        let other = side.other();
        let mut rx_bytes = 0u64;
        // Taken out for the loop (no allocation: the empty vector has no buffer) and put
        // back, capacity kept.
        let mut rx = std::mem::take(&mut self.rx_buf);
        let n = rx.len();
        let io = &self.io;
        self.burst
            .prepare(rx.iter().map(|f| io.data(f)), direction, policy);
        for (i, f) in rx.drain(..).enumerate() {
            let data = self.io.data(&f);
            let len = data.len() as u32;
            rx_bytes += u64::from(len);
            let (info, c) = self.burst.classify(i, data, direction, policy, overlay);
            let notice = self.notice_step(data, &info, &c, direction, policy);
            // Per-class counts under the class's counter slot in the policy that judged
            // the frame: stable across reloads that shift class ids.
            let class_slot = c.class.map(|id| policy.counter_slot(id));
            self.count(side, &info, &c, class_slot);
            match c.verdict {
                Verdict::Forward(_) => self.tx[other.index()].push(f, len),
                Verdict::Drop(_) => self.pool.free.push(f),
                Verdict::Reject(_, kind) => self.reject(side, f, &info, kind, notice),
            }
        }
        debug_assert_eq!(
            self.burst.single_lookups(),
            0,
            "the burst pass missed a lookup"
        );
        self.rx_buf = rx;
        self.counters.rx(side, n as u64, rx_bytes);
        for to in [other, side] {
            Self::send(
                &mut self.io,
                &self.counters,
                &mut self.pool,
                to,
                &mut self.tx[to.index()],
            );
        }
    }

    /// Counts a policy swap when the cell's generation moved since the last burst.
    #[inline]
    fn note_generation(&mut self) {
        let generation = self.policy.generation();
        if generation != self.generation {
            self.generation = generation;
            self.counters.add(Counter::PolicySwaps, 1);
            self.counters
                .policy_generation
                .store(generation, Ordering::Relaxed);
        }
    }

    /// `reply: smtp-notice` on TCP/25 or /587 outbound: the notice's step for this
    /// segment (stateless: the cookie says whether its ACK is genuine) and its text.
    #[inline]
    fn notice_step<'p>(
        &self,
        data: &[u8],
        info: &FrameInfo,
        c: &Classified,
        direction: Direction,
        policy: &'p Policy,
    ) -> Option<(NoticeStep, &'p [u8])> {
        match (c.verdict, direction, c.dst_port, c.class) {
            (
                Verdict::Reject(_, ReplyKind::SmtpNotice),
                Direction::Outbound,
                Some(25 | 587),
                Some(id),
            ) => policy.notice(id).map(|text| {
                (
                    notice::step(data, info, self.cfg.cookie_key, self.now_s),
                    text,
                )
            }),
            _ => None,
        }
    }

    /// The frame's counters (verdict, class, port, non-IP kind), and the top list for a
    /// blocked outbound attempt.
    #[inline]
    fn count(&mut self, side: Side, info: &FrameInfo, c: &Classified, class_slot: Option<usize>) {
        self.counters
            .verdict(side, c.verdict, class_slot, c.dst_port);
        if info.net == Net::NotIp {
            self.counters
                .non_ip(side, classify::non_ip_kind(&info.link));
        }
        if c.verdict.is_blocked() && side.rx_direction() == Direction::Outbound {
            if let Net::Ip { addrs, .. } = info.net {
                let (src, dst) = match addrs {
                    Addrs::V4 { src, dst } => (topk::key_v4(src), topk::key_v4(dst)),
                    Addrs::V6 { src, dst } => (src, dst),
                };
                self.top.record(src, dst, class_slot, self.now_s);
            }
        }
    }

    /// A rejected frame: its reply (within the budget) queued on `side`'s TX batch, the
    /// frame itself back on the free list.
    #[inline]
    fn reject(
        &mut self,
        side: Side,
        f: Frame<I::Desc>,
        info: &FrameInfo,
        kind: ReplyKind,
        notice: Option<(NoticeStep, &[u8])>,
    ) {
        // What the reply is, and whether the budget allows it.
        let (kind, step) = match notice {
            Some((step, _)) => (kind, Some(step)),
            // The notice serves TCP/25 and /587 outbound; a RST otherwise.
            None if kind == ReplyKind::SmtpNotice => (ReplyKind::TcpReset, None),
            None => (kind, None),
        };
        let (step, allowed) = match step {
            Some(NoticeStep::Silent) => (step, false),
            // A SYN-ACK only with room for its greeting too; else a RST.
            Some(NoticeStep::SynAck { .. }) => {
                if self.bucket.take_if_at_least(2.0) {
                    (step, true)
                } else {
                    (Some(NoticeStep::Refuse), self.bucket.take())
                }
            }
            _ => (step, self.bucket.take()),
        };
        if step == Some(NoticeStep::Silent) {
            // A RST from the client: nothing to answer.
        } else if !allowed {
            self.counters.add(Counter::RepliesRateLimited, 1);
        } else {
            let text = notice.map_or(&[][..], |(_, t)| t);
            self.reply(side, &f, info, kind, step, text);
        }
        self.pool.free.push(f);
    }

    /// Builds the reply to `f` straight into a free frame, from the facts the classifier
    /// already parsed, and queues it on `side`'s TX batch; counts it (sent, or failed:
    /// no free frame, or it could not be built).
    #[inline]
    fn reply(
        &mut self,
        side: Side,
        f: &Frame<I::Desc>,
        info: &FrameInfo,
        kind: ReplyKind,
        step: Option<NoticeStep>,
        text: &[u8],
    ) {
        let Some(mut r) = self.pool.free.pop() else {
            self.counters.add(Counter::RepliesFailed, 1);
            return;
        };
        let mut rlen = 0;
        let built = self.io.build_into(f, &mut r, |frame, out| {
            let n = match step {
                Some(s @ (NoticeStep::SynAck { .. } | NoticeStep::Greeting { .. })) => {
                    notice::build(frame, info, s, text, out).ok()?
                }
                Some(_) => reply::build_reply_parsed(frame, info, ReplyKind::TcpReset, out).ok()?,
                None => reply::build_reply_parsed(frame, info, kind, out).ok()?,
            };
            rlen = n as u32;
            Some(n)
        });
        if !built {
            self.pool.free.push(r);
            self.counters.add(Counter::RepliesFailed, 1);
            return;
        }
        self.tx[side.index()].push(r, rlen);
        self.counters.add(Counter::RepliesSent, 1);
        match step {
            Some(NoticeStep::SynAck { .. }) => self.counters.add(Counter::NoticeSynAcks, 1),
            Some(NoticeStep::Greeting { .. }) => self.counters.add(Counter::NoticeGreetings, 1),
            Some(_) => self.counters.add(Counter::NoticeRefused, 1),
            None => {}
        }
    }

    /// One loop iteration over both sides, without sleeping.
    pub fn poll_once(&mut self) -> Progress {
        let a = self.service(Side::Subscriber);
        let b = self.service(Side::Upstream);
        self.publish_census();
        Progress {
            received: a.received + b.received,
            completed: a.completed + b.completed,
        }
    }

    /// Runs until `stop` is set, then flushes queued transmissions (bounded).
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut next_sample = Instant::now();
        let mut iterations: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            iterations = iterations.wrapping_add(1);
            // The heartbeat and the overload guard's tick every 64 iterations (a busy
            // worker: well under a millisecond apart; an idle one: after each wait,
            // since idle rounds jump to the next multiple of 1024). About once a second
            // (checked every 1024 iterations, so after each wait too): copy the
            // kernel's socket drop counters (one getsockopt per side).
            if iterations.is_multiple_of(64) || iterations == 1 {
                let now = Instant::now();
                self.counters.beat(now);
                self.guard_tick(now);
                if (iterations.is_multiple_of(1024) || iterations == 1) && now >= next_sample {
                    next_sample = now + std::time::Duration::from_secs(1);
                    self.sample_kernel();
                }
            }
            let p = self.poll_once();
            if !p.idle() {
                continue;
            }
            self.counters.add(Counter::EmptyPolls, 1);
            iterations |= 1023;
            if self.cfg.busy_poll {
                for side in Side::BOTH {
                    if self.io.fill_needs_wakeup(side) {
                        let _ = self.io.wake_fill(side);
                        self.counters.add(Counter::Wakeups, 1);
                    }
                }
                // Yield so the kernel's receive work on this core is not starved.
                std::thread::yield_now();
            } else {
                // With transmissions outstanding, come back soon to reap them.
                let pending = self.pool.tx_out.iter().any(|&t| t > 0);
                let _ = self.io.wait(if pending { 1 } else { 100 });
                self.counters.add(Counter::Sleeps, 1);
            }
        }
        self.flush();
        self.sample_kernel();
    }

    /// Once a second: kernel socket counters, the coarse clock, the top list.
    fn sample_kernel(&mut self) {
        for side in Side::BOTH {
            self.counters.set_kernel(side, self.io.kernel_drops(side));
        }
        self.publish_top();
    }

    /// Copies the top list out for the control thread (skipped if it is reading).
    pub fn publish_top(&mut self) {
        self.now_s = crate::clock::secs();
        if let Ok(mut out) = self.counters.top.try_lock() {
            out.clear();
            out.extend_from_slice(self.top.entries());
        }
    }

    /// Gives queued frames up to 100 ms to leave, reaping completions.
    pub fn flush(&mut self) {
        let deadline = Instant::now() + std::time::Duration::from_millis(100);
        while self.pool.tx_out.iter().any(|&t| t > 0) && Instant::now() < deadline {
            for side in Side::BOTH {
                self.reap(side);
                self.kick(side);
            }
            std::thread::yield_now();
        }
        self.publish_census();
    }

    /// Hands the I/O back (tests, shutdown).
    pub fn into_io(self) -> I {
        self.io
    }
}
