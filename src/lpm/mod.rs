//! Longest-prefix-match tables for IPv4 and IPv6, built off the hot path, read lock-free.
//!
//! The layout is a Poptrie (Asai & Ohara, SIGCOMM 2015): the top `K::DIRECT` bits of the
//! address index a direct array; below that, every node covers 6 address bits and stores
//! two 64-bit vectors instead of 64 pointers:
//!
//! * `children` marks the slots that lead to a deeper node; the deeper nodes of one parent
//!   sit next to each other, so `popcount` of the bits below a slot gives its offset;
//! * `leaf_runs` marks the slots where a new run of equal leaf values starts; the leaves of
//!   one node are stored once per run, again found by `popcount`.
//!
//! Single-child chains are path-compressed: a node records the bits that every key below
//! it shares and that no prefix ends in (any number of them, so a node's slots start
//! where the prefixes below it part; up to 42 bits in relative nodes), instead of a node
//! per stride (see [`Node`]). A sparse IPv6 table, where a /48 or /64 is often the only prefix below its
//! /22 or /28, walks 2-3 nodes instead of 5-8.
//!
//! A table is immutable once built ([`PrefixTable::build`]); a rebuild makes a new table
//! and the policy layer publishes it with one atomic pointer swap. Lookups take `&self`,
//! never lock, never allocate and touch one direct entry plus at most one node per 6 bits
//! of the matched prefix length beyond `K::DIRECT`.
//!
//! Values are `u16`; [`NO_MATCH`] (0) is reserved for "no prefix covers this address".
#![forbid(unsafe_code)]

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The value a lookup returns when no prefix matches.
pub const NO_MATCH: u16 = 0;

/// Bits resolved by each node below the direct array.
const STRIDE: u32 = 6;
/// Marks a direct-array entry that holds a leaf value rather than a node index.
const DIRECT_LEAF: u32 = 1 << 31;
/// Lookups [`PrefixTable::lookup_batch`] walks in lockstep: enough cache misses in
/// flight to hide most of the latency of a table bigger than the caches, few enough
/// that the lanes' state stays in registers and L1.
pub const BATCH_LANES: usize = 8;

/// An address family key: IPv4 (`u32`) or IPv6 (`u128`).
pub trait Key:
    Copy + Ord + fmt::Debug + Send + Sync + 'static + std::ops::BitAnd<Output = Self>
{
    /// Address width in bits (32 or 128).
    const BITS: u32;
    /// `bits` (<= 16) bits of the key starting `offset` bits from the most significant
    /// bit; bits past the end of the key read as zero. Requires `offset < BITS`.
    fn extract(self, offset: u32, bits: u32) -> usize;
    /// The 64 bits of the key starting `offset` bits from the most significant bit, left
    /// aligned; bits past the end of the key read as zero. Requires `offset < BITS`.
    fn window(self, offset: u32) -> u64;
    /// Number of leading bits `self` and `other` share (`BITS` when equal).
    fn common_bits(self, other: Self) -> u32;
    /// The key left aligned in 128 bits, as (top 64, bottom 64): a lookup shifts this
    /// pair as it descends, so the bits it needs next are always the top of the first
    /// word (for IPv4 the second word is zero and the shifts of it fold away).
    fn halves(self) -> (u64, u64);
    /// The key with every bit from `len` on cleared (`len` in `0..=BITS`).
    fn mask(self, len: u8) -> Self;
    /// Bits resolved by the direct array: 18 for IPv4 (2^18 entries, 1 MiB: a /24 is
    /// one node below it), 16 for IPv6 (the top 16 bits of global unicast vary little,
    /// a bigger array would buy nothing).
    const DIRECT: u32;
    /// Whether single-child chains are path-compressed (see [`Node`]): yes for IPv6,
    /// whose /48../64 prefixes sit 32-48 bits below the direct array and are often alone
    /// on their path; no for IPv4, whose few levels below the 18-bit direct array
    /// seldom chain, and whose lookups measured 10-20% slower for the extra test.
    const PATH_COMPRESSION: bool;
    /// A well-mixed 64-bit hash (for the exact-match host table).
    fn hash64(self) -> u64;
    const ZERO: Self;
    /// Every bit set.
    const ONES: Self;
}

impl Key for u32 {
    const BITS: u32 = 32;
    const DIRECT: u32 = 18;
    const PATH_COMPRESSION: bool = false;
    const ZERO: Self = 0;
    const ONES: Self = u32::MAX;
    #[inline(always)]
    fn hash64(self) -> u64 {
        u64::from(self).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    #[inline(always)]
    fn extract(self, offset: u32, bits: u32) -> usize {
        // Widen so bits past the end read as zero and shifts stay in range.
        let wide = (self as u64) << 32;
        ((wide << offset) >> (64 - bits)) as usize
    }
    #[inline(always)]
    fn window(self, offset: u32) -> u64 {
        ((self as u64) << 32) << offset
    }
    #[inline(always)]
    fn halves(self) -> (u64, u64) {
        ((self as u64) << 32, 0)
    }
    #[inline(always)]
    fn common_bits(self, other: Self) -> u32 {
        (self ^ other).leading_zeros()
    }
    #[inline(always)]
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - len as u32))
        }
    }
}

impl Key for u128 {
    const BITS: u32 = 128;
    const DIRECT: u32 = 16;
    const PATH_COMPRESSION: bool = true;
    const ZERO: Self = 0;
    const ONES: Self = u128::MAX;
    #[inline(always)]
    fn hash64(self) -> u64 {
        let x = (self as u64) ^ ((self >> 64) as u64).rotate_left(29);
        (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    #[inline(always)]
    fn extract(self, offset: u32, bits: u32) -> usize {
        ((self << offset) >> (128 - bits)) as usize
    }
    #[inline(always)]
    fn window(self, offset: u32) -> u64 {
        ((self << offset) >> 64) as u64
    }
    #[inline(always)]
    fn halves(self) -> (u64, u64) {
        ((self >> 64) as u64, self as u64)
    }
    #[inline(always)]
    fn common_bits(self, other: Self) -> u32 {
        (self ^ other).leading_zeros()
    }
    #[inline(always)]
    fn mask(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - len as u32))
        }
    }
}

