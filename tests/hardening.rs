//! The short hardening runs of `scripts/soak.sh` (docs/reliability.md), as root on the
//! veth lab: a 60 s soak at ~70% of saturation, overload, hostile frames at line rate,
//! reply abuse, faults (link flap, peer stop, SIGHUP storm, kill -9), both failure
//! modes under kill -9, and the capability set. Each scenario checks itself (zero
//! leaked, zero loss where the load allows it, conservation, RSS) and exits 1 with its
//! problems listed. Without root these tests say so and do nothing (CI runs as root).
//! One at a time: they share the lab's namespace names.

use std::process::Command;
use std::sync::Mutex;

static LAB: Mutex<()> = Mutex::new(());

fn soak(scenario: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{scenario}: not root, nothing run");
        return;
    }
    let _g = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .args(["scripts/soak.sh", scenario, "--short"])
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
fn soak_60s() {
    soak("soak");
}

#[test]
fn overload_then_recovery() {
    soak("overload");
}

#[test]
fn hostile_frames_at_line_rate() {
    soak("hostile");
}

#[test]
fn reply_abuse() {
    soak("reply-abuse");
}

#[test]
fn faults() {
    soak("faults");
}

#[test]
fn failure_modes_under_kill_9() {
    soak("failover");
}

#[test]
fn minimal_capabilities() {
    soak("privileges");
}
