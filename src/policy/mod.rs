//! The compiled, immutable OP25B policy and the verdict semantics.
//!
//! [`PolicyBuilder`] turns classes, subscriber prefixes and allowed destinations into a
//! [`Policy`]: LPM tables plus per-class port bitmaps. [`Policy::decide`] is the pure
//! verdict function of (direction, source, destination, protocol, destination port,
//! fragment state). Nothing here knows YAML exists; see `config` for that.
#![forbid(unsafe_code)]

pub mod overlay;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::lpm::{self, Entry, HostSplitTable, Ipv4Table, PrefixSet, NO_MATCH};

/// Index of a class in [`Policy::classes`].
pub type ClassId = u8;

/// The most classes a policy can hold (class ids fit in a `u8`).
pub const MAX_CLASSES: usize = 255;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// The SMTP port that inbound blocking (IP25B) applies to.
pub const SMTP_PORT: u16 = 25;

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
}

impl ReplyKind {
    /// Name used in config, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::TcpReset => "tcp-reset",
            ReplyKind::IcmpProhibited => "icmp-prohibited",
        }
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

    /// `forward`, `drop` or `reject`.
    pub fn action_str(self) -> &'static str {
        match self {
            Verdict::Forward(_) => "forward",
            Verdict::Drop(_) => "drop",
            Verdict::Reject(..) => "reject",
        }
    }

    /// Index for per-action counter arrays (0 forward, 1 drop, 2 reject).
    pub fn action_index(self) -> usize {
        match self {
            Verdict::Forward(_) => 0,
            Verdict::Drop(_) => 1,
            Verdict::Reject(..) => 2,
        }
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
    fn new(verdict: Verdict, class: Option<ClassId>) -> Self {
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

/// A set of TCP ports as a 65536-bit bitmap: one load per test.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    count: usize,
}

impl PortSet {
    /// The empty set.
    pub fn new() -> Self {
        Self {
            bits: Box::new([0; 1024]),
            count: 0,
        }
    }

    /// Adds a port.
    pub fn insert(&mut self, port: u16) {
        if !self.contains(port) {
            self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
            self.count += 1;
        }
    }

    /// True when `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Number of ports in the set.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The ports, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }

    /// The ports in `self` or in `other`.
    pub fn union(&self, other: &PortSet) -> PortSet {
        self.iter().chain(other.iter()).collect()
    }
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

impl FromIterator<u16> for PortSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut s = PortSet::new();
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A subscriber class.
#[derive(Clone, Debug)]
pub struct Class {
    pub name: String,
    /// Destination TCP ports blocked outbound.
    pub blocked_ports: PortSet,
    pub action: BlockAction,
    /// Block inbound TCP/25 towards this class (IP25B).
    pub block_inbound_smtp: bool,
}

impl Class {
    /// True when the class blocks anything in `direction`: only then do malformed or
    /// fragmented TCP segments from (or to) it need a closer look.
    #[inline]
    fn blocks(&self, direction: Direction) -> bool {
        match direction {
            Direction::Outbound => !self.blocked_ports.is_empty(),
            Direction::Inbound => self.block_inbound_smtp,
        }
    }
}

/// Errors from [`PolicyBuilder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("class {0:?} is defined twice")]
    DuplicateClass(String),
    #[error("too many classes: at most {MAX_CLASSES}")]
    TooManyClasses,
    #[error("class id {0} is not defined")]
    UnknownClass(ClassId),
    #[error("building the {family} table failed: {source}")]
    Table {
        family: &'static str,
        source: lpm::BuildError,
    },
}

/// Counts for `op25b check` and the logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySummary {
    /// Per class: (IPv4 prefixes, IPv6 prefixes).
    pub prefixes_per_class: Vec<(usize, usize)>,
    pub allowed_v4: usize,
    pub allowed_v6: usize,
    /// Heap bytes used by all four tables.
    pub table_bytes: usize,
}

