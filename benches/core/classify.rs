//! Classifier cost per frame on a 100k-prefix policy, beside a naive baseline that
//! parses the whole frame with `etherparse::SlicedPacket::from_ethernet` and then asks
//! the same policy.
//!
//! Run: `cargo bench --bench core -- classify`. `thrpt` is frames per second; `time` is per
//! frame (each iteration classifies one frame). Frames are the golden fixtures.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use etherparse::{InternetSlice, SlicedPacket, TransportSlice};
use ipnet::IpNet;
use op25b::classify::classify;
use op25b::policy::{Direction, Fragment, Policy, Segment, Verdict};
use op25b_testkit::fixtures::{self, addr, Encap, Tcp};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The fixture policy plus `n` random subscriber prefixes (half IPv4 /16../32, half IPv6
/// /32../64) that stay clear of the documentation ranges the fixtures use, so every
/// fixture keeps its verdict.
fn big_policy(n: usize) -> Policy {
    let (mut b, [dynamic, fixed, quarantine, _icmp]) = fixtures::builder();
    let p = |s: &str| -> IpNet { s.parse().unwrap() };
    let classes = [dynamic, fixed, quarantine];
    let mut rng = SmallRng::seed_from_u64(100);
    let mut seen = HashSet::new();
    let doc4: [IpNet; 3] = [p("192.0.2.0/24"), p("198.51.100.0/24"), p("203.0.113.0/24")];
    let doc6 = p("2001:db8::/32");
    while seen.len() < n {
        let net = if seen.len() % 2 == 0 {
            let len = rng.gen_range(16..=32);
            IpNet::new(IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>())), len)
                .unwrap()
                .trunc()
        } else {
            let len = rng.gen_range(32..=64);
            let a = (rng.r#gen::<u128>() >> 3) | (1u128 << 125);
            IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len)
                .unwrap()
                .trunc()
        };
        let clash = doc4.iter().any(|d| d.contains(&net) || net.contains(d))
            || doc6.contains(&net)
            || net.contains(&doc6);
        if clash || !seen.insert(net) {
            continue;
        }
        b.subscriber(net, classes[rng.gen_range(0..classes.len())]);
    }
    b.build().unwrap()
}

/// The baseline: etherparse's full slicing, then the same policy decision.
fn naive(frame: &[u8], direction: Direction, policy: &Policy) -> Verdict {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return Verdict::Forward(op25b::policy::Reason::MalformedLink);
    };
    let (src, dst, fragmented) = match &p.net {
        Some(InternetSlice::Ipv4(v4)) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.is_payload_fragmented(),
        ),
        Some(InternetSlice::Ipv6(v6)) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.is_payload_fragmented(),
        ),
        _ => return Verdict::Forward(op25b::policy::Reason::NotIp),
    };
    let seg = match &p.transport {
        Some(TransportSlice::Tcp(t)) => Segment {
            protocol: 6,
            dst_port: Some(t.destination_port()),
            fragment: if fragmented {
                Fragment::First
            } else {
                Fragment::Whole
            },
        },
        _ => Segment {
            protocol: 17,
            dst_port: None,
            fragment: Fragment::Whole,
        },
    };
    policy.decide(direction, src, dst, seg).verdict
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    use addr::*;
    let syn4 = fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40000, 25, Tcp::Syn, &[]);
    let syn6 = fixtures::tcp6(DYNAMIC6, EXTERNAL6, 40000, 25, Tcp::Syn, &[]);
    let data4 = fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40000, 443, Tcp::Data(1), &[0u8; 1400]);
    vec![
        (
            "ipv4_tcp_syn_25",
            fixtures::wrap(Encap::Plain, &syn4, false, true),
        ),
        (
            "vlan_ipv4_tcp_syn_25",
            fixtures::wrap(Encap::Vlan(100), &syn4, false, true),
        ),
        (
            "ipv6_tcp_syn_25",
            fixtures::wrap(Encap::Plain, &syn6, true, true),
        ),
        (
            "ipv4_tcp_data_443",
            fixtures::wrap(Encap::Plain, &data4, false, true),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let policy = big_policy(100_000);
    let (v4, v6) = policy
        .summary()
        .prefixes_per_class
        .iter()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    println!("classify bench policy: {v4} IPv4 + {v6} IPv6 subscriber prefixes");
    let table = fixtures::all();
    for f in &table {
        assert_eq!(
            classify(&f.frame, f.direction, &policy).verdict,
            f.expected,
            "{}",
            f.description
        );
    }
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in frames() {
        let expect = classify(&frame, Direction::Outbound, &policy).verdict;
        assert_eq!(
            naive(&frame, Direction::Outbound, &policy),
            expect,
            "{name}"
        );
        g.bench_with_input(BenchmarkId::new("op25b", name), &frame, |b, f| {
            b.iter(|| classify(black_box(f), Direction::Outbound, &policy).verdict)
        });
        g.bench_with_input(
            BenchmarkId::new("naive-etherparse", name),
            &frame,
            |b, f| b.iter(|| naive(black_box(f), Direction::Outbound, &policy)),
        );
    }
    g.finish();

    // The whole golden table, one pass per iteration.
    let mut g = c.benchmark_group("classify/fixtures");
    g.throughput(Throughput::Elements(table.len() as u64));
    g.bench_function("op25b/all", |b| {
        b.iter(|| {
            let mut blocked = 0u32;
            for f in &table {
                blocked += u32::from(
                    classify(black_box(&f.frame), f.direction, &policy)
                        .verdict
                        .is_blocked(),
                );
            }
            blocked
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = bench }
