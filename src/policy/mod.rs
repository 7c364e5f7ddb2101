//! The compiled, immutable OP25B policy and the verdict semantics.
//!
//! [`PolicyBuilder`] turns classes, subscriber prefixes and allowed destinations into a
//! [`Policy`]: LPM tables plus per-class port bitmaps. [`Policy::decide`] is the pure
//! verdict function of (direction, source, destination, protocol, destination port,
//! fragment state). Nothing here knows YAML exists; see `config` for that.
#![forbid(unsafe_code)]

pub mod builder;
pub mod overlay;
pub mod ports;
pub mod verdict;

pub use builder::PolicyBuilder;
pub use ports::PortSet;
pub use verdict::{
    Action, BlockAction, Decision, Direction, Fragment, FragmentPolicy, Reason, ReplyKind, Segment,
    Verdict,
};

use std::fmt;
use std::net::IpAddr;

use crate::lpm::{self, HostSplitTable, Ipv4Table, PrefixSet, NO_MATCH};

/// The IPv6 subscriber table size from which a burst's lookups are made together (see
/// [`Policy::batch_v6_lookups`]): half a typical server core's L2 cache. The benchmark
/// policies: 100k prefixes take 4.4 MiB, the fixtures' handful a few hundred KiB of
/// direct array that lookups of one /16 keep in a few cache lines.
pub const V6_BATCH_MIN_BYTES: usize = 512 << 10;

/// Index of a class in [`Policy::classes`].
pub type ClassId = u8;

/// The most classes a policy can hold (class ids fit in a `u8`).
pub const MAX_CLASSES: usize = 255;

/// Slots of the per-class counters (blocked by class, `/top`). A class keeps its slot,
/// by name, for the life of the process whatever reloads do to its [`ClassId`] (ids
/// follow the sorted names, so adding "aaa" shifts every id): the control plane assigns
/// them ([`Policy::set_counter_slots`]) before a policy is published.
pub const COUNTER_SLOTS: usize = 1024;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// The SMTP port that inbound blocking (IP25B) applies to.
pub const SMTP_PORT: u16 = 25;

/// A subscriber class.
#[derive(Clone, Debug)]
pub struct Class {
    pub name: String,
    /// Destination TCP ports blocked outbound.
    pub blocked_ports: PortSet,
    pub action: BlockAction,
    /// Block inbound TCP/25 towards this class (IP25B).
    pub block_inbound_smtp: bool,
    /// `reply: smtp-notice`: the whole SMTP reply (`554-5.7.1 ...\r\n ... 554 5.7.1
    /// ...\r\n`) the notice sends.
    pub notice: Option<Box<[u8]>>,
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

/// The prefixes a policy was built from, in the order given (for the same prefix given
/// twice the last one wins): what the XDP program's tables are compiled from
/// (`datapath::kernel`), so the kernel and the workers judge by one list.
#[derive(Clone, Debug, Default)]
pub struct PolicyEntries {
    /// Subscriber prefixes; `value` is class id + 1.
    pub subscribers_v4: Box<[lpm::PrefixEntry<u32>]>,
    pub subscribers_v6: Box<[lpm::PrefixEntry<u128>]>,
    /// Allowed destinations (`value` 1).
    pub allowed_v4: Box<[lpm::PrefixEntry<u32>]>,
    pub allowed_v6: Box<[lpm::PrefixEntry<u128>]>,
}

/// The compiled, immutable policy. Cheap to read from many threads at once.
pub struct Policy {
    entries: PolicyEntries,
    classes: Box<[Class]>,
    subscribers_v4: Ipv4Table,
    subscribers_v6: HostSplitTable<u128>,
    allowed_v4: PrefixSet<u32>,
    allowed_v6: PrefixSet<u128>,
    unmatched: Option<ClassId>,
    fragments: FragmentPolicy,
    summary: PolicySummary,
    /// Per class id, its counter slot (< [`COUNTER_SLOTS`]); set once, before publishing.
    counter_slots: std::sync::OnceLock<Box<[u16]>>,
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

