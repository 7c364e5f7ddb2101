//! The reply builders (TCP RST, ICMP administratively prohibited) on golden frames:
//! what they answer, through which encapsulation, with good checksums.

use etherparse::{Icmpv4Type, Icmpv6Type, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use op25b::classify::reply::*;
use op25b::classify::{parse, Net};
use op25b::policy::*;
use op25b_testkit::fixtures::{self, addr::*, wrap, Encap, Tcp};

fn reply(frame: &[u8], kind: ReplyKind) -> Vec<u8> {
    let mut buf = [0u8; MAX_REPLY_LEN];
    let n = build_reply(frame, kind, &mut buf).expect("reply builds");
    buf[..n].to_vec()
}

#[test]
fn rst_to_syn_acks_seq_plus_one() {
    let f = wrap(
        Encap::Plain,
        &fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Syn, &[]),
        false,
        true,
    );
    let r = reply(&f, ReplyKind::TcpReset);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(LinkSlice::Ethernet2(eth)) = p.link else {
        panic!()
    };
    assert_eq!(eth.destination(), fixtures::SUB_MAC);
    assert_eq!(eth.source(), fixtures::UP_MAC);
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), EXTERNAL4);
    assert_eq!(ip.header().destination(), DYNAMIC4);
    assert_eq!(
        ip.header().header_checksum(),
        ip.header().to_header().calc_header_checksum()
    );
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        panic!()
    };
    assert_eq!((tcp.source_port(), tcp.destination_port()), (25, 40001));
    assert!(tcp.rst() && tcp.ack() && !tcp.syn());
    assert_eq!(tcp.sequence_number(), 0);
    assert_eq!(tcp.acknowledgment_number(), 1_000_001);
    let want = tcp
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), &[])
        .unwrap();
    assert_eq!(tcp.checksum(), want);
    assert_eq!(r.len(), 60);
}

#[test]
fn rst_to_ack_segment_uses_its_ack() {
    let payload = b"MAIL FROM:<a@b>\r\n";
    let f = wrap(
        Encap::Plain,
        &fixtures::tcp6(DYNAMIC6, EXTERNAL6, 40001, 25, Tcp::Data(4242), payload),
        true,
        true,
    );
    let r = reply(&f, ReplyKind::TcpReset);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(ip)) = p.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), EXTERNAL6);
    assert_eq!(ip.header().destination(), DYNAMIC6);
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        panic!()
    };
    assert!(tcp.rst() && !tcp.ack());
    assert_eq!(tcp.sequence_number(), 4242);
    let want = tcp
        .to_header()
        .calc_checksum_ipv6(&ip.header().to_header(), &[])
        .unwrap();
    assert_eq!(tcp.checksum(), want);
}

#[test]
fn rst_mirrors_vlan_qinq_and_pppoe() {
    for encap in [
        Encap::Vlan(100),
        Encap::QinQ(0x88a8, 10, 20),
        Encap::Pppoe(0x1234),
        Encap::VlanPppoe(7, 9),
    ] {
        for v6 in [false, true] {
            let ip = if v6 {
                fixtures::tcp6(DYNAMIC6, EXTERNAL6, 40001, 25, Tcp::Syn, &[])
            } else {
                fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Syn, &[])
            };
            let f = wrap(encap, &ip, v6, true);
            let r = reply(&f, ReplyKind::TcpReset);
            let fi = parse(&f).link;
            let ri = parse(&r).link;
            assert_eq!(
                (fi.vlans, fi.pppoe_session, fi.l3_offset),
                (ri.vlans, ri.pppoe_session, ri.l3_offset),
                "{encap:?}"
            );
            if fi.pppoe_session.is_some() {
                let len_at = ri.l3_offset - 4;
                let len = u16::from_be_bytes([r[len_at], r[len_at + 1]]) as usize;
                assert_eq!(len, 2 + if v6 { 60 } else { 40 }, "{encap:?}");
            }
            // The reply is itself a TCP segment from the external host's port 25.
            let Net::Ip { segment, .. } = parse(&r).net else {
                panic!("{encap:?}")
            };
            assert_eq!(segment.protocol, IPPROTO_TCP);
            assert_eq!(segment.dst_port, Some(40001));
        }
    }
}

