//! The control plane of `op25b run`: logging, pid file, signals, the periodic counter
//! line, shutdown and the final report. It never touches frames.
//!
//! * [`fallback`]: `failure_mode: open` (a Linux bridge and nftables, via `ip`, `nft`);
//! * [`nft`]: the policy rendered as an nftables rule set (fallback, `export-nft`);
//! * [`topk`]: the space-saving top list of blocked sources (`op25b top`, auto-quarantine);
//! * [`metrics`], [`status`]: the control endpoint and its clients;
//! * [`systemd`], [`logging`], [`stdout`]: service manager, journal, report;
//! * [`overlay`], [`operator`], [`radius`]: per-subscriber classes at runtime.

use crate::config::{self, Config, FailureMode, LogLevel};
use crate::datapath::counters::{Counter, Snapshot, WorkerCounters};
use crate::datapath::io::Side;
use crate::datapath::{self, PolicyCell};
use crossbeam_utils::CachePadded;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod fallback;
pub mod logging;
pub mod metrics;
pub mod nft;
pub mod operator;
pub mod overlay;
pub mod prometheus;
pub mod radius;
pub mod status;
pub mod stdout;
pub mod systemd;
pub mod topk;

/// Why `op25b run` stopped with an error (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Start(#[from] datapath::StartError),
    #[error("pid file {path}: another op25b is running as pid {pid} (stop it first)")]
    AlreadyRunning { path: PathBuf, pid: u32 },
    #[error("pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cleanup: {0}")]
    Cleanup(#[from] datapath::nic::NicError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("report file {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a worker stopped unexpectedly; see the log above")]
    WorkerDied,
    #[error("control endpoint thread: {0}")]
    Listen(std::io::Error),
    // The message carries the cause (no `#[source]`: a report printing the error chain
    // would show it twice).
    #[error("reload refused: {0}")]
    ReloadConfig(config::ConfigError),
    #[error("reload refused: {0}")]
    ReloadFastPath(datapath::fast_path::FastPathError),
    #[error("reload refused: {0}")]
    ReloadShrink(config::diff::PolicyShrink),
    /// `datapath.fast_path` set to a mode the interfaces' MTU does not allow (as at start).
    #[error("reload refused: {0}")]
    ReloadMtu(datapath::StartError),
    #[error(transparent)]
    Fallback(#[from] crate::control::fallback::FallbackError),
}

/// `op25b run` options from the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The config file and its `--set KEY=VALUE` overrides (applied again at every
    /// reload).
    pub config: config::ConfigSource,
    /// Write the final counters as JSON here at exit.
    pub report: Option<PathBuf>,
    /// Only detach XDP programs and remove a stale pid file, then exit.
    pub cleanup: bool,
    /// Stop by itself after this long (labs and tests).
    pub duration: Option<Duration>,
}

struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> Result<Self, RunError> {
        if let Some(pid) = live_op25b(path) {
            return Err(RunError::AlreadyRunning {
                path: path.into(),
                pid,
            });
        }
        if path.exists() {
            tracing::info!(path = %path.display(), "replacing stale pid file");
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            RunError::PidFile {
                path: path.into(),
                source,
            }
        })?;
        Ok(Self(path.into()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `op25b run --dry-run`: every start-up check, attaching nothing. Returns what was
/// checked (warnings prefixed `warning: `) or the error `run` would stop with.
pub fn dry_run(cfg: &Config) -> Result<Vec<String>, RunError> {
    let (sub, _, mut notes) = datapath::preflight(&cfg.datapath)?;
    datapath::xdp::Program::load(cfg.datapath.queues).map_err(|source| {
        datapath::StartError::XdpLoad {
            name: sub.name.clone(),
            source,
        }
    })?;
    notes.push(
        "XDP program: the verifier accepts it with these privileges (loaded, not attached)".into(),
    );
    fallback::preflight(cfg)?;
    notes.push(format!(
        "failure_mode {}: prerequisites present",
        cfg.interfaces.failure_mode.as_str()
    ));
    let pid = &cfg.control.pid_file;
    if let Some(p) = live_op25b(pid) {
        return Err(RunError::AlreadyRunning {
            path: pid.clone(),
            pid: p,
        });
    }
    notes.push(format!("pid file {}: no op25b running", pid.display()));
    match std::net::TcpListener::bind(cfg.control.listen) {
        Ok(_) => notes.push(format!("control.listen {}: free", cfg.control.listen)),
        Err(e) => notes.push(format!(
            "warning: control.listen {}: {e}; op25b would forward without metrics and retry the bind",
            cfg.control.listen
        )),
    }
    Ok(notes)
}

/// The pid in `path` if it is a live process named op25b (not this one).
fn live_op25b(path: &Path) -> Option<u32> {
    let pid = std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<u32>()
        .ok()?;
    if pid == std::process::id() {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "op25b").then_some(pid)
}

/// Sums every worker's counters.
pub fn total(counters: &[Arc<CachePadded<WorkerCounters>>]) -> Snapshot {
    let mut sum = Snapshot::default();
    for c in counters {
        sum.merge(&c.snapshot());
    }
    sum
}

/// Every frame handled: the workers' counters plus the verdicts the XDP programs reached
/// in the kernel ([`Snapshot::from_kernel`]).
pub fn handled(
    counters: &[Arc<CachePadded<WorkerCounters>>],
    fast: &datapath::fast_path::FastPathView,
) -> Snapshot {
    let mut sum = total(counters);
    sum.merge(&Snapshot::from_kernel(&fast.verdicts()));
    sum
}

/// Takes the sources of the attempts the XDP program dropped out of its map (at most
/// [`topk::DRAIN_PER_SECOND`]) into `list`, and hands the list to the metrics endpoint
/// for [`metrics::top`]. About once a second, from the control thread.
struct KernelOffenders {
    list: topk::KernelList,
    drained: Vec<datapath::kernel::KernelOffender>,
    /// When a failed drain was last logged.
    logged: Option<Instant>,
}

impl KernelOffenders {
    fn new() -> Self {
        Self {
            list: topk::KernelList::new(),
            drained: Vec::with_capacity(topk::DRAIN_PER_SECOND),
            logged: None,
        }
    }

    fn drain(
        &mut self,
        reader: &mut datapath::kernel::OffenderReader,
        out: &std::sync::Mutex<Vec<topk::Entry>>,
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
const OFFENDER_SCAN: usize = 50;
/// Attempts from which a source is logged as an offender.
const OFFENDER_THRESHOLD: u64 = 10;
/// At most this many offender events per minute; the rest are summarised.
const OFFENDER_EVENTS_PER_MINUTE: u32 = 60;

/// Logs each new offender once (a structured `tracing` event, target
/// `op25b::offender`), at most [`OFFENDER_EVENTS_PER_MINUTE`].
#[derive(Default)]
struct OffenderLog {
    reported: std::collections::HashSet<std::net::IpAddr>,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl OffenderLog {
    fn check(&mut self, top: &[crate::control::topk::Offender]) {
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

fn stats_line(now: &Snapshot, prev: &Snapshot, secs: f64) -> String {
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs.max(1e-9);
    let xdp = |x: &Snapshot| x.xdp_judged[0] + x.xdp_judged[1];
    let blocked =
        |x: &Snapshot| x.action_total(Side::Subscriber, 1) + x.action_total(Side::Subscriber, 2);
    let inbound_blocked =
        |x: &Snapshot| x.action_total(Side::Upstream, 1) + x.action_total(Side::Upstream, 2);
    format!(
        "out {:.0} fps (total {}), in {:.0} fps (total {}), of them judged in XDP {:.0} fps (total {}), blocked out {} in {}, replies {} (limited {}), tx full {}, fill starved {}, kernel drops {}, overload guard engaged {}, frames {}/{} free",
        rate(now.judged(Side::Subscriber), prev.judged(Side::Subscriber)),
        now.judged(Side::Subscriber),
        rate(now.judged(Side::Upstream), prev.judged(Side::Upstream)),
        now.judged(Side::Upstream),
        rate(xdp(now), xdp(prev)),
        xdp(now),
        blocked(now),
        inbound_blocked(now),
        now.get(Counter::RepliesSent),
        now.get(Counter::RepliesRateLimited),
        now.get(Counter::TxRingFull),
        now.get(Counter::FillStarved),
        now.kernel[0].total() + now.kernel[1].total(),
        now.get(Counter::OverloadGuardEngaged),
        now.census.free,
        now.census.total,
    )
}

/// How often the `STATUS=` line for systemd is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The one-line state for systemd's `STATUS=` (shown by `systemctl status`).
struct StatusLine {
    prev: Snapshot,
    prev_fast: u64,
    at: Instant,
}

impl StatusLine {
    fn new(now: Snapshot, fast: u64) -> Self {
        Self {
            prev: now,
            prev_fast: fast,
            at: Instant::now(),
        }
    }

    fn next(&mut self, now: Snapshot, fast: u64, mode: &str, generation: u64) -> String {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let blocked = |x: &Snapshot| {
            x.action_total(Side::Subscriber, 1)
                + x.action_total(Side::Subscriber, 2)
                + x.action_total(Side::Upstream, 1)
                + x.action_total(Side::Upstream, 2)
        };
        let xdp = |x: &Snapshot| x.xdp_judged[0] + x.xdp_judged[1];
        let line = format!(
            "running ({mode}), policy generation {generation}: judged out {:.0} fps, in {:.0} fps (in XDP {:.0} fps), fast path {:.0} fps, blocked {:.0}/s",
            rate(now.judged(Side::Subscriber), self.prev.judged(Side::Subscriber)),
            rate(now.judged(Side::Upstream), self.prev.judged(Side::Upstream)),
            rate(xdp(&now), xdp(&self.prev)),
            rate(fast, self.prev_fast),
            rate(blocked(&now), blocked(&self.prev)),
        );
        self.prev = now;
        self.prev_fast = fast;
        self.at = Instant::now();
        line
    }
}

/// `op25b run`: returns when stopped by a signal (Ok) or on a fatal error.
pub fn run(opts: &RunOptions) -> Result<(), RunError> {
    // The heartbeat clock starts before any worker beats.
    let _ = crate::datapath::counters::beat_clock();
    // `failure_mode: open` also needs every prefix with its class (the fallback rule set);
    // reloads compare the prefixes per class with the previous load.
    let (loaded, listing) = opts.config.load_listing()?;
    let rules = (loaded.config.interfaces.failure_mode == FailureMode::Open)
        .then(|| fallback::Rules::new(&loaded, &listing));
    let mut facts = config::diff::PolicyFacts::new(&loaded, &listing);
    drop(listing);
    // The settings in force: reloads update the reloadable ones.
    let mut cfg: Config = loaded.config;
    let log = logging::init(cfg.logging.level, cfg.logging.format);
    if !opts.config.overrides.is_empty() {
        tracing::info!(
            "config {} (the overrides apply again at every reload)",
            opts.config
        );
    }
    datapath::xsk::quiet_libbpf(matches!(
        cfg.logging.level,
        LogLevel::Debug | LogLevel::Trace
    ));
    if opts.cleanup {
        return cleanup(&cfg);
    }
    let Signals { stop, signal, hup } = Signals::install()?;
    datapath::check_privileges()?;
    let _pid = PidFile::create(&cfg.control.pid_file)?;
    // A failed bind does not keep the datapath from starting: the endpoint retries.
    let listen = cfg.control.listen;
    let listener = match metrics::bind(listen) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(
                listen = %listen,
                "control.listen {listen}: {e} (another process holds it?); op25b forwards without metrics and retries the bind every {} s",
                metrics::BIND_RETRY.as_secs()
            );
            None
        }
    };
    let policy = Arc::new(PolicyCell::new(Arc::new(loaded.policy)));
    // The runtime overlay, from the state file, published before the first frame.
    let (store, bad_lines) = load_overlay(&policy, cfg.control.state_file.as_deref());
    let shared = Arc::new(operator::OverlayShared::new(
        store,
        policy.clone(),
        cfg.control.state_file.clone(),
        loaded.report.exempt_class.clone(),
        loaded.report.auto_quarantine.clone(),
    ));
    shared.saves.bad_lines.store(bad_lines, Ordering::Relaxed);
    {
        let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
        shared.publish(&mut store);
    }
    let t0 = Instant::now();
    let open = cfg.interfaces.failure_mode == FailureMode::Open;
    fallback::preflight(&cfg)?;
    if open {
        // The rules first: the bridge must never forward a frame they have not seen.
        let rules = rules.as_ref().expect("rendered for open mode");
        let (table, as_drop) = fallback::install_rules(rules)?;
        tracing::info!(
            "failure_mode open: fallback rule set loaded as nftables table bridge {table}"
        );
        if as_drop {
            tracing::warn!("failure_mode open: this kernel has no reject in the bridge family; the fallback drops what op25b would reject");
        }
    }
    let mut running = datapath::start(&cfg.datapath, policy.clone(), stop.clone())?;
    let links_at_start = [&running.subscriber, &running.upstream].map(datapath::nic::link_drops);
    if open {
        match fallback::ensure_bridge(&cfg) {
            Ok(notes) => {
                for note in notes {
                    tracing::info!("failure_mode open: {note}");
                }
            }
            Err(e) => {
                running.stop();
                return Err(e.into());
            }
        }
        tracing::warn!("failure_mode open: while op25b is not running the fallback filters plain Ethernet IPv4/IPv6 TCP only: it does not look inside VLAN/QinQ/PPPoE, and does not drop tiny or later fragments or malformed TCP (docs/operations.md)");
    }
    // Everything is attached and bound: from here on the process keeps only the
    // capabilities it uses, before the threads that parse HTTP, RADIUS and JSON start.
    drop_capabilities(open, &running.fast_path.view());
    tracing::info!(
        subscriber = %running.subscriber.name,
        upstream = %running.upstream.name,
        queues = cfg.datapath.queues,
        cores = ?cfg.datapath.cores,
        mode = %running.mode,
        failure_mode = cfg.interfaces.failure_mode.as_str(),
        frame_size = cfg.datapath.frame_size,
        ring_size = cfg.datapath.ring_size,
        frames_per_worker = cfg.datapath.frame_count(),
        burst = cfg.datapath.burst,
        busy_poll = cfg.datapath.busy_poll,
        classes = loaded.report.classes.len(),
        table_bytes = policy.load().summary().table_bytes,
        build_ms = format!("{:.1}", loaded.report.build_time.as_secs_f64() * 1e3),
        "op25b running (started in {:.0} ms)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let metrics_stop_early = Arc::new(AtomicBool::new(false));
    let mstate = Arc::new(metrics::MetricsState {
        counters: running.counters.clone(),
        policy: policy.clone(),
        mode: running.mode.to_string(),
        fast_path: running.fast_path.view(),
        started: Instant::now(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        reload: std::sync::Mutex::new(metrics::ReloadStatus::at_start()),
        overlay: shared.clone(),
        radius: Default::default(),
        http_top: cfg.control.http_top,
        kernel_top: std::sync::Mutex::new(Vec::new()),
    });
    let radius_thread = start_radius(&cfg, &shared, &mstate, &metrics_stop_early);
    let operator = Arc::new(operator::Operator {
        metrics: mstate.clone(),
        reload: operator::ReloadTrigger {
            pending: hup.clone(),
            force: AtomicBool::new(false),
        },
    });
    let operator_thread = start_operator(&cfg, &operator, &metrics_stop_early);
    let metrics_stop = Arc::new(AtomicBool::new(false));
    let have_listener = listener.is_some();
    let metrics_thread = metrics::serve(listener, listen, mstate.clone(), metrics_stop.clone())
        .map_err(RunError::Listen)?;
    if have_listener {
        tracing::info!(listen = %listen, "metrics at http://{listen}/metrics");
    }
    let notifier = systemd::Notifier::from_env().unwrap_or_else(|e| {
        tracing::error!("NOTIFY_SOCKET: {e}; systemd will not hear READY=1 or watchdog pings");
        systemd::Notifier::disabled()
    });
    let watchdog = systemd::watchdog_from_env();
    let mut supervisor = systemd::Supervisor::new(notifier, watchdog, running.counters.len());
    if let Some(w) = watchdog {
        tracing::info!(
            "systemd watchdog every {:.1} s: pings while every worker beats within {:.1} s",
            w.as_secs_f64(),
            supervisor.stall_ms() as f64 / 1e3
        );
    }
    let mut retired: Vec<Arc<crate::policy::Policy>> = Vec::new();
    let fast_stats = running.fast_path.view();
    let mut prev = handled(&running.counters, &fast_stats);
    let fast_sum = |v: &datapath::fast_path::FastPathView| {
        let [a, b] = v.stats();
        a.fast + b.fast
    };
    let mut status_line = StatusLine::new(prev.clone(), fast_sum(&fast_stats));
    let mut last_status = Instant::now();
    let mut status_text = String::from("starting");
    let mut prev_fast = fast_stats.stats();
    let mut last = Instant::now();
    let mut died = false;
    let mut offenders = OffenderLog::default();
    let mut auto = operator::AutoTracker::default();
    let mut kernel_offenders = KernelOffenders::new();
    let mut last_top = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        let beats: Vec<u64> = running.counters.iter().map(|c| c.heartbeat_ms()).collect();
        let mode = running.mode.to_string();
        let generation = policy.generation();
        supervisor.tick(&beats, crate::datapath::counters::beat_clock(), || {
            format!("running ({mode}), policy generation {generation}")
        });
        if supervisor.ready() && status_text == "starting" {
            status_text = format!("running ({mode}), policy generation {generation}");
        }
        if supervisor.ready() && last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            status_text = status_line.next(
                handled(&running.counters, &fast_stats),
                fast_sum(&fast_stats),
                &mode,
                generation,
            );
            supervisor.status(&status_text);
        }
        if last_top.elapsed() >= Duration::from_secs(1) {
            last_top = Instant::now();
            kernel_offenders.drain(&mut running.offenders, &mstate.kernel_top);
            offenders.check(&metrics::top(&mstate, OFFENDER_SCAN));
            running.fast_path.refresh();
            policy.kernel_retry();
            shared.tick(metrics::unix_now());
            auto.check(
                &shared,
                &metrics::top(&mstate, OFFENDER_SCAN),
                metrics::unix_now(),
            );
        }
        if running.any_worker_finished() && !stop.load(Ordering::SeqCst) {
            tracing::error!("a worker thread ended while running");
            died = true;
            break;
        }
        // A reload begins (SIGHUP or the operator socket's `reload`) under the status
        // lock, so a requester that read `started` knows which attempt answers it.
        let begun = {
            let mut st = mstate.reload.lock().unwrap_or_else(|p| p.into_inner());
            hup.swap(false, Ordering::SeqCst).then(|| {
                st.started += 1;
                operator.reload.force.swap(false, Ordering::SeqCst)
            })
        };
        if let Some(force) = begun {
            // A reload runs on this thread: the watchdog gets one ping now and a longer
            // timeout until it is done (a 1M-prefix reload, or nft -f of the fallback, can
            // take seconds).
            supervisor.reloading(&beats, crate::datapath::counters::beat_clock());
            let outcome = reload(
                &opts.config,
                &mut cfg,
                &mut facts,
                &mut running.fast_path,
                open,
                &log,
                &shared,
                force,
            );
            let msg = record_reload(outcome, &mstate, &shared, &mut retired, policy.generation());
            supervisor.reloaded(&format!(
                "{status_text}; last reload: {}",
                msg.chars().take(200).collect::<String>()
            ));
        }
        // Old policies are freed here, on the control thread, once no worker holds them.
        retired.retain(|p| Arc::strong_count(p) > 1);
        if opts.duration.is_some_and(|d| t0.elapsed() >= d) {
            tracing::info!("run duration reached");
            break;
        }
        let interval = cfg.workers.stats_interval;
        if !interval.is_zero() && last.elapsed() >= interval {
            let now = handled(&running.counters, &fast_stats);
            let secs = last.elapsed().as_secs_f64();
            let fast_now = fast_stats.stats();
            log_stats(&now, &prev, secs, &fast_now, &prev_fast);
            prev = now;
            prev_fast = fast_now;
            last = Instant::now();
        }
    }
    supervisor.stopping();
    match signal.load(Ordering::SeqCst) {
        0 => tracing::info!("stopping"),
        sig => tracing::info!(
            signal = sig,
            "stopping on signal {}",
            if sig == signal_hook::consts::SIGINT as usize {
                "SIGINT"
            } else {
                "SIGTERM"
            }
        ),
    }
    let counters = running.counters.clone();
    let fast_view = running.fast_path.view();
    let fast_enabled = running.fast_path.enabled();
    let links_at_stop = [&running.subscriber, &running.upstream].map(datapath::nic::link_drops);
    let (exits, notes) = running.stop();
    log_detached(&cfg);
    metrics_stop.store(true, Ordering::SeqCst);
    let _ = metrics_thread.join();
    metrics_stop_early.store(true, Ordering::SeqCst);
    if let Some(t) = operator_thread {
        let _ = t.join();
    }
    if let Some(t) = radius_thread {
        let _ = t.join();
    }
    shared.save_now();
    for n in &notes {
        tracing::warn!("{n}");
    }
    // The maps outlive the detached programs: their last verdicts are in.
    let sum = handled(&counters, &fast_view);
    let conserved = exits.iter().all(|e| e.census.conserved()) && exits.len() == counters.len();
    tracing::info!(
        "final: {}",
        stats_line(&sum, &Snapshot::default(), t0.elapsed().as_secs_f64())
    );
    if !conserved {
        tracing::error!(?exits, "frame conservation check FAILED");
    } else {
        tracing::info!("frame conservation holds: every UMEM frame accounted for");
    }
    let class_slots = policy.class_slots();
    let report = FinalReport {
        sum: &sum,
        class_slots: &class_slots,
        conserved,
        counters: &counters,
        exits: &exits,
        notes: &notes,
        fast_view: &fast_view,
        fast_enabled,
        kernel_valid: policy.kernel_valid(),
        kernel_errors: policy.kernel_errors.load(Ordering::Relaxed),
        links: [links_at_start, links_at_stop],
        seconds: t0.elapsed().as_secs_f64(),
    }
    .to_json();
    // One line on stdout (one journal entry under systemd); the file is indented.
    let line = serde_json::to_string(&report).expect("json");
    crate::control::stdout::write_ignoring_closed(format_args!("{line}\n"));
    if let Some(path) = &opts.report {
        let text = serde_json::to_string_pretty(&report).expect("json");
        std::fs::write(path, &text).map_err(|source| RunError::Report {
            path: path.clone(),
            source,
        })?;
    }
    if died {
        return Err(RunError::WorkerDied);
    }
    Ok(())
}

/// `op25b run --cleanup`: detaches what a killed instance left on the interfaces and
/// removes a stale pid file.
fn cleanup(cfg: &Config) -> Result<(), RunError> {
    for note in datapath::cleanup(&[&cfg.datapath.subscriber, &cfg.datapath.upstream])? {
        tracing::info!("{note}");
        crate::control::stdout::write_ignoring_closed(format_args!("{note}\n"));
    }
    let pid = &cfg.control.pid_file;
    if let Ok(text) = std::fs::read_to_string(pid) {
        let alive = text
            .trim()
            .parse::<u32>()
            .map(|p| Path::new(&format!("/proc/{p}")).exists())
            .unwrap_or(false);
        if !alive {
            let _ = std::fs::remove_file(pid);
            crate::control::stdout::write_ignoring_closed(format_args!(
                "removed stale pid file {}\n",
                pid.display()
            ));
        }
    }
    Ok(())
}

/// SIGINT/SIGTERM set `stop` (and which one in `signal`); SIGHUP sets `hup`.
struct Signals {
    stop: Arc<AtomicBool>,
    signal: Arc<std::sync::atomic::AtomicUsize>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Self, RunError> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
                .map_err(RunError::Signals)?;
            signal_hook::flag::register(sig, stop.clone()).map_err(RunError::Signals)?;
        }
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .map_err(RunError::Signals)?;
        Ok(Self { stop, signal, hup })
    }
}

/// The runtime overlay, from `state_file` if there is one, and how many of its lines were
/// skipped (errors are logged: op25b starts with what could be read). Each skipped line
/// is logged with its number, and the file as found is kept beside it (`.bad`), since
/// the next save writes only the entries that loaded.
fn load_overlay(policy: &PolicyCell, state_file: Option<&Path>) -> (overlay::Store, u64) {
    let mut store = overlay::Store::new(&policy.load(), policy.generation());
    let Some(path) = state_file else {
        return (store, 0);
    };
    match store.load(path, metrics::unix_now()) {
        Ok(r) => {
            tracing::info!(
                state_file = %path.display(),
                loaded = r.loaded,
                expired = r.expired,
                inactive = r.inactive,
                bad_lines = r.bad_lines,
                "overlay: {} entries from {} ({} expired dropped, {} with a class the policy lacks, {} bad line(s) skipped)",
                r.loaded,
                path.display(),
                r.expired,
                r.inactive,
                r.bad_lines
            );
            for b in &r.bad {
                tracing::error!("overlay state file: line skipped: {b}");
            }
            if r.bad_lines > r.bad.len() {
                tracing::error!(
                    "overlay state file: {} more bad line(s) skipped",
                    r.bad_lines - r.bad.len()
                );
            }
            if let Some(e) = &r.read_error {
                tracing::error!(
                    "overlay state file: reading stopped at {e}; the entries after it are not loaded"
                );
            }
            if r.bad_lines > 0 || r.read_error.is_some() {
                let mut keep = path.as_os_str().to_owned();
                keep.push(".bad");
                match std::fs::copy(path, &keep) {
                    Ok(_) => tracing::warn!(
                        "overlay state file: kept as found in {} (the next save drops the bad lines)",
                        Path::new(&keep).display()
                    ),
                    Err(e) => tracing::error!(
                        "overlay state file: cannot keep a copy in {}: {e}",
                        Path::new(&keep).display()
                    ),
                }
            }
            (store, r.bad_lines as u64)
        }
        Err(e) => {
            tracing::error!(
                "control.state_file {}: {e}; starting with an empty overlay",
                path.display()
            );
            (store, 0)
        }
    }
}

/// The RADIUS accounting listener, if configured (a failed bind is logged: op25b runs
/// without the feed).
fn start_radius(
    cfg: &Config,
    shared: &Arc<operator::OverlayShared>,
    mstate: &Arc<metrics::MetricsState>,
    stop: &Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    match &cfg.radius {
        None => None,
        Some(r) => match radius::serve(
            r.clone(),
            shared.clone(),
            mstate.radius.clone(),
            stop.clone(),
        ) {
            Ok(t) => {
                tracing::info!(listen = %r.listen, clients = r.clients.len(), "RADIUS accounting on udp {}", r.listen);
                Some(t)
            }
            Err(e) => {
                tracing::error!(
                    "radius.listen {}: {e}; op25b runs without the RADIUS feed",
                    r.listen
                );
                None
            }
        },
    }
}

/// The operator socket (`op25b reload`, `top`, `exempt`, `sessions`); a failure is
/// logged (SIGHUP still reloads).
fn start_operator(
    cfg: &Config,
    operator: &Arc<operator::Operator>,
    stop: &Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    match operator::serve(&cfg.control.socket, operator.clone(), stop.clone()) {
        Ok(t) => {
            tracing::info!(socket = %cfg.control.socket.display(), "operator socket at {} (op25b reload, top, exempt, sessions)", cfg.control.socket.display());
            Some(t)
        }
        Err(e) => {
            tracing::error!(
                "control.socket {}: {e}; op25b runs without operator commands (reload: send SIGHUP; top, exempt, sessions)",
                cfg.control.socket.display()
            );
            None
        }
    }
}

/// Lowers the main thread (and so every thread started after it) to the capabilities
/// the running process uses (datapath::privileges): CAP_BPF only if this kernel checks
/// it for `bpf()` on open maps (the XDP program's maps, its policy tries included, are
/// all created at start: a reload only writes them); with `failure_mode: open`
/// CAP_NET_ADMIN for the `nft` children of a reload (ambient, not effective). Logs what
/// was kept; a failure to drop is logged and op25b runs on.
fn drop_capabilities(open: bool, fast: &datapath::fast_path::FastPathView) {
    use datapath::privileges::{self as caps, bit};
    let have = match caps::get() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("capabilities: cannot read them (capget: {e}); keeping them all");
            return;
        }
    };
    let mut effective = 0;
    match caps::bpf_needs_capability(|| fast.read_once()) {
        Ok(false) => {}
        Ok(true) => {
            // CAP_SYS_ADMIN stands in for CAP_BPF before Linux 5.8.
            effective |= if have.permitted & bit(caps::CAP_BPF) != 0 {
                bit(caps::CAP_BPF)
            } else {
                bit(caps::CAP_SYS_ADMIN)
            };
        }
        Err(e) => {
            tracing::warn!("capabilities: reading the XDP counters failed ({e}); keeping CAP_BPF");
            effective |= bit(caps::CAP_BPF) | (have.permitted & bit(caps::CAP_SYS_ADMIN));
        }
    }
    let ambient = if open { bit(caps::CAP_NET_ADMIN) } else { 0 };
    match caps::keep_only(effective, ambient) {
        Ok(k) => tracing::info!(
            effective = %caps::names(k.sets.effective),
            ambient = %caps::names(k.ambient),
            dropped = %caps::names(have.permitted & !k.sets.permitted),
            bounding_lowered = k.bounding_lowered,
            "capabilities after start: effective {}, ambient {} (for failure_mode open's nft), dropped {}{}",
            caps::names(k.sets.effective),
            caps::names(k.ambient),
            caps::names(have.permitted & !k.sets.permitted),
            if k.bounding_lowered {
                ""
            } else {
                "; bounding set left as given (no CAP_SETPCAP)"
            }
        ),
        Err(e) => tracing::error!(
            "capabilities: cannot drop them ({e}); op25b runs with {}",
            caps::names(have.effective)
        ),
    }
}

/// What crosses the interfaces now that the XDP programs are gone.
fn log_detached(cfg: &Config) {
    match cfg.interfaces.failure_mode {
        FailureMode::Open => tracing::warn!(
            bridge = %cfg.interfaces.fallback_bridge,
            "failure_mode open: op25b's XDP programs are detached; traffic now crosses bridge {} filtered by nftables table bridge {}_*",
            cfg.interfaces.fallback_bridge,
            fallback::TABLE
        ),
        FailureMode::Closed => tracing::warn!(
            "failure_mode closed: op25b's XDP programs are detached; no traffic crosses {} <-> {} until op25b runs again",
            cfg.datapath.subscriber,
            cfg.datapath.upstream
        ),
    }
}

/// What `op25b run` prints when it stops: counters, conservation, fast path, link drops,
/// per worker.
struct FinalReport<'a> {
    sum: &'a Snapshot,
    /// Every class name seen since start, with its counter slot.
    class_slots: &'a [(usize, String)],
    conserved: bool,
    counters: &'a [Arc<CachePadded<WorkerCounters>>],
    exits: &'a [datapath::WorkerExit],
    notes: &'a [String],
    fast_view: &'a datapath::fast_path::FastPathView,
    fast_enabled: bool,
    /// The kernel's copy of the policy: in force at stop, and its failed writes.
    kernel_valid: bool,
    kernel_errors: u64,
    /// Interface drop counters at start and at stop.
    links: [[Option<datapath::nic::LinkDrops>; 2]; 2],
    seconds: f64,
}

