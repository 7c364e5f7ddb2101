//! `op25b classify` as a black box: the tcpdump corpus (every frame gets a line, no
//! panic), the golden fixtures through a pcap file, and bad inputs (exit 2, one line).

use op25b::policy::Direction;
use op25b_testkit::fixtures;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn op25b(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_op25b"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run op25b")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/tcpdump-ethernet")
}

/// Write frames as a classic Ethernet pcap.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader {
        datalink: pcap_file::DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = std::time::Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
}

fn jsonl(out: &Output) -> (Vec<serde_json::Value>, serde_json::Value) {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect();
    let summary = lines.pop().expect("summary line");
    (lines, summary["summary"].clone())
}

#[test]
fn corpus_every_frame_gets_a_line() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        panic!(
            "corpus missing at {} (CI provides ../shared beside the checkout)",
            dir.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 400,
        "expected the 446 tcpdump captures, found {}",
        files.len()
    );
    let mut total = 0u64;
    let mut failures = Vec::new();
    for f in &files {
        for dir in ["outbound", "inbound"] {
            let out = op25b(&[
                "classify",
                "--config",
                "configs/lab.yaml",
                "--pcap",
                f.to_str().unwrap(),
                "--direction",
                dir,
                "--format",
                "jsonl",
            ]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("panicked") || out.status.code().is_none() {
                failures.push(format!("{}: crashed: {stderr}", f.display()));
                continue;
            }
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "{} ({dir}): exit {:?}: {stderr}",
                    f.display(),
                    out.status.code()
                ));
                continue;
            }
            let (lines, summary) = jsonl(&out);
            let frames = summary["frames"].as_u64().unwrap();
            if lines.len() as u64 != frames {
                failures.push(format!(
                    "{}: {} lines for {frames} frames",
                    f.display(),
                    lines.len()
                ));
            }
            for (i, l) in lines.iter().enumerate() {
                if l["frame"].as_u64() != Some(i as u64 + 1) {
                    failures.push(format!(
                        "{}: line {} has frame {}",
                        f.display(),
                        i + 1,
                        l["frame"]
                    ));
                    break;
                }
            }
            let by_verdict: u64 = ["forward", "drop", "reject"]
                .iter()
                .map(|v| summary[v].as_u64().unwrap())
                .sum();
            if by_verdict != frames {
                failures.push(format!(
                    "{}: verdict counts {by_verdict} != frames {frames}",
                    f.display()
                ));
            }
            total += frames;
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(total > 10_000, "corpus yielded only {total} frames");
}

#[test]
fn fixtures_through_a_pcap_match_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    for direction in [Direction::Outbound, Direction::Inbound] {
        let table: Vec<_> = fixtures::all()
            .into_iter()
            .filter(|f| f.direction == direction)
            .collect();
        let frames: Vec<Vec<u8>> = table.iter().map(|f| f.frame.clone()).collect();
        let path = tmp.path().join("fixtures.pcap");
        write_pcap(&path, &frames);
        let dir = match direction {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        };
        let out = op25b(&[
            "classify",
            "--config",
            "configs/lab.yaml",
            "--pcap",
            path.to_str().unwrap(),
            "--direction",
            dir,
            "--format",
            "jsonl",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (lines, _) = jsonl(&out);
        assert_eq!(lines.len(), table.len());
        for (fx, line) in table.iter().zip(&lines) {
            assert_eq!(
                line["verdict"],
                fx.expected.action_str(),
                "{}: {line}",
                fx.description
            );
            assert_eq!(
                line["reason"],
                fx.expected.reason().as_str(),
                "{}: {line}",
                fx.description
            );
            let reply = match fx.expected {
                op25b::policy::Verdict::Reject(_, k) => serde_json::json!(k.as_str()),
                _ => serde_json::Value::Null,
            };
            assert_eq!(line["reply"], reply, "{}: {line}", fx.description);
        }
    }
}

#[test]
fn text_format_has_a_line_per_frame_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f.pcap");
    let frames: Vec<Vec<u8>> = fixtures::all().into_iter().map(|f| f.frame).collect();
    write_pcap(&path, &frames);
    let out = op25b(&[
        "classify",
        "-c",
        "configs/lab.yaml",
        "-p",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let frame_lines = text.lines().filter(|l| !l.starts_with("summary:")).count();
    // one header line plus one line per frame
    assert!(frame_lines >= frames.len(), "{text}");
    // The reply kind has its column (the lab's notice class answers with smtp-notice).
    assert!(text.lines().next().unwrap().contains(" reply "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" smtp-notice ") && l.contains(" notice ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("summary: {} frames", frames.len())),
        "{text}"
    );
}

/// 66 (EX_NOINPUT) for a capture that cannot be opened, 65 (EX_DATAERR) for one that
/// is malformed.
fn expect_exit(args: &[&str], want: &str) {
    let out = op25b(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = args.iter().any(|a| a.contains("/nonexistent/"));
    let code = if missing { 66 } else { 65 };
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "want one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(want), "{args:?}: {stderr:?} lacks {want:?}");
}

#[test]
fn bad_captures_exit_65_or_66_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();

    expect_exit(
        &[
            "classify",
            "-c",
            "configs/lab.yaml",
            "-p",
            "/nonexistent/x.pcap",
        ],
        "/nonexistent/x.pcap",
    );

    // A capture cut in the middle of its second record.
    let good = p("good.pcap");
    let fx = fixtures::all();
    write_pcap(
        Path::new(&good),
        &[fx[0].frame.clone(), fx[1].frame.clone()],
    );
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(p("cut.pcap"), &bytes[..bytes.len() - 10]).unwrap();
    expect_exit(
        &["classify", "-c", "configs/lab.yaml", "-p", &p("cut.pcap")],
        "cut.pcap",
    );

    // Only half a global header.
    std::fs::write(p("stub.pcap"), &bytes[..12]).unwrap();
    expect_exit(
        &["classify", "-c", "configs/lab.yaml", "-p", &p("stub.pcap")],
        "stub.pcap",
    );

    // 802.11 radiotap link type (127).
    let mut radiotap = bytes.clone();
    let lt = if bytes[0] == 0xa1 {
        127u32.to_be_bytes()
    } else {
        127u32.to_le_bytes()
    };
    radiotap[20..24].copy_from_slice(&lt);
    std::fs::write(p("wifi.pcap"), &radiotap).unwrap();
    expect_exit(
        &["classify", "-c", "configs/lab.yaml", "-p", &p("wifi.pcap")],
        "link type 127",
    );

    // Not a capture at all.
    std::fs::write(p("text.pcap"), b"hello, this is not a capture\n").unwrap();
    expect_exit(
        &["classify", "-c", "configs/lab.yaml", "-p", &p("text.pcap")],
        "text.pcap",
    );

    // Empty file.
    std::fs::write(p("empty.pcap"), b"").unwrap();
    expect_exit(
        &["classify", "-c", "configs/lab.yaml", "-p", &p("empty.pcap")],
        "empty.pcap",
    );
}

#[test]
fn bad_config_for_classify_exits_78() {
    let out = op25b(&[
        "classify",
        "-c",
        "tests/configs/host-bits-set.yaml",
        "-p",
        "/nonexistent.pcap",
    ]);
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
}

#[test]
fn version_and_help() {
    let out = op25b(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("op25b "), "{v}");
    // The git revision and the compiler, for bug reports and op25b_build_info.
    assert!(v.contains("(rev ") && v.contains(", rustc "), "{v}");
    let out = op25b(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["check", "classify"] {
        assert!(help.contains(sub), "{help}");
    }
}
