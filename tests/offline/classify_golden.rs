//! The golden fixture table through `classify` (moved out of the library with the test
//! kit: the fixtures live in `op25b-testkit`), every prefix of every fixture, and
//! random or mutated frames (never a panic).

use op25b::classify::*;
use op25b::policy::*;
use op25b_testkit::fixtures::{self, FIXTURE_MIN};

#[test]
fn golden_fixtures() {
    let policy = fixtures::policy();
    let table = fixtures::all();
    assert!(table.len() >= FIXTURE_MIN, "only {} fixtures", table.len());
    let mut failures = Vec::new();
    for f in &table {
        let got = classify(&f.frame, f.direction, &policy);
        if got.verdict != f.expected {
            failures.push(format!(
                "{}: expected {}, got {}",
                f.description, f.expected, got.verdict
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The burst classifier against `classify`, frame by frame: same parse, same verdict,
/// and every IPv6 lookup made in the burst's batch, at burst sizes from 1 to past the
/// lockstep width.
fn check_bursts(frames: &[&[u8]], direction: Direction, policy: &Policy) {
    for size in [1, 3, 8, 9, 64] {
        let mut burst = BurstClassifier::with_capacity(size);
        for chunk in frames.chunks(size) {
            burst.prepare(chunk.iter().copied(), direction, policy);
            let batched = if policy.batch_v6_lookups() {
                chunk.len()
            } else {
                0
            };
            assert_eq!(burst.prepared(), batched);
            for (i, frame) in chunk.iter().enumerate() {
                let info = parse(frame);
                let want = classify_parsed(&info, direction, policy);
                let got = burst.classify(i, frame, direction, policy, &overlay::NoOverlay);
                assert_eq!(got, (info, want), "frame {frame:02x?}");
            }
        }
        assert_eq!(burst.single_lookups(), 0, "burst size {size}");
    }
}

/// The lab policy plus 20,000 IPv6 prefixes clear of the fixtures' addresses: big
/// enough for the burst classifier to batch its IPv6 lookups.
fn big_policy() -> Policy {
    let (mut b, [dynamic, ..]) = fixtures::builder();
    for net in fixtures::filler_v6(20_000) {
        b.subscriber(net, dynamic);
    }
    let p = b.build().unwrap();
    assert!(p.batch_v6_lookups());
    p
}

#[test]
fn burst_classifier_matches_classify_on_every_fixture() {
    let table = fixtures::all();
    let frames: Vec<&[u8]> = table.iter().map(|f| &f.frame[..]).collect();
    let small = fixtures::policy();
    assert!(!small.batch_v6_lookups());
    // Every frame judged in both directions (a burst comes from one side), with lookups
    // one by one (the lab policy) and batched (the big one).
    for policy in [small, big_policy()] {
        for direction in Direction::ALL {
            check_bursts(&frames, direction, &policy);
        }
        for f in &table {
            assert_eq!(
                classify(&f.frame, f.direction, &policy).verdict,
                f.expected,
                "{}",
                f.description
            );
        }
    }
}

#[test]
fn every_prefix_of_every_fixture_is_safe() {
    // Truncation at every byte: never panics, and a cut-short TCP segment to a blocked
    // port from a blocking source is never forwarded as "port_open".
    let policy = fixtures::policy();
    for f in fixtures::all() {
        for n in 0..=f.frame.len() {
            let c = classify(&f.frame[..n], f.direction, &policy);
            if f.expected.is_blocked() && n < f.frame.len() {
                assert_ne!(
                    c.verdict.reason(),
                    Reason::PortOpen,
                    "{} cut at {n}",
                    f.description
                );
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let policy = fixtures::policy();
        let _ = classify(&bytes, Direction::Outbound, &policy);
        let _ = classify(&bytes, Direction::Inbound, &policy);
    }

    #[test]
    fn never_panics_on_mutated_fixtures(pick in 0usize..1000, flips in proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 1..8)) {
        let policy = fixtures::policy();
        let table = fixtures::all();
        let mut frame = table[pick % table.len()].frame.clone();
        for (at, v) in flips {
            let n = frame.len();
            if n > 0 { frame[at % n] = v; }
        }
        let _ = classify(&frame, Direction::Outbound, &policy);
    }

    /// Bursts of mutated fixtures (broken headers, changed addresses and ports): the
    /// burst classifier still agrees with `classify` frame by frame.
    #[test]
    fn burst_classifier_matches_classify_on_mutated_fixtures(mutations in proptest::collection::vec((0usize..1000, proptest::collection::vec((0usize..2000, proptest::num::u8::ANY), 0..6)), 1..24)) {
        let policy = BIG.get_or_init(big_policy);
        let table = fixtures::all();
        let frames: Vec<Vec<u8>> = mutations
            .into_iter()
            .map(|(pick, flips)| {
                let mut frame = table[pick % table.len()].frame.clone();
                for (at, v) in flips {
                    let n = frame.len();
                    if n > 0 { frame[at % n] = v; }
                }
                frame
            })
            .collect();
        let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        for direction in Direction::ALL {
            check_bursts(&frames, direction, policy);
        }
    }
}

static BIG: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();

/// Every fixture the classifier does not judge as IP has a named kind for the non-IP
/// counters (`op25b_non_ip_frames_total`), and the kind is the one its link says.
#[test]
fn non_ip_fixtures_are_counted_by_kind() {
    use NonIpKind::*;
    let want = [
        ("ARP request", Arp),
        ("LLDP", Other),
        ("STP (802.3 length + LLC)", Llc),
        ("PPPoE discovery (PADI)", PppoeControl),
        ("PPPoE session carrying LCP", PppoeControl),
        ("PPPoE session with bad version", Other),
        ("PPPoE compressed protocol, not IP", PppoeCompressed),
        ("MPLS unicast carrying v4 dynamic -> external:25", Mpls),
        ("MPLS multicast carrying v4 dynamic -> external:25", Mpls),
        ("PBB (802.1ah) carrying v4 dynamic -> external:25", Pbb),
        ("802.3 LLC/SNAP carrying v4 dynamic -> external:25", Llc),
    ];
    let table = fixtures::all();
    let mut seen = std::collections::HashSet::new();
    for f in &table {
        let info = parse(&f.frame);
        if info.net != Net::NotIp {
            continue;
        }
        let kind = non_ip_kind(&info.link);
        // Other non-IP fixtures (a deep VLAN stack, ...): any kind.
        if let Some((_, k)) = want.iter().find(|(d, _)| *d == f.description) {
            assert_eq!(kind, *k, "{}", f.description);
        }
        seen.insert(f.description.as_str());
    }
    for (d, _) in want {
        assert!(seen.contains(d), "fixture {d:?} missing or judged as IP");
    }
    // Every kind has a fixture.
    for k in NonIpKind::ALL {
        assert!(
            want.iter().any(|(_, w)| *w == k),
            "no fixture of kind {k:?}"
        );
    }
}

/// PPPoE with a compressed PPP protocol field (RFC 1661 PFC) is IP: the header starts
/// one byte earlier and the verdict is the long form's.
#[test]
fn pppoe_compressed_protocol_is_judged_like_the_long_form() {
    use fixtures::addr::*;
    use fixtures::{wrap, Encap};
    let policy = fixtures::policy();
    for (ip, v6) in [
        (
            fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, fixtures::Tcp::Syn, &[]),
            false,
        ),
        (
            fixtures::tcp6(DYNAMIC6, EXTERNAL6, 40001, 25, fixtures::Tcp::Syn, &[]),
            true,
        ),
    ] {
        let long = wrap(Encap::Pppoe(9), &ip, v6, true);
        let short = wrap(Encap::PppoeCompressed(9), &ip, v6, true);
        let (a, b) = (parse(&long), parse(&short));
        assert!(b.link.ppp_compressed && !a.link.ppp_compressed);
        assert_eq!(b.link.l3_offset + 1, a.link.l3_offset);
        assert!(matches!(
            b.net,
            Net::Ip {
                malformed: false,
                ..
            }
        ));
        assert_eq!(
            classify(&long, Direction::Outbound, &policy),
            classify(&short, Direction::Outbound, &policy)
        );
        assert!(classify(&short, Direction::Outbound, &policy)
            .verdict
            .is_blocked());
    }
}
