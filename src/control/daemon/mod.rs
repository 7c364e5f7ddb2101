//! The daemon: `op25b run` from start to stop, on the control thread.
//!
//! [`run`] builds a [`Daemon`] (config, logging, signals, pid file, the policy and the
//! overlay, the datapath, then the threads that serve: the HTTP endpoint, the operator
//! socket, RADIUS) and goes round its loop every 50 ms until a signal, a dead worker or
//! `--duration`: [`Daemon::supervise`] (heartbeats, systemd), [`Daemon::every_second`]
//! (the abuse desk, the overlay's expiry and saves, the kernel policy's retries),
//! [`Daemon::maybe_reload`] and [`Daemon::log_stats`]. Then it stops the workers,
//! detaches, joins the threads and writes the final report.
//!
//! * [`reload`]: a reload and `op25b reload`'s client;
//! * [`report`]: the counter line, systemd's status line, the final report;
//! * [`process`]: pid file, signals, capabilities, `--dry-run`, `--cleanup`;
//! * [`systemd`], [`logging`], [`stdout`]: service manager, journal, stdout.
//!
//! Who may call it: `main`/`cli` only. It calls every other room; none calls it.
use crate::config::{self, Config, FailureMode, LogLevel};
use crate::control::export::fallback;
use crate::control::observe::offenders::{KernelOffenders, OffenderLog, OFFENDER_SCAN};
use crate::control::observe::schema::Counts;
use crate::control::observe::{self, http, MetricsState, OperatorDesk, ReloadTrigger};
use crate::control::overlay::quarantine::AutoTracker;
use crate::control::overlay::{operator, state_file, OverlayShared};
use crate::datapath::counters::Snapshot;
use crate::datapath::xdp::PathStats;
use crate::datapath::{self, PolicyCell};
use process::{PidFile, Signals};
use report::StatusLine;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod error;
pub mod logging;
pub mod process;
pub mod reload;
pub mod report;
pub mod stdout;
pub mod systemd;

pub use error::RunError;
pub use process::dry_run;
pub use reload::{reload, request_reload, ReloadAnswer, ReloadRequestError, Reloaded};

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

/// `op25b run`: returns when stopped by a signal (Ok) or on a fatal error.
pub fn run(opts: &RunOptions) -> Result<(), RunError> {
    // The process clock's zero (heartbeats, top lists) is taken before any worker beats.
    let _ = crate::clock::zero();
    let Some(mut daemon) = Daemon::start(opts)? else {
        return Ok(());
    };
    let died = daemon.run_loop();
    daemon.stop(died)
}

/// The threads that serve beside the workers, and how to stop them.
struct Services {
    /// Stops the HTTP endpoint: after the workers, so the last scrape sees the end.
    http_stop: Arc<AtomicBool>,
    http: JoinHandle<()>,
    /// Stops the operator socket and the RADIUS listener, which write the overlay.
    writers_stop: Arc<AtomicBool>,
    operator: Option<JoinHandle<()>>,
    radius: Option<JoinHandle<()>>,
}

/// The last counter line's figures, for the rates of the next.
struct StatsClock {
    prev: Snapshot,
    prev_fast: [PathStats; 2],
    at: Instant,
}

/// systemd's `STATUS=` line and when it was last refreshed.
struct Status {
    line: StatusLine,
    text: String,
    at: Instant,
}

/// The abuse desk's once-a-second state.
struct Desk {
    kernel: KernelOffenders,
    log: OffenderLog,
    auto: AutoTracker,
    at: Instant,
}

/// `op25b run` while it runs: what the main loop reads and keeps.
pub struct Daemon<'a> {
    opts: &'a RunOptions,
    /// The settings in force: reloads update the reloadable ones.
    cfg: Config,
    /// Prefixes per class of the last load (the reload guard compares with it).
    facts: config::diff::PolicyFacts,
    log: logging::LogHandle,
    signals: Signals,
    _pid: PidFile,
    policy: Arc<PolicyCell>,
    overlay: Arc<OverlayShared>,
    running: datapath::Running,
    /// `failure_mode: open`.
    open: bool,
    started: Instant,
    links_at_start: [Option<datapath::nic::LinkDrops>; 2],
    observed: Arc<MetricsState>,
    desk: Arc<OperatorDesk>,
    services: Services,
    supervisor: systemd::Supervisor,
    /// Old policies, freed here once no worker holds them.
    retired: Vec<Arc<crate::policy::Policy>>,
    stats: StatsClock,
    status: Status,
    abuse: Desk,
}

