//! The abuse-desk list: the top sources of blocked outbound attempts, in fixed memory
//! whatever the traffic (space-saving top-K, Metwally et al. 2005).
//!
//! Each worker keeps a [`TopK`] of [`WORKER_SLOTS`] entries on its hot path (only
//! blocked frames touch it: a scan of a small contiguous key array). About once a
//! second the worker copies it out ([`TopK::entries`]) for the control thread, which
//! merges the workers' lists ([`merge`]). A source that is in the list with `count`
//! attempts had at most `error` of them counted for a source it replaced; with fewer
//! distinct sources than slots, the counts are exact.
//!
//! Attempts the XDP program drops in the kernel (mode `kernel`) never reach a worker: the
//! program counts them per source in its LRU map `offenders`, which the control thread
//! drains about once a second ([`DRAIN_PER_SECOND`] entries at most) into a
//! [`KernelList`] of [`KERNEL_SLOTS`], the same kind of list with the same count
//! semantics (cumulative since start, space-saving), merged with the workers' lists.

use serde::Serialize;
use std::net::IpAddr;

/// Entries per worker.
pub const WORKER_SLOTS: usize = 64;

/// Entries of the list of attempts dropped in the kernel (one list for every CPU).
pub const KERNEL_SLOTS: usize = 256;

/// Entries drained from the kernel's `offenders` map per drain (about once a second):
/// the map's size, so every source of one second is taken in one drain. Bounds the
/// control thread's work (a batch read of 1024 entries per system call).
pub const DRAIN_PER_SECOND: usize = 16384;

/// An address as a key: IPv4 mapped into the IPv6 space (`::ffff:a.b.c.d`).
#[inline(always)]
pub fn key_v4(a: u32) -> u128 {
    0xffff_0000_0000 | u128::from(a)
}

/// The address behind a key.
pub fn key_addr(k: u128) -> IpAddr {
    if k >> 32 == 0xffff {
        IpAddr::V4((k as u32).into())
    } else {
        IpAddr::V6(k.into())
    }
}

/// One tracked source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopEntry {
    pub key: u128,
    /// Blocked attempts counted for this source (space-saving estimate).
    pub count: u64,
    /// Upper bound on the overestimate in `count`.
    pub error: u64,
    /// The counter slot of the source's class (`Policy::counter_slot`: stable across
    /// reloads, named by the policy cell).
    pub class: Option<usize>,
    /// Destinations seen, as a 128-bit linear-counting sketch.
    pub dst_sketch: [u64; 2],
    /// The last destination (a sample for the log).
    pub last_dst: u128,
    /// Coarse clock (seconds since start of the process) of the first and last attempt.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// Space-saving top-K with `N` slots.
#[derive(Clone, Debug)]
pub struct TopK<const N: usize> {
    keys: [u128; N],
    entries: [TopEntry; N],
    len: usize,
}

