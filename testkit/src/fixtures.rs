//! The golden fixture table: `{description, frame bytes, direction, expected verdict}`.
//!
//! One table feeds the unit tests, the criterion benches, the fuzz seed corpus and the lab
//! checks. Frames are built with etherparse's `PacketBuilder` for the IP/TCP part and by
//! hand for link encapsulations and deliberate damage. [`policy`] is the policy they are
//! judged against: `configs/lab.yaml`'s, compiled in ([`LAB_YAML`]; the lab policy has one
//! source, and the tests at the foot check that the [`addr`] names agree with it).
#![forbid(unsafe_code)]

use etherparse::PacketBuilder;

use op25b::policy::{ClassId, Direction, Policy, PolicyBuilder, Reason, ReplyKind, Verdict};

/// The table has at least this many rows.
pub const FIXTURE_MIN: usize = 40;

/// A subscriber host's MAC in fixture frames (locally administered).
pub const SUB_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// The upstream router's MAC in fixture frames (locally administered).
pub const UP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// Addresses of the lab: a dynamic pool with a static customer, a quarantine block, a pool
/// answered with ICMP, an ISP relay and an external MTA.
pub mod addr {
    pub const DYNAMIC4: [u8; 4] = [198, 51, 100, 10];
    pub const STATIC4: [u8; 4] = [198, 51, 100, 200];
    pub const QUARANTINE4: [u8; 4] = [198, 51, 100, 130];
    pub const ICMP4: [u8; 4] = [192, 0, 2, 10];
    /// A host of the SMTP-notice pool (192.0.2.128/26).
    pub const NOTICE4: [u8; 4] = [192, 0, 2, 140];
    pub const UNMATCHED4: [u8; 4] = [192, 0, 2, 200];
    pub const RELAY4: [u8; 4] = [203, 0, 113, 25];
    pub const EXTERNAL4: [u8; 4] = [203, 0, 113, 80];

    const fn v6(last: [u8; 10], tail: u8) -> [u8; 16] {
        [
            0x20, 0x01, 0x0d, 0xb8, last[0], last[1], last[2], last[3], last[4], last[5], last[6],
            last[7], last[8], last[9], 0, tail,
        ]
    }
    /// 2001:db8:100::10
    pub const DYNAMIC6: [u8; 16] = v6([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x10);
    /// 2001:db8:100::200 (a /128 inside the dynamic /48)
    pub const STATIC6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00,
    ];
    /// 2001:db8:100:666::10
    pub const QUARANTINE6: [u8; 16] = v6([1, 0, 6, 0x66, 0, 0, 0, 0, 0, 0], 0x10);
    /// 2001:db8:200::10
    pub const ICMP6: [u8; 16] = v6([2, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x10);
    /// 2001:db8:300::10 (the SMTP-notice pool)
    pub const NOTICE6: [u8; 16] = v6([3, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0x10);
    /// 2001:db8:999::10
    pub const UNMATCHED6: [u8; 16] = v6([9, 0x99, 0, 0, 0, 0, 0, 0, 0, 0], 0x10);
    /// 2001:db8:ff::25
    pub const RELAY6: [u8; 16] = v6([0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0], 0x25);
    /// 2001:db8:ff::80
    pub const EXTERNAL6: [u8; 16] = v6([0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0], 0x80);
}

/// The lab policy's one source: `configs/lab.yaml`, compiled in.
pub const LAB_YAML: &str = include_str!("../../configs/lab.yaml");
/// Where [`LAB_YAML`] lives (anchors its relative paths, names it in errors).
pub const LAB_YAML_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/lab.yaml");

/// The lab policy's builder, before `build` (compiled from [`LAB_YAML`] by the config
/// loader), and its classes dynamic, static, quarantine and icmp, in that order.
/// Benchmarks add prefixes to it.
pub fn builder() -> (PolicyBuilder, [ClassId; 4]) {
    let (b, ids) = op25b::config::policy_builder_str(std::path::Path::new(LAB_YAML_PATH), LAB_YAML)
        .expect("configs/lab.yaml loads");
    let id = |n: &str| {
        *ids.get(n)
            .unwrap_or_else(|| panic!("configs/lab.yaml has no class {n}"))
    };
    (
        b,
        [id("dynamic"), id("static"), id("quarantine"), id("icmp")],
    )
}

/// The policy the fixtures are judged against: `configs/lab.yaml`'s.
pub fn policy() -> Policy {
    builder().0.build().expect("lab policy builds")
}

/// `n` distinct IPv6 prefixes, /32 to /64 inside 2000::/3 and clear of 2001:db8::/32
/// (the fixtures' addresses), the same on every call: filler that makes a policy's IPv6
/// table as big as an ISP's, for the paths only a big table takes (the burst
/// classifier's batched lookups, `op25b::policy::Policy::batch_v6_lookups`).
pub fn filler_v6(n: usize) -> Vec<ipnet::IpNet> {
    // xorshift64*: deterministic, no dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let doc = u128::from(0x2001_0db8u32) << 96;
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let top = (u128::from(next()) << 64 | u128::from(next())) >> 3 | 1u128 << 125;
        let len = 32 + (next() % 33) as u8;
        let net = top & !(u128::MAX >> len);
        if net >> 96 == doc >> 96 || !seen.insert((net, len)) {
            continue;
        }
        out.push(ipnet::IpNet::V6(
            ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(net), len).expect("length <= 64"),
        ));
    }
    out
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub description: String,
    pub frame: Vec<u8>,
    pub direction: Direction,
    pub expected: Verdict,
}

/// Link-layer wrapping for a fixture.
#[derive(Clone, Copy, Debug)]
pub enum Encap {
    Plain,
    Vlan(u16),
    /// Outer TPID (0x88a8 or 0x9100), outer id, inner id.
    QinQ(u16, u16, u16),
    /// PPPoE session id.
    Pppoe(u16),
    /// 802.1Q tag then PPPoE session.
    VlanPppoe(u16, u16),
    /// PPPoE session id, the PPP protocol field compressed to one byte (RFC 1661 PFC).
    PppoeCompressed(u16),
}