/// The compiled, immutable policy. Cheap to read from many threads at once.
pub struct Policy {
    classes: Box<[Class]>,
    subscribers_v4: Ipv4Table,
    subscribers_v6: HostSplitTable<u128>,
    allowed_v4: PrefixSet<u32>,
    allowed_v6: PrefixSet<u128>,
    unmatched: Option<ClassId>,
    fragments: FragmentPolicy,
    summary: PolicySummary,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("classes", &self.classes)
            .field("subscribers_v4", &self.subscribers_v4)
            .field("subscribers_v6", &self.subscribers_v6)
            .field("allowed_v4", &self.allowed_v4)
            .field("allowed_v6", &self.allowed_v6)
            .field("unmatched", &self.unmatched)
            .field("fragments", &self.fragments)
            .finish()
    }
}

impl Policy {
    /// The TCP destination ports whose segments travelling in `direction` this policy may
    /// block: outbound, every port any class blocks; inbound, 25 when any class blocks
    /// inbound SMTP. A TCP segment with a complete header to any other port, not a
    /// fragment, is forwarded whatever its addresses: the XDP fast path may send it on in
    /// the kernel (`datapath::xdp`).
    pub fn userspace_ports(&self, direction: Direction) -> PortSet {
        let mut set = PortSet::new();
        for c in self.classes.iter() {
            match direction {
                Direction::Outbound => {
                    for p in c.blocked_ports.iter() {
                        set.insert(p);
                    }
                }
                Direction::Inbound => {
                    if c.block_inbound_smtp {
                        set.insert(SMTP_PORT);
                    }
                }
            }
        }
        set
    }

    /// The classes, indexed by [`ClassId`].
    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// The class with this id.
    pub fn class(&self, id: ClassId) -> Option<&Class> {
        self.classes.get(usize::from(id))
    }

    /// The class of sources in no subscriber prefix, if any.
    pub fn unmatched_class(&self) -> Option<ClassId> {
        self.unmatched
    }

    /// What the policy does with fragments.
    pub fn fragments(&self) -> FragmentPolicy {
        self.fragments
    }

    /// Prefix counts and memory.
    pub fn summary(&self) -> &PolicySummary {
        &self.summary
    }

    /// The class of a subscriber-side IPv4 address (longest match, else the unmatched class).
    #[inline]
    pub fn class_of_v4(&self, addr: u32) -> Option<ClassId> {
        self.table_class(self.subscribers_v4.lookup(addr))
    }

    /// The class of a subscriber-side IPv6 address.
    #[inline]
    pub fn class_of_v6(&self, addr: u128) -> Option<ClassId> {
        self.class_of_v6_len(addr).0
    }

    /// The class of a subscriber-side IPv6 address and the length of the file prefix
    /// that gave it (0: no prefix matched). The IPv6 table stores `len << 8 | class + 1`
    /// so that the overlay can compete on specificity.
    #[inline]
    pub fn class_of_v6_len(&self, addr: u128) -> (Option<ClassId>, u8) {
        let v = self.subscribers_v6.lookup(addr);
        (self.table_class(v & 0xff), (v >> 8) as u8)
    }

    /// The class of an IPv4 subscriber address with the runtime overlay: an overlay
    /// entry (a /32) is always the most specific match.
    #[inline]
    pub fn class_of_v4_with(&self, addr: u32, overlay: &overlay::Overlay) -> Option<ClassId> {
        match overlay.v4(addr) {
            Some(c) if usize::from(c) < self.classes.len() => Some(c),
            _ => self.class_of_v4(addr),
        }
    }

    /// The class of an IPv6 subscriber address with the runtime overlay: the longer of
    /// the overlay's and the file's matches wins; on a tie, the overlay.
    #[inline]
    pub fn class_of_v6_with(&self, addr: u128, overlay: &overlay::Overlay) -> Option<ClassId> {
        let (file, file_len) = self.class_of_v6_len(addr);
        match overlay.v6(addr) {
            Some((c, len)) if len >= file_len && usize::from(c) < self.classes.len() => Some(c),
            _ => file,
        }
    }