/// One Poptrie node: 64 slots of 6 address bits, after an optional skipped path.
///
/// Path compression: a chain of nodes that each have one child and no leaf of their own
/// (every key below them shares those bits, no prefix ends in them) is not stored. The
/// node below the chain records the skipped bits in `skip` instead, and a key that
/// differs from them gets the value the chain would have given it everywhere.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C, align(32))]
struct Node {
    /// Bit i set: slot i continues in `nodes[child_base + rank]`.
    children: u64,
    /// Bit i set: slot i is a leaf slot whose value differs from the previous leaf slot.
    leaf_runs: u64,
    /// Index of this node's first child in `nodes`.
    child_base: u32,
    /// Index of this node's first leaf run in `leaves`; in a table of absolute nodes
    /// (see `skip`) only the low `LEAF_INDEX_BITS` bits, and the top 6 bits hold the
    /// node's shift.
    leaf_base: u32,
    /// The skipped path, in one of two encodings (a table uses one for all its nodes):
    ///
    /// * relative (IPv4, which never skips, and IPv6 tables with prefixes longer than
    ///   /64): the top `len` bits are the skipped address bits (the lookup shifts its key
    ///   as it descends), bits `SKIP_LEN_SHIFT..+6` hold `len` (any length up to
    ///   `MAX_SKIP`), bits 0..16 the value of a key that differs in them. All zero:
    ///   nothing skipped.
    /// * absolute (IPv6 tables with no prefix longer than /64, the subscriber case): the
    ///   node's slots cover address bits `at..at + 6` (`16 <= at <= 58`). The lookup
    ///   takes the key's bits below the direct array, `16..64`, left aligned (`rest`);
    ///   the top `at - 16` bits of `skip` are the path to the slots in the same
    ///   alignment, the low 16 bits the value of a key that leaves the path, and the top
    ///   6 bits of `leaf_base` hold `74 - at`, the shift that brings the slot bits of
    ///   `rest` to its bottom. The lookup never shifts its key: each node says where its
    ///   bits are, so the next node's address depends on one load, one shift and a
    ///   popcount.
    skip: u64,
}

/// Where a [`Node::skip`] keeps the skipped length.
const SKIP_LEN_SHIFT: u32 = 16;
/// The longest skip one node records (7 strides: the skipped bits must stay clear of the
/// low 22 bits of [`Node::skip`]); a longer chain keeps one node every 48 bits.
const MAX_SKIP: u32 = 7 * STRIDE;

/// The highest bit position an absolute node's slots start at (they end at bit 64).
const ABSOLUTE_MAX_AT: u32 = 64 - STRIDE;
/// Where an absolute node's path starts: the bits before it are the direct array's.
const ABSOLUTE_PATH_FROM: u32 = <u128 as Key>::DIRECT;
/// The 16-bit value under an absolute path must stay below the slot bits, which sit
/// `74 - at >= 16` bits up.
const _: () = assert!(64 - (ABSOLUTE_MAX_AT - ABSOLUTE_PATH_FROM) - STRIDE >= 16);
/// Bits of an absolute node's `leaf_base` that index `leaves` (the top 6 hold its shift).
const LEAF_INDEX_BITS: u32 = 26;
const LEAF_INDEX_MASK: u32 = (1 << LEAF_INDEX_BITS) - 1;

impl Node {
    /// The absolute `skip` word and the shift for `leaf_base` (see [`Node::skip`]) of a
    /// node whose slots start at `at` (`ABSOLUTE_PATH_FROM..=ABSOLUTE_MAX_AT`) on the
    /// path of `window` (the key's top 64 bits), with `value` for keys that leave it.
    fn absolute_word(window: u64, at: u32, value: u16) -> (u64, u32) {
        debug_assert!((ABSOLUTE_PATH_FROM..=ABSOLUTE_MAX_AT).contains(&at));
        let len = at - ABSOLUTE_PATH_FROM;
        let path = (window << ABSOLUTE_PATH_FROM) & !(u64::MAX >> len);
        let shift = 64 - len - STRIDE;
        (path | u64::from(value), shift << LEAF_INDEX_BITS)
    }

    /// The `skip` word for `len` skipped bits copied from `window` (the key's bits from
    /// the skipped path on, left aligned) with `value` for keys that differ in them.
    fn skip_word(window: u64, len: u32, value: u16) -> u64 {
        if len == 0 {
            return 0;
        }
        (window & !(u64::MAX >> len)) | (u64::from(len) << SKIP_LEN_SHIFT) | u64::from(value)
    }
}

/// `popcount` of the bits of `v` at positions `0..=slot` (`slot < 64`).
#[inline(always)]
fn rank_inclusive(v: u64, slot: u32) -> u32 {
    (v << (63 - slot)).count_ones()
}

/// A 128-bit value as (top, bottom) shifted left by `n` (`0..64`). Not `WIDE`: the
/// bottom word is known to be irrelevant (zero or never read) and is left out.
#[inline(always)]
fn shift_left<const WIDE: bool>(hi: u64, lo: u64, n: u32) -> (u64, u64) {
    if WIDE {
        // `(lo >> 1) >> (63 - n)` is `lo >> (64 - n)` without the overflow at n = 0.
        ((hi << n) | ((lo >> 1) >> (63 - n)), lo << n)
    } else {
        (hi << n, 0)
    }
}

/// An error building a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A prefix length beyond the address width.
    #[error("prefix length {len} is longer than {bits} bits")]
    LengthTooLong { len: u8, bits: u32 },
    /// [`NO_MATCH`] cannot be stored.
    #[error("value 0 is reserved for 'no match'")]
    ReservedValue,
    /// The table would need more nodes or leaves than a 31-bit index addresses.
    #[error("table too large: {0} entries")]
    TooLarge(usize),
}

