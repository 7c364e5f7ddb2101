//! The control plane's side of the runtime overlay (`policy::overlay`): the master
//! list of per-subscriber entries with their source, note and expiry, the persistent
//! maps a snapshot is cut from, and the state file that carries them across restarts.
//!
//! Only control-plane threads touch a [`Store`] (behind a mutex); workers only ever see
//! published [`Overlay`] snapshots. Each change costs O(log n) on the persistent maps;
//! a snapshot is an O(1) clone.

use crate::policy::overlay::{mask_v6, Overlay, V4Map, V6Map};
use crate::policy::{ClassId, Policy};
use ipnet::IpNet;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, Write};
use std::path::Path;

/// Who set an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntrySource {
    /// `op25b exempt add`.
    Operator,
    /// A RADIUS accounting session.
    Radius,
    /// Auto-quarantine.
    Auto,
}

impl EntrySource {
    pub fn as_str(self) -> &'static str {
        match self {
            EntrySource::Operator => "operator",
            EntrySource::Radius => "radius",
            EntrySource::Auto => "auto",
        }
    }
    pub const ALL: [EntrySource; 3] = [
        EntrySource::Operator,
        EntrySource::Radius,
        EntrySource::Auto,
    ];
}

/// One overlay entry as the operator sees it (and as the state file stores it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverlayEntry {
    pub prefix: IpNet,
    pub class: String,
    pub source: EntrySource,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; none: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// The RADIUS session (Acct-Session-Id) that owns the entry: only that session's
    /// Stop removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// Why an entry is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverlayError {
    #[error("{0}: an IPv4 overlay entry is one address (/32); give the address")]
    V4Prefix(IpNet),
    #[error("{0}: host bits set (did you mean {1}?)")]
    HostBits(IpNet, IpNet),
    #[error("class {0:?} is not defined in the policy (defined: {1})")]
    UnknownClass(String, String),
    #[error("{0}: IPv6 prefix length 0 would cover everything")]
    Everything(IpNet),
}

/// What loading a state file found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateFileReport {
    pub loaded: usize,
    pub expired: usize,
    /// Entries naming a class the policy no longer has: kept, inactive.
    pub inactive: usize,
    /// Lines that were not entries (not UTF-8, not JSON, not a valid entry): skipped,
    /// the rest of the file loads.
    pub bad_lines: usize,
    /// The first [`MAX_BAD_LISTED`] of them, each `FILE:LINE: why`.
    pub bad: Vec<String>,
    /// Reading stopped early on an I/O error (what was read before it is loaded).
    pub read_error: Option<String>,
}

/// How many bad lines a [`StateFileReport`] lists (all are counted).
pub const MAX_BAD_LISTED: usize = 20;

/// The master list and its persistent maps.
pub struct Store {
    /// Persistent too: a copy for saving or listing is O(1), taken under the lock and
    /// used outside it.
    entries: imbl::OrdMap<IpNet, OverlayEntry>,
    policy_id: usize,
    v4: V4Map,
    v6: V6Map,
    v6_len_count: [u32; 129],
    class_ids: HashMap<String, ClassId>,
    class_list: String,
    generation: u64,
    expiry: BinaryHeap<Reverse<(u64, IpNet)>>,
    by_source: [usize; 3],
    /// Changed since the last save.
    pub dirty: bool,
    /// The prefixes whose map entry changed since the last [`Store::take_changes`];
    /// `None`: the maps were rebuilt (write them whole).
    changed: Option<Vec<IpNet>>,
}

impl Store {
    /// An empty store for the classes of `policy` (generation `generation`).
    pub fn new(policy: &Policy, generation: u64) -> Self {
        let mut s = Self {
            entries: imbl::OrdMap::new(),
            policy_id: crate::policy::overlay::Overlay::policy_id_of(policy),
            v4: V4Map::default(),
            v6: V6Map::default(),
            v6_len_count: [0; 129],
            class_ids: HashMap::new(),
            class_list: String::new(),
            generation,
            expiry: BinaryHeap::new(),
            by_source: [0; 3],
            dirty: false,
            changed: None,
        };
        s.set_classes(policy);
        s
    }