impl<const N: usize> Default for TopK<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn sketch_bit(dst: u128) -> (usize, u64) {
    let h = (dst as u64 ^ (dst >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57;
    ((h >> 6) as usize & 1, 1u64 << (h & 63))
}

impl<const N: usize> TopK<N> {
    pub fn new() -> Self {
        let empty = TopEntry {
            key: 0,
            count: 0,
            error: 0,
            class: None,
            dst_sketch: [0; 2],
            last_dst: 0,
            first_seen: 0,
            last_seen: 0,
        };
        Self {
            keys: [0; N],
            entries: [empty; N],
            len: 0,
        }
    }

    /// Counts one blocked attempt from `src` to `dst` at coarse time `now` (the
    /// worker's clock never goes back, so this is [`TopK::record_n`] of one).
    #[inline]
    pub fn record(&mut self, src: u128, dst: u128, class: Option<usize>, now: u64) {
        self.record_n(src, dst, class, 1, now, now);
    }

    /// Counts `n` blocked attempts from `src` made between coarse times `first` and
    /// `last`, the last to `dst` (a batch: the kernel's per-source counts). Space-saving
    /// with weights: a newcomer replacing the smallest count inherits it as its error.
    #[inline]
    pub fn record_n(
        &mut self,
        src: u128,
        dst: u128,
        class: Option<usize>,
        n: u64,
        first: u64,
        last: u64,
    ) {
        if n == 0 {
            return;
        }
        let (w, bit) = sketch_bit(dst);
        if let Some(i) = self.keys[..self.len].iter().position(|&k| k == src) {
            let e = &mut self.entries[i];
            e.count += n;
            e.dst_sketch[w] |= bit;
            if last >= e.last_seen {
                e.last_dst = dst;
                e.last_seen = last;
                e.class = class;
            }
            e.first_seen = e.first_seen.min(first);
            return;
        }
        let (i, floor) = if self.len < N {
            self.len += 1;
            (self.len - 1, 0)
        } else {
            let (i, e) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.count)
                .expect("N > 0");
            (i, e.count)
        };
        self.keys[i] = src;
        let mut sketch = [0u64; 2];
        sketch[w] |= bit;
        self.entries[i] = TopEntry {
            key: src,
            count: floor + n,
            error: floor,
            class,
            dst_sketch: sketch,
            last_dst: dst,
            first_seen: first.min(last),
            last_seen: last,
        };
    }

    /// The tracked entries (unordered).
    pub fn entries(&self) -> &[TopEntry] {
        &self.entries[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// One source's blocked outbound attempts that the program dropped since the entry was
/// created (its first attempt after the previous drain, or after the LRU map evicted
/// it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffender {
    /// The source: IPv6, or IPv4 as `::ffff:a.b.c.d` ([`key_v4`]).
    pub src: u128,
    pub count: u64,
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`) of the first and last attempt.
    pub first_ns: u64,
    pub last_ns: u64,
    /// The last attempt's destination, as `src`.
    pub last_dst: u128,
    /// The source's class counter slot ([`Policy::counter_slot`]) at the last attempt.
    pub slot: u32,
    /// The last attempt's destination port.
    pub port: u16,
}

/// The sources whose blocked outbound attempts the XDP program dropped, as drained from
/// its `offenders` map: one more list for [`merge`], fed by the control thread.
///
/// The map gives, per source, the attempts since the previous drain, their first and
/// last time (CLOCK_MONOTONIC) and the last destination: counts add up here, so they
/// are cumulative since start like a worker's; a source's destinations are sampled once
/// per drain (`distinct_destinations` grows by at most one per second for it).
pub struct KernelList {
    top: Box<TopK<KERNEL_SLOTS>>,
    /// CLOCK_MONOTONIC nanoseconds of the process clock's zero ([`crate::clock`]).
    start_ns: u64,
}

impl KernelList {
    /// A list whose clock zero ([`crate::clock::zero`]) is CLOCK_MONOTONIC `start_ns`
    /// (the datapath reads it: `datapath::clock::zero_ns`).
    pub fn with_start(start_ns: u64) -> Self {
        Self {
            top: Box::new(TopK::new()),
            start_ns,
        }
    }

    /// Adds a drain's entries.
    pub fn absorb(&mut self, drained: &[KernelOffender]) {
        for o in drained {
            self.top.record_n(
                o.src,
                o.last_dst,
                Some(o.slot as usize),
                o.count,
                crate::clock::of_monotonic(o.first_ns, self.start_ns),
                crate::clock::of_monotonic(o.last_ns, self.start_ns),
            );
        }
    }

    /// The tracked entries (unordered), for [`merge`].
    pub fn entries(&self) -> &[TopEntry] {
        self.top.entries()
    }
}

/// Estimated distinct destinations from a sketch (linear counting over 128 bits).
pub fn distinct(sketch: [u64; 2]) -> u64 {
    let set = u64::from(sketch[0].count_ones() + sketch[1].count_ones());
    if set == 0 {
        return 0;
    }
    if set >= 128 {
        return 128 * 5; // saturated: "many" (more than ~600)
    }
    let m = 128.0f64;
    (-m * ((m - set as f64) / m).ln()).round().max(1.0) as u64
}

/// A merged, reportable offender.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Offender {
    pub src: IpAddr,
    pub class: Option<String>,
    pub attempts: u64,
    /// Upper bound of the overcount in `attempts` (0: exact).
    pub error: u64,
    pub distinct_destinations: u64,
    pub dst_sample: IpAddr,
    /// Seconds since the Unix epoch.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// Merges the workers' lists: attempts add up (a source's flows may hash to several
/// workers), sketches are OR-ed, first/last seen are min/max. Sorted by attempts, most
/// first, then by address; at most `n`. `epoch` turns the coarse clock into Unix time;
/// `class_name` names a counter slot.
pub fn merge<'a>(
    lists: impl IntoIterator<Item = &'a [TopEntry]>,
    class_name: impl Fn(usize) -> Option<String>,
    epoch: u64,
    n: usize,
) -> Vec<Offender> {
    let mut by_key: std::collections::HashMap<u128, TopEntry> = std::collections::HashMap::new();
    for list in lists {
        for e in list {
            by_key
                .entry(e.key)
                .and_modify(|m| {
                    m.count += e.count;
                    m.error += e.error;
                    m.dst_sketch[0] |= e.dst_sketch[0];
                    m.dst_sketch[1] |= e.dst_sketch[1];
                    if e.last_seen >= m.last_seen {
                        m.last_dst = e.last_dst;
                        m.class = e.class;
                    }
                    m.first_seen = m.first_seen.min(e.first_seen);
                    m.last_seen = m.last_seen.max(e.last_seen);
                })
                .or_insert(*e);
        }
    }
    let mut v: Vec<TopEntry> = by_key.into_values().collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
    v.truncate(n);
    v.into_iter()
        .map(|e| Offender {
            src: key_addr(e.key),
            class: e.class.and_then(&class_name),
            attempts: e.count,
            error: e.error,
            distinct_destinations: distinct(e.dst_sketch),
            dst_sample: key_addr(e.last_dst),
            first_seen: epoch + e.first_seen,
            last_seen: epoch + e.last_seen,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_below_capacity_and_ordered() {
        let mut t = TopK::<8>::new();
        for (src, n) in [(1u32, 30), (2, 20), (3, 10)] {
            for i in 0..n {
                t.record(key_v4(src), key_v4(1000 + i % 5), Some(0), i as u64);
            }
        }
        let m = merge(
            [t.entries()],
            |s| (s == 0).then(|| "dynamic".to_string()),
            0,
            10,
        );
        let got: Vec<(IpAddr, u64, u64)> = m.iter().map(|o| (o.src, o.attempts, o.error)).collect();
        assert_eq!(
            got,
            vec![
                (IpAddr::V4(1.into()), 30, 0),
                (IpAddr::V4(2.into()), 20, 0),
                (IpAddr::V4(3.into()), 10, 0)
            ]
        );
        assert!((4..=6).contains(&m[0].distinct_destinations), "{m:?}");
        assert_eq!(m[0].class.as_deref(), Some("dynamic"));
        assert_eq!((m[0].first_seen, m[0].last_seen), (0, 29));
    }

    #[test]
    fn merge_adds_workers() {
        let mut a = TopK::<4>::new();
        let mut b = TopK::<4>::new();
        a.record(key_v4(7), 1, None, 5);
        b.record(key_v4(7), 2, None, 3);
        b.record(key_v4(7), 2, None, 9);
        let m = merge([a.entries(), b.entries()], |_| None, 100, 5);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].attempts, m[0].first_seen, m[0].last_seen),
            (3, 103, 109)
        );
    }

    fn kernel_entry(src: u128, dst: u128, count: u64, first_s: u64, last_s: u64) -> KO {
        KO {
            src,
            count,
            first_ns: START_NS + first_s * 1_000_000_000 + 250_000_000,
            last_ns: START_NS + last_s * 1_000_000_000 + 999_999_999,
            last_dst: dst,
            slot: 2,
            port: 25,
        }
    }

    use super::KernelOffender as KO;
    const START_NS: u64 = 5_000_000_000_000;

    /// Drains add up: a source's attempts over several drains are its cumulative count,
    /// first seen stays at its first drain, last seen and the sample follow the last;
    /// merged with a worker's list (the same source's rejected attempts) they add up
    /// again, with the class of the latest attempt.
    #[test]
    fn kernel_drains_accumulate_and_merge_with_the_workers() {
        let mut k = KernelList::with_start(START_NS);
        let (a, b) = (key_v4(0xc633_6482), key_v4(0xc633_6483));
        let (d1, d2) = (key_v4(0xcb00_7150), key_v4(0xcb00_7151));
        k.absorb(&[kernel_entry(a, d1, 5, 3, 4), kernel_entry(b, d1, 2, 4, 4)]);
        k.absorb(&[kernel_entry(a, d2, 7, 9, 10)]);
        let mut w = TopK::<8>::new();
        for t in 0..4 {
            w.record(a, d1, Some(0), t);
        }
        let name = |s: usize| Some(["dynamic", "static", "quarantine"][s].to_string());
        let m = merge([k.entries(), w.entries()], name, 1_000, 10);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].src, IpAddr::V4(0xc633_6482.into()));
        assert_eq!((m[0].attempts, m[0].error), (16, 0));
        assert_eq!((m[0].first_seen, m[0].last_seen), (1_000, 1_010));
        assert_eq!(
            m[0].class.as_deref(),
            Some("quarantine"),
            "the latest attempt's"
        );
        assert_eq!(m[0].dst_sample, IpAddr::V4(0xcb00_7151.into()));
        assert_eq!(m[0].distinct_destinations, 2);
        assert_eq!(
            (m[1].attempts, m[1].first_seen, m[1].last_seen),
            (2, 1_004, 1_004)
        );
    }

    /// Weighted space-saving keeps its bounds: a count is never below the truth nor
    /// above truth + error, and a newcomer that evicts inherits the smallest count.
    #[test]
    fn weighted_records_keep_the_space_saving_bounds() {
        let mut t = TopK::<2>::new();
        t.record_n(1, 0, None, 10, 0, 0);
        t.record_n(2, 0, None, 3, 0, 1);
        t.record_n(3, 0, None, 4, 2, 2);
        let mut e: Vec<(u128, u64, u64)> = t
            .entries()
            .iter()
            .map(|e| (e.key, e.count, e.error))
            .collect();
        e.sort();
        assert_eq!(e, vec![(1, 10, 0), (3, 7, 3)]);
        t.record_n(1, 0, None, 0, 5, 5);
        assert_eq!(
            t.entries().iter().map(|e| e.count).sum::<u64>(),
            17,
            "n = 0 counts nothing"
        );
    }

    proptest! {
        /// Space-saving guarantees: every source with more than total/N attempts is in
        /// the list, and each count is within [true, true + error].
        #[test]
        fn space_saving_bounds(stream in proptest::collection::vec(0u32..40, 1..2000)) {
            let mut t = TopK::<16>::new();
            let mut truth = std::collections::HashMap::new();
            for (i, s) in stream.iter().enumerate() {
                t.record(key_v4(*s), 0, None, i as u64);
                *truth.entry(key_v4(*s)).or_insert(0u64) += 1;
            }
            let total = stream.len() as u64;
            for e in t.entries() {
                let real = truth[&e.key];
                prop_assert!(e.count >= real && e.count - e.error <= real, "{e:?} real {real}");
            }
            for (k, n) in &truth {
                if *n > total / 16 {
                    prop_assert!(t.entries().iter().any(|e| e.key == *k), "heavy hitter {k} ({n}/{total}) missing");
                }
            }
        }
    }
}
