//! Any frame the builders accept must yield a reply that re-parses as Ethernet + IP with
//! the right transport, fits the buffer, and never panics.
#![no_main]
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use op25b::classify::reply::{build_reply, MAX_REPLY_LEN};
use op25b::policy::ReplyKind;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; MAX_REPLY_LEN];
    for kind in [ReplyKind::TcpReset, ReplyKind::IcmpProhibited] {
        let Ok(n) = build_reply(data, kind, &mut buf) else { continue };
        assert!(n >= 60 && n <= MAX_REPLY_LEN);
        let p = SlicedPacket::from_ethernet(&buf[..n]).expect("reply re-parses");
        assert!(matches!(p.net, Some(NetSlice::Ipv4(_)) | Some(NetSlice::Ipv6(_))));
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
