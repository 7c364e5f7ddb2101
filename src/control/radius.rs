//! RADIUS accounting (RFC 2866) as a bump-in-the-wire box hears it: a copy of the BNG's
//! Accounting-Requests tells which address belongs to which session and, through
//! Filter-Id (RFC 2865), which class the session's subscriber has. The codec is small
//! and pure (`header`, `decode`, `verify`, `response`), fuzzed (`fuzz/fuzz_targets/radius.rs`)
//! and checked against a packet whose authenticator was computed with an independent
//! MD5 (Python's hashlib) and against radclient (tests/e2e_lab.rs).

#![forbid(unsafe_code)]

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use md5::{Digest, Md5};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ACCOUNTING_REQUEST: u8 = 4;
pub const ACCOUNTING_RESPONSE: u8 = 5;
/// RFC 2865: a packet is 20..=4096 octets.
pub const MAX_PACKET: usize = 4096;

const ATTR_USER_NAME: u8 = 1;
const ATTR_FRAMED_IP_ADDRESS: u8 = 8;
const ATTR_FILTER_ID: u8 = 11;
const ATTR_ACCT_STATUS_TYPE: u8 = 40;
const ATTR_ACCT_SESSION_ID: u8 = 44;
const ATTR_FRAMED_IPV6_PREFIX: u8 = 97;
const ATTR_DELEGATED_IPV6_PREFIX: u8 = 123;
const ATTR_FRAMED_IPV6_ADDRESS: u8 = 168;

/// Acct-Status-Type values (RFC 2866, RFC 2869 for Interim-Update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
    Other(u32),
}

impl Status {
    fn from(v: u32) -> Self {
        match v {
            1 => Status::Start,
            2 => Status::Stop,
            3 => Status::InterimUpdate,
            7 => Status::AccountingOn,
            8 => Status::AccountingOff,
            o => Status::Other(o),
        }
    }
}

/// Why a packet is dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RadiusError {
    #[error("packet of {0} octets (RADIUS: 20 to 4096)")]
    Size(usize),
    #[error("length field {field} but {got} octets received")]
    Length { field: usize, got: usize },
    #[error("code {0} is not an Accounting-Request (4)")]
    Code(u8),
    #[error("attribute {kind} at offset {offset}: length {len} does not fit")]
    Attribute { kind: u8, offset: usize, len: usize },
    #[error("attribute {0}: malformed value")]
    Value(u8),
    #[error("no Acct-Status-Type")]
    NoStatus,
}

/// A decoded Accounting-Request: what op25b uses of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    pub status: Option<Status>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub filter_ids: Vec<String>,
    /// Framed-IP-Address (/32), Framed-IPv6-Address (/128), Framed-IPv6-Prefix and
    /// Delegated-IPv6-Prefix.
    pub prefixes: Vec<IpNet>,
}

/// The header of a well-formed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub code: u8,
    pub id: u8,
    pub length: usize,
    pub authenticator: [u8; 16],
}

/// Checks sizes and walks the attributes (each 2..=255 octets, all inside the packet).
pub fn header(buf: &[u8]) -> Result<Header, RadiusError> {
    if buf.len() < 20 || buf.len() > MAX_PACKET {
        return Err(RadiusError::Size(buf.len()));
    }
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    // Octets beyond the length field are padding (RFC 2865 3); fewer is an error.
    if !(20..=MAX_PACKET).contains(&length) || length > buf.len() {
        return Err(RadiusError::Length {
            field: length,
            got: buf.len(),
        });
    }
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(&buf[4..20]);
    let mut off = 20;
    while off < length {
        let kind = buf[off];
        let len = if off + 1 < length {
            usize::from(buf[off + 1])
        } else {
            0
        };
        if len < 2 || off + len > length {
            return Err(RadiusError::Attribute {
                kind,
                offset: off,
                len,
            });
        }
        off += len;
    }
    Ok(Header {
        code: buf[0],
        id: buf[1],
        length,
        authenticator,
    })
}

