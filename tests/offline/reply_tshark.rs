//! Every reply the builders produce for the golden fixtures is handed to a real decoder:
//! tshark must report no malformed packet and no bad checksum.

use op25b::classify::notice::{self, NoticeStep};
use op25b::classify::reply;
use op25b::policy::{ReplyKind, Verdict};
use op25b_testkit::fixtures;
use std::process::Command;

/// A two-line notice as config renders it.
const NOTICE: &[u8] = b"554-5.7.1 Port 25 to other networks is blocked on this line (OP25B).\r\n554 5.7.1 Send mail through port 587 with authentication.\r\n";

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
        // The SMTP notice's SYN-ACK and greeting for every well-formed TCP fixture.
        if well_formed {
            let info = op25b::classify::parse(&fx.frame);
            for step in [
                NoticeStep::SynAck {
                    cookie: 0x1234_5678,
                },
                NoticeStep::Greeting {
                    cookie: 0x1234_5678,
                },
            ] {
                if let Ok(n) = notice::build(&fx.frame, &info, step, NOTICE, &mut buf) {
                    frames.push((
                        fx.description.clone(),
                        ReplyKind::SmtpNotice,
                        buf[..n].to_vec(),
                    ));
                }
            }
        }
        if let Verdict::Reject(_, kind) = fx.expected {
            // The notice builds its SYN-ACK (a SYN) or falls back to a RST (anything else).
            let kind = if kind == ReplyKind::SmtpNotice {
                let info = op25b::classify::parse(&fx.frame);
                let step = notice::step(&fx.frame, &info, notice::CookieKey([1, 2]), 0);
                if let NoticeStep::SynAck { .. } = step {
                    assert!(
                        notice::build(&fx.frame, &info, step, NOTICE, &mut buf).is_ok(),
                        "{}: no SYN-ACK",
                        fx.description
                    );
                    continue;
                }
                ReplyKind::TcpReset
            } else {
                kind
            };
            assert!(
                reply::build_reply(&fx.frame, kind, &mut buf).is_ok(),
                "{}: rejected but no reply could be built",
                fx.description
            );
        }
    }
    assert!(frames.len() >= 20, "only {} replies built", frames.len());
    let notices = frames
        .iter()
        .filter(|(_, k, _)| *k == ReplyKind::SmtpNotice)
        .count();
    assert!(notices >= 20, "only {notices} notice frames built");

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
            ReplyKind::SmtpNotice => "tcp",
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

    // tshark reads each greeting from port 25 or 587 as an SMTP 554 reply (both lines).
    let from_smtp_port = |f: &[u8]| match op25b::classify::parse(f).net {
        op25b::classify::Net::Ip { l4_offset, .. } => f
            .get(l4_offset..l4_offset + 2)
            .is_some_and(|p| matches!(u16::from_be_bytes([p[0], p[1]]), 25 | 587)),
        _ => false,
    };
    let greetings = frames
        .iter()
        .filter(|(_, k, f)| {
            *k == ReplyKind::SmtpNotice && f.windows(4).any(|w| w == b"554 ") && from_smtp_port(f)
        })
        .count();
    assert!(
        greetings >= 10,
        "only {greetings} greetings from port 25/587"
    );
    let out = Command::new("tshark")
        .env("HOME", tmp.path())
        .args([
            "-n",
            "-r",
            path.to_str().unwrap(),
            // Fixtures share 4-tuples: without this, tshark takes later ones for
            // retransmissions and does not dissect their payload.
            "-o",
            "tcp.analyze_sequence_numbers:FALSE",
            "-Y",
            "smtp.response.code == 554",
            "-T",
            "fields",
            "-e",
            "smtp.rsp.parameter",
        ])
        .output()
        .unwrap();
    let smtp = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        smtp.lines().count(),
        greetings,
        "tshark's SMTP view:\n{smtp}"
    );
    assert!(
        smtp.lines()
            .all(|l| l.contains("Port 25 to other networks is blocked") && l.contains("port 587")),
        "{smtp}"
    );
}
