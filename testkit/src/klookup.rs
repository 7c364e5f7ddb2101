//! The benchmark's subscriber tables of any size (`op25b-bench prefixes`), and what op25b's
//! XDP program costs per frame with them in the kernel (`op25b-bench kernel-lookup`).
//!
//! **Tables.** [`bench_prefixes`] lays out `n` subscriber prefixes like
//! configs/prefixes/bench-dynamic.txt (10,000 of them, committed): about 70% IPv4
//! blocks, every other one, over the CGNAT space 100.64.0.0/10, the rest IPv6 blocks,
//! every other one, over 2001:db8:1000::/36, plus the two dynamic pools the benchmark
//! profiles send from ([`POOLS`]). The blocks get smaller as `n` grows (10,000: IPv4
//! /24s, the committed file's, and IPv6 /49s spread over the space where the file packs
//! /48s; 1,000,000: IPv4 /30s and IPv6 /56s), so every table fits the same space and
//! none overlaps the profiles' static, quarantined, unmatched or destination ranges.
//! scripts/bench.sh writes its 1M table with it at run time (`op25b-bench prefixes`).
//!
//! **Lookup cost.** [`kernel_lookup`] loads op25b's XDP program ([`Program`]), writes a
//! policy with such a table into its maps ([`KernelPolicy::publish`], BPF LPM tries) and
//! runs TCP SYNs to port 25 through BPF_PROG_TEST_RUN ([`Program::test_run_repeat`]: the
//! kernel's mean time per run, nothing is sent): sources inside a table block (a hit:
//! dropped in the kernel) and in the gap beside one (a miss after the deepest walk:
//! forwarded), IPv4 and IPv6, in mode `kernel` and, as the baseline without any lookup,
//! in mode `unblockable` (the same SYNs go to the workers' socket). A SYN to 443 is the
//! frame neither mode looks up. A frame repeated in the kernel keeps its trie path in
//! the caches, so more rows run 4,096 frames from sources spread over the whole table
//! (hits, and misses in the gaps) once each (the mean of single runs, as a storm from
//! many sources would walk), beside one source run the same way. This is the measurement issue 35 asked for to choose
//! the kernel's structure at 10k and 1M prefixes (docs/benchmarks.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ipnet::IpNet;
use op25b::datapath::kernel::KernelPolicy;
use op25b::datapath::settings::FastPathMode;
use op25b::datapath::xdp::{Program, XdpProgramSettings, XDP_DROP, XDP_PASS, XDP_REDIRECT};
use op25b::policy::{BlockAction, Direction, PolicyBuilder};
use serde::Serialize;

use crate::fixtures::{self, Encap, Tcp};

/// The dynamic pools the benchmark profiles send from (configs/bench-profile*.yaml);
/// every table holds them.
pub const POOLS: [&str; 2] = ["198.51.100.0/24", "2001:db8:100::/48"];
/// IPv4 table space: 100.64.0.0/10 (RFC 6598), 2^22 addresses.
const V4_BASE: u32 = 0x6440_0000;
const V4_BITS: u32 = 22;
/// IPv6 table space: 2001:db8:1000::/36, counted in /56 units (2^20 of them).
const V6_BASE: u128 = 0x2001_0db8_1000_u128 << 80;
const V6_UNIT_BITS: u32 = 72;
const V6_UNITS_BITS: u32 = 20;
/// The largest table: every other /30 of the IPv4 space and every other /56 of the IPv6
/// space, plus the pools.
pub const MAX_PREFIXES: usize = (1 << (V4_BITS - 3)) + (1 << (V6_UNITS_BITS - 1)) + POOLS.len();

/// How a table of `n` prefixes is laid out: per family, the number of blocks, the
/// distance between block starts (a power of two) and the block's prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    n4: usize,
    stride4: u32,
    len4: u8,
    n6: usize,
    /// In /56 units.
    stride6: u128,
    len6: u8,
}

/// The largest power of two `p` with `p * n <= 2^bits` (n >= 1).
fn stride_for(n: usize, bits: u32) -> u32 {
    let room = (1u64 << bits) / n.max(1) as u64;
    63 - room.leading_zeros()
}

fn layout(n: usize) -> Result<Layout, String> {
    if !(POOLS.len()..=MAX_PREFIXES).contains(&n) {
        return Err(format!(
            "a benchmark table holds {}..={MAX_PREFIXES} prefixes, not {n}",
            POOLS.len()
        ));
    }
    let fill = n - POOLS.len();
    let n4 = (n * 7 / 10).min(fill).min(1 << (V4_BITS - 3));
    let n6 = fill - n4;
    if n6 > 1 << (V6_UNITS_BITS - 1) {
        return Err(format!("{n} prefixes do not fit the IPv6 table space"));
    }
    // Every other block: the block is half the stride.
    let s4 = stride_for(n4, V4_BITS);
    let s6 = stride_for(n6, V6_UNITS_BITS);
    Ok(Layout {
        n4,
        stride4: 1 << s4,
        len4: (32 - (s4 - 1)) as u8,
        n6,
        stride6: 1 << s6,
        len6: (128 - V6_UNIT_BITS - (s6 - 1)) as u8,
    })
}

