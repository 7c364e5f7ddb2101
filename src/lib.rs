//! op25b: an Outbound Port 25 Blocking (OP25B) bump-in-the-wire appliance on AF_XDP.
//!
//! Layers (imports point one way: `config -> policy -> lpm`, `datapath -> classify ->
//! policy`):
//!
//! * [`lpm`]: longest-prefix-match tables, built off the hot path, read lock-free;
//! * [`policy`]: the compiled, immutable policy and the verdict function;
//! * [`config`]: YAML -> validated config -> compiled policy.
#![warn(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod classify;
pub mod config;
pub mod control;
pub mod datapath;
pub mod lpm;
pub mod offline;
pub mod policy;
