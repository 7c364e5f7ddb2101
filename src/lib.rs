//! op25b: an Outbound Port 25 Blocking (OP25B) bump-in-the-wire appliance on AF_XDP.
//!
//! Layers (imports point one way: `config -> policy -> lpm`, `datapath -> classify ->
//! policy`):
//!
//! * [`lpm`]: longest-prefix-match tables, built off the hot path, read lock-free;
//! * [`policy`]: the compiled, immutable policy and the verdict function;
//! * [`config`]: YAML -> validated config -> compiled policy;
//! * [`clock`]: the process's one clock; [`topk`]: the top list of blocked sources
//!   (the workers record into it, the control plane merges it);
//! * [`datapath`]: UMEM, rings, workers, the XDP program and its maps (all `unsafe`);
//! * [`control`]: the control plane, in rooms by job (daemon, observe, overlay, export);
//! * [`offline`]: `op25b classify` on captures.
#![warn(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
// Functions read in one screen: at most 100 lines (clippy.toml), a table excepted with
// an `#[allow]` that says why. CI runs clippy with -D warnings.
#![warn(clippy::too_many_lines)]

pub mod classify;
pub mod clock;
pub mod config;
pub mod control;
pub mod datapath;
pub mod lpm;
pub mod offline;
pub mod policy;
pub mod topk;