impl FinalReport<'_> {
    fn to_json(&self) -> serde_json::Value {
        let mut report = self.sum.to_json(self.class_slots);
        report["frames_conserved"] =
            serde_json::json!(self.conserved && self.sum.census.conserved());
        report["workers"] = serde_json::json!(self.counters.len());
        // The XDP programs' own counters (the maps outlive the detached programs).
        let [fp_sub, fp_up] = self.fast_view.stats();
        let [v_sub, v_up] = self.fast_view.verdicts();
        let side = |fp: datapath::xdp::PathStats, v: &datapath::xdp::KernelVerdicts| {
            let mut j = fp.to_json();
            j["verdicts"] = v.to_json();
            j["dropped_by_verdict"] = serde_json::json!(v.verdicts[1].iter().sum::<u64>());
            j
        };
        report["fast_path"] = serde_json::json!({
            "enabled": self.fast_enabled,
            "mode": self.fast_view.mode().as_str(),
            "kernel_policy_valid": self.kernel_valid,
            "kernel_policy_write_errors": self.kernel_errors,
            "subscriber": side(fp_sub, &v_sub),
            "upstream": side(fp_up, &v_up),
        });
        // The interfaces' own drop counters over the run (None: /sys of another namespace).
        let link = |i: usize| match (self.links[0][i], self.links[1][i]) {
            (Some(a), Some(b)) => serde_json::json!(b.since(a)),
            _ => serde_json::Value::Null,
        };
        report["link_drops"] = serde_json::json!({"subscriber": link(0), "upstream": link(1)});
        report["per_worker"] = self
            .counters
            .iter()
            .zip(self.exits)
            .map(|(c, e)| {
                let s = c.snapshot();
                serde_json::json!({
                    "rx_frames": {"subscriber": s.rx_frames[0], "upstream": s.rx_frames[1]},
                    "tx_frames": {"subscriber": s.tx_frames[0], "upstream": s.tx_frames[1]},
                    "frames_conserved": e.census.conserved(),
                })
            })
            .collect::<Vec<_>>()
            .into();
        report["mode"] = serde_json::json!(running_mode_str(self.exits, self.notes));
        report["seconds"] = serde_json::json!(self.seconds);
        report
    }
}

