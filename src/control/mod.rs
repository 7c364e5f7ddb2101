//! The control plane of `op25b`: everything that runs beside the workers and never
//! touches a frame. Four rooms, by job, each with a module doc of what it owns and who
//! may call it; imports run one way, down this list (`tests/offline/layers.rs` keeps it so):
//!
//! * [`daemon`]: `op25b run` itself: start, the main loop (supervise, every second,
//!   reloads, the counter line), shutdown and the final report; signals, systemd,
//!   logging, the pid file; `op25b reload`'s client. Only `main`/`cli` call it.
//! * [`observe`]: what operators and Prometheus read: the HTTP endpoint (/metrics,
//!   /status, /top), its rendering, and the clients of `op25b status` and `top`.
//! * [`overlay`]: the runtime overlay (per-subscriber classes set while op25b runs) and
//!   every writer of it: RADIUS accounting, the operator socket, auto-quarantine, the
//!   state file.
//! * [`export`]: the policy rendered for other engines: nftables (`op25b export-nft`)
//!   and `failure_mode: open`'s bridge fallback.
//!
//! Below them: `datapath` (workers, XDP), `config`, the core, [`crate::topk`] (the top
//! list both the workers and the control plane use) and [`crate::clock`].

pub mod daemon;
pub mod export;
pub mod observe;
pub mod overlay;
