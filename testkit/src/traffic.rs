//! The benchmark harness's pure parts: traffic profiles, tagged frame templates, the
//! sink's accounting and the reports (`op25b-bench gen|sink|report`). No NIC here; the
//! AF_XDP loops are in [`crate::run`].
//!
//! Every generated frame ends with a 10-byte [`Tag`]: magic, the verdict the policy
//! should give the frame (pass or block), the generator stream and a 48-bit sequence
//! number, plus a 16-bit word that makes the tag's one's-complement sum constant, so
//! the template's TCP/UDP checksum stays valid whatever the sequence number.

use crate::fixtures;
use ipnet::IpNet;
use op25b::classify;
use op25b::classify::checksum::{fold, sum16};
use op25b::policy::{Direction, Policy, Verdict};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Bytes of the tag at the end of every generated frame.
pub const TAG_LEN: usize = 10;
const TAG_MAGIC: u8 = 0xb5;

/// What the policy should do with a frame, as carried in its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Pass,
    Block,
}

/// The tag's sequence numbers and timestamps are 24-bit and wrap (mask).
pub const TAG_WRAP_MASK: u32 = (1 << 24) - 1;

/// The tag at the end of a generated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub expect: Expect,
    /// Generator stream (thread), 0..127.
    pub stream: u8,
    /// Sequence number within the stream, modulo 2^24 (compared with wrap-around).
    pub seq: u32,
    /// When the generator queued the frame: CLOCK_MONOTONIC in microseconds modulo 2^24
    /// (16.7 s), which every network namespace shares; the sink takes the difference.
    pub sent_us: u32,
}

impl Tag {
    /// The tag's bytes; their 16-bit one's-complement sum is always 0xffff.
    #[inline]
    pub fn encode(&self) -> [u8; TAG_LEN] {
        let mut b = [0u8; TAG_LEN];
        b[0] = TAG_MAGIC;
        b[1] = (self.stream & 0x7f) << 1 | u8::from(self.expect == Expect::Block);
        b[2..5].copy_from_slice(&self.seq.to_be_bytes()[1..4]);
        b[5..8].copy_from_slice(&self.sent_us.to_be_bytes()[1..4]);
        let sum = sum16(&b[..8], 0);
        b[8..10].copy_from_slice(&(!fold(sum)).to_be_bytes());
        b
    }

