//! Reply builders for the `reject` action: the frame that tells the subscriber "no" at
//! once, written into a caller-provided buffer (no allocation).
//!
//! * TCP RST per RFC 9293 §3.10.7.1: if the offending segment has ACK, `seq = SEG.ACK`
//!   and only RST is set; otherwise `seq = 0`, `ack = SEG.SEQ + SEG.LEN` (payload plus
//!   one for SYN and one for FIN) and RST|ACK. Sent from the destination back to the source.
//! * ICMP destination unreachable, administratively prohibited: IPv4 type 3 code 13
//!   (RFC 1812 §5.2.7.1), quoting the offending IP header and as much payload as keeps the
//!   error within 576 bytes; ICMPv6 type 1 code 1 (RFC 4443 §3.1), quoting as much as keeps
//!   it within the 1280-byte minimum MTU. The source address is the offending packet's
//!   destination: a bump in the wire has no address of its own.
//!
//! MACs are swapped and the link encapsulation (802.1Q/QinQ tags, PPPoE session header,
//! with its length rewritten) is mirrored; all checksums are computed.
#![forbid(unsafe_code)]

use super::checksum::{finish, sum16};
use super::wire::{
    IPV4_DST_AT, IPV4_HEADER, IPV4_PROTOCOL_AT, IPV6_HEADER, TCP_DATA_OFFSET_AT, TCP_HEADER,
};
use super::{parse, Addrs, FrameInfo, Net};
use crate::policy::{Fragment, ReplyKind, IPPROTO_TCP};

/// Room a reply can need: link headers + 576 (IPv4) or 1280 (IPv6) bytes.
pub const MAX_REPLY_LEN: usize = 64 + 1280;

/// Smallest Ethernet frame (without FCS); shorter replies are zero-padded.
const MIN_FRAME: usize = 60;
const TTL: u8 = 64;
const ICMP4_MAX: usize = 576;
const ICMP6_MAX: usize = 1280;

/// Why no reply could be built. The datapath then drops the frame instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("not an IP packet with readable headers")]
    NotIp,
    #[error("a TCP reset needs a complete TCP header")]
    NoTcpHeader,
    #[error("the output buffer is too small")]
    BufferTooSmall,
}

/// Writes the reply to the frame `frame` into `out`; returns its length.
pub fn build_reply(frame: &[u8], kind: ReplyKind, out: &mut [u8]) -> Result<usize, ReplyError> {
    build_reply_parsed(frame, &parse(frame), kind, out)
}

/// [`build_reply`] for a frame already parsed (`info` is `parse(frame)`): the worker
/// parses each frame once, to classify it, and builds the reply from the same facts.
pub fn build_reply_parsed(
    frame: &[u8],
    info: &FrameInfo,
    kind: ReplyKind,
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    let Net::Ip {
        addrs,
        segment,
        l4_offset,
        malformed: false,
    } = info.net
    else {
        return Err(ReplyError::NotIp);
    };
    let l3 = write_link(frame, info, out)?;
    let ip_len = match kind {
        ReplyKind::TcpReset => {
            if segment.protocol != IPPROTO_TCP || segment.fragment == Fragment::Later {
                return Err(ReplyError::NoTcpHeader);
            }
            let tcp = frame
                .get(l4_offset..l4_offset + TCP_HEADER)
                .ok_or(ReplyError::NoTcpHeader)?;
            let ip_end = ip_end(frame, l3, addrs);
            let payload =
                ip_end.saturating_sub(l4_offset + usize::from(tcp[TCP_DATA_OFFSET_AT] >> 4) * 4);
            write_rst(addrs, tcp, payload, &mut out[l3..])?
        }
        ReplyKind::IcmpProhibited => {
            let ip_end = ip_end(frame, l3, addrs);
            let offending = &frame[l3..ip_end];
            match addrs {
                Addrs::V4 { src, dst } => write_icmp4(dst, src, offending, &mut out[l3..])?,
                Addrs::V6 { src, dst } => write_icmp6(dst, src, offending, &mut out[l3..])?,
            }
        }
        // Built by `notice::build` (it needs the class's text and the cookie key).
        ReplyKind::SmtpNotice => return Err(ReplyError::NoTcpHeader),
    };
    finish_frame(info, l3, ip_len, out)
}