/// Records a reload's outcome in the reload status (operator socket, metrics) and
/// applies what the control plane holds (exempt class, auto-quarantine);
/// the old policy waits in `retired` until no worker holds it. Returns the message.
fn record_reload(
    outcome: Result<Reloaded, RunError>,
    mstate: &metrics::MetricsState,
    shared: &operator::OverlayShared,
    retired: &mut Vec<Arc<crate::policy::Policy>>,
    generation: u64,
) -> String {
    let mut st = mstate.reload.lock().unwrap_or_else(|p| p.into_inner());
    st.attempts += 1;
    st.last_at = metrics::unix_now();
    match outcome {
        Ok(done) => {
            retired.push(done.old);
            if done.overlay_inactive > 0 {
                tracing::warn!(
                    "overlay: {} entries name a class the new policy lacks: inactive until it comes back or they are removed (op25b sessions)",
                    done.overlay_inactive
                );
            }
            if let Ok(mut c) = shared.exempt_class.lock() {
                c.clone_from(&done.exempt_class);
            }
            if let Ok(mut a) = shared.auto.lock() {
                a.clone_from(&done.auto_quarantine);
            }
            st.applied += 1;
            st.last_ok = true;
            st.last_success_at = st.last_at;
            st.message = done.summary;
            st.restart_pending = done.restart_pending;
        }
        Err(e) => {
            tracing::error!("{e}; the policy in force (generation {}) stays", generation);
            st.refused += 1;
            st.last_ok = false;
            st.message = format!(
                "{e}; nothing was applied, the policy in force (generation {}) stays",
                generation
            );
        }
    }
    st.message.clone()
}

