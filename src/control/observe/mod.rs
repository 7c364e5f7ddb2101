//! Observation: what operators and Prometheus read of the running process.
//!
//! * this module: [`MetricsState`], what the endpoints read (the workers' and the XDP
//!   programs' counters, the policy cell, the reload status, the overlay, the RADIUS
//!   counters, the kernel's top list), the merged top list ([`top`]) and the operator
//!   socket's [`OperatorDesk`];
//! * [`http`]: the read-only endpoint on `control.listen` (`GET /metrics`, `GET /top`);
//! * [`schema`]: every metric declared once (name, help, type, labels, source), what
//!   /metrics renders and `op25b status` reads back; [`schema::Counts`], the one place
//!   the workers' and the XDP programs' counters are merged;
//! * [`metrics`]: the Prometheus text of `GET /metrics`;
//! * [`offenders`]: once a second, the kernel's drops into the top list and new
//!   offenders into the log;
//! * [`prometheus`], [`status`]: the clients of `op25b status` and `op25b top`.
//!
//! Who may call it: the daemon (which builds the state and runs the endpoint) and the
//! CLI (the clients). It reads the overlay and the datapath; nothing here changes
//! either (the reload trigger only raises the daemon's flag).

pub mod http;
pub mod metrics;
pub mod offenders;
pub mod prometheus;
pub mod schema;
pub mod status;

use crate::datapath::counters::WorkerCounters;
use crate::datapath::PolicyCell;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The outcome of reloads, for the operator socket's `reload_status` (which `op25b
/// reload` waits on) and the metrics.
#[derive(Clone, Debug)]
pub struct ReloadStatus {
    /// Reloads begun since start (SIGHUPs taken; several coalesce into one).
    pub started: u64,
    /// Reload attempts finished since start.
    pub attempts: u64,
    pub applied: u64,
    pub refused: u64,
    /// Unix time of the last attempt (start-up counts as the first success).
    pub last_at: u64,
    pub last_ok: bool,
    pub last_success_at: u64,
    /// What the last attempt did, or why it was refused.
    pub message: String,
    /// Restart-only settings that differ between the file and what runs.
    pub restart_pending: Vec<String>,
}

impl ReloadStatus {
    /// At start: the config in force loaded successfully now.
    pub fn at_start() -> Self {
        let now = crate::clock::unix_now();
        Self {
            started: 0,
            attempts: 0,
            applied: 0,
            refused: 0,
            last_at: now,
            last_ok: true,
            last_success_at: now,
            message: "configuration loaded at start".into(),
            restart_pending: Vec::new(),
        }
    }

    pub fn to_json(&self, generation: u64) -> serde_json::Value {
        serde_json::json!({
            "pid": std::process::id(),
            "started": self.started,
            "attempts": self.attempts,
            "applied": self.applied,
            "refused": self.refused,
            "last_at": self.last_at,
            "last_ok": self.last_ok,
            "last_success_at": self.last_success_at,
            "message": self.message,
            "restart_pending": self.restart_pending,
            "generation": generation,
        })
    }
}

/// What the endpoint reads.
pub struct MetricsState {
    pub counters: Vec<Arc<CachePadded<WorkerCounters>>>,
    pub policy: Arc<PolicyCell>,
    pub mode: String,
    /// The XDP programs' counters and the fast path's state.
    pub fast_path: Arc<crate::datapath::fast_path::FastPathView>,
    pub started: Instant,
    /// Unix time of the start.
    pub started_unix: f64,
    pub reload: Mutex<ReloadStatus>,
    /// The runtime overlay.
    pub overlay: Arc<crate::control::overlay::OverlayShared>,
    /// The RADIUS accounting listener's counters (zeros without `radius:`).
    pub radius: Arc<crate::control::overlay::radius::Counters>,
    /// `control.http_top`: serve `GET /top` on `control.listen` too.
    pub http_top: bool,
    /// The sources whose attempts the XDP program dropped (drained from its map by the
    /// control thread, [`crate::topk::KernelList`]), merged into [`top`].
    pub kernel_top: Mutex<Vec<crate::topk::TopEntry>>,
}

/// The reload status as JSON (the operator socket's `reload_status`).
pub fn reload_status_json(state: &MetricsState) -> serde_json::Value {
    let r = state
        .reload
        .lock()
        .map(|r| r.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    r.to_json(state.policy.generation())
}

/// The merged top-`n` list as JSON (`op25b top`; `GET /top` with `control.http_top`).
pub fn top_json(state: &MetricsState, n: usize) -> serde_json::Value {
    serde_json::json!({
        "generated_at": crate::clock::unix_now(),
        "workers": state.counters.len(),
        "slots_per_worker": crate::topk::WORKER_SLOTS,
        "kernel_slots": crate::topk::KERNEL_SLOTS,
        "offenders": top(state, n),
    })
}

/// The merged top-`n` sources of blocked outbound attempts over all workers and the
/// XDP program's drops.
pub fn top(state: &MetricsState, n: usize) -> Vec<crate::topk::Offender> {
    let mut lists: Vec<Vec<crate::topk::TopEntry>> = state
        .counters
        .iter()
        .map(|c| c.top.lock().map(|l| l.clone()).unwrap_or_default())
        .collect();
    lists.push(
        state
            .kernel_top
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone()),
    );
    crate::topk::merge(
        lists.iter().map(Vec::as_slice),
        |slot| state.policy.class_slot_name(slot),
        crate::clock::epoch(),
        n,
    )
}

/// Reload requests for the control thread, which runs every reload.
pub struct ReloadTrigger {
    /// Set to ask for a reload (SIGHUP sets the same flag).
    pub pending: Arc<AtomicBool>,
    /// The next reload may go past the reload guard (`op25b reload --force`).
    pub force: AtomicBool,
}

/// The operator socket's questions that are not the overlay's: reload requests and
/// status, and the top list.
pub struct OperatorDesk {
    pub metrics: Arc<MetricsState>,
    pub reload: ReloadTrigger,
}

impl crate::control::overlay::operator::Desk for OperatorDesk {
    fn request_reload(&self, force: bool) -> u64 {
        // Under the status lock, as the control thread begins a reload: the answer to
        // this request is attempt `started + 1`.
        let st = self
            .metrics
            .reload
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if force {
            self.reload.force.store(true, Ordering::SeqCst);
        }
        self.reload.pending.store(true, Ordering::SeqCst);
        st.started
    }

    fn reload_status(&self) -> serde_json::Value {
        reload_status_json(&self.metrics)
    }

    fn top(&self, n: usize) -> serde_json::Value {
        top_json(&self.metrics, n)
    }
}