/// The reply's link header: the MACs swapped, VLAN tags and PPPoE header copied
/// verbatim. Returns where the IP header starts.
fn write_link(frame: &[u8], info: &FrameInfo, out: &mut [u8]) -> Result<usize, ReplyError> {
    let l3 = info.link.l3_offset;
    if out.len() < l3 || frame.len() < l3 {
        return Err(ReplyError::BufferTooSmall);
    }
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    out[12..l3].copy_from_slice(&frame[12..l3]);
    Ok(l3)
}

/// Sets the PPPoE length (if any) for an IP packet of `ip_len` bytes at `l3` and pads
/// the frame to the Ethernet minimum. Returns the frame length.
fn finish_frame(
    info: &FrameInfo,
    l3: usize,
    ip_len: usize,
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    // PPPoE length covers the PPP protocol field (one byte when compressed) plus the IP
    // packet; the length field ends right before the protocol field.
    if let Some(_session) = info.link.pppoe_session {
        let proto_len = if info.link.ppp_compressed { 1 } else { 2 };
        let len_at = l3 - proto_len - 2;
        out[len_at..len_at + 2].copy_from_slice(&((ip_len + proto_len) as u16).to_be_bytes());
    }
    let mut total = l3 + ip_len;
    if total < MIN_FRAME {
        if out.len() < MIN_FRAME {
            return Err(ReplyError::BufferTooSmall);
        }
        out[total..MIN_FRAME].fill(0);
        total = MIN_FRAME;
    }
    Ok(total)
}

/// A TCP segment to send back: ports already swapped (from the replier's side).
pub(super) struct TcpReply<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: &'a [u8],
}

/// A whole reply frame carrying `seg` from the frame's destination (`addrs` as the
/// frame has them) back to its source, in the frame's encapsulation.
pub(super) fn write_tcp_reply(
    frame: &[u8],
    info: &FrameInfo,
    addrs: Addrs,
    seg: TcpReply<'_>,
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    let l3 = write_link(frame, info, out)?;
    let reply = match addrs {
        Addrs::V4 { src, dst } => Addrs::V4 { src: dst, dst: src },
        Addrs::V6 { src, dst } => Addrs::V6 { src: dst, dst: src },
    };
    let ip_len = write_tcp(reply, &seg, &mut out[l3..])?;
    finish_frame(info, l3, ip_len, out)
}