/// An immutable longest-prefix-match table from `K` to `u16`.
#[derive(Clone)]
pub struct PrefixTable<K: Key> {
    direct: Box<[u32]>,
    nodes: Box<[Node]>,
    leaves: Box<[u16]>,
    prefixes: usize,
    /// No prefix is longer than 64 bits: a lookup reads only the top 64 bits of the key
    /// (the common IPv6 case: subscriber prefixes stop at /64, and /128 hosts live in
    /// [`HostSplitTable`]'s hash table).
    narrow: bool,
    _key: std::marker::PhantomData<K>,
}

/// IPv4 table: addresses as host-order `u32`.
pub type Ipv4Table = PrefixTable<u32>;
/// IPv6 table: addresses as host-order `u128`.
pub type Ipv6Table = PrefixTable<u128>;

/// A prefix to insert: key (host bits are ignored), length, value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixEntry<K> {
    pub key: K,
    pub len: u8,
    pub value: u16,
}

impl<K: Key> PrefixTable<K> {
    /// Builds a table. When the same prefix (key and length) appears more than once, the
    /// last one wins; callers that want duplicates to be an error check before.
    pub fn build(entries: &[PrefixEntry<K>]) -> Result<Self, BuildError> {
        let mut list: Vec<PrefixEntry<K>> = Vec::with_capacity(entries.len());
        for e in entries {
            if u32::from(e.len) > K::BITS {
                return Err(BuildError::LengthTooLong {
                    len: e.len,
                    bits: K::BITS,
                });
            }
            if e.value == NO_MATCH {
                return Err(BuildError::ReservedValue);
            }
            list.push(PrefixEntry {
                key: e.key.mask(e.len),
                len: e.len,
                value: e.value,
            });
        }
        // Sort by (key, len); a stable sort keeps insertion order among duplicates, and
        // keeping the last of each run makes "last one wins" hold.
        list.sort_by_key(|e| (e.key, e.len));
        let mut dedup: Vec<PrefixEntry<K>> = Vec::with_capacity(list.len());
        for e in list {
            match dedup.last_mut() {
                Some(last) if last.key == e.key && last.len == e.len => *last = e,
                _ => dedup.push(e),
            }
        }
        let prefixes = dedup.len();
        let narrow = dedup.iter().all(|e| e.len <= 64);
        let mut b = Builder {
            nodes: Vec::new(),
            leaves: Vec::new(),
            absolute: K::PATH_COMPRESSION && narrow,
        };
        let direct = b.build_direct(&dedup)?;
        Ok(Self {
            direct: direct.into_boxed_slice(),
            nodes: b.nodes.into_boxed_slice(),
            leaves: b.leaves.into_boxed_slice(),
            prefixes,
            narrow,
            _key: std::marker::PhantomData,
        })
    }

    /// An empty table: every lookup returns [`NO_MATCH`].
    pub fn empty() -> Self {
        Self::build(&[]).expect("an empty table always builds")
    }

    /// The value of the longest prefix covering `key`, or [`NO_MATCH`].
    #[inline(always)]
    pub fn lookup(&self, key: K) -> u16 {
        let (hi, lo) = key.halves();
        if K::PATH_COMPRESSION && self.narrow {
            self.walk_absolute(hi)
        } else if K::BITS <= 64 || self.narrow {
            self.walk::<false>(hi, 0)
        } else {
            self.walk::<true>(hi, lo)
        }
    }

    /// Looks up every key of `keys` into `out` (`out[i]` = [`PrefixTable::lookup`] of
    /// `keys[i]`; the shorter slice bounds the work). On a table of absolute nodes (IPv6
    /// with no prefix longer than /64, the subscriber table) the walks of
    /// [`BATCH_LANES`] keys advance in lockstep, one node each per round, so their
    /// cache misses overlap instead of following one another (DPDK's
    /// `rte_lpm_lookupx4`); other tables look the keys up one by one.
    #[inline]
    pub fn lookup_batch(&self, keys: &[K], out: &mut [u16]) {
        if K::PATH_COMPRESSION && self.narrow {
            for (k, o) in keys.chunks(BATCH_LANES).zip(out.chunks_mut(BATCH_LANES)) {
                self.walk_absolute_lanes(k, o);
            }
        } else {
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = self.lookup(*k);
            }
        }
    }

    /// The direct-array step of a lookup on a table of absolute nodes: the value, or the
    /// first node and the key's bits below the direct array (`rest`).
    #[inline(always)]
    fn enter_absolute(&self, key: u64) -> Result<(usize, u64), u16> {
        let d = self.direct[(key >> (64 - K::DIRECT)) as usize];
        if d & DIRECT_LEAF != 0 {
            return Err(d as u16);
        }
        Ok((d as usize, key << ABSOLUTE_PATH_FROM))
    }

    /// One node of a lookup on a table of absolute nodes: the next node, or the value.
    #[inline(always)]
    fn step_absolute(&self, index: usize, rest: u64) -> Result<usize, u16> {
        let node = &self.nodes[index];
        let shift = node.leaf_base >> LEAF_INDEX_BITS;
        // The path against the key: the bits above the slot's.
        if (rest ^ node.skip) >> shift >> STRIDE != 0 {
            return Err(node.skip as u16);
        }
        // `63 - slot` is `slot ^ 63`: the bits of `!rest` at the slot.
        let up = (!rest >> shift) as u32 & 63;
        // The slot's child bit lands on bit 63, the children below it stay under it.
        let children = node.children << up;
        if children >> 63 != 0 {
            Ok(node.child_base as usize + children.count_ones() as usize - 1)
        } else {
            let run = (node.leaf_runs << up).count_ones() as usize;
            Err(self.leaves[(node.leaf_base & LEAF_INDEX_MASK) as usize + run - 1])
        }
    }

    /// The lookup on a table of absolute nodes (see [`Node::skip`]): `key` is the top 64
    /// bits of the address.
    #[inline(always)]
    fn walk_absolute(&self, key: u64) -> u16 {
        let (mut index, rest) = match self.enter_absolute(key) {
            Ok(start) => start,
            Err(value) => return value,
        };
        loop {
            match self.step_absolute(index, rest) {
                Ok(next) => index = next,
                Err(value) => return value,
            }
        }
    }

    /// Up to [`BATCH_LANES`] lookups on a table of absolute nodes in lockstep: each
    /// round advances every unfinished walk by one node.
    #[inline(always)]
    fn walk_absolute_lanes(&self, keys: &[K], out: &mut [u16]) {
        let mut index = [0usize; BATCH_LANES];
        let mut rest = [0u64; BATCH_LANES];
        // Bit i: lane i is still walking.
        let mut live = 0u32;
        for (i, (k, o)) in keys.iter().zip(out.iter_mut()).enumerate() {
            match self.enter_absolute(k.halves().0) {
                Ok((n, r)) => {
                    index[i] = n;
                    rest[i] = r;
                    live |= 1 << i;
                }
                Err(value) => *o = value,
            }
        }
        while live != 0 {
            let mut lanes = live;
            while lanes != 0 {
                let i = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                match self.step_absolute(index[i], rest[i]) {
                    Ok(next) => index[i] = next,
                    Err(value) => {
                        if let Some(o) = out.get_mut(i) {
                            *o = value;
                        }
                        live &= !(1 << i);
                    }
                }
            }
        }
    }

    /// The lookup on the key as (top, bottom) 64 bits; without `WIDE` only the top word
    /// is used, which is exact when no prefix is longer than 64 bits.
    #[inline(always)]
    fn walk<const WIDE: bool>(&self, hi: u64, lo: u64) -> u16 {
        let d = self.direct[(hi >> (64 - K::DIRECT)) as usize];
        if d & DIRECT_LEAF != 0 {
            return d as u16;
        }
        // `hi` always holds the next 64 address bits to resolve.
        let (mut hi, mut lo) = shift_left::<WIDE>(hi, lo, K::DIRECT);
        let mut index = d as usize;
        loop {
            let node = self.nodes[index];
            // No branch on "has a skip": a node without one has length 0, an empty mask,
            // and the same straight-line code.
            let skip = if K::PATH_COMPRESSION {
                (node.skip >> SKIP_LEN_SHIFT) as u32 & 63
            } else {
                0
            };
            if K::PATH_COMPRESSION && (hi ^ node.skip) & !(u64::MAX >> skip) != 0 {
                return node.skip as u16;
            }
            (hi, lo) = shift_left::<WIDE>(hi, lo, skip);
            let slot = (hi >> (64 - STRIDE)) as u32;
            if node.children & (1u64 << slot) != 0 {
                index = node.child_base as usize + rank_inclusive(node.children, slot) as usize - 1;
                (hi, lo) = shift_left::<WIDE>(hi, lo, STRIDE);
            } else {
                let run = rank_inclusive(node.leaf_runs, slot) as usize;
                return self.leaves[node.leaf_base as usize + run - 1];
            }
        }
    }

    /// Number of distinct prefixes in the table.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    /// True when the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Heap bytes used by the table.
    pub fn memory_bytes(&self) -> usize {
        self.direct.len() * 4
            + self.nodes.len() * std::mem::size_of::<Node>()
            + self.leaves.len() * 2
    }
}