impl<'a> Daemon<'a> {
    /// Everything before the loop. `None`: `--cleanup` did its work.
    fn start(opts: &'a RunOptions) -> Result<Option<Self>, RunError> {
        // `failure_mode: open` also needs every prefix with its class (the fallback rule
        // set); reloads compare the prefixes per class with the previous load.
        let (loaded, listing) = opts.config.load_listing()?;
        let rules = (loaded.config.interfaces.failure_mode == FailureMode::Open)
            .then(|| fallback::Rules::new(&loaded, &listing));
        let facts = config::diff::PolicyFacts::new(&loaded, &listing);
        drop(listing);
        let cfg: Config = loaded.config;
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
            return process::cleanup(&cfg).map(|()| None);
        }
        let signals = Signals::install()?;
        datapath::check_privileges()?;
        let pid = PidFile::create(&cfg.control.pid_file)?;
        // A failed bind does not keep the datapath from starting: the endpoint retries.
        let listener = bind_endpoint(&cfg);
        let policy = Arc::new(PolicyCell::new(Arc::new(loaded.policy)));
        let overlay = start_overlay(&cfg, &policy, &loaded.report);
        let started = Instant::now();
        let open = cfg.interfaces.failure_mode == FailureMode::Open;
        let running = start_datapath(&cfg, &policy, &signals, rules.as_ref())?;
        let links_at_start =
            [&running.subscriber, &running.upstream].map(datapath::nic::link_drops);
        // Everything is attached and bound: from here on the process keeps only the
        // capabilities it uses, before the threads that parse HTTP, RADIUS and JSON start.
        process::drop_capabilities(open, &running.fast_path.view());
        log_started(&cfg, &running, &policy, &loaded.report, started);
        let observed = observed(&cfg, &running, &policy, &overlay);
        let desk = Arc::new(OperatorDesk {
            metrics: observed.clone(),
            reload: ReloadTrigger {
                pending: signals.hup.clone(),
                force: AtomicBool::new(false),
            },
        });
        let services = start_services(&cfg, listener, &overlay, &observed, &desk)?;
        let supervisor = start_supervisor(running.counters.len());
        let fast = running.fast_path.view();
        let prev = Counts::read(&running.counters, &fast).total();
        let status = Status {
            line: StatusLine::new(prev.clone(), fast_sum(&fast)),
            text: String::from("starting"),
            at: Instant::now(),
        };
        let stats = StatsClock {
            prev,
            prev_fast: fast.stats(),
            at: Instant::now(),
        };
        Ok(Some(Self {
            opts,
            cfg,
            facts,
            log,
            signals,
            _pid: pid,
            policy,
            overlay,
            running,
            open,
            started,
            links_at_start,
            observed,
            desk,
            services,
            supervisor,
            retired: Vec::new(),
            stats,
            status,
            abuse: Desk {
                kernel: KernelOffenders::new(),
                log: OffenderLog::default(),
                auto: AutoTracker::default(),
                at: Instant::now(),
            },
        }))
    }

    /// Goes round every 50 ms until a signal, a dead worker (returns true) or
    /// `--duration`.
    fn run_loop(&mut self) -> bool {
        while !self.signals.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            let beats = self.supervise();
            if self.abuse.at.elapsed() >= Duration::from_secs(1) {
                self.abuse.at = Instant::now();
                self.every_second();
            }
            if self.running.any_worker_finished() && !self.signals.stop.load(Ordering::SeqCst) {
                tracing::error!("a worker thread ended while running");
                return true;
            }
            self.maybe_reload(&beats);
            // Old policies are freed here, on the control thread, once no worker holds
            // them.
            self.retired.retain(|p| Arc::strong_count(p) > 1);
            if self
                .opts
                .duration
                .is_some_and(|d| self.started.elapsed() >= d)
            {
                tracing::info!("run duration reached");
                return false;
            }
            self.log_stats();
        }
        false
    }

    /// The workers' heartbeats to systemd (READY=1, the watchdog) and the `STATUS=`
    /// line. Returns the heartbeats.
    fn supervise(&mut self) -> Vec<u64> {
        let beats: Vec<u64> = self
            .running
            .counters
            .iter()
            .map(|c| c.heartbeat_ms())
            .collect();
        let mode = self.running.mode.to_string();
        let generation = self.policy.generation();
        self.supervisor.tick(&beats, crate::clock::beat_ms(), || {
            format!("running ({mode}), policy generation {generation}")
        });
        if self.supervisor.ready() && self.status.text == "starting" {
            self.status.text = format!("running ({mode}), policy generation {generation}");
        }
        if self.supervisor.ready() && self.status.at.elapsed() >= report::STATUS_EVERY {
            self.status.at = Instant::now();
            let fast = self.running.fast_path.view();
            self.status.text = self.status.line.next(
                Counts::read(&self.running.counters, &fast).total(),
                fast_sum(&fast),
                &mode,
                generation,
            );
            self.supervisor.status(&self.status.text);
        }
        beats
    }

    /// Once a second: the kernel's drops into the top list, new offenders logged, the
    /// fast path's state, the kernel policy's retry, the overlay's expiry and saves,
    /// auto-quarantine.
    fn every_second(&mut self) {
        let o = &self.observed;
        self.abuse
            .kernel
            .drain(&mut self.running.offenders, &o.kernel_top);
        // One merge of the top list a second, for the offender log and auto-quarantine.
        let top = observe::top(o, OFFENDER_SCAN);
        self.abuse.log.check(&top);
        self.running.fast_path.refresh();
        self.policy.kernel_retry();
        self.overlay.tick(crate::clock::unix_now());
        self.abuse
            .auto
            .check(&self.overlay, &top, crate::clock::unix_now());
    }

    /// A reload, if one was asked for (SIGHUP or the operator socket's `reload`).
    fn maybe_reload(&mut self, beats: &[u64]) {
        // A reload begins under the status lock, so a requester that read `started`
        // knows which attempt answers it.
        let begun = {
            let mut st = self
                .observed
                .reload
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.signals.hup.swap(false, Ordering::SeqCst).then(|| {
                st.started += 1;
                self.desk.reload.force.swap(false, Ordering::SeqCst)
            })
        };
        let Some(force) = begun else {
            return;
        };
        // A reload runs on this thread: the watchdog gets one ping now and a longer
        // timeout until it is done (a 1M-prefix reload, or nft -f of the fallback, can
        // take seconds).
        self.supervisor.reloading(beats, crate::clock::beat_ms());
        let outcome = reload(
            &self.opts.config,
            &mut self.cfg,
            &mut self.facts,
            &mut self.running.fast_path,
            self.open,
            &self.log,
            &self.overlay,
            force,
        );
        let msg = reload::record_reload(
            outcome,
            &self.observed,
            &self.overlay,
            &mut self.retired,
            self.policy.generation(),
        );
        self.supervisor.reloaded(&format!(
            "{}; last reload: {}",
            self.status.text,
            msg.chars().take(200).collect::<String>()
        ));
    }

    /// The periodic counter line, every `workers.stats_interval_secs`.
    fn log_stats(&mut self) {
        let interval = self.cfg.workers.stats_interval;
        if interval.is_zero() || self.stats.at.elapsed() < interval {
            return;
        }
        let fast = self.running.fast_path.view();
        let now = Counts::read(&self.running.counters, &fast).total();
        let secs = self.stats.at.elapsed().as_secs_f64();
        let fast_now = fast.stats();
        report::log_stats(
            &now,
            &self.stats.prev,
            secs,
            &fast_now,
            &self.stats.prev_fast,
        );
        self.stats = StatsClock {
            prev: now,
            prev_fast: fast_now,
            at: Instant::now(),
        };
    }

    /// Stops the workers, detaches, joins the threads, saves the overlay and writes the
    /// final report.
    fn stop(self, died: bool) -> Result<(), RunError> {
        self.supervisor.stopping();
        match self.signals.signal.load(Ordering::SeqCst) {
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
        let counters = self.running.counters.clone();
        let fast_view = self.running.fast_path.view();
        let fast_enabled = self.running.fast_path.enabled();
        let mode = self.running.mode.to_string();
        let links_at_stop =
            [&self.running.subscriber, &self.running.upstream].map(datapath::nic::link_drops);
        let (exits, notes) = self.running.stop();
        process::log_detached(&self.cfg);
        let s = self.services;
        s.http_stop.store(true, Ordering::SeqCst);
        let _ = s.http.join();
        s.writers_stop.store(true, Ordering::SeqCst);
        for t in [s.operator, s.radius].into_iter().flatten() {
            let _ = t.join();
        }
        self.overlay.save_now();
        for n in &notes {
            tracing::warn!("{n}");
        }
        // The maps outlive the detached programs: their last verdicts are in.
        let sum = Counts::read(&counters, &fast_view).total();
        let conserved = exits.iter().all(|e| e.census.conserved()) && exits.len() == counters.len();
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(
            "final: {}",
            report::stats_line(&sum, &Snapshot::default(), seconds)
        );
        if !conserved {
            tracing::error!(?exits, "frame conservation check FAILED");
        } else {
            tracing::info!("frame conservation holds: every UMEM frame accounted for");
        }
        let class_slots = self.policy.class_slots();
        let report = report::FinalReport {
            sum: &sum,
            class_slots: &class_slots,
            conserved,
            counters: &counters,
            exits: &exits,
            notes: &notes,
            mode: &mode,
            fast_stats: fast_view.stats(),
            fast_verdicts: fast_view.verdicts(),
            fast_mode: fast_view.mode(),
            fast_enabled,
            kernel_valid: self.policy.kernel_valid(),
            kernel_errors: self.policy.kernel_errors.load(Ordering::Relaxed),
            links: [self.links_at_start, links_at_stop],
            seconds,
        }
        .to_json();
        // One line on stdout (one journal entry under systemd); the file is indented.
        let line = serde_json::to_string(&report).expect("json");
        stdout::write_ignoring_closed(format_args!("{line}\n"));
        if let Some(path) = &self.opts.report {
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
}

/// The line that says op25b runs, with what it runs on.
fn log_started(
    cfg: &Config,
    running: &datapath::Running,
    policy: &PolicyCell,
    report: &config::ConfigLoadReport,
    started: Instant,
) {
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
        classes = report.classes.len(),
        table_bytes = policy.load().summary().table_bytes,
        build_ms = format!("{:.1}", report.build_time.as_secs_f64() * 1e3),
        "op25b running (started in {:.0} ms)",
        started.elapsed().as_secs_f64() * 1e3
    );
}

/// What observation reads of the running process.
fn observed(
    cfg: &Config,
    running: &datapath::Running,
    policy: &Arc<PolicyCell>,
    overlay: &Arc<OverlayShared>,
) -> Arc<MetricsState> {
    Arc::new(MetricsState {
        counters: running.counters.clone(),
        policy: policy.clone(),
        mode: running.mode.to_string(),
        fast_path: running.fast_path.view(),
        started: Instant::now(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        reload: std::sync::Mutex::new(observe::ReloadStatus::at_start()),
        overlay: overlay.clone(),
        radius: Default::default(),
        http_top: cfg.control.http_top,
        kernel_top: std::sync::Mutex::new(Vec::new()),
    })
}

/// Frames the XDP programs passed on the fast path, both sides.
fn fast_sum(v: &datapath::fast_path::FastPathView) -> u64 {
    let [a, b] = v.stats();
    a.fast + b.fast
}

/// The control endpoint's socket; a failed bind is logged and retried by the endpoint.
fn bind_endpoint(cfg: &Config) -> Option<std::net::TcpListener> {
    let listen = cfg.control.listen;
    match http::bind(listen) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(
                listen = %listen,
                "control.listen {listen}: {e} (another process holds it?); op25b forwards without metrics and retries the bind every {} s",
                http::BIND_RETRY.as_secs()
            );
            None
        }
    }
}

