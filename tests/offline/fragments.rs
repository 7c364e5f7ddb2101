//! Fragmentation can never carry a blocked SYN past the block.
//!
//! Real TCP/25 SYNs (with random data) from every blocking class of the lab policy are
//! fragmented the way a source fragments (RFC 8200 4.5, RFC 791) behind random IPv6
//! extension chains, the fragmentable part split at every 8-byte offset. For every
//! split, the first fragment must not be forwarded, and the fragments `classify()`
//! forwards must not reassemble into a blocked segment
//! (`op25b_testkit::hostile::leaked_by_reassembly`, an oracle written apart from the
//! classifier). On 460fd1e a first fragment whose chain ended past it was forwarded
//! (`malformed_ip`) and its later fragment carried the SYN.

use op25b::classify::classify;
use op25b::policy::{Direction, Policy};
use op25b_testkit::fixtures::{self, addr, Encap, Ext, Tcp};
use op25b_testkit::hostile::leaked_by_reassembly;
use proptest::prelude::*;
use std::sync::LazyLock;

/// Sources of the lab policy whose class blocks TCP/25 to the external MTA.
const BLOCKING6: [[u8; 16]; 4] = [
    addr::DYNAMIC6,
    addr::QUARANTINE6,
    addr::ICMP6,
    addr::NOTICE6,
];
const BLOCKING4: [[u8; 4]; 4] = [
    addr::DYNAMIC4,
    addr::QUARANTINE4,
    addr::ICMP4,
    addr::NOTICE4,
];

/// A header of the fragmentable part: destination options, AH, or a generic-format
/// header (Mobility, HIP, Shim6, experimental), 1 to 4 units of 8 bytes.
fn fragmentable_ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (1u8..=4).prop_map(|n| Ext::Generic(60, n)),
        Just(Ext::Auth),
        (
            prop::sample::select(vec![135u8, 139, 140, 253, 254]),
            1u8..=4
        )
            .prop_map(|(k, n)| Ext::Generic(k, n)),
    ]
}

/// The unfragmentable part in RFC 8200 order: hop-by-hop, destination options, routing.
fn unfragmentable() -> impl Strategy<Value = Vec<Ext>> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(h, d, r)| {
        let mut v = Vec::new();
        if h {
            v.push(Ext::HopByHop);
        }
        if d && r {
            v.push(Ext::DestOpts);
        }
        if r {
            v.push(Ext::Routing);
        }
        v
    })
}

/// The lab policy, compiled once.
static POLICY: LazyLock<Policy> = LazyLock::new(fixtures::policy);

fn check(set: &[Vec<u8>], is6: bool, what: &str) -> Result<(), TestCaseError> {
    let policy = &*POLICY;
    let frames: Vec<Vec<u8>> = set
        .iter()
        .map(|ip| fixtures::wrap(Encap::Plain, ip, is6, true))
        .collect();
    let verdicts: Vec<_> = frames
        .iter()
        .map(|f| classify(f, Direction::Outbound, policy).verdict)
        .collect();
    prop_assert!(
        verdicts[0].is_blocked(),
        "{what}: first fragment forwarded ({:?}): {:02x?}",
        verdicts[0],
        frames[0]
    );
    let forwarded: Vec<bool> = verdicts.iter().map(|v| !v.is_blocked()).collect();
    prop_assert!(
        !leaked_by_reassembly(&frames, &forwarded, policy),
        "{what}: forwarded fragments {forwarded:?} reassemble into a blocked SYN"
    );
    // The oracle can see it when all of them pass.
    prop_assert!(leaked_by_reassembly(
        &frames,
        &vec![true; frames.len()],
        policy
    ));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn no_first_ipv6_fragment_of_a_blocking_class_is_forwarded(
        src in prop::sample::select(BLOCKING6.to_vec()),
        unfrag in unfragmentable(),
        frag in prop::collection::vec(fragmentable_ext(), 0..5),
        data in prop::collection::vec(any::<u8>(), 0..48),
        id in any::<u32>(),
    ) {
        let syn = fixtures::tcp6(src, addr::EXTERNAL6, 40001, 25, Tcp::Syn, &data);
        let part = fixtures::ipv6_chain(&frag, 6).len() + syn.len() - 40;
        for piece8 in 1..=part.div_ceil(8) {
            let set = fixtures::ipv6_fragments(&syn, &unfrag, &frag, piece8, id);
            check(&set, true, &format!("{unfrag:?} | frag | {frag:?}, pieces of {piece8}x8"))?;
        }
    }

    #[test]
    fn no_first_ipv4_fragment_of_a_blocking_class_is_forwarded(
        src in prop::sample::select(BLOCKING4.to_vec()),
        options in prop::collection::vec(1u8..=1, 0..=10).prop_map(|mut v| { v.resize(v.len() / 4 * 4, 1); v }),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut syn = fixtures::tcp4(src, addr::EXTERNAL4, 40001, 25, Tcp::Syn, &data);
        if !options.is_empty() {
            syn = fixtures::with_ipv4_options(&syn, &options);
        }
        let ihl = usize::from(syn[0] & 0x0f) * 4;
        for piece8 in 1..=(syn.len() - ihl).div_ceil(8) {
            let set = fixtures::ipv4_fragments(&syn, piece8);
            check(&set, false, &format!("options {}, pieces of {piece8}x8", options.len()))?;
        }
    }
}
