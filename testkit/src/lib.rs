//! op25b's test kit: everything tests, benches, fuzz seeds and the benchmark harness
//! share, kept out of the appliance binary.
//!
//! * [`fixtures`]: the golden frame table and the lab policy it is judged against;
//! * [`hostile`]: the hostile-frame catalogue (malformed, evasive, extreme frames);
//! * [`traffic`]: benchmark profiles, tagged frame templates, sink tallies, run verdicts;
//! * [`run`], [`port`]: the AF_XDP generator and sink loops and their socket;
//! * [`xdpgen`]: the generator's BPF_PROG_RUN live-frames engine (`gen --engine xdp`);
//! * [`xdpsink`]: the sink's XDP-program engine (`sink --engine xdp`);
//! * [`probe`]: which optional kernel facilities work here (`probe`, scripts/probe.sh);
//! * [`klookup`]: the benchmark's subscriber tables of any size (`prefixes`) and the
//!   per-frame cost of op25b's XDP program with them (`kernel-lookup`);
//! * `bpfobj`: what those two add to op25b's libbpf loader (`op25b::datapath::xdp::BpfObject`,
//!   the one both op25b and the test kit load their BPF objects with): error context,
//!   map value layouts.
//!
//! `port` (the AF_XDP socket, through xsk-rs) holds the test kit's only `unsafe`; none
//! of it ships in the appliance.
#![warn(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod bpfobj;
pub mod fixtures;
pub mod hostile;
pub mod klookup;
pub mod port;
pub mod probe;
pub mod run;
pub mod traffic;
pub mod xdpgen;
pub mod xdpsink;