/// The runtime overlay, from the state file, published before the first frame.
fn start_overlay(
    cfg: &Config,
    policy: &Arc<PolicyCell>,
    report: &config::ConfigLoadReport,
) -> Arc<OverlayShared> {
    let (store, bad_lines) = state_file::load(policy, cfg.control.state_file.as_deref());
    let shared = Arc::new(OverlayShared::new(
        store,
        policy.clone(),
        cfg.control.state_file.clone(),
        report.exempt_class.clone(),
        report.auto_quarantine.clone(),
    ));
    shared.saves.bad_lines.store(bad_lines, Ordering::Relaxed);
    {
        let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
        shared.publish(&mut store);
    }
    shared
}

/// The fallback's rules (`failure_mode: open`), the datapath, then the fallback's bridge.
fn start_datapath(
    cfg: &Config,
    policy: &Arc<PolicyCell>,
    signals: &Signals,
    rules: Option<&fallback::Rules>,
) -> Result<datapath::Running, RunError> {
    fallback::preflight(cfg)?;
    if let Some(rules) = rules {
        // The rules first: the bridge must never forward a frame they have not seen.
        let (table, as_drop) = fallback::install_rules(rules)?;
        tracing::info!(
            "failure_mode open: fallback rule set loaded as nftables table bridge {table}"
        );
        if as_drop {
            tracing::warn!("failure_mode open: this kernel has no reject in the bridge family; the fallback drops what op25b would reject");
        }
    }
    let running = datapath::start(&cfg.datapath, policy.clone(), signals.stop.clone())?;
    if rules.is_some() {
        match fallback::ensure_bridge(cfg) {
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
    Ok(running)
}

/// The RADIUS listener, the operator socket and the HTTP endpoint.
fn start_services(
    cfg: &Config,
    listener: Option<std::net::TcpListener>,
    overlay: &Arc<OverlayShared>,
    observed: &Arc<MetricsState>,
    desk: &Arc<OperatorDesk>,
) -> Result<Services, RunError> {
    let writers_stop = Arc::new(AtomicBool::new(false));
    let radius = process::start_radius(cfg, overlay, &observed.radius, &writers_stop);
    let operator = Arc::new(operator::Operator {
        overlay: overlay.clone(),
        desk: desk.clone(),
    });
    let operator = process::start_operator(cfg, &operator, &writers_stop);
    let http_stop = Arc::new(AtomicBool::new(false));
    let listen = cfg.control.listen;
    let have_listener = listener.is_some();
    let http = http::serve(listener, listen, observed.clone(), http_stop.clone())
        .map_err(RunError::Listen)?;
    if have_listener {
        tracing::info!(listen = %listen, "metrics at http://{listen}/metrics");
    }
    Ok(Services {
        http_stop,
        http,
        writers_stop,
        operator,
        radius,
    })
}

/// systemd's notifier and watchdog, watching `workers` heartbeats.
fn start_supervisor(workers: usize) -> systemd::Supervisor {
    let notifier = systemd::Notifier::from_env().unwrap_or_else(|e| {
        tracing::error!("NOTIFY_SOCKET: {e}; systemd will not hear READY=1 or watchdog pings");
        systemd::Notifier::disabled()
    });
    let watchdog = systemd::watchdog_from_env();
    let supervisor = systemd::Supervisor::new(notifier, watchdog, workers);
    if let Some(w) = watchdog {
        tracing::info!(
            "systemd watchdog every {:.1} s: pings while every worker beats within {:.1} s",
            w.as_secs_f64(),
            supervisor.stall_ms() as f64 / 1e3
        );
    }
    supervisor
}
