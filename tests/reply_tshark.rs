//! Every reply the builders produce for the golden fixtures is handed to a real decoder:
//! tshark must report no malformed packet and no bad checksum.

use op25b::classify::reply;
use op25b::policy::{ReplyKind, Verdict};
use op25b_testkit::fixtures;
use std::process::Command;

#[test]
fn tshark_accepts_every_reply() {
    if Command::new("tshark").arg("--version").output().is_err() {
        panic!("tshark is not installed; scripts/setup.sh installs it");
    }
    let mut frames = Vec::new();
    let mut buf = [0u8; reply::MAX_REPLY_LEN];
    for fx in fixtures::all() {
        if fx.direction != op25b::policy::Direction::Outbound {
            continue;
        }
        // Every well-formed outbound TCP fixture gets both kinds of reply, whatever its
        // verdict says. (Malformed originals are left out: tshark would flag the bad
        // checksum of the *quoted* original inside an ICMP error, which is correct.)
        use op25b::policy::Reason;
        let well_formed = matches!(
            fx.expected.reason(),
            Reason::BlockedPort | Reason::PortOpen | Reason::AllowedDestination | Reason::Unmatched
        );
        for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
            if !well_formed {
                continue;
            }
            if let Ok(n) = reply::build_reply(&fx.frame, kind, &mut buf) {
                frames.push((fx.description.clone(), kind, buf[..n].to_vec()));
            }
        }
        if let Verdict::Reject(_, kind) = fx.expected {
            assert!(
                reply::build_reply(&fx.frame, kind, &mut buf).is_ok(),
                "{}: rejected but no reply could be built",
                fx.description
            );
        }
    }
    assert!(frames.len() >= 20, "only {} replies built", frames.len());

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("replies.pcap");
    {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let file = std::fs::File::create(&path).unwrap();
        let header = PcapHeader {
            datalink: pcap_file::DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(file, header).unwrap();
        for (i, (_, _, f)) in frames.iter().enumerate() {
            let ts = std::time::Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
    }
    let out = Command::new("tshark")
        .env("HOME", tmp.path()) // no user profile, no GUI prefs
        .args([
            "-n",
            "-r",
            path.to_str().unwrap(),
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
            "-e",
            "_ws.malformed",
            "-e",
            "frame.protocols",
        ])
        .output()
        .expect("run tshark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        frames.len(),
        "tshark saw a different number of frames:\n{stdout}"
    );
    let mut bad = Vec::new();
    for (line, (desc, kind, _)) in lines.iter().zip(&frames) {
        let lower = line.to_lowercase();
        if lower.contains("malformed")
            || lower.contains("bad checksum")
            || lower.contains("incorrect")
            || lower.contains("[checksum status: bad]")
        {
            bad.push(format!("{desc} ({kind:?}): {line}"));
        }
        let want = match kind {
            ReplyKind::TcpReset => "tcp",
            ReplyKind::IcmpProhibited => "icmp",
        };
        if !line.split('\t').next_back().unwrap_or("").contains(want) {
            bad.push(format!(
                "{desc} ({kind:?}): tshark did not decode {want}: {line}"
            ));
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));

    // Checksum status fields: none may be "Bad" (2).
    let out = Command::new("tshark")
        .env("HOME", tmp.path())
        .args([
            "-n", "-r", path.to_str().unwrap(),
            "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
            "-Y", "ip.checksum.status == 0 || tcp.checksum.status == 0 || icmp.checksum.status == 0 || icmpv6.checksum.status == 0 || _ws.malformed || _ws.expert.severity >= error",
        ])
        .output()
        .unwrap();
    let flagged = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        flagged.trim().is_empty(),
        "tshark flags these replies:\n{flagged}"
    );
}