    /// The tag at the end of `frame`, if it has a valid one.
    #[inline]
    pub fn decode(frame: &[u8]) -> Option<Tag> {
        let b: &[u8; TAG_LEN] = frame
            .get(frame.len().checked_sub(TAG_LEN)?..)?
            .try_into()
            .ok()?;
        if b[0] != TAG_MAGIC {
            return None;
        }
        if fold(sum16(b, 0)) != 0xffff {
            return None;
        }
        let seq = u32::from_be_bytes([0, b[2], b[3], b[4]]);
        let sent_us = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        Some(Tag {
            expect: if b[1] & 1 == 1 {
                Expect::Block
            } else {
                Expect::Pass
            },
            stream: b[1] >> 1,
            seq,
            sent_us,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Profiles

/// A weighted address range of a profile.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Name in the report ("dynamic", "relay", ...); defaults to the prefix.
    #[serde(default)]
    pub name: Option<String>,
    pub prefix: IpNet,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A traffic profile (YAML, see configs/bench-profile.yaml).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Frame size in bytes without FCS (64..=MTU+14); raised where the headers need more.
    #[serde(default = "default_size")]
    pub frame_size: usize,
    /// Share of frames that are TCP to an SMTP port (`smtp_ports`).
    #[serde(default = "half")]
    pub smtp_share: f64,
    #[serde(default = "smtp_ports")]
    pub smtp_ports: Vec<u16>,
    /// Destination ports of the other traffic.
    #[serde(default = "other_ports")]
    pub other_ports: Vec<u16>,
    /// Share of the other traffic that is UDP rather than TCP.
    #[serde(default)]
    pub udp_share: f64,
    /// Share of TCP segments that are SYNs (the rest are mid-stream ACK+PSH).
    #[serde(default = "one_f")]
    pub syn_share: f64,
    #[serde(default)]
    pub ipv6_share: f64,
    #[serde(default)]
    pub vlan_share: f64,
    #[serde(default)]
    pub qinq_share: f64,
    #[serde(default)]
    pub pppoe_share: f64,
    /// Share of the flows that are hostile frames ([`hostile::frames`]): broken copies
    /// of port-25 SYNs from the source pools, sent untagged and unchanged.
    #[serde(default)]
    pub hostile_share: f64,
    /// Largest hostile frame (MTU + Ethernet header).
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
    /// Distinct frame templates (flows); the generator cycles through them.
    #[serde(default = "default_flows")]
    pub flows: usize,
    #[serde(default = "one_u64")]
    pub seed: u64,
    #[serde(default = "default_src_mac")]
    pub src_mac: String,
    #[serde(default = "default_dst_mac")]
    pub dst_mac: String,
    pub sources: Vec<Pool>,
    pub destinations: Vec<Pool>,
}

fn default_size() -> usize {
    64
}
fn half() -> f64 {
    0.5
}
fn one_f() -> f64 {
    1.0
}
fn one_u64() -> u64 {
    1
}
fn default_max_frame() -> usize {
    1514
}
fn default_flows() -> usize {
    1024
}
fn smtp_ports() -> Vec<u16> {
    vec![25, 465, 587]
}
fn other_ports() -> Vec<u16> {
    vec![80, 443]
}
fn default_src_mac() -> String {
    "02:00:00:00:01:01".into()
}
fn default_dst_mac() -> String {
    "02:00:00:00:02:01".into()
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("profile {}: {field}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl Profile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks profile text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Profile, ProfileError> {
        let p: Profile = serde_yaml::from_str(text).map_err(|e| ProfileError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?;
        let bad = |field: &str, message: String| ProfileError::Invalid {
            path: path.into(),
            field: field.into(),
            message,
        };
        for (name, v) in [
            ("smtp_share", p.smtp_share),
            ("udp_share", p.udp_share),
            ("syn_share", p.syn_share),
            ("ipv6_share", p.ipv6_share),
            ("vlan_share", p.vlan_share),
            ("qinq_share", p.qinq_share),
            ("pppoe_share", p.pppoe_share),
            ("hostile_share", p.hostile_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(name, format!("{v} is outside 0..1")));
            }
        }
        if p.vlan_share + p.qinq_share + p.pppoe_share > 1.0 {
            return Err(bad(
                "vlan_share",
                "vlan_share + qinq_share + pppoe_share is more than 1".into(),
            ));
        }
        if !(64..=9000).contains(&p.frame_size) {
            return Err(bad(
                "frame_size",
                format!("{} is outside 64..9000", p.frame_size),
            ));
        }
        if !(128..=4000).contains(&p.max_frame) {
            return Err(bad(
                "max_frame",
                format!("{} is outside 128..4000", p.max_frame),
            ));
        }
        if !(1..=1 << 20).contains(&p.flows) {
            return Err(bad("flows", format!("{} is outside 1..1048576", p.flows)));
        }
        if p.smtp_ports.is_empty() && p.smtp_share > 0.0 {
            return Err(bad("smtp_ports", "empty while smtp_share > 0".into()));
        }
        if p.other_ports.is_empty() && p.smtp_share < 1.0 {
            return Err(bad("other_ports", "empty while smtp_share < 1".into()));
        }
        for (field, mac) in [("src_mac", &p.src_mac), ("dst_mac", &p.dst_mac)] {
            if parse_mac(mac).is_none() {
                return Err(bad(
                    field,
                    format!("{mac:?} is not a MAC such as 02:00:00:00:01:01"),
                ));
            }
        }
        for (field, pools) in [("sources", &p.sources), ("destinations", &p.destinations)] {
            for fam6 in [false, true] {
                let share = if fam6 {
                    p.ipv6_share
                } else {
                    1.0 - p.ipv6_share
                };
                let w: u64 = pools
                    .iter()
                    .filter(|x| matches!(x.prefix, IpNet::V6(_)) == fam6)
                    .map(|x| u64::from(x.weight))
                    .sum();
                if share > 0.0 && w == 0 {
                    return Err(bad(
                        field,
                        format!(
                            "no {} prefix with a weight > 0, but ipv6_share is {}",
                            if fam6 { "IPv6" } else { "IPv4" },
                            p.ipv6_share
                        ),
                    ));
                }
            }
        }
        Ok(p)
    }
}

fn expect_of(v: Verdict) -> Expect {
    match v {
        Verdict::Forward(_) => Expect::Pass,
        _ => Expect::Block,
    }
}

/// The DUT report's key for a verdict (`forward/port_open`, `reject/blocked_port`...).
pub fn verdict_key(v: Verdict) -> String {
    let action = match v {
        Verdict::Forward(_) => "forward",
        Verdict::Drop(_) => "drop",
        Verdict::Reject(..) => "reject",
    };
    format!("{action}/{}", v.reason().as_str())
}

/// A small deterministic PRNG (splitmix64): profiles give the same frames on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, pools: &'a [Pool], v6: bool) -> &'a Pool {
        let cands: Vec<&Pool> = pools
            .iter()
            .filter(|p| matches!(p.prefix, IpNet::V6(_)) == v6 && p.weight > 0)
            .collect();
        let total: u64 = cands.iter().map(|p| u64::from(p.weight)).sum();
        let mut r = self.below(total);
        for p in &cands {
            if r < u64::from(p.weight) {
                return p;
            }
            r -= u64::from(p.weight);
        }
        cands[cands.len() - 1]
    }
    /// A random address in `net` (the host part random).
    fn addr_in(&mut self, net: &IpNet) -> IpAddr {
        match net {
            IpNet::V4(n) => {
                let host = if n.prefix_len() == 32 {
                    0
                } else {
                    (self.next() as u32) & (u32::MAX >> n.prefix_len())
                };
                IpAddr::V4((u32::from(n.network()) | host).into())
            }
            IpNet::V6(n) => {
                let r = (u128::from(self.next()) << 64) | u128::from(self.next());
                let host = if n.prefix_len() == 128 {
                    0
                } else {
                    r & (u128::MAX >> n.prefix_len())
                };
                IpAddr::V6((u128::from(n.network()) | host).into())
            }
        }
    }
}

/// One generated frame with everything but the tag, and what the policy makes of it.
#[derive(Clone, Debug)]
pub struct Template {
    /// The whole frame; its last [`TAG_LEN`] bytes are rewritten per frame.
    pub frame: Vec<u8>,
    pub expect: Expect,
    /// Source pool name and destination pool name (report).
    pub source: usize,
    pub destination: usize,
    /// False for hostile frames: sent as they are, with no tag.
    pub tagged: bool,
    /// The policy's verdict (report: what the DUT's counters should show).
    pub verdict: Verdict,
}

/// Templates plus the names of the pools they came from.
#[derive(Clone, Debug)]
pub struct TemplateSet {
    pub templates: Vec<Template>,
    pub source_names: Vec<String>,
    pub destination_names: Vec<String>,
}

impl TemplateSet {
    /// Frames that should pass / be blocked.
    pub fn counts(&self) -> (usize, usize) {
        let block = self
            .templates
            .iter()
            .filter(|t| t.expect == Expect::Block)
            .count();
        (self.templates.len() - block, block)
    }
}

fn pool_name(p: &Pool) -> String {
    p.name.clone().unwrap_or_else(|| p.prefix.to_string())
}

fn tcp_or_udp(
    rng: &mut Rng,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    udp: bool,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let sport = 1024 + rng.below(60000) as u16;
    let mut out = Vec::with_capacity(80 + payload.len());
    let step = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), 64)
        }
        _ => unreachable!("families are matched by the caller"),
    };
    let r = if udp {
        step.udp(sport, dport).write(&mut out, payload)
    } else {
        let t = step.tcp(sport, dport, rng.next() as u32, 64240);
        let t = if syn {
            t.syn()
        } else {
            t.ack(rng.next() as u32).psh()
        };
        t.write(&mut out, payload)
    };
    r.expect("writing to a Vec");
    out
}

