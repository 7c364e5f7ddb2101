//! The control plane of `op25b run`: logging, pid file, signals, the periodic counter
//! line, shutdown and the final report. It never touches frames.

use crate::config::{self, Config, FailureMode, LogFormat, LogLevel};
use crate::datapath::counters::{Counter, Side, Snapshot, WorkerCounters};
use crate::datapath::{self, PolicyCell};
use crate::fallback;
use crossbeam_utils::CachePadded;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod metrics;
pub mod status;
pub mod stdout;

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
    #[error("control.listen {addr}: {source} (is another op25b running? change control.listen)")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reload: {0}")]
    Reload(String),
    #[error(transparent)]
    Fallback(#[from] crate::fallback::FallbackError),
}

/// `op25b run` options from the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Write the final counters as JSON here at exit.
    pub report: Option<PathBuf>,
    /// Only detach XDP programs and remove a stale pid file, then exit.
    pub cleanup: bool,
    /// Stop by itself after this long (labs and tests).
    pub duration: Option<Duration>,
}

/// Sets up `tracing` from the config (RUST_LOG overrides the level).
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> Result<Self, RunError> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                if pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists() {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    if comm.trim() == "op25b" {
                        return Err(RunError::AlreadyRunning {
                            path: path.into(),
                            pid,
                        });
                    }
                }
            }
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

