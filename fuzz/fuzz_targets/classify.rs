//! Any byte string as an Ethernet frame, both directions: classify must not panic, and
//! its verdict must agree with classify_parsed(parse(..)).
#![no_main]
use libfuzzer_sys::fuzz_target;
use op25b::classify::{classify, classify_parsed, parse};
use op25b_testkit::fixtures;
use op25b::policy::Direction;
use std::sync::OnceLock;

static POLICY: OnceLock<op25b::policy::Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let policy = POLICY.get_or_init(fixtures::policy);
    for dir in [Direction::Outbound, Direction::Inbound] {
        let a = classify(data, dir, policy);
        let b = classify_parsed(&parse(data), dir, policy);
        assert_eq!(a.verdict, b.verdict);
    }
});
