//! LPM lookup benchmark: op25b's Poptrie tables beside `prefix-trie` and
//! `ip_network_table` (treebitmap) on the same prefix sets and address traces.
//!
//! Run: `cargo bench --bench core -- lpm` (add `-- --quick` for a short run). One core, one
//! thread; each iteration looks up a batch of `BATCH` addresses, so criterion's
//! `thrpt` column is lookups per second. Build times and table memory are printed
//! before the criterion output.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use ip_network_table::IpNetworkTable;
use ipnet::{Ipv4Net, Ipv6Net};
use op25b::lpm::{Ipv4Table, Ipv6Table, PrefixEntry};
use prefix_trie::PrefixMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

const BATCH: usize = 4096;

/// IPv4 prefix lengths roughly as a routing/subscriber table has them: mostly /24,
/// then /16../23, a few /8../15 and /25../32.
fn v4_len(rng: &mut SmallRng) -> u8 {
    match rng.gen_range(0..100) {
        0..=54 => 24,
        55..=84 => rng.gen_range(16..=23),
        85..=89 => rng.gen_range(8..=15),
        _ => rng.gen_range(25..=32),
    }
}

/// IPv6 lengths /32../64 (subscriber delegations and aggregates), mostly /48 and /56.
fn v6_len(rng: &mut SmallRng) -> u8 {
    match rng.gen_range(0..100) {
        0..=39 => 48,
        40..=69 => 56,
        70..=84 => 64,
        _ => rng.gen_range(32..=47),
    }
}

fn mask32(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    }
}
fn mask128(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

fn v4_entries(n: usize, seed: u64) -> Vec<PrefixEntry<u32>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = v4_len(&mut rng);
            PrefixEntry {
                key: mask32(rng.r#gen(), len),
                len,
                value: rng.gen_range(1..=4),
            }
        })
        .collect()
}

fn v6_entries(n: usize, seed: u64) -> Vec<PrefixEntry<u128>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = v6_len(&mut rng);
            // Inside 2000::/3, like global unicast.
            let a = (rng.r#gen::<u128>() >> 3) | (1u128 << 125);
            PrefixEntry {
                key: mask128(a, len),
                len,
                value: rng.gen_range(1..=4),
            }
        })
        .collect()
}