    /// The prefixes the tables were built from.
    pub fn entries(&self) -> &PolicyEntries {
        &self.entries
    }

    /// The classes, indexed by [`ClassId`].
    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// The counter slot of class `id` ([`COUNTER_SLOTS`]): the one
    /// [`Policy::set_counter_slots`] gave it, else the id itself.
    #[inline]
    pub fn counter_slot(&self, id: ClassId) -> usize {
        self.counter_slots
            .get()
            .and_then(|s| s.get(usize::from(id)))
            .map_or(usize::from(id), |&s| usize::from(s))
    }

    /// Sets the counter slot of each class id, once (false when already set, or when
    /// `slots` does not have one slot below [`COUNTER_SLOTS`] per class).
    pub fn set_counter_slots(&self, slots: Box<[u16]>) -> bool {
        slots.len() == self.classes.len()
            && slots.iter().all(|&s| usize::from(s) < COUNTER_SLOTS)
            && self.counter_slots.set(slots).is_ok()
    }

    /// The SMTP notice text of class `id`, if it has one.
    #[inline]
    pub fn notice(&self, id: ClassId) -> Option<&[u8]> {
        self.classes.get(usize::from(id))?.notice.as_deref()
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
    #[inline(always)]
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
    #[inline(always)]
    pub fn class_of_v6_len(&self, addr: u128) -> (Option<ClassId>, u8) {
        self.v6_class_len(self.subscribers_v6.lookup(addr))
    }

    /// The IPv6 subscriber table's raw values for `addrs` (into `out`, as
    /// [`HostSplitTable::lookup_batch`]), for [`Policy::decide_v6_by`]: a burst's
    /// addresses looked up together.
    #[inline]
    pub fn subscriber_values_v6(&self, addrs: &[u128], out: &mut [u16]) {
        self.subscribers_v6.lookup_batch(addrs, out);
    }

    /// Whether a burst's IPv6 subscriber lookups are worth making together
    /// ([`Policy::subscriber_values_v6`]): only when the table is bigger than
    /// [`V6_BATCH_MIN_BYTES`], so that its walks miss the caches; a smaller one answers
    /// from L1/L2 and the extra pass would cost more than it hides.
    #[inline]
    pub fn batch_v6_lookups(&self) -> bool {
        self.subscribers_v6.memory_bytes() > V6_BATCH_MIN_BYTES
    }

    /// The IPv6 subscriber table's raw value for `addr` (see
    /// [`Policy::subscriber_values_v6`]).
    #[inline(always)]
    pub fn subscriber_value_v6(&self, addr: u128) -> u16 {
        self.subscribers_v6.lookup(addr)
    }

    /// A raw IPv6 table value as (class, length of the file prefix).
    #[inline(always)]
    fn v6_class_len(&self, v: u16) -> (Option<ClassId>, u8) {
        (self.table_class(v & 0xff), (v >> 8) as u8)
    }

    /// The class of an IPv4 subscriber address with the runtime overlay: an overlay
    /// entry (a /32) is always the most specific match.
    #[inline(always)]
    pub fn class_of_v4_with(
        &self,
        addr: u32,
        overlay: &impl overlay::OverlayView,
    ) -> Option<ClassId> {
        match overlay.v4(addr) {
            Some(c) if usize::from(c) < self.classes.len() => Some(c),
            _ => self.class_of_v4(addr),
        }
    }

    /// The class of an IPv6 subscriber address with the runtime overlay: the longer of
    /// the overlay's and the file's matches wins; on a tie, the overlay.
    #[inline(always)]
    pub fn class_of_v6_with(
        &self,
        addr: u128,
        overlay: &impl overlay::OverlayView,
    ) -> Option<ClassId> {
        self.class_of_v6_value_with(addr, self.subscriber_value_v6(addr), overlay)
    }

    /// [`Policy::class_of_v6_with`] given the table's raw value for `addr`.
    #[inline(always)]
    fn class_of_v6_value_with(
        &self,
        addr: u128,
        value: u16,
        overlay: &impl overlay::OverlayView,
    ) -> Option<ClassId> {
        let (file, file_len) = self.v6_class_len(value);
        match overlay.v6(addr) {
            Some((c, len)) if len >= file_len && usize::from(c) < self.classes.len() => Some(c),
            _ => file,
        }
    }

    #[inline(always)]
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
        self.decide_v4_with(direction, src, dst, seg, &overlay::NoOverlay)
    }

