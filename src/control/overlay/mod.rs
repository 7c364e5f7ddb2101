//! The runtime overlay's one home: per-subscriber classes set while op25b runs, on top
//! of the file policy, and every writer of them.
//!
//! * [`store`]: the entries (prefix -> class, source, expiry) and their state file;
//! * this module: [`OverlayShared`], the store behind a lock with the cell the workers
//!   read, publishing (kernel maps first, then the workers' snapshot), expiry, saves,
//!   and the exempt/sessions operations;
//! * its writers: [`radius`] (RADIUS accounting), [`operator`] (the operator socket:
//!   `op25b exempt`, `sessions`), [`quarantine`] (auto-quarantine of hammering
//!   sources), [`state_file`] (the state file read at start).
//!
//! Who may call it: the daemon (which starts the writers and publishes on reload) and
//! observation (which reads its counters). It knows nothing of either: the operator
//! socket's other questions (reload, top) go through [`operator::Desk`]. The frozen
//! lookup table the workers read is `policy::overlay`, in the core.

pub mod operator;
pub mod quarantine;
pub mod radius;
pub mod state_file;
pub mod store;

use crate::datapath::PolicyCell;
use ipnet::IpNet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{EntrySource, OverlayEntry, Store};

/// What the control plane shares about the overlay: the store (control-plane threads
/// only), the cell workers read snapshots from, and counters for the metrics.
pub struct OverlayShared {
    pub store: Mutex<Store>,
    pub cell: Arc<PolicyCell>,
    /// `policy.exempt_class` of the policy in force.
    pub exempt_class: Mutex<Option<String>>,
    pub state_file: Option<PathBuf>,
    /// `policy.auto_quarantine` of the policy in force.
    pub auto: Mutex<Option<crate::config::AutoQuarantine>>,
    /// Sources moved to quarantine automatically since start.
    pub auto_quarantined: AtomicU64,
    /// The state file's saves (shared with the thread that writes them).
    pub saves: Arc<Saves>,
    /// When the state file was last written (or a write of it began).
    pub last_save: Mutex<Option<std::time::Instant>>,
    /// Entries added, removed and expired since start.
    pub added: AtomicU64,
    pub removed: AtomicU64,
    pub expired: AtomicU64,
}

/// The state file's saves: written by [`OverlayShared::tick`]'s save thread, read by the
/// next tick, the stop and /metrics.
#[derive(Debug, Default)]
pub struct Saves {
    /// A save is being written (by a thread of its own).
    pub running: AtomicBool,
    /// Failed saves in a row (0: the last one was written). While it is not 0 the store
    /// counts as changed: the next tick retries after [`retry_wait`], the stop saves.
    pub failing: AtomicU32,
    /// Failed saves since start.
    pub failed: AtomicU64,
    /// Lines of the state file skipped at start (`overlay::LoadReport::bad_lines`).
    pub bad_lines: AtomicU64,
}

/// How long the tick waits after a save before the next one: [`SAVE_EVERY`], doubled
/// for each failure in a row, at most [`RETRY_MAX`].
pub fn retry_wait(failing: u32) -> Duration {
    SAVE_EVERY
        .saturating_mul(1 << failing.min(8))
        .min(RETRY_MAX)
}

/// The longest wait between two attempts to save after failures.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