/// End of the IP packet in the frame (excludes Ethernet padding).
pub(super) fn ip_end(frame: &[u8], l3: usize, addrs: Addrs) -> usize {
    let declared = match addrs {
        Addrs::V4 { .. } => frame
            .get(l3 + 2..l3 + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
        Addrs::V6 { .. } => frame
            .get(l3 + 4..l3 + 6)
            .map(|b| IPV6_HEADER + usize::from(u16::from_be_bytes([b[0], b[1]]))),
    };
    declared.map_or(frame.len(), |d| (l3 + d).min(frame.len()))
}

fn write_ipv4_header(out: &mut [u8], total: usize, protocol: u8, src: u32, dst: u32) {
    out[0] = 0x45;
    out[1] = 0;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[4..6].copy_from_slice(&[0, 0]);
    out[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    out[8] = TTL;
    out[IPV4_PROTOCOL_AT] = protocol;
    out[10..12].copy_from_slice(&[0, 0]);
    out[12..16].copy_from_slice(&src.to_be_bytes());
    out[IPV4_DST_AT..IPV4_HEADER].copy_from_slice(&dst.to_be_bytes());
    let c = finish(sum16(&out[..IPV4_HEADER], 0));
    out[10..12].copy_from_slice(&c.to_be_bytes());
}

fn write_ipv6_header(out: &mut [u8], payload: usize, next: u8, src: u128, dst: u128) {
    out[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    out[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    out[6] = next;
    out[7] = TTL;
    out[8..24].copy_from_slice(&src.to_be_bytes());
    out[24..40].copy_from_slice(&dst.to_be_bytes());
}

/// Pseudo-header sum for a transport checksum.
fn pseudo_sum(addrs: Addrs, protocol: u8, len: usize) -> u32 {
    let mut s = match addrs {
        Addrs::V4 { src, dst } => sum16(&src.to_be_bytes(), sum16(&dst.to_be_bytes(), 0)),
        Addrs::V6 { src, dst } => sum16(&src.to_be_bytes(), sum16(&dst.to_be_bytes(), 0)),
    };
    s += u32::from(protocol);
    s += len as u32 & 0xffff;
    s += (len as u32) >> 16;
    s
}

fn write_rst(
    addrs: Addrs,
    seg: &[u8],
    payload: usize,
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    let sport = [seg[0], seg[1]];
    let dport = [seg[2], seg[3]];
    let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
    let ack = u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]);
    let flags = seg[13];
    let (syn, fin, has_ack) = (flags & 0x02 != 0, flags & 0x01 != 0, flags & 0x10 != 0);
    let (r_seq, r_ack, r_flags) = if has_ack {
        (ack, 0, 0x04)
    } else {
        let len = payload as u32 + u32::from(syn) + u32::from(fin);
        (0, seq.wrapping_add(len), 0x14)
    };
    // Reply addresses: from the destination back to the source.
    let reply = match addrs {
        Addrs::V4 { src, dst } => Addrs::V4 { src: dst, dst: src },
        Addrs::V6 { src, dst } => Addrs::V6 { src: dst, dst: src },
    };
    let seg = TcpReply {
        sport: u16::from_be_bytes(dport),
        dport: u16::from_be_bytes(sport),
        seq: r_seq,
        ack: r_ack,
        flags: r_flags,
        window: 0,
        payload: &[],
    };
    write_tcp(reply, &seg, out)
}

/// The IP header and TCP segment `seg` from `reply.src` to `reply.dst` (no options).
/// Returns the IP packet's length.
fn write_tcp(reply: Addrs, seg: &TcpReply<'_>, out: &mut [u8]) -> Result<usize, ReplyError> {
    let ip_header = match reply {
        Addrs::V4 { .. } => IPV4_HEADER,
        Addrs::V6 { .. } => IPV6_HEADER,
    };
    let tcp_len = TCP_HEADER + seg.payload.len();
    let total = ip_header + tcp_len;
    if out.len() < total {
        return Err(ReplyError::BufferTooSmall);
    }
    match reply {
        Addrs::V4 { src, dst } => write_ipv4_header(out, total, IPPROTO_TCP, src, dst),
        Addrs::V6 { src, dst } => write_ipv6_header(out, tcp_len, IPPROTO_TCP, src, dst),
    }
    let t = &mut out[ip_header..total];
    t[0..2].copy_from_slice(&seg.sport.to_be_bytes());
    t[2..4].copy_from_slice(&seg.dport.to_be_bytes());
    t[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    t[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    t[TCP_DATA_OFFSET_AT] = ((TCP_HEADER / 4) as u8) << 4;
    t[13] = seg.flags;
    t[14..16].copy_from_slice(&seg.window.to_be_bytes());
    t[16..20].copy_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    t[TCP_HEADER..].copy_from_slice(seg.payload);
    let c = finish(sum16(t, pseudo_sum(reply, IPPROTO_TCP, tcp_len)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

fn write_icmp4(src: u32, dst: u32, offending: &[u8], out: &mut [u8]) -> Result<usize, ReplyError> {
    let quote = offending.len().min(ICMP4_MAX - 28);
    let total = 28 + quote;
    if out.len() < total {
        return Err(ReplyError::BufferTooSmall);
    }
    write_ipv4_header(out, total, 1, src, dst);
    let m = &mut out[IPV4_HEADER..total];
    m[..8].copy_from_slice(&[3, 13, 0, 0, 0, 0, 0, 0]);
    m[8..].copy_from_slice(&offending[..quote]);
    let c = finish(sum16(m, 0));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

fn write_icmp6(
    src: u128,
    dst: u128,
    offending: &[u8],
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    let quote = offending.len().min(ICMP6_MAX - 48);
    let total = 48 + quote;
    if out.len() < total {
        return Err(ReplyError::BufferTooSmall);
    }
    write_ipv6_header(out, 8 + quote, 58, src, dst);
    let m = &mut out[IPV6_HEADER..total];
    m[..8].copy_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    m[8..].copy_from_slice(&offending[..quote]);
    let c = finish(sum16(m, pseudo_sum(Addrs::V6 { src, dst }, 58, 8 + quote)));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}
