//! `op25b-bench gen|sink|report|prefixes|kernel-lookup|probe`: the benchmark generator, the
//! verifying sink, the report that judges a run, the benchmark's subscriber tables of any
//! size, the per-frame cost of op25b's XDP program with them, and which optional kernel
//! facilities work here. Part of the test kit: it injects raw frames, so it never ships
//! in the appliance package.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use op25b::outln;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use op25b::config;
use op25b::datapath::settings::XdpMode;
use op25b_testkit::traffic::{self as bench, GenReport, Profile, SinkReport};
use op25b_testkit::{klookup, probe, run, xdpgen, xdpsink};

/// Exit code of `report` when the run's verdict failed (leaks, or loss over the limit).
const EXIT_BENCH_FAILED: u8 = 3;
/// Exit code of a command line that does not parse (sysexits EX_USAGE, as `op25b`).
const EXIT_USAGE: u8 = 64;

/// The op25b benchmark harness: AF_XDP traffic generator, verifying sink, run report.
#[derive(Parser, Debug)]
#[command(name = "op25b-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: BenchCommand,
}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(c) => bench(c.cmd),
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line, as `op25b` prints it.
            eprintln!(
                "{} (see `op25b-bench --help`)",
                op25b::control::daemon::stdout::clap_error_line(&e)
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// AF_XDP traffic generator: sends tagged frames from a profile, as fast as the
    /// interface takes them or at --rate, for --duration or --count.
    ///
    /// Each frame carries a sequence number and the verdict the config's policy gives
    /// it, so `bench sink` can tell leaks from losses. Prints a JSON report.
    Gen {
        /// Interface to send on (queues 0..threads).
        #[arg(short, long)]
        interface: String,
        /// op25b config whose policy judges the frames (the DUT's config).
        #[arg(short, long)]
        config: PathBuf,
        /// Traffic profile (YAML; see configs/bench-profile.yaml).
        #[arg(short, long)]
        profile: PathBuf,
        /// Seconds to send.
        #[arg(short, long, default_value_t = 10.0)]
        duration: f64,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Frames per second (total); default: as fast as possible.
        #[arg(long)]
        rate: Option<u64>,
        /// Sending threads (one per TX queue).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Pin the threads to these cores (comma-separated).
        #[arg(long, value_delimiter = ',')]
        cores: Vec<usize>,
        /// Frames per TX batch (xdp engine: per BPF_PROG_RUN flush, at most 256).
        #[arg(long, default_value_t = 64)]
        burst: usize,
        /// How frames are sent: afxdp (an AF_XDP copy-mode socket, backpressured by a
        /// full peer ring) or xdp (made and sent in the kernel by BPF_PROG_RUN live
        /// frames, kernel >= 5.18: far cheaper per frame, no backpressure: what the
        /// peer's ring cannot take is dropped and counted as the generator link's loss).
        #[arg(long, value_enum, default_value_t = EngineArg::Afxdp)]
        engine: EngineArg,
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        xdp_mode: ModeArg,
        /// Frames per transmit kick in copy mode (kernel >= 6.17); above 256 a veth
        /// peer drops frames.
        #[arg(long, default_value_t = 128)]
        tx_budget: u32,
        /// Also write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Verifying sink: counts tagged frames per expected verdict until --duration, or
    /// --idle seconds without a frame after the first one. Prints a JSON report.
    Sink {
        #[arg(short, long)]
        interface: String,
        /// afxdp: an AF_XDP socket per queue, frames checked in userspace; xdp: an XDP
        /// program checks and drops them in the receive path (testkit/bpf/sink.c), which
        /// leaves the sink's CPU to the generator (no --config oracle, no --dump-foreign).
        #[arg(long, value_enum, default_value_t = EngineArg::Afxdp)]
        engine: EngineArg,
        /// Listen on queues 0..N (one thread each).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Longest time to listen, seconds.
        #[arg(short, long, default_value_t = 30.0)]
        duration: f64,
        /// Stop after this many seconds without frames (once frames have arrived).
        #[arg(long, default_value_t = 1.0)]
        idle: f64,
        /// Pin to this core.
        #[arg(long)]
        core: Option<usize>,
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        xdp_mode: ModeArg,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print the first N untagged ("foreign") frames as hex on stderr.
        #[arg(long, default_value_t = 0)]
        dump_foreign: u64,
        /// Create this file once the socket is bound (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Also check every frame, tagged or not, against this config's policy with
        /// an independent parser: a TCP segment the policy blocks is an oracle leak.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Which optional kernel facilities work on --interface (scripts/probe.sh runs it in
    /// a namespace of its own): BPF_PROG_RUN live frames (`gen --engine xdp`) and the
    /// devices' XDP features. Prints shell assignments (`live_frames=yes|no`,
    /// `live_frames_why='...'`, `xdp_features=yes|no`); exit 1 on a fault that is not a
    /// missing facility (the generator does not load, no such interface).
    Probe {
        /// Interface to probe (a veth: nothing is sent).
        #[arg(short, long)]
        interface: String,
    },
    /// Compares a generator report and a sink report: exit 0 when no blocked frame
    /// leaked and the loss is within --max-loss, else 3.
    Report {
        #[arg(long)]
        gen: PathBuf,
        #[arg(long)]
        sink: PathBuf,
        /// op25b's final report (`run --report`) from the same run: adds the DUT's own
        /// drop counters to the loss breakdown (DUT socket, DUT -> sink link).
        #[arg(long)]
        dut: Option<PathBuf>,
        /// Allowed share of passing frames lost by the DUT (0..1).
        #[arg(long, default_value_t = 0.0)]
        max_loss: f64,
        /// Fail on any lost passing frame, wherever it was lost (tester side too).
        #[arg(long)]
        strict: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes a subscriber table of --count prefixes for the benchmark's dynamic class
    /// (the layout of configs/prefixes/bench-dynamic.txt, scaled: scripts/bench.sh makes
    /// its 1M-prefix policy with it).
    Prefixes {
        /// Prefixes in the table (2..=1048578).
        #[arg(long)]
        count: usize,
        /// The file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// What op25b's XDP program costs per frame with a policy of N subscriber prefixes in
    /// its BPF LPM tries: TCP/25 SYNs that hit and miss, IPv4 and IPv6, in mode kernel and
    /// in mode unblockable (no lookup), through BPF_PROG_TEST_RUN (the kernel's mean ns
    /// per run; nothing is sent). Needs root. Prints a table; --report writes JSON.
    KernelLookup {
        /// Table sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 1_000_000])]
        prefixes: Vec<usize>,
        /// Runs per BPF_PROG_TEST_RUN call.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Calls per frame and mode (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Also write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Afxdp,
    Xdp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Auto,
    Native,
    Generic,
}

impl From<ModeArg> for XdpMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => XdpMode::Auto,
            ModeArg::Native => XdpMode::Native,
            ModeArg::Generic => XdpMode::Generic,
        }
    }
}

fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

/// Prints a generator or sink report as JSON (and writes it to `path`), or the error.
fn emit<T: serde::Serialize>(r: Result<T, run::BenchError>, path: Option<&Path>) -> ExitCode {
    let r = match r {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let json = serde_json::to_string_pretty(&r).expect("json");
    outln!("{json}");
    if let Some(p) = path {
        if let Err(e) = std::fs::write(p, format!("{json}\n")) {
            return fail(format!("cannot write {}: {e}", p.display()));
        }
    }
    ExitCode::SUCCESS
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

fn bench(cmd: BenchCommand) -> ExitCode {
    op25b::datapath::xsk::quiet_libbpf(false);
    match cmd {
        BenchCommand::Gen {
            interface,
            config,
            profile,
            duration,
            count,
            rate,
            threads,
            cores,
            burst,
            engine,
            xdp_mode,
            tx_budget,
            report,
        } => {
            let loaded = match config::load(&config) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            let prof = match Profile::load(&profile) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            if !(1..=64).contains(&threads) {
                return fail(format!("--threads {threads} is outside 1..64"));
            }
            if !(1..=1024).contains(&burst) {
                return fail(format!("--burst {burst} is outside 1..1024"));
            }
            if !(duration > 0.0 && duration.is_finite()) {
                return fail(format!(
                    "--duration {duration} must be a positive number of seconds"
                ));
            }
            if rate == Some(0) {
                return fail("--rate 0 would send nothing; leave it out for full speed");
            }
            let set = Arc::new(bench::templates(&prof, &loaded.policy));
            let (pass, block) = set.counts();
            eprintln!(
                "op25b bench gen: {} templates ({pass} pass, {block} block) from {}, {threads} thread(s) on {interface} ({engine:?} engine), {duration} s{}",
                set.templates.len(),
                profile.display(),
                rate.map(|r| format!(", {r} frames/s")).unwrap_or_default()
            );
            let opts = run::GenOptions {
                interface,
                threads,
                cores,
                duration: Duration::from_secs_f64(duration),
                count,
                rate,
                burst,
                xdp_mode: xdp_mode.into(),
                profile_name: profile.display().to_string(),
                tx_budget,
            };
            let r = match engine {
                EngineArg::Afxdp => run::generate(&opts, set, stop_on_signals()),
                EngineArg::Xdp => xdpgen::report(&opts, &set, &stop_on_signals()),
            };
            emit(r, report.as_deref())
        }
        BenchCommand::Sink {
            interface,
            engine,
            queues,
            duration,
            idle,
            core,
            xdp_mode,
            report,
            ready_file,
            dump_foreign,
            config,
        } => {
            if !(1..=64).contains(&queues) {
                return fail(format!("--queues {queues} is outside 1..64"));
            }
            if !(duration > 0.0 && idle > 0.0) {
                return fail("--duration and --idle must be positive");
            }
            let opts = run::SinkOptions {
                interface,
                queues,
                duration: Duration::from_secs_f64(duration),
                idle: Duration::from_secs_f64(idle),
                xdp_mode: xdp_mode.into(),
                core,
                dump_foreign,
                oracle: match config {
                    Some(c) => match op25b::config::load(&c) {
                        Ok(l) => Some(std::sync::Arc::new(l.policy)),
                        Err(e) => return fail(e.to_string()),
                    },
                    None => None,
                },
            };
            let stop = stop_on_signals();
            let mut ready_err = None;
            let ready = || {
                if let Some(f) = &ready_file {
                    if let Err(e) = std::fs::write(f, b"ready\n") {
                        ready_err = Some(format!("cannot write {}: {e}", f.display()));
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            };
            let r = match engine {
                EngineArg::Afxdp => run::sink(&opts, &stop, ready),
                EngineArg::Xdp => xdpsink::sink(&opts, &stop, ready),
            };
            if let Some(e) = ready_err {
                return fail(e);
            }
            emit(r, report.as_deref())
        }
        BenchCommand::Prefixes { count, out } => {
            let text = match klookup::prefix_file(count) {
                Ok(t) => t,
                Err(e) => return fail(format!("--count: {e}")),
            };
            if let Err(e) = std::fs::write(&out, text) {
                return fail(format!("cannot write {}: {e}", out.display()));
            }
            ExitCode::SUCCESS
        }
        BenchCommand::KernelLookup {
            prefixes,
            repeat,
            rounds,
            report,
        } => {
            if repeat == 0 || rounds == 0 {
                return fail("--repeat and --rounds must be at least 1");
            }
            let r = match klookup::kernel_lookup(&prefixes, repeat, rounds) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            for t in &r.tables {
                outln!(
                    "{} prefixes: policy built in {} ms, written into the XDP program's maps in {} ms",
                    t.prefixes,
                    t.build_ms,
                    t.publish_ms
                );
            }
            outln!(
                "{:>9} {:<12} {:<18} {:<9} {:>6} {:>14}",
                "prefixes",
                "mode",
                "frame",
                "action",
                "ns",
                "(min-max)"
            );
            for row in &r.rows {
                outln!(
                    "{:>9} {:<12} {:<18} {:<9} {:>6} {:>14}",
                    row.prefixes,
                    row.mode,
                    row.frame,
                    row.action,
                    row.ns,
                    format!("({}-{})", row.ns_min, row.ns_max)
                );
            }
            if let Some(p) = report {
                let json = serde_json::to_string_pretty(&r).expect("json");
                if let Err(e) = std::fs::write(&p, format!("{json}\n")) {
                    return fail(format!("cannot write {}: {e}", p.display()));
                }
            }
            ExitCode::SUCCESS
        }
        BenchCommand::Probe { interface } => {
            let quote = |t: &str| format!("'{}'", t.replace('\'', "'\\''"));
            match probe::live_frames(&interface) {
                Ok(Ok(())) => outln!("live_frames=yes"),
                Ok(Err(why)) => {
                    outln!("live_frames=no");
                    outln!("live_frames_why={}", quote(&why));
                }
                Err(e) => return fail(format!("probing live frames on {interface}: {e}")),
            }
            match probe::xdp_features(&interface) {
                Ok(yes) => outln!("xdp_features={}", if yes { "yes" } else { "no" }),
                Err(e) => return fail(format!("probing XDP features on {interface}: {e}")),
            }
            ExitCode::SUCCESS
        }
        BenchCommand::Report {
            gen,
            sink,
            dut,
            max_loss,
            strict,
            json,
        } => {
            let read = |p: &Path| -> Result<String, String> {
                std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            let g: GenReport = match read(&gen).and_then(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| format!("{} is not a generator report: {e}", gen.display()))
            }) {
                Ok(g) => g,
                Err(e) => return fail(e),
            };
            let s: SinkReport = match read(&sink).and_then(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| format!("{} is not a sink report: {e}", sink.display()))
            }) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let d = match &dut {
                None => None,
                Some(p) => match read(p).and_then(|t| {
                    serde_json::from_str::<serde_json::Value>(&t)
                        .map_err(|e| format!("{} is not an op25b report: {e}", p.display()))
                        .and_then(|v| {
                            bench::DutDrops::from_report(&v)
                                .map_err(|e| format!("{}: {e}", p.display()))
                        })
                }) {
                    Ok(d) => Some(d),
                    Err(e) => return fail(e),
                },
            };
            let mut v = bench::verdict(&g, &s, d, max_loss);
            if strict && v.lost > 0 && v.loss.lost_by_dut == 0 {
                v.problems.push(format!(
                    "{} passing frames lost outside the DUT (--strict: see the breakdown)",
                    v.lost
                ));
                v.ok = false;
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                let row = |what: &str, value: String| outln!("{what:<28} {value:>14}");
                let opt = |x: Option<u64>| x.map_or("-".to_string(), |n| n.to_string());
                let l = &v.loss;
                row("sent (generator)", v.sent.to_string());
                row("  should pass", v.sent_pass.to_string());
                row("  should be blocked", v.sent_block.to_string());
                row("received (sink)", v.received.to_string());
                row("  passed", v.passed.to_string());
                row("  LEAKED (blocked, arrived)", v.leaked.to_string());
                row("  foreign (untagged)", v.foreign.to_string());
                // The share of all passing frames; `loss_ratio` is the DUT's own share.
                let share = if v.sent_pass == 0 {
                    0.0
                } else {
                    v.lost.max(0) as f64 / v.sent_pass as f64
                };
                outln!(
                    "{:<28} {:>14} ({:.4}% of the passing frames; by the DUT {:.4}%)",
                    "lost (should pass)",
                    v.lost,
                    share * 100.0,
                    v.loss_ratio * 100.0
                );
                row("  generator link (tx_drop)", l.generator_link.to_string());
                row("  DUT socket (kernel)", opt(l.dut_socket));
                row("  DUT -> sink link (tx_drop)", opt(l.dut_to_sink_link));
                row("  sink link (rx_drop)", l.sink_link.to_string());
                row("  sink socket (kernel)", l.sink_socket.to_string());
                row("  lost by the DUT", l.lost_by_dut.to_string());
                row("out of order", v.out_of_order.to_string());
                row("generator Mpps", format!("{:.3}", v.gen_mpps));
                row("sink Mpps", format!("{:.3}", v.sink_mpps));
                row(
                    "latency us p50/p99/p99.9/max",
                    v.latency_us.map_or("-".into(), |l| {
                        format!("{}/{}/{}/{}", l.p50, l.p99, l.p999, l.max)
                    }),
                );
                row("result", if v.ok { "OK" } else { "FAIL" }.to_string());
            }
            for p in &v.problems {
                eprintln!("problem: {p}");
            }
            if v.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_BENCH_FAILED)
            }
        }
    }
}
