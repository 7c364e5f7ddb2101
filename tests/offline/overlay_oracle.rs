//! The runtime overlay against a linear-scan oracle: for random file prefixes and random
//! overlay entries (IPv4 /32s; IPv6 prefixes of any length), the class a worker looks up
//! is the most specific match across both, the overlay winning a tie.

use ipnet::{IpNet, Ipv6Net};
use op25b::classify::BurstClassifier;
use op25b::control::overlay::store::{EntrySource, OverlayEntry, Store};
use op25b::policy::{BlockAction, Direction, PolicyBuilder};
use op25b_testkit::fixtures;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

fn entry(prefix: IpNet, class: &str) -> OverlayEntry {
    OverlayEntry {
        prefix,
        class: class.into(),
        source: EntrySource::Operator,
        note: String::new(),
        created: 0,
        expires: None,
        session: None,
    }
}

const CLASSES: [&str; 3] = ["a", "b", "c"];

static FILLER: std::sync::OnceLock<Vec<IpNet>> = std::sync::OnceLock::new();

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v6_most_specific_wins_across_file_and_overlay(
        // A small address space (top 16 bits fixed, then 8 varying bits) so prefixes nest.
        file in proptest::collection::vec((0u8..=255, 16u8..=64, 0usize..3), 0..12),
        over in proptest::collection::vec((0u8..=255, 16u8..=128, 0usize..3), 0..12),
        probes in proptest::collection::vec((0u8..=255, any::<u64>()), 32),
    ) {
        let base: u128 = 0x2001_0db8u128 << 96;
        let addr = |hi: u8, lo: u64| base | (u128::from(hi) << 88) | u128::from(lo);
        let mut b = PolicyBuilder::new();
        for c in CLASSES {
            b.class(c, [25], BlockAction::Drop, false).unwrap();
        }
        let mut file_list = Vec::new();
        for &(hi, len, c) in &file {
            let net = mask6(addr(hi, 0), len);
            // Duplicates: the last one wins in the file, as in the builder.
            file_list.retain(|&(n, l, _)| !(n == net && l == len));
            file_list.push((net, len, c));
            b.subscriber(IpNet::V6(Ipv6Net::new(Ipv6Addr::from(net), len).unwrap()), c as u8);
        }
        // Filler outside 2001:db8::/32 (no probe's): a table big enough that the burst
        // classifier below batches its lookups.
        for net in FILLER.get_or_init(|| fixtures::filler_v6(20_000)) {
            b.subscriber(*net, 0);
        }
        let p = b.build().unwrap();
        prop_assert!(p.batch_v6_lookups());
        let mut store = Store::new(&p, 1);
        let mut over_list: Vec<(u128, u8, usize)> = Vec::new();
        for &(hi, len, c) in &over {
            let net = mask6(addr(hi, 0x1234_5678_9abc_def0), len);
            over_list.retain(|&(n, l, _)| !(n == net && l == len));
            over_list.push((net, len, c));
            let prefix = IpNet::V6(Ipv6Net::new(Ipv6Addr::from(net), len).unwrap());
            store.upsert(entry(prefix, CLASSES[c])).unwrap();
        }
        let snap = store.snapshot();
        for &(hi, lo) in &probes {
            let a = addr(hi, lo);
            let best = |list: &[(u128, u8, usize)]| {
                list.iter()
                    .filter(|&&(n, l, _)| mask6(a, l) == n)
                    .max_by_key(|&&(_, l, _)| l)
                    .map(|&(_, l, c)| (l, c))
            };
            let want = match (best(&file_list), best(&over_list)) {
                (Some((fl, _)), Some((ol, oc))) if ol >= fl => Some(oc as u8),
                (Some((_, fc)), _) => Some(fc as u8),
                (None, Some((_, oc))) => Some(oc as u8),
                (None, None) => None,
            };
            prop_assert_eq!(p.class_of_v6_with(a, &snap), want, "address {:x}", a);
        }
        // The worker's burst classifier (the burst's addresses looked up together) finds
        // the same class for a TCP SYN from each probe address.
        let frames: Vec<Vec<u8>> = probes
            .iter()
            .map(|&(hi, lo)| {
                let ip = fixtures::tcp6(addr(hi, lo).to_be_bytes(), fixtures::addr::EXTERNAL6, 40000, 25, fixtures::Tcp::Syn, &[]);
                fixtures::wrap(fixtures::Encap::Plain, &ip, true, true)
            })
            .collect();
        let mut burst = BurstClassifier::with_capacity(frames.len());
        burst.prepare(frames.iter().map(|f| &f[..]), Direction::Outbound, &p);
        for (i, &(hi, lo)) in probes.iter().enumerate() {
            let (_, c) = burst.classify(i, &frames[i], Direction::Outbound, &p, &snap);
            prop_assert_eq!(c.class, p.class_of_v6_with(addr(hi, lo), &snap), "burst, address {:x}", addr(hi, lo));
        }
        prop_assert_eq!(burst.single_lookups(), 0);
    }

    #[test]
    fn v4_overlay_entry_beats_any_file_prefix(
        file in proptest::collection::vec((any::<u16>(), 8u8..=32, 0usize..3), 0..12),
        over in proptest::collection::vec((any::<u16>(), 0usize..3), 0..12),
        probes in proptest::collection::vec(any::<u16>(), 32),
    ) {
        let addr = |x: u16| 0xc633_0000u32 | u32::from(x); // 198.51.0.0/16
        let mask = |a: u32, len: u8| if len == 0 { 0 } else { a & (u32::MAX << (32 - u32::from(len))) };
        let mut b = PolicyBuilder::new();
        for c in CLASSES {
            b.class(c, [25], BlockAction::Drop, false).unwrap();
        }
        let mut file_list: Vec<(u32, u8, usize)> = Vec::new();
        for &(x, len, c) in &file {
            let net = mask(addr(x), len);
            file_list.retain(|&(n, l, _)| !(n == net && l == len));
            file_list.push((net, len, c));
            b.subscriber(format!("{}/{len}", Ipv4Addr::from(net)).parse().unwrap(), c as u8);
        }
        let p = b.build().unwrap();
        let mut store = Store::new(&p, 1);
        let mut over_map = std::collections::HashMap::new();
        for &(x, c) in &over {
            over_map.insert(addr(x), c);
            store
                .upsert(entry(format!("{}/32", Ipv4Addr::from(addr(x))).parse().unwrap(), CLASSES[c]))
                .unwrap();
        }
        let snap = store.snapshot();
        for &x in probes.iter().chain(over.iter().map(|(x, _)| x)) {
            let a = addr(x);
            let want = over_map.get(&a).map(|&c| c as u8).or_else(|| {
                file_list
                    .iter()
                    .filter(|&&(n, l, _)| mask(a, l) == n)
                    .max_by_key(|&&(_, l, _)| l)
                    .map(|&(_, _, c)| c as u8)
            });
            prop_assert_eq!(p.class_of_v4_with(a, &snap), want);
        }
    }
}
