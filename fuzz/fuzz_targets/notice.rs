//! The SMTP notice on any frame: deciding its step never panics, and every SYN-ACK or
//! greeting it builds re-parses (link headers with op25b's parser, IP and TCP with
//! etherparse) with the right flags, sequence numbers, payload and checksums, fits the
//! buffer, and keeps a PPPoE length consistent.
#![no_main]
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use op25b::classify::notice::{self, CookieKey, NoticeStep};
use op25b::classify::reply::MAX_REPLY_LEN;
use op25b::classify::{parse, parse_link};

const TEXT: &[u8] = b"554-5.7.1 Port 25 to other networks is blocked on this line (OP25B).\r\n554 5.7.1 Send mail through port 587 with authentication.\r\n";

fuzz_target!(|data: &[u8]| {
    let info = parse(data);
    let key = CookieKey([7, 9]);
    let step = notice::step(data, &info, key, 1_000_000);
    let mut buf = [0u8; MAX_REPLY_LEN];
    for s in [step, NoticeStep::SynAck { cookie: 0xdead_beef }, NoticeStep::Greeting { cookie: 41 }] {
        let Ok(n) = notice::build(data, &info, s, TEXT, &mut buf) else { continue };
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
            // The PPP protocol field is one byte when compressed (PFC), else two.
            let proto_len = if link.ppp_compressed { 1 } else { 2 };
            let at = link.l3_offset - proto_len - 2;
            let pppoe_len = usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
            assert_eq!(pppoe_len, ip_len + proto_len, "PPPoE length field");
        }
        let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("notice is not TCP") };
        match s {
            NoticeStep::SynAck { cookie } => {
                assert!(t.syn() && t.ack() && !t.fin() && !t.rst());
                assert_eq!(t.sequence_number(), cookie);
                assert!(t.payload().is_empty());
            }
            NoticeStep::Greeting { cookie } => {
                assert!(t.ack() && t.fin() && t.psh() && !t.syn());
                assert_eq!(t.sequence_number(), cookie.wrapping_add(1));
                assert_eq!(t.payload(), TEXT);
            }
            _ => unreachable!("only SYN-ACKs and greetings are built"),
        }
    }
});
