//! The generator's second engine (`op25b-bench gen --engine xdp`): frames made in the
//! kernel by BPF_PROG_RUN in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, kernel >=
//! 5.18) running `testkit/bpf/gen.c`, which writes the profile's templates one after the
//! other, stamps their tags and transmits them out of the generator's interface with
//! XDP_TX (ndo_xdp_xmit into the veth peer's ring).
//!
//! Why: an AF_XDP copy-mode send builds an skb per frame (~1 us of the tester's CPU),
//! so the AF_XDP generator cannot offer a DUT on the other CPU more than ~1.1x its
//! saturation rate; this engine costs a fraction of that, which makes the 2x and 4x
//! points of the overload curve reachable. Its frames also reach the DUT's XDP program as
//! a NIC's would: as XDP buffers with headroom, not as skbs the veth must copy first.
//!
//! There is no backpressure: what the peer's 256-frame ring cannot take is dropped by the
//! kernel and counted on the generator's interface (`ethtool -S`: the veth's
//! `xdp_xmit_errors`), reported here as `link_dropped` (lost before reaching the DUT),
//! like a NIC whose receive ring is full.

use crate::bpfobj::{context, ifindex, Fields};
use crate::run::{counter_delta, BenchError, GenOptions, GenThreadResult};
use crate::traffic::{GenReport, Tag, TemplateSet, TAG_LEN};
use op25b::datapath::xdp::{ktime_ns, BpfProgram, Map, TestRun};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The compiled program (testkit/build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gen.o"));

// Shared with testkit/bpf/gen.c: change both together.
/// Longest frame the engine sends (a live frame lives in one 4 KiB page).
pub const MAX_FRAME: usize = 3072;
/// Shortest (an Ethernet header).
pub const MIN_FRAME: usize = 14;
const FLAG_TAGGED: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct TemplateValue {
    len: u32,
    flags: u32,
    data: [u8; MAX_FRAME],
}

impl TemplateValue {
    /// The map value (`struct template` in gen.c).
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(std::mem::size_of::<TemplateValue>());
        b.extend(self.len.to_ne_bytes());
        b.extend(self.flags.to_ne_bytes());
        b.extend(self.data);
        b
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct State {
    seq: u64,
    count: u32,
    stream: u32,
    errors: u64,
    limit: u64,
    stop_ns: u64,
    interval_ns: u64,
    next_ns: u64,
    max_lag_ns: u64,
    idle: u64,
    first_ns: u64,
    last_ns: u64,
    group: u32,
    credit: u32,
    gate_ns: u64,
    restarts: u64,
}

impl State {
    /// The map value (`struct state` in gen.c: the u32 pairs leave no padding).
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(std::mem::size_of::<State>());
        b.extend(self.seq.to_ne_bytes());
        b.extend(self.count.to_ne_bytes());
        b.extend(self.stream.to_ne_bytes());
        for w in [
            self.errors,
            self.limit,
            self.stop_ns,
            self.interval_ns,
            self.next_ns,
            self.max_lag_ns,
            self.idle,
            self.first_ns,
            self.last_ns,
        ] {
            b.extend(w.to_ne_bytes());
        }
        b.extend(self.group.to_ne_bytes());
        b.extend(self.credit.to_ne_bytes());
        b.extend(self.gate_ns.to_ne_bytes());
        b.extend(self.restarts.to_ne_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> State {
        let mut f = Fields(b);
        State {
            seq: f.u64(),
            count: f.u32(),
            stream: f.u32(),
            errors: f.u64(),
            limit: f.u64(),
            stop_ns: f.u64(),
            interval_ns: f.u64(),
            next_ns: f.u64(),
            max_lag_ns: f.u64(),
            idle: f.u64(),
            first_ns: f.u64(),
            last_ns: f.u64(),
            group: f.u32(),
            credit: f.u32(),
            gate_ns: f.u64(),
            restarts: f.u64(),
        }
    }

    /// Program runs so far, whatever they did.
    fn runs(&self) -> u64 {
        self.seq + self.idle + self.errors
    }
}

/// Program runs of the first BPF_PROG_RUN call, which measures how many runs a second
/// takes. Each call ends with a page-pool teardown that waits for an RCU grace period
/// (20-40 ms without a frame, measured here), so the next call covers the rest of the
/// run: a run of N seconds has two or three such gaps, each visible as the sink's
/// `max_gap_ms`. The program paces itself and idles past the deadline.
const FIRST_CALL_RUNS: u64 = 1 << 20;
/// A schedule further behind than this restarts from now: the larger of this many
/// frames and MAX_LAG_NS. Behind by less, the program catches up at twice the set rate
/// (bursts of --burst frames at most every half slot), so a generator whose CPU was
/// taken for a moment (the sink's receive work shares it) still offers the set rate,
/// without flooding the DUT's 256-frame veth ring with the backlog at once.
const MAX_LAG_FRAMES: u64 = 128;
const MAX_LAG_NS: u64 = 1_000_000;

/// The loaded program and its two maps.
struct GenProgram {
    prog: BpfProgram,
    templates: Map,
    state: Map,
}

impl GenProgram {
    fn load(templates: u32) -> io::Result<GenProgram> {
        let obj = crate::bpfobj::load(OBJECT, "op25b_gen", &[("templates", templates)])?;
        let p = GenProgram {
            prog: obj.program("op25b_gen")?,
            templates: obj.map("templates")?,
            state: obj.map("state")?,
        };
        crate::bpfobj::value_size(&p.templates, std::mem::size_of::<TemplateValue>())?;
        crate::bpfobj::value_size(&p.state, std::mem::size_of::<State>())?;
        Ok(p)
    }

    fn put_template(&self, idx: u32, v: &TemplateValue) -> io::Result<()> {
        self.templates
            .update(&idx.to_ne_bytes(), &v.encode())
            .map_err(context("writing a template"))
    }

    fn put_state(&self, s: &State) -> io::Result<()> {
        self.state
            .update(&0u32.to_ne_bytes(), &s.encode())
            .map_err(context("writing the generator state"))
    }

    fn state(&self) -> io::Result<State> {
        let mut b = [0u8; std::mem::size_of::<State>()];
        self.state
            .lookup(&0u32.to_ne_bytes(), &mut b)
            .map_err(context("reading the generator state"))?;
        Ok(State::from_bytes(&b))
    }

    /// Runs the program `repeat` times in live-frames mode with `frame` as the initial
    /// frame, as if received on `ifindex` queue 0 (XDP_TX then sends out of it).
    fn run(&self, ifindex: u32, frame: &[u8], repeat: u32, batch: u32) -> io::Result<()> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let ctx: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        self.prog
            .test_run(&TestRun {
                frame,
                ctx: Some(&ctx),
                repeat,
                live_frames: true,
                batch,
            })
            .map_err(context("BPF_PROG_RUN (live frames)"))?;
        Ok(())
    }
}

/// One BPF_PROG_RUN call in live-frames mode that sends nothing (no template: the
/// program drops its frame), as if received on `ifindex`: the probe of
/// [`crate::probe::live_frames`]. The outer error: the program did not load; the inner
/// one: the call's.
pub(crate) fn run_nothing(ifindex: u32) -> io::Result<io::Result<()>> {
    let prog = GenProgram::load(1)?;
    prog.put_state(&State::default())?;
    Ok(prog.run(ifindex, &[0u8; 64], 1, 1))
}

/// Frames the interface's driver failed to transmit by XDP: for a veth, frames the
/// peer's ring could not take (`ethtool -S`: `*xdp_xmit_err*`), summed over queues.
/// `None` when ethtool is missing or the driver has no such counter.
pub fn xdp_xmit_errors(interface: &str) -> Option<u64> {
    let out = std::process::Command::new("ethtool")
        .args(["-S", interface])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = false;
    let mut sum = 0u64;
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let k = k.trim();
        if k.starts_with("tx_queue_") && k.contains("xdp_xmit_err") {
            found = true;
            sum += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    found.then_some(sum)
}

/// The BPF engine's version of [`crate::run::generate`]: one thread, on `opts.cores[0]`
/// if given.
fn generate(
    opts: &GenOptions,
    set: &TemplateSet,
    stop: &AtomicBool,
) -> Result<(GenThreadResult, f64, u64, u64), BenchError> {
    let io = |what: &'static str| BenchError::io(what, &opts.interface);
    if opts.threads != 1 {
        return Err(BenchError::Thread(format!(
            "--engine xdp runs one thread (it is not the bottleneck); got --threads {}",
            opts.threads
        )));
    }
    let n = set.templates.len();
    if n == 0 {
        return Err(BenchError::Thread("the profile made no templates".into()));
    }
    if let Some(t) = set
        .templates
        .iter()
        .find(|t| !(MIN_FRAME..=MAX_FRAME).contains(&t.frame.len()))
    {
        return Err(BenchError::Thread(format!(
            "--engine xdp sends frames of {MIN_FRAME}..{MAX_FRAME} bytes; the profile has one of {} (lower max_frame, or use --engine afxdp)",
            t.frame.len()
        )));
    }
    if let Some(c) = opts.cores.first() {
        core_affinity::set_for_current(core_affinity::CoreId { id: *c });
    }
    let ifi = ifindex(&opts.interface).map_err(io("cannot resolve the interface"))?;
    let prog = GenProgram::load(n as u32).map_err(io("cannot load the generator"))?;
    let mut value = Box::new(TemplateValue {
        len: 0,
        flags: 0,
        data: [0; MAX_FRAME],
    });
    for (i, t) in set.templates.iter().enumerate() {
        let len = t.frame.len();
        value.data[..len].copy_from_slice(&t.frame);
        value.len = len as u32;
        value.flags = 0;
        if t.tagged {
            // Magic and the verdict bit; the program writes stream, sequence, time and
            // the checksum word per frame.
            let fixed = Tag {
                expect: t.expect,
                stream: 0,
                seq: 0,
                sent_us: 0,
            }
            .encode();
            value.data[len - TAG_LEN..len].copy_from_slice(&fixed);
            value.flags = FLAG_TAGGED;
        }
        prog.put_template(i as u32, &value)
            .map_err(io("cannot load the templates"))?;
    }
    let largest = set
        .templates
        .iter()
        .map(|t| t.frame.len())
        .max()
        .unwrap_or(64);
    let frame = vec![0u8; largest];
    let xmit_err_before = xdp_xmit_errors(&opts.interface);
    let batch = opts.burst.clamp(1, 256) as u32;
    let interval_ns = opts.rate.map_or(0, |r| (1e9 / r as f64).max(1.0) as u64);
    let start = Instant::now();
    let start_ns = ktime_ns();
    prog.put_state(&State {
        count: n as u32,
        limit: opts.count.unwrap_or(u64::MAX),
        stop_ns: start_ns + opts.duration.as_nanos() as u64,
        interval_ns,
        next_ns: start_ns,
        max_lag_ns: (interval_ns * MAX_LAG_FRAMES).max(MAX_LAG_NS),
        group: batch,
        ..State::default()
    })
    .map_err(io("cannot set the generator up"))?;
    let deadline = start + opts.duration;
    let mut runs = FIRST_CALL_RUNS;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || now + Duration::from_millis(2) >= deadline {
            break;
        }
        let before = prog
            .state()
            .map_err(io("cannot read the generator state"))?;
        let t0 = Instant::now();
        match prog.run(ifi, &frame, runs.min(i32::MAX as u64) as u32, batch) {
            Ok(()) => {}
            // A signal ends the call early (SIGINT/SIGTERM set `stop`).
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(io("the generator's BPF_PROG_RUN failed")(e)),
        }
        let st = prog
            .state()
            .map_err(io("cannot read the generator state"))?;
        if opts.count.is_some_and(|c| st.seq >= c) {
            break;
        }
        // Runs per second in that call (its teardown included) -> enough runs to reach
        // the deadline in one more call.
        let per_s = (st.runs() - before.runs()) as f64 / t0.elapsed().as_secs_f64().max(1e-3);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        runs = ((per_s * left) as u64).max(1 << 12);
    }
    let st = prog
        .state()
        .map_err(io("cannot read the generator state"))?;
    if st.errors > 0 {
        return Err(BenchError::Thread(format!(
            "the generator's XDP program could not build {} frames (template or frame size)",
            st.errors
        )));
    }
    // Template i was sent once per full cycle, plus once more if i < seq % n.
    let (cycles, rest) = (st.seq / n as u64, (st.seq % n as u64) as usize);
    // From the first frame to the last one (the calls' set-up and idle tail left out).
    let seconds = if st.seq > 1 {
        (st.last_ns - st.first_ns) as f64 / 1e9
    } else {
        start.elapsed().as_secs_f64()
    };
    let res = GenThreadResult {
        unsent: 0,
        per_template: (0..n).map(|i| cycles + u64::from(i < rest)).collect(),
        mode: "xdp-live".into(),
    };
    let link_dropped = counter_delta(xmit_err_before, xdp_xmit_errors(&opts.interface));
    Ok((res, seconds, link_dropped, st.restarts))
}

/// The report for a run of this engine (same shape as the AF_XDP engine's).
pub fn report(
    opts: &GenOptions,
    set: &TemplateSet,
    stop: &AtomicBool,
) -> Result<GenReport, BenchError> {
    let (res, seconds, link_dropped, restarts) = generate(opts, set, stop)?;
    let mut report = crate::run::gen_report(opts, set, &res, seconds, link_dropped);
    report.schedule_restarts = restarts;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_layout_matches_the_program() {
        // struct template { __u32 len; __u32 flags; __u8 data[MAX_FRAME]; }
        assert_eq!(std::mem::size_of::<TemplateValue>(), 8 + MAX_FRAME);
        // struct state in testkit/bpf/gen.c: 12 u64 and 4 u32 fields
        assert_eq!(std::mem::size_of::<State>(), 112);
    }
}