impl OverlayShared {
    /// The shared overlay around `store`, with no changes counted yet.
    pub fn new(
        store: Store,
        cell: Arc<PolicyCell>,
        state_file: Option<PathBuf>,
        exempt_class: Option<String>,
        auto: Option<crate::config::AutoQuarantine>,
    ) -> Self {
        Self {
            store: Mutex::new(store),
            cell,
            exempt_class: Mutex::new(exempt_class),
            state_file,
            auto: Mutex::new(auto),
            auto_quarantined: AtomicU64::new(0),
            saves: Arc::default(),
            last_save: Mutex::new(None),
            added: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// Publishes the store's snapshot: to the XDP program's maps (mode kernel), then to
    /// the workers.
    pub fn publish(&self, store: &mut Store) {
        let changed = store.take_changes();
        self.cell
            .publish_overlay(Arc::new(store.snapshot()), changed.as_deref());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one request; returns the answer.
    pub fn handle(&self, req: &serde_json::Value, now: u64) -> serde_json::Value {
        let fail = |e: String| serde_json::json!({"ok": false, "error": e});
        match req["op"].as_str() {
            Some("exempt_add") => {
                let prefix = match parse_prefix(req["prefix"].as_str().unwrap_or("")) {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                };
                let class = match req["class"].as_str() {
                    Some(c) => c.to_string(),
                    None => match self.exempt_class.lock().map(|c| c.clone()) {
                        Ok(Some(c)) => c,
                        _ => {
                            return fail(
                                "no class given and the policy has no exempt_class: name one with --class".into(),
                            )
                        }
                    },
                };
                // At most ten years.
                let expires = req["ttl_secs"]
                    .as_u64()
                    .map(|t| now.saturating_add(t.clamp(1, 10 * 365 * 86400)));
                let entry = OverlayEntry {
                    prefix,
                    class,
                    source: EntrySource::Operator,
                    note: req["note"].as_str().unwrap_or("").to_string(),
                    created: now,
                    expires,
                    session: None,
                };
                let mut store = self.lock();
                match store.upsert(entry.clone()) {
                    Ok(old) => {
                        self.publish(&mut store);
                        self.added.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            target: "op25b::overlay",
                            prefix = %entry.prefix,
                            class = %entry.class,
                            source = "operator",
                            expires = ?entry.expires,
                            note = %entry.note,
                            "overlay: {} is class {} ({})",
                            entry.prefix,
                            entry.class,
                            match entry.expires {
                                Some(t) => format!("for {} s", t.saturating_sub(now)),
                                None => "until removed".into(),
                            }
                        );
                        serde_json::json!({"ok": true, "entry": entry, "replaced": old})
                    }
                    Err(e) => fail(e.to_string()),
                }
            }
            Some("exempt_del") => {
                let prefix = match parse_prefix(req["prefix"].as_str().unwrap_or("")) {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                };
                let mut store = self.lock();
                match store.remove(&prefix) {
                    Some(e) => {
                        self.publish(&mut store);
                        self.removed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            target: "op25b::overlay",
                            prefix = %e.prefix,
                            class = %e.class,
                            "overlay: {} removed (was class {}, {})",
                            e.prefix,
                            e.class,
                            e.source.as_str()
                        );
                        serde_json::json!({"ok": true, "removed": e})
                    }
                    None => fail(format!("no overlay entry for {prefix}")),
                }
            }
            Some("sessions") => {
                // An O(1) copy under the lock; the listing is built outside it.
                let (copy, classes) = {
                    let store = self.lock();
                    (store.copy(), store.class_names())
                };
                let entries: Vec<serde_json::Value> = copy
                    .values()
                    .map(|e| {
                        let mut v = serde_json::to_value(e).unwrap_or_default();
                        v["active"] = serde_json::json!(classes.contains(&e.class));
                        v
                    })
                    .collect();
                serde_json::json!({"ok": true, "now": now, "entries": entries})
            }
            _ => fail("unknown op; expected exempt_add, exempt_del or sessions".into()),
        }
    }

    /// Once a second: drops expired entries (publishing if any) and saves the state
    /// file if something changed.
    pub fn tick(&self, now: u64) {
        let mut store = self.lock();
        let gone = store.expire(now);
        if !gone.is_empty() {
            self.publish(&mut store);
            self.expired.fetch_add(gone.len() as u64, Ordering::Relaxed);
            for e in gone.iter().take(20) {
                tracing::info!(
                    target: "op25b::overlay",
                    prefix = %e.prefix,
                    class = %e.class,
                    "overlay: {} expired (was class {}, {})",
                    e.prefix,
                    e.class,
                    e.source.as_str()
                );
            }
        }
        // The state file: at most every SAVE_EVERY, written by a thread of its own from
        // an O(1) copy, so neither this loop nor the lock waits for the disk. A failed
        // save leaves the store changed: retried here after a growing wait, and at stop.
        let Some(path) = self.state_file.clone() else {
            store.dirty = false;
            return;
        };
        let saves = &self.saves;
        if saves.running.load(Ordering::SeqCst) {
            return;
        }
        // Read after `running`: the thread sets `failing` before it clears `running`.
        let failing = saves.failing.load(Ordering::SeqCst);
        if failing > 0 {
            store.dirty = true;
        }
        let due = self
            .last_save
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() >= retry_wait(failing)))
            .unwrap_or(true);
        if store.dirty && due {
            saves.running.store(true, Ordering::SeqCst);
            let copy = store.copy();
            store.dirty = false;
            drop(store);
            if let Ok(mut t) = self.last_save.lock() {
                *t = Some(std::time::Instant::now());
            }
            let saves = saves.clone();
            let spawned = std::thread::Builder::new()
                .name("op25b-save".into())
                .spawn(move || {
                    match store::save_entries(&path, &copy) {
                        Ok(()) => {
                            let was = saves.failing.swap(0, Ordering::SeqCst);
                            if was > 0 {
                                tracing::warn!(
                                    "control.state_file {}: saved ({} entries) after {was} failed attempt(s)",
                                    path.display(),
                                    copy.len()
                                );
                            }
                        }
                        Err(e) => {
                            let n = saves.failing.fetch_add(1, Ordering::SeqCst) + 1;
                            saves.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                state_file = %path.display(),
                                failing = n,
                                "control.state_file {}: {e}; the overlay ({} entries) is kept in memory, unsaved: retrying in {} s ({n} failed in a row), and at stop",
                                path.display(),
                                copy.len(),
                                retry_wait(n).as_secs()
                            );
                        }
                    }
                    saves.running.store(false, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.saves.running.store(false, Ordering::SeqCst);
                self.lock().dirty = true;
            }
        }
    }

