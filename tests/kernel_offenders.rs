//! The abuse desk's data without the workers (issue 35, item 5): op25b's real XDP
//! program (bpf/op25b_xdp.c, as embedded in the binary) drops blocked outbound attempts
//! in mode `kernel` and counts them per source in its `offenders` map;
//! `datapath::kernel::OffenderReader` takes them out, and `control::topk::KernelList`
//! turns them into the same top list the workers feed (`op25b top`, the offender log,
//! auto-quarantine). Frames run through BPF_PROG_TEST_RUN.
//!
//! Needs root (CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN to load the XDP program);
//! scripts/test.sh runs it.

use op25b::datapath::kernel::{KernelOffender, KernelPolicy, OffenderReader};
use op25b::datapath::settings::FastPathMode;
use op25b::datapath::xdp::{Program, XdpProgramSettings, XDP_DROP, XDP_REDIRECT};
use op25b::policy::overlay::Overlay;
use op25b::policy::{BlockAction, Direction, Policy, PolicyBuilder};
use op25b::topk::{self, KernelList};
use op25b_testkit::fixtures;
use std::net::IpAddr;

fn policy() -> Policy {
    let mut b = PolicyBuilder::new();
    let dynamic = b.class("dynamic", [25], BlockAction::Drop, true).unwrap();
    let fixed = b.class("static", [], BlockAction::Drop, false).unwrap();
    let quarantine = b
        .class("quarantine", [25, 465, 587], BlockAction::Drop, true)
        .unwrap();
    b.subscriber("198.51.100.0/24".parse().unwrap(), dynamic)
        .subscriber("198.51.100.200/32".parse().unwrap(), fixed)
        .subscriber("198.51.100.128/28".parse().unwrap(), quarantine)
        .subscriber("2001:db8:100::/48".parse().unwrap(), dynamic)
        .subscriber("2001:db8:100:666::/64".parse().unwrap(), quarantine)
        .allow("203.0.113.25/32".parse().unwrap());
    let p = b.build().unwrap();
    // Counter slots other than the class ids, as after reloads.
    assert!(p.set_counter_slots((0..p.classes().len() as u16).map(|i| 40 + i).collect()));
    p
}

fn slot_of(p: &Policy, name: &str) -> u32 {
    let id = p.classes().iter().position(|c| c.name == name).unwrap();
    p.counter_slot(id as u8) as u32
}

/// A program of `direction` in mode kernel with `policy` in its maps, sharing the maps
/// of `with` if given.
fn program(p: &Policy, direction: Direction, with: Option<&Program>) -> Program {
    let prog = Program::load_sharing(1, with.map(|w| w.shared()))
        .expect("load op25b's XDP program (needs root)");
    prog.set_peer(1).expect("devmap entry");
    let inbound = direction == Direction::Inbound;
    let s = XdpProgramSettings::new(
        FastPathMode::Kernel,
        true,
        inbound,
        0,
        &p.userspace_ports(direction),
        1,
    );
    prog.write_settings(&s).expect("settings");
    prog
}

fn syn4(src: [u8; 4], dst: [u8; 4], port: u16, from_subscriber: bool) -> Vec<u8> {
    let ip = fixtures::tcp4(src, dst, 40000, port, fixtures::Tcp::Syn, &[]);
    fixtures::wrap(fixtures::Encap::Plain, &ip, false, from_subscriber)
}

fn syn6(src: &str, dst: &str, port: u16) -> Vec<u8> {
    let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let ip = fixtures::tcp6(a(src), a(dst), 40000, port, fixtures::Tcp::Syn, &[]);
    fixtures::wrap(fixtures::Encap::Plain, &ip, true, true)
}

