//! What the datapath needs to attach and run its workers: [`DatapathSettings`], built
//! once by `config` when it validates a file (`Config::datapath`) and handed as it is to
//! `datapath::preflight` and `datapath::start`; the datapath never reads the config.
//! The ring and frame geometry each worker derives from it is here too, in one place.
//! `XdpMode` parses straight from the YAML, the on/off ones (`ZeroCopy`, `FastPathMode`)
//! through the config's one switch parser, which also takes `true`/`false`.

use serde::Deserialize;

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode if the NIC supports it, else generic, with one log line.
    #[default]
    Auto,
    /// Driver mode only; fail if unsupported.
    Native,
    /// Generic (SKB) mode: works everywhere, slower.
    Generic,
}

/// AF_XDP zero-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy if the driver supports it, else copy mode, with one log line.
    #[default]
    Auto,
    /// Zero-copy only; fail if unsupported.
    On,
    /// Copy mode.
    Off,
}

/// `datapath.fast_path`: how much op25b's XDP program decides in the kernel (the table
/// of which frame is judged where is in docs/architecture.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FastPathMode {
    /// The program judges in the kernel every frame it can, exactly as the workers would
    /// (forward or drop); the workers get replies, fragments and what it does not parse.
    #[default]
    Kernel,
    /// Only what no class can block is forwarded in the kernel (not TCP, or TCP to a port
    /// no class blocks); every TCP segment to a port some class blocks goes to the
    /// workers. What `on` meant before the kernel judged.
    Unblockable,
    /// Every frame goes through the workers.
    Off,
}

impl FastPathMode {
    /// The word of the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            FastPathMode::Kernel => "kernel",
            FastPathMode::Unblockable => "unblockable",
            FastPathMode::Off => "off",
        }
    }
}

/// Replies (TCP RST, ICMP, the SMTP notice) per second and bucket depth, per worker
/// (`policy.reject_rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Everything `datapath::preflight` and `datapath::start` need: the validated
/// `interfaces:` (less the failure mode), `workers:` (less the log interval),
/// `policy.reject_rate` and `datapath:`. Only `fast_path` changes on a reload; the rest
/// needs a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathSettings {
    /// Subscriber-facing NIC (outbound traffic enters here).
    pub subscriber: String,
    /// Upstream/core-facing NIC.
    pub upstream: String,
    /// Queue pairs: one worker per queue.
    pub queues: u32,
    pub xdp_mode: XdpMode,
    pub zero_copy: ZeroCopy,
    /// UMEM frame size in bytes (2048 or 4096): bounds the largest frame (MTU).
    pub frame_size: u32,
    /// Entries of each RX and TX ring, and the frames each fill ring holds (a power of
    /// two); the fill and completion rings have twice as many entries
    /// ([`DatapathSettings::fill_ring_entries`], `completion_ring_entries`).
    pub ring_size: u32,
    /// Core for each worker (index = queue).
    pub cores: Vec<usize>,
    /// Frames received, decided and acted on per loop iteration.
    pub burst: u32,
    /// Spin on the rings instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// Bound the receive backlog under sustained overload (worker.rs, "Overload guard").
    pub overload_guard: bool,
    /// The replies' token bucket, per worker.
    pub reply_rate: RateLimit,
    /// How much the XDP program decides in the kernel (reloadable).
    pub fast_path: FastPathMode,
}

impl DatapathSettings {
    /// Frames each side keeps in its fill ring (the receive buffer): `ring_size`.
    pub fn fill_target(&self) -> usize {
        self.ring_size as usize
    }

    /// Entries of each fill ring: twice the frames circulating through it
    /// ([`DatapathSettings::fill_target`]), since the kernel updates its consumer index
    /// lazily and a fill ring sized exactly to its frames reported itself full
    /// (LAB-NOTES, "AF_XDP pitfalls").
    pub fn fill_ring_entries(&self) -> u32 {
        2 * self.ring_size
    }

    /// Entries of each completion ring: twice the TX ring's.
    pub fn completion_ring_entries(&self) -> u32 {
        2 * self.ring_size
    }

    /// The fill-ring depth under the overload guard (worker.rs, "Overload guard"): an
    /// eighth of the ring, at least two bursts, never more than the ring; `None` without
    /// the guard.
    pub fn overload_fill(&self) -> Option<usize> {
        self.overload_guard
            .then(|| (self.ring_size / 8).max(2 * self.burst).min(self.ring_size) as usize)
    }

    /// Frames per worker UMEM: both fill rings at target, both TX rings full, slack for
    /// replies and one burst in hand.
    pub fn frame_count(&self) -> u32 {
        4 * self.ring_size + 4 * self.burst.max(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring geometry is stated once, here: each fill ring holds `ring_size` frames
    /// and has twice as many entries, as the completion ring; docs/configuration.md
    /// says the same (it used to say every ring had `ring_size` entries).
    #[test]
    fn fill_and_completion_rings_have_twice_ring_size_entries_and_the_docs_say_so() {
        let s = DatapathSettings {
            subscriber: "sub0".into(),
            upstream: "up0".into(),
            queues: 1,
            xdp_mode: XdpMode::Auto,
            zero_copy: ZeroCopy::Auto,
            frame_size: 4096,
            ring_size: 2048,
            cores: vec![0],
            burst: 64,
            busy_poll: false,
            overload_guard: true,
            reply_rate: RateLimit {
                per_second: 1000,
                burst: 100,
            },
            fast_path: FastPathMode::Kernel,
        };
        assert_eq!(s.fill_target(), 2048);
        assert_eq!(s.fill_ring_entries(), 2 * 2048);
        assert_eq!(s.completion_ring_entries(), 2 * 2048);
        assert_eq!(s.overload_fill(), Some(256));
        assert_eq!(s.frame_count(), 8448);
        let docs = include_str!("../../docs/configuration.md");
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `ring_size` |"))
            .expect("docs/configuration.md has a ring_size row");
        assert!(
            row.contains("Number of entries in each RX and TX ring, and the frames a worker keeps in each fill ring")
                && row.contains("fill and completion rings have twice as many entries (`2*ring_size`)"),
            "{row}"
        );
        assert!(
            docs.contains("`4*ring_size + 4*max(burst, 64)`") && docs.contains("8448 × 4096 B"),
            "the memory bullet of docs/configuration.md"
        );
    }
}
