//! The process's one clock: every control-plane time is read here.
//!
//! One zero, taken the first time anything asks (op25b asks at start): the heartbeat
//! clock ([`beat_ms`]), the top lists' coarse clock ([`secs`], [`epoch`]) and wall-clock
//! Unix seconds ([`unix_now`]). The kernel's CLOCK_MONOTONIC (the XDP program's
//! `bpf_ktime_get_ns`, the benchmark tags) is read by the datapath, which owns every
//! system call (`datapath::clock`), and converted with [`of_monotonic`].
//!
//! Safe std only: it sits below every other module.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static ZERO: OnceLock<(Instant, u64)> = OnceLock::new();

/// The clock's zero: an `Instant` and the Unix time (seconds) it was taken at.
pub fn zero() -> (Instant, u64) {
    *ZERO.get_or_init(|| (Instant::now(), unix_now()))
}

/// Whole seconds since the zero (the top lists' first and last seen).
pub fn secs() -> u64 {
    zero().0.elapsed().as_secs()
}

/// Unix time (seconds) of the zero.
pub fn epoch() -> u64 {
    zero().1
}

/// Milliseconds since the zero at `t` (the workers' heartbeats; 0 before it).
pub fn beat_ms_at(t: Instant) -> u64 {
    t.saturating_duration_since(zero().0).as_millis() as u64
}

/// Milliseconds since the zero, now.
pub fn beat_ms() -> u64 {
    beat_ms_at(Instant::now())
}

/// Wall-clock Unix seconds now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`secs`] of CLOCK_MONOTONIC nanoseconds `ns`, given the zero's own CLOCK_MONOTONIC
/// nanoseconds `zero_ns` (0 for a time before it).
pub fn of_monotonic(ns: u64, zero_ns: u64) -> u64 {
    ns.saturating_sub(zero_ns) / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_nanoseconds_become_whole_seconds_since_the_zero() {
        const Z: u64 = 5_000_000_000_000;
        assert_eq!(of_monotonic(Z, Z), 0);
        assert_eq!(of_monotonic(Z + 999_999_999, Z), 0);
        assert_eq!(of_monotonic(Z + 61_500_000_000, Z), 61);
        // Before the zero (an entry older than the list): the start.
        assert_eq!(of_monotonic(Z - 7, Z), 0);
    }

    #[test]
    fn one_zero_for_every_reading() {
        let (t0, unix0) = zero();
        assert_eq!(zero(), (t0, unix0));
        assert!(unix_now() >= unix0);
        assert!(beat_ms() >= beat_ms_at(t0));
        assert_eq!(beat_ms_at(t0), 0);
        assert!(secs() <= beat_ms() / 1000 + 1);
    }
}
