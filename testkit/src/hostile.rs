//! Hostile frames for the load tests (`hostile_share` in a traffic profile) and the
//! sink's independent leak oracle.
//!
//! Every hostile frame is built from a port-25 SYN between the given addresses and then
//! broken: cut at every length from the end of the Ethernet header to the end of the
//! TCP header, bogus IHL and IP lengths, IPv6 extension chains up to the size of the
//! frame, tiny and overlapping fragments aimed at port 25, VLAN/QinQ/PPPoE with garbage
//! inside, runts, and frames of the maximum size. Frames shorter than an Ethernet header
//! are not sent over veth (the fuzzers and the golden fixtures cover them).
//!
//! [`blocked_segment`] is the sink's check, written apart from the classifier: it reads
//! a frame the way a receiving IP stack would (honouring IP lengths, skipping
//! extension headers, ignoring non-first fragments) and reports a TCP segment whose
//! ports and flags it can see. The sink then asks the policy whether a clean segment
//! with that source, destination and port would be blocked; if so, the frame leaked.

use crate::fixtures::{self, Encap, Ext, Tcp};
use op25b::policy::{Direction, Policy};
use std::net::IpAddr;

fn v4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [192, 0, 2, 1],
    }
}
fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    }
}

/// `(kind, frame)`: every hostile variant for one source/destination pair of each
/// family. `max_frame` bounds the largest frame (MTU + Ethernet header).
pub fn frames(
    src4: IpAddr,
    dst4: IpAddr,
    src6: IpAddr,
    dst6: IpAddr,
    max_frame: usize,
) -> Vec<(&'static str, Vec<u8>)> {
    let (s4, d4, s6, d6) = (v4(src4), v4(dst4), v6(src6), v6(dst6));
    let syn4 = fixtures::tcp4(s4, d4, 40025, 25, Tcp::Syn, &[]);
    let syn6 = fixtures::tcp6(s6, d6, 40025, 25, Tcp::Syn, &[]);
    let eth = |ip: &[u8], is6: bool| fixtures::wrap(Encap::Plain, ip, is6, true);
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();

    // Truncated at every length from the Ethernet header to the end of TCP.
    for (ip, is6) in [(&syn4, false), (&syn6, true)] {
        let whole = eth(ip, is6);
        for cut in 14..whole.len() {
            out.push(("truncated", whole[..cut].to_vec()));
        }
    }
    // IHL 0..15 with the header as it is (20 bytes of it).
    for ihl in 0u8..16 {
        if ihl == 5 {
            continue;
        }
        let mut ip = syn4.clone();
        ip[0] = 0x40 | ihl;
        fixtures::fix_ipv4_checksum(&mut ip);
        out.push(("bogus_ihl", eth(&ip, false)));
    }
    // Total length: shorter than the header, ports-only, past the frame, maximum.
    for total in [0u16, 19, 20, 23, 24, 33, 41, syn4.len() as u16 + 1, 0xffff] {
        let mut ip = syn4.clone();
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        fixtures::fix_ipv4_checksum(&mut ip);
        out.push(("bogus_length", eth(&ip, false)));
    }
    // Version nibble wrong for the EtherType, both ways.
    let mut ip = syn4.clone();
    ip[0] = 0x65;
    out.push(("bogus_version", eth(&ip, false)));
    out.push(("bogus_version", eth(&syn4, true)));
    // IPv6 payload length: zero, short, past the frame.
    for plen in [0u16, 3, 19, 0xffff] {
        let mut ip = syn6.clone();
        ip[4..6].copy_from_slice(&plen.to_be_bytes());
        out.push(("bogus_length", eth(&ip, true)));
    }
    // IPv6 extension chains: 1, 8, 64 and as many 8-byte headers as fit in the frame,
    // then TCP/25; and the longest chain cut before its TCP header.
    let room = (max_frame - 14 - 40 - 20) / 8;
    for n in [1usize, 8, 64, room] {
        let mut exts = vec![Ext::HopByHop];
        exts.extend(std::iter::repeat_n(Ext::DestOpts, n.saturating_sub(1)));
        let ip = fixtures::with_ipv6_exts(&syn6, &exts, None);
        if 14 + ip.len() <= max_frame {
            out.push(("ipv6_ext_chain", eth(&ip, true)));
        }
    }
    let mut exts = vec![Ext::HopByHop];
    exts.extend(std::iter::repeat_n(Ext::DestOpts, room - 1));
    let long = fixtures::with_ipv6_exts(&syn6, &exts, None);
    let mut cut = long[..long.len() - 20].to_vec();
    let plen = (cut.len() - 40) as u16;
    cut[4..6].copy_from_slice(&plen.to_be_bytes());
    out.push(("ipv6_ext_chain", eth(&cut, true)));
    // Routing, AH and a second hop-by-hop (not first: invalid) in the chain.
    for exts in [
        vec![Ext::Routing, Ext::Auth, Ext::DestOpts],
        vec![Ext::DestOpts, Ext::HopByHop],
    ] {
        out.push((
            "ipv6_ext_chain",
            eth(&fixtures::with_ipv6_exts(&syn6, &exts, None), true),
        ));
    }
    // Tiny first fragments aimed at port 25 (RFC 1858): 0, 2, 4 and 8 bytes of TCP;
    // then a first fragment with the whole header.
    for keep in [0usize, 2, 4, 8, 16] {
        out.push((
            "tiny_fragment",
            eth(&fixtures::ipv4_fragment(&syn4, 0, keep, true), false),
        ));
    }
    for keep in [0usize, 2, 8] {
        out.push((
            "tiny_fragment",
            eth(
                &fixtures::with_ipv6_exts(&syn6, &[Ext::Fragment(0, true)], Some(keep)),
                true,
            ),
        ));
    }
    // Overlapping fragments: a harmless first fragment (port 80) and a later one at
    // offset 1 and 0+more overlapping it with port-25 bytes (RFC 3128's attack).
    let web4 = fixtures::tcp4(s4, d4, 40025, 80, Tcp::Syn, &[0u8; 16]);
    out.push((
        "overlapping_fragment",
        eth(&fixtures::ipv4_fragment(&web4, 0, 8, true), false),
    ));
    out.push((
        "overlapping_fragment",
        eth(&fixtures::ipv4_fragment(&syn4, 1, 12, false), false),
    ));
    let mut over = fixtures::ipv4_fragment(&syn4, 0, 20, false);
    over[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0 again
    fixtures::fix_ipv4_checksum(&mut over);
    out.push(("overlapping_fragment", eth(&over, false)));
    out.push((
        "overlapping_fragment",
        eth(
            &fixtures::with_ipv6_exts(&syn6, &[Ext::Fragment(1, false)], Some(12)),
            true,
        ),
    ));
    // VLAN, QinQ and PPPoE with garbage inside, and with the header cut.
    let garbage: Vec<u8> = (0..46u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for encap in [
        Encap::Vlan(100),
        Encap::QinQ(0x88a8, 10, 100),
        Encap::Pppoe(7),
        Encap::VlanPppoe(100, 7),
    ] {
        out.push((
            "encap_garbage",
            fixtures::wrap(encap, &garbage, false, true),
        ));
        let good = fixtures::wrap(encap, &syn4, false, true);
        let hdr = good.len() - syn4.len();
        out.push(("encap_cut", good[..hdr - 1].to_vec()));
        // The encapsulated SYN itself (must be judged like a plain one).
        out.push(("encap_syn", good));
    }
    let mut pppoe_len = fixtures::wrap(Encap::Pppoe(7), &syn4, false, true);
    pppoe_len[18..20].copy_from_slice(&0xffffu16.to_be_bytes());
    out.push(("encap_garbage", pppoe_len));
    // Runts: an Ethernet header and 0..45 bytes of IPv4 EtherType garbage.
    for n in [0usize, 1, 10, 19, 20, 30, 45] {
        out.push(("runt", eth(&garbage[..n], false)));
    }
    // Maximum-size frames: a port-25 SYN carrying data up to the frame limit.
    let max4 = fixtures::tcp4(s4, d4, 40025, 25, Tcp::Syn, &vec![0x5a; max_frame - 54]);
    out.push(("max_size", eth(&max4, false)));
    let max6 = fixtures::tcp6(s6, d6, 40025, 25, Tcp::Syn, &vec![0x5a; max_frame - 74]);
    out.push(("max_size", eth(&max6, true)));
    // Fragmented SYNs, every fragment of every set (the sink judges them one by one;
    // `leaked_by_reassembly` judges the sets).
    for (kind, set) in fragment_sets(src4, dst4, src6, dst6) {
        out.extend(set.into_iter().map(|f| (kind, f)));
    }
    out
}

/// `(kind, frames)`: fragmented port-25 SYNs, each set the fragments of one datagram
/// in order (frames), built as a source would build them: header chains that end past
/// the first fragment (RFC 7112), generic-format and AH headers in the fragmentable
/// part, fragments of 8 bytes. The generator sends them like [`frames`]; the check that
/// matters is [`leaked_by_reassembly`], which judges what a reassembling receiver gets.
pub fn fragment_sets(
    src4: IpAddr,
    dst4: IpAddr,
    src6: IpAddr,
    dst6: IpAddr,
) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let (s4, d4, s6, d6) = (v4(src4), v4(dst4), v6(src6), v6(dst6));
    let syn4 = fixtures::tcp4(s4, d4, 40025, 25, Tcp::Syn, &[0x5a; 24]);
    let syn6 = fixtures::tcp6(s6, d6, 40025, 25, Tcp::Syn, &[0x5a; 24]);
    let eth4 = |ip: &Vec<u8>| fixtures::wrap(Encap::Plain, ip, false, true);
    let eth6 = |ip: &Vec<u8>| fixtures::wrap(Encap::Plain, ip, true, true);
    let mut out: Vec<(&'static str, Vec<Vec<u8>>)> = Vec::new();
    out.push((
        "fragments_v4",
        fixtures::ipv4_fragments(&syn4, 1)
            .iter()
            .map(eth4)
            .collect(),
    ));
    let chains: [(&[Ext], &[Ext]); 6] = [
        (&[], &[]),
        (&[], &[Ext::DestOpts, Ext::Generic(60, 3)]),
        (&[Ext::HopByHop, Ext::Routing], &[Ext::Generic(253, 4)]),
        (&[], &[Ext::Auth, Ext::DestOpts]),
        (
            &[Ext::DestOpts, Ext::Routing],
            &[Ext::Generic(140, 2), Ext::Generic(135, 1)],
        ),
        (&[Ext::HopByHop], &[Ext::Generic(60, 32)]),
    ];
    for (i, (unfrag, frag)) in chains.iter().enumerate() {
        for piece8 in [1usize, 2, 3, 5] {
            let set = fixtures::ipv6_fragments(&syn6, unfrag, frag, piece8, 0x5000 + i as u32);
            out.push(("fragments_v6", set.iter().map(eth6).collect()));
        }
    }
    out
}

/// True when the frames of `set` that `forwarded` marks reassemble, as a receiving
/// stack would put them together, into a datagram holding a TCP segment that `policy`
/// blocks: the set got past the block as a whole even if no single frame did.
pub fn leaked_by_reassembly(set: &[Vec<u8>], forwarded: &[bool], policy: &Policy) -> bool {
    let ips: Vec<&[u8]> = set
        .iter()
        .zip(forwarded)
        .filter(|(_, &f)| f)
        .map(|(frame, _)| &frame[14..])
        .collect();
    let Some(datagram) = fixtures::reassemble(&ips) else {
        return false;
    };
    let is6 = datagram.first().is_some_and(|b| b >> 4 == 6);
    blocked_segment(&fixtures::wrap(Encap::Plain, &datagram, is6, true), policy)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A TCP segment a receiving stack would see: source, destination, destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dport: u16,
}

/// Reads `frame` independently of the classifier; returns the TCP segment in it if a
/// receiving stack would find one (whole packet or first fragment, ports and flags
/// inside the IP length).
pub fn visible_segment(frame: &[u8]) -> Option<Seen> {
    let mut et = be16(frame, 12)?;
    let mut off = 14;
    for _ in 0..4 {
        if matches!(et, 0x8100 | 0x88a8 | 0x9100) {
            et = be16(frame, off + 2)?;
            off += 4;
        }
    }
    if et == 0x8864 {
        et = match be16(frame, off + 6)? {
            0x0021 => 0x0800,
            0x0057 => 0x86dd,
            _ => return None,
        };
        off += 8;
    }
    let (src, dst, l4, end) = match et {
        0x0800 => {
            let b0 = *frame.get(off)?;
            let ihl = usize::from(b0 & 0x0f) * 4;
            let total = usize::from(be16(frame, off + 2)?);
            if b0 >> 4 != 4 || ihl < 20 || total < ihl || off + total > frame.len() {
                return None;
            }
            if be16(frame, off + 6)? & 0x1fff != 0 || frame[off + 9] != 6 {
                return None;
            }
            let a: [u8; 4] = frame[off + 12..off + 16].try_into().ok()?;
            let b: [u8; 4] = frame[off + 16..off + 20].try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), off + ihl, off + total)
        }
        0x86dd => {
            if *frame.get(off)? >> 4 != 6 {
                return None;
            }
            let end = off + 40 + usize::from(be16(frame, off + 4)?);
            if end > frame.len() {
                return None;
            }
            let a: [u8; 16] = frame[off + 8..off + 24].try_into().ok()?;
            let b: [u8; 16] = frame[off + 24..off + 40].try_into().ok()?;
            let mut next = frame[off + 6];
            let mut p = off + 40;
            loop {
                let len = match next {
                    // RFC 8200 4.1: hop-by-hop only right after the IPv6 header;
                    // receivers drop it anywhere else.
                    0 if p != off + 40 => return None,
                    // Generic format (RFC 6564): a stack that knows the header walks it.
                    0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => {
                        (usize::from(*frame.get(p + 1)?) + 1) * 8
                    }
                    44 => {
                        if be16(frame, p + 2)? >> 3 != 0 {
                            return None; // not the first fragment
                        }
                        8
                    }
                    51 => (usize::from(*frame.get(p + 1)?) + 2) * 4,
                    6 => break,
                    _ => return None,
                };
                next = *frame.get(p)?;
                p += len;
                if p > end {
                    return None;
                }
            }
            (IpAddr::from(a), IpAddr::from(b), p, end)
        }
        _ => return None,
    };
    // Ports and the flags byte inside the IP payload.
    if l4 + 14 > end {
        return None;
    }
    Some(Seen {
        src,
        dst,
        dport: be16(frame, l4 + 2)?,
    })
}

