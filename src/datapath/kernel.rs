//! The policy in the kernel: compiles a [`Policy`] (and the runtime overlay) into the maps
//! op25b's XDP program judges with in mode `kernel` (bpf/op25b_xdp.c, its header comment
//! says which frame is judged where).
//!
//! **Two generations.** The program reads the generation `active` names. A publish fills
//! the other one completely (its LPM tries for subscribers and allowed destinations,
//! created at start and held in the array-of-maps slots, emptied and refilled; the class
//! table; the slot -> class table; the policy-wide facts), and only then flips `active`:
//! a frame is
//! judged wholly by the old or wholly by the new policy. Before it rewrites anything of
//! the inactive generation, a publish updates the `barrier` array-of-maps, which returns
//! only once every program that was running has finished (the kernel's
//! synchronize_rcu for map-in-map updates): no frame still reads the generation it
//! rewrites. If a publish fails, the generation in force is marked invalid, so every
//! frame the policy may block goes to the workers (counted as `no_policy`) until a publish
//! succeeds: the kernel never judges by a policy other than the workers'.
//!
//! **The overlay** (RADIUS, operator, auto-quarantine) has no generations: its entries
//! hold the class's counter slot (stable by name, [`Policy::counter_slot`]), which each
//! generation's `slotmap` turns into that generation's class id. An entry whose slot has
//! no class in the generation in force sends its frames to the workers. Entries are
//! written one by one as the control plane publishes each overlay snapshot, before
//! the snapshot reaches the workers.
//!
//! Why BPF LPM tries (and not op25b's own trie laid out in an array map): see
//! docs/architecture.md, "Kernel verdicts" (measured with `op25b-bench kernel-lookup`).
//!
//! **The abuse desk's list** ([`OffenderReader`]): the program counts the outbound
//! attempts it drops per source in the LRU map `offenders`; the reader takes entries out
//! of it (read and deleted in one batch call) as plain [`KernelOffender`]s. What to do
//! with them is the control plane's business (`topk`).

use super::xdp::{Map, SharedMaps};
use crate::lpm::PrefixEntry;
use crate::policy::overlay::{mask_v6, Overlay};
use crate::policy::{BlockAction, Policy, COUNTER_SLOTS, MAX_CLASSES};
use ipnet::IpNet;
use std::io;

/// `struct gpol` and `struct class_info` of bpf/op25b_xdp.c: value sizes.
const GPOL_SIZE: usize = 8;
const CLASS_INFO_SIZE: usize = 8 + 65536 / 8;
/// Class slots of the program's tables (its MAX_CLASSES).
const KERNEL_CLASSES: usize = 256;
/// An overlay entry whose class has no counter slot of its own (more class names than
/// slots): its slot resolves in no generation, so its frames go to the workers.
const NO_SLOT: u16 = u16::MAX;

/// Why the kernel's copy of the policy could not be written.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot write the XDP program's map {map}: {source}")]
    Map {
        map: &'static str,
        source: io::Error,
    },
    #[error("cannot write the XDP program's LPM trie of {what} ({entries} prefixes): {source}")]
    Trie {
        what: &'static str,
        entries: usize,
        source: io::Error,
    },
}

fn at(map: &Map) -> impl FnOnce(io::Error) -> KernelError + '_ {
    move |source| KernelError::Map {
        map: map.name(),
        source,
    }
}

/// LPM key of an IPv4 prefix: length, then the address in network order.
pub fn key4(addr: u32, len: u8) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&u32::from(len).to_ne_bytes());
    let masked = if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len.min(32))))
    };
    k[4..].copy_from_slice(&masked.to_be_bytes());
    k
}

/// LPM key of an IPv6 prefix.
pub fn key6(addr: u128, len: u8) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&u32::from(len).to_ne_bytes());
    k[4..].copy_from_slice(&mask_v6(addr, len).to_be_bytes());
    k
}

/// The overlay's value (`struct over`): counter slot, prefix length.
fn over(slot: u16, len: u8) -> [u8; 4] {
    let s = slot.to_ne_bytes();
    [s[0], s[1], len, 0]
}

/// What a publish wrote, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// The generation (0 or 1) now in force.
    pub generation: u32,
    pub subscribers: usize,
    pub allowed: usize,
    pub millis: u64,
}

/// The most prefixes one of the kernel's tries takes (a limit, not an allocation: the
/// tries allocate per entry).
pub const MAX_TRIE_ENTRIES: u32 = 1 << 24;