    /// At stop: waits for a save in flight, then writes the state file if anything
    /// changed since or a save failed, and says which.
    pub fn save_now(&self) {
        while self.saves.running.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut store = self.lock();
        let Some(path) = &self.state_file else {
            return;
        };
        let failing = self.saves.failing.load(Ordering::SeqCst);
        if !store.dirty && failing == 0 {
            return;
        }
        match store.save(path) {
            Ok(()) => {
                self.saves.failing.store(0, Ordering::SeqCst);
                tracing::info!(
                    "control.state_file {}: {} overlay entries saved at stop{}",
                    path.display(),
                    store.len(),
                    if failing > 0 {
                        format!(" (after {failing} failed attempt(s))")
                    } else {
                        String::new()
                    }
                );
            }
            Err(e) => {
                self.saves.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "control.state_file {}: {e}; saving at stop failed: the overlay's changes since the last save are lost",
                    path.display()
                );
            }
        }
    }
}

/// How often the state file is written at most (and at stop).
pub const SAVE_EVERY: Duration = Duration::from_secs(10);

/// An address (a host entry) or an IPv6 prefix.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(a) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(a));
    }
    text.parse::<IpNet>()
        .map_err(|_| format!("{text:?} is not an address or an IPv6 prefix"))
}

/// `30`, `30s`, `15m`, `12h`, `30d`: seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{text:?} is not a duration such as 3600, 90m, 12h or 30d"))
}

