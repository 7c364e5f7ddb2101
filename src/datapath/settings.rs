//! The datapath's own settings types: what it needs to attach and start its workers.
//! The datapath never reads the config; `config` builds a [`Settings`] from the YAML
//! (`Config::datapath_settings`); `XdpMode` parses straight from the YAML, the on/off
//! ones (`ZeroCopy`, `FastPathMode`) through the config's one switch parser, which also
//! takes `true`/`false`.

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

/// Everything `datapath::preflight` and `datapath::start` need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Subscriber-facing NIC (outbound traffic enters here).
    pub subscriber: String,
    /// Upstream/core-facing NIC.
    pub upstream: String,
    /// Queue pairs: one worker per queue.
    pub queues: u32,
    pub xdp_mode: XdpMode,
    pub zero_copy: ZeroCopy,
    /// UMEM frame size in bytes: bounds the largest frame (MTU).
    pub frame_size: u32,
    /// Size of each RX/TX ring (fill and completion rings are twice this).
    pub ring_size: u32,
    /// Core for each worker (index = queue).
    pub cores: Vec<usize>,
    /// Frames received, decided and acted on per loop iteration.
    pub burst: u32,
    /// Spin on the rings instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// Bound the receive backlog under sustained overload (worker.rs, "Overload guard").
    pub overload_guard: bool,
    /// Replies (TCP RST, ICMP) per second and burst, per worker.
    pub reply_rate: u32,
    pub reply_burst: u32,
    pub fast_path: FastPathMode,
}
