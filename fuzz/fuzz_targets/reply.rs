//! Any frame the builders accept must yield a reply that re-parses (link headers with
//! op25b's parser, since etherparse has no PPPoE; IP and transport with etherparse) as
//! IP + TCP RST / ICMP(v6), fits the buffer, keeps a PPPoE length consistent, and never
//! panics.
#![no_main]
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use op25b::classify::parse_link;
use op25b::classify::reply::{build_reply, MAX_REPLY_LEN};
use op25b::policy::ReplyKind;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; MAX_REPLY_LEN];
    for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
        let Ok(n) = build_reply(data, kind, &mut buf) else { continue };
        assert!((60..=MAX_REPLY_LEN).contains(&n));
        let frame = &buf[..n];
        let link = parse_link(frame).expect("reply link headers parse");
        let p = SlicedPacket::from_ip(&frame[link.l3_offset..]).expect("reply IP re-parses");
        let ip_len = match &p.net {
            Some(NetSlice::Ipv4(v4)) => usize::from(v4.header().total_len()),
            Some(NetSlice::Ipv6(v6)) => 40 + usize::from(v6.header().payload_length()),
            _ => panic!("reply is not IP"),
        };
        if link.pppoe_session.is_some() {
            // PPPoE length = PPP protocol + IP packet.
            // The PPP protocol field is one byte when compressed (PFC), else two.
            let proto_len = if link.ppp_compressed { 1 } else { 2 };
            let at = link.l3_offset - proto_len - 2;
            let pppoe_len = usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
            assert_eq!(pppoe_len, ip_len + proto_len, "PPPoE length field");
        }
        match kind {
            ReplyKind::TcpReset => {
                let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("RST is not TCP") };
                assert!(t.rst());
            }
            ReplyKind::IcmpProhibited => assert!(matches!(
                p.transport,
                Some(TransportSlice::Icmpv4(_)) | Some(TransportSlice::Icmpv6(_))
            )),
        }
    }
});