/// Builds the profile's templates and judges each with `policy` (outbound).
pub fn templates(profile: &Profile, policy: &Policy) -> TemplateSet {
    let mut rng = Rng(profile.seed);
    let src_mac = parse_mac(&profile.src_mac).expect("validated");
    let dst_mac = parse_mac(&profile.dst_mac).expect("validated");
    let mut out = Vec::with_capacity(profile.flows);
    for _ in 0..profile.flows {
        let v6 = rng.chance(profile.ipv6_share);
        let sp = rng.pick(&profile.sources, v6);
        let dp = rng.pick(&profile.destinations, v6);
        let source = profile
            .sources
            .iter()
            .position(|p| std::ptr::eq(p, sp))
            .expect("picked from the list");
        let destination = profile
            .destinations
            .iter()
            .position(|p| std::ptr::eq(p, dp))
            .expect("picked from the list");
        let src = rng.addr_in(&sp.prefix);
        let dst = rng.addr_in(&dp.prefix);
        let smtp = rng.chance(profile.smtp_share);
        let (dport, udp) = if smtp {
            let ports = &profile.smtp_ports;
            (ports[rng.below(ports.len() as u64) as usize], false)
        } else {
            let ports = &profile.other_ports;
            (
                ports[rng.below(ports.len() as u64) as usize],
                rng.chance(profile.udp_share),
            )
        };
        let syn = rng.chance(profile.syn_share);
        let r = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let encap = if r < profile.vlan_share {
            fixtures::Encap::Vlan(100 + rng.below(3000) as u16)
        } else if r < profile.vlan_share + profile.qinq_share {
            fixtures::Encap::QinQ(
                0x88a8,
                10 + rng.below(100) as u16,
                100 + rng.below(3000) as u16,
            )
        } else if r < profile.vlan_share + profile.qinq_share + profile.pppoe_share {
            fixtures::Encap::Pppoe(1 + rng.below(60000) as u16)
        } else {
            fixtures::Encap::Plain
        };
        // Size the payload so the frame reaches frame_size, with an even payload so the
        // tag sits on a 16-bit boundary of the L4 checksum.
        let probe = fixtures::wrap(
            encap,
            &tcp_or_udp(&mut Rng(0), src, dst, dport, udp, syn, &[]),
            v6,
            true,
        );
        let mut payload_len = profile.frame_size.saturating_sub(probe.len()).max(TAG_LEN);
        payload_len += payload_len % 2;
        let mut payload = vec![0u8; payload_len];
        let tag = Tag {
            expect: Expect::Pass,
            stream: 0,
            seq: 0,
            sent_us: 0,
        };
        payload[payload_len - TAG_LEN..].copy_from_slice(&tag.encode());
        let ip = tcp_or_udp(&mut rng, src, dst, dport, udp, syn, &payload);
        let mut frame = fixtures::wrap(encap, &ip, v6, true);
        frame[0..6].copy_from_slice(&dst_mac);
        frame[6..12].copy_from_slice(&src_mac);
        let verdict = classify::classify(&frame, Direction::Outbound, policy).verdict;
        out.push(Template {
            frame,
            expect: expect_of(verdict),
            source,
            destination,
            tagged: true,
            verdict,
        });
    }
    // Hostile flows replace the last `hostile_share` of the templates, cycling through
    // the catalogue with addresses drawn from the pools.
    let n_hostile = (profile.flows as f64 * profile.hostile_share).round() as usize;
    if n_hostile > 0 {
        out.truncate(profile.flows - n_hostile.min(profile.flows));
        let mut catalogue = Vec::new();
        while out.len() < profile.flows {
            if catalogue.is_empty() {
                let mut pick = |v6: bool| {
                    let fam_ok = |ps: &[Pool]| {
                        ps.iter()
                            .any(|p| matches!(p.prefix, IpNet::V6(_)) == v6 && p.weight > 0)
                    };
                    if !fam_ok(&profile.sources) || !fam_ok(&profile.destinations) {
                        return None;
                    }
                    let sp = rng.pick(&profile.sources, v6);
                    let dp = rng.pick(&profile.destinations, v6);
                    let si = profile
                        .sources
                        .iter()
                        .position(|p| std::ptr::eq(p, sp))
                        .expect("from the list");
                    let di = profile
                        .destinations
                        .iter()
                        .position(|p| std::ptr::eq(p, dp))
                        .expect("from the list");
                    Some((rng.addr_in(&sp.prefix), rng.addr_in(&dp.prefix), si, di))
                };
                let a = pick(false);
                let b = pick(true);
                let (s4, d4, si, di) = a.or(b).expect("validated: pools of some family");
                let (s6, d6, _, _) = b.or(a).expect("validated");
                catalogue = crate::hostile::frames(s4, d4, s6, d6, profile.max_frame)
                    .into_iter()
                    .map(|(_, f)| (f, si, di))
                    .collect();
            }
            let (mut frame, source, destination) = catalogue.pop().expect("not empty");
            if frame.len() >= 12 {
                frame[0..6].copy_from_slice(&dst_mac);
                frame[6..12].copy_from_slice(&src_mac);
            }
            let verdict = classify::classify(&frame, Direction::Outbound, policy).verdict;
            out.push(Template {
                frame,
                expect: expect_of(verdict),
                source,
                destination,
                tagged: false,
                verdict,
            });
        }
    }
    TemplateSet {
        templates: out,
        source_names: profile.sources.iter().map(pool_name).collect(),
        destination_names: profile.destinations.iter().map(pool_name).collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Sink accounting

/// Per-stream state of the sink.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StreamTally {
    pub received: u64,
    pub last_seq: Option<u32>,
    pub out_of_order: u64,
}

/// One-way latencies in microseconds (HdrHistogram: 3 significant digits up to 2^24 us,
/// constant-time recording, and merging per-queue histograms is exact).
#[derive(Clone, Debug)]
pub struct LatencyHist(hdrhistogram::Histogram<u64>);

impl Default for LatencyHist {
    fn default() -> Self {
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, u64::from(TAG_WRAP_MASK) + 1, 3)
                .expect("valid histogram bounds"),
        )
    }
}