/// True when the Request Authenticator is MD5(Code+Identifier+Length+16 zero octets+
/// Attributes+Secret) (RFC 2866 3). Compares in constant time.
pub fn verify(buf: &[u8], h: &Header, secret: &[u8]) -> bool {
    let mut m = Md5::new();
    m.update(&buf[..4]);
    m.update([0u8; 16]);
    m.update(&buf[20..h.length]);
    m.update(secret);
    let want: [u8; 16] = m.finalize().into();
    want.iter()
        .zip(h.authenticator.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The Accounting-Response to request `h` (no attributes).
pub fn response(h: &Header, secret: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0] = ACCOUNTING_RESPONSE;
    out[1] = h.id;
    out[2..4].copy_from_slice(&20u16.to_be_bytes());
    let mut m = Md5::new();
    m.update(&out[..4]);
    m.update(h.authenticator);
    m.update(secret);
    let auth: [u8; 16] = m.finalize().into();
    out[4..20].copy_from_slice(&auth);
    out
}

fn text(kind: u8, v: &[u8]) -> Result<String, RadiusError> {
    std::str::from_utf8(v)
        .map(|s| s.to_string())
        .map_err(|_| RadiusError::Value(kind))
}

/// An IPv6 prefix attribute (RFC 3162 2.3): reserved, length, prefix octets.
fn v6_prefix(kind: u8, v: &[u8]) -> Result<IpNet, RadiusError> {
    if v.len() < 2 || v.len() > 18 || v[1] > 128 {
        return Err(RadiusError::Value(kind));
    }
    let len = v[1];
    let bytes = &v[2..];
    if bytes.len() * 8 < usize::from(len) {
        return Err(RadiusError::Value(kind));
    }
    let mut a = [0u8; 16];
    a[..bytes.len()].copy_from_slice(bytes);
    let net = Ipv6Net::new(Ipv6Addr::from(a), len).map_err(|_| RadiusError::Value(kind))?;
    Ok(IpNet::V6(net.trunc()))
}

/// Decodes an Accounting-Request (after [`header`]; the caller verifies it).
pub fn decode(buf: &[u8], h: &Header) -> Result<Accounting, RadiusError> {
    if h.code != ACCOUNTING_REQUEST {
        return Err(RadiusError::Code(h.code));
    }
    let mut a = Accounting::default();
    let mut off = 20;
    while off < h.length {
        let kind = buf[off];
        let len = usize::from(buf[off + 1]);
        let v = &buf[off + 2..off + len];
        off += len;
        match kind {
            ATTR_ACCT_STATUS_TYPE => {
                let b: [u8; 4] = v.try_into().map_err(|_| RadiusError::Value(kind))?;
                a.status = Some(Status::from(u32::from_be_bytes(b)));
            }
            ATTR_FRAMED_IP_ADDRESS => {
                let b: [u8; 4] = v.try_into().map_err(|_| RadiusError::Value(kind))?;
                let ip = Ipv4Addr::from(b);
                // 255.255.255.254: "the NAS selects"; 255.255.255.255: "the user
                // selects" (RFC 2865 5.8): no address.
                if b != [255, 255, 255, 254] && b != [255, 255, 255, 255] && b != [0; 4] {
                    a.prefixes
                        .push(IpNet::V4(Ipv4Net::new(ip, 32).expect("/32")));
                }
            }
            ATTR_FRAMED_IPV6_ADDRESS => {
                let b: [u8; 16] = v.try_into().map_err(|_| RadiusError::Value(kind))?;
                a.prefixes.push(IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::from(b), 128).expect("/128"),
                ));
            }
            ATTR_FRAMED_IPV6_PREFIX | ATTR_DELEGATED_IPV6_PREFIX => {
                a.prefixes.push(v6_prefix(kind, v)?);
            }
            // A Filter-Id that is not UTF-8 cannot name a class: skipped (dropping the
            // packet would leave the NAS retransmitting it).
            ATTR_FILTER_ID => {
                if let Ok(t) = text(kind, v) {
                    a.filter_ids.push(t);
                }
            }
            ATTR_ACCT_SESSION_ID => a.session = Some(text(kind, v)?),
            ATTR_USER_NAME => a.user = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
    }
    if a.status.is_none() {
        return Err(RadiusError::NoStatus);
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Accounting-Request Start, id 42, secret "testing123": Acct-Status-Type Start,
    /// Framed-IP-Address 198.51.100.10, Filter-Id "op25b-exempt", Acct-Session-Id "s1",
    /// Delegated-IPv6-Prefix 2001:db8:100::/56. Authenticators computed with Python's
    /// hashlib.md5 (an independent MD5), not with this module.
    const START: &str = "042a003d33c0e5dbbedb77dbbbea0f9e5988a0672806000000010806c633640a0b0e6f703235622d6578656d70742c0473317b0b003820010db8010000";
    const RESPONSE: &str = "052a0014f9e8f61f9d07e1e9fa4d3f62c64f58df";

    #[test]
    fn decodes_and_verifies_a_start_and_answers_it() {
        let p = hex(START);
        let h = header(&p).unwrap();
        assert_eq!((h.code, h.id, h.length), (4, 42, 61));
        assert!(verify(&p, &h, b"testing123"));
        assert!(!verify(&p, &h, b"testing124"));
        let a = decode(&p, &h).unwrap();
        assert_eq!(a.status, Some(Status::Start));
        assert_eq!(a.filter_ids, vec!["op25b-exempt".to_string()]);
        assert_eq!(a.session.as_deref(), Some("s1"));
        let want: Vec<IpNet> = vec![
            "198.51.100.10/32".parse().unwrap(),
            "2001:db8:100::/56".parse().unwrap(),
        ];
        assert_eq!(a.prefixes, want);
        assert_eq!(response(&h, b"testing123").to_vec(), hex(RESPONSE));
    }

    #[test]
    fn a_changed_octet_breaks_the_authenticator() {
        let mut p = hex(START);
        p[30] ^= 1; // inside Framed-IP-Address
        let h = header(&p).unwrap();
        assert!(!verify(&p, &h, b"testing123"));
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let p = hex(START);
        assert_eq!(header(&p[..19]), Err(RadiusError::Size(19)));
        assert!(matches!(header(&p[..40]), Err(RadiusError::Length { .. })));
        let mut bad = p.clone();
        bad[21] = 1; // first attribute length 1
        assert!(matches!(header(&bad), Err(RadiusError::Attribute { .. })));
        let mut bad = p.clone();
        bad[21] = 200; // runs past the end
        assert!(matches!(header(&bad), Err(RadiusError::Attribute { .. })));
        let mut bad = p.clone();
        bad[0] = 1; // Access-Request
        let h = header(&bad).unwrap();
        assert_eq!(decode(&bad, &h), Err(RadiusError::Code(1)));
        // Every truncation and every single-octet change: an error or a value, never a
        // panic.
        for n in 0..p.len() {
            if let Ok(h) = header(&p[..n]) {
                let _ = decode(&p[..n], &h);
            }
            for x in [0u8, 1, 0x7f, 0xff] {
                let mut q = p.clone();
                q[n] = x;
                if let Ok(h) = header(&q) {
                    let _ = decode(&q, &h);
                }
            }
        }
    }

    #[test]
    fn ipv6_prefix_attributes_follow_rfc3162() {
        assert_eq!(
            v6_prefix(97, &[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]).unwrap(),
            "2001:db8:1:2::/64".parse::<IpNet>().unwrap()
        );
        // Bits past the length are cleared.
        assert_eq!(
            v6_prefix(123, &[0, 16, 0x20, 0x01, 0xff]).unwrap(),
            "2001::/16".parse::<IpNet>().unwrap()
        );
        assert!(v6_prefix(97, &[0, 129]).is_err());
        assert!(v6_prefix(97, &[0, 64, 0x20]).is_err());
    }
}

/// The accounting listener's settings (`radius:` in the config).
pub use crate::config::RadiusSettings as Settings;

/// Why requests were dropped or taken, for `op25b_radius_requests_total{result}`.
#[derive(Default)]
pub struct Counters {
    pub accepted: std::sync::atomic::AtomicU64,
    pub unknown_client: std::sync::atomic::AtomicU64,
    pub bad_authenticator: std::sync::atomic::AtomicU64,
    pub malformed: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub fn all(&self) -> [(&'static str, u64); 4] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            ("accepted", self.accepted.load(Relaxed)),
            ("unknown_client", self.unknown_client.load(Relaxed)),
            ("bad_authenticator", self.bad_authenticator.load(Relaxed)),
            ("malformed", self.malformed.load(Relaxed)),
        ]
    }
}

/// Binds the UDP socket and serves until `stop`: each request from a known client with
/// a valid authenticator is applied to the overlay (Start/Interim-Update: the session's
/// addresses get the class its Filter-Id names, or lose a RADIUS entry they had; Stop:
/// they lose it) and answered with an Accounting-Response. Unknown clients, bad
/// authenticators and malformed packets are dropped and counted.
pub fn serve(
    settings: Settings,
    shared: std::sync::Arc<super::operator::OverlayShared>,
    counters: std::sync::Arc<Counters>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering::Relaxed;
    let sock = std::net::UdpSocket::bind(settings.listen)?;
    sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))?;
    std::thread::Builder::new()
        .name("op25b-radius".into())
        .spawn(move || {
            let mut buf = vec![0u8; MAX_PACKET + 1];
            while !stop.load(Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let pkt = &buf[..n];
                // An IPv4 NAS reaching a dual-stack socket shows as ::ffff:a.b.c.d.
                let ip = peer.ip().to_canonical();
                let Some(secret) = settings
                    .clients
                    .iter()
                    .find(|(net, _)| net.contains(&ip))
                    .map(|(_, s)| s.as_bytes())
                else {
                    counters.unknown_client.fetch_add(1, Relaxed);
                    continue;
                };
                let h = match header(pkt) {
                    Ok(h) if h.code == ACCOUNTING_REQUEST => h,
                    _ => {
                        counters.malformed.fetch_add(1, Relaxed);
                        continue;
                    }
                };
                if !verify(pkt, &h, secret) {
                    counters.bad_authenticator.fetch_add(1, Relaxed);
                    continue;
                }
                let acct = match decode(pkt, &h) {
                    Ok(a) => a,
                    Err(_) => {
                        counters.malformed.fetch_add(1, Relaxed);
                        continue;
                    }
                };
                apply(&settings, &shared, &acct, super::metrics::unix_now());
                counters.accepted.fetch_add(1, Relaxed);
                let _ = sock.send_to(&response(&h, secret), peer);
            }
        })
}

