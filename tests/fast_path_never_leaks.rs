//! The kernel judges as the workers do: op25b's real XDP program (bpf/op25b_xdp.c, as
//! embedded in the binary) runs through BPF_PROG_TEST_RUN over every frame the test suite
//! knows — the golden fixtures cut at every byte, the tcpdump corpus, the hostile catalogue
//! and proptest-generated frames — in both directions, under several policies (with
//! runtime overlays, allowed destinations, IPv6, IP25B and every action), in modes
//! `kernel` and `unblockable`, with the policy and overlay compiled into its maps by
//! `datapath::kernel` as in service. **Verdict equality**: whenever the program forwards
//! (XDP_REDIRECT through the DEVMAP), `classify()` forwards; whenever it drops, `classify()`
//! drops with a drop action, for the same reason and class; handing a frame to the
//! workers is always allowed. Each set reports the share of frames the kernel decided.
//! `mutations_are_caught` shows that a wrong class bit, an off-by-one prefix length and a
//! reversed overlay tie rule each fail the check.
//!
//! Needs root (CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN to load the XDP program);
//! scripts/test.sh runs it.

use op25b::classify;
use op25b::datapath::kernel::{key6, KernelPolicy};
use op25b::datapath::settings::FastPathMode;
use op25b::datapath::xdp::{
    KernelVerdicts, PathStats, Program, XdpProgramSettings, XDP_DROP, XDP_PASS, XDP_REDIRECT,
};
use op25b::policy::overlay::{mask_v6, Overlay, V4Map, V6Map};
use op25b::policy::{
    BlockAction, Direction, FragmentPolicy, Policy, PolicyBuilder, ReplyKind, Verdict,
};
use op25b_testkit::fixtures;
use op25b_testkit::hostile;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What the program did with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path2 {
    /// Forwarded in the kernel (the fast path, with or without a lookup).
    Fast,
    /// Dropped in the kernel.
    Drop,
    /// Handed to the workers.
    User,
}

struct Harness {
    prog: Program,
    kernel: KernelPolicy,
    /// Boxed: an overlay applies to the policy at one address (`Overlay::for_policy`).
    policy: Box<Policy>,
    overlay: Overlay,
    direction: Direction,
}

/// Frames the kernel refuses as test input (shorter than an Ethernet header, or larger
/// than a page): the program cannot be asked about them here. A NIC never delivers the
/// first kind; the second arrives as a multi-buffer frame, whose first buffer the program
/// reads like a cut-short frame (to userspace).
fn testable(frame: &[u8]) -> bool {
    (14..=3000).contains(&frame.len())
}

fn v4(s: &str) -> u32 {
    s.parse::<std::net::Ipv4Addr>().unwrap().into()
}

fn v6(s: &str) -> u128 {
    s.parse::<std::net::Ipv6Addr>().unwrap().into()
}

/// An overlay for `policy`: `v4` entries (address, class name), `v6` entries (prefix,
/// length, class name).
fn overlay(policy: &Policy, v4s: &[(&str, &str)], v6s: &[(&str, u8, &str)]) -> Overlay {
    let id = |name: &str| {
        policy
            .classes()
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no class {name}")) as u8
    };
    let mut m4 = V4Map::default();
    for (a, c) in v4s {
        m4.insert(v4(a), id(c));
    }
    let mut m6 = V6Map::default();
    let mut lens = Vec::new();
    for (a, len, c) in v6s {
        m6.insert((mask_v6(v6(a), *len), *len), id(c));
        lens.push(*len);
    }
    lens.sort_unstable_by(|a, b| b.cmp(a));
    lens.dedup();
    Overlay::new(1, Overlay::policy_id_of(policy), m4, m6, lens)
}

impl Harness {
    fn new(
        policy: Policy,
        overlay_of: OverlayOf,
        direction: Direction,
        mode: FastPathMode,
    ) -> Harness {
        let prog = Program::load(1).expect("load op25b's XDP program (needs root)");
        // The DEVMAP target: loopback exists in every namespace. BPF_PROG_TEST_RUN
        // reports XDP_REDIRECT without sending anything.
        prog.set_peer(1).expect("devmap entry");
        let ports = policy.userspace_ports(direction);
        let inbound = direction == Direction::Inbound;
        prog.write_settings(&XdpProgramSettings::new(mode, true, inbound, 0, &ports, 1))
            .expect("settings");
        let policy = Box::new(policy);
        let overlay = overlay_of(&policy);
        assert!(std::ptr::eq(overlay.for_policy(&policy), &overlay));
        let mut kernel = KernelPolicy::new(prog.shared().try_clone().unwrap()).unwrap();
        kernel.publish(&policy).expect("policy into the maps");
        kernel
            .write_overlay(&overlay, None, &policy)
            .expect("overlay into the maps");
        Harness {
            prog,
            kernel,
            policy,
            overlay,
            direction,
        }
    }