impl LatencyHist {
    #[inline]
    pub fn record(&mut self, us: u32) {
        self.0.saturating_record(u64::from(us));
    }

    /// Records `n` latencies of `us` microseconds (the XDP sink's histogram buckets).
    pub fn record_n(&mut self, us: u32, n: u64) {
        self.0.saturating_record_n(u64::from(us), n);
    }

    pub fn merge(&mut self, o: &LatencyHist) {
        // Same bounds on both sides: cannot fail.
        let _ = self.0.add(&o.0);
    }

    /// The percentiles, or `None` without samples.
    pub fn summary(&self) -> Option<Latency> {
        (!self.0.is_empty()).then(|| Latency {
            samples: self.0.len(),
            p50: self.0.value_at_quantile(0.5),
            p99: self.0.value_at_quantile(0.99),
            p999: self.0.value_at_quantile(0.999),
            max: self.0.max(),
        })
    }
}

/// One-way latency percentiles, microseconds (generator queued -> sink received).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// What the sink saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkTally {
    /// Every frame received.
    pub received: u64,
    pub bytes: u64,
    /// Frames without a valid tag (neighbour discovery, stray traffic...).
    pub foreign: u64,
    /// Tagged frames the policy should have let through.
    pub passed: u64,
    /// Tagged frames the policy should have blocked: must stay 0.
    pub leaked: u64,
    /// Tagged frames that arrived with a lower sequence number than an earlier one of
    /// the same stream.
    pub out_of_order: u64,
    /// Frames (tagged or not) in which the oracle found a segment the policy blocks.
    pub oracle_leaks: u64,
    /// Longest time between two tagged frames.
    pub max_gap: std::time::Duration,
    pub streams: Vec<StreamTally>,
    /// One-way latency of every tagged frame.
    #[serde(skip)]
    pub latency: LatencyHist,
}