/// The periodic counter line: the numbers as fields (JSON logs get them as keys) and a
/// readable message.
fn log_stats(
    now: &Snapshot,
    prev: &Snapshot,
    secs: f64,
    fast_now: &[datapath::xdp::PathStats; 2],
    prev_fast: &[datapath::xdp::PathStats; 2],
) {
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs.max(1e-9);
    let (s, u) = (Side::Subscriber, Side::Upstream);
    let fps = |i: usize| fast_now[i].since(&prev_fast[i]).fast as f64 / secs.max(1e-9);
    let xdp = |x: &Snapshot| x.xdp_judged[0] + x.xdp_judged[1];
    tracing::info!(
        target: "op25b::stats",
        out_fps = rate(now.judged(s), prev.judged(s)).round() as u64,
        out_frames = now.judged(s),
        in_fps = rate(now.judged(u), prev.judged(u)).round() as u64,
        in_frames = now.judged(u),
        xdp_judged_fps = rate(xdp(now), xdp(prev)).round() as u64,
        xdp_judged_frames = xdp(now),
        blocked_out = now.action_total(s, 1) + now.action_total(s, 2),
        blocked_in = now.action_total(u, 1) + now.action_total(u, 2),
        replies = now.get(Counter::RepliesSent),
        replies_limited = now.get(Counter::RepliesRateLimited),
        tx_ring_full = now.get(Counter::TxRingFull),
        fill_starved = now.get(Counter::FillStarved),
        kernel_drops = now.kernel[0].total() + now.kernel[1].total(),
        frames_free = now.census.free,
        frames_total = now.census.total,
        fast_out_fps = fps(0).round() as u64,
        fast_in_fps = fps(1).round() as u64,
        "{}, fast path out {:.0} fps in {:.0} fps",
        stats_line(now, prev, secs),
        fps(0),
        fps(1)
    );
}