fn monotonic_ns() -> u64 {
    op25b::datapath::clock::monotonic_us() * 1000
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn dropped_attempts_reach_the_top_list_without_a_worker() {
    let p = policy();
    let out = program(&p, Direction::Outbound, None);
    let inb = program(&p, Direction::Inbound, Some(&out));
    let mut kernel = KernelPolicy::new(out.shared().try_clone().unwrap()).unwrap();
    kernel.publish(&p).unwrap();
    kernel.write_overlay(Overlay::empty(), None, &p).unwrap();
    let mut reader = OffenderReader::new(out.shared()).unwrap();

    let t0 = monotonic_ns();
    let quarantined = [198, 51, 100, 130];
    let mta = [203, 0, 113, 80];
    for port in [587, 587, 465, 25, 587] {
        assert_eq!(
            out.test_run(&syn4(quarantined, mta, port, true)).unwrap(),
            XDP_DROP
        );
    }
    let v6 = syn6("2001:db8:100:666::5", "2001:db8:ff::80", 25);
    for _ in 0..2 {
        assert_eq!(out.test_run(&v6).unwrap(), XDP_DROP);
    }
    let dynamic = [198, 51, 100, 10];
    assert_eq!(
        out.test_run(&syn4(dynamic, mta, 25, true)).unwrap(),
        XDP_DROP
    );
    // Forwarded in the kernel: no attempt to count.
    let relay = [203, 0, 113, 25];
    assert_eq!(
        out.test_run(&syn4(dynamic, relay, 25, true)).unwrap(),
        XDP_REDIRECT
    );
    assert_eq!(
        out.test_run(&syn4(dynamic, mta, 587, true)).unwrap(),
        XDP_REDIRECT
    );
    // Inbound (IP25B) drops are not the abuse desk's: not counted by source.
    assert_eq!(
        inb.test_run(&syn4(mta, dynamic, 25, false)).unwrap(),
        XDP_DROP
    );
    let t1 = monotonic_ns();

    let mut drained = Vec::new();
    assert_eq!(reader.drain(100, &mut drained).unwrap(), 3);
    drained.sort_by_key(|o| std::cmp::Reverse(o.count));
    let q = drained[0];
    assert_eq!(q.src, topk::key_v4(u32::from_be_bytes(quarantined)));
    assert_eq!(q.count, 5);
    assert_eq!(q.last_dst, topk::key_v4(u32::from_be_bytes(mta)));
    assert_eq!((q.slot, q.port), (slot_of(&p, "quarantine"), 587));
    assert!(
        t0 <= q.first_ns && q.first_ns <= q.last_ns && q.last_ns <= t1,
        "{q:?} within [{t0}, {t1}]"
    );
    let six = drained[1];
    assert_eq!(
        six.src,
        u128::from("2001:db8:100:666::5".parse::<std::net::Ipv6Addr>().unwrap())
    );
    assert_eq!((six.count, six.port), (2, 25));
    let d = drained[2];
    assert_eq!(
        (d.src, d.count),
        (topk::key_v4(u32::from_be_bytes(dynamic)), 1)
    );
    assert_eq!(d.slot, slot_of(&p, "dynamic"));
    // Drained means taken out: the next drain starts from nothing.
    let mut again = Vec::new();
    assert_eq!(reader.drain(100, &mut again).unwrap(), 0);

    // Into the abuse desk's list, with a later drain adding to the same source.
    let mut list = KernelList::with_start(op25b::datapath::clock::zero_ns());
    list.absorb(&drained);
    let other_mta = [203, 0, 113, 81];
    for _ in 0..3 {
        assert_eq!(
            out.test_run(&syn4(quarantined, other_mta, 465, true))
                .unwrap(),
            XDP_DROP
        );
    }
    reader.drain(100, &mut again).unwrap();
    assert_eq!(again.len(), 1);
    list.absorb(&again);
    let name = |slot: usize| {
        p.classes()
            .iter()
            .enumerate()
            .find(|(id, _)| p.counter_slot(*id as u8) == slot)
            .map(|(_, c)| c.name.clone())
    };
    let top = topk::merge([list.entries()], name, op25b::clock::epoch(), 10);
    assert_eq!(top.len(), 3);
    assert_eq!(top[0].src, IpAddr::from(quarantined));
    assert_eq!((top[0].attempts, top[0].error), (8, 0));
    assert_eq!(top[0].class.as_deref(), Some("quarantine"));
    assert_eq!(
        top[0].dst_sample,
        IpAddr::from(other_mta),
        "the last attempt's"
    );
    assert_eq!(top[0].distinct_destinations, 2);
    assert_eq!(top[1].class.as_deref(), Some("quarantine"));
    assert_eq!(top[2].class.as_deref(), Some("dynamic"));
    let now = op25b::clock::epoch() + op25b::clock::secs();
    for o in &top {
        assert!(
            o.first_seen <= o.last_seen && now - o.first_seen <= 2,
            "{o:?} now {now}"
        );
    }
}

/// A drain takes at most what it is asked for and the next one goes on where it
/// stopped, so a full map is swept whole in a few drains and no entry is read twice.
#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn a_drain_is_bounded_and_sweeps_the_whole_map() {
    let prog = Program::load(1).expect("load op25b's XDP program (needs root)");
    let map = &prog.shared().offenders;
    const N: u32 = 5000;
    for i in 0..N {
        let key = topk::key_v4(0xc633_0000 + i).to_be_bytes();
        let mut v = [0u8; 48];
        v[..8].copy_from_slice(&u64::from(i + 1).to_ne_bytes());
        map.update(&key, &v).unwrap();
    }
    let mut reader = OffenderReader::new(prog.shared()).unwrap();
    let mut seen: Vec<KernelOffender> = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let mut d = Vec::new();
        let n = reader.drain(2000, &mut d).unwrap();
        assert_eq!(n, d.len());
        seen.extend(d);
        sizes.push(n);
        if n == 0 || sizes.len() > 10 {
            break;
        }
    }
    // Whole hash buckets at a time: a drain may stop a few entries short of its bound.
    assert!(
        sizes.len() == 4 && sizes[..2].iter().all(|&n| (1990..=2000).contains(&n)),
        "bounded, continued, then empty: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), N as usize, "{sizes:?}");
    seen.sort_by_key(|o| o.src);
    seen.dedup_by_key(|o| o.src);
    assert_eq!(seen.len(), N as usize, "every entry once");
    assert!(seen
        .iter()
        .all(|o| o.count == u64::from((o.src as u32) - 0xc633_0000 + 1)));
}
