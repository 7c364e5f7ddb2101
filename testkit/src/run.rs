//! The generator and sink loops over AF_XDP ([`crate::port::XskPort`]).

use crate::port::{PortOptions, PortRole, PortStats, XskPort};
use crate::traffic::{Expect, GenReport, SinkReport, SinkTally, Tag, TemplateSet, TAG_LEN};
use op25b::datapath::settings::XdpMode;
use op25b::datapath::xsk::XskError;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long and how fast the generator sends.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub interface: String,
    /// One thread per queue, queues 0..threads.
    pub threads: usize,
    /// Cores to pin the threads to (round robin); empty: no pinning.
    pub cores: Vec<usize>,
    pub duration: Duration,
    /// Stop after this many frames in total (shared over the threads).
    pub count: Option<u64>,
    /// Frames per second in total; None: as fast as the interface takes them.
    pub rate: Option<u64>,
    pub burst: usize,
    pub xdp_mode: XdpMode,
    pub profile_name: String,
    /// Frames per transmit kick (see [`PortOptions::tx_budget`]).
    pub tx_budget: u32,
}

/// Why the generator or sink could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Socket(#[from] XskError),
    #[error("{what} on {interface}: {source}")]
    Io {
        what: &'static str,
        interface: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Thread(String),
}

impl BenchError {
    /// For `map_err`: an I/O error as `what` failed on `interface`.
    pub(crate) fn io(what: &'static str, interface: &str) -> impl FnOnce(std::io::Error) -> Self {
        let interface = interface.to_owned();
        move |source| BenchError::Io {
            what,
            interface,
            source,
        }
    }
}

/// How far a counter moved between two reads; 0 when either read failed.
pub(crate) fn counter_delta(before: Option<u64>, after: Option<u64>) -> u64 {
    match (before, after) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    }
}

/// What one generator thread (or the XDP engine) sent.
#[derive(Default)]
pub(crate) struct GenThreadResult {
    pub(crate) unsent: u64,
    /// Completed transmissions per template.
    pub(crate) per_template: Vec<u64>,
    pub(crate) mode: String,
}

impl GenThreadResult {
    /// Attributes `done` completed transmissions, in queue order (the kernel completes
    /// TX descriptors in the order they were queued); returns `done`.
    fn complete(&mut self, done: usize, pending: &mut VecDeque<u32>) -> usize {
        for t in pending.drain(..done) {
            self.per_template[t as usize] += 1;
        }
        done
    }
}