impl SinkTally {
    /// Accounts one received frame, received at `now_us` (CLOCK_MONOTONIC microseconds,
    /// [`op25b::datapath::clock::monotonic_us`]); true if it carried a tag.
    #[inline]
    pub fn record(&mut self, frame: &[u8], now_us: u64) -> bool {
        self.received += 1;
        self.bytes += frame.len() as u64;
        let Some(tag) = Tag::decode(frame) else {
            self.foreign += 1;
            return false;
        };
        match tag.expect {
            Expect::Pass => self.passed += 1,
            Expect::Block => self.leaked += 1,
        }
        let s = usize::from(tag.stream);
        if self.streams.len() <= s {
            self.streams.resize(s + 1, StreamTally::default());
        }
        let st = &mut self.streams[s];
        st.received += 1;
        match st.last_seq {
            // Behind the last one, modulo 2^24: reordered.
            Some(last)
                if tag.seq != last && (tag.seq.wrapping_sub(last) & TAG_WRAP_MASK) >= 1 << 23 =>
            {
                st.out_of_order += 1;
                self.out_of_order += 1;
            }
            _ => st.last_seq = Some(tag.seq),
        }
        // The sink reads its clock once per batch, before receiving it: a frame sent after
        // that instant (the XDP fast path delivers in microseconds) shows a delay just
        // below zero, which wraps to the top of the 24-bit range. Half the range (8 s)
        // and more is such a frame: it took less than the batch, count it as 0.
        let delay = (now_us as u32).wrapping_sub(tag.sent_us) & TAG_WRAP_MASK;
        self.latency
            .record(if delay >= 1 << 23 { 0 } else { delay });
        true
    }

    /// Adds another queue's tally (each stream arrives on one queue, so per-stream
    /// state is only kept where it was counted).
    pub fn merge(&mut self, o: &SinkTally) {
        self.received += o.received;
        self.bytes += o.bytes;
        self.foreign += o.foreign;
        self.passed += o.passed;
        self.leaked += o.leaked;
        self.out_of_order += o.out_of_order;
        self.oracle_leaks += o.oracle_leaks;
        self.max_gap = self.max_gap.max(o.max_gap);
        self.latency.merge(&o.latency);
    }
}

/// The generator's report (JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GenReport {
    pub interface: String,
    pub threads: usize,
    pub mode: String,
    pub profile: String,
    pub frame_size: usize,
    pub templates: usize,
    pub templates_block: usize,
    /// Frames the kernel took (completed transmissions).
    pub sent: u64,
    pub sent_pass: u64,
    pub sent_block: u64,
    /// Frames queued but not completed when the run ended.
    pub unsent: u64,
    /// Frames the generator's own interface dropped after taking them (its
    /// `tx_dropped` moved during the run): lost before reaching the DUT.
    #[serde(default)]
    pub link_dropped: u64,
    /// Times a rate-limited generator fell so far behind its schedule (its CPU taken
    /// by other work) that it restarted the schedule from now: each restart is
    /// offered load the set rate did not get (the XDP engine; 0 for AF_XDP).
    #[serde(default)]
    pub schedule_restarts: u64,
    pub seconds: f64,
    pub mpps: f64,
    pub rate_limit_pps: Option<u64>,
    /// Sent frames per source pool name.
    pub per_source: Vec<(String, u64)>,
    /// Sent frames per verdict the DUT's policy gives them (its counters' keys).
    #[serde(default)]
    pub per_verdict: std::collections::BTreeMap<String, u64>,
    /// Hostile (untagged) frames sent, and how many of them the policy forwards.
    #[serde(default)]
    pub sent_untagged: u64,
    #[serde(default)]
    pub sent_untagged_pass: u64,
}

/// The sink's report (JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SinkReport {
    pub interface: String,
    pub mode: String,
    pub received: u64,
    pub foreign: u64,
    pub passed: u64,
    pub leaked: u64,
    pub out_of_order: u64,
    /// Frames the independent oracle found blocked (sink `--config`; else 0).
    #[serde(default)]
    pub oracle_leaks: u64,
    /// Longest silence between two tagged frames, ms (outage measurements).
    #[serde(default)]
    pub max_gap_ms: f64,
    /// Seconds between the first and last tagged frame.
    pub seconds: f64,
    pub mpps: f64,
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_empty: u64,
    /// Frames the sink's interface dropped on receive during the run.
    #[serde(default)]
    pub link_rx_dropped: u64,
    /// One-way latency of the tagged frames (`None`: none arrived).
    #[serde(default)]
    pub latency_us: Option<Latency>,
}

/// What the DUT's side counted as dropped, from op25b's final report (`run --report`):
/// its AF_XDP sockets' kernel drops on the subscriber side, and what its upstream
/// interface dropped on transmit (on a veth: the sink's receive ring was full).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DutDrops {
    /// Kernel drops at the DUT's subscriber-side socket: `rx_dropped` (fill ring
    /// empty, among others) + `rx_ring_full`. Frames of every verdict.
    pub socket: u64,
    /// The DUT's upstream interface `tx_dropped`.
    pub link_tx: u64,
}

impl DutDrops {
    /// Reads them from op25b's final report JSON; `None` names what is missing.
    pub fn from_report(r: &serde_json::Value) -> Result<DutDrops, String> {
        let k = &r["received_on"]["subscriber"]["kernel_drops"];
        let num = |v: &serde_json::Value, what: &str| {
            v.as_u64()
                .ok_or_else(|| format!("the DUT report has no {what}"))
        };
        Ok(DutDrops {
            socket: num(
                &k["rx_dropped"],
                "received_on.subscriber.kernel_drops.rx_dropped",
            )? + num(
                &k["rx_ring_full"],
                "received_on.subscriber.kernel_drops.rx_ring_full",
            )?,
            link_tx: r["link_drops"]["upstream"]["tx_dropped"]
                .as_u64()
                .unwrap_or(0),
        })
    }
}