#[test]
fn icmp4_admin_prohibited_quotes_header() {
    let ip = fixtures::with_ipv4_options(
        &fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Syn, &[]),
        &[1, 1, 1, 0],
    );
    let f = wrap(Encap::Vlan(5), &ip, false, true);
    let r = reply(&f, ReplyKind::IcmpProhibited);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv4(rip)) = p.net else {
        panic!()
    };
    assert_eq!(rip.header().source(), EXTERNAL4);
    assert_eq!(rip.header().destination(), DYNAMIC4);
    let Some(TransportSlice::Icmpv4(icmp)) = p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 13));
    assert!(matches!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(_)
    ));
    assert_eq!(icmp.payload(), &ip[..]);
    assert_eq!(
        icmp.checksum(),
        icmp.header().icmp_type.calc_checksum(icmp.payload())
    );
}

#[test]
fn icmp6_admin_prohibited_quotes_packet() {
    let ip = fixtures::tcp6(DYNAMIC6, EXTERNAL6, 40001, 25, Tcp::Syn, &[]);
    let f = wrap(Encap::Plain, &ip, true, true);
    let r = reply(&f, ReplyKind::IcmpProhibited);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(rip)) = p.net else {
        panic!()
    };
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (1, 1));
    assert!(matches!(
        icmp.icmp_type(),
        Icmpv6Type::DestinationUnreachable(_)
    ));
    assert_eq!(icmp.payload(), &ip[..]);
    let want = icmp
        .icmp_type()
        .calc_checksum(
            rip.header().source(),
            rip.header().destination(),
            icmp.payload(),
        )
        .unwrap();
    assert_eq!(icmp.checksum(), want);
}

#[test]
fn icmp4_quote_is_capped_at_576() {
    let ip = fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Data(1), &[0x55; 1200]);
    let r = reply(
        &wrap(Encap::Plain, &ip, false, true),
        ReplyKind::IcmpProhibited,
    );
    assert_eq!(r.len(), 14 + 576);
}

#[test]
fn every_blocked_fixture_gets_a_reparseable_reply() {
    let policy = fixtures::policy();
    for f in fixtures::all() {
        for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
            let mut buf = [0u8; MAX_REPLY_LEN];
            match build_reply(&f.frame, kind, &mut buf) {
                Ok(n) => {
                    // A reply is a frame the classifier understands, never malformed.
                    let c = op25b::classify::classify(
                        &buf[..n],
                        op25b::policy::Direction::Inbound,
                        &policy,
                    );
                    assert!(
                        !matches!(
                            c.verdict.reason(),
                            op25b::policy::Reason::MalformedIp
                                | op25b::policy::Reason::MalformedLink
                                | op25b::policy::Reason::MalformedTcp
                        ),
                        "{}: {:?}",
                        f.description,
                        c
                    );
                }
                Err(_) => assert!(
                    !matches!(f.expected, op25b::policy::Verdict::Reject(..))
                        || kind == ReplyKind::TcpReset && f.description.contains("fragment"),
                    "{}",
                    f.description
                ),
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn never_panics_and_replies_reparse(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), small in 0usize..80) {
        for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
            let mut buf = [0u8; MAX_REPLY_LEN];
            if let Ok(n) = build_reply(&bytes, kind, &mut buf) {
                proptest::prop_assert!(SlicedPacket::from_ethernet(&buf[..n]).is_ok());
            }
            let mut tiny = vec![0u8; small];
            let _ = build_reply(&bytes, kind, &mut tiny);
        }
    }
}

/// A reply through PPPoE with a compressed PPP protocol field keeps the one-byte field,
/// and its PPPoE length counts that one byte plus the IP packet.
#[test]
fn replies_through_compressed_pppoe_keep_the_short_protocol_field() {
    for (ip, v6) in [
        (
            fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Syn, &[]),
            false,
        ),
        (
            fixtures::tcp6(DYNAMIC6, EXTERNAL6, 40001, 25, Tcp::Syn, &[]),
            true,
        ),
    ] {
        let f = wrap(Encap::PppoeCompressed(0x77), &ip, v6, true);
        for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
            let r = reply(&f, kind);
            assert_eq!(r[20], if v6 { 0x57 } else { 0x21 }, "{kind:?}");
            let info = parse(&r);
            assert!(info.link.ppp_compressed);
            let Net::Ip { malformed, .. } = info.net else {
                panic!("{kind:?}: {info:?}")
            };
            assert!(!malformed);
            let ip_len = if v6 {
                40 + usize::from(u16::from_be_bytes([r[21 + 4], r[21 + 5]]))
            } else {
                usize::from(u16::from_be_bytes([r[21 + 2], r[21 + 3]]))
            };
            let pppoe_len = usize::from(u16::from_be_bytes([r[18], r[19]]));
            assert_eq!(pppoe_len, ip_len + 1, "{kind:?}");
        }
    }
}