impl<K: Key> fmt::Debug for PrefixTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixTable")
            .field("bits", &K::BITS)
            .field("prefixes", &self.prefixes)
            .field("nodes", &self.nodes.len())
            .field("leaves", &self.leaves.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl PrefixTable<u32> {
    /// Looks up an IPv4 address.
    #[inline]
    pub fn lookup_addr(&self, addr: Ipv4Addr) -> u16 {
        self.lookup(u32::from(addr))
    }
}

impl PrefixTable<u128> {
    /// Looks up an IPv6 address.
    #[inline]
    pub fn lookup_addr(&self, addr: Ipv6Addr) -> u16 {
        self.lookup(u128::from(addr))
    }
}

/// A longest-prefix-match table that keeps full-length prefixes (/32, /128: single
/// hosts, typically static customers exempted inside a dynamic pool) in an
/// open-addressing hash table instead of the trie. A host entry is always the most
/// specific match, so the lookup is: exact hit, else the trie. Without this, every
/// address in a /48 that shares 100+ bits with an exempted /128 walks ~17 trie levels.
#[derive(Clone)]
pub struct HostSplitTable<K: Key> {
    hosts: Box<[(K, u16)]>,
    host_count: usize,
    shift: u32,
    trie: PrefixTable<K>,
}

impl<K: Key> HostSplitTable<K> {
    /// Builds the table; duplicates resolve as in [`PrefixTable::build`] (last wins).
    pub fn build(entries: &[PrefixEntry<K>]) -> Result<Self, BuildError> {
        let (host_entries, rest): (Vec<PrefixEntry<K>>, Vec<PrefixEntry<K>>) =
            entries.iter().partition(|e| u32::from(e.len) == K::BITS);
        let trie = PrefixTable::build(&rest)?;
        for e in &host_entries {
            if e.value == NO_MATCH {
                return Err(BuildError::ReservedValue);
            }
        }
        let bits = (host_entries.len().max(1) * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(1);
        let size = 1usize << bits;
        let mut hosts = vec![(K::ZERO, NO_MATCH); if host_entries.is_empty() { 0 } else { size }];
        let mut count = 0;
        for e in &host_entries {
            let mut i = (e.key.hash64() >> (64 - bits)) as usize;
            loop {
                let slot = &mut hosts[i];
                if slot.1 == NO_MATCH {
                    *slot = (e.key, e.value);
                    count += 1;
                    break;
                }
                if slot.0 == e.key {
                    slot.1 = e.value; // last one wins
                    break;
                }
                i = (i + 1) & (size - 1);
            }
        }
        Ok(Self {
            hosts: hosts.into_boxed_slice(),
            host_count: count,
            shift: 64 - bits,
            trie,
        })
    }

    /// The value of the longest prefix covering `key`, or [`NO_MATCH`].
    #[inline(always)]
    pub fn lookup(&self, key: K) -> u16 {
        match self.host(key) {
            Some(v) => v,
            None => self.trie.lookup(key),
        }
    }

    /// [`HostSplitTable::lookup`] of every key of `keys` into `out`, the trie walks in
    /// lockstep ([`PrefixTable::lookup_batch`]).
    #[inline]
    pub fn lookup_batch(&self, keys: &[K], out: &mut [u16]) {
        self.trie.lookup_batch(keys, out);
        if self.host_count != 0 {
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                if let Some(v) = self.host(*k) {
                    *o = v;
                }
            }
        }
    }

    /// The value of the host entry equal to `key`, if there is one.
    #[inline(always)]
    fn host(&self, key: K) -> Option<u16> {
        if self.host_count == 0 {
            return None;
        }
        let mask = self.hosts.len() - 1;
        let mut i = (key.hash64() >> self.shift) as usize;
        loop {
            let (k, v) = self.hosts[i];
            if v == NO_MATCH {
                return None;
            }
            if k == key {
                return Some(v);
            }
            i = (i + 1) & mask;
        }
    }

    /// Distinct prefixes (hosts plus trie).
    pub fn len(&self) -> usize {
        self.host_count + self.trie.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.hosts) + self.trie.memory_bytes()
    }
}