/// Traces: `matching` picks a random prefix and a random host inside it (every lookup
/// walks to the prefix's depth), `uniform` draws from the whole address space, `skewed`
/// sends 90% of lookups to 64 hot hosts (a few busy subscribers) and 10% matching.
fn traces<K: Copy>(
    entries: &[PrefixEntry<K>],
    host: impl Fn(&PrefixEntry<K>, &mut SmallRng) -> K,
    any: impl Fn(&mut SmallRng) -> K,
) -> Vec<(&'static str, Vec<K>)> {
    let mut rng = SmallRng::seed_from_u64(7);
    let matching: Vec<K> = (0..BATCH)
        .map(|_| host(&entries[rng.gen_range(0..entries.len())], &mut rng))
        .collect();
    let uniform: Vec<K> = (0..BATCH).map(|_| any(&mut rng)).collect();
    let hot: Vec<K> = (0..64)
        .map(|_| host(&entries[rng.gen_range(0..entries.len())], &mut rng))
        .collect();
    let skewed: Vec<K> = (0..BATCH)
        .map(|i| {
            if i % 10 == 0 {
                matching[i]
            } else {
                hot[rng.gen_range(0..hot.len())]
            }
        })
        .collect();
    vec![
        ("matching", matching),
        ("uniform", uniform),
        ("skewed", skewed),
    ]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn bench_v4(c: &mut Criterion) {
    for n in [1_000usize, 100_000, 1_000_000] {
        let entries = v4_entries(n, n as u64);
        let (poptrie, t_pop) = timed(|| Ipv4Table::build(&entries).unwrap());
        let (ptrie, t_pt) = timed(|| {
            let mut m = PrefixMap::<Ipv4Net, u16>::new();
            for e in &entries {
                m.insert(Ipv4Net::new(Ipv4Addr::from(e.key), e.len).unwrap(), e.value);
            }
            m
        });
        let (tbm, t_tbm) = timed(|| {
            let mut t = IpNetworkTable::<u16>::new();
            for e in &entries {
                let net = ip_network::Ipv4Network::new(Ipv4Addr::from(e.key), e.len).unwrap();
                t.insert(net, e.value);
            }
            t
        });
        println!(
            "lpm ipv4 {n} prefixes ({} distinct): build poptrie {:.1} ms, prefix-trie {:.1} ms, \
             ip_network_table {:.1} ms; poptrie memory {:.2} MiB",
            poptrie.len(),
            t_pop.as_secs_f64() * 1e3,
            t_pt.as_secs_f64() * 1e3,
            t_tbm.as_secs_f64() * 1e3,
            poptrie.memory_bytes() as f64 / (1 << 20) as f64
        );
        // Cross-check the three before timing them.
        let ts = traces(
            &entries,
            |e, r| e.key | (r.r#gen::<u32>() & !mask32(u32::MAX, e.len)),
            |r| r.r#gen(),
        );
        for (_, trace) in &ts {
            for &a in trace.iter().take(512) {
                let p = poptrie.lookup(a);
                let t = ptrie
                    .get_lpm(&Ipv4Net::new(Ipv4Addr::from(a), 32).unwrap())
                    .map_or(0, |x| *x.1);
                let b = tbm
                    .longest_match_ipv4(Ipv4Addr::from(a))
                    .map_or(0, |x| *x.1);
                assert_eq!((p, p), (t, b), "disagreement at {}", Ipv4Addr::from(a));
            }
        }
        let mut g = c.benchmark_group(format!("lpm/ipv4/{n}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        for (name, trace) in &ts {
            g.bench_with_input(BenchmarkId::new("poptrie", name), trace, |b, trace| {
                b.iter(|| {
                    let mut s = 0u32;
                    for &a in trace {
                        s = s.wrapping_add(u32::from(poptrie.lookup(black_box(a))));
                    }
                    s
                })
            });
            g.bench_with_input(BenchmarkId::new("prefix-trie", name), trace, |b, trace| {
                b.iter(|| {
                    let mut s = 0u32;
                    for &a in trace {
                        let q = Ipv4Net::new(Ipv4Addr::from(black_box(a)), 32).unwrap();
                        s = s.wrapping_add(ptrie.get_lpm(&q).map_or(0, |x| u32::from(*x.1)));
                    }
                    s
                })
            });
            g.bench_with_input(
                BenchmarkId::new("ip_network_table", name),
                trace,
                |b, trace| {
                    b.iter(|| {
                        let mut s = 0u32;
                        for &a in trace {
                            let r = tbm.longest_match_ipv4(Ipv4Addr::from(black_box(a)));
                            s = s.wrapping_add(r.map_or(0, |x| u32::from(*x.1)));
                        }
                        s
                    })
                },
            );
        }
        g.finish();
        if n == 1_000_000 {
            let mut g = c.benchmark_group("lpm/build");
            g.sample_size(10);
            g.bench_function("poptrie/ipv4/1M", |b| {
                b.iter(|| Ipv4Table::build(&entries).unwrap())
            });
            g.finish();
        }
    }
}

fn bench_v6(c: &mut Criterion) {
    let n = 100_000usize;
    let entries = v6_entries(n, 66);
    let (poptrie, t_pop) = timed(|| Ipv6Table::build(&entries).unwrap());
    let (ptrie, t_pt) = timed(|| {
        let mut m = PrefixMap::<Ipv6Net, u16>::new();
        for e in &entries {
            m.insert(Ipv6Net::new(Ipv6Addr::from(e.key), e.len).unwrap(), e.value);
        }
        m
    });
    let (tbm, t_tbm) = timed(|| {
        let mut t = IpNetworkTable::<u16>::new();
        for e in &entries {
            t.insert(
                ip_network::Ipv6Network::new(Ipv6Addr::from(e.key), e.len).unwrap(),
                e.value,
            );
        }
        t
    });
    println!(
        "lpm ipv6 {n} prefixes ({} distinct): build poptrie {:.1} ms, prefix-trie {:.1} ms, \
         ip_network_table {:.1} ms; poptrie memory {:.2} MiB",
        poptrie.len(),
        t_pop.as_secs_f64() * 1e3,
        t_pt.as_secs_f64() * 1e3,
        t_tbm.as_secs_f64() * 1e3,
        poptrie.memory_bytes() as f64 / (1 << 20) as f64
    );
    let ts = traces(
        &entries,
        |e, r| e.key | (r.r#gen::<u128>() & !mask128(u128::MAX, e.len)),
        |r| (r.r#gen::<u128>() >> 3) | (1u128 << 125),
    );
    for (_, trace) in &ts {
        for &a in trace.iter().take(512) {
            let p = poptrie.lookup(a);
            let t = ptrie
                .get_lpm(&Ipv6Net::new(Ipv6Addr::from(a), 128).unwrap())
                .map_or(0, |x| *x.1);
            let b = tbm
                .longest_match_ipv6(Ipv6Addr::from(a))
                .map_or(0, |x| *x.1);
            assert_eq!((p, p), (t, b), "disagreement at {}", Ipv6Addr::from(a));
        }
        let mut batch = vec![0u16; trace.len()];
        poptrie.lookup_batch(trace, &mut batch);
        for (&a, &v) in trace.iter().zip(&batch) {
            assert_eq!(
                v,
                poptrie.lookup(a),
                "batch disagreement at {}",
                Ipv6Addr::from(a)
            );
        }
    }
    let mut g = c.benchmark_group(format!("lpm/ipv6/{n}"));
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, trace) in &ts {
        g.bench_with_input(BenchmarkId::new("poptrie", name), trace, |b, trace| {
            b.iter(|| {
                let mut s = 0u32;
                for &a in trace {
                    s = s.wrapping_add(u32::from(poptrie.lookup(black_box(a))));
                }
                s
            })
        });
        // The worker's way: a receive burst's addresses at once (`lookup_batch`, walks in
        // lockstep), in bursts of 64.
        g.bench_with_input(
            BenchmarkId::new("poptrie-batch", name),
            trace,
            |b, trace| {
                let mut out = [0u16; 64];
                b.iter(|| {
                    let mut s = 0u32;
                    for keys in black_box(trace).chunks(64) {
                        let out = &mut out[..keys.len()];
                        poptrie.lookup_batch(keys, out);
                        s = out.iter().fold(s, |s, &v| s.wrapping_add(u32::from(v)));
                    }
                    s
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("prefix-trie", name), trace, |b, trace| {
            b.iter(|| {
                let mut s = 0u32;
                for &a in trace {
                    let q = Ipv6Net::new(Ipv6Addr::from(black_box(a)), 128).unwrap();
                    s = s.wrapping_add(ptrie.get_lpm(&q).map_or(0, |x| u32::from(*x.1)));
                }
                s
            })
        });
        g.bench_with_input(
            BenchmarkId::new("ip_network_table", name),
            trace,
            |b, trace| {
                b.iter(|| {
                    let mut s = 0u32;
                    for &a in trace {
                        let r = tbm.longest_match_ipv6(Ipv6Addr::from(black_box(a)));
                        s = s.wrapping_add(r.map_or(0, |x| u32::from(*x.1)));
                    }
                    s
                })
            },
        );
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = bench_v4, bench_v6 }