/// Wraps an IP packet (`is_v6` picks the EtherType / PPP protocol) in Ethernet + `encap`.
pub fn wrap(encap: Encap, ip: &[u8], is_v6: bool, from_subscriber: bool) -> Vec<u8> {
    let (dst, src) = if from_subscriber {
        (UP_MAC, SUB_MAC)
    } else {
        (SUB_MAC, UP_MAC)
    };
    let et: u16 = if is_v6 { 0x86dd } else { 0x0800 };
    let ppp: u16 = if is_v6 { 0x0057 } else { 0x0021 };
    let mut f = Vec::with_capacity(ip.len() + 30);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    let pppoe_with = |f: &mut Vec<u8>, session: u16, compressed: bool| {
        f.extend_from_slice(&0x8864u16.to_be_bytes());
        f.extend_from_slice(&[0x11, 0x00]);
        f.extend_from_slice(&session.to_be_bytes());
        let proto_len = if compressed { 1 } else { 2 };
        f.extend_from_slice(&((ip.len() + proto_len) as u16).to_be_bytes());
        f.extend_from_slice(&ppp.to_be_bytes()[2 - proto_len..]);
    };
    let pppoe = |f: &mut Vec<u8>, session: u16| pppoe_with(f, session, false);
    match encap {
        Encap::Plain => f.extend_from_slice(&et.to_be_bytes()),
        Encap::Vlan(id) => {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&et.to_be_bytes());
        }
        Encap::QinQ(tpid, outer, inner) => {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&outer.to_be_bytes());
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&inner.to_be_bytes());
            f.extend_from_slice(&et.to_be_bytes());
        }
        Encap::Pppoe(session) => pppoe(&mut f, session),
        Encap::VlanPppoe(id, session) => {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&id.to_be_bytes());
            pppoe(&mut f, session);
        }
        Encap::PppoeCompressed(session) => pppoe_with(&mut f, session, true),
    }
    f.extend_from_slice(ip);
    f
}

/// TCP flags for [`tcp4`]/[`tcp6`].
#[derive(Clone, Copy, Debug)]
pub enum Tcp {
    Syn,
    /// ACK with this ack number and PSH, carrying the payload.
    Data(u32),
    /// A pure ACK with this ack number (the third packet of a handshake).
    Ack(u32),
}

fn tcp_step(
    step: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    sport: u16,
    dport: u16,
    flags: Tcp,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    let s = step.tcp(sport, dport, 1_000_000, 64240);
    match flags {
        Tcp::Syn => s.syn(),
        Tcp::Data(ack) => s.ack(ack).psh(),
        Tcp::Ack(ack) => s.ack(ack),
    }
}

/// An IPv4/TCP packet (no link header).
pub fn tcp4(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: Tcp,
    payload: &[u8],
) -> Vec<u8> {
    let b = tcp_step(PacketBuilder::ipv4(src, dst, 64), sport, dport, flags);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("vec write");
    out
}

/// An IPv6/TCP packet (no link header).
pub fn tcp6(
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    flags: Tcp,
    payload: &[u8],
) -> Vec<u8> {
    let b = tcp_step(PacketBuilder::ipv6(src, dst, 64), sport, dport, flags);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("vec write");
    out
}

/// An IPv4/UDP packet.
pub fn udp4(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(40000, dport)
        .write(&mut out, b"udp")
        .expect("vec write");
    out
}

/// An IPv6/UDP packet.
pub fn udp6(src: [u8; 16], dst: [u8; 16], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .udp(40000, dport)
        .write(&mut out, b"udp")
        .expect("vec write");
    out
}

/// RFC 1071 checksum of `data` (the library's one implementation).
pub use op25b::classify::checksum::internet_checksum;