impl<K: Key> fmt::Debug for HostSplitTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostSplitTable")
            .field("hosts", &self.host_count)
            .field("trie", &self.trie)
            .finish()
    }
}

/// Membership in a set of prefixes (the answer is yes/no, not a value): a linear scan
/// while the set is small (an ISP's handful of relays: no trie walk down to a /32 or
/// /128), a [`PrefixTable`] beyond [`PrefixSet::LINEAR_MAX`] entries.
#[derive(Clone, Debug)]
pub enum PrefixSet<K: Key> {
    /// (network, netmask): a key is covered when `key & netmask == network`.
    Linear(Box<[(K, K)]>),
    Table(PrefixTable<K>),
}

impl<K: Key> PrefixSet<K> {
    /// Up to this many prefixes are scanned linearly.
    pub const LINEAR_MAX: usize = 16;

    /// Builds the set; values in `entries` are ignored (must be non-zero for the table).
    pub fn build(entries: &[PrefixEntry<K>]) -> Result<Self, BuildError> {
        let table = PrefixTable::build(entries)?;
        if table.len() > Self::LINEAR_MAX {
            return Ok(Self::Table(table));
        }
        let mut list: Vec<(K, K)> = entries
            .iter()
            .map(|e| {
                let netmask = K::ONES.mask(e.len);
                (e.key & netmask, netmask)
            })
            .collect();
        list.sort_unstable();
        list.dedup();
        Ok(Self::Linear(list.into_boxed_slice()))
    }

    /// True when some prefix of the set covers `key`.
    #[inline]
    pub fn contains(&self, key: K) -> bool {
        match self {
            Self::Linear(list) => list.iter().any(|&(net, netmask)| key & netmask == net),
            Self::Table(t) => t.lookup(key) != NO_MATCH,
        }
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        match self {
            Self::Linear(list) => list.len(),
            Self::Table(t) => t.len(),
        }
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Self::Linear(list) => std::mem::size_of_val(&**list),
            Self::Table(t) => t.memory_bytes(),
        }
    }
}

struct Builder {
    nodes: Vec<Node>,
    leaves: Vec<u16>,
    /// Nodes use the absolute `skip` encoding (see [`Node::skip`]).
    absolute: bool,
}

impl Builder {
    /// Resolves the direct array (the top `K::DIRECT` bits) from all prefixes, sorted
    /// by (key, len), building a node below every slot that has longer prefixes.
    fn build_direct<K: Key>(
        &mut self,
        prefixes: &[PrefixEntry<K>],
    ) -> Result<Vec<u32>, BuildError> {
        let slots = 1usize << K::DIRECT;
        let (values, deeper) = paint(prefixes, 0, K::DIRECT, NO_MATCH);
        let mut out = vec![0u32; slots];
        for slot in 0..slots {
            match deeper[slot] {
                None => out[slot] = DIRECT_LEAF | u32::from(values[slot]),
                Some(range) => {
                    let index = self.nodes.len();
                    if index >= DIRECT_LEAF as usize {
                        return Err(BuildError::TooLarge(index));
                    }
                    self.nodes.push(Node::default());
                    self.build_node(index, &prefixes[range.0..range.1], K::DIRECT, values[slot])?;
                    out[slot] = index as u32;
                }
            }
        }
        Ok(out)
    }

    /// Fills `nodes[index]` (already reserved) for the prefixes below `offset`: every one
    /// is longer than `offset`, and all share the bits before it.
    fn build_node<K: Key>(
        &mut self,
        index: usize,
        prefixes: &[PrefixEntry<K>],
        offset: u32,
        inherited: u16,
    ) -> Result<(), BuildError> {
        let (at, skip, shift) = if self.absolute {
            // Slots may start before `offset` (below a node whose slots started past
            // bit 58): the bits in between are fixed on this path, so some slots are
            // never reached, but the node still ends at bit 64.
            let at = slots_start(prefixes, offset).min(ABSOLUTE_MAX_AT);
            let (word, shift) = Node::absolute_word(prefixes[0].key.window(0), at, inherited);
            if self.leaves.len() + 64 > LEAF_INDEX_MASK as usize {
                return Err(BuildError::TooLarge(self.leaves.len() + 64));
            }
            (at, word, shift)
        } else {
            let len = (slots_start(prefixes, offset) - offset).min(MAX_SKIP);
            let word = Node::skip_word(prefixes[0].key.window(offset), len, inherited);
            (offset + len, word, 0)
        };
        let (values, deeper) = paint(prefixes, at, STRIDE, inherited);
        let mut node = Node {
            child_base: self.nodes.len() as u32,
            leaf_base: self.leaves.len() as u32 | shift,
            skip,
            ..Node::default()
        };
        let mut last_leaf: Option<u16> = None;
        for slot in 0..64 {
            if deeper[slot].is_some() {
                node.children |= 1 << slot;
            } else if last_leaf != Some(values[slot]) {
                node.leaf_runs |= 1 << slot;
                self.leaves.push(values[slot]);
                last_leaf = Some(values[slot]);
            }
        }
        let children = node.children.count_ones() as usize;
        let base = self.nodes.len();
        if base + children >= DIRECT_LEAF as usize || self.leaves.len() >= u32::MAX as usize {
            return Err(BuildError::TooLarge(base + children));
        }
        self.nodes.resize(base + children, Node::default());
        self.nodes[index] = node;
        let mut child = base;
        for slot in 0..64 {
            if let Some((lo, hi)) = deeper[slot] {
                self.build_node(child, &prefixes[lo..hi], at + STRIDE, values[slot])?;
                child += 1;
            }
        }
        Ok(())
    }
}

