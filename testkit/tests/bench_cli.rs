//! `op25b-bench` as a command: its subcommands, and one `error: ...` line for a report
//! that cannot be read. (Also makes `cargo test --workspace` build the binary that
//! op25b's own load tests and `tests/offline/cli_errors.rs` run.)

use std::process::Command;

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_op25b-bench"))
        .args(args)
        .output()
        .expect("run op25b-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_gen_sink_report() {
    let (rc, out, _) = bench(&["--help"]);
    assert_eq!(rc, 0);
    for c in ["gen", "sink", "report"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(c)),
            "{c} missing:\n{out}"
        );
    }
}

#[test]
fn unreadable_report_is_one_line() {
    let (rc, _, err) = bench(&[
        "report",
        "--gen",
        "/nonexistent/gen.json",
        "--sink",
        "/nonexistent/sink.json",
    ]);
    assert_ne!(rc, 0);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    assert!(lines[0].contains("/nonexistent/gen.json"), "{err:?}");
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let (rc, _, err) = bench(&[]);
    assert_eq!(rc, 64, "{err}");
}

#[test]
fn help_lists_prefixes_and_kernel_lookup() {
    let (rc, out, _) = bench(&["--help"]);
    assert_eq!(rc, 0);
    for c in ["prefixes", "kernel-lookup"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(c)),
            "{c} missing:\n{out}"
        );
    }
}

/// `prefixes --count 10000` writes the committed table's IPv4 part and its pools; the
/// 1M table the benchmark writes at run time has a million distinct lines.
#[test]
fn prefixes_writes_the_benchmark_tables() {
    let dir = std::env::temp_dir().join(format!("op25b-prefixes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ten_k = dir.join("10k.txt");
    let (rc, _, err) = bench(&[
        "prefixes",
        "--count",
        "10000",
        "-o",
        ten_k.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let ours = lines(&std::fs::read_to_string(&ten_k).unwrap());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let committed =
        lines(&std::fs::read_to_string(root.join("configs/prefixes/bench-dynamic.txt")).unwrap());
    assert_eq!(ours.len(), 10_000);
    let v4 =
        |v: &[String]| -> Vec<String> { v.iter().filter(|l| !l.contains(':')).cloned().collect() };
    assert_eq!(v4(&ours), v4(&committed));
    assert_eq!(ours.last(), committed.last());
    let one_m = dir.join("1m.txt");
    let (rc, _, err) = bench(&[
        "prefixes",
        "--count",
        "1000000",
        "-o",
        one_m.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    let big = lines(&std::fs::read_to_string(&one_m).unwrap());
    assert_eq!(big.len(), 1_000_000);
    assert_eq!(
        big.iter().collect::<std::collections::HashSet<_>>().len(),
        1_000_000
    );
    // A size the layout cannot hold: one error line naming the option.
    let (rc, _, err) = bench(&["prefixes", "--count", "1", "-o", one_m.to_str().unwrap()]);
    assert_eq!(rc, 1);
    assert!(
        err.starts_with("error: --count") && err.lines().count() == 1,
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