/// `n` subscriber prefixes for the benchmark's dynamic class (module docs), pools last.
pub fn bench_prefixes(n: usize) -> Result<Vec<IpNet>, String> {
    let l = layout(n)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..l.n4 {
        let a = Ipv4Addr::from(V4_BASE + i as u32 * l.stride4);
        out.push(IpNet::new(IpAddr::V4(a), l.len4).expect("length <= 32"));
    }
    for i in 0..l.n6 {
        let a = Ipv6Addr::from(V6_BASE + ((i as u128 * l.stride6) << V6_UNIT_BITS));
        out.push(IpNet::new(IpAddr::V6(a), l.len6).expect("length <= 128"));
    }
    for p in POOLS {
        out.push(p.parse().expect("pool prefix"));
    }
    Ok(out)
}

/// [`bench_prefixes`] as a prefix file (one prefix a line, `#` comments), as
/// configs/prefixes/bench-dynamic.txt.
pub fn prefix_file(n: usize) -> Result<String, String> {
    let l = layout(n)?;
    let mut s = format!(
        "# {n}-prefix subscriber table for the benchmark, written by `op25b-bench prefixes --count {n}`:\n\
         # {} IPv4 /{}s (every other one) of 100.64.0.0/10, {} IPv6 /{}s (every other one) of 2001:db8:1000::/36,\n\
         # plus the two documentation pools the benchmark traffic comes from.\n",
        l.n4, l.len4, l.n6, l.len6
    );
    for p in bench_prefixes(n)? {
        s.push_str(&p.to_string());
        s.push('\n');
    }
    Ok(s)
}

/// Sources of the measured frames: inside a block in the middle of the table (hit) and
/// in the gap right after it (miss: the walk goes as deep as for a hit).
fn probes(n: usize) -> Result<[(IpAddr, IpAddr); 2], String> {
    let l = layout(n)?;
    let b4 = V4_BASE + (l.n4 / 2) as u32 * l.stride4;
    let b6 = V6_BASE + (((l.n6 / 2) as u128 * l.stride6) << V6_UNIT_BITS);
    let gap6 = (l.stride6 / 2) << V6_UNIT_BITS;
    Ok([
        (
            IpAddr::V4(Ipv4Addr::from(b4 + 1)),
            IpAddr::V4(Ipv4Addr::from(b4 + l.stride4 / 2 + 1)),
        ),
        (
            IpAddr::V6(Ipv6Addr::from(b6 + 1)),
            IpAddr::V6(Ipv6Addr::from(b6 + gap6 + 1)),
        ),
    ])
}

/// `k` sources spread over the whole table, per family: inside a block each (hits), or
/// in the gap after it (`miss`).
fn spread(n: usize, k: usize, miss: bool) -> Result<[Vec<IpAddr>; 2], String> {
    let l = layout(n)?;
    let pick = |blocks: usize, i: usize| (i * blocks.max(1) / k) % blocks.max(1);
    let (gap4, gap6) = if miss {
        (l.stride4 / 2, (l.stride6 / 2) << V6_UNIT_BITS)
    } else {
        (0, 0)
    };
    Ok([
        (0..k)
            .map(|i| {
                let b = V4_BASE + pick(l.n4, i) as u32 * l.stride4 + gap4;
                IpAddr::V4(Ipv4Addr::from(
                    b + 1 + (i as u32 % (l.stride4 / 2 - 1).max(1)),
                ))
            })
            .collect(),
        (0..k)
            .map(|i| {
                let b = V6_BASE + ((pick(l.n6, i) as u128 * l.stride6) << V6_UNIT_BITS) + gap6;
                IpAddr::V6(Ipv6Addr::from(b + 1 + i as u128))
            })
            .collect(),
    ])
}

/// A 64-byte (IPv6: 84-byte) TCP SYN from `src` to an address outside the allowed
/// relays, like the benchmark's frames.
fn syn(src: IpAddr, dport: u16) -> Vec<u8> {
    let pad = [0u8; 10];
    match src {
        IpAddr::V4(a) => fixtures::wrap(
            Encap::Plain,
            &fixtures::tcp4(a.octets(), [203, 0, 113, 200], 40000, dport, Tcp::Syn, &pad),
            false,
            true,
        ),
        IpAddr::V6(a) => {
            let dst: Ipv6Addr = "2001:db8:ff:8000::200".parse().expect("address");
            fixtures::wrap(
                Encap::Plain,
                &fixtures::tcp6(a.octets(), dst.octets(), 40000, dport, Tcp::Syn, &pad),
                true,
                true,
            )
        }
    }
}