/// Where the passing frames that did not arrive were lost, from the generator's link to
/// the sink's socket. Only `dut_socket` and `unaccounted` are the DUT's doing.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LossBreakdown {
    /// The generator's interface dropped them (`tx_dropped`): they never reached the DUT.
    pub generator_link: u64,
    /// The DUT's AF_XDP socket dropped frames (kernel counters; every verdict, so this
    /// can exceed the passing frames lost there). `None`: no DUT report given.
    pub dut_socket: Option<u64>,
    /// The DUT's upstream interface dropped what the DUT sent (`tx_dropped`).
    pub dut_to_sink_link: Option<u64>,
    /// The sink's interface (`rx_dropped`) and socket (kernel drops) dropped them.
    pub sink_link: u64,
    pub sink_socket: u64,
    /// Lost passing frames no counter outside the DUT explains: lost by the DUT.
    pub lost_by_dut: u64,
}

impl LossBreakdown {
    /// Passing frames lost outside the DUT (tester side), at most `lost`. The DUT -> sink
    /// link and the sink's link are the two ends of one veth in the lab, and the kernel
    /// counts one drop there on both (the sender's `tx_dropped`, the receiver's
    /// `rx_dropped`, e.g. when an XDP redirect finds the receiver's ring full): the larger
    /// of the two, not their sum, so a double count never hides a loss by the DUT.
    fn outside_dut(&self) -> u64 {
        self.generator_link
            + self.dut_to_sink_link.unwrap_or(0).max(self.sink_link)
            + self.sink_socket
    }
}

