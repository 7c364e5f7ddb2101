//! `op25b-bench probe`: which optional kernel facilities the benchmark and the lab can use
//! here, asked once (scripts/probe.sh) so that a step that needs one can say that it
//! cannot run and fall back, instead of failing half-way.
//!
//! * live frames: BPF_PROG_RUN with `BPF_F_TEST_XDP_LIVE_FRAMES` (kernel >= 5.18), what
//!   the generator's XDP engine (`gen --engine xdp`) sends with. Some kernels and
//!   containers refuse it even to root (EPERM).
//! * xdp_features: the kernel reports each device's XDP features (kernel >= 6.3), which
//!   op25b reads to know whether a target takes redirected frames.
//!
//! Threaded NAPI (the fair placement of scripts/lab.sh) is a sysfs switch: scripts/probe.sh
//! tries it itself.

use crate::bpfobj::ifindex;
use std::io;

/// Whether BPF_PROG_RUN in live-frames mode works on `interface`: loads the generator
/// and makes one call that sends nothing. `Ok(Err(reason))`: the kernel refuses it
/// (EPERM, EOPNOTSUPP; before 5.18 it does not know the flag); `Err`: any other failure
/// (the program does not load, no such interface), a fault to report, not a missing
/// facility.
pub fn live_frames(interface: &str) -> io::Result<Result<(), String>> {
    if kernel_release() < (5, 18) {
        return Ok(Err(format!(
            "kernel {} (live frames need 5.18)",
            release_text()
        )));
    }
    let ifi = ifindex(interface)?;
    match crate::xdpgen::run_nothing(ifi)? {
        Ok(()) => Ok(Ok(())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(Err(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

/// Whether the kernel reports `interface`'s XDP features (any flag set: a veth always has
/// some). Before 6.3 the flags are always zero.
pub fn xdp_features(interface: &str) -> io::Result<bool> {
    Ok(op25b::datapath::xdp::xdp_feature_flags(ifindex(interface)?)? != 0)
}

fn release_text() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn kernel_release() -> (u32, u32) {
    let r = release_text();
    let mut it = r.split(['.', '-']);
    let major = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (major, minor)
}
