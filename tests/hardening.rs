//! The short hardening runs of `scripts/soak.sh` (docs/reliability.md), as root on the
//! veth lab: a soak at 50% of saturation (20 s; `OP25B_SOAK_SECS=60` in the environment
//! for a minute, `scripts/soak.sh soak` for the 10-minute one), overload, hostile frames
//! at line rate, reply abuse, faults (link flap, peer stop, SIGHUP storm, kill -9), both
//! failure modes under kill -9, and the capability set. Each scenario checks itself (zero
//! leaked, zero loss where the load allows it, conservation, RSS) and exits 1 with its
//! problems listed. They are `#[ignore]`d, so a plain `cargo test` reports them as not
//! run; scripts/test.sh runs them as root with `--include-ignored`.
//! One at a time: they share the lab's namespace names.

use std::process::Command;
use std::sync::Mutex;

static LAB: Mutex<()> = Mutex::new(());

fn soak(scenario: &str) {
    soak_with(scenario, &[]);
}

fn soak_with(scenario: &str, extra: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{scenario}: needs root (network namespaces, AF_XDP)"
    );
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .args(["scripts/soak.sh", scenario, "--short"])
        .args(extra)
        .env("OP25B_BIN", env!("CARGO_BIN_EXE_op25b"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run soak.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "soak.sh {scenario} --short failed:\n{text}"
    );
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn soak_short() {
    soak("soak");
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn soak_short_kernel_verdicts() {
    // The same soak with the XDP program judging in the kernel (the default mode): zero
    // leaked, nothing lost by op25b (what the lab's veth ring could not take from the
    // XDP redirect is reported apart).
    soak_with("soak", &["--fast-path", "kernel"]);
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn overload_then_recovery() {
    soak("overload");
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn hostile_frames_at_line_rate() {
    soak("hostile");
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn reply_abuse() {
    soak("reply-abuse");
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn smtp_notice_syn_flood() {
    soak("notice-flood");
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn faults() {
    soak("faults");
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn failure_modes_under_kill_9() {
    // With the XDP program judging in the kernel (the default config): the kernel
    // detaches both programs at the kill, so the failure modes behave as without it.
    soak_with("failover", &["--fast-path", "kernel"]);
}

#[test]
#[ignore = "needs root and the veth lab (scripts/test.sh runs it as root)"]
fn minimal_capabilities() {
    soak("privileges");
}