/// Where the six slot bits of a node below `offset` start, path compression allowed: where
/// the prefixes below it first part (the first bit they do not all share) or where the
/// shortest of them ends, whichever comes first. Bits before that are shared by every
/// prefix and no prefix ends in them, so a node there would have one child and one leaf
/// value, the inherited one. When one prefix is all there is below (or the others end
/// within six bits of it), the slots end where the longest prefix ends instead of
/// starting there. Without path compression: `offset`. `prefixes` is sorted by key,
/// non-empty, and every prefix is longer than `offset`; the result is at least `offset`
/// and at most `K::BITS - STRIDE` when `offset` is.
fn slots_start<K: Key>(prefixes: &[PrefixEntry<K>], offset: u32) -> u32 {
    if !K::PATH_COMPRESSION {
        return offset;
    }
    let (first, last) = (prefixes[0].key, prefixes[prefixes.len() - 1].key);
    let (shortest, longest) = prefixes.iter().fold((u32::MAX, 0), |(s, l), e| {
        (s.min(u32::from(e.len)), l.max(u32::from(e.len)))
    });
    first
        .common_bits(last)
        .min(shortest)
        .min(longest.saturating_sub(STRIDE))
        .max(offset)
}

/// Slot values and deeper-prefix ranges for one level: `bits` bits at `offset`.
///
/// Prefixes no longer than `offset + bits` paint the slots they cover (shorter first, so
/// longer prefixes overwrite); longer ones are grouped by the slot they fall in, as a
/// range into `prefixes` (which is sorted by key, so each group is contiguous).
#[allow(clippy::type_complexity)]
fn paint<K: Key>(
    prefixes: &[PrefixEntry<K>],
    offset: u32,
    bits: u32,
    inherited: u16,
) -> (Vec<u16>, Vec<Option<(usize, usize)>>) {
    let slots = 1usize << bits;
    let mut values = vec![inherited; slots];
    let mut deeper: Vec<Option<(usize, usize)>> = vec![None; slots];
    let end = offset + bits;
    let mut short: Vec<&PrefixEntry<K>> = Vec::new();
    for (i, e) in prefixes.iter().enumerate() {
        let slot = e.key.extract(offset, bits);
        if u32::from(e.len) <= end {
            short.push(e);
        } else {
            deeper[slot] = Some(match deeper[slot] {
                None => (i, i + 1),
                Some((lo, _)) => (lo, i + 1),
            });
        }
    }
    short.sort_by_key(|e| e.len);
    for e in short {
        let first = e.key.extract(offset, bits);
        let span = 1usize << (end - u32::from(e.len));
        values[first..first + span].fill(e.value);
    }
    (values, deeper)
}