    /// [`Policy::decide_v4`] with the runtime overlay.
    #[inline(always)]
    pub fn decide_v4_with(
        &self,
        direction: Direction,
        src: u32,
        dst: u32,
        seg: Segment,
        overlay: &impl overlay::OverlayView,
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
        self.decide_v6_with(direction, src, dst, seg, &overlay::NoOverlay)
    }

    /// [`Policy::decide_v6`] with the runtime overlay.
    #[inline(always)]
    pub fn decide_v6_with(
        &self,
        direction: Direction,
        src: u128,
        dst: u128,
        seg: Segment,
        overlay: &impl overlay::OverlayView,
    ) -> Decision {
        self.decide_v6_by(direction, src, dst, seg, overlay, |a| {
            self.subscriber_value_v6(a)
        })
    }

    /// [`Policy::decide_v6_with`] with the subscriber table's lookup handed in:
    /// `file_value(addr)` must give [`Policy::subscriber_value_v6`] of `addr` (the
    /// burst classifier passes values it looked up for the whole burst at once).
    #[inline(always)]
    pub fn decide_v6_by(
        &self,
        direction: Direction,
        src: u128,
        dst: u128,
        seg: Segment,
        overlay: &impl overlay::OverlayView,
        file_value: impl FnOnce(u128) -> u16,
    ) -> Decision {
        let Some(subscriber) = Self::v6_subscriber_key(direction, src, dst, seg) else {
            return Decision::new(Verdict::Forward(Reason::NotTcp), None);
        };
        self.decide_tcp(
            direction,
            self.class_of_v6_value_with(subscriber, file_value(subscriber), overlay),
            seg,
            || self.allowed_v6.contains(dst),
        )
    }

    /// The IPv6 address [`Policy::decide_v6_by`] looks up in the subscriber table for a
    /// packet (the subscriber side's), if it looks one up (TCP only: anything else is
    /// forwarded without a lookup).
    #[inline(always)]
    pub fn v6_subscriber_key(
        direction: Direction,
        src: u128,
        dst: u128,
        seg: Segment,
    ) -> Option<u128> {
        if seg.protocol != IPPROTO_TCP {
            return None;
        }
        Some(match direction {
            Direction::Outbound => src,
            Direction::Inbound => dst,
        })
    }

    /// The TCP part of the verdict, once the subscriber-side class is known.
    #[inline(always)]
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

