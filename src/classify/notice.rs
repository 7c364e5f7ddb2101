//! `reply: smtp-notice`: op25b answers a blocked SMTP connection itself, statelessly, with
//! an SMTP greeting that says why it is blocked (`554 5.7.1 ...`), then closes.
//!
//! The SYN is answered with a SYN-ACK whose sequence number is a keyed cookie over the
//! 4-tuple and a coarse time slot, as SYN cookies are; the client's ACK that acknowledges
//! a valid cookie (and carries no data) gets the greeting with FIN. Anything else for
//! the flow (data before the greeting, a late ACK, a bad cookie, the client's FIN) gets a
//! RST; a RST gets nothing. No per-connection state: a SYN flood costs the worker one
//! hash and one reply per token of the reply budget, nothing more.
#![forbid(unsafe_code)]

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

use super::wire::{TCP_DATA_OFFSET_AT, TCP_HEADER};
use super::{Addrs, FrameInfo, Net};
use crate::policy::{Fragment, IPPROTO_TCP};

/// Seconds per cookie time slot; a cookie is accepted in its slot and the next one
/// (64-128 s after the SYN-ACK).
pub const SLOT_SECS: u64 = 64;

/// TCP flags.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// The window op25b advertises in its SYN-ACK and greeting.
const WINDOW: u16 = 1024;

/// The secret the cookies are keyed with (random per process; every worker has the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieKey(pub [u64; 2]);

impl CookieKey {
    /// 16 bytes from the kernel's random source.
    pub fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        let k0 = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let k1 = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
        Ok(Self([k0, k1]))
    }
}

/// The cookie of a flow (as the client sends it: `src` is the client) in time `slot`.
pub fn cookie(key: CookieKey, addrs: Addrs, sport: u16, dport: u16, slot: u64) -> u32 {
    let mut h = SipHasher13::new_with_keys(key.0[0], key.0[1]);
    match addrs {
        Addrs::V4 { src, dst } => {
            h.write_u32(src);
            h.write_u32(dst);
        }
        Addrs::V6 { src, dst } => {
            h.write_u128(src);
            h.write_u128(dst);
        }
    }
    h.write_u16(sport);
    h.write_u16(dport);
    h.write_u64(slot);
    h.finish() as u32
}

/// The time slot of `now_secs`.
#[inline]
pub fn slot(now_secs: u64) -> u64 {
    now_secs / SLOT_SECS
}

/// What the notice does with one blocked TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeStep {
    /// A SYN: answer with a SYN-ACK carrying this cookie as its sequence number.
    SynAck { cookie: u32 },
    /// The ACK of a valid cookie: send the greeting (sequence `cookie + 1`) with FIN.
    Greeting { cookie: u32 },
    /// Anything else: a RST.
    Refuse,
    /// A RST (or a segment without a TCP header): no answer.
    Silent,
}

/// The TCP header fields the notice reads.
struct Tcp {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: usize,
}

fn tcp_of(frame: &[u8], info: &FrameInfo) -> Option<(Addrs, Tcp)> {
    let Net::Ip {
        addrs,
        segment,
        l4_offset,
        malformed: false,
    } = info.net
    else {
        return None;
    };
    if segment.protocol != IPPROTO_TCP || segment.fragment != Fragment::Whole {
        return None;
    }
    let t = frame.get(l4_offset..l4_offset + TCP_HEADER)?;
    let be16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let header = usize::from(t[TCP_DATA_OFFSET_AT] >> 4) * 4;
    let end = super::reply::ip_end(frame, info.link.l3_offset, addrs);
    let payload = end.checked_sub(l4_offset + header)?;
    Some((
        addrs,
        Tcp {
            sport: be16(0),
            dport: be16(2),
            seq: be32(4),
            ack: be32(8),
            flags: t[13],
            payload,
        },
    ))
}

/// Decides the step for a blocked segment `frame` (parsed as `info`) at `now_secs`.
pub fn step(frame: &[u8], info: &FrameInfo, key: CookieKey, now_secs: u64) -> NoticeStep {
    let Some((addrs, t)) = tcp_of(frame, info) else {
        return NoticeStep::Silent;
    };
    if t.flags & RST != 0 {
        return NoticeStep::Silent;
    }
    let now = slot(now_secs);
    if t.flags & (SYN | ACK) == SYN {
        return NoticeStep::SynAck {
            cookie: cookie(key, addrs, t.sport, t.dport, now),
        };
    }
    if t.flags & (SYN | ACK | FIN) == ACK && t.payload == 0 {
        let c = t.ack.wrapping_sub(1);
        for s in [now, now.wrapping_sub(1)] {
            if cookie(key, addrs, t.sport, t.dport, s) == c {
                return NoticeStep::Greeting { cookie: c };
            }
        }
    }
    NoticeStep::Refuse
}

/// Builds the reply for `step` (not [`NoticeStep::Refuse`], which is a plain RST, nor
/// `Silent`) into `out`: the SYN-ACK, or the greeting `text` (the whole multi-line SMTP
/// reply, CRLF included) with PSH|ACK|FIN. Returns its length.
pub fn build(
    frame: &[u8],
    info: &FrameInfo,
    step: NoticeStep,
    text: &[u8],
    out: &mut [u8],
) -> Result<usize, super::reply::ReplyError> {
    use super::reply::ReplyError;
    let (addrs, t) = tcp_of(frame, info).ok_or(ReplyError::NoTcpHeader)?;
    let (seq, ack, flags, payload): (u32, u32, u8, &[u8]) = match step {
        // The SYN's sequence number plus one (any data on it is not taken).
        NoticeStep::SynAck { cookie } => (cookie, t.seq.wrapping_add(1), SYN | ACK, &[]),
        NoticeStep::Greeting { cookie } => (cookie.wrapping_add(1), t.seq, PSH | ACK | FIN, text),
        NoticeStep::Refuse | NoticeStep::Silent => return Err(ReplyError::NoTcpHeader),
    };
    super::reply::write_tcp_reply(
        frame,
        info,
        addrs,
        super::reply::TcpReply {
            sport: t.dport,
            dport: t.sport,
            seq,
            ack,
            flags,
            window: WINDOW,
            payload,
        },
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: CookieKey = CookieKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);

    #[test]
    fn cookies_depend_on_key_tuple_and_slot() {
        let a = Addrs::V4 {
            src: 0xc633_640a,
            dst: 0xcb00_7150,
        };
        let c = cookie(KEY, a, 40001, 25, 7);
        assert_eq!(c, cookie(KEY, a, 40001, 25, 7));
        assert_ne!(c, cookie(KEY, a, 40002, 25, 7));
        assert_ne!(c, cookie(KEY, a, 40001, 25, 8));
        assert_ne!(c, cookie(CookieKey([1, 2]), a, 40001, 25, 7));
        let b = Addrs::V4 {
            src: 0xc633_640b,
            dst: 0xcb00_7150,
        };
        assert_ne!(c, cookie(KEY, b, 40001, 25, 7));
    }

    #[test]
    fn slots_are_coarse() {
        assert_eq!(slot(0), slot(SLOT_SECS - 1));
        assert_ne!(slot(0), slot(SLOT_SECS));
    }
}
