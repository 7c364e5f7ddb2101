//! The sink's second engine (`op25b-bench sink --engine xdp`): `testkit/bpf/sink.c`, an
//! XDP program attached to the sink's interface, checks and counts every frame in the
//! receive path and drops it; this side attaches it, watches its counters until the run
//! ends, and turns its per-CPU maps into the same [`SinkReport`] the AF_XDP sink makes.
//!
//! Why: the AF_XDP sink costs the tester's CPU a copy-mode receive and a userspace tally
//! per forwarded frame, on the CPU that also runs the generator; with this engine that
//! CPU is left to the generator, so the overload curve can offer twice the DUT's
//! saturation rate. What it does not do: the independent oracle (`sink --config`) and
//! the hex dump of foreign frames, which need the frame in userspace.
//!
//! The program is attached through a BPF link: it is detached when the link's
//! descriptor closes, also when the process is killed.

use crate::bpfobj::{context, ifindex, value_size, Fields};
use crate::run::{counter_delta, link_counter, BenchError, SinkOptions};
use crate::traffic::{LatencyHist, SinkReport};
use op25b::datapath::xdp::{possible_cpus, BpfProgram, Map, TestRun};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The compiled program (testkit/build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sink.o"));

// Shared with testkit/bpf/sink.c: change both together.
const EXACT: u32 = 256;
const SUB_BITS: u32 = 7;
/// Latency buckets (sink.c BUCKETS).
pub const BUCKETS: u32 = EXACT + (24 - 8) * (1 << SUB_BITS);
const STREAMS: u32 = 128;
const TAG_WRAP_MASK: u32 = (1 << 24) - 1;

/// `struct stats` in sink.c.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub bytes: u64,
    pub foreign: u64,
    pub passed: u64,
    pub leaked: u64,
    pub out_of_order: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub max_gap_ns: u64,
    pub max_delay_us: u64,
}

/// `struct stream` in sink.c.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct Stream {
    received: u64,
    last_seq: u32,
    seen: u32,
    out_of_order: u64,
}

impl Stream {
    fn from_bytes(b: &[u8]) -> Stream {
        let mut f = Fields(b);
        Stream {
            received: f.u64(),
            last_seq: f.u32(),
            seen: f.u32(),
            out_of_order: f.u64(),
        }
    }
}

impl Stats {
    fn from_bytes(b: &[u8]) -> Stats {
        let mut f = Fields(b);
        Stats {
            received: f.u64(),
            bytes: f.u64(),
            foreign: f.u64(),
            passed: f.u64(),
            leaked: f.u64(),
            out_of_order: f.u64(),
            first_ns: f.u64(),
            last_ns: f.u64(),
            max_gap_ns: f.u64(),
            max_delay_us: f.u64(),
        }
    }

    /// The per-CPU values summed (first frame: the earliest; gaps and delays: the
    /// largest).
    fn sum(v: &[Stats]) -> Stats {
        let mut t = Stats::default();
        for s in v {
            t.received += s.received;
            t.bytes += s.bytes;
            t.foreign += s.foreign;
            t.passed += s.passed;
            t.leaked += s.leaked;
            t.out_of_order += s.out_of_order;
            if s.first_ns != 0 && (t.first_ns == 0 || s.first_ns < t.first_ns) {
                t.first_ns = s.first_ns;
            }
            t.last_ns = t.last_ns.max(s.last_ns);
            t.max_gap_ns = t.max_gap_ns.max(s.max_gap_ns);
            t.max_delay_us = t.max_delay_us.max(s.max_delay_us);
        }
        t
    }

    fn tagged(&self) -> u64 {
        self.passed + self.leaked
    }
}

/// The latency bucket of `us` microseconds (sink.c bucket_of).
pub fn bucket_of(us: u32) -> u32 {
    if us < EXACT {
        return us;
    }
    let us = us.min(TAG_WRAP_MASK);
    let e = 31 - us.leading_zeros();
    EXACT + (e - 8) * (1 << SUB_BITS) + ((us >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1))
}

/// The microseconds bucket `b` covers: `[low, low + width)`.
pub fn bucket_range(b: u32) -> (u32, u32) {
    if b < EXACT {
        return (b, 1);
    }
    let i = b - EXACT;
    let e = 8 + i / (1 << SUB_BITS);
    let sub = i % (1 << SUB_BITS);
    let shift = e - SUB_BITS;
    (((1 << SUB_BITS) + sub) << shift, 1 << shift)
}

/// The loaded program and its maps.
pub struct SinkProgram {
    prog: BpfProgram,
    stats: Map,
    streams: Map,
    latency: Map,
    cpus: usize,
}

impl SinkProgram {
    pub fn load() -> io::Result<SinkProgram> {
        let obj = crate::bpfobj::load(OBJECT, "op25b_sink", &[])?;
        let p = SinkProgram {
            prog: obj.program("op25b_sink")?,
            stats: obj.map("stats")?,
            streams: obj.map("streams")?,
            latency: obj.map("latency")?,
            cpus: possible_cpus().map_err(context("counting the possible CPUs"))?,
        };
        value_size(&p.stats, std::mem::size_of::<Stats>())?;
        value_size(&p.streams, std::mem::size_of::<Stream>())?;
        value_size(&p.latency, std::mem::size_of::<u64>())?;
        Ok(p)
    }