/// Recomputes the IPv4 header checksum in place (over the header IHL claims, or as
/// much of it as there is).
pub fn fix_ipv4_checksum(ip: &mut [u8]) {
    let ihl = (usize::from(ip[0] & 0x0f) * 4).clamp(12, ip.len());
    ip[10] = 0;
    ip[11] = 0;
    let c = internet_checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Inserts IPv4 options (`opts.len()` a multiple of 4) and fixes IHL, length, checksum.
pub fn with_ipv4_options(ip: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut out = ip[..20].to_vec();
    out.extend_from_slice(opts);
    out.extend_from_slice(&ip[20..]);
    out[0] = 0x40 | ((20 + opts.len()) / 4) as u8;
    let total = out.len() as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

/// Turns an IPv4 packet into one fragment: keeps `keep` payload bytes starting at byte
/// `offset8 * 8` of the payload, sets MF when `more`.
pub fn ipv4_fragment(ip: &[u8], offset8: u16, keep: usize, more: bool) -> Vec<u8> {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let start = ihl + usize::from(offset8) * 8;
    let mut out = ip[..ihl].to_vec();
    out.extend_from_slice(&ip[start.min(ip.len())..(start + keep).min(ip.len())]);
    let total = out.len() as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    let flags_off = offset8 | if more { 0x2000 } else { 0 };
    out[6..8].copy_from_slice(&flags_off.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

/// An IPv6 extension header to splice in with [`with_ipv6_exts`].
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop,
    DestOpts,
    Routing,
    /// Fragment offset in 8-byte units, more-fragments flag.
    Fragment(u16, bool),
    Auth,
    /// A header in the generic format (RFC 6564) with this number, `len8` 8-byte units
    /// long (1 to 32), filled with one PadN option (valid in hop-by-hop and destination
    /// options; opaque content for the others).
    Generic(u8, u8),
}

impl Ext {
    /// Its Next Header number.
    pub fn number(self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::DestOpts => 60,
            Ext::Routing => 43,
            Ext::Fragment(..) => 44,
            Ext::Auth => 51,
            Ext::Generic(n, _) => n,
        }
    }
    /// Its bytes, followed by `next`.
    pub fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::Generic(_, len8) => {
                let len = usize::from(len8.clamp(1, 32)) * 8;
                let mut v = vec![next, (len / 8 - 1) as u8, 1, (len - 4) as u8];
                v.resize(len, 0);
                v
            }
            // PadN option filling the 8 bytes.
            Ext::HopByHop | Ext::DestOpts => vec![next, 0, 1, 4, 0, 0, 0, 0],
            // Type 4 (segment routing) with no segments left: ignored by receivers.
            Ext::Routing => vec![next, 0, 4, 0, 0, 0, 0, 0],
            Ext::Fragment(off, more) => {
                let v = (off << 3) | u16::from(more);
                let b = v.to_be_bytes();
                vec![next, 0, b[0], b[1], 0, 0, 0x12, 0x34]
            }
            // payload len 4 -> (4 + 2) * 4 = 24 bytes: SPI, seq, 12-byte ICV.
            Ext::Auth => {
                let mut v = vec![next, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
                v.extend_from_slice(&[0; 12]);
                v
            }
        }
    }
}

/// Splices extension headers between the IPv6 header and its payload; with a fragment
/// header whose offset is non-zero, `cut` keeps only that many payload bytes.
pub fn with_ipv6_exts(ip: &[u8], exts: &[Ext], cut: Option<usize>) -> Vec<u8> {
    let upper = ip[6];
    let mut chain = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(upper, |n| n.number());
        chain.extend_from_slice(&e.bytes(next));
    }
    let mut out = ip[..40].to_vec();
    out[6] = exts.first().map_or(upper, |e| e.number());
    out.extend_from_slice(&chain);
    let payload = &ip[40..];
    out.extend_from_slice(&payload[..cut.unwrap_or(payload.len()).min(payload.len())]);
    let plen = (out.len() - 40) as u16;
    out[4..6].copy_from_slice(&plen.to_be_bytes());
    out
}

/// The chain of `exts` (each header's Next Header pointing at the following one) ended
/// by `upper`.
pub fn ipv6_chain(exts: &[Ext], upper: u8) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(upper, |n| n.number());
        chain.extend_from_slice(&e.bytes(next));
    }
    chain
}

/// Fragments an IPv6 packet `ip` (no extension headers of its own) as a source does
/// (RFC 8200 4.5): the `unfragmentable` headers are repeated in every fragment, then a
/// fragment header (identification `id`), then a piece of the fragmentable part (the
/// `fragmentable` headers, then the upper-layer payload) of `piece8 * 8` bytes, the last
/// piece shorter. The fragments are IPv6 packets, in order.
pub fn ipv6_fragments(
    ip: &[u8],
    unfragmentable: &[Ext],
    fragmentable: &[Ext],
    piece8: usize,
    id: u32,
) -> Vec<Vec<u8>> {
    let upper = ip[6];
    let mut part = ipv6_chain(fragmentable, upper);
    part.extend_from_slice(&ip[40..]);
    let first_fragmentable = fragmentable.first().map_or(upper, |e| e.number());
    let unfrag = ipv6_chain(unfragmentable, 44);
    let piece = piece8.max(1) * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < part.len() {
        let end = (off + piece).min(part.len());
        let more = end < part.len();
        let mut f = ip[..40].to_vec();
        f[6] = unfragmentable.first().map_or(44, |e| e.number());
        f.extend_from_slice(&unfrag);
        let v = ((off / 8) as u16) << 3 | u16::from(more);
        f.extend_from_slice(&[first_fragmentable, 0]);
        f.extend_from_slice(&v.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&part[off..end]);
        let plen = (f.len() - 40) as u16;
        f[4..6].copy_from_slice(&plen.to_be_bytes());
        out.push(f);
        off = end;
    }
    out
}

/// Fragments an IPv4 packet into pieces of `piece8 * 8` payload bytes, in order.
pub fn ipv4_fragments(ip: &[u8], piece8: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let payload = ip.len() - ihl;
    let piece = piece8.max(1) * 8;
    (0..payload)
        .step_by(piece)
        .map(|off| ipv4_fragment(ip, (off / 8) as u16, piece, off + piece < payload))
        .collect()
}

