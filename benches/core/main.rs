//! The core's micro-benchmarks, one binary (each links op25b with thin LTO in one
//! codegen unit: one binary instead of four saves the suite's build minutes):
//!
//! * [`lpm`]: LPM lookups beside `prefix-trie` and `ip_network_table`
//!   (`cargo bench --bench core -- lpm`);
//! * [`classify`]: the classifier per frame (`-- classify`);
//! * [`worker`]: the worker loop without a NIC (`-- worker`);
//! * [`overlay`]: the runtime overlay (`-- class_lookup`, `-- overlay`).
//!
//! Criterion takes a filter after `--`; `-- --quick` for a short run.

mod classify;
mod lpm;
mod overlay;
mod worker;

criterion::criterion_main!(
    lpm::benches,
    classify::benches,
    worker::benches,
    overlay::benches
);