fn running_mode_str(_exits: &[datapath::WorkerExit], notes: &[String]) -> String {
    if notes.is_empty() {
        "clean shutdown".into()
    } else {
        notes.join("; ")
    }
}

/// An applied reload.
pub struct Reloaded {
    /// The previous policy (the caller frees it once no worker holds it).
    pub old: Arc<crate::policy::Policy>,
    /// The new class names, in id order.
    pub classes: Vec<String>,
    /// What changed, in one line.
    pub summary: String,
    /// Restart-only settings that differ from what runs (not applied).
    pub restart_pending: Vec<String>,
    /// `policy.exempt_class` of the new policy.
    pub exempt_class: Option<String>,
    /// `policy.auto_quarantine` of the new policy.
    pub auto_quarantine: Option<config::AutoQuarantine>,
    /// Overlay entries whose class the new policy lacks.
    pub overlay_inactive: usize,
}

/// Re-reads the config and the prefix files, builds the new policy off the workers and
/// publishes it with one pointer swap, and applies the reloadable settings
/// (`logging.level`, `workers.stats_interval_secs`, `datapath.fast_path`). Settings that
/// only take effect at start and changed are named (log, answer, gauge) and not
/// applied. An invalid file changes nothing.
///
/// With `fallback` (`failure_mode: open`), the fallback nftables rule set is rebuilt
/// from the same read of the file, so op25b and its fallback never disagree.
///
/// A policy in which a class or one of its prefix files drops to 0 prefixes or loses
/// more than `control.reload_max_loss_percent` of them is refused before anything is
/// applied ([`config::diff::PolicyFacts::losses`]), unless `force` (`op25b reload
/// --force`); a forced reload says so in its log line and answer.
#[allow(clippy::too_many_arguments)]
pub fn reload(
    source: &config::ConfigSource,
    running: &mut Config,
    facts: &mut config::diff::PolicyFacts,
    fast: &mut datapath::fast_path::FastPath,
    fallback: bool,
    log: &logging::LogHandle,
    overlay: &operator::OverlayShared,
    force: bool,
) -> Result<Reloaded, RunError> {
    // The cell the workers read (the overlay publishes into the same one).
    let cell: &PolicyCell = &overlay.cell;
    let t = Instant::now();
    let (mut loaded, listing) = source.load_listing().map_err(RunError::ReloadConfig)?;
    let restart_pending: Vec<String> = config::diff::restart_only_changes(running, &loaded.config)
        .into_iter()
        .map(String::from)
        .collect();
    let settings = config::diff::applied_setting_changes(running, &loaded.config);
    // Restart-only settings stay as they run: the fallback rule set must name the
    // interfaces the running bridge has, not new ones from the file.
    loaded.config.interfaces = running.interfaces.clone();
    loaded.config.datapath = config::DatapathSettings {
        fast_path: loaded.config.datapath.fast_path,
        ..running.datapath.clone()
    };
    let rules = fallback.then(|| fallback::Rules::new(&loaded, &listing));
    let new_facts = config::diff::PolicyFacts::new(&loaded, &listing);
    drop(listing);
    // The guard, before anything (XDP maps, fallback rules, the policy) changes.
    let max_loss_percent = loaded.config.control.reload_max_loss_percent;
    let losses = facts.losses(&new_facts, max_loss_percent);
    if !losses.is_empty() && !force {
        return Err(RunError::ReloadShrink(config::diff::PolicyShrink {
            losses,
            max_loss_percent,
        }));
    }
    let c = &loaded.config;
    // A mode the running interfaces' MTU does not allow is refused, as at start: in
    // modes unblockable and off a frame a worker must judge and that does not fit a
    // UMEM frame would be dropped.
    for name in [&running.datapath.subscriber, &running.datapath.upstream] {
        let Ok(nic) = datapath::nic::inspect(name) else {
            continue;
        };
        datapath::check_mtu(
            name,
            nic.mtu,
            running.datapath.frame_size,
            c.datapath.fast_path,
        )
        .map_err(RunError::ReloadMtu)?;
    }
    // Ports the new policy may block reach the XDP maps before it is in force, ports it
    // no longer blocks leave them after: no frame it blocks can take the fast path.
    fast.before_publish(&loaded.policy)
        .map_err(RunError::ReloadFastPath)?;
    if let Some(rules) = &rules {
        match fallback::install_rules(rules) {
            Ok((t, _)) => {
                tracing::info!("failure_mode open: fallback rule set updated (table bridge {t})")
            }
            Err(e) => tracing::error!(
                "{e}; the fallback keeps the previous rule set while op25b enforces the new policy"
            ),
        }
    }
    let old_bytes = cell.load().summary().table_bytes;
    let new_bytes = loaded.policy.summary().table_bytes;
    let diff = facts.diff(&new_facts);
    let next = Arc::new(loaded.policy);
    // The overlay's class ids for the new policy are ready before it is published, and
    // its snapshot follows right after: workers judge by the file alone only between
    // the two swaps.
    let mut store = overlay.store.lock().unwrap_or_else(|p| p.into_inner());
    let overlay_inactive = store.rebind(&next, cell.generation() + 1);
    let old = cell.publish(next.clone());
    overlay.publish(&mut store);
    drop(store);
    fast.after_publish(&next, cell.generation());
    drop(next);
    if let Err(e) = fast.set_mode(c.datapath.fast_path) {
        tracing::error!("{e}");
    }
    if running.logging.level != c.logging.level {
        if let Err(e) = log.set_level(c.logging.level) {
            tracing::warn!("logging.level not applied: {e}");
        }
    }
    running.logging.level = c.logging.level;
    running.workers.stats_interval = c.workers.stats_interval;
    running.datapath.fast_path = c.datapath.fast_path;
    *facts = new_facts;
    let mut summary = format!("applied: policy generation {}; {diff}", cell.generation());
    if !losses.is_empty() {
        summary += &format!(
            "; FORCED past the reload guard (op25b reload --force): {}",
            losses.join("; ")
        );
    }
    if !settings.is_empty() {
        summary += &format!("; settings: {}", settings.join(", "));
    }
    if !restart_pending.is_empty() {
        summary += &format!(
            "; NOT applied, need a restart of op25b: {}",
            restart_pending.join(", ")
        );
    }
    tracing::info!(
        generation = cell.generation(),
        build_ms = format!("{:.1}", loaded.report.build_time.as_secs_f64() * 1e3),
        total_ms = format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
        old_table_bytes = old_bytes,
        new_table_bytes = new_bytes,
        restart_pending = restart_pending.len(),
        forced = force,
        "policy reloaded from {source}: {summary}"
    );
    if !restart_pending.is_empty() {
        tracing::warn!(
            fields = %restart_pending.join(","),
            "reload: {} changed in {} but take effect only at start: restart op25b (systemctl restart op25b) to apply them",
            restart_pending.join(", "),
            source.path.display()
        );
    }
    Ok(Reloaded {
        old,
        exempt_class: loaded.report.exempt_class.clone(),
        auto_quarantine: loaded.report.auto_quarantine.clone(),
        overlay_inactive,
        classes: loaded.report.classes,
        summary,
        restart_pending,
    })
}