    #[inline]
    fn table_class(&self, value: u16) -> Option<ClassId> {
        if value == NO_MATCH {
            self.unmatched
        } else {
            Some((value - 1) as ClassId)
        }
    }

    /// The verdict for one packet: the pure policy function.
    pub fn decide(&self, direction: Direction, src: IpAddr, dst: IpAddr, seg: Segment) -> Decision {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.decide_v4(direction, s.into(), d.into(), seg),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.decide_v6(direction, s.into(), d.into(), seg),
            // Mixed families cannot occur in one IP header; treat as unreadable.
            _ => Decision::new(Verdict::Forward(Reason::MalformedIp), None),
        }
    }

    /// [`Policy::decide`] for IPv4, addresses as host-order `u32`.
    #[inline]
    pub fn decide_v4(&self, direction: Direction, src: u32, dst: u32, seg: Segment) -> Decision {
        self.decide_v4_with(direction, src, dst, seg, overlay::Overlay::empty())
    }

    /// [`Policy::decide_v4`] with the runtime overlay.
    #[inline]
    pub fn decide_v4_with(
        &self,
        direction: Direction,
        src: u32,
        dst: u32,
        seg: Segment,
        overlay: &overlay::Overlay,
    ) -> Decision {
        if seg.protocol != IPPROTO_TCP {
            return Decision::new(Verdict::Forward(Reason::NotTcp), None);
        }
        let subscriber = match direction {
            Direction::Outbound => src,
            Direction::Inbound => dst,
        };
        self.decide_tcp(
            direction,
            self.class_of_v4_with(subscriber, overlay),
            seg,
            || self.allowed_v4.contains(dst),
        )
    }

    /// [`Policy::decide`] for IPv6, addresses as host-order `u128`.
    #[inline]
    pub fn decide_v6(&self, direction: Direction, src: u128, dst: u128, seg: Segment) -> Decision {
        self.decide_v6_with(direction, src, dst, seg, overlay::Overlay::empty())
    }

    /// [`Policy::decide_v6`] with the runtime overlay.
    #[inline]
    pub fn decide_v6_with(
        &self,
        direction: Direction,
        src: u128,
        dst: u128,
        seg: Segment,
        overlay: &overlay::Overlay,
    ) -> Decision {
        if seg.protocol != IPPROTO_TCP {
            return Decision::new(Verdict::Forward(Reason::NotTcp), None);
        }
        let subscriber = match direction {
            Direction::Outbound => src,
            Direction::Inbound => dst,
        };
        self.decide_tcp(
            direction,
            self.class_of_v6_with(subscriber, overlay),
            seg,
            || self.allowed_v6.contains(dst),
        )
    }

    /// The TCP part of the verdict, once the subscriber-side class is known.
    #[inline]
    fn decide_tcp(
        &self,
        direction: Direction,
        class_id: Option<ClassId>,
        seg: Segment,
        dst_allowed: impl FnOnce() -> bool,
    ) -> Decision {
        let Some(id) = class_id else {
            return Decision::new(Verdict::Forward(Reason::Unmatched), None);
        };
        let class = &self.classes[usize::from(id)];
        let blocks = class.blocks(direction);
        let decision = |blocked: bool, reason: Reason| {
            let v = if blocked {
                Verdict::Drop(reason)
            } else {
                Verdict::Forward(reason)
            };
            Decision::new(v, Some(id))
        };
        let port = match (seg.fragment, seg.dst_port) {
            (Fragment::Later, _) => {
                return decision(
                    blocks && self.fragments.drop_non_first,
                    Reason::NonFirstFragment,
                )
            }
            (Fragment::First, None) => {
                return decision(
                    blocks && self.fragments.drop_tiny_first,
                    Reason::TinyFragment,
                )
            }
            (Fragment::Whole, None) => return decision(blocks, Reason::MalformedTcp),
            (_, Some(port)) => port,
        };
        match direction {
            Direction::Outbound => {
                if !class.blocked_ports.contains(port) {
                    decision(false, Reason::PortOpen)
                } else if dst_allowed() {
                    decision(false, Reason::AllowedDestination)
                } else {
                    let v = match class.action {
                        BlockAction::Drop => Verdict::Drop(Reason::BlockedPort),
                        BlockAction::Reject(kind) => Verdict::Reject(Reason::BlockedPort, kind),
                    };
                    Decision::new(v, Some(id))
                }
            }
            Direction::Inbound => decision(
                blocks && port == SMTP_PORT,
                if blocks && port == SMTP_PORT {
                    Reason::InboundSmtp
                } else {
                    Reason::PortOpen
                },
            ),
        }
    }
}

