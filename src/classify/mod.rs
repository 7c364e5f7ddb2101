//! Raw Ethernet frame -> [`Classified`]: the pure, zero-copy classifier.
//!
//! [`parse`] reads the link layer by hand (Ethernet II, up to four 802.1Q/802.1ad/0x9100
//! tags, PPPoE session with a two-byte or compressed PPP protocol field) and the IP layer with etherparse's borrowed header slices, checking
//! each length once before reading. [`classify`] hands the result to
//! [`Policy`]'s verdict function. Nothing allocates, nothing panics on any input, and
//! nothing points into the frame after the call returns.
//!
//! Odd frames are decided on purpose (each has a golden fixture in the test kit, `op25b_testkit::fixtures`):
//! * non-IP (ARP, LLDP, STP, MPLS, PBB, PPPoE discovery, other PPP protocols): forward
//!   untouched, counted by kind ([`non_ip_kind`]); a PPPoE session frame with a
//!   compressed PPP protocol field (RFC 1661 PFC, `0x21`/`0x57`) is IP and judged as such;
//! * runts and cut-short link headers: forward, counted as `malformed_link`;
//! * IP fragments: the first fragment is judged by its TCP ports like a whole segment; a
//!   first fragment too short for the destination port, and later fragments, follow the
//!   policy's fragment rules (defaults: drop tiny first fragments, forward later ones);
//! * IPv6 extension chains (hop-by-hop, routing, destination options, fragment, AH, and
//!   the generic-format Mobility, HIP, Shim6 and experimental headers, RFC 6564) are
//!   walked to the end whatever their length: each header is at least 8 bytes, so the
//!   walk is bounded by the frame and a long chain cannot hide the TCP header.
//!
//! **The rule for what cannot be read: nothing unreadable becomes a way around the
//! policy.** Every exit of the parser that gives up on a header is one of these, and a
//! test fixture shows each:
//! * no readable addresses (an IPv4 header under 20 bytes or of another version, an
//!   IPv6 header under 40 bytes): `malformed_ip`, forwarded. Nothing can be judged, and
//!   no receiving stack can take a packet from it either;
//! * IPv4 whose header is inconsistent (IHL under 5, options or total length past the
//!   frame): judged by its protocol field, which reassembly also keys on (a fragment
//!   of another protocol never joins a TCP datagram): TCP is `malformed_tcp`, dropped
//!   when the source's class blocks anything; other protocols `malformed_ip`, forwarded;
//! * IPv6 whose extension chain cannot be followed to its upper protocol (a header
//!   running past the payload or the frame, hop-by-hop not first, a second fragment
//!   header): judged as **TCP without a port**, since TCP may follow: `malformed_tcp` for
//!   a whole packet, and for a first fragment (offset 0, M=1) the tiny-first-fragment
//!   rule (`fragments.tiny_first`, `tiny_fragment`). So a first fragment whose chain
//!   ends in a later fragment (RFC 7112) cannot carry a SYN to port 25 past the block;
//! * IPv6 cut short of its payload length: walked as far as the frame goes; a known
//!   upper protocol other than TCP is `malformed_ip` (forwarded), TCP or an unreadable
//!   chain as above;
//! * a later IPv6 fragment is judged as TCP under the fragment rules whatever its Next
//!   Header says: reassembly takes the first fragment's (RFC 8200 4.5);
//! * TCP whose header is cut short or has a data offset under 5: `malformed_tcp`; in a
//!   first fragment, a missing destination port is `tiny_fragment`.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod notice;
pub mod reply;

use std::net::IpAddr;

use etherparse::{
    IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice,
};

use crate::policy::{ClassId, Direction, Fragment, Policy, Reason, Segment, Verdict, IPPROTO_TCP};

