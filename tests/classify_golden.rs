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
}