/// Assembles a [`Policy`]. Everything is checked and compiled in [`PolicyBuilder::build`].
#[derive(Default)]
pub struct PolicyBuilder {
    classes: Vec<Class>,
    subscribers_v4: Vec<Entry<u32>>,
    subscribers_v6: Vec<Entry<u128>>,
    allowed_v4: Vec<Entry<u32>>,
    allowed_v6: Vec<Entry<u128>>,
    unmatched: Option<ClassId>,
    fragments: FragmentPolicy,
}

impl PolicyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a class and returns its id.
    pub fn class(
        &mut self,
        name: &str,
        blocked_ports: impl IntoIterator<Item = u16>,
        action: BlockAction,
        block_inbound_smtp: bool,
    ) -> Result<ClassId, PolicyError> {
        if self.classes.iter().any(|c| c.name == name) {
            return Err(PolicyError::DuplicateClass(name.to_string()));
        }
        if self.classes.len() >= MAX_CLASSES {
            return Err(PolicyError::TooManyClasses);
        }
        self.classes.push(Class {
            name: name.to_string(),
            blocked_ports: blocked_ports.into_iter().collect(),
            action,
            block_inbound_smtp,
        });
        Ok((self.classes.len() - 1) as ClassId)
    }

    /// Maps a subscriber prefix to a class. Host bits are ignored here (config rejects
    /// them); for the same prefix given twice, the last one wins.
    pub fn subscriber(&mut self, prefix: IpNet, class: ClassId) -> &mut Self {
        let value = u16::from(class) + 1;
        match prefix {
            IpNet::V4(n) => self.subscribers_v4.push(Entry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value,
            }),
            IpNet::V6(n) => self.subscribers_v6.push(Entry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value,
            }),
        }
        self
    }

    /// Adds an allowed destination (the ISP's own relays/MX): never blocked.
    pub fn allow(&mut self, prefix: IpNet) -> &mut Self {
        match prefix {
            IpNet::V4(n) => self.allowed_v4.push(Entry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value: 1,
            }),
            IpNet::V6(n) => self.allowed_v6.push(Entry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value: 1,
            }),
        }
        self
    }

    /// The class for addresses in no subscriber prefix (`None`: forward them untouched).
    pub fn unmatched(&mut self, class: Option<ClassId>) -> &mut Self {
        self.unmatched = class;
        self
    }

    /// Fragment handling.
    pub fn fragments(&mut self, fragments: FragmentPolicy) -> &mut Self {
        self.fragments = fragments;
        self
    }

    /// Compiles the tables.
    pub fn build(&self) -> Result<Policy, PolicyError> {
        let n = self.classes.len();
        if let Some(id) = self.unmatched {
            if usize::from(id) >= n {
                return Err(PolicyError::UnknownClass(id));
            }
        }
        for v in self
            .subscribers_v4
            .iter()
            .map(|e| e.value)
            .chain(self.subscribers_v6.iter().map(|e| e.value))
        {
            if usize::from(v - 1) >= n {
                return Err(PolicyError::UnknownClass((v - 1) as ClassId));
            }
        }
        let table = |family: &'static str| move |source| PolicyError::Table { family, source };
        let subscribers_v4 =
            Ipv4Table::build(&self.subscribers_v4).map_err(table("IPv4 subscriber"))?;
        // The IPv6 table carries the prefix length beside the class (see
        // `class_of_v6_len`): the overlay competes on specificity.
        let v6_entries: Vec<Entry<u128>> = self
            .subscribers_v6
            .iter()
            .map(|e| Entry {
                value: (u16::from(e.len) << 8) | e.value,
                ..*e
            })
            .collect();
        let subscribers_v6 =
            HostSplitTable::build(&v6_entries).map_err(table("IPv6 subscriber"))?;
        let allowed_v4 = PrefixSet::build(&self.allowed_v4).map_err(table("IPv4 allowed"))?;
        let allowed_v6 = PrefixSet::build(&self.allowed_v6).map_err(table("IPv6 allowed"))?;

        let mut per_class = vec![(0usize, 0usize); n];
        let mut seen4 = std::collections::HashSet::new();
        for e in self.subscribers_v4.iter().rev() {
            if seen4.insert((e.key, e.len)) {
                per_class[usize::from(e.value - 1)].0 += 1;
            }
        }
        let mut seen6 = std::collections::HashSet::new();
        for e in self.subscribers_v6.iter().rev() {
            if seen6.insert((e.key, e.len)) {
                per_class[usize::from(e.value - 1)].1 += 1;
            }
        }
        let summary = PolicySummary {
            prefixes_per_class: per_class,
            allowed_v4: allowed_v4.len(),
            allowed_v6: allowed_v6.len(),
            table_bytes: subscribers_v4.memory_bytes()
                + subscribers_v6.memory_bytes()
                + allowed_v4.memory_bytes()
                + allowed_v6.memory_bytes(),
        };
        Ok(Policy {
            classes: self.classes.clone().into_boxed_slice(),
            subscribers_v4,
            subscribers_v6,
            allowed_v4,
            allowed_v6,
            unmatched: self.unmatched,
            fragments: self.fragments,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Inbound, Outbound};

    /// The policy most tests here use: a dynamic pool with a static customer inside, a
    /// quarantine pool, one relay per family, the dynamic class's action as given. Not
    /// the lab's policy (that one has one source, `configs/lab.yaml`, which the core may
    /// not read): it has no ICMP class (192.0.2.0/25 is unmatched here) and its IPv6
    /// static customer is a /64 (2001:db8:100:200::/64), so the tests also cover a
    /// static /64 inside a dynamic /48.
    fn three_class_policy(action: BlockAction) -> Policy {
        let mut b = PolicyBuilder::new();
        let dynamic = b.class("dynamic", [25], action, true).unwrap();
        let fixed = b.class("static", [], BlockAction::Drop, false).unwrap();
        let quarantine = b
            .class("quarantine", [25, 465, 587], BlockAction::Drop, true)
            .unwrap();
        b.subscriber("198.51.100.0/24".parse().unwrap(), dynamic)
            .subscriber("198.51.100.200/32".parse().unwrap(), fixed)
            .subscriber("198.51.100.128/28".parse().unwrap(), quarantine)
            .subscriber("2001:db8:100::/48".parse().unwrap(), dynamic)
            .subscriber("2001:db8:100:200::/64".parse().unwrap(), fixed)
            .subscriber("2001:db8:100:666::/64".parse().unwrap(), quarantine)
            .allow("203.0.113.25/32".parse().unwrap())
            .allow("2001:db8:ff::25/128".parse().unwrap());
        b.build().unwrap()
    }

    #[test]
    fn userspace_ports_cover_every_port_a_policy_blocks() {
        let p = three_class_policy(BlockAction::Drop);
        let out: Vec<u16> = p.userspace_ports(Direction::Outbound).iter().collect();
        assert_eq!(out, [25, 465, 587]);
        let inb: Vec<u16> = p.userspace_ports(Direction::Inbound).iter().collect();
        assert_eq!(inb, [25]);
        let mut b = PolicyBuilder::new();
        b.class("open", [], BlockAction::Drop, false).unwrap();
        let none = b.build().unwrap();
        assert!(none.userspace_ports(Direction::Outbound).is_empty());
        assert!(none.userspace_ports(Direction::Inbound).is_empty());
        // The oracle: a whole TCP segment to a port outside the set is forwarded from and
        // to every kind of address the lab policy knows.
        let addrs4 = [
            "198.51.100.10",
            "198.51.100.200",
            "198.51.100.130",
            "192.0.2.200",
        ];
        let dsts4 = ["203.0.113.25", "203.0.113.80"];
        for dir in [Direction::Outbound, Direction::Inbound] {
            let set = p.userspace_ports(dir);
            for port in (0..=u16::MAX).filter(|port| !set.contains(*port)) {
                for a in addrs4 {
                    for d in dsts4 {
                        let (src, dst) = match dir {
                            Direction::Outbound => (a, d),
                            Direction::Inbound => (d, a),
                        };
                        let v = p
                            .decide(dir, src.parse().unwrap(), dst.parse().unwrap(), tcp(port))
                            .verdict;
                        assert!(!v.is_blocked(), "{dir:?} {src}->{dst}:{port}: {v}");
                    }
                }
            }
        }
        let u = PortSet::from_iter([1, 2]).union(&PortSet::from_iter([2, 3]));
        assert_eq!(u.iter().collect::<Vec<_>>(), [1, 2, 3]);
    }

    struct Case {
        what: &'static str,
        dir: Direction,
        src: &'static str,
        dst: &'static str,
        seg: Segment,
        want: Verdict,
    }

    fn tcp(port: u16) -> Segment {
        Segment::tcp(port)
    }

    fn udp(port: u16) -> Segment {
        Segment {
            protocol: 17,
            dst_port: Some(port),
            fragment: Fragment::Whole,
        }
    }

    const RST: ReplyKind = ReplyKind::TcpReset;

    fn cases() -> Vec<Case> {
        use Reason::*;
        use Verdict::*;
        let c = |what, dir, src, dst, seg, want| Case {
            what,
            dir,
            src,
            dst,
            seg,
            want,
        };
        vec![
            c(
                "dynamic -> external:25 blocked",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                tcp(25),
                Reject(BlockedPort, RST),
            ),
            c(
                "dynamic -> relay:25 allowed",
                Outbound,
                "198.51.100.7",
                "203.0.113.25",
                tcp(25),
                Forward(AllowedDestination),
            ),
            c(
                "dynamic -> external:587 open",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                tcp(587),
                Forward(PortOpen),
            ),
            c(
                "dynamic -> external:465 open",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                tcp(465),
                Forward(PortOpen),
            ),
            c(
                "static /32 inside dynamic pool exempt",
                Outbound,
                "198.51.100.200",
                "203.0.113.80",
                tcp(25),
                Forward(PortOpen),
            ),
            c(
                "quarantine blocks 25",
                Outbound,
                "198.51.100.130",
                "203.0.113.80",
                tcp(25),
                Drop(BlockedPort),
            ),
            c(
                "quarantine blocks 465",
                Outbound,
                "198.51.100.130",
                "203.0.113.80",
                tcp(465),
                Drop(BlockedPort),
            ),
            c(
                "quarantine blocks 587",
                Outbound,
                "198.51.100.130",
                "203.0.113.80",
                tcp(587),
                Drop(BlockedPort),
            ),
            c(
                "quarantine -> relay:587 allowed",
                Outbound,
                "198.51.100.130",
                "203.0.113.25",
                tcp(587),
                Forward(AllowedDestination),
            ),
            c(
                "unmatched source forwarded",
                Outbound,
                "192.0.2.9",
                "203.0.113.80",
                tcp(25),
                Forward(Unmatched),
            ),
            c(
                "UDP/25 forwarded",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                udp(25),
                Forward(NotTcp),
            ),
            c(
                "inbound to dynamic:25 blocked (IP25B)",
                Inbound,
                "203.0.113.80",
                "198.51.100.7",
                tcp(25),
                Drop(InboundSmtp),
            ),
            c(
                "inbound to dynamic:587 open",
                Inbound,
                "203.0.113.80",
                "198.51.100.7",
                tcp(587),
                Forward(PortOpen),
            ),
            c(
                "inbound to static:25 open",
                Inbound,
                "203.0.113.80",
                "198.51.100.200",
                tcp(25),
                Forward(PortOpen),
            ),
            c(
                "inbound return traffic from :25 open",
                Inbound,
                "203.0.113.80",
                "198.51.100.7",
                tcp(40000),
                Forward(PortOpen),
            ),
            c(
                "v6 dynamic -> external:25 blocked",
                Outbound,
                "2001:db8:100::7",
                "2001:db8:ff::80",
                tcp(25),
                Reject(BlockedPort, RST),
            ),
            c(
                "v6 dynamic -> relay:25 allowed",
                Outbound,
                "2001:db8:100::7",
                "2001:db8:ff::25",
                tcp(25),
                Forward(AllowedDestination),
            ),
            c(
                "v6 dynamic -> external:587 open",
                Outbound,
                "2001:db8:100::7",
                "2001:db8:ff::80",
                tcp(587),
                Forward(PortOpen),
            ),
            c(
                "v6 dynamic -> external:465 open",
                Outbound,
                "2001:db8:100::7",
                "2001:db8:ff::80",
                tcp(465),
                Forward(PortOpen),
            ),
            c(
                "v6 static /64 inside dynamic /48 exempt",
                Outbound,
                "2001:db8:100:200::9",
                "2001:db8:ff::80",
                tcp(25),
                Forward(PortOpen),
            ),
            c(
                "v6 quarantine blocks 587",
                Outbound,
                "2001:db8:100:666::9",
                "2001:db8:ff::80",
                tcp(587),
                Drop(BlockedPort),
            ),
            c(
                "v6 quarantine blocks 465",
                Outbound,
                "2001:db8:100:666::9",
                "2001:db8:ff::80",
                tcp(465),
                Drop(BlockedPort),
            ),
            c(
                "v6 unmatched source forwarded",
                Outbound,
                "2001:db8:999::1",
                "2001:db8:ff::80",
                tcp(25),
                Forward(Unmatched),
            ),
            c(
                "v6 UDP/25 forwarded",
                Outbound,
                "2001:db8:100::7",
                "2001:db8:ff::80",
                udp(25),
                Forward(NotTcp),
            ),
            c(
                "v6 inbound to dynamic:25 blocked",
                Inbound,
                "2001:db8:ff::80",
                "2001:db8:100::7",
                tcp(25),
                Drop(InboundSmtp),
            ),
            c(
                "later fragment forwarded",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                Segment {
                    protocol: 6,
                    dst_port: None,
                    fragment: Fragment::Later,
                },
                Forward(NonFirstFragment),
            ),
            c(
                "tiny first fragment dropped",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                Segment {
                    protocol: 6,
                    dst_port: None,
                    fragment: Fragment::First,
                },
                Drop(TinyFragment),
            ),
            c(
                "tiny first fragment from static forwarded",
                Outbound,
                "198.51.100.200",
                "203.0.113.80",
                Segment {
                    protocol: 6,
                    dst_port: None,
                    fragment: Fragment::First,
                },
                Forward(TinyFragment),
            ),
            c(
                "first fragment with port judged",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                Segment {
                    protocol: 6,
                    dst_port: Some(25),
                    fragment: Fragment::First,
                },
                Reject(BlockedPort, RST),
            ),
            c(
                "truncated TCP from blocking source dropped",
                Outbound,
                "198.51.100.7",
                "203.0.113.80",
                Segment {
                    protocol: 6,
                    dst_port: None,
                    fragment: Fragment::Whole,
                },
                Drop(MalformedTcp),
            ),
            c(
                "truncated TCP from static forwarded",
                Outbound,
                "198.51.100.200",
                "203.0.113.80",
                Segment {
                    protocol: 6,
                    dst_port: None,
                    fragment: Fragment::Whole,
                },
                Forward(MalformedTcp),
            ),
        ]
    }

    #[test]
    fn verdict_table() {
        let p = three_class_policy(BlockAction::Reject(ReplyKind::TcpReset));
        for c in cases() {
            let got = p.decide(c.dir, c.src.parse().unwrap(), c.dst.parse().unwrap(), c.seg);
            assert_eq!(got.verdict, c.want, "{}", c.what);
        }
    }

    #[test]
    fn drop_class_drops_instead_of_rejecting() {
        let p = three_class_policy(BlockAction::Drop);
        let d = p.decide(
            Outbound,
            "198.51.100.7".parse().unwrap(),
            "203.0.113.80".parse().unwrap(),
            tcp(25),
        );
        assert_eq!(d.verdict, Verdict::Drop(Reason::BlockedPort));
        assert_eq!(d.class, Some(0));
    }

    #[test]
    fn unmatched_class_applies_to_unknown_sources() {
        let mut b = PolicyBuilder::new();
        let q = b
            .class("quarantine", [25], BlockAction::Drop, false)
            .unwrap();
        b.unmatched(Some(q));
        let p = b.build().unwrap();
        let d = p.decide(
            Outbound,
            "192.0.2.1".parse().unwrap(),
            "203.0.113.80".parse().unwrap(),
            tcp(25),
        );
        assert_eq!(d.verdict, Verdict::Drop(Reason::BlockedPort));
    }

    #[test]
    fn fragment_policy_is_configurable() {
        let mut b = PolicyBuilder::new();
        let d = b.class("dynamic", [25], BlockAction::Drop, false).unwrap();
        b.subscriber("198.51.100.0/24".parse().unwrap(), d)
            .fragments(FragmentPolicy {
                drop_tiny_first: false,
                drop_non_first: true,
            });
        let p = b.build().unwrap();
        let src = "198.51.100.1".parse().unwrap();
        let dst = "203.0.113.1".parse().unwrap();
        let later = Segment {
            protocol: 6,
            dst_port: None,
            fragment: Fragment::Later,
        };
        let tiny = Segment {
            protocol: 6,
            dst_port: None,
            fragment: Fragment::First,
        };
        assert_eq!(
            p.decide(Outbound, src, dst, later).verdict,
            Verdict::Drop(Reason::NonFirstFragment)
        );
        assert_eq!(
            p.decide(Outbound, src, dst, tiny).verdict,
            Verdict::Forward(Reason::TinyFragment)
        );
    }

    #[test]
    fn builder_errors() {
        let mut b = PolicyBuilder::new();
        b.class("a", [25], BlockAction::Drop, false).unwrap();
        assert_eq!(
            b.class("a", [25], BlockAction::Drop, false).unwrap_err(),
            PolicyError::DuplicateClass("a".into())
        );
        b.subscriber("192.0.2.0/24".parse().unwrap(), 7);
        assert_eq!(b.build().unwrap_err(), PolicyError::UnknownClass(7));
    }

    #[test]
    fn summary_counts_prefixes_per_class() {
        let p = three_class_policy(BlockAction::Drop);
        assert_eq!(p.summary().prefixes_per_class, vec![(1, 1), (1, 1), (1, 1)]);
        assert_eq!((p.summary().allowed_v4, p.summary().allowed_v6), (1, 1));
    }

    #[test]
    fn reasons_index_densely() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
