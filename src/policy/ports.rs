//! [`PortSet`]: a set of TCP ports as a 65536-bit bitmap.
#![forbid(unsafe_code)]

use std::fmt;

/// A set of TCP ports as a 65536-bit bitmap: one load per test.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    count: usize,
}

impl PortSet {
    /// The empty set.
    pub fn new() -> Self {
        Self {
            bits: Box::new([0; 1024]),
            count: 0,
        }
    }

    /// Adds a port.
    pub fn insert(&mut self, port: u16) {
        if !self.contains(port) {
            self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
            self.count += 1;
        }
    }

    /// True when `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Number of ports in the set.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The ports, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }

    /// The ports in `self` or in `other`.
    pub fn union(&self, other: &PortSet) -> PortSet {
        self.iter().chain(other.iter()).collect()
    }
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

impl FromIterator<u16> for PortSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut s = PortSet::new();
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