/// Sums every worker's counters.
pub fn total(counters: &[Arc<CachePadded<WorkerCounters>>]) -> Snapshot {
    let mut sum = Snapshot::default();
    for c in counters {
        sum.merge(&c.snapshot());
    }
    sum
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
    fn check(&mut self, top: &[crate::topk::Offender]) {
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
    let s = Side::Subscriber.index();
    let u = Side::Upstream.index();
    let blocked =
        |x: &Snapshot| x.action_total(Side::Subscriber, 1) + x.action_total(Side::Subscriber, 2);
    let inbound_blocked =
        |x: &Snapshot| x.action_total(Side::Upstream, 1) + x.action_total(Side::Upstream, 2);
    format!(
        "out {:.0} fps (total {}), in {:.0} fps (total {}), blocked out {} in {}, replies {} (limited {}), tx full {}, fill starved {}, kernel drops {}, frames {}/{} free",
        rate(now.rx_frames[s], prev.rx_frames[s]),
        now.rx_frames[s],
        rate(now.rx_frames[u], prev.rx_frames[u]),
        now.rx_frames[u],
        blocked(now),
        inbound_blocked(now),
        now.get(Counter::RepliesSent),
        now.get(Counter::RepliesRateLimited),
        now.get(Counter::TxRingFull),
        now.get(Counter::FillStarved),
        now.kernel[0].total() + now.kernel[1].total(),
        now.census.free,
        now.census.total,
    )
}

/// `op25b run`: returns when stopped by a signal (Ok) or on a fatal error.
pub fn run(opts: &RunOptions) -> Result<(), RunError> {
    // `failure_mode: open` also needs every prefix with its class (the fallback rule set).
    let (loaded, listing) = config::load_listing(&opts.config)?;
    let rules = (loaded.config.interfaces.failure_mode == FailureMode::Open)
        .then(|| fallback::Rules::new(&loaded, &listing));
    drop(listing);
    let cfg: Config = loaded.config;
    init_logging(cfg.logging.level, cfg.logging.format);
    datapath::xsk::quiet_libbpf(matches!(
        cfg.logging.level,
        LogLevel::Debug | LogLevel::Trace
    ));
    if opts.cleanup {
        for note in datapath::cleanup(&[&cfg.interfaces.subscriber, &cfg.interfaces.upstream])? {
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
        return Ok(());
    }
    let class_names = loaded.report.classes.clone();
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
    datapath::check_privileges()?;
    let _pid = PidFile::create(&cfg.control.pid_file)?;
    let listener = metrics::bind(cfg.control.listen).map_err(|source| RunError::Listen {
        addr: cfg.control.listen,
        source,
    })?;
    let policy = Arc::new(PolicyCell::new(Arc::new(loaded.policy)));
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
    let mut running = datapath::start(&cfg, policy.clone(), stop.clone())?;
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
    tracing::info!(
        subscriber = %running.subscriber.name,
        upstream = %running.upstream.name,
        queues = cfg.interfaces.queues,
        cores = ?cfg.workers.cores,
        mode = %running.mode,
        failure_mode = cfg.interfaces.failure_mode.as_str(),
        frame_size = cfg.interfaces.frame_size,
        ring_size = cfg.interfaces.ring_size,
        frames_per_worker = datapath::frame_count(cfg.interfaces.ring_size, cfg.workers.burst),
        burst = cfg.workers.burst,
        busy_poll = cfg.workers.busy_poll,
        classes = loaded.report.classes.len(),
        table_bytes = policy.load().summary().table_bytes,
        "op25b running (started in {:.0} ms)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mstate = Arc::new(metrics::MetricsState {
        counters: running.counters.clone(),
        policy: policy.clone(),
        class_names: std::sync::Mutex::new(class_names.clone()),
        mode: running.mode.to_string(),
        fast_path: running.fast_path.view(),
        started: Instant::now(),
        last_reload: std::sync::Mutex::new(None),
    });
    let metrics_stop = Arc::new(AtomicBool::new(false));
    let metrics_thread =
        metrics::serve(listener, mstate.clone(), metrics_stop.clone()).map_err(|source| {
            RunError::Listen {
                addr: cfg.control.listen,
                source,
            }
        })?;
    tracing::info!(listen = %cfg.control.listen, "metrics at http://{}/metrics", cfg.control.listen);
    let mut retired: Vec<Arc<crate::policy::Policy>> = Vec::new();
    let interval = cfg.workers.stats_interval;
    let mut prev = total(&running.counters);
    let fast_stats = running.fast_path.view();
    let mut prev_fast = fast_stats.stats();
    let mut last = Instant::now();
    let mut died = false;
    let mut offenders = OffenderLog::default();
    let mut last_top = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        if last_top.elapsed() >= Duration::from_secs(1) {
            last_top = Instant::now();
            offenders.check(&metrics::top(&mstate, OFFENDER_SCAN));
            running.fast_path.refresh();
        }
        if running.any_worker_finished() && !stop.load(Ordering::SeqCst) {
            tracing::error!("a worker thread ended while running");
            died = true;
            break;
        }
        if hup.swap(false, Ordering::SeqCst) {
            let ok = match reload(&opts.config, &cfg, &policy, &mut running.fast_path, open) {
                Ok((old, names)) => {
                    retired.push(old);
                    if let Ok(mut n) = mstate.class_names.lock() {
                        *n = names;
                    }
                    true
                }
                Err(e) => {
                    tracing::error!(
                        "{e}; the policy in force (generation {}) stays",
                        policy.generation()
                    );
                    false
                }
            };
            if let Ok(mut l) = mstate.last_reload.lock() {
                *l = Some((metrics::unix_now(), ok));
            }
        }
        // Old policies are freed here, on the control thread, once no worker holds them.
        retired.retain(|p| Arc::strong_count(p) > 1);
        if opts.duration.is_some_and(|d| t0.elapsed() >= d) {
            tracing::info!("run duration reached");
            break;
        }
        if !interval.is_zero() && last.elapsed() >= interval {
            let now = total(&running.counters);
            let secs = last.elapsed().as_secs_f64();
            let fast_now = fast_stats.stats();
            let fps = |i: usize| fast_now[i].since(&prev_fast[i]).fast as f64 / secs.max(1e-9);
            tracing::info!(
                "{}, fast path out {:.0} fps in {:.0} fps",
                stats_line(&now, &prev, secs),
                fps(0),
                fps(1)
            );
            prev = now;
            prev_fast = fast_now;
            last = Instant::now();
        }
    }
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
    match cfg.interfaces.failure_mode {
        FailureMode::Open => tracing::warn!(
            bridge = %cfg.interfaces.fallback_bridge,
            "failure_mode open: op25b's XDP programs are detached; traffic now crosses bridge {} filtered by nftables table bridge {}_*",
            cfg.interfaces.fallback_bridge,
            fallback::TABLE
        ),
        FailureMode::Closed => tracing::warn!(
            "failure_mode closed: op25b's XDP programs are detached; no traffic crosses {} <-> {} until op25b runs again",
            cfg.interfaces.subscriber,
            cfg.interfaces.upstream
        ),
    }
    metrics_stop.store(true, Ordering::SeqCst);
    let _ = metrics_thread.join();
    for n in &notes {
        tracing::warn!("{n}");
    }
    let sum = total(&counters);
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
    let names_now = mstate
        .class_names
        .lock()
        .map(|n| n.clone())
        .unwrap_or(class_names);
    let mut report = sum.to_json(&names_now);
    report["frames_conserved"] = serde_json::json!(conserved && sum.census.conserved());
    report["workers"] = serde_json::json!(counters.len());
    // The XDP programs' own counters (the maps outlive the detached programs).
    let [fp_sub, fp_up] = fast_view.stats();
    report["fast_path"] = serde_json::json!({
        "enabled": fast_enabled,
        "subscriber": fp_sub.to_json(),
        "upstream": fp_up.to_json(),
    });
    // The interfaces' own drop counters over the run (None: /sys of another namespace).
    let link = |i: usize| match (links_at_start[i], links_at_stop[i]) {
        (Some(a), Some(b)) => serde_json::json!(b.since(a)),
        _ => serde_json::Value::Null,
    };
    report["link_drops"] = serde_json::json!({"subscriber": link(0), "upstream": link(1)});
    report["per_worker"] = counters
        .iter()
        .zip(&exits)
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
    report["mode"] = serde_json::json!(running_mode_str(&exits, &notes));
    report["seconds"] = serde_json::json!(t0.elapsed().as_secs_f64());
    let text = serde_json::to_string_pretty(&report).expect("json");
    crate::control::stdout::write_ignoring_closed(format_args!("{text}\n"));
    if let Some(path) = &opts.report {
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

fn running_mode_str(_exits: &[datapath::WorkerExit], notes: &[String]) -> String {
    if notes.is_empty() {
        "clean shutdown".into()
    } else {
        notes.join("; ")
    }
}

/// Re-reads the config and the prefix files, builds the new policy off the workers and
/// publishes it with one pointer swap. Refuses (and changes nothing) when the file is
/// invalid or when a setting that needs a restart changed. Returns the old policy (the
/// caller frees it once no worker holds it) and the new class names.
///
/// With `fallback` (`failure_mode: open`), the fallback nftables rule set is rebuilt
/// from the same read of the file, so op25b and its fallback never disagree.
pub fn reload(
    path: &Path,
    running: &Config,
    cell: &PolicyCell,
    fast: &mut datapath::fast_path::FastPath,
    fallback: bool,
) -> Result<(Arc<crate::policy::Policy>, Vec<String>), RunError> {
    let t = Instant::now();
    let (loaded, rules) = if fallback {
        config::load_listing(path).map(|(l, listing)| {
            let rules = fallback::Rules::new(&l, &listing);
            (l, Some(rules))
        })
    } else {
        config::load(path).map(|l| (l, None))
    }
    .map_err(|e| RunError::Reload(e.to_string()))?;
    let c = &loaded.config;
    let mut needs_restart = Vec::new();
    if c.interfaces != running.interfaces {
        needs_restart.push("interfaces");
    }
    if c.workers != running.workers {
        needs_restart.push("workers");
    }
    if c.reject_rate != running.reject_rate {
        needs_restart.push("policy.reject_rate");
    }
    if c.control != running.control {
        needs_restart.push("control");
    }
    if c.logging != running.logging {
        needs_restart.push("logging");
    }
    if !needs_restart.is_empty() {
        return Err(RunError::Reload(format!(
            "{} changed; these need a restart of op25b, so nothing was applied",
            needs_restart.join(", ")
        )));
    }
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
    // Ports the new policy may block reach the XDP maps before it is in force, ports it
    // no longer blocks leave them after: no frame it blocks can take the fast path.
    fast.before_publish(&loaded.policy)
        .map_err(|e| RunError::Reload(e.to_string()))?;
    let next = Arc::new(loaded.policy);
    let old = cell.publish(next.clone());
    fast.after_publish(&next, cell.generation());
    drop(next);
    if let Err(e) = fast.set_enabled(c.datapath.fast_path == config::FastPathMode::On) {
        tracing::error!("{e}");
    }
    tracing::info!(
        generation = cell.generation(),
        build_ms = format!("{:.1}", loaded.report.build_time.as_secs_f64() * 1e3),
        total_ms = format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
        old_table_bytes = old_bytes,
        new_table_bytes = new_bytes,
        "policy reloaded from {}",
        path.display()
    );
    Ok((old, loaded.report.classes))
}

/// `op25b reload`: sends SIGHUP to the instance named by the config's pid file.
pub fn signal_reload(config_path: &Path) -> Result<u32, RunError> {
    let loaded = config::load(config_path)?;
    let pid_file = &loaded.config.control.pid_file;
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        RunError::Reload(format!(
            "no op25b is running with this config: cannot read its pid file {} ({e})",
            pid_file.display()
        ))
    })?;
    let pid: u32 = text.trim().parse().map_err(|_| {
        RunError::Reload(format!(
            "{}: not a pid: {:?}",
            pid_file.display(),
            text.trim()
        ))
    })?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "op25b" {
        return Err(RunError::Reload(format!(
            "{}: pid {pid} is not a running op25b (stale pid file?)",
            pid_file.display()
        )));
    }
    // SAFETY: kill(2) with a pid we just checked belongs to op25b; no memory involved.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) } != 0 {
        return Err(RunError::Reload(format!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(pid)
}