/// Reassembles IP fragments (IPv4 or IPv6 packets, not frames) the way a receiving stack
/// does: `None` unless they make one whole datagram (offset 0 through a last fragment
/// without M, no gap). The first fragment's headers lead the result (RFC 791, RFC 8200
/// 4.5: the Next Header of the offset-0 fragment's fragment header is used). Overlaps
/// are written in arrival order (a stack without RFC 5722 might take either).
pub fn reassemble(fragments: &[&[u8]]) -> Option<Vec<u8>> {
    struct Piece<'a> {
        off: usize,
        more: bool,
        data: &'a [u8],
    }
    let first = fragments.first()?;
    let v6 = first.first()? >> 4 == 6;
    let mut pieces = Vec::new();
    let mut head: Option<Vec<u8>> = None;
    for f in fragments {
        if v6 {
            let end = 40 + usize::from(u16::from_be_bytes([*f.get(4)?, *f.get(5)?]));
            let mut next = *f.get(6)?;
            let mut p = 40;
            while next != 44 {
                if !matches!(next, 0 | 43 | 60) {
                    return None;
                }
                next = *f.get(p)?;
                p += (usize::from(*f.get(p + 1)?) + 1) * 8;
            }
            let fh = f.get(p..p + 8)?;
            let v = u16::from_be_bytes([fh[2], fh[3]]);
            let off = usize::from(v >> 3) * 8;
            if off == 0 {
                let mut h = f.get(..p)?.to_vec();
                // The header before the fragment header now names the upper part.
                if p == 40 {
                    h[6] = fh[0];
                } else {
                    // Find the last unfragmentable header again and relink it.
                    let mut q = 40;
                    loop {
                        let len = (usize::from(h[q + 1]) + 1) * 8;
                        if q + len == p {
                            h[q] = fh[0];
                            break;
                        }
                        q += len;
                    }
                }
                head = Some(h);
            }
            pieces.push(Piece {
                off,
                more: v & 1 == 1,
                data: f.get(p + 8..end)?,
            });
        } else {
            let ihl = usize::from(f.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*f.get(2)?, *f.get(3)?]));
            let v = u16::from_be_bytes([*f.get(6)?, *f.get(7)?]);
            let off = usize::from(v & 0x1fff) * 8;
            if off == 0 {
                head = Some(f.get(..ihl)?.to_vec());
            }
            pieces.push(Piece {
                off,
                more: v & 0x2000 != 0,
                data: f.get(ihl..total)?,
            });
        }
    }
    let last = pieces.iter().find(|p| !p.more)?;
    let len = last.off + last.data.len();
    let mut data = vec![0u8; len];
    let mut covered = vec![false; len];
    for p in &pieces {
        let end = (p.off + p.data.len()).min(len);
        if p.off >= end {
            continue;
        }
        data[p.off..end].copy_from_slice(&p.data[..end - p.off]);
        covered[p.off..end].iter_mut().for_each(|c| *c = true);
    }
    if !covered.iter().all(|&c| c) {
        return None;
    }
    let mut out = head?;
    out.extend_from_slice(&data);
    if v6 {
        let plen = u16::try_from(out.len() - 40).ok()?;
        out[4..6].copy_from_slice(&plen.to_be_bytes());
    } else {
        let total = u16::try_from(out.len()).ok()?;
        out[2..4].copy_from_slice(&total.to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]);
        fix_ipv4_checksum(&mut out);
    }
    Some(out)
}