/// EtherType values the classifier knows.
pub mod ether_type {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const PPPOE_SESSION: u16 = 0x8864;
    pub const PPPOE_DISCOVERY: u16 = 0x8863;
    pub const ARP: u16 = 0x0806;
    pub const MPLS_UNICAST: u16 = 0x8847;
    pub const MPLS_MULTICAST: u16 = 0x8848;
    /// 802.1ah provider backbone bridging (MAC-in-MAC).
    pub const PBB: u16 = 0x88e7;
    /// Below this the field is an 802.3 length (LLC/SNAP follows), not an EtherType.
    pub const MIN_ETHER_TYPE: u16 = 0x0600;
}

/// PPP protocol numbers inside PPPoE session frames.
pub const PPP_IPV4: u16 = 0x0021;
/// PPP protocol number of IPv6.
pub const PPP_IPV6: u16 = 0x0057;

/// Most VLAN tags walked before giving up (802.1Q, QinQ, and a margin).
pub const MAX_VLAN_TAGS: usize = 4;

/// Header sizes and field offsets (each fact once; etherparse's names where it has them).
pub mod wire {
    use etherparse::ip_number;

    /// Ethernet header: two MACs and the EtherType.
    pub const ETH_HEADER: usize = 14;
    /// Where the EtherType sits in the Ethernet header.
    pub const ETH_TYPE_AT: usize = 12;
    /// An 802.1Q / 802.1ad tag: TCI and the next EtherType.
    pub const VLAN_TAG: usize = 4;
    /// PPPoE session header (RFC 2516) plus the PPP protocol field.
    pub const PPPOE_HEADER: usize = 8;
    /// PPPoE version 1, type 1 (the first byte of its header).
    pub const PPPOE_VER_TYPE: u8 = 0x11;
    /// IPv4 header without options.
    pub const IPV4_HEADER: usize = 20;
    /// IPv4 protocol, source and destination offsets.
    pub const IPV4_PROTOCOL_AT: usize = 9;
    pub const IPV4_SRC_AT: usize = 12;
    pub const IPV4_DST_AT: usize = 16;
    /// IPv6 fixed header.
    pub const IPV6_HEADER: usize = 40;
    /// TCP header without options; destination port and data offset positions.
    pub const TCP_HEADER: usize = 20;
    pub const TCP_DST_PORT_AT: usize = 2;
    pub const TCP_DATA_OFFSET_AT: usize = 12;
    /// IPv6 extension headers the classifier walks (RFC 8200 4.1), as `u8` patterns.
    pub const IPV6_HOP_BY_HOP: u8 = ip_number::IPV6_HOP_BY_HOP.0;
    pub const IPV6_ROUTING: u8 = ip_number::IPV6_ROUTE.0;
    pub const IPV6_FRAGMENT: u8 = ip_number::IPV6_FRAG.0;
    pub const IPV6_AUTH: u8 = ip_number::AUTH.0;
    pub const IPV6_DEST_OPTIONS: u8 = ip_number::IPV6_DEST_OPTIONS.0;
    /// Extension headers in the generic format (RFC 6564) that carry no rule of their
    /// own here: Mobility (RFC 6275), HIP (RFC 7401), Shim6 (RFC 5533), experimental.
    pub const IPV6_MOBILITY: u8 = ip_number::MOBILITY.0;
    pub const IPV6_HIP: u8 = ip_number::HIP.0;
    pub const IPV6_SHIM6: u8 = ip_number::SHIM6.0;
    pub const IPV6_EXPERIMENT_1: u8 = ip_number::EXPERIMENTAL_AND_TESTING_0.0;
    pub const IPV6_EXPERIMENT_2: u8 = ip_number::EXPERIMENTAL_AND_TESTING_1.0;
}

use wire::{
    ETH_HEADER, ETH_TYPE_AT, IPV4_DST_AT, IPV4_HEADER, IPV4_PROTOCOL_AT, IPV4_SRC_AT, IPV6_AUTH,
    IPV6_DEST_OPTIONS, IPV6_EXPERIMENT_1, IPV6_EXPERIMENT_2, IPV6_FRAGMENT, IPV6_HEADER, IPV6_HIP,
    IPV6_HOP_BY_HOP, IPV6_MOBILITY, IPV6_ROUTING, IPV6_SHIM6, PPPOE_HEADER, PPPOE_VER_TYPE,
    TCP_DATA_OFFSET_AT, TCP_DST_PORT_AT, VLAN_TAG,
};

