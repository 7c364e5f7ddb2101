//! RADIUS accounting (RFC 2866) as a bump-in-the-wire box hears it: a copy of the BNG's
//! Accounting-Requests tells which address belongs to which session and, through
//! Filter-Id (RFC 2865), which class the session's subscriber has. The codec is small
//! and pure (`header`, `decode`, `verify`, `response`), fuzzed (`fuzz/fuzz_targets/radius.rs`)
//! and checked against a packet whose authenticator was computed with an independent
//! MD5 (Python's hashlib) and against radclient (tests/e2e_lab.rs).
//!
//! The listener ([`Server::handle`], no socket, so tests drive it) trusts only what a
//! configured client signed, and not twice: a duplicate (RFC 5080 2.2.2: source address
//! and port, Identifier, Request Authenticator, within `duplicate_window_secs`, in a
//! fixed number of slots) gets the earlier answer and is not applied again; a request
//! whose Event-Timestamp + Acct-Delay-Time is outside `event_timestamp_window_secs`, or
//! with more than [`MAX_PREFIXES_PER_REQUEST`] addresses, is neither applied nor answered
//! (RFC 2866: the server answers what it recorded; the NAS may retry or fail over). In
//! [`apply`], per entry: RADIUS never touches operator or auto-quarantine entries, adds
//! none beyond `max_entries` nor IPv6 prefixes shorter than `min_ipv6_prefix_len`, and a
//! Start whose Event-Timestamp is older than the entry of the session holding the
//! address does not take it over. Each refusal is counted (`Counters`) and logged at most
//! every 10 s per reason. A request that carries an Event-Timestamp is applied once for
//! as long as its timestamp would be accepted (twice the window, whatever the source
//! port). Left open: a request without Event-Timestamp can be replayed after the
//! duplicate window, or from another source port.

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
const ATTR_ACCT_DELAY_TIME: u8 = 41;
const ATTR_ACCT_SESSION_ID: u8 = 44;
const ATTR_EVENT_TIMESTAMP: u8 = 55;
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
    /// Event-Timestamp (RFC 2869 5.3): when the event happened, Unix seconds.
    pub event_timestamp: Option<u32>,
    /// Acct-Delay-Time (RFC 2866 5.2): seconds the NAS has been trying to send it.
    pub delay: Option<u32>,
}