    fn set_classes(&mut self, policy: &Policy) {
        self.class_ids = policy
            .classes()
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i as ClassId))
            .collect();
        self.class_list = policy
            .classes()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
    }

    /// Checks an entry's prefix and class; returns the normalised prefix.
    pub fn validate(&self, prefix: IpNet, class: &str) -> Result<IpNet, OverlayError> {
        match prefix {
            IpNet::V4(n) if n.prefix_len() != 32 => return Err(OverlayError::V4Prefix(prefix)),
            IpNet::V6(n) if n.prefix_len() == 0 => return Err(OverlayError::Everything(prefix)),
            _ => {}
        }
        if prefix.trunc() != prefix {
            return Err(OverlayError::HostBits(prefix, prefix.trunc()));
        }
        if !self.class_ids.contains_key(class) {
            return Err(OverlayError::UnknownClass(
                class.to_string(),
                self.class_list.clone(),
            ));
        }
        Ok(prefix)
    }

    /// The prefixes whose entries in the snapshot maps changed since the last call
    /// (`None`: everything may have; write the snapshot whole). The kernel's copy of
    /// the overlay follows them (`datapath::kernel`).
    pub fn take_changes(&mut self) -> Option<Vec<IpNet>> {
        self.changed.replace(Vec::new())
    }

    fn map_insert(&mut self, prefix: IpNet, id: ClassId) {
        if let Some(c) = &mut self.changed {
            c.push(prefix);
        }
        match prefix {
            IpNet::V4(n) => {
                self.v4.insert(u32::from(n.addr()), id);
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let key = (mask_v6(u128::from(n.addr()), len), len);
                if self.v6.insert(key, id).is_none() {
                    self.v6_len_count[usize::from(len)] += 1;
                }
            }
        }
    }

    fn map_remove(&mut self, prefix: IpNet) {
        if let Some(c) = &mut self.changed {
            c.push(prefix);
        }
        match prefix {
            IpNet::V4(n) => {
                self.v4.remove(&u32::from(n.addr()));
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let key = (mask_v6(u128::from(n.addr()), len), len);
                if self.v6.remove(&key).is_some() {
                    self.v6_len_count[usize::from(len)] -= 1;
                }
            }
        }
    }

    /// Adds or replaces an entry (validated first). Returns the entry it replaced.
    pub fn upsert(&mut self, e: OverlayEntry) -> Result<Option<OverlayEntry>, OverlayError> {
        let prefix = self.validate(e.prefix, &e.class)?;
        let id = self.class_ids[&e.class];
        self.map_remove(prefix);
        self.map_insert(prefix, id);
        // One heap item per entry: a refresh that moves the expiry later leaves the
        // earlier item, which `expire` re-queues at the new time.
        let previous = self.entries.get(&prefix).and_then(|o| o.expires);
        if let Some(t) = e.expires {
            if previous.is_none_or(|p| t < p) {
                self.expiry.push(Reverse((t, prefix)));
            }
        }
        self.dirty = true;
        self.by_source[e.source as usize] += 1;
        let old = self.entries.insert(prefix, OverlayEntry { prefix, ..e });
        if let Some(o) = &old {
            self.by_source[o.source as usize] -= 1;
        }
        Ok(old)
    }

    /// Removes the entry for exactly `prefix`.
    pub fn remove(&mut self, prefix: &IpNet) -> Option<OverlayEntry> {
        let e = self.entries.remove(prefix)?;
        self.map_remove(*prefix);
        self.dirty = true;
        self.by_source[e.source as usize] -= 1;
        Some(e)
    }

    /// Removes the entries whose expiry is at or before `now`; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<OverlayEntry> {
        let mut gone = Vec::new();
        while let Some(Reverse((t, p))) = self.expiry.peek().copied() {
            if t > now {
                break;
            }
            self.expiry.pop();
            // The heap may hold stale times (an entry refreshed or removed since).
            match self.entries.get(&p).and_then(|e| e.expires) {
                Some(x) if x <= now => {
                    if let Some(e) = self.remove(&p) {
                        gone.push(e);
                    }
                }
                Some(later) => self.expiry.push(Reverse((later, p))),
                None => {}
            }
        }
        gone
    }

    /// After a reload: class ids of the new policy. Entries whose class is gone stay,
    /// inactive, until it comes back or they are removed. Returns their number.
    pub fn rebind(&mut self, policy: &Policy, generation: u64) -> usize {
        let before = std::mem::take(&mut self.class_ids);
        self.set_classes(policy);
        self.generation = generation;
        self.policy_id = crate::policy::overlay::Overlay::policy_id_of(policy);
        if before == self.class_ids {
            // The same names with the same ids (the common reload): the maps stand.
            return self
                .entries
                .values()
                .filter(|e| !self.class_ids.contains_key(&e.class))
                .count();
        }
        self.v4 = V4Map::default();
        self.v6 = V6Map::default();
        self.v6_len_count = [0; 129];
        self.changed = None;
        let mut inactive = 0;
        let list: Vec<(IpNet, String)> = self
            .entries
            .values()
            .map(|e| (e.prefix, e.class.clone()))
            .collect();
        for (p, class) in list {
            match self.class_ids.get(&class) {
                Some(&id) => self.map_insert(p, id),
                None => inactive += 1,
            }
        }
        inactive
    }

    /// The snapshot workers read.
    pub fn snapshot(&self) -> Overlay {
        let lens: Vec<u8> = (0..=128u8)
            .rev()
            .filter(|&l| self.v6_len_count[usize::from(l)] > 0)
            .collect();
        Overlay::new(
            self.generation,
            self.policy_id,
            self.v4.clone(),
            self.v6.clone(),
            lens,
        )
    }

    /// Every entry, in address order.
    pub fn entries(&self) -> impl Iterator<Item = &OverlayEntry> {
        self.entries.values()
    }

    /// The entry for exactly `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<&OverlayEntry> {
        self.entries.get(prefix)
    }

    /// An O(1) copy of every entry, to save or list outside the lock.
    pub fn copy(&self) -> imbl::OrdMap<IpNet, OverlayEntry> {
        self.entries.clone()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries by source.
    pub fn count(&self, source: EntrySource) -> usize {
        self.by_source[source as usize]
    }

    /// The class names of the policy in force.
    pub fn class_names(&self) -> std::collections::HashSet<String> {
        self.class_ids.keys().cloned().collect()
    }

    /// Whether the entry's class exists in the policy in force.
    pub fn active(&self, e: &OverlayEntry) -> bool {
        self.class_ids.contains_key(&e.class)
    }

    /// Writes every entry to `path` now (see [`save_entries`]) and clears `dirty`.
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        save_entries(path, &self.entries)?;
        self.dirty = false;
        Ok(())
    }

    /// Loads the entries of a state file (a missing file is an empty one), line by line
    /// as bytes: a line that is not UTF-8, not JSON or not a valid entry is skipped,
    /// counted and listed with its line number, and the lines after it load. Entries
    /// whose expiry passed are dropped. Only a file that cannot be opened is an error.
    pub fn load(&mut self, path: &Path, now: u64) -> std::io::Result<StateFileReport> {
        let mut r = StateFileReport::default();
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(r),
            Err(e) => return Err(e),
        };
        let mut reader = std::io::BufReader::new(f);
        let mut bytes = Vec::new();
        let mut n = 0usize;
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) => break,
                Ok(_) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    r.read_error = Some(format!("{}:{}: {e}", path.display(), n + 1));
                    break;
                }
            }
            let mut bad = |why: String| {
                r.bad_lines += 1;
                if r.bad.len() < MAX_BAD_LISTED {
                    r.bad.push(format!("{}:{n}: {why}", path.display()));
                }
            };
            let line = match std::str::from_utf8(&bytes) {
                Ok(l) => l,
                Err(e) => {
                    bad(format!(
                        "not UTF-8 (invalid byte at column {})",
                        e.valid_up_to() + 1
                    ));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let e: OverlayEntry = match serde_json::from_str(line) {
                Ok(e) => e,
                Err(err) => {
                    bad(err.to_string());
                    continue;
                }
            };
            if e.expires.is_some_and(|t| t <= now) {
                r.expired += 1;
                continue;
            }
            match self.upsert(e.clone()) {
                Ok(_) => r.loaded += 1,
                Err(OverlayError::UnknownClass(..)) => {
                    // Kept, inactive: the class may come back with a reload.
                    self.map_remove(e.prefix);
                    if let Some(t) = e.expires {
                        self.expiry.push(Reverse((t, e.prefix)));
                    }
                    self.by_source[e.source as usize] += 1;
                    if let Some(o) = self.entries.insert(e.prefix, e) {
                        self.by_source[o.source as usize] -= 1;
                    }
                    r.loaded += 1;
                    r.inactive += 1;
                }
                Err(err) => bad(err.to_string()),
            }
        }
        self.dirty = false;
        Ok(r)
    }
}