/// Addresses of an IP packet, host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addrs {
    V4 { src: u32, dst: u32 },
    V6 { src: u128, dst: u128 },
}

impl Addrs {
    /// Source address.
    pub fn src(&self) -> IpAddr {
        match *self {
            Addrs::V4 { src, .. } => IpAddr::V4(src.into()),
            Addrs::V6 { src, .. } => IpAddr::V6(src.into()),
        }
    }
    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match *self {
            Addrs::V4 { dst, .. } => IpAddr::V4(dst.into()),
            Addrs::V6 { dst, .. } => IpAddr::V6(dst.into()),
        }
    }
}

/// The link layer as found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// VLAN ids, outermost first (the first two tags).
    pub vlans: [Option<u16>; 2],
    /// Number of VLAN tags walked.
    pub tags: u8,
    /// PPPoE session id, for PPPoE session frames.
    pub pppoe_session: Option<u16>,
    /// Offset of the IP header (or of whatever follows the link headers).
    pub l3_offset: usize,
    /// The innermost EtherType (or the PPP protocol for PPPoE).
    pub ether_type: u16,
    /// A PPPoE session frame whose PPP protocol field is compressed (RFC 1661 6.5, PFC:
    /// one odd byte): the IP header starts one byte earlier than after a two-byte field.
    pub ppp_compressed: bool,
}

/// What a frame that is not IPv4/IPv6 carries, for the non-IP counters (read from the
/// [`Link`] the parse already made: [`non_ip_kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonIpKind {
    Arp,
    /// MPLS unicast or multicast (0x8847/0x8848): IP inside labels, never judged.
    Mpls,
    /// 802.1ah provider backbone bridging (0x88e7): a whole Ethernet frame inside.
    Pbb,
    /// 802.3 length-field frames (EtherType below 0x0600): LLC/SNAP, STP.
    Llc,
    /// PPPoE discovery, and PPPoE session frames with a PPP control protocol (LCP,
    /// IPCP, ...): normal on a PPPoE link.
    PppoeControl,
    /// PPPoE session frames with a compressed PPP protocol field that is neither IPv4
    /// nor IPv6 (compressed IPv4/IPv6 is judged as IP).
    PppoeCompressed,
    /// Everything else: LLDP, other EtherTypes, a third VLAN tag or more, a PPPoE header
    /// that is not session data.
    Other,
}

impl NonIpKind {
    pub const COUNT: usize = 7;
    pub const ALL: [NonIpKind; Self::COUNT] = [
        NonIpKind::Arp,
        NonIpKind::Mpls,
        NonIpKind::Pbb,
        NonIpKind::Llc,
        NonIpKind::PppoeControl,
        NonIpKind::PppoeCompressed,
        NonIpKind::Other,
    ];

    /// The `kind` label of `op25b_non_ip_frames_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            NonIpKind::Arp => "arp",
            NonIpKind::Mpls => "mpls",
            NonIpKind::Pbb => "pbb",
            NonIpKind::Llc => "llc",
            NonIpKind::PppoeControl => "pppoe_control",
            NonIpKind::PppoeCompressed => "pppoe_compressed",
            NonIpKind::Other => "other",
        }
    }

    /// Index in [`NonIpKind::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kind of a frame [`parse`] found not to be IP ([`Net::NotIp`]), from its link
/// facts alone (no second parse).
#[inline]
pub fn non_ip_kind(link: &Link) -> NonIpKind {
    if link.pppoe_session.is_some() {
        return if link.ppp_compressed {
            NonIpKind::PppoeCompressed
        } else {
            NonIpKind::PppoeControl
        };
    }
    match link.ether_type {
        ether_type::ARP => NonIpKind::Arp,
        ether_type::MPLS_UNICAST | ether_type::MPLS_MULTICAST => NonIpKind::Mpls,
        ether_type::PBB => NonIpKind::Pbb,
        ether_type::PPPOE_DISCOVERY => NonIpKind::PppoeControl,
        t if t < ether_type::MIN_ETHER_TYPE => NonIpKind::Llc,
        _ => NonIpKind::Other,
    }
}