/// One measured frame in one mode.
#[derive(Clone, Debug, Serialize)]
pub struct LookupRow {
    pub prefixes: usize,
    /// `kernel` or `unblockable`.
    pub mode: &'static str,
    /// e.g. `ipv4 tcp/25 hit`; `..., 4096 sources`: the mean of single runs.
    pub frame: String,
    /// What the program did: `drop`, `redirect` (forwarded in the kernel) or `pass`
    /// (to the workers' socket; none is registered here, so the kernel stack).
    pub action: &'static str,
    /// The kernel's mean ns per run: median of the rounds, and their range.
    pub ns: u32,
    pub ns_min: u32,
    pub ns_max: u32,
}

/// One table size: what it took to build and to write into the kernel.
#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    pub prefixes: usize,
    /// [`PolicyBuilder::build`] (op25b's own tables), ms.
    pub build_ms: u64,
    /// [`KernelPolicy::publish`] (one generation of the BPF maps), ms.
    pub publish_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LookupReport {
    pub repeat: u32,
    pub rounds: usize,
    pub tables: Vec<TableRow>,
    pub rows: Vec<LookupRow>,
}

fn action_name(a: u32) -> &'static str {
    match a {
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        XDP_REDIRECT => "redirect",
        _ => "other",
    }
}

/// Sources of the spread rows.
const SPREAD: usize = 4096;

fn row(
    prefixes: usize,
    mode: &'static str,
    frame: String,
    action: u32,
    mut ns: Vec<u32>,
) -> LookupRow {
    ns.sort_unstable();
    LookupRow {
        prefixes,
        mode,
        frame,
        action: action_name(action),
        ns: ns[(ns.len() - 1) / 2],
        ns_min: ns[0],
        ns_max: ns[ns.len() - 1],
    }
}

