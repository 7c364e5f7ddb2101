//! `op25b-bench` as a command: its subcommands, and one `error: ...` line for a report
//! that cannot be read. (Also makes `cargo test --workspace` build the binary that
//! op25b's own load tests and `tests/cli_errors.rs` run.)

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
