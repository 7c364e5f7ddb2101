//! [`PolicyBuilder`]: assembles, checks and compiles a [`Policy`] (off the hot path).
#![forbid(unsafe_code)]

use ipnet::IpNet;

use super::*;
use crate::lpm::{HostSplitTable, Ipv4Table, PrefixEntry, PrefixSet};

/// Assembles a [`Policy`]. Everything is checked and compiled in [`PolicyBuilder::build`].
#[derive(Default)]
pub struct PolicyBuilder {
    classes: Vec<Class>,
    subscribers_v4: Vec<PrefixEntry<u32>>,
    subscribers_v6: Vec<PrefixEntry<u128>>,
    allowed_v4: Vec<PrefixEntry<u32>>,
    allowed_v6: Vec<PrefixEntry<u128>>,
    unmatched: Option<ClassId>,
    fragments: FragmentPolicy,
}

impl PolicyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a class and returns its id.
    pub fn class(
        &mut self,
        name: &str,
        blocked_ports: impl IntoIterator<Item = u16>,
        action: BlockAction,
        block_inbound_smtp: bool,
    ) -> Result<ClassId, PolicyError> {
        if self.classes.iter().any(|c| c.name == name) {
            return Err(PolicyError::DuplicateClass(name.to_string()));
        }
        if self.classes.len() >= MAX_CLASSES {
            return Err(PolicyError::TooManyClasses);
        }
        self.classes.push(Class {
            name: name.to_string(),
            blocked_ports: blocked_ports.into_iter().collect(),
            action,
            block_inbound_smtp,
            notice: None,
        });
        Ok((self.classes.len() - 1) as ClassId)
    }

    /// Sets the SMTP reply a `smtp-notice` class sends (the whole reply, CRLFs
    /// included; config checks its lines).
    pub fn notice(&mut self, class: ClassId, reply: &[u8]) -> Result<&mut Self, PolicyError> {
        let c = self
            .classes
            .get_mut(usize::from(class))
            .ok_or(PolicyError::UnknownClass(class))?;
        c.notice = Some(reply.into());
        Ok(self)
    }

    /// Maps a subscriber prefix to a class. Host bits are ignored here (config rejects
    /// them); for the same prefix given twice, the last one wins.
    pub fn subscriber(&mut self, prefix: IpNet, class: ClassId) -> &mut Self {
        let value = u16::from(class) + 1;
        match prefix {
            IpNet::V4(n) => self.subscribers_v4.push(PrefixEntry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value,
            }),
            IpNet::V6(n) => self.subscribers_v6.push(PrefixEntry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value,
            }),
        }
        self
    }

    /// Adds an allowed destination (the ISP's own relays/MX): never blocked.
    pub fn allow(&mut self, prefix: IpNet) -> &mut Self {
        match prefix {
            IpNet::V4(n) => self.allowed_v4.push(PrefixEntry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value: 1,
            }),
            IpNet::V6(n) => self.allowed_v6.push(PrefixEntry {
                key: n.addr().into(),
                len: n.prefix_len(),
                value: 1,
            }),
        }
        self
    }

    /// The class for addresses in no subscriber prefix (`None`: forward them untouched).
    pub fn unmatched(&mut self, class: Option<ClassId>) -> &mut Self {
        self.unmatched = class;
        self
    }

    /// Fragment handling.
    pub fn fragments(&mut self, fragments: FragmentPolicy) -> &mut Self {
        self.fragments = fragments;
        self
    }

    /// Compiles the tables.
    pub fn build(&self) -> Result<Policy, PolicyError> {
        let n = self.classes.len();
        if let Some(id) = self.unmatched {
            if usize::from(id) >= n {
                return Err(PolicyError::UnknownClass(id));
            }
        }
        for v in self
            .subscribers_v4
            .iter()
            .map(|e| e.value)
            .chain(self.subscribers_v6.iter().map(|e| e.value))
        {
            if usize::from(v - 1) >= n {
                return Err(PolicyError::UnknownClass((v - 1) as ClassId));
            }
        }
        let table = |family: &'static str| move |source| PolicyError::Table { family, source };
        let subscribers_v4 =
            Ipv4Table::build(&self.subscribers_v4).map_err(table("IPv4 subscriber"))?;
        // The IPv6 table carries the prefix length beside the class (see
        // `class_of_v6_len`): the overlay competes on specificity.
        let v6_entries: Vec<PrefixEntry<u128>> = self
            .subscribers_v6
            .iter()
            .map(|e| PrefixEntry {
                value: (u16::from(e.len) << 8) | e.value,
                ..*e
            })
            .collect();
        let subscribers_v6 =
            HostSplitTable::build(&v6_entries).map_err(table("IPv6 subscriber"))?;
        let allowed_v4 = PrefixSet::build(&self.allowed_v4).map_err(table("IPv4 allowed"))?;
        let allowed_v6 = PrefixSet::build(&self.allowed_v6).map_err(table("IPv6 allowed"))?;

        let mut per_class = vec![(0usize, 0usize); n];
        let mut seen4 = std::collections::HashSet::new();
        for e in self.subscribers_v4.iter().rev() {
            if seen4.insert((e.key, e.len)) {
                per_class[usize::from(e.value - 1)].0 += 1;
            }
        }
        let mut seen6 = std::collections::HashSet::new();
        for e in self.subscribers_v6.iter().rev() {
            if seen6.insert((e.key, e.len)) {
                per_class[usize::from(e.value - 1)].1 += 1;
            }
        }
        let summary = PolicySummary {
            prefixes_per_class: per_class,
            allowed_v4: allowed_v4.len(),
            allowed_v6: allowed_v6.len(),
            table_bytes: subscribers_v4.memory_bytes()
                + subscribers_v6.memory_bytes()
                + allowed_v4.memory_bytes()
                + allowed_v6.memory_bytes(),
        };
        Ok(Policy {
            entries: PolicyEntries {
                subscribers_v4: self.subscribers_v4.clone().into_boxed_slice(),
                subscribers_v6: self.subscribers_v6.clone().into_boxed_slice(),
                allowed_v4: self.allowed_v4.clone().into_boxed_slice(),
                allowed_v6: self.allowed_v6.clone().into_boxed_slice(),
            },
            classes: self.classes.clone().into_boxed_slice(),
            subscribers_v4,
            subscribers_v6,
            allowed_v4,
            allowed_v6,
            unmatched: self.unmatched,
            fragments: self.fragments,
            summary,
            counter_slots: std::sync::OnceLock::new(),
        })
    }
}
