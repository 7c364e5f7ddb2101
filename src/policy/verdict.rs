//! The policy's vocabulary: which way a frame goes ([`Direction`]), what is done with it
//! ([`Verdict`], [`BlockAction`], [`ReplyKind`]) and why ([`Reason`]), and the transport
//! facts a verdict needs ([`Segment`], [`Fragment`], [`FragmentPolicy`]).
#![forbid(unsafe_code)]

use std::fmt;

use super::{ClassId, IPPROTO_TCP};

/// Which way a frame crosses the appliance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Subscriber -> upstream: the OP25B direction.
    Outbound,
    /// Upstream -> subscriber: return traffic, and IP25B.
    Inbound,
}

impl Direction {
    /// Both directions, in counter-index order.
    pub const ALL: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

    /// Lower-case name used in logs, metrics and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }

    /// Index for per-direction counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a frame got its verdict. A small dense enum: it indexes counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// Not IPv4/IPv6 (ARP, LLDP, STP, PPPoE discovery, other PPP protocols...).
    NotIp = 0,
    /// Runt frame, or an Ethernet/VLAN/PPPoE header cut short: cannot carry IP.
    MalformedLink,
    /// IP, but not TCP (UDP, ICMP, ...), including non-TCP garbage.
    NotTcp,
    /// IP header unreadable (too short, bad version/IHL, broken IPv6 extension chain).
    MalformedIp,
    /// The subscriber-side address is in no subscriber prefix and no unmatched class is set.
    Unmatched,
    /// TCP to a port the address's class does not block.
    PortOpen,
    /// TCP to a blocked port, but the destination is an allowed relay/MX.
    AllowedDestination,
    /// A non-first IP fragment: carries no TCP header.
    NonFirstFragment,
    /// A first fragment too short to hold the TCP destination port (RFC 1858 / RFC 3128).
    TinyFragment,
    /// TCP header truncated or invalid (data offset < 5).
    MalformedTcp,
    /// Outbound TCP to a port the source's class blocks: the OP25B case.
    BlockedPort,
    /// Inbound TCP/25 towards a class with inbound blocking (IP25B).
    InboundSmtp,
}

impl Reason {
    /// Number of reasons (size of counter arrays).
    pub const COUNT: usize = 12;

    /// Every reason, in index order.
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::NotIp,
        Reason::MalformedLink,
        Reason::NotTcp,
        Reason::MalformedIp,
        Reason::Unmatched,
        Reason::PortOpen,
        Reason::AllowedDestination,
        Reason::NonFirstFragment,
        Reason::TinyFragment,
        Reason::MalformedTcp,
        Reason::BlockedPort,
        Reason::InboundSmtp,
    ];

    /// snake_case name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::MalformedLink => "malformed_link",
            Reason::NotTcp => "not_tcp",
            Reason::MalformedIp => "malformed_ip",
            Reason::Unmatched => "unmatched",
            Reason::PortOpen => "port_open",
            Reason::AllowedDestination => "allowed_destination",
            Reason::NonFirstFragment => "non_first_fragment",
            Reason::TinyFragment => "tiny_fragment",
            Reason::MalformedTcp => "malformed_tcp",
            Reason::BlockedPort => "blocked_port",
            Reason::InboundSmtp => "inbound_smtp",
        }
    }

    /// Index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a `reject` tells the subscriber "no".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// A TCP RST from the destination back to the source (RFC 9293).
    TcpReset,
    /// ICMP destination unreachable, administratively prohibited (type 3 code 13;
    /// ICMPv6 type 1 code 1).
    IcmpProhibited,
    /// The SMTP notice (TCP/25 and TCP/587 outbound): op25b answers the connection
    /// itself, statelessly, with a `554 5.7.1` greeting naming the block, then closes
    /// (`classify::notice`). Other ports, inbound segments and anything the notice
    /// cannot answer get a TCP RST.
    SmtpNotice,
}

impl ReplyKind {
    /// Name used in config, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::TcpReset => "tcp-reset",
            ReplyKind::IcmpProhibited => "icmp-prohibited",
            ReplyKind::SmtpNotice => "smtp-notice",
        }
    }
}

/// What a verdict does with the frame, without its reason: the index of the per-action
/// counters (`as usize`) and their name in metrics, reports and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Forward = 0,
    Drop = 1,
    Reject = 2,
}

impl Action {
    pub const COUNT: usize = 3;
    pub const ALL: [Action; Self::COUNT] = [Action::Forward, Action::Drop, Action::Reject];
    /// The actions that block the frame.
    pub const BLOCKING: [Action; 2] = [Action::Drop, Action::Reject];

    /// `forward`, `drop` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Forward => "forward",
            Action::Drop => "drop",
            Action::Reject => "reject",
        }
    }

    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Pass it on unchanged.
    Forward(Reason),
    /// Discard it silently.
    Drop(Reason),
    /// Discard it and answer the sender.
    Reject(Reason, ReplyKind),
}

impl Verdict {
    /// Why.
    pub fn reason(self) -> Reason {
        match self {
            Verdict::Forward(r) | Verdict::Drop(r) | Verdict::Reject(r, _) => r,
        }
    }

    /// True for `Drop` and `Reject`.
    pub fn is_blocked(self) -> bool {
        !matches!(self, Verdict::Forward(_))
    }

    /// Its action.
    #[inline]
    pub fn action(self) -> Action {
        match self {
            Verdict::Forward(_) => Action::Forward,
            Verdict::Drop(_) => Action::Drop,
            Verdict::Reject(..) => Action::Reject,
        }
    }

    /// `forward`, `drop` or `reject`.
    pub fn action_str(self) -> &'static str {
        self.action().as_str()
    }

    /// Index for per-action counter arrays ([`Action`] order).
    #[inline]
    pub fn action_index(self) -> usize {
        self.action().index()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.action_str(), self.reason())
    }
}

/// A verdict plus the class that decided it (for per-class counters and reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The class of the subscriber-side address, if any.
    pub class: Option<ClassId>,
}

impl Decision {
    pub(super) fn new(verdict: Verdict, class: Option<ClassId>) -> Self {
        Self { verdict, class }
    }
}

/// What a class does with a blocked segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockAction {
    /// Discard silently: the client times out.
    Drop,
    /// Discard and answer, so the client fails at once.
    Reject(ReplyKind),
}

/// Where the segment sits in IP fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented (or an IPv6 atomic fragment).
    Whole,
    /// Offset 0 with more fragments to come: carries the transport header (or should).
    First,
    /// Offset > 0: no transport header.
    Later,
}

/// The transport facts the verdict needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// IP protocol number (after any IPv6 extension headers).
    pub protocol: u8,
    /// TCP destination port, when a complete enough TCP header was present.
    pub dst_port: Option<u16>,
    pub fragment: Fragment,
}

impl Segment {
    /// A whole TCP segment to `port`.
    pub fn tcp(port: u16) -> Self {
        Self {
            protocol: IPPROTO_TCP,
            dst_port: Some(port),
            fragment: Fragment::Whole,
        }
    }
}

/// What to do with non-first fragments and tiny first fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentPolicy {
    /// Drop a first TCP fragment too short to hold the destination port when the
    /// address's class blocks any port. Default: true (RFC 1858 / RFC 3128).
    pub drop_tiny_first: bool,
    /// Drop non-first TCP fragments when the address's class blocks any port.
    /// Default: false (they cannot open a connection without the first fragment).
    pub drop_non_first: bool,
}

impl Default for FragmentPolicy {
    fn default() -> Self {
        Self {
            drop_tiny_first: true,
            drop_non_first: false,
        }
    }
}