    /// Attaches the program to `ifindex` in native (driver) mode through a BPF link:
    /// detached when the returned descriptor closes.
    fn attach(&self, ifindex: u32) -> io::Result<OwnedFd> {
        self.prog.attach_xdp(ifindex, true).map_err(context(
            "attaching the sink's XDP program (native mode; is another XDP program attached?)",
        ))
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> io::Result<Stats> {
        let b = self
            .stats
            .lookup_per_cpu(&0u32.to_ne_bytes(), self.cpus)
            .map_err(context("reading the sink counters"))?;
        let v: Vec<Stats> = b
            .chunks_exact(std::mem::size_of::<Stats>())
            .map(Stats::from_bytes)
            .collect();
        Ok(Stats::sum(&v))
    }

    /// Streams that received frames, as (stream, received, out of order).
    pub fn streams(&self) -> io::Result<Vec<(u32, u64, u64)>> {
        let mut out = Vec::new();
        for sid in 0..STREAMS {
            let b = self
                .streams
                .lookup_per_cpu(&sid.to_ne_bytes(), self.cpus)
                .map_err(context("reading a stream"))?;
            let (r, o) = b
                .chunks_exact(std::mem::size_of::<Stream>())
                .map(Stream::from_bytes)
                .fold((0, 0), |(r, o), s| (r + s.received, o + s.out_of_order));
            if r > 0 {
                out.push((sid, r, o));
            }
        }
        Ok(out)
    }

    /// The latency histogram: each bucket's count recorded at the bucket's middle.
    pub fn latency(&self) -> io::Result<LatencyHist> {
        let mut h = LatencyHist::default();
        for b in 0..BUCKETS {
            let n = self
                .latency
                .sum_per_cpu(&b.to_ne_bytes(), self.cpus)
                .map_err(context("reading the latency"))?[0];
            if n > 0 {
                let (low, width) = bucket_range(b);
                h.record_n(low + width / 2, n);
            }
        }
        Ok(h)
    }

    /// Runs the program once on `frame` (BPF_PROG_RUN, no interface): for tests.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        let (action, _) = self
            .prog
            .test_run(&TestRun {
                frame,
                repeat: 1,
                ..TestRun::default()
            })
            .map_err(context("BPF_PROG_RUN"))?;
        Ok(action)
    }
}

/// The XDP engine's version of [`crate::run::sink`].
pub fn sink(
    opts: &SinkOptions,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> Result<SinkReport, BenchError> {
    let io = |what: &'static str| BenchError::io(what, &opts.interface);
    if opts.oracle.is_some() {
        return Err(BenchError::Thread(
            "--engine xdp does not run the oracle (--config): it needs the frames in userspace; use --engine afxdp".into(),
        ));
    }
    if opts.dump_foreign > 0 {
        return Err(BenchError::Thread(
            "--engine xdp cannot print foreign frames (--dump-foreign): it keeps no frame; use --engine afxdp".into(),
        ));
    }
    if let Some(c) = opts.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let ifi = ifindex(&opts.interface).map_err(io("cannot resolve the interface"))?;
    let prog = SinkProgram::load().map_err(io("cannot load the sink"))?;
    let rx_dropped_before = link_counter(&opts.interface, "rx_dropped");
    let link = prog.attach(ifi).map_err(io("cannot attach the sink"))?;
    ready();
    let start = Instant::now();
    let mut seen = 0u64;
    let mut last_change = start;
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        let s = prog.stats().map_err(io("cannot read the sink"))?;
        if s.tagged() != seen {
            seen = s.tagged();
            last_change = now;
        }
        if stop.load(Ordering::Relaxed) || now.duration_since(start) >= opts.duration {
            break;
        }
        if seen > 0 && now.duration_since(last_change) >= opts.idle {
            break;
        }
    }
    drop(link);
    let s = prog.stats().map_err(io("cannot read the sink"))?;
    let latency = prog.latency().map_err(io("cannot read the sink"))?;
    let seconds = if s.last_ns > s.first_ns {
        (s.last_ns - s.first_ns) as f64 / 1e9
    } else {
        0.0
    };
    Ok(SinkReport {
        interface: opts.interface.clone(),
        mode: "xdp-prog".into(),
        received: s.received,
        foreign: s.foreign,
        passed: s.passed,
        leaked: s.leaked,
        out_of_order: s.out_of_order,
        oracle_leaks: 0,
        max_gap_ms: s.max_gap_ns as f64 / 1e6,
        seconds,
        mpps: if seconds > 0.0 {
            s.tagged() as f64 / seconds / 1e6
        } else {
            0.0
        },
        kernel_rx_dropped: 0,
        kernel_rx_ring_full: 0,
        kernel_fill_empty: 0,
        latency_us: latency.summary().map(|mut l| {
            // Exact, not the bucket's middle.
            l.max = s.max_delay_us;
            l
        }),
        link_rx_dropped: counter_delta(
            rx_dropped_before,
            link_counter(&opts.interface, "rx_dropped"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_layouts_match_the_program() {
        assert_eq!(std::mem::size_of::<Stats>(), 10 * 8);
        assert_eq!(std::mem::size_of::<Stream>(), 24);
        assert_eq!(BUCKETS, 2304);
    }

    #[test]
    fn every_latency_falls_in_its_bucket() {
        let mut values: Vec<u32> = (0..1 << 24).step_by(97).collect();
        values.extend([255, 256, 257, 511, 512, TAG_WRAP_MASK]);
        values.sort_unstable();
        let mut last = 0;
        for us in values {
            let b = bucket_of(us);
            assert!(b < BUCKETS, "{us} us -> bucket {b}");
            let (low, width) = bucket_range(b);
            assert!(
                low <= us && us < low + width,
                "{us} us not in [{low}, +{width})"
            );
            // Under 0.8% wide above the exact range.
            assert!(us < EXACT || f64::from(width) / f64::from(low) <= 1.0 / 128.0 + 1e-9);
            assert!(b >= last, "buckets ascend with the latency");
            last = b;
        }
        assert_eq!(bucket_of(u32::MAX), BUCKETS - 1);
    }
}