/// Applies one verified Accounting-Request to the overlay. Operator entries are never
/// touched by RADIUS.
pub fn apply(
    settings: &Settings,
    shared: &super::operator::OverlayShared,
    acct: &Accounting,
    now: u64,
) {
    use super::overlay::{Entry, Source};
    let class = acct
        .filter_ids
        .iter()
        .find_map(|f| settings.filter_ids.get(f))
        .cloned();
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let mut changed = false;
    for &prefix in &acct.prefixes {
        let existing = store
            .get(&prefix)
            .map(|e| (e.source, e.session.clone(), e.created));
        // Operator and auto-quarantine entries are not RADIUS's to change.
        if existing
            .as_ref()
            .is_some_and(|(s, ..)| *s != Source::Radius)
        {
            continue;
        }
        // Only the owning session's Stop or Interim-Update changes an entry; a Start
        // takes the address over (it was reassigned).
        let same_session = existing
            .as_ref()
            .is_none_or(|(_, owner, _)| owner.is_none() || *owner == acct.session);
        if acct.status != Some(Status::Start) && !same_session {
            continue;
        }
        let created = match &existing {
            Some((_, _, c)) if same_session && acct.status != Some(Status::Start) => *c,
            _ => now,
        };
        match (acct.status, &class) {
            (Some(Status::Start | Status::InterimUpdate), Some(class)) => {
                let e = Entry {
                    prefix,
                    class: class.clone(),
                    source: Source::Radius,
                    note: format!(
                        "session {} user {}",
                        acct.session.as_deref().unwrap_or("-"),
                        acct.user.as_deref().unwrap_or("-")
                    ),
                    created,
                    expires: Some(now.saturating_add(settings.session_timeout.as_secs().max(1))),
                    session: acct.session.clone(),
                };
                match store.upsert(e) {
                    Ok(old) => {
                        changed = true;
                        if old.is_none() {
                            shared
                                .added
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(
                                target: "op25b::overlay",
                                prefix = %prefix,
                                class = %class,
                                source = "radius",
                                session = acct.session.as_deref().unwrap_or("-"),
                                "overlay: {prefix} is class {class} (RADIUS session {})",
                                acct.session.as_deref().unwrap_or("-")
                            );
                        }
                    }
                    Err(e) => tracing::error!("RADIUS: {prefix}: {e}"),
                }
            }
            // A Stop, or a session without a mapped Filter-Id (the address went to
            // another subscriber): the address loses its RADIUS entry.
            (Some(Status::Start | Status::InterimUpdate | Status::Stop), _)
                if existing.is_some() && store.remove(&prefix).is_some() =>
            {
                changed = true;
                shared
                    .removed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    target: "op25b::overlay",
                    prefix = %prefix,
                    source = "radius",
                    "overlay: {prefix} removed (RADIUS {:?})",
                    acct.status.unwrap_or(Status::Stop)
                );
            }
            _ => {}
        }
    }
    if changed {
        shared.publish(&store);
    }
}