/// The network layer as found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// Not IPv4/IPv6.
    NotIp,
    /// Runt or cut-short link header.
    MalformedLink,
    /// IP whose header cannot be read at all (too short for addresses, wrong version).
    MalformedIp,
    /// IP with readable addresses. `malformed` marks a header that is inconsistent
    /// (bad IHL, lengths past the frame, broken extension chain); its `segment` then has
    /// no port.
    Ip {
        addrs: Addrs,
        segment: Segment,
        /// Offset of the transport header in the frame (meaningful when not malformed).
        l4_offset: usize,
        malformed: bool,
    },
}

/// A parsed frame: link facts plus network facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub link: Link,
    pub net: Net,
}

/// The classifier's answer: the verdict, the class behind it, and the TCP destination
/// port when one was read (for per-port counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub verdict: Verdict,
    pub class: Option<ClassId>,
    pub dst_port: Option<u16>,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The link headers end before they say they do (a truncated Ethernet, VLAN or PPPoE
/// header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TruncatedLink;

/// Walks the link headers.
#[inline(always)]
pub fn parse_link(frame: &[u8]) -> Result<Link, TruncatedLink> {
    let mut link = Link::default();
    let mut et = be16(frame, ETH_TYPE_AT).ok_or(TruncatedLink)?;
    let mut off = ETH_HEADER;
    while matches!(
        et,
        ether_type::VLAN | ether_type::QINQ | ether_type::QINQ_OLD
    ) {
        if usize::from(link.tags) == MAX_VLAN_TAGS {
            // Too deep to be real traffic; not judged as IP.
            link.l3_offset = off;
            link.ether_type = et;
            return Ok(link);
        }
        let tci = be16(frame, off).ok_or(TruncatedLink)?;
        let next = be16(frame, off + 2).ok_or(TruncatedLink)?;
        if usize::from(link.tags) < 2 {
            link.vlans[usize::from(link.tags)] = Some(tci & 0x0fff);
        }
        link.tags += 1;
        off += VLAN_TAG;
        et = next;
    }
    if et == ether_type::PPPOE_SESSION {
        let h = frame.get(off..off + PPPOE_HEADER).ok_or(TruncatedLink)?;
        // ver=1 type=1, code=0 (session data).
        if h[0] != PPPOE_VER_TYPE || h[1] != 0 {
            link.l3_offset = off;
            link.ether_type = et;
            return Ok(link);
        }
        link.pppoe_session = Some(u16::from_be_bytes([h[2], h[3]]));
        let proto = if h[6] & 1 == 1 {
            // Protocol-Field-Compression (RFC 1661 6.5): one odd byte. A BNG that
            // negotiated it delivers the IP behind it, so it is judged like the long form.
            link.ppp_compressed = true;
            off += PPPOE_HEADER - 1;
            u16::from(h[6])
        } else {
            off += PPPOE_HEADER;
            u16::from_be_bytes([h[6], h[7]])
        };
        et = match proto {
            PPP_IPV4 => ether_type::IPV4,
            PPP_IPV6 => ether_type::IPV6,
            other => {
                link.l3_offset = off;
                link.ether_type = other;
                return Ok(link);
            }
        };
    }
    link.l3_offset = off;
    link.ether_type = et;
    Ok(link)
}

/// Parses a frame as far as the verdict needs.
#[inline(always)]
pub fn parse(frame: &[u8]) -> FrameInfo {
    let Ok(link) = parse_link(frame) else {
        return FrameInfo {
            link: Link::default(),
            net: Net::MalformedLink,
        };
    };
    let l3 = &frame[link.l3_offset.min(frame.len())..];
    // A PPPoE header we stopped at (bad version/code) leaves `ether_type` at 0x8864, and
    // a too-deep tag stack leaves it at a VLAN TPID: both fall to NotIp.
    let net = match link.ether_type {
        ether_type::IPV4 => parse_ipv4(l3, link.l3_offset),
        ether_type::IPV6 => parse_ipv6(l3, link.l3_offset),
        _ => Net::NotIp,
    };
    FrameInfo { link, net }
}

/// Reads the TCP destination port, or decides the segment has none.
#[inline(always)]
fn tcp_segment(protocol: u8, fragment: Fragment, l4: &[u8]) -> Segment {
    let dst_port = if protocol != IPPROTO_TCP || fragment == Fragment::Later {
        None
    } else if fragment == Fragment::First {
        // Judged like a whole segment when the port is there (RFC 1858 tiny fragments
        // otherwise).
        be16(l4, TCP_DST_PORT_AT)
    } else {
        // A whole segment must hold a complete TCP header.
        match l4.get(TCP_DATA_OFFSET_AT) {
            Some(&b) if (b >> 4) >= 5 && usize::from(b >> 4) * 4 <= l4.len() => {
                be16(l4, TCP_DST_PORT_AT)
            }
            _ => None,
        }
    };
    Segment {
        protocol,
        dst_port,
        fragment,
    }
}

#[inline(always)]
fn parse_ipv4(l3: &[u8], l3_offset: usize) -> Net {
    let Some(fixed) = l3.get(..IPV4_HEADER) else {
        return Net::MalformedIp;
    };
    if fixed[0] >> 4 != 4 {
        return Net::MalformedIp;
    }
    let addrs = Addrs::V4 {
        src: u32::from_be_bytes(
            fixed[IPV4_SRC_AT..IPV4_SRC_AT + 4]
                .try_into()
                .unwrap_or_default(),
        ),
        dst: u32::from_be_bytes(
            fixed[IPV4_DST_AT..IPV4_DST_AT + 4]
                .try_into()
                .unwrap_or_default(),
        ),
    };
    let protocol = fixed[IPV4_PROTOCOL_AT];
    let broken = Net::Ip {
        addrs,
        segment: Segment {
            protocol,
            dst_port: None,
            fragment: Fragment::Whole,
        },
        l4_offset: l3_offset,
        malformed: true,
    };
    let Ok(h) = Ipv4HeaderSlice::from_slice(l3) else {
        return broken;
    };
    let header_len = h.slice().len();
    let total = usize::from(h.total_len());
    if total < header_len || total > l3.len() {
        return broken;
    }
    let offset = h.fragments_offset().value();
    let fragment = if offset != 0 {
        Fragment::Later
    } else if h.more_fragments() {
        Fragment::First
    } else {
        Fragment::Whole
    };
    Net::Ip {
        addrs,
        segment: tcp_segment(protocol, fragment, &l3[header_len..total]),
        l4_offset: l3_offset + header_len,
        malformed: false,
    }
}

/// What the IPv6 extension-header walk found after the fixed header.
enum Walk {
    /// The upper protocol `next` starts at `off` (from the IPv6 header).
    Upper {
        next: u8,
        off: usize,
        fragment: Fragment,
    },
    /// The chain cannot be followed to its upper protocol: a header runs past the
    /// packet (or the fragment), a hop-by-hop header not first, a second fragment
    /// header. What follows could be TCP.
    Unreadable { fragment: Fragment },
}

/// True for the IPv6 extension headers (IANA "IPv6 Extension Header Types") that use
/// the generic format of RFC 6564: next header, then the length in 8-byte units not
/// counting the first 8. Mobility, HIP and Shim6 follow it, and so must any header
/// defined after RFC 6564 (the experimental 253 and 254 included).
#[inline(always)]
fn generic_extension(next: u8) -> bool {
    matches!(
        next,
        IPV6_HOP_BY_HOP
            | IPV6_ROUTING
            | IPV6_DEST_OPTIONS
            | IPV6_MOBILITY
            | IPV6_HIP
            | IPV6_SHIM6
            | IPV6_EXPERIMENT_1
            | IPV6_EXPERIMENT_2
    )
}

/// Walks the IPv6 extension chain of `l3[..limit]` (limit: the end of the payload, or
/// of the frame when the frame ends first). The walk is bounded by the bytes: every
/// header is at least 8 bytes long.
#[inline(always)]
fn walk_ipv6(l3: &[u8], first_next: u8, limit: usize) -> Walk {
    let mut next = first_next;
    let mut off = IPV6_HEADER;
    let mut fragment = Fragment::Whole;
    let mut seen_fragment_header = false;
    loop {
        let rest = l3.get(off..limit).unwrap_or_default();
        match next {
            IPV6_HOP_BY_HOP if off != IPV6_HEADER => return Walk::Unreadable { fragment },
            n if generic_extension(n) => {
                let Ok(x) = Ipv6RawExtHeaderSlice::from_slice(rest) else {
                    return Walk::Unreadable { fragment };
                };
                next = x.next_header().0;
                off += x.slice().len();
            }
            IPV6_FRAGMENT => {
                if seen_fragment_header {
                    return Walk::Unreadable { fragment };
                }
                seen_fragment_header = true;
                let Ok(x) = Ipv6FragmentHeaderSlice::from_slice(rest) else {
                    return Walk::Unreadable { fragment };
                };
                off += x.slice().len();
                if x.fragment_offset().value() != 0 {
                    // The rest is fragment data, not headers, and the Next Header of a
                    // later fragment is not what reassembly uses (RFC 8200 4.5 takes
                    // the first fragment's): the upper protocol is unknown, so the
                    // fragment rules apply as to TCP.
                    return Walk::Upper {
                        next: IPPROTO_TCP,
                        off,
                        fragment: Fragment::Later,
                    };
                }
                next = x.next_header().0;
                if x.more_fragments() {
                    fragment = Fragment::First;
                }
            }
            IPV6_AUTH => {
                let Ok(x) = IpAuthHeaderSlice::from_slice(rest) else {
                    return Walk::Unreadable { fragment };
                };
                next = x.next_header().0;
                off += x.slice().len();
            }
            // Anything else ends the walk and is the upper protocol: TCP, UDP, ICMPv6,
            // ESP (50, opaque to anyone but the endpoint), No Next Header (59), tunnels.
            _ => {
                return Walk::Upper {
                    next,
                    off,
                    fragment,
                }
            }
        }
    }
}

#[inline(always)]
fn parse_ipv6(l3: &[u8], l3_offset: usize) -> Net {
    let Ok(h) = Ipv6HeaderSlice::from_slice(l3) else {
        return Net::MalformedIp;
    };
    let addrs = Addrs::V6 {
        src: u128::from_be_bytes(h.source()),
        dst: u128::from_be_bytes(h.destination()),
    };
    let end = IPV6_HEADER + usize::from(h.payload_length());
    // A frame cut short of the payload length is still walked as far as it goes, so a
    // cut-short packet is judged by what it could be, never waved through as unreadable.
    let cut_short = end > l3.len();
    match walk_ipv6(l3, h.next_header().0, end.min(l3.len())) {
        Walk::Upper {
            next,
            off,
            fragment,
        } if !cut_short => Net::Ip {
            addrs,
            segment: tcp_segment(next, fragment, &l3[off..end]),
            l4_offset: l3_offset + off,
            malformed: false,
        },
        // Cut short: the upper protocol is known, its header is not to be trusted.
        Walk::Upper { next, fragment, .. } => Net::Ip {
            addrs,
            segment: Segment {
                protocol: next,
                dst_port: None,
                fragment,
            },
            l4_offset: l3_offset,
            malformed: true,
        },
        // The upper protocol cannot be read: judged as TCP without a port, so a
        // blocking class drops it (`malformed_tcp`, or `tiny_fragment` for a first
        // fragment) and a chain that ends past the first fragment cannot carry a
        // SYN to port 25 past the block (RFC 7112).
        Walk::Unreadable { fragment } => Net::Ip {
            addrs,
            segment: Segment {
                protocol: IPPROTO_TCP,
                dst_port: None,
                fragment,
            },
            l4_offset: l3_offset,
            malformed: true,
        },
    }
}

/// Classifies one raw Ethernet frame travelling in `direction`.
#[inline(always)]
pub fn classify(frame: &[u8], direction: Direction, policy: &Policy) -> Classified {
    classify_parsed(&parse(frame), direction, policy)
}

/// [`classify`] on a frame already parsed.
#[inline(always)]
pub fn classify_parsed(info: &FrameInfo, direction: Direction, policy: &Policy) -> Classified {
    classify_parsed_with(info, direction, policy, &crate::policy::overlay::NoOverlay)
}

/// [`classify_parsed`] with the runtime overlay (per-subscriber classes set at runtime,
/// `policy::overlay`).
#[inline(always)]
pub fn classify_parsed_with(
    info: &FrameInfo,
    direction: Direction,
    policy: &Policy,
    overlay: &impl crate::policy::overlay::OverlayView,
) -> Classified {
    classify_parsed_by(info, direction, policy, overlay, |a| {
        policy.subscriber_value_v6(a)
    })
}

/// [`classify_parsed_with`] with the IPv6 subscriber lookup handed in (see
/// [`Policy::decide_v6_by`]).
#[inline(always)]
fn classify_parsed_by(
    info: &FrameInfo,
    direction: Direction,
    policy: &Policy,
    overlay: &impl crate::policy::overlay::OverlayView,
    v6_value: impl FnOnce(u128) -> u16,
) -> Classified {
    let simple = |reason| Classified {
        verdict: Verdict::Forward(reason),
        class: None,
        dst_port: None,
    };
    match info.net {
        Net::NotIp => simple(Reason::NotIp),
        Net::MalformedLink => simple(Reason::MalformedLink),
        Net::MalformedIp => simple(Reason::MalformedIp),
        Net::Ip {
            addrs,
            segment,
            malformed,
            ..
        } => {
            if malformed && segment.protocol != IPPROTO_TCP {
                return simple(Reason::MalformedIp);
            }
            let d = match addrs {
                Addrs::V4 { src, dst } => {
                    policy.decide_v4_with(direction, src, dst, segment, overlay)
                }
                Addrs::V6 { src, dst } => {
                    policy.decide_v6_by(direction, src, dst, segment, overlay, v6_value)
                }
            };
            Classified {
                verdict: d.verdict,
                class: d.class,
                dst_port: segment.dst_port,
            }
        }
    }
}

/// The IPv6 subscriber address [`classify_parsed_with`] looks up for `info`, if any.
#[inline(always)]
fn v6_lookup_key(info: &FrameInfo, direction: Direction) -> Option<u128> {
    match info.net {
        Net::Ip {
            addrs: Addrs::V6 { src, dst },
            segment,
            malformed,
            ..
        } if !(malformed && segment.protocol != IPPROTO_TCP) => {
            Policy::v6_subscriber_key(direction, src, dst, segment)
        }
        _ => None,
    }
}

/// No IPv6 lookup for this frame of the burst.
const NO_KEY: u32 = u32::MAX;

/// Classifies a receive burst in two passes: the first finds the burst's IPv6
/// subscriber addresses and looks them up together ([`Policy::subscriber_values_v6`]:
/// the trie walks advance in lockstep, so their cache misses overlap); the second
/// parses and decides each frame as [`classify`] does, with the looked-up value. Each
/// verdict is [`classify_parsed_with`]'s for the same frame (tested); a frame whose
/// address the first pass missed is looked up on its own (counted in
/// [`BurstClassifier::single_lookups`], which stays 0). Built once with the burst size,
/// it does not allocate.
///
/// Only IPv6 frames cost the first pass more than a look at their link headers (they
/// are parsed twice), and IPv4 addresses are looked up frame by frame: the IPv4 table's
/// 18-bit direct array ends most walks after one node, and the lockstep bookkeeping
/// would cost more than it hides.
#[derive(Debug, Default)]
pub struct BurstClassifier {
    /// Per frame: the index of its key in `keys`, or [`NO_KEY`].
    key_of: Vec<u32>,
    keys: Vec<u128>,
    values: Vec<u16>,
    single_lookups: u64,
}

impl BurstClassifier {
    /// A classifier for bursts of up to `burst` frames (more work, but allocate).
    pub fn with_capacity(burst: usize) -> Self {
        Self {
            key_of: Vec::with_capacity(burst),
            keys: Vec::with_capacity(burst),
            values: Vec::with_capacity(burst),
            single_lookups: 0,
        }
    }

    /// The first pass over a burst (frames received travelling in `direction`): finds
    /// and looks up its IPv6 subscriber addresses. Replaces the previous burst.
    pub fn prepare<'a>(
        &mut self,
        frames: impl Iterator<Item = &'a [u8]>,
        direction: Direction,
        policy: &Policy,
    ) {
        self.key_of.clear();
        self.keys.clear();
        self.values.clear();
        if !policy.batch_v6_lookups() {
            // Every frame looks its address up on its own (`key_of` is empty).
            return;
        }
        for frame in frames {
            // Untagged IPv4, the common case, in one compare.
            if frame.get(ETH_TYPE_AT..ETH_TYPE_AT + 2) == Some(&[0x08, 0x00][..]) {
                self.key_of.push(NO_KEY);
                continue;
            }
            let key = match parse_link(frame) {
                Ok(link) if link.ether_type == ether_type::IPV6 => {
                    let l3 = &frame[link.l3_offset.min(frame.len())..];
                    let info = FrameInfo {
                        link,
                        net: parse_ipv6(l3, link.l3_offset),
                    };
                    v6_lookup_key(&info, direction)
                }
                _ => None,
            };
            match key {
                Some(key) => {
                    self.key_of.push(self.keys.len() as u32);
                    self.keys.push(key);
                }
                None => self.key_of.push(NO_KEY),
            }
        }
        self.values.resize(self.keys.len(), crate::lpm::NO_MATCH);
        policy.subscriber_values_v6(&self.keys, &mut self.values);
    }

    /// Frames of the burst whose lookups were prepared together (0 when the policy's
    /// IPv6 table is too small to batch, see [`Policy::batch_v6_lookups`]).
    pub fn prepared(&self) -> usize {
        self.key_of.len()
    }

    /// The second pass for frame `i` of the burst, `frame`: its parse and verdict;
    /// `direction` and `policy` as given to [`BurstClassifier::prepare`]. A frame past
    /// the burst is looked up on its own.
    #[inline(always)]
    pub fn classify(
        &mut self,
        i: usize,
        frame: &[u8],
        direction: Direction,
        policy: &Policy,
        overlay: &impl crate::policy::overlay::OverlayView,
    ) -> (FrameInfo, Classified) {
        let info = parse(frame);
        let Some(&k) = self.key_of.get(i) else {
            // Not prepared in a batch (a small table, or a frame past the burst).
            return (
                info,
                classify_parsed_with(&info, direction, policy, overlay),
            );
        };
        let pre = self.keys.get(k as usize).zip(self.values.get(k as usize));
        let singles = &mut self.single_lookups;
        let c = classify_parsed_by(&info, direction, policy, overlay, |a| match pre {
            Some((&key, &value)) if key == a => value,
            _ => {
                *singles += 1;
                policy.subscriber_value_v6(a)
            }
        });
        (info, c)
    }

    /// Lookups [`BurstClassifier::classify`] had to make on its own because the burst's
    /// pass missed them (0 unless the two disagree on which frames need one).
    pub fn single_lookups(&self) -> u64 {
        self.single_lookups
    }
}