fn gen_thread(
    stream: u8,
    opts: &GenOptions,
    set: &TemplateSet,
    stop: &AtomicBool,
    start: Instant,
) -> Result<GenThreadResult, BenchError> {
    let port_opts = PortOptions {
        frame_size: if set.templates.iter().any(|t| t.frame.len() > 2048) {
            4096
        } else {
            2048
        },
        ring_size: 2048,
        frame_count: 8192,
        xdp_mode: opts.xdp_mode,
        tx_budget: opts.tx_budget,
    };
    let mut port = XskPort::open(
        &opts.interface,
        u32::from(stream),
        PortRole::Transmit,
        &port_opts,
    )?;
    let threads = opts.threads as u64;
    let rate = opts.rate.map(|r| r.div_ceil(threads));
    let count = opts.count.map(|c| c.div_ceil(threads));
    let n_templates = set.templates.len();
    // Each thread walks the templates from a different starting point.
    let mut next = (usize::from(stream) * 7919) % n_templates;
    let mut seq: u64 = 0;
    let mut res = GenThreadResult {
        per_template: vec![0; set.templates.len()],
        mode: port.mode().to_string(),
        ..Default::default()
    };
    let mut pending: VecDeque<u32> = VecDeque::new();
    let deadline = start + opts.duration;
    let mut now = Instant::now();
    let mut loops: u32 = 0;
    loop {
        loops = loops.wrapping_add(1);
        if loops.is_multiple_of(64) {
            now = Instant::now();
        }
        res.complete(port.reap(), &mut pending);
        let stopping =
            stop.load(Ordering::Relaxed) || now >= deadline || count.is_some_and(|c| seq >= c);
        if stopping {
            break;
        }
        let mut want = opts.burst;
        if let Some(c) = count {
            want = want.min((c - seq) as usize);
        }
        if let Some(r) = rate {
            let allowed = (now.duration_since(start).as_secs_f64() * r as f64) as u64;
            want = want.min(allowed.saturating_sub(seq) as usize);
        }
        if want > 0 {
            let sent_us = op25b::datapath::clock::monotonic_us() as u32;
            let queued = port.send(want, |i, buf| {
                let t = &set.templates[(next + i) % n_templates];
                if !t.tagged {
                    buf.put(&t.frame);
                    return;
                }
                let body = &t.frame[..t.frame.len() - TAG_LEN];
                let tag = Tag {
                    expect: t.expect,
                    stream,
                    seq: (seq + i as u64) as u32 & crate::traffic::TAG_WRAP_MASK,
                    sent_us: sent_us & crate::traffic::TAG_WRAP_MASK,
                };
                buf.put(body);
                buf.put(&tag.encode());
            });
            for i in 0..queued {
                pending.push_back(((next + i) % n_templates) as u32);
            }
            next = (next + queued) % n_templates;
            seq += queued as u64;
        }
        if let Err(e) = port.kick() {
            return Err(BenchError::Io {
                what: "transmit kick failed",
                interface: opts.interface.clone(),
                source: e,
            });
        }
        if want == 0 && rate.is_some() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    // Drain: let the kernel send what is queued (at most 1 s).
    let drain_until = Instant::now() + Duration::from_secs(1);
    while port.in_flight() > 0 && Instant::now() < drain_until {
        let _ = port.kick();
        let done = res.complete(port.reap(), &mut pending);
        if done == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    res.unsent = port.in_flight() as u64;
    Ok(res)
}

/// Runs the generator threads until the duration or count is reached (or `stop`).
/// The interface's `tx_dropped` counter (frames the driver took and then dropped,
/// e.g. a veth whose peer's ring was full).
fn link_tx_dropped(interface: &str) -> Option<u64> {
    link_counter(interface, "tx_dropped")
}

/// One of the interface's `/sys/class/net/DEV/statistics` counters.
pub(crate) fn link_counter(interface: &str, name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn generate(
    opts: &GenOptions,
    set: Arc<TemplateSet>,
    stop: Arc<AtomicBool>,
) -> Result<GenReport, BenchError> {
    let dropped_before = link_tx_dropped(&opts.interface);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..opts.threads {
        let (opts2, set2, stop2) = (opts.clone(), set.clone(), stop.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("op25b-gen{t}"))
                .spawn(move || {
                    if !opts2.cores.is_empty() {
                        core_affinity::set_for_current(core_affinity::CoreId {
                            id: opts2.cores[t % opts2.cores.len()],
                        });
                    }
                    let r = gen_thread(t as u8, &opts2, &set2, &stop2, start);
                    if r.is_err() {
                        stop2.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .map_err(|e| BenchError::Thread(format!("cannot start a generator thread: {e}")))?,
        );
    }
    let mut total = GenThreadResult {
        per_template: vec![0; set.templates.len()],
        ..Default::default()
    };
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                total.unsent += r.unsent;
                for (a, b) in total.per_template.iter_mut().zip(&r.per_template) {
                    *a += b;
                }
                total.mode = r.mode;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(BenchError::Thread("a generator thread panicked".into()));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let seconds = start.elapsed().as_secs_f64();
    let link_dropped = counter_delta(dropped_before, link_tx_dropped(&opts.interface));
    Ok(gen_report(opts, &set, &total, seconds, link_dropped))
}

/// The generator's report from what its threads (or the XDP engine) sent.
pub(crate) fn gen_report(
    opts: &GenOptions,
    set: &TemplateSet,
    total: &GenThreadResult,
    seconds: f64,
    link_dropped: u64,
) -> GenReport {
    let (_, block_t) = set.counts();
    let mut acc = GenTotals {
        per_source: vec![0; set.source_names.len()],
        ..Default::default()
    };
    for (t, &n) in set.templates.iter().zip(&total.per_template) {
        acc.add(t, n);
    }
    GenReport {
        interface: opts.interface.clone(),
        threads: opts.threads,
        mode: total.mode.clone(),
        profile: opts.profile_name.clone(),
        frame_size: set
            .templates
            .iter()
            .map(|t| t.frame.len())
            .min()
            .unwrap_or(0),
        templates: set.templates.len(),
        templates_block: block_t,
        sent: acc.sent,
        sent_pass: acc.sent_pass,
        sent_block: acc.sent_block,
        unsent: total.unsent,
        link_dropped,
        schedule_restarts: 0,
        seconds,
        mpps: acc.sent as f64 / seconds / 1e6,
        rate_limit_pps: opts.rate,
        per_source: set
            .source_names
            .iter()
            .cloned()
            .zip(acc.per_source)
            .collect(),
        per_verdict: acc.per_verdict,
        sent_untagged: acc.untagged,
        sent_untagged_pass: acc.untagged_pass,
    }
}

/// Sums of completed transmissions by what the templates are.
#[derive(Default)]
struct GenTotals {
    sent: u64,
    sent_pass: u64,
    sent_block: u64,
    untagged: u64,
    untagged_pass: u64,
    per_source: Vec<u64>,
    per_verdict: std::collections::BTreeMap<String, u64>,
}

impl GenTotals {
    fn add(&mut self, t: &crate::traffic::Template, n: u64) {
        if n == 0 {
            return;
        }
        self.sent += n;
        let pass = t.expect == Expect::Pass;
        match (t.tagged, pass) {
            (true, true) => self.sent_pass += n,
            (true, false) => self.sent_block += n,
            (false, p) => {
                self.untagged += n;
                self.untagged_pass += u64::from(p) * n;
            }
        }
        self.per_source[t.source] += n;
        *self
            .per_verdict
            .entry(crate::traffic::verdict_key(t.verdict))
            .or_default() += n;
    }
}

/// How long the sink listens.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    pub interface: String,
    /// Listen on queues 0..queues, one thread each.
    pub queues: u32,
    /// Give up after this long in total.
    pub duration: Duration,
    /// Stop once this long passed without a frame, after the first one.
    pub idle: Duration,
    pub xdp_mode: XdpMode,
    pub core: Option<usize>,
    /// Print the first this many untagged frames (hex) on stderr.
    pub dump_foreign: u64,
    /// Check every frame with [`crate::hostile::blocked_segment`] against this policy.
    pub oracle: Option<std::sync::Arc<op25b::policy::Policy>>,
}

/// Receives and checks frames on every queue until the duration, the idle time or
/// `stop`; `ready` is called once every socket is bound.
pub fn sink(
    opts: &SinkOptions,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<SinkReport, BenchError> {
    // Deep rings: the sink shares a core with the generator in the lab, and every frame
    // it fails to take is a measurement loss (counted apart as the sink's kernel drops).
    let port_opts = PortOptions {
        frame_size: 4096,
        ring_size: 8192,
        frame_count: 32768,
        xdp_mode: opts.xdp_mode,
        tx_budget: 32,
    };
    let rx_dropped_before = link_counter(&opts.interface, "rx_dropped");
    let mut ports = Vec::new();
    for q in 0..opts.queues {
        let mut port = XskPort::open(&opts.interface, q, PortRole::Receive, &port_opts)?;
        port.prime_fill();
        ports.push(port);
    }
    let mode = ports
        .first()
        .map(|p| p.mode().to_string())
        .unwrap_or_default();
    ready();
    let results: Vec<Result<QueueResult, BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ports
            .into_iter()
            .map(|port| scope.spawn(move || sink_queue(port, opts, stop)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::Thread("a sink thread panicked".into())))
            })
            .collect()
    });
    let mut total = SinkTally::default();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut stats = PortStats::default();
    for r in results {
        let (t, f, l, st) = r?;
        total.merge(&t);
        if let Some(f) = f {
            first = Some(first.map_or(f, |x| x.min(f)));
            last = Some(last.map_or(l, |x| x.max(l)));
        }
        stats.rx_dropped += st.rx_dropped;
        stats.rx_ring_full += st.rx_ring_full;
        stats.rx_fill_ring_empty += st.rx_fill_ring_empty;
    }
    let seconds = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    Ok(SinkReport {
        interface: opts.interface.clone(),
        mode,
        received: total.received,
        foreign: total.foreign,
        passed: total.passed,
        leaked: total.leaked,
        out_of_order: total.out_of_order,
        oracle_leaks: total.oracle_leaks,
        max_gap_ms: total.max_gap.as_secs_f64() * 1e3,
        seconds,
        mpps: if seconds > 0.0 {
            (total.passed + total.leaked) as f64 / seconds / 1e6
        } else {
            0.0
        },
        kernel_rx_dropped: stats.rx_dropped,
        kernel_rx_ring_full: stats.rx_ring_full,
        kernel_fill_empty: stats.rx_fill_ring_empty,
        latency_us: total.latency.summary(),
        link_rx_dropped: counter_delta(
            rx_dropped_before,
            link_counter(&opts.interface, "rx_dropped"),
        ),
    })
}

type QueueResult = (SinkTally, Option<Instant>, Instant, PortStats);

fn sink_queue(
    mut port: XskPort,
    opts: &SinkOptions,
    stop: &AtomicBool,
) -> Result<QueueResult, BenchError> {
    if let Some(c) = opts.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let start = Instant::now();
    let mut tally = SinkTally::default();
    let mut first: Option<Instant> = None;
    let mut last = start;
    loop {
        let mut tagged = false;
        let now_us = op25b::datapath::clock::monotonic_us();
        let n = port.recv(256, |f| {
            let leaked_before = tally.leaked;
            let is_tagged = tally.record(f, now_us);
            tagged |= is_tagged;
            if tally.leaked > leaked_before && tally.leaked <= 5 {
                let hex: String = f.iter().take(96).map(|b| format!("{b:02x}")).collect();
                eprintln!(
                    "LEAKED: a frame the policy blocks arrived ({} bytes): {hex}",
                    f.len()
                );
            }
            if let Some(p) = &opts.oracle {
                if crate::hostile::blocked_segment(f, p) {
                    tally.oracle_leaks += 1;
                    if tally.oracle_leaks <= 5 {
                        let hex: String = f.iter().take(96).map(|b| format!("{b:02x}")).collect();
                        eprintln!(
                            "ORACLE LEAK: a segment the policy blocks arrived ({} bytes): {hex}",
                            f.len()
                        );
                    }
                }
            }
            if !is_tagged && tally.foreign <= opts.dump_foreign {
                let hex: String = f.iter().take(96).map(|b| format!("{b:02x}")).collect();
                eprintln!("foreign frame ({} bytes): {hex}", f.len());
            }
        });
        let now = Instant::now();
        if n > 0 {
            if tagged {
                if first.is_some() {
                    tally.max_gap = tally.max_gap.max(now.duration_since(last));
                }
                first.get_or_insert(now);
                last = now;
            }
            continue;
        }
        if stop.load(Ordering::Relaxed) || now.duration_since(start) >= opts.duration {
            break;
        }
        if first.is_some() && now.duration_since(last) >= opts.idle {
            break;
        }
        port.wait(50).map_err(|e| BenchError::Io {
            what: "poll failed",
            interface: opts.interface.clone(),
            source: e,
        })?;
    }
    Ok((tally, first, last, port.stats()))
}