/// True when `frame` holds a TCP segment that `policy` blocks outbound: judged on a
/// clean segment with the same addresses and port, so a malformed wrapper cannot hide
/// it from this check.
pub fn blocked_segment(frame: &[u8], policy: &Policy) -> bool {
    let Some(s) = visible_segment(frame) else {
        return false;
    };
    let ip = match (s.src, s.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            fixtures::tcp4(a.octets(), b.octets(), 40025, s.dport, Tcp::Syn, &[])
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            fixtures::tcp6(a.octets(), b.octets(), 40025, s.dport, Tcp::Syn, &[])
        }
        _ => return false,
    };
    let clean = fixtures::wrap(Encap::Plain, &ip, s.src.is_ipv6(), true);
    op25b::classify::classify(&clean, Direction::Outbound, policy)
        .verdict
        .is_blocked()
}

#[cfg(test)]
mod tests {
    use super::*;
    use op25b::policy::Verdict;

    fn addrs() -> (IpAddr, IpAddr, IpAddr, IpAddr) {
        (
            "198.51.100.10".parse().unwrap(),
            "203.0.113.200".parse().unwrap(),
            "2001:db8:100::10".parse().unwrap(),
            "2001:db8:ff:8000::1".parse().unwrap(),
        )
    }

    #[test]
    fn catalogue_covers_every_kind_and_never_panics_the_classifier() {
        let (a, b, c, d) = addrs();
        let set = frames(a, b, c, d, 1514);
        let policy = fixtures::policy();
        for kind in [
            "truncated",
            "bogus_ihl",
            "bogus_length",
            "ipv6_ext_chain",
            "tiny_fragment",
            "overlapping_fragment",
            "encap_garbage",
            "encap_cut",
            "encap_syn",
            "runt",
            "max_size",
        ] {
            assert!(set.iter().any(|(k, _)| *k == kind), "{kind}");
        }
        for (kind, f) in &set {
            assert!(f.len() >= 14 && f.len() <= 1514, "{kind}: {}", f.len());
            let v = op25b::classify::classify(f, Direction::Outbound, &policy).verdict;
            // The classifier must block everything the oracle sees as a blocked segment.
            if blocked_segment(f, &policy) {
                assert!(
                    v.is_blocked(),
                    "{kind}: oracle sees a blocked segment, classifier says {v:?}: {f:02x?}"
                );
            }
        }
    }

