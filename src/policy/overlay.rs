//! The dynamic overlay: per-subscriber classes set at runtime (operator exemptions,
//! RADIUS sessions, auto-quarantine), on top of the file policy.
//!
//! Entries are IPv4 addresses (/32) and IPv6 addresses or delegated prefixes (/1..=/128),
//! each mapped to a class of the file policy. The most specific match wins across both:
//! an IPv4 /32 always beats a file prefix; for IPv6 the overlay's longest match competes
//! with the file table's (on a tie the overlay wins: it is the operator's word).
//!
//! An [`Overlay`] is an immutable snapshot built on persistent maps (`imbl`): the control
//! plane changes its master copy in O(log n) per entry and publishes a new snapshot with
//! an O(1) clone and one atomic pointer swap (`datapath::PolicyCell`); workers read it
//! lock-free. Class ids are those of one policy generation: a snapshot carries the
//! generation it was built for, and a worker ignores a snapshot of another generation
//! (for the few microseconds between a reload's two swaps).

#![forbid(unsafe_code)]

use super::ClassId;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast, non-keyed hash for the overlay's integer keys (the keys come from the
/// operator and the NAS, not from the traffic, so flooding is not a concern).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // A final avalanche (splitmix64's) so every bit of the key reaches the HAMT's
        // top bits.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

type Build = BuildHasherDefault<KeyHasher>;

/// IPv4 address (host order) -> class.
pub type V4Map = imbl::GenericHashMap<u32, ClassId, Build, imbl::shared_ptr::DefaultSharedPtr>;
/// (IPv6 prefix masked to its length, host order; length) -> class.
pub type V6Map =
    imbl::GenericHashMap<(u128, u8), ClassId, Build, imbl::shared_ptr::DefaultSharedPtr>;

/// The network part of `addr` for a prefix of `len` bits.
#[inline]
pub fn mask_v6(addr: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        128.. => addr,
        l => addr & !(u128::MAX >> l),
    }
}

/// One immutable overlay snapshot.
#[derive(Clone, Default)]
pub struct Overlay {
    /// The policy generation whose class ids this snapshot uses (for display).
    pub generation: u64,
    /// The identity (address) of the `Policy` whose class ids this snapshot uses: a
    /// worker applies the snapshot only with that very policy (see [`Overlay::for_policy`]).
    pub policy_id: usize,
    v4: V4Map,
    v6: V6Map,
    /// IPv6 prefix lengths present, longest first.
    v6_lens: Vec<u8>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("generation", &self.generation)
            .field("v4", &self.v4.len())
            .field("v6", &self.v6.len())
            .field("v6_lens", &self.v6_lens)
            .finish()
    }
}

impl Overlay {
    /// A snapshot of these maps, for `generation`.
    pub fn new(generation: u64, policy_id: usize, v4: V4Map, v6: V6Map, v6_lens: Vec<u8>) -> Self {
        debug_assert!(v6_lens.windows(2).all(|w| w[0] > w[1]));
        Self {
            generation,
            policy_id,
            v4,
            v6,
            v6_lens,
        }
    }

    /// The identity of `policy` as [`Overlay::policy_id`] holds it.
    pub fn policy_id_of(policy: &super::Policy) -> usize {
        policy as *const super::Policy as usize
    }

    /// This snapshot if it was built for `policy`, else the empty overlay: between a
    /// reload's policy swap and its overlay swap a worker judges by the file alone, and
    /// never applies one policy's class ids to another.
    #[inline]
    pub fn for_policy<'a>(&'a self, policy: &super::Policy) -> &'a Overlay {
        if self.policy_id == Self::policy_id_of(policy) {
            self
        } else {
            Overlay::empty()
        }
    }

    /// The empty overlay (no runtime entries).
    pub fn empty() -> &'static Overlay {
        static EMPTY: std::sync::OnceLock<Overlay> = std::sync::OnceLock::new();
        EMPTY.get_or_init(Overlay::default)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Entries (IPv4, IPv6).
    pub fn len(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// The class of an IPv4 address in the overlay.
    #[inline]
    pub fn v4(&self, addr: u32) -> Option<ClassId> {
        if self.v4.is_empty() {
            return None;
        }
        self.v4.get(&addr).copied()
    }

    /// Every IPv4 entry: (address, class).
    pub fn iter_v4(&self) -> impl Iterator<Item = (u32, ClassId)> + '_ {
        self.v4.iter().map(|(&a, &c)| (a, c))
    }

    /// Every IPv6 entry: ((masked prefix, length), class).
    pub fn iter_v6(&self) -> impl Iterator<Item = ((u128, u8), ClassId)> + '_ {
        self.v6.iter().map(|(&k, &c)| (k, c))
    }

    /// The class of the IPv6 entry for exactly this (masked) prefix and length.
    pub fn v6_exact(&self, prefix: u128, len: u8) -> Option<ClassId> {
        self.v6.get(&(prefix, len)).copied()
    }

    /// The longest IPv6 match in the overlay: (class, prefix length).
    #[inline]
    pub fn v6(&self, addr: u128) -> Option<(ClassId, u8)> {
        for &len in &self.v6_lens {
            if let Some(&c) = self.v6.get(&(mask_v6(addr, len), len)) {
                return Some((c, len));
            }
        }
        None
    }
}

/// What the verdict functions ask of an overlay: a snapshot ([`Overlay`]) or none at all
/// ([`NoOverlay`], for callers without a control plane: `classify`, the offline tools,
/// the benches), which compiles to nothing.
pub trait OverlayView {
    /// The class of an IPv4 address (a /32 entry).
    fn v4(&self, addr: u32) -> Option<ClassId>;
    /// The longest IPv6 match: (class, prefix length).
    fn v6(&self, addr: u128) -> Option<(ClassId, u8)>;
}

impl OverlayView for Overlay {
    #[inline(always)]
    fn v4(&self, addr: u32) -> Option<ClassId> {
        Overlay::v4(self, addr)
    }
    #[inline(always)]
    fn v6(&self, addr: u128) -> Option<(ClassId, u8)> {
        Overlay::v6(self, addr)
    }
}

/// No overlay: the file policy alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOverlay;

impl OverlayView for NoOverlay {
    #[inline(always)]
    fn v4(&self, _: u32) -> Option<ClassId> {
        None
    }
    #[inline(always)]
    fn v6(&self, _: u128) -> Option<(ClassId, u8)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_v6_match_wins_inside_the_overlay() {
        let mut v6 = V6Map::default();
        let a: u128 = "2001:db8:100:1::"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .into();
        v6.insert((mask_v6(a, 48), 48), 1);
        v6.insert((mask_v6(a, 56), 56), 2);
        let o = Overlay::new(1, 0, V4Map::default(), v6, vec![56, 48]);
        assert_eq!(o.v6(a), Some((2, 56)));
        let other: u128 = "2001:db8:100:ff00::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .into();
        assert_eq!(o.v6(other), Some((1, 48)));
        assert_eq!(o.v6(0), None);
        assert_eq!(mask_v6(a, 0), 0);
        assert_eq!(mask_v6(a, 128), a);
    }

    #[test]
    fn empty_overlay_matches_nothing() {
        assert!(Overlay::empty().is_empty());
        assert_eq!(Overlay::empty().v4(1), None);
        assert_eq!(Overlay::empty().v6(1), None);
    }
}
