//! The integration tests that need no lab, in one test binary: each binary links op25b
//! with thin LTO in one codegen unit (the release profile), which cost 8-18 s of CPU per
//! binary when each file was its own (scripts/test.sh's build step). Each module is what
//! its file says; `cargo test --release --test offline MODULE::` runs one of them.
//! systemd_notify stays a binary of its own: its watchdog timing must not share the CPU
//! with the property tests here.

mod classify_cli;
mod classify_golden;
mod cli_errors;
mod config_errors;
mod config_roundtrip;
mod fragments;
mod fuzz_regressions;
mod layers;
mod overlay_oracle;
mod reply_builders;
mod reply_tshark;