impl Accounting {
    /// When the NAS sent this request (its clock): Event-Timestamp plus
    /// Acct-Delay-Time. A NAS that updates Acct-Delay-Time on each retry sends a new
    /// packet (new Identifier and authenticator) that still fits the window; a replayed
    /// copy keeps its old time.
    pub fn sent_at(&self) -> Option<u64> {
        self.event_timestamp
            .map(|t| u64::from(t) + u64::from(self.delay.unwrap_or(0)))
    }
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
            ATTR_EVENT_TIMESTAMP | ATTR_ACCT_DELAY_TIME => {
                let b: [u8; 4] = v.try_into().map_err(|_| RadiusError::Value(kind))?;
                let t = u32::from_be_bytes(b);
                if kind == ATTR_EVENT_TIMESTAMP {
                    a.event_timestamp = Some(t);
                } else {
                    a.delay = Some(t);
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

/// The accounting listener's settings (`radius:` in the config).
use crate::config::RadiusSettings;

use super::store::{EntrySource, OverlayEntry};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request with more addresses and prefixes than this is refused: a session has a
/// handful (Framed-IP-Address, Framed-IPv6-Address, Framed-IPv6-Prefix,
/// Delegated-IPv6-Prefix); a 4 KiB request could otherwise carry about 680.
pub const MAX_PREFIXES_PER_REQUEST: usize = 16;

/// Requests the duplicate cache remembers at most (the oldest go first): at most about
/// 12 MiB, reached only above 2,000 requests/s with the default 30 s window.
pub const DUPLICATE_CACHE_CAPACITY: usize = 65_536;

/// A refusal is logged at most once per this many seconds (per reason); the counters
/// count every one.
const LOG_EVERY_SECS: u64 = 10;

/// Requests by result, for `op25b_radius_requests_total{result}`, and entries refused,
/// for `op25b_radius_entries_refused_total{reason}`.
#[derive(Default)]
pub struct Counters {
    /// Answered and applied (entries refused below may be part of it).
    pub accepted: AtomicU64,
    /// A retransmission within `duplicate_window_secs`: answered as before, not applied.
    pub duplicate: AtomicU64,
    /// Event-Timestamp (+ Acct-Delay-Time) outside `event_timestamp_window_secs`:
    /// neither applied nor answered.
    pub stale_timestamp: AtomicU64,
    /// More than [`MAX_PREFIXES_PER_REQUEST`] addresses: neither applied nor answered.
    pub too_many_prefixes: AtomicU64,
    pub unknown_client: AtomicU64,
    pub bad_authenticator: AtomicU64,
    pub malformed: AtomicU64,
    /// A new RADIUS entry while `max_entries` are in the overlay.
    pub refused_overlay_full: AtomicU64,
    /// An IPv6 prefix shorter than `min_ipv6_prefix_len`.
    pub refused_prefix_too_short: AtomicU64,
    /// A Start for an address another session holds, whose Event-Timestamp is older
    /// than that session's entry.
    pub refused_out_of_order: AtomicU64,
    /// When each refusal reason was last logged (Unix seconds + 1; 0: never).
    logged: [AtomicU64; 5],
}

/// The refusals that are logged (rate-limited), as indexes of `Counters::logged`.
#[derive(Clone, Copy)]
enum Refusal {
    StaleTimestamp,
    TooManyPrefixes,
    OverlayFull,
    PrefixTooShort,
    OutOfOrder,
}

impl Counters {
    pub fn all(&self) -> [(&'static str, u64); 7] {
        [
            ("accepted", self.accepted.load(Relaxed)),
            ("duplicate", self.duplicate.load(Relaxed)),
            ("stale_timestamp", self.stale_timestamp.load(Relaxed)),
            ("too_many_prefixes", self.too_many_prefixes.load(Relaxed)),
            ("unknown_client", self.unknown_client.load(Relaxed)),
            ("bad_authenticator", self.bad_authenticator.load(Relaxed)),
            ("malformed", self.malformed.load(Relaxed)),
        ]
    }

    /// Entries refused, by reason.
    pub fn refused(&self) -> [(&'static str, u64); 3] {
        [
            ("overlay_full", self.refused_overlay_full.load(Relaxed)),
            (
                "prefix_too_short",
                self.refused_prefix_too_short.load(Relaxed),
            ),
            ("out_of_order", self.refused_out_of_order.load(Relaxed)),
        ]
    }

    /// Counts refusal `r` and says whether to log it (once per [`LOG_EVERY_SECS`]).
    fn refuse(&self, r: Refusal, now: u64) -> bool {
        let c = match r {
            Refusal::StaleTimestamp => &self.stale_timestamp,
            Refusal::TooManyPrefixes => &self.too_many_prefixes,
            Refusal::OverlayFull => &self.refused_overlay_full,
            Refusal::PrefixTooShort => &self.refused_prefix_too_short,
            Refusal::OutOfOrder => &self.refused_out_of_order,
        };
        c.fetch_add(1, Relaxed);
        let slot = &self.logged[r as usize];
        let last = slot.load(Relaxed);
        (last == 0 || now.saturating_add(1) >= last.saturating_add(LOG_EVERY_SECS))
            && slot
                .compare_exchange(last, now.saturating_add(1), Relaxed, Relaxed)
                .is_ok()
    }
}

/// The key of a request in the duplicate cache (RFC 5080 2.2.2): source address and
/// port, Identifier, Request Authenticator.
type DuplicateKey = (SocketAddr, u8, [u8; 16]);

/// Requests seen within the window and what was answered to each (none: refused), in a
/// fixed number of slots: when full, the oldest goes.
pub struct DuplicateCache {
    window: Duration,
    capacity: usize,
    seen: HashMap<DuplicateKey, (Instant, Option<[u8; 20]>)>,
    order: VecDeque<(DuplicateKey, Instant)>,
}

impl DuplicateCache {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn forget(&mut self, key: &DuplicateKey, at: Instant) {
        if self.seen.get(key).is_some_and(|(t, _)| *t == at) {
            self.seen.remove(key);
        }
    }

    /// The answer given to `key` if it was seen within the window before `at`.
    pub fn get(&mut self, key: &DuplicateKey, at: Instant) -> Option<Option<[u8; 20]>> {
        while let Some(&(k, t)) = self.order.front() {
            if at.saturating_duration_since(t) < self.window {
                break;
            }
            self.order.pop_front();
            self.forget(&k, t);
        }
        self.seen.get(key).map(|(_, answer)| *answer)
    }

    /// Remembers `key` and its answer.
    pub fn insert(&mut self, key: DuplicateKey, at: Instant, answer: Option<[u8; 20]>) {
        while self.order.len() >= self.capacity {
            if let Some((k, t)) = self.order.pop_front() {
                self.forget(&k, t);
            }
        }
        self.order.push_back((key, at));
        self.seen.insert(key, (at, answer));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The listener's state apart from its socket: one request in, the answer (if any) out.
pub struct Server {
    settings: RadiusSettings,
    shared: Arc<super::OverlayShared>,
    counters: Arc<Counters>,
    duplicates: DuplicateCache,
    /// Requests that carry an Event-Timestamp, by NAS address (no port), Identifier and
    /// Request Authenticator, for twice `event_timestamp_window`: as long as their
    /// timestamp would be accepted. The same signed bytes again, from any port or after
    /// the duplicate window, are a replay: answered as before, never applied twice.
    stamped: DuplicateCache,
}

impl Server {
    pub fn new(
        settings: RadiusSettings,
        shared: Arc<super::OverlayShared>,
        counters: Arc<Counters>,
    ) -> Self {
        let duplicates = DuplicateCache::new(settings.duplicate_window, DUPLICATE_CACHE_CAPACITY);
        let stamped = DuplicateCache::new(
            settings.event_timestamp_window.saturating_mul(2),
            DUPLICATE_CACHE_CAPACITY,
        );
        Self {
            settings,
            shared,
            counters,
            duplicates,
            stamped,
        }
    }

    /// Handles one datagram from `peer`; `now` is the wall clock (Unix seconds: expiry,
    /// Event-Timestamp), `at` the monotonic one (the duplicate window). Returns the
    /// Accounting-Response to send, if any. In order: an unknown client, a malformed
    /// packet or a bad authenticator is dropped; a duplicate gets the earlier answer
    /// again and is not applied; a request with too many addresses or an Event-Timestamp
    /// outside the window is refused (not applied, not answered: RFC 2866 2, a server
    /// answers only what it recorded); anything else is applied and answered.
    pub fn handle(
        &mut self,
        pkt: &[u8],
        peer: SocketAddr,
        now: u64,
        at: Instant,
    ) -> Option<[u8; 20]> {
        // An IPv4 NAS reaching a dual-stack socket shows as ::ffff:a.b.c.d.
        let ip = peer.ip().to_canonical();
        let Some(secret) = self
            .settings
            .clients
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, s)| s.as_bytes())
        else {
            self.counters.unknown_client.fetch_add(1, Relaxed);
            return None;
        };
        let h = match header(pkt) {
            Ok(h) if h.code == ACCOUNTING_REQUEST => h,
            _ => {
                self.counters.malformed.fetch_add(1, Relaxed);
                return None;
            }
        };
        if !verify(pkt, &h, secret) {
            self.counters.bad_authenticator.fetch_add(1, Relaxed);
            return None;
        }
        let key = (SocketAddr::new(ip, peer.port()), h.id, h.authenticator);
        if let Some(answer) = self.duplicates.get(&key, at) {
            self.counters.duplicate.fetch_add(1, Relaxed);
            tracing::debug!(
                "RADIUS: {peer} id {}: duplicate, answered as before, not applied",
                h.id
            );
            return answer;
        }
        let acct = match decode(pkt, &h) {
            Ok(a) => a,
            Err(_) => {
                self.counters.malformed.fetch_add(1, Relaxed);
                return None;
            }
        };
        let stamped_key = (SocketAddr::new(ip, 0), h.id, h.authenticator);
        let stamped = acct.event_timestamp.is_some();
        if stamped {
            if let Some(answer) = self.stamped.get(&stamped_key, at) {
                self.counters.duplicate.fetch_add(1, Relaxed);
                tracing::debug!(
                    "RADIUS: {peer} id {}: the same stamped request again (another port, or after the duplicate window): answered as before, not applied",
                    h.id
                );
                return answer;
            }
        }
        let answer = self
            .decide(&acct, peer, &h, now)
            .then(|| response(&h, secret));
        self.duplicates.insert(key, at, answer);
        if stamped {
            self.stamped.insert(stamped_key, at, answer);
        }
        answer
    }

    /// Refuses or applies a verified, new request; true: it was applied.
    fn decide(&self, acct: &Accounting, peer: SocketAddr, h: &Header, now: u64) -> bool {
        if acct.prefixes.len() > MAX_PREFIXES_PER_REQUEST {
            if self.counters.refuse(Refusal::TooManyPrefixes, now) {
                tracing::warn!(
                    "RADIUS: {peer} id {}: {} addresses and prefixes in one request (at most {MAX_PREFIXES_PER_REQUEST}): refused, not answered ({} so far)",
                    h.id,
                    acct.prefixes.len(),
                    self.counters.too_many_prefixes.load(Relaxed)
                );
            }
            return false;
        }
        if let Some(sent) = acct.sent_at() {
            let window = self.settings.event_timestamp_window.as_secs();
            if sent.abs_diff(now) > window {
                if self.counters.refuse(Refusal::StaleTimestamp, now) {
                    tracing::warn!(
                        "RADIUS: {peer} id {}: Event-Timestamp {} + Acct-Delay-Time {} is {} s from this box's clock {now} (radius.event_timestamp_window_secs: {window}): refused, not answered; a replay, or the NAS's clock is off ({} so far)",
                        h.id,
                        acct.event_timestamp.unwrap_or(0),
                        acct.delay.unwrap_or(0),
                        sent.abs_diff(now),
                        self.counters.stale_timestamp.load(Relaxed)
                    );
                }
                return false;
            }
        }
        apply(&self.settings, &self.shared, &self.counters, acct, now);
        self.counters.accepted.fetch_add(1, Relaxed);
        true
    }
}

/// Binds the UDP socket and serves until `stop` ([`Server::handle`] for each datagram).
pub fn serve(
    settings: RadiusSettings,
    shared: Arc<super::OverlayShared>,
    counters: Arc<Counters>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let sock = std::net::UdpSocket::bind(settings.listen)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut server = Server::new(settings, shared, counters);
    std::thread::Builder::new()
        .name("op25b-radius".into())
        .spawn(move || {
            let mut buf = vec![0u8; MAX_PACKET + 1];
            while !stop.load(Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let now = crate::clock::unix_now();
                if let Some(answer) = server.handle(&buf[..n], peer, now, Instant::now()) {
                    let _ = sock.send_to(&answer, peer);
                }
            }
        })
}

/// Applies one verified Accounting-Request to the overlay. Operator and auto-quarantine
/// entries are never touched by RADIUS. New entries beyond `max_entries`, IPv6 prefixes
/// shorter than `min_ipv6_prefix_len`, and a Start that would take an address from a
/// session whose entry is newer than the Start's Event-Timestamp are refused, counted and
/// logged.
pub fn apply(
    settings: &RadiusSettings,
    shared: &super::OverlayShared,
    counters: &Counters,
    acct: &Accounting,
    now: u64,
) {
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
        let Some(created) = may_change(acct, &existing, counters, prefix, now) else {
            continue;
        };
        match (acct.status, &class) {
            (Some(Status::Start | Status::InterimUpdate), Some(class)) => {
                let new = Grant {
                    prefix,
                    class,
                    created,
                    is_new: existing.is_none(),
                };
                changed |= grant(settings, shared, &mut store, counters, acct, new, now);
            }
            // A Stop, or a session without a mapped Filter-Id (the address went to
            // another subscriber): the address loses its RADIUS entry.
            (Some(Status::Start | Status::InterimUpdate | Status::Stop), _)
                if existing.is_some() && store.remove(&prefix).is_some() =>
            {
                changed = true;
                shared.removed.fetch_add(1, Relaxed);
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
        shared.publish(&mut store);
    }
}

/// Whether `acct` may change the entry of `prefix` (`existing`: its source, session and
/// creation time), and if so the creation time the entry keeps.
fn may_change(
    acct: &Accounting,
    existing: &Option<(EntrySource, Option<String>, u64)>,
    counters: &Counters,
    prefix: IpNet,
    now: u64,
) -> Option<u64> {
    let session = acct.session.as_deref().unwrap_or("-");
    // Operator and auto-quarantine entries are not RADIUS's to change.
    if existing
        .as_ref()
        .is_some_and(|(s, ..)| *s != EntrySource::Radius)
    {
        return None;
    }
    // Only the owning session's Stop or Interim-Update changes an entry; a Start
    // takes the address over (it was reassigned), unless it was sent before the
    // owner's entry was made (an old Start, replayed or late).
    let same_session = existing
        .as_ref()
        .is_none_or(|(_, owner, _)| owner.is_none() || *owner == acct.session);
    if acct.status != Some(Status::Start) && !same_session {
        return None;
    }
    // The event's own time (not plus Acct-Delay-Time): a Start the NAS buffered is
    // still older than a session that began while it waited.
    if let (Some(Status::Start), false, Some((_, owner, created)), Some(event)) = (
        acct.status,
        same_session,
        existing,
        acct.event_timestamp.map(u64::from),
    ) {
        if event < *created {
            if counters.refuse(Refusal::OutOfOrder, now) {
                tracing::warn!(
                    "RADIUS: {prefix}: Start of session {session} at {event} (Event-Timestamp), before session {} took the address at {created}: refused (a replay or a late Start) ({} so far)",
                    owner.as_deref().unwrap_or("-"),
                    counters.refused_out_of_order.load(Relaxed)
                );
            }
            return None;
        }
    }
    Some(match existing {
        Some((_, _, c)) if same_session && acct.status != Some(Status::Start) => *c,
        _ => now,
    })
}

/// A class RADIUS gives a prefix.
struct Grant<'a> {
    prefix: IpNet,
    class: &'a str,
    /// The entry's creation time ([`may_change`]).
    created: u64,
    /// No entry for the prefix yet (it counts against `radius.max_entries`).
    is_new: bool,
}

/// A Start or Interim-Update with a mapped class: the prefix gets the class unless a
/// limit refuses it. Returns whether the store changed.
fn grant(
    settings: &RadiusSettings,
    shared: &super::OverlayShared,
    store: &mut super::store::Store,
    counters: &Counters,
    acct: &Accounting,
    g: Grant<'_>,
    now: u64,
) -> bool {
    let (prefix, class) = (g.prefix, g.class);
    let session = acct.session.as_deref().unwrap_or("-");
    if let IpNet::V6(n) = prefix {
        if n.prefix_len() < settings.min_ipv6_prefix_len {
            if counters.refuse(Refusal::PrefixTooShort, now) {
                tracing::warn!(
                    "RADIUS: {prefix} of session {session}: shorter than radius.min_ipv6_prefix_len /{}: refused ({} so far)",
                    settings.min_ipv6_prefix_len,
                    counters.refused_prefix_too_short.load(Relaxed)
                );
            }
            return false;
        }
    }
    if g.is_new && store.count(EntrySource::Radius) >= settings.max_entries {
        if counters.refuse(Refusal::OverlayFull, now) {
            tracing::warn!(
                "RADIUS: {prefix} of session {session}: {} RADIUS entries, radius.max_entries is {}: refused ({} so far)",
                store.count(EntrySource::Radius),
                settings.max_entries,
                counters.refused_overlay_full.load(Relaxed)
            );
        }
        return false;
    }
    let e = OverlayEntry {
        prefix,
        class: class.to_string(),
        source: EntrySource::Radius,
        note: format!(
            "session {session} user {}",
            acct.user.as_deref().unwrap_or("-")
        ),
        created: g.created,
        expires: Some(now.saturating_add(settings.session_timeout.as_secs().max(1))),
        session: acct.session.clone(),
    };
    match store.upsert(e) {
        Ok(old) => {
            if old.is_none() {
                shared.added.fetch_add(1, Relaxed);
                tracing::info!(
                    target: "op25b::overlay",
                    prefix = %prefix,
                    class = %class,
                    source = "radius",
                    session = session,
                    "overlay: {prefix} is class {class} (RADIUS session {session})"
                );
            }
            true
        }
        Err(e) => {
            tracing::error!("RADIUS: {prefix}: {e}");
            false
        }
    }
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

    // --- the listener: duplicates, Event-Timestamp, limits --------------------------

    use crate::control::overlay::store::{EntrySource, OverlayEntry};
    use crate::control::overlay::OverlayShared;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const SECRET: &str = "testing123";
    const NOW: u64 = 1_800_000_000;

    fn settings() -> RadiusSettings {
        RadiusSettings {
            listen: "127.0.0.1:1813".parse().unwrap(),
            clients: vec![("192.0.2.0/28".parse().unwrap(), SECRET.into())],
            filter_ids: [("op25b-exempt".to_string(), "static".to_string())].into(),
            session_timeout: Duration::from_secs(900),
            duplicate_window: Duration::from_secs(30),
            event_timestamp_window: Duration::from_secs(300),
            max_entries: 1000,
            min_ipv6_prefix_len: 48,
        }
    }

    fn server(settings: RadiusSettings) -> (Server, Arc<OverlayShared>, Arc<Counters>) {
        let shared = Arc::new(crate::control::overlay::overlay_for_tests(None));
        let counters = Arc::new(Counters::default());
        (
            Server::new(settings, shared.clone(), counters.clone()),
            shared,
            counters,
        )
    }

    /// An Accounting-Request with a valid authenticator for `SECRET`.
    fn request(id: u8, attrs: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![ACCOUNTING_REQUEST, id, 0, 0];
        p.extend_from_slice(&[0u8; 16]);
        for (k, v) in attrs {
            p.push(*k);
            p.push(u8::try_from(v.len() + 2).unwrap());
            p.extend_from_slice(v);
        }
        let len = u16::try_from(p.len()).unwrap().to_be_bytes();
        p[2..4].copy_from_slice(&len);
        let mut m = Md5::new();
        m.update(&p);
        m.update(SECRET.as_bytes());
        let auth: [u8; 16] = m.finalize().into();
        p[4..20].copy_from_slice(&auth);
        p
    }

    fn status(s: u32) -> (u8, Vec<u8>) {
        (ATTR_ACCT_STATUS_TYPE, s.to_be_bytes().to_vec())
    }
    fn session(s: &str) -> (u8, Vec<u8>) {
        (ATTR_ACCT_SESSION_ID, s.as_bytes().to_vec())
    }
    fn exempt() -> (u8, Vec<u8>) {
        (ATTR_FILTER_ID, b"op25b-exempt".to_vec())
    }
    fn v4(a: [u8; 4]) -> (u8, Vec<u8>) {
        (ATTR_FRAMED_IP_ADDRESS, a.to_vec())
    }
    fn v6_address(i: u16) -> (u8, Vec<u8>) {
        let a: Ipv6Addr = format!("2001:db8:100::{i:x}").parse().unwrap();
        (ATTR_FRAMED_IPV6_ADDRESS, a.octets().to_vec())
    }
    fn delegated(len: u8) -> (u8, Vec<u8>) {
        let mut v = vec![0, len];
        v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0, 0]);
        (ATTR_DELEGATED_IPV6_PREFIX, v)
    }
    fn event(t: u64) -> (u8, Vec<u8>) {
        (
            ATTR_EVENT_TIMESTAMP,
            u32::try_from(t).unwrap().to_be_bytes().to_vec(),
        )
    }
    fn delay(t: u32) -> (u8, Vec<u8>) {
        (ATTR_ACCT_DELAY_TIME, t.to_be_bytes().to_vec())
    }

    const NAS: &str = "192.0.2.1:40000";
    const A: &str = "198.51.100.10/32";

    fn has(shared: &OverlayShared, p: &str) -> Option<OverlayEntry> {
        let store = shared.store.lock().unwrap();
        store.get(&p.parse().unwrap()).cloned()
    }

    #[test]
    fn a_retransmitted_request_is_answered_again_but_not_applied_again() {
        let (mut srv, shared, counters) = server(settings());
        let nas = NAS.parse().unwrap();
        let t0 = Instant::now();
        let start = request(
            7,
            &[status(1), session("s1"), exempt(), v4([198, 51, 100, 10])],
        );
        let stop = request(8, &[status(2), session("s1"), v4([198, 51, 100, 10])]);
        let first = srv.handle(&start, nas, NOW, t0).expect("Start answered");
        assert!(has(&shared, A).is_some());
        assert!(srv
            .handle(&stop, nas, NOW + 1, t0 + Duration::from_secs(1))
            .is_some());
        assert!(has(&shared, A).is_none(), "the Stop removed the entry");
        // The Start again, 10 s later, from the same port: the NAS lost our answer (or
        // someone replays it). Same answer, and the address stays released.
        let again = srv.handle(&start, nas, NOW + 10, t0 + Duration::from_secs(10));
        assert_eq!(
            again,
            Some(first),
            "a duplicate is answered like the first time"
        );
        assert!(
            has(&shared, A).is_none(),
            "a duplicate Start was applied again"
        );
        assert_eq!(counters.duplicate.load(Relaxed), 1);
        assert_eq!(counters.accepted.load(Relaxed), 2);
        // After the window it is a new request (Event-Timestamp, when sent, bounds it).
        assert!(srv
            .handle(&start, nas, NOW + 40, t0 + Duration::from_secs(40))
            .is_some());
        assert!(has(&shared, A).is_some());
        assert_eq!(counters.duplicate.load(Relaxed), 1);
    }

    /// A stamped Start replayed after its Stop, from another port and after the
    /// duplicate window but within the Event-Timestamp window: answered as before, not
    /// applied (it would bring an exemption back). Fails without the `stamped` cache.
    #[test]
    fn a_stamped_request_replayed_from_another_port_is_not_applied_again() {
        let (mut srv, shared, counters) = server(settings());
        let nas = NAS.parse().unwrap();
        let other_port: SocketAddr = "192.0.2.1:40999".parse().unwrap();
        let t0 = Instant::now();
        let start = request(
            7,
            &[
                status(1),
                session("s1"),
                exempt(),
                event(NOW),
                v4([198, 51, 100, 10]),
            ],
        );
        let stop = request(
            8,
            &[
                status(2),
                session("s1"),
                event(NOW + 40),
                v4([198, 51, 100, 10]),
            ],
        );
        let first = srv.handle(&start, nas, NOW, t0).expect("Start answered");
        assert!(has(&shared, A).is_some());
        let later = |s: u64| t0 + Duration::from_secs(s);
        assert!(srv.handle(&stop, nas, NOW + 40, later(40)).is_some());
        assert!(has(&shared, A).is_none(), "the Stop removed the entry");
        for (port, secs) in [(other_port, 60), (nas, 120)] {
            let again = srv.handle(&start, port, NOW + secs, later(secs));
            assert_eq!(
                again,
                Some(first),
                "a replay is answered like the first time"
            );
            assert!(
                has(&shared, A).is_none(),
                "the replayed Start from {port} at +{secs} s was applied again"
            );
        }
        assert_eq!(counters.duplicate.load(Relaxed), 2);
        assert_eq!(counters.accepted.load(Relaxed), 2);
    }

    #[test]
    fn the_duplicate_cache_keeps_a_fixed_number_of_requests_and_drops_the_oldest() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(30), 2);
        let key = |id: u8| (NAS.parse().unwrap(), id, [id; 16]);
        c.insert(key(1), t0, None);
        c.insert(key(2), t0, Some([2; 20]));
        c.insert(key(3), t0, Some([3; 20]));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(1), t0), None, "the oldest went");
        assert_eq!(c.get(&key(2), t0), Some(Some([2; 20])));
        assert_eq!(
            c.get(&key(3), t0 + Duration::from_secs(30)),
            None,
            "past the window"
        );
        assert!(c.is_empty());
        // The source port is part of the key.
        let other = ("192.0.2.1:40001".parse().unwrap(), 1, [1; 16]);
        c.insert(key(1), t0, None);
        assert_eq!(c.get(&other, t0), None);
    }

    #[test]
    fn a_request_whose_event_timestamp_is_out_of_the_window_is_refused_unanswered() {
        let (mut srv, shared, counters) = server(settings());
        let nas = NAS.parse().unwrap();
        let t0 = Instant::now();
        // Recorded 20 minutes ago and replayed now.
        let old = request(
            9,
            &[
                status(1),
                session("s1"),
                exempt(),
                v4([198, 51, 100, 10]),
                event(NOW - 1200),
            ],
        );
        assert_eq!(
            srv.handle(&old, nas, NOW, t0),
            None,
            "a stale request is not answered"
        );
        assert!(has(&shared, A).is_none(), "a stale request was applied");
        assert_eq!(counters.stale_timestamp.load(Relaxed), 1);
        // Its retransmission gets the same (no) answer without counting it stale twice.
        assert_eq!(
            srv.handle(&old, nas, NOW + 1, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(counters.duplicate.load(Relaxed), 1);
        // From the future too.
        let ahead = request(
            10,
            &[
                status(1),
                session("s1"),
                exempt(),
                v4([198, 51, 100, 10]),
                event(NOW + 400),
            ],
        );
        assert_eq!(srv.handle(&ahead, nas, NOW, t0), None);
        assert_eq!(counters.stale_timestamp.load(Relaxed), 2);
        // The NAS buffered it for 1,190 s and says so (Acct-Delay-Time): sent 10 s ago.
        let late = request(
            11,
            &[
                status(1),
                session("s1"),
                exempt(),
                v4([198, 51, 100, 10]),
                event(NOW - 1200),
                delay(1190),
            ],
        );
        assert!(srv.handle(&late, nas, NOW, t0).is_some());
        assert!(has(&shared, A).is_some());
        assert_eq!(counters.accepted.load(Relaxed), 1);
    }

    #[test]
    fn radius_entries_beyond_max_entries_are_refused_and_counted_operator_entries_stay() {
        let (mut srv, shared, counters) = server(RadiusSettings {
            max_entries: 2,
            ..settings()
        });
        let nas = NAS.parse().unwrap();
        let t0 = Instant::now();
        shared
            .store
            .lock()
            .unwrap()
            .upsert(OverlayEntry {
                prefix: "198.51.100.99/32".parse().unwrap(),
                class: "static".into(),
                source: EntrySource::Operator,
                note: String::new(),
                created: NOW,
                expires: None,
                session: None,
            })
            .unwrap();
        let start = request(
            12,
            &[
                status(1),
                session("s1"),
                exempt(),
                v6_address(1),
                v6_address(2),
                v6_address(3),
            ],
        );
        assert!(
            srv.handle(&start, nas, NOW, t0).is_some(),
            "the request is answered"
        );
        let store = shared.store.lock().unwrap();
        assert_eq!(store.count(EntrySource::Radius), 2, "the cap holds");
        assert_eq!(
            store.count(EntrySource::Operator),
            1,
            "no operator entry is evicted"
        );
        drop(store);
        assert!(has(&shared, "2001:db8:100::3/128").is_none());
        assert_eq!(counters.refused_overlay_full.load(Relaxed), 1);
        // A full overlay still refreshes the entries it has.
        let interim = request(
            13,
            &[
                status(3),
                session("s1"),
                exempt(),
                v6_address(1),
                v6_address(2),
            ],
        );
        assert!(srv.handle(&interim, nas, NOW + 60, t0).is_some());
        assert_eq!(
            has(&shared, "2001:db8:100::1/128").unwrap().expires,
            Some(NOW + 60 + 900)
        );
        assert_eq!(counters.refused_overlay_full.load(Relaxed), 1);
    }

    #[test]
    fn an_ipv6_prefix_shorter_than_min_ipv6_prefix_len_is_refused() {
        let (mut srv, shared, counters) = server(settings());
        let nas = NAS.parse().unwrap();
        let t0 = Instant::now();
        let wide = request(14, &[status(1), session("s1"), exempt(), delegated(32)]);
        assert!(srv.handle(&wide, nas, NOW, t0).is_some());
        assert!(
            has(&shared, "2001:db8::/32").is_none(),
            "a /32 from RADIUS was taken"
        );
        assert_eq!(counters.refused_prefix_too_short.load(Relaxed), 1);
        let ok = request(15, &[status(1), session("s1"), exempt(), delegated(56)]);
        assert!(srv.handle(&ok, nas, NOW, t0).is_some());
        assert!(has(&shared, "2001:db8:100::/56").is_some());
        assert_eq!(counters.refused_prefix_too_short.load(Relaxed), 1);
    }

    #[test]
    fn a_request_with_too_many_addresses_is_refused_unanswered() {
        let (mut srv, shared, counters) = server(settings());
        let n = u16::try_from(MAX_PREFIXES_PER_REQUEST).unwrap() + 1;
        let mut attrs = vec![status(1), session("s1"), exempt()];
        attrs.extend((1..=n).map(v6_address));
        let flood = request(16, &attrs);
        assert_eq!(
            srv.handle(&flood, NAS.parse().unwrap(), NOW, Instant::now()),
            None
        );
        assert!(shared.store.lock().unwrap().is_empty());
        assert_eq!(counters.too_many_prefixes.load(Relaxed), 1);
    }

    #[test]
    fn an_old_start_cannot_take_an_address_from_a_newer_session() {
        let (mut srv, shared, counters) = server(settings());
        let nas = NAS.parse().unwrap();
        let t0 = Instant::now();
        let s2 = request(
            17,
            &[
                status(1),
                session("s2"),
                exempt(),
                v4([198, 51, 100, 10]),
                event(NOW),
            ],
        );
        assert!(srv.handle(&s2, nas, NOW, t0).is_some());
        // s1's Start, recorded 100 s before s2 began and buffered by the NAS for 115 s
        // (Acct-Delay-Time), arrives now: the event is older than s2, so it must not
        // hand the address back to s1.
        let s1 = request(
            18,
            &[
                status(1),
                session("s1"),
                v4([198, 51, 100, 10]),
                event(NOW - 100),
                delay(115),
            ],
        );
        assert!(srv
            .handle(&s1, "192.0.2.1:40001".parse().unwrap(), NOW + 10, t0)
            .is_some());
        assert_eq!(has(&shared, A).unwrap().session.as_deref(), Some("s2"));
        assert_eq!(counters.refused_out_of_order.load(Relaxed), 1);
        // A Start sent after s2 began takes it over (the address was reassigned).
        let s3 = request(
            19,
            &[
                status(1),
                session("s3"),
                v4([198, 51, 100, 10]),
                event(NOW + 20),
            ],
        );
        assert!(srv.handle(&s3, nas, NOW + 20, t0).is_some());
        assert!(
            has(&shared, A).is_none(),
            "s3 has no mapped Filter-Id: the entry goes"
        );
    }
}