/// The running instance's answer to `op25b reload`.
#[derive(Debug)]
pub struct ReloadAnswer {
    pub pid: u32,
    pub applied: bool,
    pub message: String,
    pub restart_pending: Vec<String>,
    pub generation: u64,
}

/// Why `op25b reload` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRequestError {
    #[error("no op25b answering on the operator socket {} (control.socket): {source}; if control.socket or control.pid_file changed since op25b started, the running instance still listens on the old path (both are restart-only): op25b reload --socket OLD_PATH", socket.display())]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("operator socket {}: {source} (op25b reload needs root, or op25b's user or group)", socket.display())]
    Permission {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("operator socket {}: {what}", socket.display())]
    BadAnswer { socket: PathBuf, what: String },
    #[error("op25b pid {pid} did not answer the reload within {secs} s")]
    Timeout { pid: u32, secs: u64 },
}

/// `op25b reload`: asks the instance on the operator socket for a reload (`force`: past
/// the reload guard) and waits (up to `timeout`) on the same socket for the outcome of
/// the reload that began after the request (a reload already running when asked read
/// the file before; requests coalesce into the next one). Transient errors while
/// waiting are retried until the deadline. Nothing here uses the HTTP endpoint, so a
/// blinded or squatted `control.listen` cannot hold a reload up.
pub fn request_reload(
    socket: &Path,
    force: bool,
    timeout: Duration,
) -> Result<ReloadAnswer, ReloadRequestError> {
    let socket_err = |source: std::io::Error| {
        let socket = socket.to_path_buf();
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ReloadRequestError::Permission { socket, source }
        } else {
            ReloadRequestError::Unreachable { socket, source }
        }
    };
    let bad = |what: String| ReloadRequestError::BadAnswer {
        socket: socket.to_path_buf(),
        what,
    };
    let asked = operator::request(socket, &serde_json::json!({"op": "reload", "force": force}))
        .map_err(socket_err)?;
    if asked["ok"] != true {
        return Err(bad(format!(
            "reload not taken: {}",
            asked["error"]
                .as_str()
                .unwrap_or("no reason given (an older op25b?)")
        )));
    }
    let pid = asked["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| bad("no pid in the answer".into()))?;
    let started = asked["started"]
        .as_u64()
        .ok_or_else(|| bad("no reload counter in the answer".into()))?;
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        match operator::request(socket, &serde_json::json!({"op": "reload_status"})) {
            Ok(v) => {
                if v["pid"].as_u64() != Some(u64::from(pid)) {
                    return Err(bad(format!(
                        "pid {pid} was replaced by pid {} while reloading (restarted?)",
                        v["pid"]
                    )));
                }
                if v["attempts"].as_u64().unwrap_or(0) > started {
                    return Ok(ReloadAnswer {
                        pid,
                        applied: v["last_ok"].as_bool().unwrap_or(false),
                        message: v["message"].as_str().unwrap_or("").to_string(),
                        restart_pending: v["restart_pending"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        generation: v["generation"].as_u64().unwrap_or(0),
                    });
                }
            }
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(source) => socket_err(source),
                None => ReloadRequestError::Timeout {
                    pid,
                    secs: timeout.as_secs(),
                },
            });
        }
    }
}