/// The obviously-correct reference: scan every prefix, keep the longest that covers the
/// key. Used as the oracle in property tests and benchmarks.
pub fn linear_lookup<K: Key>(entries: &[PrefixEntry<K>], key: K) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for e in entries {
        if key.mask(e.len) == e.key.mask(e.len) && best.is_none_or(|(len, _)| e.len >= len) {
            best = Some((e.len, e.value));
        }
    }
    best.map_or(NO_MATCH, |(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str, len: u8, value: u16) -> PrefixEntry<u32> {
        PrefixEntry {
            key: u32::from(s.parse::<Ipv4Addr>().unwrap()),
            len,
            value,
        }
    }

    fn v6(s: &str, len: u8, value: u16) -> PrefixEntry<u128> {
        PrefixEntry {
            key: u128::from(s.parse::<Ipv6Addr>().unwrap()),
            len,
            value,
        }
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t = Ipv4Table::empty();
        assert_eq!(t.lookup(0), NO_MATCH);
        assert_eq!(t.lookup(u32::MAX), NO_MATCH);
        assert!(t.is_empty());
        let t = Ipv6Table::empty();
        assert_eq!(t.lookup(u128::MAX), NO_MATCH);
    }

    #[test]
    fn most_specific_prefix_wins_v4() {
        let t = Ipv4Table::build(&[
            v4("198.51.0.0", 16, 1),
            v4("198.51.100.0", 24, 2),
            v4("198.51.100.7", 32, 3),
            v4("0.0.0.0", 0, 9),
        ])
        .unwrap();
        let l = |s: &str| t.lookup_addr(s.parse().unwrap());
        assert_eq!(l("198.51.100.7"), 3);
        assert_eq!(l("198.51.100.8"), 2);
        assert_eq!(l("198.51.101.1"), 1);
        assert_eq!(l("192.0.2.1"), 9);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn most_specific_prefix_wins_v6() {
        let t = Ipv6Table::build(&[
            v6("2001:db8:100::", 48, 1),
            v6("2001:db8:100:5::", 64, 2),
            v6("2001:db8:100:5::25", 128, 3),
        ])
        .unwrap();
        let l = |s: &str| t.lookup_addr(s.parse().unwrap());
        assert_eq!(l("2001:db8:100:5::25"), 3);
        assert_eq!(l("2001:db8:100:5::26"), 2);
        assert_eq!(l("2001:db8:100:6::1"), 1);
        assert_eq!(l("2001:db8:101::1"), NO_MATCH);
    }

    #[test]
    fn last_duplicate_wins_and_host_bits_are_ignored() {
        let t = Ipv4Table::build(&[v4("192.0.2.0", 24, 1), v4("192.0.2.77", 24, 2)]).unwrap();
        assert_eq!(t.lookup_addr("192.0.2.1".parse().unwrap()), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn bad_entries_are_errors() {
        assert_eq!(
            Ipv4Table::build(&[v4("192.0.2.0", 33, 1)]).unwrap_err(),
            BuildError::LengthTooLong { len: 33, bits: 32 }
        );
        assert_eq!(
            Ipv4Table::build(&[v4("192.0.2.0", 24, 0)]).unwrap_err(),
            BuildError::ReservedValue
        );
    }

    fn entries_v4() -> impl Strategy<Value = Vec<PrefixEntry<u32>>> {
        // Keys drawn from a few "neighbourhoods" so prefixes nest and overlap often.
        let key = (0u32..4, any::<u32>()).prop_map(|(hood, low)| (hood << 30) | (low >> 2));
        prop::collection::vec(
            (key, 0u8..=32, 1u16..6).prop_map(|(key, len, value)| PrefixEntry { key, len, value }),
            0..120,
        )
    }

    fn entries_v6() -> impl Strategy<Value = Vec<PrefixEntry<u128>>> {
        let key = (0u128..4, any::<u128>()).prop_map(|(hood, low)| (hood << 126) | (low >> 2));
        prop::collection::vec(
            (key, 0u8..=128, 1u16..6).prop_map(|(key, len, value)| PrefixEntry { key, len, value }),
            0..120,
        )
    }

    /// Addresses near the prefixes (same key with some low bits flipped) plus random ones.
    fn probes<K: Key>(
        entries: &[PrefixEntry<K>],
        random: &[K],
        flip: impl Fn(K, u32) -> K,
    ) -> Vec<K> {
        let mut out: Vec<K> = random.to_vec();
        for (i, e) in entries.iter().enumerate() {
            out.push(e.key);
            out.push(flip(e.key, i as u32));
        }
        out
    }

    #[test]
    fn path_compression_skips_single_child_chains() {
        // A lone /64 below the direct array: one node (a 42-bit skip from bit 16, then
        // the stride 58..64), not seven.
        let t = Ipv6Table::build(&[v6("2001:db8:1:2::", 64, 1)]).unwrap();
        assert_eq!(t.nodes.len(), 1);
        let l = |s: &str| t.lookup_addr(s.parse().unwrap());
        assert_eq!(l("2001:db8:1:2::1"), 1);
        assert_eq!(l("2001:db8:1:3::1"), NO_MATCH); // differs in the last stride
        assert_eq!(l("2001:db9:1:2::1"), NO_MATCH); // differs in the skipped bits
        assert_eq!(l("2001:db8:8001:2::1"), NO_MATCH);
        // A covering /20 is what a key differing in the skipped bits inherits; a /128
        // (wide lookups) chains several skips.
        let t = Ipv6Table::build(&[
            v6("2001::", 20, 7),
            v6("2001:db8:1:2::", 64, 1),
            v6("2001:db8:1:2::25", 128, 3),
        ])
        .unwrap();
        let l = |s: &str| t.lookup_addr(s.parse().unwrap());
        assert_eq!(l("2001:db9:1:2::1"), 7);
        assert_eq!(l("2001:db8:1:2::1"), 1);
        assert_eq!(l("2001:db8:1:2::25"), 3);
        assert_eq!(l("2001:db8:1:2::24"), 1);
        assert_eq!(l("2001:db8:1:2:8000::25"), 1);
        assert_eq!(l("3001:db8:1:2::25"), NO_MATCH);
    }

    #[test]
    fn absolute_nodes_past_bit_58_overlap_their_parent() {
        // Two /64s that part at bit 57: alone, their node's slots cover 57..63; under a
        // /56, 56..62. Either way each /64 needs its last bits from a node whose slots
        // start at 58, inside its parent's.
        let two = [v6("2001:db8:1:2::", 64, 1), v6("2001:db8:1:42::", 64, 2)];
        let more = [
            two[0],
            two[1],
            v6("2001:db8:1::", 56, 3),
            v6("2001:db8::", 32, 4),
        ];
        for (entries, parent) in [(&two[..], 57), (&more[..], 56)] {
            let t = Ipv6Table::build(entries).unwrap();
            assert!(t.narrow);
            // The top 6 bits of an absolute node's leaf_base are 74 - at.
            let starts: Vec<u32> = t.nodes.iter().map(|n| 74 - (n.leaf_base >> 26)).collect();
            assert!(
                starts.contains(&parent) && starts.contains(&58),
                "{starts:?}"
            );
            for base in ["2001:db8:1:2::", "2001:db8:1:42::"] {
                let key = u128::from(base.parse::<Ipv6Addr>().unwrap());
                assert_eq!(t.lookup(key), linear_lookup(entries, key));
                for bit in 0..128 {
                    let probe = key ^ (1u128 << bit);
                    assert_eq!(t.lookup(probe), linear_lookup(entries, probe), "{probe:x}");
                }
            }
        }
        let t = Ipv6Table::build(&more).unwrap();
        let l = |s: &str| t.lookup_addr(s.parse().unwrap());
        assert_eq!(l("2001:db8:1:2::1"), 1);
        assert_eq!(l("2001:db8:1:3::1"), 3);
        assert_eq!(l("2001:db8:1:42:ffff::"), 2);
        assert_eq!(l("2001:db8:1:43::"), 3);
        assert_eq!(l("2001:db8:2::"), 4);
        assert_eq!(l("2001:db9::"), NO_MATCH);
    }

    /// IPv6 entries no longer than /64, so the table takes the narrow (top 64 bits) path.
    fn entries_v6_narrow() -> impl Strategy<Value = Vec<PrefixEntry<u128>>> {
        let key = (0u128..4, any::<u128>()).prop_map(|(hood, low)| (hood << 126) | (low >> 2));
        prop::collection::vec(
            (key, 0u8..=64, 1u16..6).prop_map(|(key, len, value)| PrefixEntry { key, len, value }),
            0..120,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn v6_narrow_matches_linear_scan(entries in entries_v6_narrow(), random in prop::collection::vec(any::<u128>(), 64)) {
            let t = Ipv6Table::build(&entries).unwrap();
            prop_assert!(t.narrow);
            let mut oracle: Vec<PrefixEntry<u128>> = Vec::new();
            for e in &entries {
                let e = PrefixEntry { key: e.key.mask(e.len), ..*e };
                oracle.retain(|o| !(o.key == e.key && o.len == e.len));
                oracle.push(e);
            }
            for k in probes(&entries, &random, |k, i| k ^ (1u128 << (i % 128)) ^ 1) {
                prop_assert_eq!(t.lookup(k), linear_lookup(&oracle, k), "key {:#034x}", k);
            }
        }

        #[test]
        fn v4_matches_linear_scan(entries in entries_v4(), random in prop::collection::vec(any::<u32>(), 64)) {
            let t = Ipv4Table::build(&entries).unwrap();
            // The oracle sees duplicates resolved the same way (last wins).
            let mut oracle: Vec<PrefixEntry<u32>> = Vec::new();
            for e in &entries {
                let e = PrefixEntry { key: e.key.mask(e.len), ..*e };
                oracle.retain(|o| !(o.key == e.key && o.len == e.len));
                oracle.push(e);
            }
            for k in probes(&entries, &random, |k, i| k ^ (1u32 << (i % 32)) ^ 1) {
                prop_assert_eq!(t.lookup(k), linear_lookup(&oracle, k), "key {:#010x}", k);
            }
        }

        #[test]
        fn v6_matches_linear_scan(entries in entries_v6(), random in prop::collection::vec(any::<u128>(), 64)) {
            let t = Ipv6Table::build(&entries).unwrap();
            let mut oracle: Vec<PrefixEntry<u128>> = Vec::new();
            for e in &entries {
                let e = PrefixEntry { key: e.key.mask(e.len), ..*e };
                oracle.retain(|o| !(o.key == e.key && o.len == e.len));
                oracle.push(e);
            }
            for k in probes(&entries, &random, |k, i| k ^ (1u128 << (i % 128)) ^ 1) {
                prop_assert_eq!(t.lookup(k), linear_lookup(&oracle, k), "key {:#034x}", k);
            }
        }

        /// Both shapes of PrefixSet (linear below LINEAR_MAX, table above) agree with
        /// "some prefix covers the key".
        #[test]
        fn prefix_set_matches_any_cover(entries in entries_v6(), random in prop::collection::vec(any::<u128>(), 64)) {
            for n in [entries.len().min(PrefixSet::<u128>::LINEAR_MAX), entries.len()] {
                let set = PrefixSet::build(&entries[..n]).unwrap();
                for k in probes(&entries[..n], &random, |k, i| k ^ (1u128 << (i % 128)) ^ 1) {
                    let want = entries[..n].iter().any(|e| k.mask(e.len) == e.key.mask(e.len));
                    prop_assert_eq!(set.contains(k), want, "key {:#034x}", k);
                }
            }
        }

        /// The host split agrees with the plain trie (and so with the oracle), with many
        /// full-length prefixes mixed in.
        #[test]
        fn host_split_matches_trie(entries in entries_v6(), hosts in prop::collection::vec((any::<u128>(), 1u16..5), 0..40), random in prop::collection::vec(any::<u128>(), 64)) {
            let mut all = entries.clone();
            for (i, (k, v)) in hosts.iter().enumerate() {
                // Some hosts inside existing prefixes, some anywhere.
                let key = if i % 2 == 0 && !entries.is_empty() {
                    let e = entries[i % entries.len()];
                    e.key.mask(e.len) | (k & !u128::MAX.checked_shl(128 - u32::from(e.len)).unwrap_or(0))
                } else { *k };
                all.push(PrefixEntry { key, len: 128, value: *v });
            }
            let split = HostSplitTable::build(&all).unwrap();
            let trie = PrefixTable::build(&all).unwrap();
            let mut probes_v = probes(&all, &random, |k, i| k ^ (1u128 << (i % 128)) ^ 1);
            probes_v.extend(all.iter().map(|e| e.key));
            for k in &probes_v {
                prop_assert_eq!(split.lookup(*k), trie.lookup(*k), "key {:#034x}", k);
            }
            let mut batch = vec![NO_MATCH; probes_v.len()];
            split.lookup_batch(&probes_v, &mut batch);
            for (k, got) in probes_v.iter().zip(&batch) {
                prop_assert_eq!(*got, trie.lookup(*k), "batch, key {:#034x}", k);
            }
        }

        /// Batched lookups agree with single ones on every kind of table (absolute
        /// nodes, relative nodes with prefixes past /64, IPv4), at every batch length
        /// (whole groups of lanes and a remainder).
        #[test]
        fn batch_matches_single_lookups(v6n in entries_v6_narrow(), v6 in entries_v6(), v4 in entries_v4(), random in prop::collection::vec(any::<u128>(), 0..50)) {
            fn check<K: Key>(entries: &[PrefixEntry<K>], keys: &[K]) -> Result<(), TestCaseError> {
                let t = PrefixTable::build(entries).unwrap();
                let mut out = vec![u16::MAX; keys.len()];
                t.lookup_batch(keys, &mut out);
                for (k, got) in keys.iter().zip(&out) {
                    prop_assert_eq!(*got, t.lookup(*k), "key {:?}", k);
                }
                Ok(())
            }
            let k6n = probes(&v6n, &random, |k, i| k ^ (1u128 << (127 - i % 64)));
            check(&v6n, &k6n)?;
            let k6 = probes(&v6, &random, |k, i| k ^ (1u128 << (i % 128)));
            check(&v6, &k6)?;
            let r4: Vec<u32> = random.iter().map(|r| *r as u32).collect();
            let k4 = probes(&v4, &r4, |k, i| k ^ (1u32 << (i % 32)));
            check(&v4, &k4)?;
        }
    }

    #[test]
    fn batch_uses_the_shorter_slice_and_never_panics() {
        let t = Ipv6Table::build(&[v6("2001:db8::", 32, 7)]).unwrap();
        let key = u128::from("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let mut out = [0u16; 3];
        t.lookup_batch(&[key; 11], &mut out);
        assert_eq!(out, [7; 3]);
        let mut long = [9u16; 12];
        t.lookup_batch(&[key; 10], &mut long);
        assert_eq!(long[..10], [7; 10]);
        assert_eq!(long[10..], [9, 9]);
        t.lookup_batch(&[], &mut long);
    }
}