/// What each generation's four tries hold, in the order of [`KernelPolicy::tries`].
const TRIES: [&str; 4] = [
    "subscriber IPv4 prefixes",
    "subscriber IPv6 prefixes",
    "allowed IPv4 destinations",
    "allowed IPv6 destinations",
];

/// The writer of the kernel's policy maps. One per process (the control plane's), shared
/// by both interfaces' programs.
#[derive(Debug)]
pub struct KernelPolicy {
    maps: SharedMaps,
    /// Per generation: the subscriber and allowed-destination tries (IPv4, IPv6 each),
    /// created once at start (creating a map needs CAP_BPF, which op25b drops once
    /// running) and rewritten in place by each publish.
    tries: [[Map; 4]; 2],
    /// Per generation: the fingerprint of the prefixes its tries hold (`None`: unknown,
    /// a refill began and did not finish).
    held: [Option<u64>; 2],
    /// The generation `active` names (0 before the first publish, when neither is valid).
    active: u32,
    /// A tiny trie the barrier slot is updated with.
    barrier_inner: Map,
    /// The overlay maps may differ from the store (a write failed, or none yet): the
    /// next overlay write rewrites them whole.
    overlay_dirty: bool,
    /// The generation in force is not valid (no publish yet, or a write failed).
    invalid: bool,
    /// Failed writes in a row, and when the next retry is due ([`KernelPolicy::retry_due`]).
    failures: u32,
    retry_at: Option<std::time::Instant>,
}