/// The whole table.
#[rustfmt::skip]
pub fn all() -> Vec<Fixture> {
    use addr::*;
    use Direction::{Inbound, Outbound};
    use Reason::*;
    use Verdict::{Drop, Forward, Reject};
    const RST: ReplyKind = ReplyKind::TcpReset;
    const ICMP: ReplyKind = ReplyKind::IcmpProhibited;
    const NOTICE: ReplyKind = ReplyKind::SmtpNotice;

    let mut t: Vec<Fixture> = Vec::new();
    let mut add = |description: &str, frame: Vec<u8>, direction: Direction, expected: Verdict| {
        t.push(Fixture {
            description: description.to_string(),
            frame,
            direction,
            expected,
        })
    };
    let syn4 = |src, dst, dport| tcp4(src, dst, 40001, dport, Tcp::Syn, &[]);
    let syn6 = |src, dst, dport| tcp6(src, dst, 40001, dport, Tcp::Syn, &[]);
    let out4 = |ip: Vec<u8>| wrap(Encap::Plain, &ip, false, true);
    let out6 = |ip: Vec<u8>| wrap(Encap::Plain, &ip, true, true);

    // --- IPv4, plain Ethernet --------------------------------------------------------
    add("v4 dynamic -> external:25 SYN", out4(syn4(DYNAMIC4, EXTERNAL4, 25)), Outbound, Reject(BlockedPort, RST));
    add("v4 dynamic -> relay:25 SYN", out4(syn4(DYNAMIC4, RELAY4, 25)), Outbound, Forward(AllowedDestination));
    add("v4 dynamic -> external:587 SYN", out4(syn4(DYNAMIC4, EXTERNAL4, 587)), Outbound, Forward(PortOpen));
    add("v4 dynamic -> external:465 SYN", out4(syn4(DYNAMIC4, EXTERNAL4, 465)), Outbound, Forward(PortOpen));
    add("v4 static /32 in dynamic pool -> external:25", out4(syn4(STATIC4, EXTERNAL4, 25)), Outbound, Forward(PortOpen));
    add("v4 quarantine -> external:587", out4(syn4(QUARANTINE4, EXTERNAL4, 587)), Outbound, Drop(BlockedPort));
    add("v4 icmp class -> external:25", out4(syn4(ICMP4, EXTERNAL4, 25)), Outbound, Reject(BlockedPort, ICMP));
    add("v4 notice class -> external:25 SYN", out4(syn4(NOTICE4, EXTERNAL4, 25)), Outbound, Reject(BlockedPort, NOTICE));
    add("v4 notice class -> external:25 ACK", out4(tcp4(NOTICE4, EXTERNAL4, 40001, 25, Tcp::Ack(1), &[])), Outbound, Reject(BlockedPort, NOTICE));
    add("v4 notice class -> external:587 SYN", out4(syn4(NOTICE4, EXTERNAL4, 587)), Outbound, Forward(PortOpen));
    add("v4 unmatched -> external:25", out4(syn4(UNMATCHED4, EXTERNAL4, 25)), Outbound, Forward(Unmatched));
    add("v4 UDP dynamic -> external:25", out4(udp4(DYNAMIC4, EXTERNAL4, 25)), Outbound, Forward(NotTcp));
    let mut icmp_echo = Vec::new();
    PacketBuilder::ipv4(DYNAMIC4, EXTERNAL4, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp_echo, b"ping")
        .expect("vec write");
    add("v4 ICMP echo", out4(icmp_echo), Outbound, Forward(NotTcp));
    add("v4 with options dynamic -> external:25", out4(with_ipv4_options(&syn4(DYNAMIC4, EXTERNAL4, 25), &[0x01, 0x01, 0x01, 0x00])), Outbound, Reject(BlockedPort, RST));
    add("v4 mid-stream data dynamic -> external:25", out4(tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Data(77), b"MAIL FROM:<a@b>\r\n")), Outbound, Reject(BlockedPort, RST));
    add("v4 inbound external -> dynamic:25", wrap(Encap::Plain, &syn4(EXTERNAL4, DYNAMIC4, 25), false, false), Inbound, Drop(InboundSmtp));
    add("v4 inbound return traffic external:25 -> dynamic", wrap(Encap::Plain, &tcp4(EXTERNAL4, DYNAMIC4, 25, 40001, Tcp::Data(1), b"220 hi\r\n"), false, false), Inbound, Forward(PortOpen));
    add("v4 inbound external -> static:25", wrap(Encap::Plain, &syn4(EXTERNAL4, STATIC4, 25), false, false), Inbound, Forward(PortOpen));

    // --- IPv4 fragments and damage -----------------------------------------------------
    let data25 = tcp4(DYNAMIC4, EXTERNAL4, 40001, 25, Tcp::Data(5), &[0x41; 64]);
    add("v4 first fragment with ports", out4(ipv4_fragment(&data25, 0, 24, true)), Outbound, Reject(BlockedPort, RST));
    add("v4 tiny first fragment (2 TCP bytes)", out4(ipv4_fragment(&data25, 0, 2, true)), Outbound, Drop(TinyFragment));
    add("v4 later fragment", out4(ipv4_fragment(&data25, 3, 40, false)), Outbound, Forward(NonFirstFragment));
    let mut short_tcp = syn4(DYNAMIC4, EXTERNAL4, 25);
    short_tcp.truncate(30);
    short_tcp[2..4].copy_from_slice(&30u16.to_be_bytes());
    fix_ipv4_checksum(&mut short_tcp);
    add("v4 TCP header cut to 10 bytes", out4(short_tcp), Outbound, Drop(MalformedTcp));
    let mut bad_ihl = syn4(DYNAMIC4, EXTERNAL4, 25);
    bad_ihl[0] = 0x44;
    add("v4 IHL 4 (below minimum), TCP", out4(bad_ihl), Outbound, Drop(MalformedTcp));
    let mut long_total = syn4(DYNAMIC4, EXTERNAL4, 25);
    long_total[2..4].copy_from_slice(&200u16.to_be_bytes());
    add("v4 total length past the frame, TCP", out4(long_total), Outbound, Drop(MalformedTcp));
    add("v4 header cut at 19 bytes", out4(syn4(DYNAMIC4, EXTERNAL4, 25)[..19].to_vec()), Outbound, Forward(MalformedIp));
    let mut v6_in_v4 = syn4(DYNAMIC4, EXTERNAL4, 25);
    v6_in_v4[0] = 0x65;
    add("v4 EtherType carrying version 6", out4(v6_in_v4), Outbound, Forward(MalformedIp));
    let mut bad_ihl_udp = udp4(DYNAMIC4, EXTERNAL4, 25);
    bad_ihl_udp[0] = 0x43;
    add("v4 IHL 3, UDP", out4(bad_ihl_udp), Outbound, Forward(MalformedIp));
    let mut bad_doff = syn4(DYNAMIC4, EXTERNAL4, 25);
    bad_doff[20 + 12] = 0x40;
    add("v4 TCP data offset 4", out4(bad_doff), Outbound, Drop(MalformedTcp));
    let mut long_doff = syn4(DYNAMIC4, EXTERNAL4, 25);
    long_doff[20 + 12] = 0xf0;
    add("v4 TCP data offset past the segment", out4(long_doff), Outbound, Drop(MalformedTcp));

    // --- Link layer --------------------------------------------------------------------
    let raw = |et: u16, body: &[u8]| {
        let mut f = UP_MAC.to_vec();
        f.extend_from_slice(&SUB_MAC);
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(body);
        f
    };
    add("ARP request", raw(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 51, 100, 10, 0, 0, 0, 0, 0, 0, 198, 51, 100, 1,]), Outbound, Forward(NotIp));
    add("LLDP", raw(0x88cc, &[0x02, 0x07, 0x04, 2, 0, 0, 0, 0, 1, 0, 0]), Outbound, Forward(NotIp));
    add("STP (802.3 length + LLC)", raw(0x0026, &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]), Outbound, Forward(NotIp));
    add("PPPoE discovery (PADI)", raw(0x8863, &[0x11, 0x09, 0, 0, 0, 4, 1, 1, 0, 0]), Outbound, Forward(NotIp));
    add("runt (10 bytes)", vec![0xff; 10], Outbound, Forward(MalformedLink));
    add("VLAN tag cut short", raw(0x8100, &[0x00]), Outbound, Forward(MalformedLink));
    let vlan25 = wrap(
        Encap::Vlan(100),
        &syn4(DYNAMIC4, EXTERNAL4, 25),
        false,
        true,
    );
    add("802.1Q v4 dynamic -> external:25", vlan25.clone(), Outbound, Reject(BlockedPort, RST));
    add("802.1Q v4 dynamic -> external:587", wrap(Encap::Vlan(100), &syn4(DYNAMIC4, EXTERNAL4, 587), false, true), Outbound, Forward(PortOpen));
    add("QinQ 0x88a8 v4 dynamic -> external:25", wrap(Encap::QinQ(0x88a8, 10, 200), &syn4(DYNAMIC4, EXTERNAL4, 25), false, true), Outbound, Reject(BlockedPort, RST));
    add("QinQ 0x9100 v4 dynamic -> external:25", wrap(Encap::QinQ(0x9100, 10, 200), &syn4(DYNAMIC4, EXTERNAL4, 25), false, true), Outbound, Reject(BlockedPort, RST));
    add("QinQ v6 dynamic -> external:25", wrap(Encap::QinQ(0x88a8, 10, 200), &syn6(DYNAMIC6, EXTERNAL6, 25), true, true), Outbound, Reject(BlockedPort, RST));
    add("PPPoE v4 dynamic -> external:25", wrap(Encap::Pppoe(0x1234), &syn4(DYNAMIC4, EXTERNAL4, 25), false, true), Outbound, Reject(BlockedPort, RST));
    add("PPPoE v4 dynamic -> external:587", wrap(Encap::Pppoe(0x1234), &syn4(DYNAMIC4, EXTERNAL4, 587), false, true), Outbound, Forward(PortOpen));
    add("PPPoE v6 dynamic -> external:25", wrap(Encap::Pppoe(0x1234), &syn6(DYNAMIC6, EXTERNAL6, 25), true, true), Outbound, Reject(BlockedPort, RST));
    add("802.1Q + PPPoE v4 dynamic -> external:25", wrap(Encap::VlanPppoe(300, 0x22), &syn4(DYNAMIC4, EXTERNAL4, 25), false, true), Outbound, Reject(BlockedPort, RST));
    let mut lcp = wrap(Encap::Pppoe(0x1234), &[1, 1, 0, 4], false, true);
    lcp[20..22].copy_from_slice(&0xc021u16.to_be_bytes());
    add("PPPoE session carrying LCP", lcp, Outbound, Forward(NotIp));
    let pppoe25 = wrap(
        Encap::Pppoe(0x1234),
        &syn4(DYNAMIC4, EXTERNAL4, 25),
        false,
        true,
    );
    add("PPPoE header cut short", pppoe25[..19].to_vec(), Outbound, Forward(MalformedLink));
    let mut pppoe_badver = pppoe25.clone();
    pppoe_badver[14] = 0x21;
    add("PPPoE session with bad version", pppoe_badver, Outbound, Forward(NotIp));
    // PPP Protocol-Field-Compression: the IP behind a one-byte protocol field is judged.
    add("PPPoE compressed protocol v4 dynamic -> external:25", wrap(Encap::PppoeCompressed(0x1234), &syn4(DYNAMIC4, EXTERNAL4, 25), false, true), Outbound, Reject(BlockedPort, RST));
    add("PPPoE compressed protocol v6 dynamic -> external:25", wrap(Encap::PppoeCompressed(0x1234), &syn6(DYNAMIC6, EXTERNAL6, 25), true, true), Outbound, Reject(BlockedPort, RST));
    add("PPPoE compressed protocol v4 quarantine -> external:587", wrap(Encap::PppoeCompressed(0x1234), &syn4(QUARANTINE4, EXTERNAL4, 587), false, true), Outbound, Drop(BlockedPort));
    add("PPPoE compressed protocol v4 dynamic -> external:587", wrap(Encap::PppoeCompressed(0x1234), &syn4(DYNAMIC4, EXTERNAL4, 587), false, true), Outbound, Forward(PortOpen));
    add("PPPoE compressed protocol v4 inbound external -> dynamic:25", wrap(Encap::PppoeCompressed(0x1234), &syn4(EXTERNAL4, DYNAMIC4, 25), false, false), Inbound, Drop(InboundSmtp));
    let mut pfc_other = wrap(Encap::PppoeCompressed(0x1234), &[0x00, 0x01, 0x02, 0x03], false, true);
    pfc_other[20] = 0x31; // compressed 0x0031 (bridging), not IP
    add("PPPoE compressed protocol, not IP", pfc_other, Outbound, Forward(NotIp));
    // Non-IP carriers of IP: forwarded (not judged), counted by kind.
    let mut mpls = vec![0x00, 0x01, 0x01, 0x40]; // label 16, bottom of stack, TTL 64
    mpls.extend_from_slice(&syn4(DYNAMIC4, EXTERNAL4, 25));
    add("MPLS unicast carrying v4 dynamic -> external:25", raw(0x8847, &mpls), Outbound, Forward(NotIp));
    add("MPLS multicast carrying v4 dynamic -> external:25", raw(0x8848, &mpls), Outbound, Forward(NotIp));
    let mut pbb = vec![0x00, 0x00, 0x01, 0x00]; // I-TAG: I-SID 256
    pbb.extend_from_slice(&out4(syn4(DYNAMIC4, EXTERNAL4, 25)));
    add("PBB (802.1ah) carrying v4 dynamic -> external:25", raw(0x88e7, &pbb), Outbound, Forward(NotIp));
    let ip25 = syn4(DYNAMIC4, EXTERNAL4, 25);
    let mut snap = vec![0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00]; // RFC 1042
    snap.extend_from_slice(&ip25);
    add("802.3 LLC/SNAP carrying v4 dynamic -> external:25", raw(snap.len() as u16, &snap), Outbound, Forward(NotIp));
    let mut five_tags = UP_MAC.to_vec();
    five_tags.extend_from_slice(&SUB_MAC);
    for _ in 0..5 {
        five_tags.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
    }
    five_tags.extend_from_slice(&[0x08, 0x00]);
    five_tags.extend_from_slice(&syn4(DYNAMIC4, EXTERNAL4, 25));
    add("five VLAN tags (deeper than walked)", five_tags, Outbound, Forward(NotIp));

    // --- IPv6 --------------------------------------------------------------------------
    add("v6 dynamic -> external:25 SYN", out6(syn6(DYNAMIC6, EXTERNAL6, 25)), Outbound, Reject(BlockedPort, RST));
    add("v6 dynamic -> relay:25", out6(syn6(DYNAMIC6, RELAY6, 25)), Outbound, Forward(AllowedDestination));
    add("v6 dynamic -> external:587", out6(syn6(DYNAMIC6, EXTERNAL6, 587)), Outbound, Forward(PortOpen));
    add("v6 dynamic -> external:465", out6(syn6(DYNAMIC6, EXTERNAL6, 465)), Outbound, Forward(PortOpen));
    add("v6 static /128 in dynamic /48 -> external:25", out6(syn6(STATIC6, EXTERNAL6, 25)), Outbound, Forward(PortOpen));
    add("v6 quarantine -> external:465", out6(syn6(QUARANTINE6, EXTERNAL6, 465)), Outbound, Drop(BlockedPort));
    add("v6 icmp class -> external:25", out6(syn6(ICMP6, EXTERNAL6, 25)), Outbound, Reject(BlockedPort, ICMP));
    add("v6 notice class -> external:25 SYN", out6(syn6(NOTICE6, EXTERNAL6, 25)), Outbound, Reject(BlockedPort, NOTICE));
    add("v6 unmatched -> external:25", out6(syn6(UNMATCHED6, EXTERNAL6, 25)), Outbound, Forward(Unmatched));
    add("v6 UDP dynamic -> external:25", out6(udp6(DYNAMIC6, EXTERNAL6, 25)), Outbound, Forward(NotTcp));
    let mut ns = Vec::new();
    PacketBuilder::ipv6(DYNAMIC6, EXTERNAL6, 255)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut ns, &EXTERNAL6)
        .expect("vec write");
    add("v6 neighbor solicitation", out6(ns), Outbound, Forward(NotTcp));
    add("v6 inbound external -> dynamic:25", wrap(Encap::Plain, &syn6(EXTERNAL6, DYNAMIC6, 25), true, false), Inbound, Drop(InboundSmtp));
    let s6 = syn6(DYNAMIC6, EXTERNAL6, 25);
    add("v6 hop-by-hop + dest opts + routing, TCP:25", out6(with_ipv6_exts(&s6, &[Ext::HopByHop, Ext::DestOpts, Ext::Routing], None)), Outbound, Reject(BlockedPort, RST));
    add("v6 AH, TCP:25", out6(with_ipv6_exts(&s6, &[Ext::Auth], None)), Outbound, Reject(BlockedPort, RST));
    let first25 = ipv4_fragments(&tcp4(QUARANTINE4, EXTERNAL4, 40001, 25, Tcp::Syn, &[0x41; 40]), 1);
    add("v4 first fragment of 8 bytes (ports), drop class", out4(first25[0].clone()), Outbound, Drop(BlockedPort));
    let long_chain: Vec<Ext> = std::iter::once(Ext::HopByHop)
        .chain(std::iter::repeat_n(Ext::DestOpts, 40))
        .collect();
    add("v6 41-header extension chain, TCP:25", out6(with_ipv6_exts(&s6, &long_chain, None)), Outbound, Reject(BlockedPort, RST));
    let d6 = tcp6(DYNAMIC6, EXTERNAL6, 40001, 25, Tcp::Data(5), &[0x41; 64]);
    add("v6 first fragment with ports", out6(with_ipv6_exts(&d6, &[Ext::Fragment(0, true)], Some(24))), Outbound, Reject(BlockedPort, RST));
    add("v6 tiny first fragment (2 TCP bytes)", out6(with_ipv6_exts(&d6, &[Ext::Fragment(0, true)], Some(2))), Outbound, Drop(TinyFragment));
    add("v6 later fragment", out6(with_ipv6_exts(&d6, &[Ext::Fragment(3, false)], Some(40))), Outbound, Forward(NonFirstFragment));
    add("v6 atomic fragment, TCP:25", out6(with_ipv6_exts(&s6, &[Ext::Fragment(0, false)], None)), Outbound, Reject(BlockedPort, RST));
    // What cannot be read is judged as TCP without a port (src/classify/mod.rs, the
    // rule for what cannot be read): dropped from a blocking class, forwarded otherwise.
    add("v6 hop-by-hop not first", out6(with_ipv6_exts(&s6, &[Ext::DestOpts, Ext::HopByHop], None)), Outbound, Drop(MalformedTcp));
    let mut cut_ext = with_ipv6_exts(&s6, &[Ext::DestOpts], None);
    cut_ext.truncate(44);
    cut_ext[4..6].copy_from_slice(&4u16.to_be_bytes());
    add("v6 extension header cut short", out6(cut_ext.clone()), Outbound, Drop(MalformedTcp));
    let static6 = syn6(STATIC6, EXTERNAL6, 25);
    let mut cut_static = with_ipv6_exts(&static6, &[Ext::DestOpts], None);
    cut_static.truncate(44);
    cut_static[4..6].copy_from_slice(&4u16.to_be_bytes());
    add("v6 extension header cut short, static source", out6(cut_static), Outbound, Forward(MalformedTcp));
    let mut cut_udp = with_ipv6_exts(&udp6(DYNAMIC6, EXTERNAL6, 25), &[Ext::DestOpts], None);
    cut_udp[4..6].copy_from_slice(&400u16.to_be_bytes());
    add("v6 UDP behind dest opts, payload length past the frame", out6(cut_udp), Outbound, Forward(MalformedIp));
    // RFC 7112: a first fragment whose chain ends in a later fragment (the bypass found
    // on 460fd1e: forwarded as malformed_ip, its later fragment carried the SYN).
    let split = ipv6_fragments(&s6, &[], &[Ext::DestOpts, Ext::Generic(60, 3)], 2, 7);
    add("v6 first fragment, chain ends past it (RFC 7112)", out6(split[0].clone()), Outbound, Drop(TinyFragment));
    add("v6 fragment, the rest of that chain and TCP:25", out6(split[1].clone()), Outbound, Forward(NonFirstFragment));
    let split = ipv6_fragments(&s6, &[Ext::HopByHop, Ext::Routing], &[Ext::Generic(253, 4)], 1, 8);
    add("v6 first fragment, experimental header past it", out6(split[0].clone()), Outbound, Drop(TinyFragment));
    let split = ipv6_fragments(&s6, &[], &[Ext::Auth], 1, 9);
    add("v6 first fragment, AH past it", out6(split[0].clone()), Outbound, Drop(TinyFragment));
    add("v6 first fragment, a second fragment header inside", out6(with_ipv6_exts(&d6, &[Ext::Fragment(0, true), Ext::Fragment(0, true)], Some(24))), Outbound, Drop(TinyFragment));
    add("v6 two fragment headers, whole", out6(with_ipv6_exts(&s6, &[Ext::Fragment(0, false), Ext::Fragment(0, false)], None)), Outbound, Drop(MalformedTcp));
    let split = ipv6_fragments(&d6, &[], &[Ext::Generic(253, 1)], 8, 10);
    add("v6 first fragment, experimental header then TCP:25", out6(split[0].clone()), Outbound, Reject(BlockedPort, RST));
    let mut later_udp = with_ipv6_exts(&d6, &[Ext::Fragment(3, false)], Some(40));
    later_udp[40] = 17;
    add("v6 later fragment naming UDP (reassembly uses the first's)", out6(later_udp), Outbound, Forward(NonFirstFragment));
    // Generic-format extension headers (RFC 6564) are walked: TCP behind them is judged.
    for (what, number) in [("Mobility", 135u8), ("experimental 253", 253), ("experimental 254", 254)] {
        add(&format!("v6 {what} header, TCP:25"), out6(with_ipv6_exts(&s6, &[Ext::Generic(number, 2)], None)), Outbound, Reject(BlockedPort, RST));
    }
    // HIP (139) and Shim6 (140) are walked the same way; they carry checksums of their
    // own that padded stand-ins would not hold (tshark flags them inside an ICMP
    // reply's quote), so tests/offline/fragments.rs covers them instead of this table.
    add("v6 four headers then experimental, TCP:25", out6(with_ipv6_exts(&s6, &[Ext::HopByHop, Ext::DestOpts, Ext::Routing, Ext::DestOpts, Ext::Generic(254, 1)], None)), Outbound, Reject(BlockedPort, RST));
    add("v6 header cut at 30 bytes", out6(s6[..30].to_vec()), Outbound, Forward(MalformedIp));
    let mut long_plen = s6.clone();
    long_plen[4..6].copy_from_slice(&400u16.to_be_bytes());
    add("v6 payload length past the frame, TCP", out6(long_plen), Outbound, Drop(MalformedTcp));
    let mut esp = s6.clone();
    esp[6] = 50;
    add("v6 ESP", out6(esp), Outbound, Forward(NotTcp));

    // --- Truncation at every header boundary of an 802.1Q IPv4 SYN to :25 ------------
    for (cut, expected) in [
        (0, Forward(MalformedLink)),
        (12, Forward(MalformedLink)),
        (14, Forward(MalformedLink)),
        (17, Forward(MalformedLink)),
        (18, Forward(MalformedIp)),
        (37, Forward(MalformedIp)),
        (38, Drop(MalformedTcp)),
        (42, Drop(MalformedTcp)),
        (57, Drop(MalformedTcp)),
    ] {
        add(
            &format!("802.1Q v4 SYN:25 cut at {cut} bytes"),
            vlan25[..cut].to_vec(),
            Outbound,
            expected,
        );
    }
    let vlan6 = wrap(Encap::Vlan(100), &s6, true, true);
    for (cut, expected) in [
        (18, Forward(MalformedIp)),
        (57, Forward(MalformedIp)),
        (58, Drop(MalformedTcp)),
        (77, Drop(MalformedTcp)),
    ] {
        add(
            &format!("802.1Q v6 SYN:25 cut at {cut} bytes"),
            vlan6[..cut].to_vec(),
            Outbound,
            expected,
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::addr::*;
    use super::*;
    use op25b::policy::Segment;

    /// The names in [`addr`] say what `configs/lab.yaml` makes of each address: the class
    /// of each subscriber address, none for the unmatched ones, and the relay is the
    /// allowed destination (a dynamic host's SMTP to it passes, to the external MTA not).
    #[test]
    fn addresses_agree_with_lab_yaml() {
        let p = policy();
        let name = |c: Option<ClassId>| c.and_then(|c| p.class(c)).map(|c| c.name.clone());
        let cases4 = [
            (DYNAMIC4, Some("dynamic")),
            (STATIC4, Some("static")),
            (QUARANTINE4, Some("quarantine")),
            (ICMP4, Some("icmp")),
            (NOTICE4, Some("notice")),
            (UNMATCHED4, None),
        ];
        for (a, want) in cases4 {
            let got = name(p.class_of_v4(u32::from_be_bytes(a)));
            assert_eq!(got.as_deref(), want, "{a:?}");
        }
        let cases6 = [
            (DYNAMIC6, Some("dynamic")),
            (STATIC6, Some("static")),
            (QUARANTINE6, Some("quarantine")),
            (ICMP6, Some("icmp")),
            (NOTICE6, Some("notice")),
            (UNMATCHED6, None),
        ];
        for (a, want) in cases6 {
            let got = name(p.class_of_v6(u128::from_be_bytes(a)));
            assert_eq!(got.as_deref(), want, "{a:?}");
        }
        let out = Direction::Outbound;
        let d4 = u32::from_be_bytes(DYNAMIC4);
        assert!(!p
            .decide_v4(out, d4, u32::from_be_bytes(RELAY4), Segment::tcp(25))
            .verdict
            .is_blocked());
        assert!(p
            .decide_v4(out, d4, u32::from_be_bytes(EXTERNAL4), Segment::tcp(25))
            .verdict
            .is_blocked());
        let d6 = u128::from_be_bytes(DYNAMIC6);
        assert!(!p
            .decide_v6(out, d6, u128::from_be_bytes(RELAY6), Segment::tcp(25))
            .verdict
            .is_blocked());
        assert!(p
            .decide_v6(out, d6, u128::from_be_bytes(EXTERNAL6), Segment::tcp(25))
            .verdict
            .is_blocked());
    }
}
