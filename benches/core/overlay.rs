//! The runtime overlay (per-subscriber classes, `policy::overlay`): what a 1M-entry
//! overlay costs a worker's class lookup, beside the file table alone, and how fast the
//! control plane takes updates (insert + publish a snapshot).
//!
//! Run: `cargo bench --bench core -- class_lookup` (add `-- --quick` for a short run). One core, one
//! thread. Lookups are in batches of `BATCH` addresses (criterion's `thrpt` column is
//! lookups per second); half the addresses hit an overlay entry.

use criterion::{black_box, criterion_group, Criterion, Throughput};
use op25b::control::overlay::store::{EntrySource, OverlayEntry, Store};
use op25b::policy::{BlockAction, Policy, PolicyBuilder, ReplyKind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::Ipv4Addr;
use std::time::Instant;

const BATCH: usize = 4096;
const OVERLAY: usize = 1_000_000;

/// A file policy of 10,000 dynamic /22 pools (10.0.0.0/8 and 100.64.0.0/10 space).
fn policy() -> Policy {
    let mut b = PolicyBuilder::new();
    b.class(
        "dynamic",
        [25],
        BlockAction::Reject(ReplyKind::TcpReset),
        true,
    )
    .unwrap();
    b.class("static", [], BlockAction::Drop, false).unwrap();
    for i in 0..10_000u32 {
        let a = Ipv4Addr::from(0x0a00_0000 + (i << 10));
        b.subscriber(format!("{a}/22").parse().unwrap(), 0);
    }
    b.build().unwrap()
}

fn entry(a: u32, class: &str, source: EntrySource) -> OverlayEntry {
    OverlayEntry {
        prefix: format!("{}/32", Ipv4Addr::from(a)).parse().unwrap(),
        class: class.into(),
        source,
        note: String::new(),
        created: 0,
        expires: None,
        session: None,
    }
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let mut rng = SmallRng::seed_from_u64(7);
    // 1M entries inside the pools (10.0.0.0/8 up to 10.156.63.255).
    let t = Instant::now();
    let mut store = Store::new(&p, 1);
    let mut addrs = Vec::with_capacity(OVERLAY);
    while store.len() < OVERLAY {
        let a = 0x0a00_0000 + rng.gen_range(0..(10_000u32 << 10));
        if store
            .upsert(entry(a, "static", EntrySource::Radius))
            .unwrap()
            .is_none()
        {
            addrs.push(a);
        }
    }
    let build = t.elapsed();
    let t = Instant::now();
    let big = store.snapshot();
    let snap = t.elapsed();
    println!(
        "overlay: {OVERLAY} IPv4 entries inserted in {:.2} s ({:.0} inserts/s); snapshot (clone) {:?}",
        build.as_secs_f64(),
        OVERLAY as f64 / build.as_secs_f64(),
        snap
    );
    // The state file of 1M entries: written at most once a second, read at start.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlay.jsonl");
    let t = Instant::now();
    store.save(&path).unwrap();
    let saved = t.elapsed();
    let t = Instant::now();
    let mut loaded = Store::new(&p, 1);
    let r = loaded.load(&path, 1).unwrap();
    let load = t.elapsed();
    assert_eq!(r.loaded, OVERLAY);
    println!(
        "state file: {OVERLAY} entries, {} MiB, saved in {:.2} s, loaded in {:.2} s",
        std::fs::metadata(&path).unwrap().len() >> 20,
        saved.as_secs_f64(),
        load.as_secs_f64()
    );
    drop(loaded);
    // The trace: half overlay hits, half pool addresses without an entry.
    let trace: Vec<u32> = (0..BATCH)
        .map(|i| {
            if i % 2 == 0 {
                addrs[rng.gen_range(0..addrs.len())]
            } else {
                0x0a00_0000 + rng.gen_range(0..(10_000u32 << 10))
            }
        })
        .collect();
    let empty = op25b::policy::overlay::Overlay::default();
    let mut g = c.benchmark_group("class_lookup_v4");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("file table only", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for &a in &trace {
                n += u32::from(p.class_of_v4_with(black_box(a), &empty).unwrap_or(9));
            }
            n
        })
    });
    g.bench_function("file table + 1M-entry overlay", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for &a in &trace {
                n += u32::from(p.class_of_v4_with(black_box(a), &big).unwrap_or(9));
            }
            n
        })
    });
    g.finish();

    // Updates on the 1M-entry store: one insert + a published snapshot each (the
    // operator socket publishes per change), and 1,000 inserts per snapshot (a batch).
    let mut g = c.benchmark_group("overlay_update_1M");
    g.throughput(Throughput::Elements(1));
    let mut next = 0x6440_0000u32; // 100.64.0.0: outside the existing entries
    g.bench_function("insert + snapshot", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            store
                .upsert(entry(next, "static", EntrySource::Operator))
                .unwrap();
            black_box(store.snapshot())
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 inserts + snapshot", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                next = next.wrapping_add(1);
                store
                    .upsert(entry(next, "static", EntrySource::Operator))
                    .unwrap();
            }
            black_box(store.snapshot())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