    /// The reassembly-aware oracle: no set of fragments whose forwarded frames
    /// reassemble into a blocked SYN. On 460fd1e the RFC 7112 sets leaked (the first
    /// fragment was forwarded as malformed_ip).
    #[test]
    fn no_fragment_set_reassembles_past_the_block() {
        let (a, b, c, d) = addrs();
        let policy = fixtures::policy();
        let sets = fragment_sets(a, b, c, d);
        assert!(sets.len() > 20);
        for (kind, set) in &sets {
            // Sanity: all of it reassembles into the blocked SYN, so the oracle can see
            // a leak when there is one.
            let all = vec![true; set.len()];
            assert!(
                leaked_by_reassembly(set, &all, &policy),
                "{kind}: {set:02x?}"
            );
            let forwarded: Vec<bool> = set
                .iter()
                .map(|f| {
                    !op25b::classify::classify(f, Direction::Outbound, &policy)
                        .verdict
                        .is_blocked()
                })
                .collect();
            assert!(
                !leaked_by_reassembly(set, &forwarded, &policy),
                "{kind}: forwarded {forwarded:?} reassemble into a blocked SYN: {set:02x?}"
            );
        }
    }

    #[test]
    fn oracle_sees_plain_encapsulated_and_chained_syns() {
        let (a, b, c, d) = addrs();
        let policy = fixtures::policy();
        let set = frames(a, b, c, d, 1514);
        let get = |k: &'static str| set.iter().filter(move |(kind, _)| *kind == k);
        for (_, f) in get("encap_syn").chain(get("max_size")) {
            assert!(blocked_segment(f, &policy), "{f:02x?}");
        }
        assert!(get("ipv6_ext_chain")
            .take(4)
            .all(|(_, f)| blocked_segment(f, &policy)));
        // Non-first fragments and cut headers carry no visible segment.
        assert!(get("runt").all(|(_, f)| visible_segment(f).is_none()));
        let plain = fixtures::wrap(
            Encap::Plain,
            &fixtures::tcp4([198, 51, 100, 10], [203, 0, 113, 25], 1, 25, Tcp::Syn, &[]),
            false,
            true,
        );
        // The relay is allowed: seen, but not blocked.
        assert!(visible_segment(&plain).is_some());
        assert!(!blocked_segment(&plain, &policy));
        assert!(matches!(
            op25b::classify::classify(&plain, Direction::Outbound, &policy).verdict,
            Verdict::Forward(_)
        ));
    }
}