    /// Runs one frame: what the program did, and the verdicts it counted.
    fn run(&self, frame: &[u8]) -> (Path2, KernelVerdicts) {
        let before = self.prog.stats().read().expect("stats");
        let vbefore = self.prog.verdicts().read().expect("verdicts");
        let action = self.prog.test_run(frame).expect("BPF_PROG_TEST_RUN");
        let d: PathStats = self.prog.stats().read().expect("stats").since(&before);
        let v = self.prog.verdicts().read().expect("verdicts");
        let dv = KernelVerdicts {
            verdicts: std::array::from_fn(|a| {
                std::array::from_fn(|r| v.verdicts[a][r] - vbefore.verdicts[a][r])
            }),
            blocked_ports: std::array::from_fn(|p| v.blocked_ports[p] - vbefore.blocked_ports[p]),
            blocked_classes: v
                .blocked_classes
                .iter()
                .zip(&vbefore.blocked_classes)
                .map(|(a, b)| a - b)
                .collect(),
        };
        let path = match (d.fast, d.to_user(), action) {
            (1, 0, XDP_REDIRECT) => Path2::Fast,
            // The XSKMAP is empty here: the userspace path falls back to XDP_PASS.
            (1, 0, a) => panic!("fast path counted but action {a}"),
            (0, 1, XDP_PASS) => Path2::User,
            (0, 0, XDP_DROP) => Path2::Drop,
            (f, u, a) => panic!("frame counted {f} fast / {u} userspace, action {a}: {frame:02x?}"),
        };
        (path, dv)
    }

    fn path(&self, frame: &[u8]) -> Path2 {
        self.run(frame).0
    }

    /// Runs one frame; returns an error line when the program's verdict is not
    /// `classify()`'s (a forward it does not forward, a drop it does not drop, or a
    /// verdict counted under another reason or class).
    fn check(&self, what: &str, frame: &[u8]) -> Result<Path2, String> {
        let (path, counted) = self.run(frame);
        if path == Path2::User {
            return Ok(path);
        }
        let info = classify::parse(frame);
        let c = classify::classify_parsed_with(
            &info,
            self.direction,
            &self.policy,
            self.overlay.for_policy(&self.policy),
        );
        let fail = |why: &str| {
            Err(format!(
                "MISMATCH {what} ({:?}): kernel {path:?}{why}, classify says {} (class {:?}) — {frame:02x?}",
                self.direction, c.verdict, c.class
            ))
        };
        let judged: u64 = counted.verdicts.iter().flatten().sum();
        match (path, c.verdict) {
            (Path2::Fast, Verdict::Forward(r)) => {
                // Judged with a lookup: counted under classify's reason.
                if judged != 0 && counted.verdicts[0][r.index()] != 1 {
                    return fail(&format!(" counted {:?}", counted.verdicts));
                }
                Ok(path)
            }
            (Path2::Drop, Verdict::Drop(r)) => {
                let slot = c.class.map(|id| self.policy.counter_slot(id));
                if counted.verdicts[1][r.index()] != 1
                    || judged != 1
                    || slot.map(|s| counted.blocked_classes[s]) != Some(1)
                    || counted.blocked_ports[op25b::datapath::counters::port_slot(c.dst_port)] != 1
                {
                    return fail(" counted under another reason, class or port");
                }
                Ok(path)
            }
            _ => fail(""),
        }
    }
}

/// Overlay of the lab policy: IPv4 /32s moved to other classes (a dynamic address made
/// static, a static one quarantined, an unmatched one dynamic), an IPv6 prefix of the
/// same length as a file prefix (the overlay wins the tie), one longer (wins), one
/// shorter than the file's most specific (loses to it), and one in unmatched space.
fn lab_overlay(p: &Policy) -> Overlay {
    overlay(
        p,
        &[
            ("198.51.100.10", "static"),
            ("198.51.100.200", "quarantine"),
            ("192.0.2.200", "dynamic"),
            ("198.51.100.130", "static"),
        ],
        &[
            ("2001:db8:100:666::", 64, "static"),
            ("2001:db8:100::", 120, "quarantine"),
            ("2001:db8:100::", 40, "static"),
            ("2001:db8:999::", 48, "quarantine"),
        ],
    )
}

fn no_overlay(p: &Policy) -> Overlay {
    overlay(p, &[], &[])
}

/// Builds the overlay a policy is judged with.
type OverlayOf = fn(&Policy) -> Overlay;

