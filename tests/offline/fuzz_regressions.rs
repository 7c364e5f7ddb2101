//! Inputs the fuzzers found (fuzz/regressions/<target>/), replayed with the same checks
//! the fuzz targets make, so a fixed finding stays fixed without cargo-fuzz.

use op25b::classify::reply::{build_reply, MAX_REPLY_LEN};
use op25b::classify::{classify, classify_parsed, parse, parse_link};
use op25b::policy::{Direction, ReplyKind};
use op25b_testkit::fixtures;
use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn check_frame(name: &str, data: &[u8]) {
    let policy = fixtures::policy();
    for dir in [Direction::Outbound, Direction::Inbound] {
        assert_eq!(
            classify(data, dir, &policy).verdict,
            classify_parsed(&parse(data), dir, &policy).verdict,
            "{name}"
        );
    }
    let mut buf = [0u8; MAX_REPLY_LEN];
    for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
        let Ok(n) = build_reply(data, kind, &mut buf) else {
            continue;
        };
        let frame = &buf[..n];
        let link = parse_link(frame).unwrap_or_else(|_| panic!("{name}: reply link headers"));
        let p = etherparse::SlicedPacket::from_ip(&frame[link.l3_offset..])
            .unwrap_or_else(|e| panic!("{name}: reply IP does not re-parse: {e}"));
        let ip_len = match &p.net {
            Some(etherparse::NetSlice::Ipv4(v4)) => usize::from(v4.header().total_len()),
            Some(etherparse::NetSlice::Ipv6(v6)) => 40 + usize::from(v6.header().payload_length()),
            _ => panic!("{name}: reply is not IP"),
        };
        if link.pppoe_session.is_some() {
            let at = link.l3_offset - 4;
            let pppoe_len = usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
            assert_eq!(pppoe_len, ip_len + 2, "{name}: PPPoE length");
        }
    }
}

#[test]
fn fuzz_findings_stay_fixed() {
    let mut n = 0;
    for target in ["classify", "reply"] {
        for (name, data) in inputs(target) {
            check_frame(&name, &data);
            n += 1;
        }
    }
    for (name, data) in inputs("config") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = op25b::config::load_str(Path::new("/nonexistent/fuzz.yaml"), text);
        }
        let _ = name;
        n += 1;
    }
    assert!(n >= 1, "no regression inputs found under fuzz/regressions");
}