    #[rustfmt::skip]
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
            c("dynamic -> external:25 blocked", Outbound, "198.51.100.7", "203.0.113.80", tcp(25), Reject(BlockedPort, RST)),
            c("dynamic -> relay:25 allowed", Outbound, "198.51.100.7", "203.0.113.25", tcp(25), Forward(AllowedDestination)),
            c("dynamic -> external:587 open", Outbound, "198.51.100.7", "203.0.113.80", tcp(587), Forward(PortOpen)),
            c("dynamic -> external:465 open", Outbound, "198.51.100.7", "203.0.113.80", tcp(465), Forward(PortOpen)),
            c("static /32 inside dynamic pool exempt", Outbound, "198.51.100.200", "203.0.113.80", tcp(25), Forward(PortOpen)),
            c("quarantine blocks 25", Outbound, "198.51.100.130", "203.0.113.80", tcp(25), Drop(BlockedPort)),
            c("quarantine blocks 465", Outbound, "198.51.100.130", "203.0.113.80", tcp(465), Drop(BlockedPort)),
            c("quarantine blocks 587", Outbound, "198.51.100.130", "203.0.113.80", tcp(587), Drop(BlockedPort)),
            c("quarantine -> relay:587 allowed", Outbound, "198.51.100.130", "203.0.113.25", tcp(587), Forward(AllowedDestination)),
            c("unmatched source forwarded", Outbound, "192.0.2.9", "203.0.113.80", tcp(25), Forward(Unmatched)),
            c("UDP/25 forwarded", Outbound, "198.51.100.7", "203.0.113.80", udp(25), Forward(NotTcp)),
            c("inbound to dynamic:25 blocked (IP25B)", Inbound, "203.0.113.80", "198.51.100.7", tcp(25), Drop(InboundSmtp)),
            c("inbound to dynamic:587 open", Inbound, "203.0.113.80", "198.51.100.7", tcp(587), Forward(PortOpen)),
            c("inbound to static:25 open", Inbound, "203.0.113.80", "198.51.100.200", tcp(25), Forward(PortOpen)),
            c("inbound return traffic from :25 open", Inbound, "203.0.113.80", "198.51.100.7", tcp(40000), Forward(PortOpen)),
            c("v6 dynamic -> external:25 blocked", Outbound, "2001:db8:100::7", "2001:db8:ff::80", tcp(25), Reject(BlockedPort, RST)),
            c("v6 dynamic -> relay:25 allowed", Outbound, "2001:db8:100::7", "2001:db8:ff::25", tcp(25), Forward(AllowedDestination)),
            c("v6 dynamic -> external:587 open", Outbound, "2001:db8:100::7", "2001:db8:ff::80", tcp(587), Forward(PortOpen)),
            c("v6 dynamic -> external:465 open", Outbound, "2001:db8:100::7", "2001:db8:ff::80", tcp(465), Forward(PortOpen)),
            c("v6 static /64 inside dynamic /48 exempt", Outbound, "2001:db8:100:200::9", "2001:db8:ff::80", tcp(25), Forward(PortOpen)),
            c("v6 quarantine blocks 587", Outbound, "2001:db8:100:666::9", "2001:db8:ff::80", tcp(587), Drop(BlockedPort)),
            c("v6 quarantine blocks 465", Outbound, "2001:db8:100:666::9", "2001:db8:ff::80", tcp(465), Drop(BlockedPort)),
            c("v6 unmatched source forwarded", Outbound, "2001:db8:999::1", "2001:db8:ff::80", tcp(25), Forward(Unmatched)),
            c("v6 UDP/25 forwarded", Outbound, "2001:db8:100::7", "2001:db8:ff::80", udp(25), Forward(NotTcp)),
            c("v6 inbound to dynamic:25 blocked", Inbound, "2001:db8:ff::80", "2001:db8:100::7", tcp(25), Drop(InboundSmtp)),
            c("later fragment forwarded", Outbound, "198.51.100.7", "203.0.113.80", Segment { protocol: 6, dst_port: None, fragment: Fragment::Later, }, Forward(NonFirstFragment)),
            c("tiny first fragment dropped", Outbound, "198.51.100.7", "203.0.113.80", Segment { protocol: 6, dst_port: None, fragment: Fragment::First, }, Drop(TinyFragment)),
            c("tiny first fragment from static forwarded", Outbound, "198.51.100.200", "203.0.113.80", Segment { protocol: 6, dst_port: None, fragment: Fragment::First, }, Forward(TinyFragment)),
            c("first fragment with port judged", Outbound, "198.51.100.7", "203.0.113.80", Segment { protocol: 6, dst_port: Some(25), fragment: Fragment::First, }, Reject(BlockedPort, RST)),
            c("truncated TCP from blocking source dropped", Outbound, "198.51.100.7", "203.0.113.80", Segment { protocol: 6, dst_port: None, fragment: Fragment::Whole, }, Drop(MalformedTcp)),
            c("truncated TCP from static forwarded", Outbound, "198.51.100.200", "203.0.113.80", Segment { protocol: 6, dst_port: None, fragment: Fragment::Whole, }, Forward(MalformedTcp)),
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