/// Writes `entries` as JSON lines to `path`, atomically and durably: a temporary file
/// of this process in the same directory (mode 0600: it lists subscriber addresses),
/// fsync, rename, fsync of the directory.
pub fn save_entries(
    path: &Path,
    entries: &imbl::OrdMap<IpNet, OverlayEntry>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        for e in entries.values() {
            serde_json::to_writer(&mut w, e)?;
            w.write_all(b"\n")?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{BlockAction, PolicyBuilder, ReplyKind};

    fn policy(names: &[&str]) -> Policy {
        let mut b = PolicyBuilder::new();
        for n in names {
            let ports: Vec<u16> = if *n == "static" { vec![] } else { vec![25] };
            b.class(n, ports, BlockAction::Reject(ReplyKind::TcpReset), false)
                .unwrap();
        }
        b.subscriber("198.51.100.0/24".parse().unwrap(), 0);
        b.subscriber("2001:db8:100::/48".parse().unwrap(), 0);
        b.build().unwrap()
    }

    fn entry(p: &str, class: &str, expires: Option<u64>) -> OverlayEntry {
        OverlayEntry {
            prefix: p.parse().unwrap(),
            class: class.into(),
            source: EntrySource::Operator,
            note: String::new(),
            created: 1,
            expires,
            session: None,
        }
    }

    #[test]
    fn entries_override_the_file_most_specific_first() {
        let p = policy(&["dynamic", "static"]);
        let mut s = Store::new(&p, 1);
        s.upsert(entry("198.51.100.10/32", "static", None)).unwrap();
        s.upsert(entry("2001:db8:100:ab00::/56", "static", None))
            .unwrap();
        let o = s.snapshot();
        let v4 = |a: &str| u32::from(a.parse::<std::net::Ipv4Addr>().unwrap());
        let v6 = |a: &str| u128::from(a.parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(p.class_of_v4_with(v4("198.51.100.10"), &o), Some(1));
        assert_eq!(p.class_of_v4_with(v4("198.51.100.11"), &o), Some(0));
        assert_eq!(p.class_of_v6_with(v6("2001:db8:100:ab12::1"), &o), Some(1));
        assert_eq!(p.class_of_v6_with(v6("2001:db8:100:ac00::1"), &o), Some(0));
        s.remove(&"198.51.100.10/32".parse().unwrap()).unwrap();
        assert_eq!(
            p.class_of_v4_with(v4("198.51.100.10"), &s.snapshot()),
            Some(0)
        );
        // The snapshot taken before the removal is unchanged (persistent maps).
        assert_eq!(p.class_of_v4_with(v4("198.51.100.10"), &o), Some(1));
    }

    #[test]
    fn a_more_specific_file_prefix_beats_a_wider_overlay_prefix() {
        let mut b = PolicyBuilder::new();
        b.class("dynamic", [25], BlockAction::Drop, false).unwrap();
        b.class("static", [], BlockAction::Drop, false).unwrap();
        b.subscriber("2001:db8:100:ab12::/64".parse().unwrap(), 0);
        let p = b.build().unwrap();
        let mut s = Store::new(&p, 1);
        s.upsert(entry("2001:db8:100:ab00::/56", "static", None))
            .unwrap();
        let a = u128::from(
            "2001:db8:100:ab12::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap(),
        );
        assert_eq!(p.class_of_v6_with(a, &s.snapshot()), Some(0));
        // The same length: the overlay wins.
        s.upsert(entry("2001:db8:100:ab12::/64", "static", None))
            .unwrap();
        assert_eq!(p.class_of_v6_with(a, &s.snapshot()), Some(1));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let p = policy(&["dynamic", "static"]);
        let s = Store::new(&p, 1);
        assert!(matches!(
            s.validate("198.51.100.0/24".parse().unwrap(), "static"),
            Err(OverlayError::V4Prefix(_))
        ));
        assert!(matches!(
            s.validate("2001:db8::1/56".parse().unwrap(), "static"),
            Err(OverlayError::HostBits(..))
        ));
        let e = s
            .validate("198.51.100.1/32".parse().unwrap(), "nope")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "class \"nope\" is not defined in the policy (defined: dynamic, static)"
        );
    }

    #[test]
    fn expiry_removes_only_what_is_due() {
        let p = policy(&["dynamic", "static"]);
        let mut s = Store::new(&p, 1);
        s.upsert(entry("198.51.100.1/32", "static", Some(100)))
            .unwrap();
        s.upsert(entry("198.51.100.2/32", "static", Some(200)))
            .unwrap();
        // Refreshed: the old expiry in the heap is stale.
        s.upsert(entry("198.51.100.1/32", "static", Some(300)))
            .unwrap();
        assert!(s.expire(150).is_empty());
        let gone = s.expire(250);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].prefix.to_string(), "198.51.100.2/32");
        assert_eq!(s.len(), 1);
        assert_eq!(s.expire(300).len(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn rebind_follows_class_renumbering_and_keeps_unknown_classes_inactive() {
        let p = policy(&["dynamic", "static", "gone"]);
        let mut s = Store::new(&p, 1);
        s.upsert(entry("198.51.100.1/32", "static", None)).unwrap();
        s.upsert(entry("198.51.100.2/32", "gone", None)).unwrap();
        let q = policy(&["static", "dynamic"]);
        assert_eq!(s.rebind(&q, 2), 1);
        let o = s.snapshot();
        assert_eq!(o.generation, 2);
        assert_eq!(
            o.v4(u32::from(std::net::Ipv4Addr::new(198, 51, 100, 1))),
            Some(0)
        );
        assert_eq!(
            o.v4(u32::from(std::net::Ipv4Addr::new(198, 51, 100, 2))),
            None
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_snapshot_applies_only_to_the_policy_it_was_built_for() {
        let p = policy(&["dynamic", "static"]);
        let mut s = Store::new(&p, 1);
        s.upsert(entry("198.51.100.1/32", "static", None)).unwrap();
        let o = s.snapshot();
        assert!(!o.for_policy(&p).is_empty());
        // Another policy with the same classes: the ids stand (O(1) rebind), but the
        // old snapshot is not applied to it.
        let q = policy(&["dynamic", "static"]);
        assert!(o.for_policy(&q).is_empty());
        assert_eq!(s.rebind(&q, 2), 0);
        let o2 = s.snapshot();
        assert_eq!(o2.generation, 2);
        assert_eq!(
            o2.for_policy(&q)
                .v4(u32::from(std::net::Ipv4Addr::new(198, 51, 100, 1))),
            Some(1)
        );
    }

    #[test]
    fn refreshes_keep_one_heap_item_per_entry() {
        let p = policy(&["dynamic", "static"]);
        let mut s = Store::new(&p, 1);
        for t in 100..1100 {
            s.upsert(entry("198.51.100.1/32", "static", Some(t)))
                .unwrap();
        }
        assert_eq!(s.expiry.len(), 1);
        // The early item fires, finds a later expiry and is queued again at it.
        assert!(s.expire(500).is_empty());
        assert_eq!(s.expiry.len(), 1);
        assert_eq!(s.expire(1099).len(), 1);
        assert!(s.expiry.is_empty());
    }

    #[test]
    fn state_file_round_trip_drops_expired_and_counts_bad_lines() {
        let p = policy(&["dynamic", "static"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.jsonl");
        let mut s = Store::new(&p, 1);
        s.upsert(entry("198.51.100.1/32", "static", None)).unwrap();
        s.upsert(entry("198.51.100.2/32", "static", Some(50)))
            .unwrap();
        s.upsert(entry("2001:db8:100:ab00::/56", "static", Some(500)))
            .unwrap();
        s.save(&path).unwrap();
        assert!(!s.dirty);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("not json\n");
        std::fs::write(&path, text).unwrap();
        let mut t = Store::new(&p, 1);
        let r = t.load(&path, 100).unwrap();
        assert_eq!((r.loaded, r.expired, r.bad_lines), (2, 1, 1));
        assert!(r.bad[0].contains("overlay.jsonl:4: "), "{:?}", r.bad);
        assert_eq!(t.entries().count(), 2);
        // A missing file is an empty one.
        let mut u = Store::new(&p, 1);
        assert_eq!(
            u.load(&dir.path().join("none"), 0).unwrap(),
            StateFileReport::default()
        );
    }

    #[test]
    fn a_bad_line_in_the_middle_is_skipped_and_the_entries_after_it_load() {
        let p = policy(&["dynamic", "static"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.jsonl");
        let mut s = Store::new(&p, 1);
        for i in 1..=4 {
            s.upsert(entry(&format!("198.51.100.{i}/32"), "static", None))
                .unwrap();
        }
        s.save(&path).unwrap();
        let text = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 4);
        // Line 2: not UTF-8 (a torn write, a disk error); line 4: cut short.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(lines[0]);
        bytes.extend_from_slice(b"{\"prefix\":\"198.51.100.9/32\",\xff\xfe}\n");
        bytes.extend_from_slice(lines[1]);
        bytes.extend_from_slice(&lines[2][..10]);
        bytes.push(b'\n');
        bytes.extend_from_slice(lines[2]);
        bytes.extend_from_slice(lines[3]);
        std::fs::write(&path, bytes).unwrap();
        let mut t = Store::new(&p, 1);
        let r = t.load(&path, 100).unwrap();
        assert_eq!((r.loaded, r.bad_lines), (4, 2), "{r:?}");
        assert!(
            r.bad[0].ends_with("overlay.jsonl:2: not UTF-8 (invalid byte at column 29)"),
            "{:?}",
            r.bad
        );
        assert!(r.bad[1].contains("overlay.jsonl:4: "), "{:?}", r.bad);
        assert_eq!(r.read_error, None);
        assert_eq!(t.entries().count(), 4);
        assert!(t.get(&"198.51.100.4/32".parse().unwrap()).is_some());
    }
}