/// Measures op25b's XDP program with a table of each size in `sizes` (module docs):
/// `rounds` x BPF_PROG_TEST_RUN with `repeat` runs per frame and mode. Needs root.
pub fn kernel_lookup(sizes: &[usize], repeat: u32, rounds: usize) -> Result<LookupReport, String> {
    let mut report = LookupReport {
        repeat,
        rounds,
        tables: Vec::new(),
        rows: Vec::new(),
    };
    for &n in sizes {
        let table = bench_prefixes(n)?;
        let t0 = Instant::now();
        let mut b = PolicyBuilder::new();
        let dynamic = b
            .class("dynamic", [25], BlockAction::Drop, true)
            .map_err(|e| e.to_string())?;
        let fixed = b
            .class("static", [], BlockAction::Drop, false)
            .map_err(|e| e.to_string())?;
        for p in &table {
            b.subscriber(*p, dynamic);
        }
        b.subscriber("198.51.100.200/32".parse().expect("prefix"), fixed)
            .subscriber("2001:db8:100::200/128".parse().expect("prefix"), fixed)
            .allow("203.0.113.25/32".parse().expect("prefix"))
            .allow("2001:db8:ff::25/128".parse().expect("prefix"));
        let policy = b.build().map_err(|e| e.to_string())?;
        let build_ms = t0.elapsed().as_millis() as u64;
        let prog = Program::load(1)
            .map_err(|e| format!("cannot load op25b's XDP program (needs root): {e}"))?;
        // The DEVMAP target: loopback exists in every namespace; BPF_PROG_TEST_RUN
        // reports XDP_REDIRECT without sending anything.
        prog.set_peer(1).map_err(|e| format!("devmap entry: {e}"))?;
        let ports = policy.userspace_ports(Direction::Outbound);
        let shared = prog.shared().try_clone().map_err(|e| e.to_string())?;
        let mut kernel = KernelPolicy::new(shared).map_err(|e| e.to_string())?;
        let published = kernel.publish(&policy).map_err(|e| e.to_string())?;
        report.tables.push(TableRow {
            prefixes: n,
            build_ms,
            publish_ms: published.millis,
        });
        let [(hit4, miss4), (hit6, miss6)] = probes(n)?;
        let frames = [
            ("ipv4 tcp/25 hit", syn(hit4, 25)),
            ("ipv4 tcp/25 miss", syn(miss4, 25)),
            ("ipv6 tcp/25 hit", syn(hit6, 25)),
            ("ipv6 tcp/25 miss", syn(miss6, 25)),
            ("ipv4 tcp/443", syn(hit4, 443)),
        ];
        for (mode, name) in [
            (FastPathMode::Kernel, "kernel"),
            (FastPathMode::Unblockable, "unblockable"),
        ] {
            prog.write_settings(&XdpProgramSettings::new(mode, true, false, 0, &ports, 1))
                .map_err(|e| format!("settings: {e}"))?;
            // Many sources, one run each: the walks miss the caches as a storm's would
            // (a repeated frame keeps its path hot), against one source run the same way.
            if mode == FastPathMode::Kernel {
                let [s4, s6] = spread(n, SPREAD, false)?;
                let [m4, m6] = spread(n, SPREAD, true)?;
                for (what, srcs) in [
                    (format!("ipv4 tcp/25 hit, {SPREAD} sources"), s4),
                    (format!("ipv6 tcp/25 hit, {SPREAD} sources"), s6),
                    (format!("ipv4 tcp/25 miss, {SPREAD} sources"), m4),
                    (format!("ipv6 tcp/25 miss, {SPREAD} sources"), m6),
                    ("ipv4 tcp/25 hit, 1 source".to_string(), vec![hit4; SPREAD]),
                    ("ipv6 tcp/25 hit, 1 source".to_string(), vec![hit6; SPREAD]),
                ] {
                    let frames: Vec<Vec<u8>> = srcs.iter().map(|a| syn(*a, 25)).collect();
                    let mut ns = Vec::with_capacity(rounds);
                    // The action of every frame, or "other" when they differ.
                    let mut action = None;
                    for _ in 0..rounds.max(1) {
                        let mut sum = 0u64;
                        for f in &frames {
                            let (a, t) = prog
                                .test_run_repeat(f, 1)
                                .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
                            action = match action {
                                None => Some(a),
                                Some(b) if b == a => Some(a),
                                Some(_) => Some(u32::MAX),
                            };
                            sum += u64::from(t);
                        }
                        ns.push((sum / frames.len() as u64) as u32);
                    }
                    report
                        .rows
                        .push(row(n, name, what, action.unwrap_or(u32::MAX), ns));
                }
            }
            for (what, frame) in &frames {
                let mut ns = Vec::with_capacity(rounds);
                let mut action = 0;
                for _ in 0..rounds.max(1) {
                    let (a, t) = prog
                        .test_run_repeat(frame, repeat)
                        .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
                    action = a;
                    ns.push(t);
                }
                report
                    .rows
                    .push(row(n, name, (*what).to_string(), action, ns));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_is_the_committed_layout() {
        // 10,000 prefixes: 7000 IPv4 /24s and 2998 IPv6 blocks, as bench-dynamic.txt.
        let l = layout(10_000).unwrap();
        assert_eq!((l.n4, l.len4, l.stride4), (7000, 24, 512));
        assert_eq!(l.n6, 2998);
        let t = bench_prefixes(10_000).unwrap();
        assert_eq!(t.len(), 10_000);
        assert_eq!(t[0].to_string(), "100.64.0.0/24");
        assert_eq!(t[1].to_string(), "100.64.2.0/24");
    }

    #[test]
    fn a_million_distinct_prefixes_clear_of_the_profiles() {
        let t = bench_prefixes(1_000_000).unwrap();
        assert_eq!(t.len(), 1_000_000);
        let mut seen = std::collections::HashSet::new();
        assert!(t.iter().all(|p| seen.insert(*p)), "duplicates");
        // The profiles' other sources and destinations stay outside the table.
        let outside: [IpNet; 6] = [
            "198.51.100.0/24".parse().unwrap(),
            "192.0.2.0/24".parse().unwrap(),
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8:100::/48".parse().unwrap(),
            "2001:db8:300::/48".parse().unwrap(),
            "2001:db8:ff::/48".parse().unwrap(),
        ];
        for p in &t[..t.len() - POOLS.len()] {
            for o in &outside {
                assert!(!o.contains(p) && !p.contains(o), "{p} overlaps {o}");
            }
        }
        let l = layout(1_000_000).unwrap();
        assert_eq!((l.len4, l.len6), (30, 56));
        // The probes: inside a block, and in the gap after it.
        let [(h4, m4), (h6, m6)] = probes(1_000_000).unwrap();
        assert!(t.iter().any(|p| p.contains(&h4)) && t.iter().any(|p| p.contains(&h6)));
        assert!(!t.iter().any(|p| p.contains(&m4)) && !t.iter().any(|p| p.contains(&m6)));
    }

    #[test]
    fn sizes_outside_the_space_are_refused() {
        assert!(bench_prefixes(1).is_err());
        assert!(bench_prefixes(MAX_PREFIXES + 1).is_err());
        assert_eq!(bench_prefixes(MAX_PREFIXES).unwrap().len(), MAX_PREFIXES);
        assert!(prefix_file(2).unwrap().ends_with("2001:db8:100::/48\n"));
    }
}
