//! The real worker loop over in-memory rings (`MemIo`): the userspace cost per frame,
//! without a NIC or a kernel. Each iteration: the "NIC" delivers a burst of 64 frames
//! on the subscriber side, the worker runs one loop iteration (reap, refill, receive,
//! classify on a 100k-prefix policy, forward / reply), the "wire" takes what was sent.
//! The `io-only` row does the same ring work without the worker, as the baseline to
//! subtract.
//!
//! Run: `cargo bench --bench core -- worker`. `thrpt` is frames per second on one core.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use crossbeam_utils::CachePadded;
use ipnet::IpNet;
use op25b::datapath::counters::WorkerCounters;
use op25b::datapath::io::Side;
use op25b::datapath::io::{FrameIo, MemIo};
use op25b::datapath::worker::{Worker, WorkerConfig};
use op25b::datapath::PolicyCell;
use op25b::policy::Policy;
use op25b_testkit::fixtures::{self, addr, Encap, Tcp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

const BURST: usize = 64;

/// The fixture policy (dynamic 198.51.100.0/24 rejects :25 with a reset, the relay is
/// allowed) plus 100k random IPv4 subscriber prefixes clear of the documentation ranges.
fn policy_100k() -> Policy {
    let (mut b, [dynamic, fixed, ..]) = fixtures::builder();
    let p = |s: &str| -> IpNet { s.parse().unwrap() };
    let docs: [IpNet; 3] = [p("192.0.2.0/24"), p("198.51.100.0/22"), p("203.0.113.0/24")];
    let mut rng = SmallRng::seed_from_u64(5);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 100_000 {
        let net = IpNet::new(
            IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>())),
            rng.gen_range(16..=30),
        )
        .unwrap()
        .trunc();
        let clash = docs.iter().any(|d| d.contains(&net) || net.contains(d));
        if clash || !seen.insert(net) {
            continue;
        }
        b.subscriber(net, if rng.gen_bool(0.5) { dynamic } else { fixed });
    }
    b.build().unwrap()
}

/// The lab policy plus 100k IPv6 prefixes (`fixtures::filler_v6`): the table the burst
/// classifier batches its lookups on (4.4 MiB, bigger than the caches).
fn policy_200k() -> (Policy, Vec<IpNet>) {
    let filler = fixtures::filler_v6(100_000);
    let (mut b, [dynamic, ..]) = fixtures::builder();
    for net in &filler {
        b.subscriber(*net, dynamic);
    }
    let p = b.build().unwrap();
    assert!(p.batch_v6_lookups());
    (p, filler)
}

/// 4096 IPv6 SYNs to port 25, each from a random address inside a random prefix of
/// `filler` (the LPM bench's matching trace): the worker meets each source once per
/// 64 bursts, so its trie walks miss the caches as a busy ISP's would.
fn v6_trace(filler: &[IpNet]) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(6);
    (0..4096)
        .map(|i| {
            let IpNet::V6(net) = filler[rng.gen_range(0..filler.len())] else {
                unreachable!("filler_v6 gives IPv6 prefixes")
            };
            let host = rng.r#gen::<u128>() & !u128::from(net.netmask());
            let src = (u128::from(net.network()) | host).to_be_bytes();
            let ip = fixtures::tcp6(
                src,
                addr::EXTERNAL6,
                40000 + (i % 1000) as u16,
                25,
                Tcp::Syn,
                &[],
            );
            fixtures::wrap(Encap::Plain, &ip, true, true)
        })
        .collect()
}

/// 64-byte-ish frames: `reject_pct`% SYNs to port 25 (rejected with a reset), the rest
/// mid-stream segments to 587 (forwarded).
fn mix(reject_pct: usize) -> Vec<Vec<u8>> {
    use addr::*;
    (0..BURST)
        .map(|i| {
            let blocked = i * 100 < reject_pct * BURST;
            let (port, flags) = if blocked {
                (25, Tcp::Syn)
            } else {
                (587, Tcp::Data(1))
            };
            let ip = fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40000 + i as u16, port, flags, &[]);
            fixtures::wrap(Encap::Plain, &ip, false, true)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = Arc::new(policy_100k());
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(BURST as u64));
    for reject_pct in [0usize, 10, 50] {
        let frames = mix(reject_pct);
        let io = MemIo::new(4096, 2048, 1024);
        let cfg = WorkerConfig {
            burst: BURST,
            fill_target: 512,
            overload_fill: None,
            busy_poll: true,
            reply_rate: u32::MAX,
            reply_burst: u32::MAX,
            cookie_key: op25b::classify::notice::CookieKey([1, 2]),
        };
        let cell = Arc::new(PolicyCell::new(policy.clone()));
        let mut w = Worker::new(
            io,
            cfg,
            cell,
            Arc::new(CachePadded::new(WorkerCounters::new())),
        );
        g.bench_function(
            BenchmarkId::new("op25b", format!("{reject_pct}pct-reject")),
            |b| {
                b.iter(|| {
                    for f in &frames {
                        w.io_mut().inject(Side::Subscriber, f);
                    }
                    w.poll_once();
                    let io = w.io_mut();
                    io.discard(Side::Upstream, usize::MAX)
                        + io.discard(Side::Subscriber, usize::MAX)
                })
            },
        );
        let s = w.counters().snapshot();
        assert!(s.verdicts_account_for_rx() && w.census().conserved());
    }
    // IPv6 sources spread over a 100k-prefix table: where batched lookups pay.
    let (p6, filler) = policy_200k();
    let trace = v6_trace(&filler);
    let io = MemIo::new(4096, 2048, 1024);
    let cfg = WorkerConfig {
        burst: BURST,
        fill_target: 512,
        overload_fill: None,
        busy_poll: true,
        reply_rate: u32::MAX,
        reply_burst: u32::MAX,
        cookie_key: op25b::classify::notice::CookieKey([1, 2]),
    };
    let mut w = Worker::new(
        io,
        cfg,
        Arc::new(PolicyCell::new(Arc::new(p6))),
        Arc::new(CachePadded::new(WorkerCounters::new())),
    );
    let mut bursts = trace.chunks(BURST).cycle();
    g.bench_function(BenchmarkId::new("op25b", "ipv6-100k-sources"), |b| {
        b.iter(|| {
            for f in bursts.next().unwrap_or_default() {
                w.io_mut().inject(Side::Subscriber, f);
            }
            w.poll_once();
            let io = w.io_mut();
            io.discard(Side::Upstream, usize::MAX) + io.discard(Side::Subscriber, usize::MAX)
        })
    });
    let s = w.counters().snapshot();
    assert!(s.verdicts_account_for_rx() && w.census().conserved());
    // Baseline: the same ring traffic with a trivial "forward everything" loop.
    let frames = mix(0);
    let mut io = MemIo::new(4096, 2048, 1024);
    let mut free = io.take_frames();
    let mut buf = Vec::with_capacity(BURST);
    g.bench_function(BenchmarkId::new("io-only", "0pct-reject"), |b| {
        b.iter(|| {
            // Frames cycle free -> fill -> rx -> tx -> completion -> free; the handles
            // move with them.
            io.fill(Side::Subscriber, &mut free, BURST);
            for f in &frames {
                io.inject(Side::Subscriber, f);
            }
            let n = io.rx(Side::Subscriber, BURST, &mut buf);
            io.tx(Side::Upstream, &mut buf, n);
            io.discard(Side::Upstream, usize::MAX);
            io.completions(Side::Upstream, usize::MAX, &mut free)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = bench }
