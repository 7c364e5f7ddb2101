//! The abuse desk's once-a-second work on the control thread: the sources the XDP
//! program dropped are drained from its map into the kernel's top list
//! ([`KernelOffenders`]), and each new offender of the merged list is logged once
//! ([`OffenderLog`], target `op25b::offender`).

use crate::topk;
use std::time::{Duration, Instant};

/// Takes the sources of the attempts the XDP program dropped out of its map (at most
/// [`topk::DRAIN_PER_SECOND`]) into `list`, and hands the list to the metrics endpoint
/// for [`super::top`]. About once a second, from the control thread.
pub struct KernelOffenders {
    list: topk::KernelList,
    drained: Vec<crate::datapath::kernel::KernelOffender>,
    /// When a failed drain was last logged.
    logged: Option<Instant>,
}

impl Default for KernelOffenders {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelOffenders {
    pub fn new() -> Self {
        Self {
            list: topk::KernelList::with_start(crate::datapath::clock::zero_ns()),
            drained: Vec::with_capacity(topk::DRAIN_PER_SECOND),
            logged: None,
        }
    }

    pub fn drain(
        &mut self,
        reader: &mut crate::datapath::kernel::OffenderReader,
        out: &std::sync::Mutex<Vec<topk::TopEntry>>,
    ) {
        self.drained.clear();
        if let Err(e) = reader.drain(topk::DRAIN_PER_SECOND, &mut self.drained) {
            if self
                .logged
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                self.logged = Some(Instant::now());
                tracing::error!("cannot read the XDP program's offenders map: {e}; the attempts it drops are missing from op25b top and auto-quarantine until a read succeeds (retried every second)");
            }
        }
        if self.drained.is_empty() {
            return;
        }
        self.list.absorb(&self.drained);
        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
        o.clear();
        o.extend_from_slice(self.list.entries());
    }
}

/// How many of the top sources are checked for new offenders each second.
pub const OFFENDER_SCAN: usize = 50;
/// Attempts from which a source is logged as an offender.
const OFFENDER_THRESHOLD: u64 = 10;
/// At most this many offender events per minute; the rest are summarised.
const OFFENDER_EVENTS_PER_MINUTE: u32 = 60;

/// Logs each new offender once (a structured `tracing` event, target
/// `op25b::offender`), at most [`OFFENDER_EVENTS_PER_MINUTE`].
#[derive(Default)]
pub struct OffenderLog {
    reported: std::collections::HashSet<std::net::IpAddr>,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl OffenderLog {
    pub fn check(&mut self, top: &[topk::Offender]) {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60))
        {
            if self.suppressed > 0 {
                tracing::warn!(
                    target: "op25b::offender",
                    suppressed = self.suppressed,
                    "{} more new offenders in the last minute were not logged (rate limit); see `op25b top`",
                    self.suppressed
                );
            }
            self.window_start = Some(now);
            self.in_window = 0;
            self.suppressed = 0;
        }
        // Bounded memory: forget who was reported once the set is large.
        if self.reported.len() > 100_000 {
            self.reported.clear();
        }
        for o in top {
            if o.attempts < OFFENDER_THRESHOLD || self.reported.contains(&o.src) {
                continue;
            }
            self.reported.insert(o.src);
            if self.in_window >= OFFENDER_EVENTS_PER_MINUTE {
                self.suppressed += 1;
                continue;
            }
            self.in_window += 1;
            tracing::warn!(
                target: "op25b::offender",
                src = %o.src,
                class = o.class.as_deref().unwrap_or("-"),
                attempts = o.attempts,
                distinct_destinations = o.distinct_destinations,
                dst_sample = %o.dst_sample,
                "new offender: {} made {} blocked SMTP attempts",
                o.src,
                o.attempts
            );
        }
    }
}
