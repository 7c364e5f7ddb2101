//! Auto-quarantine: a source whose blocked attempts grow past the policy's threshold
//! within a minute is put in the quarantine class for a while (an overlay entry of
//! source `auto`). Fed once a second by the daemon with the merged top list.

use super::store::{EntrySource, OverlayEntry};
use super::OverlayShared;
use ipnet::IpNet;
use std::sync::atomic::Ordering;

/// Auto-quarantine's memory: per source, the attempts count at the start of its current
/// one-minute window. Bounded: only sources in the merged top list are tracked.
#[derive(Default)]
pub struct AutoTracker {
    windows: std::collections::HashMap<std::net::IpAddr, (u64, u64)>,
}

impl AutoTracker {
    /// Checks the top sources (`op25b top`'s list): one whose blocked attempts grew by
    /// at least the threshold within a minute, and that has no overlay entry yet, is
    /// put in the quarantine class for the configured time. Returns the sources moved.
    pub fn check(
        &mut self,
        shared: &OverlayShared,
        top: &[crate::topk::Offender],
        now: u64,
    ) -> Vec<std::net::IpAddr> {
        let Some(rule) = shared.auto.lock().ok().and_then(|a| a.clone()) else {
            self.windows.clear();
            return Vec::new();
        };
        let mut moved = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for o in top {
            seen.insert(o.src);
            // First sight: a source first seen within the last minute made all its
            // attempts in this window.
            // Space-saving counts may overcount by `error` (a newcomer inherits an
            // evicted slot's count): only the guaranteed part counts.
            let sure = o.attempts.saturating_sub(o.error);
            let w = self.windows.entry(o.src).or_insert_with(|| {
                if now.saturating_sub(o.first_seen) < 60 {
                    (o.first_seen, 0)
                } else {
                    (now, sure)
                }
            });
            if now.saturating_sub(w.0) >= 60 || sure < w.1 {
                *w = (now, sure);
            }
            if sure.saturating_sub(w.1) < rule.attempts_per_minute {
                continue;
            }
            let prefix = IpNet::from(o.src);
            let mut store = shared.lock();
            // An operator's word and a quarantine already in force stand; a RADIUS
            // class gives way (the next Interim-Update after the quarantine restores it).
            if store
                .get(&prefix)
                .is_some_and(|e| e.source != EntrySource::Radius)
            {
                *w = (now, sure);
                continue;
            }
            let made = sure.saturating_sub(w.1);
            let entry = OverlayEntry {
                prefix,
                class: rule.class.clone(),
                source: EntrySource::Auto,
                note: format!("{made} blocked attempts within a minute"),
                created: now,
                expires: Some(now.saturating_add(rule.duration.as_secs())),
                session: None,
            };
            match store.upsert(entry) {
                Ok(_) => {
                    shared.publish(&mut store);
                    shared.added.fetch_add(1, Ordering::Relaxed);
                    shared.auto_quarantined.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target: "op25b::overlay",
                        src = %o.src,
                        class = %rule.class,
                        source = "auto",
                        attempts = made,
                        duration_secs = rule.duration.as_secs(),
                        distinct_destinations = o.distinct_destinations,
                        "auto-quarantine: {} made {} blocked attempts within a minute: class {} for {} s",
                        o.src,
                        made,
                        rule.class,
                        rule.duration.as_secs()
                    );
                    *w = (now, sure);
                    moved.push(o.src);
                }
                Err(e) => tracing::error!("auto-quarantine of {}: {e}", o.src),
            }
        }
        self.windows.retain(|k, _| seen.contains(k));
        moved
    }
}