/// An overlay for unit tests (here and in `radius`): classes `dynamic` (blocks 25, owns
/// 198.51.100.0/24) and `static` (blocks nothing), state file `state_file`.
#[cfg(test)]
pub(crate) fn overlay_for_tests(state_file: Option<&std::path::Path>) -> OverlayShared {
    use crate::policy::{BlockAction, PolicyBuilder, ReplyKind};
    let mut b = PolicyBuilder::new();
    b.class(
        "dynamic",
        vec![25],
        BlockAction::Reject(ReplyKind::TcpReset),
        false,
    )
    .unwrap();
    b.class(
        "static",
        vec![],
        BlockAction::Reject(ReplyKind::TcpReset),
        false,
    )
    .unwrap();
    b.subscriber("198.51.100.0/24".parse().unwrap(), 0);
    let policy = Arc::new(b.build().unwrap());
    let store = Store::new(&policy, 1);
    let cell = Arc::new(PolicyCell::new(policy));
    OverlayShared::new(
        store,
        cell,
        state_file.map(std::path::Path::to_path_buf),
        None,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_prefixes_parse() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("12h").unwrap(), 43200);
        assert_eq!(parse_duration("30d").unwrap(), 2_592_000);
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_prefix("198.51.100.10").unwrap().to_string(),
            "198.51.100.10/32"
        );
        assert_eq!(
            parse_prefix("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_prefix("2001:db8:1::/56").unwrap().to_string(),
            "2001:db8:1::/56"
        );
        assert!(parse_prefix("example.org").is_err());
    }

    /// An overlay with classes `dynamic` and `static` whose state file is `path`.
    fn shared(path: &std::path::Path) -> OverlayShared {
        overlay_for_tests(Some(path))
    }

    fn add(s: &OverlayShared, addr: &str) {
        let r = s.handle(
            &serde_json::json!({"op": "exempt_add", "prefix": addr, "class": "static"}),
            1000,
        );
        assert_eq!(r["ok"], true, "{r}");
    }

    fn wait_for_the_save(s: &OverlayShared) {
        let t0 = std::time::Instant::now();
        while s.saves.running.load(Ordering::SeqCst) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the save never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Pretends the last save began long ago, so the next tick may save.
    fn long_ago(s: &OverlayShared) {
        let then = std::time::Instant::now().checked_sub(RETRY_MAX + SAVE_EVERY);
        *s.last_save.lock().unwrap() = then;
    }

    #[test]
    fn a_failed_save_is_retried_with_backoff_and_the_stop_saves_it() {
        let dir = tempfile::tempdir().unwrap();
        // The state file's directory is a regular file: every save fails, root or not.
        let blocker = dir.path().join("state");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("overlay.jsonl");
        let unblock = || {
            std::fs::remove_file(&blocker).unwrap();
            std::fs::create_dir(&blocker).unwrap();
        };
        let saved = || std::fs::read_to_string(&path).unwrap_or_default();

        let s = shared(&path);
        add(&s, "198.51.100.10");
        s.tick(1000);
        wait_for_the_save(&s);
        assert_eq!(s.saves.failing.load(Ordering::SeqCst), 1);
        assert_eq!(s.saves.failed.load(Ordering::SeqCst), 1);
        // Not forgotten: the store counts as changed, but the retry waits.
        s.tick(1001);
        assert!(s.lock().dirty);
        assert!(!s.saves.running.load(Ordering::SeqCst), "retried at once");
        assert_eq!(retry_wait(1), 2 * SAVE_EVERY);
        assert_eq!(retry_wait(30), RETRY_MAX);
        // Still failing: counted again, the wait grows.
        long_ago(&s);
        s.tick(1002);
        wait_for_the_save(&s);
        assert_eq!(s.saves.failing.load(Ordering::SeqCst), 2);
        assert_eq!(s.saves.failed.load(Ordering::SeqCst), 2);
        // The disk is back: the next due tick writes it, without any new change.
        unblock();
        long_ago(&s);
        s.tick(1003);
        wait_for_the_save(&s);
        assert_eq!(s.saves.failing.load(Ordering::SeqCst), 0);
        assert!(saved().contains("198.51.100.10/32"), "{}", saved());
        assert!(!s.lock().dirty);

        // The stop saves what a failed background save left.
        std::fs::remove_dir_all(&blocker).unwrap();
        std::fs::write(&blocker, "").unwrap();
        let s = shared(&path);
        add(&s, "198.51.100.11");
        s.tick(1000);
        wait_for_the_save(&s);
        assert_eq!(s.saves.failing.load(Ordering::SeqCst), 1);
        unblock();
        s.save_now();
        assert!(saved().contains("198.51.100.11/32"), "{}", saved());
        assert_eq!(s.saves.failing.load(Ordering::SeqCst), 0);
    }
}