impl KernelPolicy {
    /// A writer for `maps` (a program's [`SharedMaps`]); nothing is valid until the first
    /// [`KernelPolicy::publish`].
    pub fn new(maps: SharedMaps) -> Result<KernelPolicy, KernelError> {
        let trie = |what: &'static str, key: usize, max: u32| {
            Map::new_lpm_trie("op25b_lpm", key, 2, max).map_err(|source| KernelError::Trie {
                what,
                entries: 0,
                source,
            })
        };
        let barrier_inner = trie("the reload barrier", 8, 1)?;
        let generation = || -> Result<[Map; 4], KernelError> {
            Ok([
                trie(TRIES[0], 8, MAX_TRIE_ENTRIES)?,
                trie(TRIES[1], 20, MAX_TRIE_ENTRIES)?,
                trie(TRIES[2], 8, MAX_TRIE_ENTRIES)?,
                trie(TRIES[3], 20, MAX_TRIE_ENTRIES)?,
            ])
        };
        let tries = [generation()?, generation()?];
        for (g, set) in tries.iter().enumerate() {
            let key = (g as u32).to_ne_bytes();
            for (outer, inner) in [&maps.subs4, &maps.subs6, &maps.allow4, &maps.allow6]
                .into_iter()
                .zip(set)
            {
                outer.update(&key, &inner.fd_value()).map_err(at(outer))?;
            }
        }
        Ok(KernelPolicy {
            maps,
            tries,
            held: [None, None],
            active: 0,
            barrier_inner,
            overlay_dirty: true,
            invalid: true,
            failures: 0,
            retry_at: None,
        })
    }

    /// Waits until no program still runs with what it looked up before the call.
    fn barrier(&self) -> Result<(), KernelError> {
        self.maps
            .barrier
            .update(&0u32.to_ne_bytes(), &self.barrier_inner.fd_value())
            .map_err(at(&self.maps.barrier))
    }

    /// Compiles `policy` into the inactive generation and flips to it. On error the
    /// generation in force is invalidated too (every frame the policy may block goes to
    /// the workers) and the error says what failed.
    pub fn publish(&mut self, policy: &Policy) -> Result<Published, KernelError> {
        let t0 = std::time::Instant::now();
        match self.write_generation(policy, self.active ^ 1) {
            Ok(mut p) => {
                self.invalid = false;
                self.failures = 0;
                self.retry_at = None;
                p.millis = t0.elapsed().as_millis() as u64;
                Ok(p)
            }
            Err(e) => {
                self.invalidate();
                Err(e)
            }
        }
    }

    /// Marks the generation in force invalid: the program sends every frame it would
    /// judge to the workers. Best effort (the error it hit is the caller's).
    pub fn invalidate(&mut self) {
        self.invalid = true;
        self.failures = self.failures.saturating_add(1);
        let wait = std::time::Duration::from_secs(1 << self.failures.min(6));
        self.retry_at = Some(std::time::Instant::now() + wait);
        let g = self.active;
        if let Err(e) = self.maps.gpol.update(&g.to_ne_bytes(), &[0u8; GPOL_SIZE]) {
            tracing::error!(
                "cannot invalidate the XDP program's policy generation {g}: {e}; it judges by the policy before"
            );
        }
    }

    fn write_generation(&mut self, policy: &Policy, g: u32) -> Result<Published, KernelError> {
        let m = &self.maps;
        self.barrier()?;
        // From here no frame reads generation g: mark it incomplete first.
        m.gpol
            .update(&g.to_ne_bytes(), &[0u8; GPOL_SIZE])
            .map_err(at(&m.gpol))?;
        let e = policy.entries();
        // The tries already hold these prefixes (a reload that changed no prefix file,
        // the common case: both generations converge): not rewritten. A reload storm
        // or a 1M-prefix table then costs the class table only.
        let print = fingerprint(e);
        if self.held[g as usize] != Some(print) {
            self.held[g as usize] = None;
            let hit = |value: u16, len: u8| [(value - 1) as u8, len];
            let [subs4, subs6, allow4, allow6] = &self.tries[g as usize];
            refill(subs4, TRIES[0], &e.subscribers_v4, |x| hit(x.value, x.len))?;
            refill(subs6, TRIES[1], &e.subscribers_v6, |x| hit(x.value, x.len))?;
            refill(allow4, TRIES[2], &e.allowed_v4, |x| [1, x.len])?;
            refill(allow6, TRIES[3], &e.allowed_v6, |x| [1, x.len])?;
            self.held[g as usize] = Some(print);
        }
        let key = g.to_ne_bytes();
        // The class table, every slot of the generation (a stale class must not linger).
        let mut info = vec![0u8; CLASS_INFO_SIZE];
        for id in 0..KERNEL_CLASSES {
            info.fill(0);
            if let Some(c) = policy.classes().get(id) {
                info[0] = 1;
                info[1] = match c.action {
                    BlockAction::Drop => 0,
                    BlockAction::Reject(_) => 1,
                };
                info[2] = u8::from(c.block_inbound_smtp);
                info[4..8].copy_from_slice(&(policy.counter_slot(id as u8) as u32).to_ne_bytes());
                for p in c.blocked_ports.iter() {
                    info[8 + usize::from(p >> 3)] |= 1 << (p & 7);
                }
            }
            let k = (g * KERNEL_CLASSES as u32 + id as u32).to_ne_bytes();
            m.classes.update(&k, &info).map_err(at(&m.classes))?;
        }
        let mut slots = [0u8; COUNTER_SLOTS];
        for id in 0..policy.classes().len().min(MAX_CLASSES) {
            let s = policy.counter_slot(id as u8);
            // The shared last slot names several classes: it resolves to none.
            if s < COUNTER_SLOTS - 1 {
                slots[s] = id as u8 + 1;
            }
        }
        for (s, v) in slots.iter().enumerate() {
            let k = (g * COUNTER_SLOTS as u32 + s as u32).to_ne_bytes();
            m.slotmap.update(&k, &[*v]).map_err(at(&m.slotmap))?;
        }
        let mut gp = [0u8; GPOL_SIZE];
        gp[..4].copy_from_slice(&1u32.to_ne_bytes());
        let unmatched = policy.unmatched_class().map_or(0, |c| u32::from(c) + 1);
        gp[4..].copy_from_slice(&unmatched.to_ne_bytes());
        m.gpol.update(&key, &gp).map_err(at(&m.gpol))?;
        m.active
            .update(&0u32.to_ne_bytes(), &key)
            .map_err(at(&m.active))?;
        self.active = g;
        Ok(Published {
            generation: g,
            subscribers: e.subscribers_v4.len() + e.subscribers_v6.len(),
            allowed: e.allowed_v4.len() + e.allowed_v6.len(),
            millis: 0,
        })
    }

    /// Writes the overlay snapshot `next` (built for `policy`, the policy in force) into
    /// the kernel: the entries of the prefixes in `changed` (the store's changes since
    /// the last snapshot), or all of them when `changed` is `None` or an earlier write
    /// failed. On error the maps may hold a mixture: the generation in force is
    /// invalidated (every frame the policy may block goes to the workers) until a later
    /// call succeeds.
    pub fn write_overlay(
        &mut self,
        next: &Overlay,
        changed: Option<&[IpNet]>,
        policy: &Policy,
    ) -> Result<(), KernelError> {
        let result = match changed {
            Some(changed) if !self.overlay_dirty => self.overlay_changes(next, changed, policy),
            _ => self.overlay_whole(next, policy),
        };
        match result {
            Ok(()) => {
                if self.overlay_dirty {
                    self.overlay_dirty = false;
                    if self.invalid {
                        // The failure is mended: judge in the kernel again.
                        self.publish(policy)?;
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.overlay_dirty = true;
                self.invalidate();
                Err(e)
            }
        }
    }

    /// Whether a retry of a failed write is due at `now` (2, 4, ... 64 s after the
    /// failures in a row).
    pub fn retry_due(&self, now: std::time::Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// True while the kernel does not judge (no publish yet, or the last write failed).
    pub fn invalid(&self) -> bool {
        self.invalid
    }

    /// True when the overlay must be written whole at the next chance.
    pub fn overlay_dirty(&self) -> bool {
        self.overlay_dirty
    }

    fn slot(policy: &Policy, id: u8) -> u16 {
        if usize::from(id) >= policy.classes().len() {
            return NO_SLOT;
        }
        let s = policy.counter_slot(id);
        if s >= COUNTER_SLOTS - 1 {
            NO_SLOT
        } else {
            s as u16
        }
    }

    fn put4(&self, addr: u32, id: u8, policy: &Policy) -> Result<(), KernelError> {
        let m = &self.maps.over4;
        m.update(&addr.to_be_bytes(), &over(Self::slot(policy, id), 32))
            .map_err(at(m))
    }

    fn put6(&self, prefix: u128, len: u8, id: u8, policy: &Policy) -> Result<(), KernelError> {
        let m = &self.maps.over6;
        m.update(&key6(prefix, len), &over(Self::slot(policy, id), len))
            .map_err(at(m))
    }

    fn overlay_changes(
        &self,
        next: &Overlay,
        changed: &[IpNet],
        policy: &Policy,
    ) -> Result<(), KernelError> {
        for p in changed {
            match *p {
                IpNet::V4(n) => {
                    let addr = u32::from(n.addr());
                    match next.v4(addr) {
                        Some(id) => self.put4(addr, id, policy)?,
                        None => {
                            let m = &self.maps.over4;
                            m.delete(&addr.to_be_bytes()).map_err(at(m))?;
                        }
                    }
                }
                IpNet::V6(n) => {
                    let len = n.prefix_len();
                    let prefix = mask_v6(n.addr().into(), len);
                    match next.v6_exact(prefix, len) {
                        Some(id) => self.put6(prefix, len, id, policy)?,
                        None => {
                            let m = &self.maps.over6;
                            m.delete(&key6(prefix, len)).map_err(at(m))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn overlay_whole(&self, next: &Overlay, policy: &Policy) -> Result<(), KernelError> {
        // Remove what `next` does not hold, then write all of it.
        let m4 = &self.maps.over4;
        delete_keys::<[u8; 4]>(m4, |k| next.v4(u32::from_be_bytes(*k)).is_none())
            .map_err(at(m4))?;
        let m6 = &self.maps.over6;
        delete_keys::<[u8; 20]>(m6, |k| {
            let len = u32::from_ne_bytes(k[..4].try_into().expect("4 bytes")) as u8;
            let addr = u128::from_be_bytes(k[4..].try_into().expect("16 bytes"));
            next.v6_exact(addr, len).is_none()
        })
        .map_err(at(m6))?;
        for (addr, id) in next.iter_v4() {
            self.put4(addr, id, policy)?;
        }
        for ((prefix, len), id) in next.iter_v6() {
            self.put6(prefix, len, id, policy)?;
        }
        Ok(())
    }

    /// The generation in force (0 or 1), for status.
    pub fn active(&self) -> u32 {
        self.active
    }
}

/// `struct offender` of bpf/op25b_xdp.c: its size, and the key's (`struct okey`).
const OFFENDER_SIZE: usize = 48;
const OKEY_SIZE: usize = 16;
/// Entries read per batch call.
const DRAIN_BATCH: usize = 1024;

pub use crate::topk::KernelOffender;

impl KernelOffender {
    /// Parses a key (`struct okey`) and value (`struct offender`) as the map holds them.
    pub fn from_bytes(key: &[u8; OKEY_SIZE], value: &[u8; OFFENDER_SIZE]) -> KernelOffender {
        let u64_at = |i: usize| u64::from_ne_bytes(value[i..i + 8].try_into().expect("8 bytes"));
        KernelOffender {
            src: u128::from_be_bytes(*key),
            count: u64_at(0),
            first_ns: u64_at(8),
            last_ns: u64_at(16),
            last_dst: u128::from_be_bytes(value[24..40].try_into().expect("16 bytes")),
            slot: u32::from_ne_bytes(value[40..44].try_into().expect("4 bytes")),
            port: u16::from_ne_bytes(value[44..46].try_into().expect("2 bytes")),
        }
    }
}

/// Takes the entries out of the program's `offenders` map, a bounded number per call,
/// sweeping the map round-robin across calls (a call continues where the last stopped),
/// so every entry is reached however many sources the map holds.
#[derive(Debug)]
pub struct OffenderReader {
    map: Map,
    cursor: Option<Vec<u8>>,
    keys: Vec<u8>,
    values: Vec<u8>,
}

impl OffenderReader {
    /// A reader of `maps.offenders` (a second handle on the map).
    pub fn new(maps: &SharedMaps) -> io::Result<OffenderReader> {
        let map = maps.offenders.try_clone()?;
        if map.sizes() != (OKEY_SIZE, OFFENDER_SIZE) {
            return Err(io::Error::other(format!(
                "map offenders has key/value sizes {:?}, op25b reads ({OKEY_SIZE}, {OFFENDER_SIZE}) (bpf/op25b_xdp.c and src/datapath/kernel.rs disagree)",
                map.sizes()
            )));
        }
        Ok(OffenderReader {
            map,
            cursor: None,
            keys: vec![0; DRAIN_BATCH * OKEY_SIZE],
            values: vec![0; DRAIN_BATCH * OFFENDER_SIZE],
        })
    }

    /// Reads and deletes up to `max` entries into `out`, continuing the sweep where the
    /// last call stopped; stops at the end of the map (the next call starts over).
    /// Returns how many were added. An attempt the program counts on an entry between
    /// its read and its deletion is lost (a window of microseconds).
    pub fn drain(&mut self, max: usize, out: &mut Vec<KernelOffender>) -> io::Result<usize> {
        let mut got = 0;
        while got < max {
            let room = (max - got).min(DRAIN_BATCH);
            let (n, end) = match self.map.lookup_and_delete_batch(
                &mut self.cursor,
                &mut self.keys[..room * OKEY_SIZE],
                &mut self.values[..room * OFFENDER_SIZE],
            ) {
                Ok(r) => r,
                // The next bucket holds more entries than are left to take: the next
                // drain takes it.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && room < DRAIN_BATCH => break,
                Err(e) => {
                    // The next drain starts the sweep over.
                    self.cursor = None;
                    return Err(e);
                }
            };
            for i in 0..n {
                let k = self.keys[i * OKEY_SIZE..(i + 1) * OKEY_SIZE]
                    .try_into()
                    .expect("key size");
                let v = self.values[i * OFFENDER_SIZE..(i + 1) * OFFENDER_SIZE]
                    .try_into()
                    .expect("value size");
                out.push(KernelOffender::from_bytes(k, v));
            }
            got += n;
            if end {
                break;
            }
        }
        Ok(got)
    }
}

/// A fingerprint of the prefixes (and values) a policy's tries hold.
fn fingerprint(e: &crate::policy::PolicyEntries) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for list in [&e.subscribers_v4, &e.allowed_v4] {
        h.write_usize(list.len());
        for x in list.iter() {
            h.write_u32(x.key);
            h.write_u8(x.len);
            h.write_u16(x.value);
        }
    }
    for list in [&e.subscribers_v6, &e.allowed_v6] {
        h.write_usize(list.len());
        for x in list.iter() {
            h.write_u128(x.key);
            h.write_u8(x.len);
            h.write_u16(x.value);
        }
    }
    h.finish()
}

/// An address of one family, as the kernel's LPM tries key it ([`key4`], [`key6`]).
trait LpmKey: Copy {
    type Key: AsRef<[u8]> + AsMut<[u8]> + Default + Copy;
    fn key(self, len: u8) -> Self::Key;
}

impl LpmKey for u32 {
    type Key = [u8; 8];
    fn key(self, len: u8) -> [u8; 8] {
        key4(self, len)
    }
}

impl LpmKey for u128 {
    type Key = [u8; 20];
    fn key(self, len: u8) -> [u8; 20] {
        key6(self, len)
    }
}

/// Empties a trie of `A` keys.
fn clear<A: LpmKey>(t: &Map, what: &'static str) -> Result<(), KernelError> {
    delete_keys::<A::Key>(t, |_| true).map_err(|source| KernelError::Trie {
        what,
        entries: 0,
        source,
    })
}

/// Deletes the keys of map `m` for which `stale` holds (all keys read first, then
/// deleted: deleting while walking would restart the walk).
fn delete_keys<K>(m: &Map, stale: impl Fn(&K) -> bool) -> io::Result<()>
where
    K: AsRef<[u8]> + AsMut<[u8]> + Default + Copy,
{
    let mut keys: Vec<K> = Vec::new();
    let mut k = K::default();
    let mut prev: Option<K> = None;
    while m.next_key(prev.as_ref().map(|p| p.as_ref()), k.as_mut())? {
        if stale(&k) {
            keys.push(k);
        }
        prev = Some(k);
    }
    for k in &keys {
        m.delete(k.as_ref())?;
    }
    Ok(())
}

/// Empties trie `t` and writes `entries` into it, each with `value`.
fn refill<A: LpmKey>(
    t: &Map,
    what: &'static str,
    entries: &[PrefixEntry<A>],
    value: impl Fn(&PrefixEntry<A>) -> [u8; 2],
) -> Result<(), KernelError> {
    clear::<A>(t, what)?;
    for e in entries {
        t.update(e.key.key(e.len).as_ref(), &value(e))
            .map_err(|source| KernelError::Trie {
                what,
                entries: entries.len(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offender_entry_reads_as_the_program_lays_it_out() {
        // struct okey: ::ffff:198.51.100.130; struct offender: count, first_ns,
        // last_ns, last_dst[16], slot, port, pad.
        let mut key = [0u8; 16];
        key[10] = 0xff;
        key[11] = 0xff;
        key[12..].copy_from_slice(&[198, 51, 100, 130]);
        let mut v = [0u8; OFFENDER_SIZE];
        v[0..8].copy_from_slice(&7u64.to_ne_bytes());
        v[8..16].copy_from_slice(&1_000u64.to_ne_bytes());
        v[16..24].copy_from_slice(&2_000u64.to_ne_bytes());
        v[24..40].copy_from_slice(
            &"2001:db8:ff::80"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v[40..44].copy_from_slice(&3u32.to_ne_bytes());
        v[44..46].copy_from_slice(&587u16.to_ne_bytes());
        let o = KernelOffender::from_bytes(&key, &v);
        assert_eq!(
            o.src, 0xffff_c633_6482,
            "the workers' key_v4 of 198.51.100.130"
        );
        assert_eq!((o.count, o.first_ns, o.last_ns), (7, 1_000, 2_000));
        assert_eq!(
            o.last_dst,
            u128::from("2001:db8:ff::80".parse::<std::net::Ipv6Addr>().unwrap())
        );
        assert_eq!((o.slot, o.port), (3, 587));
    }

    #[test]
    fn constants_equal_the_programs() {
        use crate::datapath::xdp::tests::c_source::define;
        assert_eq!(define("MAX_CLASSES") as usize, KERNEL_CLASSES);
        assert_eq!(define("ACTION_DROP"), 0);
        assert_eq!(define("ACTION_REJECT"), 1);
    }

    #[test]
    fn keys_are_length_then_the_masked_address_in_network_order() {
        let k = key4(0xc633_64ff, 24);
        assert_eq!(&k[..4], &24u32.to_ne_bytes());
        assert_eq!(&k[4..], &[198, 51, 100, 0]);
        assert_eq!(&key4(0xffff_ffff, 0)[4..], &[0, 0, 0, 0]);
        assert_eq!(&key4(0xc633_6401, 32)[4..], &[198, 51, 100, 1]);
        let a: u128 = "2001:db8:100:1::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .into();
        let k = key6(a, 48);
        assert_eq!(&k[..4], &48u32.to_ne_bytes());
        assert_eq!(&k[4..10], &[0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
        assert!(k[10..].iter().all(|&b| b == 0));
        assert_eq!(
            over(7, 56),
            [7u16.to_ne_bytes()[0], 7u16.to_ne_bytes()[1], 56, 0]
        );
    }
}