/// The policies each frame is judged under, with their overlays.
fn policies() -> Vec<(&'static str, Policy, OverlayOf)> {
    let mut out: Vec<(&'static str, Policy, OverlayOf)> = vec![
        ("lab (fixtures)", fixtures::policy(), no_overlay),
        ("lab with an overlay", fixtures::policy(), lab_overlay),
    ];
    // The lab policy with every class dropping (what the benchmarks run): the kernel
    // decides the blocked frames too.
    let mut b = PolicyBuilder::new();
    let dynamic = b.class("dynamic", [25], BlockAction::Drop, true).unwrap();
    let fixed = b.class("static", [], BlockAction::Drop, false).unwrap();
    let quarantine = b
        .class("quarantine", [25, 465, 587], BlockAction::Drop, true)
        .unwrap();
    b.subscriber("198.51.100.0/24".parse().unwrap(), dynamic)
        .subscriber("198.51.100.200/32".parse().unwrap(), fixed)
        .subscriber("198.51.100.128/28".parse().unwrap(), quarantine)
        .subscriber("192.0.2.0/24".parse().unwrap(), dynamic)
        .subscriber("2001:db8:100::/48".parse().unwrap(), dynamic)
        .subscriber("2001:db8:100::200/128".parse().unwrap(), fixed)
        .subscriber("2001:db8:100:666::/64".parse().unwrap(), quarantine)
        .subscriber("2001:db8:200::/40".parse().unwrap(), dynamic)
        .allow("203.0.113.25/32".parse().unwrap())
        .allow("2001:db8:ff::25/128".parse().unwrap())
        .unmatched(Some(fixed));
    out.push((
        "every class drops, with an overlay",
        b.build().unwrap(),
        lab_overlay,
    ));
    // Every class blocks, web ports too, unmatched space blocks, every fragment rule on.
    let mut b = PolicyBuilder::new();
    let strict = b
        .class(
            "strict",
            [25, 80, 443, 465, 587, 2525],
            BlockAction::Reject(ReplyKind::TcpReset),
            true,
        )
        .unwrap();
    let (p4, p6): (ipnet::IpNet, ipnet::IpNet) = (
        "198.51.100.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    );
    b.subscriber(p4, strict)
        .subscriber(p6, strict)
        .unmatched(Some(strict))
        .fragments(FragmentPolicy {
            drop_tiny_first: true,
            drop_non_first: true,
        });
    out.push(("strict, unmatched blocks", b.build().unwrap(), no_overlay));
    // Nothing blocks at all: the fast path may take every whole TCP segment.
    let mut b = PolicyBuilder::new();
    let open = b.class("open", [], BlockAction::Drop, false).unwrap();
    b.subscriber(p4, open).unmatched(Some(open));
    out.push(("nothing blocked", b.build().unwrap(), no_overlay));
    // Outbound only, no inbound blocking, fragments forwarded.
    let mut b = PolicyBuilder::new();
    let dynamic = b.class("dynamic", [25], BlockAction::Drop, false).unwrap();
    b.subscriber(p4, dynamic)
        .subscriber(p6, dynamic)
        .fragments(FragmentPolicy {
            drop_tiny_first: false,
            drop_non_first: false,
        });
    out.push(("outbound 25 only", b.build().unwrap(), no_overlay));
    out
}

fn harnesses() -> Vec<(String, Harness)> {
    let mut h = Vec::new();
    for (name, _, _) in policies() {
        for dir in [Direction::Outbound, Direction::Inbound] {
            for mode in [FastPathMode::Kernel, FastPathMode::Unblockable] {
                // Policy is not Clone: build each again.
                let (_, policy, ov) = policies().into_iter().find(|(n, _, _)| *n == name).unwrap();
                h.push((
                    format!("{name}, {dir:?}, {}", mode.as_str()),
                    Harness::new(policy, ov, dir, mode),
                ));
            }
        }
    }
    h
}

#[derive(Default)]
struct Tally {
    fast: usize,
    drop: usize,
    user: usize,
    untestable: usize,
    leaks: Vec<String>,
}

fn run_all(frames: &[(String, Vec<u8>)]) -> Tally {
    run_on(&harnesses(), frames)
}

fn run_on(harnesses: &[(String, Harness)], frames: &[(String, Vec<u8>)]) -> Tally {
    let mut t = Tally::default();
    for (hname, h) in harnesses {
        for (what, f) in frames {
            if !testable(f) {
                t.untestable += 1;
                continue;
            }
            match h.check(&format!("{what} [{hname}]"), f) {
                Ok(Path2::Fast) => t.fast += 1,
                Ok(Path2::Drop) => t.drop += 1,
                Ok(Path2::User) => t.user += 1,
                Err(e) => t.leaks.push(e),
            }
        }
    }
    t
}

fn assert_clean(set: &str, t: &Tally) {
    let all = (t.fast + t.drop + t.user).max(1);
    eprintln!(
        "{set}: {} forwarded and {} dropped in the kernel ({:.1}% decided there), {} to the workers, {} not testable, {} mismatches",
        t.fast,
        t.drop,
        100.0 * (t.fast + t.drop) as f64 / all as f64,
        t.user,
        t.untestable,
        t.leaks.len()
    );
    assert!(
        t.leaks.is_empty(),
        "{} frames judged in the kernel otherwise than classify() judges them:\n{}",
        t.leaks.len(),
        t.leaks
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn golden_fixtures_and_every_truncation() {
    let mut frames = Vec::new();
    for f in fixtures::all() {
        for n in 14..=f.frame.len() {
            frames.push((
                format!("{} cut at {n}", f.description),
                f.frame[..n].to_vec(),
            ));
        }
    }
    let t = run_all(&frames);
    assert_clean("fixtures", &t);
    // Both paths are exercised: the test would pass trivially otherwise.
    assert!(
        t.fast > 500 && t.user > 1000,
        "fast {} user {}",
        t.fast,
        t.user
    );
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn tcpdump_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/tcpdump-ethernet");
    assert!(
        dir.is_dir(),
        "corpus missing at {} (CI provides ../shared beside the checkout)",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut frames = Vec::new();
    let mut unreadable = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match read_capture(path) {
            Some(list) => {
                for (i, f) in list.into_iter().enumerate() {
                    frames.push((format!("{name}#{i}"), f));
                }
            }
            None => unreadable += 1,
        }
    }
    eprintln!(
        "corpus: {} files, {} frames, {unreadable} files not Ethernet pcap/pcapng",
        files.len(),
        frames.len()
    );
    assert!(frames.len() > 5_000, "only {} corpus frames", frames.len());
    let t = run_all(&frames);
    assert_clean("corpus", &t);
    assert!(t.fast > 0 && t.user > 0);
}

/// The frames of an Ethernet capture (as `op25b classify` reads them: raw records, the
/// link type's FCS bits masked, up to the first damaged record); None when the file is
/// not an Ethernet pcap/pcapng.
fn read_capture(path: &Path) -> Option<Vec<Vec<u8>>> {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let bytes = std::fs::read(path).ok()?;
    let mut out = Vec::new();
    if let Ok(mut r) = PcapReader::new(&bytes[..]) {
        if u32::from(r.header().datalink) & 0xffff != 1 {
            return None;
        }
        while let Some(Ok(p)) = r.next_raw_packet() {
            out.push(p.data.to_vec());
        }
        return Some(out);
    }
    let mut r = PcapNgReader::new(&bytes[..]).ok()?;
    while let Some(Ok(b)) = r.next_block() {
        let (iface, data) = match b {
            Block::EnhancedPacket(p) => (p.interface_id, p.data.to_vec()),
            Block::SimplePacket(p) => (0, p.data.to_vec()),
            _ => continue,
        };
        if r.interfaces().get(iface as usize).map(|d| d.linktype)
            == Some(pcap_file::DataLink::ETHERNET)
        {
            out.push(data);
        }
    }
    Some(out)
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn hostile_catalogue() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut frames = Vec::new();
    for (src4, src6) in [
        ("198.51.100.10", "2001:db8:100::10"),
        ("198.51.100.130", "2001:db8:100:666::10"),
        ("192.0.2.10", "2001:db8:200::10"),
    ] {
        for (what, f) in hostile::frames(
            ip(src4),
            ip("203.0.113.80"),
            ip(src6),
            ip("2001:db8:ff::80"),
            1514,
        ) {
            frames.push((format!("hostile {what} from {src4}"), f));
        }
    }
    assert!(frames.len() >= 30, "only {} hostile frames", frames.len());
    let t = run_all(&frames);
    assert_clean("hostile", &t);
    // Every frame judged (none skipped), most of them by the workers: they are broken
    // copies of port-25 SYNs.
    assert_eq!(t.untestable, 0);
    // Two directions, two modes.
    assert_eq!(
        t.fast + t.drop + t.user,
        frames.len() * policies().len() * 4
    );
    assert!(t.user > t.fast, "fast {} user {}", t.fast, t.user);
}

/// A frame built from parts: encapsulation, IP version, protocol, ports, fragment bits,
/// IPv6 extension headers, then mutated and cut.
fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    use fixtures::{Encap, Ext, Tcp};
    let encap = prop_oneof![
        Just(Encap::Plain),
        (0u16..4096).prop_map(Encap::Vlan),
        (
            prop_oneof![Just(0x88a8u16), Just(0x9100), Just(0x8100)],
            0u16..4096,
            0u16..4096
        )
            .prop_map(|(t, o, i)| Encap::QinQ(t, o, i)),
        any::<u16>().prop_map(Encap::Pppoe),
        (0u16..4096, any::<u16>()).prop_map(|(v, s)| Encap::VlanPppoe(v, s)),
    ];
    let port = prop_oneof![
        Just(25u16),
        Just(465),
        Just(587),
        Just(80),
        Just(443),
        Just(2525),
        any::<u16>()
    ];
    let ext = prop_oneof![
        Just(Ext::HopByHop),
        Just(Ext::DestOpts),
        Just(Ext::Routing),
        (0u16..8, any::<bool>()).prop_map(|(o, m)| Ext::Fragment(o, m)),
        Just(Ext::Auth),
    ];
    let src4 = prop_oneof![
        Just([198, 51, 100, 10]),
        Just([198, 51, 100, 200]),
        Just([198, 51, 100, 130]),
        Just([192, 0, 2, 10]),
        any::<[u8; 4]>()
    ];
    let dst4 = prop_oneof![
        Just([203, 0, 113, 80]),
        Just([203, 0, 113, 25]),
        any::<[u8; 4]>()
    ];
    let mutations = proptest::collection::vec((0usize..200, any::<u8>()), 0..4);
    (
        encap,
        any::<bool>(),
        0u8..4,
        port,
        src4,
        dst4,
        proptest::collection::vec(ext, 0..6),
        (any::<bool>(), 0u16..4, 0usize..64),
        mutations,
        proptest::option::of(14usize..200),
    )
        .prop_map(
            |(encap, v6, kind, port, s4, d4, exts, (frag, off, keep), muts, cut)| {
                let flags = if kind == 0 { Tcp::Syn } else { Tcp::Data(1) };
                let mut s6 = [0u8; 16];
                s6[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
                s6[15] = s4[3];
                let mut d6 = [0u8; 16];
                d6[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0xff]);
                d6[15] = d4[3];
                let (a4, b4, a6, b6) = (s4, d4, s6, d6);
                let ip = match (v6, kind) {
                    (false, 3) => fixtures::udp4(a4, b4, port),
                    (true, 3) => fixtures::udp6(a6, b6, port),
                    (false, _) => fixtures::tcp4(a4, b4, 40000, port, flags, &[0; 8]),
                    (true, _) => fixtures::tcp6(a6, b6, 40000, port, flags, &[0; 8]),
                };
                let ip = if v6 {
                    fixtures::with_ipv6_exts(&ip, &exts, Some(keep))
                } else if frag {
                    fixtures::ipv4_fragment(&ip, off, keep.max(1).min(ip.len() - 20), off == 0)
                } else {
                    ip
                };
                let mut f = fixtures::wrap(encap, &ip, v6, true);
                for (at, v) in muts {
                    let n = f.len();
                    f[at % n] = v;
                }
                if let Some(c) = cut {
                    f.truncate(c.max(14));
                }
                f
            },
        )
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn proptest_generated_frames() {
    let hs = harnesses();
    let mut runner = TestRunner::new(PropConfig {
        cases: 40_000,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let (fast, drop, user) = (
        std::cell::Cell::new(0usize),
        std::cell::Cell::new(0usize),
        std::cell::Cell::new(0usize),
    );
    let result = runner.run(&frame_strategy(), |f| {
        if !testable(&f) {
            return Ok(());
        }
        for (name, h) in &hs {
            match h.check(name, &f) {
                Ok(Path2::Fast) => fast.set(fast.get() + 1),
                Ok(Path2::Drop) => drop.set(drop.get() + 1),
                Ok(Path2::User) => user.set(user.get() + 1),
                Err(e) => return Err(TestCaseError::fail(e)),
            }
        }
        Ok(())
    });
    let (fast, drop, user) = (fast.get(), drop.get(), user.get());
    eprintln!(
        "proptest: {fast} forwarded and {drop} dropped in the kernel ({:.1}% decided there), {user} to the workers",
        100.0 * (fast + drop) as f64 / (fast + drop + user).max(1) as f64
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        fast > 1000 && drop > 100 && user > 1000,
        "fast {fast} drop {drop} user {user}"
    );
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn switches_send_everything_to_userspace() {
    // Fast path off, or the peer not ready: every frame goes to the workers.
    let policy = fixtures::policy();
    let prog = Program::load(1).expect("load (needs root)");
    prog.set_peer(1).unwrap();
    let ports = policy.userspace_ports(Direction::Outbound);
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 1, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    for (mode, ready) in [
        (FastPathMode::Off, true),
        (FastPathMode::Unblockable, false),
        (FastPathMode::Kernel, false),
        (FastPathMode::Off, false),
    ] {
        prog.write_settings(&XdpProgramSettings::new(mode, ready, false, 0, &ports, 1))
            .unwrap();
        let before = prog.stats().read().unwrap();
        assert_eq!(prog.test_run(&arp).unwrap(), XDP_PASS);
        let d = prog.stats().read().unwrap().since(&before);
        assert_eq!((d.fast, d.user_off), (0, 1), "{mode:?} ready {ready}");
    }
    for mode in [FastPathMode::Unblockable, FastPathMode::Kernel] {
        prog.write_settings(&XdpProgramSettings::new(mode, true, false, 0, &ports, 1))
            .unwrap();
        assert_eq!(prog.test_run(&arp).unwrap(), XDP_REDIRECT);
    }
    // Mode kernel before any policy generation is complete: what needs the policy goes
    // to the workers.
    let syn = syn4([198, 51, 100, 130], [203, 0, 113, 80], 25, true);
    let before = prog.stats().read().unwrap();
    assert_eq!(prog.test_run(&syn).unwrap(), XDP_PASS);
    assert_eq!(
        prog.stats().read().unwrap().since(&before).user_no_policy,
        1
    );
}

/// An untagged Ethernet frame with a TCP SYN to `port`.
fn syn4(src: [u8; 4], dst: [u8; 4], port: u16, from_subscriber: bool) -> Vec<u8> {
    let ip = fixtures::tcp4(src, dst, 40000, port, fixtures::Tcp::Syn, &[]);
    fixtures::wrap(fixtures::Encap::Plain, &ip, false, from_subscriber)
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn reload_order_keeps_every_blocked_port_off_the_fast_path() {
    use op25b::datapath::fast_path::FastPath;
    // A blocks 25 for the pool, B also 8025. Between the two steps of a reload (map
    // written, policy published, map written again) a TCP/8025 frame from the pool must
    // take the fast path only while neither the policy in force nor the next blocks it.
    let policy = |ports: &[u16]| {
        let mut b = PolicyBuilder::new();
        let c = b
            .class("dynamic", ports.iter().copied(), BlockAction::Drop, true)
            .unwrap();
        b.subscriber("198.51.100.0/24".parse().unwrap(), c);
        b.build().unwrap()
    };
    let (a, b) = (policy(&[25]), policy(&[25, 8025]));
    let programs = [Program::load(1).unwrap(), Program::load(1).unwrap()];
    let probe = [
        programs[0].try_clone().unwrap(),
        programs[1].try_clone().unwrap(),
    ];
    // Loopback as both targets, said to take redirected frames (BPF_PROG_TEST_RUN sends
    // nothing).
    let mut fp = FastPath::new(
        programs,
        ["sub", "up"],
        [1, 1],
        FastPathMode::Unblockable,
        0,
        &a,
        1,
        |_| Ok(Some(true)),
    )
    .unwrap();
    let frame = syn4([198, 51, 100, 10], [203, 0, 113, 80], 8025, true);
    let path = |p: &Program| {
        let before = p.stats().read().unwrap();
        p.test_run(&frame).unwrap();
        let d = p.stats().read().unwrap().since(&before);
        if d.fast == 1 {
            Path2::Fast
        } else {
            Path2::User
        }
    };
    assert_eq!(path(&probe[0]), Path2::Fast, "A in force: 8025 is open");
    fp.before_publish(&b).unwrap();
    assert_eq!(
        path(&probe[0]),
        Path2::User,
        "before B is published its ports are in the map"
    );
    fp.after_publish(&b, 2);
    assert_eq!(path(&probe[0]), Path2::User, "B in force");
    fp.before_publish(&a).unwrap();
    assert_eq!(
        path(&probe[0]),
        Path2::User,
        "B still in force while A is not published"
    );
    fp.after_publish(&a, 3);
    assert_eq!(path(&probe[0]), Path2::Fast, "A in force again");
    fp.set_mode(FastPathMode::Off).unwrap();
    assert_eq!(path(&probe[0]), Path2::User, "fast path off");
    fp.set_mode(FastPathMode::Unblockable).unwrap();
    assert_eq!(path(&probe[0]), Path2::Fast);
    // Inbound (the upstream program): TCP/25 to a class that blocks inbound SMTP.
    let inbound = syn4([203, 0, 113, 80], [198, 51, 100, 10], 25, false);
    let before = probe[1].stats().read().unwrap();
    probe[1].test_run(&inbound).unwrap();
    assert_eq!(probe[1].stats().read().unwrap().since(&before).user_port, 1);
    // Each program got its direction's set: outbound TCP/8025 goes to the workers under
    // B, the same frame on the upstream program (inbound: only 25 is blocked) does not.
    fp.before_publish(&b).unwrap();
    fp.after_publish(&b, 4);
    assert_eq!(path(&probe[0]), Path2::User);
    assert_eq!(
        path(&probe[1]),
        Path2::Fast,
        "inbound has no 8025 in its set"
    );
    assert_eq!(fp.ports()[0].iter().collect::<Vec<_>>(), [25, 8025]);
    assert_eq!(fp.ports()[1].iter().collect::<Vec<_>>(), [25]);
}

#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn a_target_that_cannot_take_redirects_keeps_the_fast_path_off() {
    use op25b::datapath::fast_path::FastPath;
    let policy = fixtures::policy();
    let programs = [Program::load(1).unwrap(), Program::load(1).unwrap()];
    let probe = programs[0].try_clone().unwrap();
    let mut fp = FastPath::new(
        programs,
        ["sub", "up"],
        [1, 1],
        FastPathMode::Kernel,
        0,
        &policy,
        1,
        |_| Ok(Some(false)),
    )
    .unwrap();
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 1, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    let before = probe.stats().read().unwrap();
    probe.test_run(&arp).unwrap();
    assert_eq!(probe.stats().read().unwrap().since(&before).user_off, 1);
    fp.refresh();
    assert!(!fp.view().active[0].load(std::sync::atomic::Ordering::Relaxed));
}

/// The program counts what it sends on without judging by kind, as the workers do
/// (`classify::non_ip_kind`): every non-IP fixture that takes the fast path adds one to
/// its kind, and PPPoE with a compressed protocol field never takes it.
#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn non_ip_frames_are_counted_by_kind_on_the_fast_path() {
    let h = Harness::new(
        fixtures::policy(),
        no_overlay,
        Direction::Outbound,
        FastPathMode::Kernel,
    );
    let mut counted = 0;
    for f in fixtures::all().into_iter().filter(|f| testable(&f.frame)) {
        let info = classify::parse(&f.frame);
        let before = h.prog.stats().read().expect("stats");
        let path = h.path(&f.frame);
        let d = h.prog.stats().read().expect("stats").since(&before);
        if info.link.ppp_compressed {
            assert_eq!(path, Path2::User, "{}", f.description);
        }
        let mut want = [0u64; classify::NonIpKind::COUNT];
        if info.net == classify::Net::NotIp && path == Path2::Fast {
            want[classify::non_ip_kind(&info.link).index()] = 1;
            counted += 1;
        }
        assert_eq!(d.non_ip, want, "{}", f.description);
    }
    assert!(
        counted >= 8,
        "only {counted} non-IP fixtures took the fast path"
    );
}

/// An untagged Ethernet frame with an IPv6 TCP SYN to `port`.
fn syn6(src: u128, dst: u128, port: u16, from_subscriber: bool) -> Vec<u8> {
    let ip = fixtures::tcp6(
        src.to_be_bytes(),
        dst.to_be_bytes(),
        40000,
        port,
        fixtures::Tcp::Syn,
        &[],
    );
    fixtures::wrap(fixtures::Encap::Plain, &ip, true, from_subscriber)
}

/// The check catches what it exists to catch: the kernel's maps are written wrong in one
/// way each (one class bit, one prefix length off by one, the overlay's tie rule
/// reversed) while classify() judges by the right policy, and each mutation makes
/// frames mismatch. The same frames with the maps written right match.
#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn mutations_are_caught() {
    let every_drop = || {
        policies()
            .into_iter()
            .find(|(n, _, _)| *n == "every class drops, with an overlay")
            .unwrap()
    };
    let ext4 = [203, 0, 113, 80];
    let ext6 = v6("2001:db8:ff::80");
    let mut frames = Vec::new();
    for last in [0u8, 10, 127, 128, 130, 143, 144, 150, 159, 160, 200, 255] {
        for port in [25, 465, 587] {
            frames.push((
                format!("198.51.100.{last} -> :{port}"),
                syn4([198, 51, 100, last], ext4, port, true),
            ));
        }
    }
    for src in [
        "2001:db8:100:666::10",
        "2001:db8:100::10",
        "2001:db8:100::200",
    ] {
        for port in [25, 465] {
            frames.push((format!("{src} -> :{port}"), syn6(v6(src), ext6, port, true)));
        }
    }
    let harness = || {
        let (_, policy, ov) = every_drop();
        Harness::new(policy, ov, Direction::Outbound, FastPathMode::Kernel)
    };
    // Unmutated: clean, and the kernel decides these frames itself.
    let h = harness();
    let t = run_on(&[("right".into(), h)], &frames);
    assert_clean("mutations: maps written right", &t);
    assert_eq!(t.user, 0, "every frame here is judged in the kernel");

    // 1. One wrong class bit: quarantine's port 465 cleared in the class table.
    let h = harness();
    let q = h
        .policy
        .classes()
        .iter()
        .position(|c| c.name == "quarantine")
        .unwrap() as u32;
    let key = (h.kernel.active() * 256 + q).to_ne_bytes();
    let classes = &h.prog.shared().classes;
    let mut info = vec![0u8; 8 + 8192];
    assert!(classes.lookup(&key, &mut info).unwrap());
    info[8 + 465 / 8] &= !(1 << (465 % 8));
    classes.update(&key, &info).unwrap();
    let t = run_on(&[("class bit".into(), h)], &frames);
    assert!(!t.leaks.is_empty(), "a wrong class bit went unnoticed");

    // 2. An off-by-one prefix length: quarantine's 198.51.100.128/28 written as /27.
    let mut h = harness();
    let mut b = PolicyBuilder::new();
    let dynamic = b.class("dynamic", [25], BlockAction::Drop, true).unwrap();
    let fixed = b.class("static", [], BlockAction::Drop, false).unwrap();
    let quarantine = b
        .class("quarantine", [25, 465, 587], BlockAction::Drop, true)
        .unwrap();
    b.subscriber("198.51.100.0/24".parse().unwrap(), dynamic)
        .subscriber("198.51.100.200/32".parse().unwrap(), fixed)
        .subscriber("198.51.100.128/27".parse().unwrap(), quarantine)
        .subscriber("192.0.2.0/24".parse().unwrap(), dynamic)
        .subscriber("2001:db8:100::/48".parse().unwrap(), dynamic)
        .subscriber("2001:db8:100::200/128".parse().unwrap(), fixed)
        .subscriber("2001:db8:100:666::/64".parse().unwrap(), quarantine)
        .subscriber("2001:db8:200::/40".parse().unwrap(), dynamic)
        .allow("203.0.113.25/32".parse().unwrap())
        .allow("2001:db8:ff::25/128".parse().unwrap())
        .unmatched(Some(fixed));
    let mutated = b.build().unwrap();
    assert!(mutated.set_counter_slots((0..3).map(|i| h.policy.counter_slot(i) as u16).collect()));
    h.kernel.publish(&mutated).unwrap();
    let t = run_on(&[("prefix length".into(), h)], &frames);
    assert!(
        !t.leaks.is_empty(),
        "an off-by-one prefix length went unnoticed"
    );

    // 3. The overlay's tie rule reversed: the overlay's 2001:db8:100:666::/64 (static)
    // ties with the file's quarantine /64 and must win; its entry written as if it were
    // one bit shorter makes the file win the tie, as `>` for `>=` in the program would.
    let h = harness();
    let over6 = &h.prog.shared().over6;
    let k = key6(v6("2001:db8:100:666::"), 64);
    let mut value = [0u8; 4];
    assert!(over6.lookup(&k, &mut value).unwrap());
    assert_eq!(value[2], 64);
    value[2] = 63;
    over6.update(&k, &value).unwrap();
    let t = run_on(&[("tie rule".into(), h)], &frames);
    assert!(
        !t.leaks.is_empty(),
        "a reversed overlay tie rule went unnoticed"
    );
}

/// In service the kernel's copy is written by the policy cell before the workers' copy:
/// when `publish_overlay` returns (what RADIUS waits for before it answers), the entry
/// judges in the kernel, added and removed alike (the store's change list, not a whole
/// rewrite); when `publish` returns, the new policy judges in the kernel.
#[test]
#[ignore = "needs root (loads an XDP program): scripts/test.sh runs it as root"]
fn the_policy_cell_writes_the_kernel_first() {
    use op25b::control::overlay::store::{EntrySource, OverlayEntry, Store};
    use op25b::datapath::PolicyCell;
    use std::sync::Arc;
    let (_, policy, _) = policies()
        .into_iter()
        .find(|(n, _, _)| *n == "every class drops, with an overlay")
        .unwrap();
    let cell = PolicyCell::new(Arc::new(policy));
    let prog = Program::load(1).unwrap();
    prog.set_peer(1).unwrap();
    let ports = cell.load().userspace_ports(Direction::Outbound);
    prog.write_settings(&XdpProgramSettings::new(
        FastPathMode::Kernel,
        true,
        false,
        0,
        &ports,
        1,
    ))
    .unwrap();
    let run = |frame: &[u8]| prog.test_run(frame).unwrap();
    let syn = syn4([198, 51, 100, 10], [203, 0, 113, 80], 25, true);
    // Before the cell has the kernel's maps: no complete generation, to the workers.
    assert_eq!(run(&syn), XDP_PASS);
    cell.attach_kernel(KernelPolicy::new(prog.shared().try_clone().unwrap()).unwrap())
        .unwrap();
    assert!(cell.kernel_valid());
    assert_eq!(run(&syn), XDP_DROP, "dynamic drops TCP/25");
    let mut store = Store::new(&cell.load(), cell.generation());
    let entry = |class: &str| OverlayEntry {
        prefix: "198.51.100.10/32".parse().unwrap(),
        class: class.into(),
        source: EntrySource::Operator,
        note: String::new(),
        created: 0,
        expires: None,
        session: None,
    };
    let publish = |store: &mut Store| {
        let changed = store.take_changes();
        cell.publish_overlay(Arc::new(store.snapshot()), changed.as_deref());
    };
    publish(&mut store); // the first publish writes the (empty) overlay whole
    store.upsert(entry("static")).unwrap();
    publish(&mut store);
    assert_eq!(run(&syn), XDP_REDIRECT, "the exemption is in force");
    store.remove(&"198.51.100.10/32".parse().unwrap());
    publish(&mut store);
    assert_eq!(run(&syn), XDP_DROP, "and gone");
    // A reload: the class table and tries of the new policy judge once publish returns.
    let mut b = PolicyBuilder::new();
    let open = b.class("dynamic", [465], BlockAction::Drop, true).unwrap();
    b.subscriber("198.51.100.0/24".parse().unwrap(), open);
    cell.publish(Arc::new(b.build().unwrap()));
    assert_eq!(run(&syn), XDP_REDIRECT, "the new policy opens 25");
    let syn465 = syn4([198, 51, 100, 10], [203, 0, 113, 80], 465, true);
    let ports = cell.load().userspace_ports(Direction::Outbound);
    prog.write_settings(&XdpProgramSettings::new(
        FastPathMode::Kernel,
        true,
        false,
        0,
        &ports,
        2,
    ))
    .unwrap();
    assert_eq!(run(&syn465), XDP_DROP, "and blocks 465");
    assert_eq!(
        cell.kernel_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