/// The verdict of one run: generator and sink reports side by side.
#[derive(Clone, Debug, Serialize)]
pub struct RunVerdict {
    pub sent: u64,
    pub sent_pass: u64,
    pub sent_block: u64,
    pub received: u64,
    pub passed: u64,
    pub leaked: u64,
    /// Frames that should have passed but did not arrive (negative: more arrived than
    /// sent, i.e. duplicates).
    pub lost: i64,
    pub loss_ratio: f64,
    /// Of `lost`, how many the generator's own link dropped (not the DUT's doing).
    pub lost_on_generator_link: u64,
    /// Where every lost frame went.
    pub loss: LossBreakdown,
    pub out_of_order: u64,
    pub foreign: u64,
    pub oracle_leaks: u64,
    pub max_gap_ms: f64,
    pub gen_mpps: f64,
    pub sink_mpps: f64,
    pub latency_us: Option<Latency>,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// Compares the reports: zero leaked, loss by the DUT within `max_loss_ratio`, no
/// duplicates. `dut`, when given, says which losses the DUT's own counters saw.
pub fn verdict(
    g: &GenReport,
    s: &SinkReport,
    dut: Option<DutDrops>,
    max_loss_ratio: f64,
) -> RunVerdict {
    let lost = g.sent_pass as i64 - s.passed as i64;
    let lost_pos = lost.max(0) as u64;
    // Frames lost outside the DUT (its links' drops, the sink's drops) are not its loss.
    let mut loss = LossBreakdown {
        generator_link: g.link_dropped,
        dut_socket: dut.map(|d| d.socket),
        dut_to_sink_link: dut.map(|d| d.link_tx),
        sink_link: s.link_rx_dropped,
        sink_socket: s.kernel_rx_dropped + s.kernel_rx_ring_full,
        lost_by_dut: 0,
    };
    loss.lost_by_dut = lost_pos.saturating_sub(loss.outside_dut());
    let link = g.link_dropped.min(lost_pos) as i64;
    let loss_ratio = if g.sent_pass == 0 {
        0.0
    } else {
        loss.lost_by_dut as f64 / g.sent_pass as f64
    };
    let mut problems = Vec::new();
    if s.leaked > 0 {
        problems.push(format!(
            "{} frames that the policy blocks reached the sink",
            s.leaked
        ));
    }
    if s.oracle_leaks > 0 {
        problems.push(format!(
            "{} frames carried a TCP segment the policy blocks (independent oracle)",
            s.oracle_leaks
        ));
    }
    if lost < 0 {
        problems.push(format!(
            "{} more passing frames arrived than were sent",
            -lost
        ));
    }
    if loss_ratio > max_loss_ratio {
        problems.push(format!(
            "{} passing frames lost by the DUT ({:.4}% > {:.4}% allowed)",
            loss.lost_by_dut,
            loss_ratio * 100.0,
            max_loss_ratio * 100.0
        ));
    }
    if g.sent == 0 {
        problems.push("the generator sent nothing".into());
    }
    RunVerdict {
        sent: g.sent,
        sent_pass: g.sent_pass,
        sent_block: g.sent_block,
        received: s.received,
        passed: s.passed,
        leaked: s.leaked,
        lost,
        loss_ratio,
        lost_on_generator_link: link as u64,
        loss,
        out_of_order: s.out_of_order,
        foreign: s.foreign,
        oracle_leaks: s.oracle_leaks,
        max_gap_ms: s.max_gap_ms,
        gen_mpps: g.mpps,
        sink_mpps: s.mpps,
        latency_us: s.latency_us,
        ok: problems.is_empty(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tag_round_trips_and_keeps_the_checksum_sum(stream in 0u8..128, seq in 0u32..(1 << 24), block: bool) {
            let t = Tag { expect: if block { Expect::Block } else { Expect::Pass }, stream, seq, sent_us: seq ^ 0x5a5a5a };
            let b = t.encode();
            prop_assert_eq!(Tag::decode(&b), Some(t));
            let sum: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
            prop_assert_eq!(fold(sum), 0xffff);
        }
    }

    const PROFILE: &str = r#"
frame_size: 64
smtp_share: 0.5
ipv6_share: 0.3
vlan_share: 0.1
qinq_share: 0.1
pppoe_share: 0.1
syn_share: 0.5
udp_share: 0.2
flows: 400
sources:
  - {name: dynamic, prefix: 198.51.100.0/24, weight: 3}
  - {name: static, prefix: 198.51.100.200/32}
  - {name: unmatched, prefix: 192.0.2.192/26}
  - {name: dynamic6, prefix: "2001:db8:100::/48"}
destinations:
  - {name: relay, prefix: 203.0.113.25/32}
  - {name: external, prefix: 203.0.113.0/24, weight: 3}
  - {name: relay6, prefix: "2001:db8:ff::25/128"}
  - {name: external6, prefix: "2001:db8:ff::/48"}
"#;

    fn lab_policy() -> Policy {
        let text = std::fs::read_to_string(crate::fixtures::LAB_YAML_PATH).unwrap();
        op25b::config::load_str(Path::new(crate::fixtures::LAB_YAML_PATH), &text)
            .unwrap()
            .policy
    }

    /// Every template parses, carries a valid tag, has valid L4 checksums after any tag
    /// is written, and the expected verdict matches an independent rule for this policy.
    #[test]
    fn templates_are_valid_and_judged() {
        let p = Profile::parse(Path::new("t"), PROFILE).unwrap();
        let set = templates(&p, &lab_policy());
        assert_eq!(set.templates.len(), 400);
        let (pass, block) = set.counts();
        assert!(pass > 50 && block > 10, "{pass} {block}");
        for t in &set.templates {
            assert!(t.frame.len() >= 64);
            let mut f = t.frame.clone();
            let n = f.len();
            let tag = Tag {
                expect: t.expect,
                stream: 5,
                seq: 0xabcdef,
                sent_us: 0x123456,
            };
            f[n - TAG_LEN..].copy_from_slice(&tag.encode());
            assert_eq!(Tag::decode(&f), Some(tag));
            // The checksum is still right: etherparse verifies it on the IP payload.
            let link = classify::parse_link(&f).unwrap();
            let ip = &f[link.l3_offset..];
            let sliced = etherparse::SlicedPacket::from_ip(ip).unwrap();
            let ok = match (&sliced.net, &sliced.transport) {
                (
                    Some(etherparse::NetSlice::Ipv4(v4)),
                    Some(etherparse::TransportSlice::Tcp(tcp)),
                ) => {
                    tcp.to_header()
                        .calc_checksum_ipv4(&v4.header().to_header(), tcp.payload())
                        .unwrap()
                        == tcp.checksum()
                }
                (
                    Some(etherparse::NetSlice::Ipv6(v6)),
                    Some(etherparse::TransportSlice::Tcp(tcp)),
                ) => {
                    tcp.to_header()
                        .calc_checksum_ipv6(&v6.header().to_header(), tcp.payload())
                        .unwrap()
                        == tcp.checksum()
                }
                (
                    Some(etherparse::NetSlice::Ipv4(v4)),
                    Some(etherparse::TransportSlice::Udp(u)),
                ) => {
                    u.to_header()
                        .calc_checksum_ipv4(&v4.header().to_header(), u.payload())
                        .unwrap()
                        == u.checksum()
                }
                (
                    Some(etherparse::NetSlice::Ipv6(v6)),
                    Some(etherparse::TransportSlice::Udp(u)),
                ) => {
                    u.to_header()
                        .calc_checksum_ipv6(&v6.header().to_header(), u.payload())
                        .unwrap()
                        == u.checksum()
                }
                other => panic!("unexpected {other:?}"),
            };
            assert!(ok, "bad checksum after tagging: {:02x?}", f);
            // Independent rule for the lab policy: dynamic (198.51.100.0/24 minus the
            // static host and the quarantine /28) and dynamic6 block TCP/25 except to the
            // relays; static and unmatched pass.
            let src = &set.source_names[t.source];
            let dst = &set.destination_names[t.destination];
            let info = classify::parse(&f);
            let dport = match info.net {
                classify::Net::Ip { segment, .. } => segment.dst_port,
                _ => None,
            };
            let is_tcp =
                matches!(info.net, classify::Net::Ip { segment, .. } if segment.protocol == 6);
            let src_ip = match info.net {
                classify::Net::Ip { addrs, .. } => addrs.src(),
                _ => unreachable!(),
            };
            let quarantine = matches!(src_ip, IpAddr::V4(a) if (u32::from(a) & !15) == u32::from(std::net::Ipv4Addr::new(198, 51, 100, 128)));
            let want = if quarantine {
                if is_tcp && matches!(dport, Some(25 | 465 | 587)) && !dst.starts_with("relay") {
                    Expect::Block
                } else {
                    Expect::Pass
                }
            } else if (src == "dynamic" || src == "dynamic6")
                && is_tcp
                && dport == Some(25)
                && !dst.starts_with("relay")
            {
                Expect::Block
            } else {
                Expect::Pass
            };
            assert_eq!(t.expect, want, "{src} -> {dst} port {dport:?}");
        }
    }

    #[test]
    fn sink_tally_counts_and_orders() {
        let mut s = SinkTally::default();
        let f = |expect, seq| {
            let mut v = vec![0u8; 60];
            v[50..].copy_from_slice(
                &Tag {
                    expect,
                    stream: 1,
                    seq,
                    sent_us: 1000,
                }
                .encode(),
            );
            v
        };
        s.record(&f(Expect::Pass, 1), 1250);
        s.record(&f(Expect::Pass, 3), 1250);
        s.record(&f(Expect::Pass, 2), 1250);
        s.record(&f(Expect::Block, 4), 1250);
        s.record(&[0u8; 60], 1250);
        assert_eq!(
            (s.received, s.passed, s.leaked, s.foreign, s.out_of_order),
            (5, 3, 1, 1, 1)
        );
        // Four tagged frames, each 250 us after it was sent.
        let l = s.latency.summary().unwrap();
        assert_eq!((l.samples, l.p50, l.max), (4, 250, 250));
    }

    #[test]
    fn sequence_and_timestamp_wrap_at_24_bits() {
        let mut s = SinkTally::default();
        let f = |seq: u32, sent_us: u32| {
            let mut v = vec![0u8; 60];
            let tag = Tag {
                expect: Expect::Pass,
                stream: 0,
                seq: seq & TAG_WRAP_MASK,
                sent_us: sent_us & TAG_WRAP_MASK,
            };
            v[50..].copy_from_slice(&tag.encode());
            v
        };
        // Past the wrap the sequence goes on: 0xfffffe, 0xffffff, 0, 1 are in order...
        for seq in [0xff_fffe, 0xff_ffff, 0x100_0000, 0x100_0001] {
            s.record(&f(seq, 0), 0);
        }
        assert_eq!(s.out_of_order, 0);
        // ...and one from before the wrap is late.
        s.record(&f(0xff_fffd, 0), 0);
        assert_eq!(s.out_of_order, 1);
        // Sent just before the clock's 24 bits wrapped, received just after: 30 us.
        let mut t = SinkTally::default();
        t.record(&f(1, 0xff_fff0), (1 << 24) + 14);
        assert_eq!(t.latency.summary().unwrap().max, 30);
        // Sent 3 us after the sink read its clock for the batch that received it: 0, not
        // the top of the range.
        let mut u = SinkTally::default();
        u.record(&f(1, 5003), 5000);
        assert_eq!(u.latency.summary().unwrap().max, 0);
    }

    #[test]
    fn profile_errors_name_the_field() {
        let e = Profile::parse(Path::new("p.yaml"), "sources: []\ndestinations: []\n").unwrap_err();
        assert!(e.to_string().contains("sources"), "{e}");
        let e = Profile::parse(
            Path::new("p.yaml"),
            "ipv6_share: 2\nsources: []\ndestinations: []\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ipv6_share"), "{e}");
        let e = Profile::parse(Path::new("p.yaml"), "bogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn verdict_flags_leaks_and_loss() {
        let g = GenReport {
            sent: 100,
            sent_pass: 80,
            sent_block: 20,
            ..Default::default()
        };
        let s = SinkReport {
            passed: 80,
            ..Default::default()
        };
        assert!(verdict(&g, &s, None, 0.0).ok);
        let s = SinkReport {
            passed: 79,
            leaked: 1,
            ..Default::default()
        };
        let v = verdict(&g, &s, None, 0.0);
        assert!(!v.ok && v.problems.len() == 2, "{:?}", v.problems);
        assert!(
            verdict(
                &g,
                &SinkReport {
                    passed: 79,
                    ..Default::default()
                },
                None,
                0.05
            )
            .ok
        );
    }

    #[test]
    fn loss_is_placed_where_the_counters_saw_it() {
        let g = GenReport {
            sent: 1000,
            sent_pass: 1000,
            link_dropped: 3,
            ..Default::default()
        };
        let s = SinkReport {
            passed: 980,
            link_rx_dropped: 1,
            kernel_rx_ring_full: 2,
            kernel_rx_dropped: 4,
            ..Default::default()
        };
        // 20 lost: 3 on the generator link, 5 on the DUT -> sink link (the sink link's 1
        // may be one of them: the same veth), 6 in the sink's socket: 6 left, the DUT's.
        let v = verdict(
            &g,
            &s,
            Some(DutDrops {
                socket: 7,
                link_tx: 5,
            }),
            0.0,
        );
        assert_eq!(v.loss.lost_by_dut, 6);
        assert_eq!(v.loss.dut_socket, Some(7));
        assert!(!v.ok);
        // Everything explained by the tester's side: not the DUT's loss.
        let v = verdict(
            &g,
            &s,
            Some(DutDrops {
                socket: 0,
                link_tx: 11,
            }),
            0.0,
        );
        assert_eq!(v.loss.lost_by_dut, 0);
        assert!(v.ok, "{:?}", v.problems);
        // Without a DUT report the DUT -> sink link is unknown, so it counts as the DUT's.
        let v = verdict(&g, &s, None, 0.0);
        assert_eq!(v.loss.lost_by_dut, 10);
    }
}
