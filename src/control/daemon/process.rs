//! The process around the daemon: the pid file, signals, capabilities, the
//! `--dry-run` and `--cleanup` modes, and starting the threads that serve the overlay's
//! writers (RADIUS, the operator socket).

use super::error::RunError;
use crate::config::{Config, FailureMode};
use crate::control::export::fallback;
use crate::control::overlay::{operator, radius, OverlayShared};
use crate::datapath;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The pid file, removed when dropped.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> Result<Self, RunError> {
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

/// `op25b run --cleanup`: detaches what a killed instance left on the interfaces and
/// removes a stale pid file.
pub fn cleanup(cfg: &Config) -> Result<(), RunError> {
    for note in datapath::cleanup(&[&cfg.datapath.subscriber, &cfg.datapath.upstream])? {
        tracing::info!("{note}");
        super::stdout::write_ignoring_closed(format_args!("{note}\n"));
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
            super::stdout::write_ignoring_closed(format_args!(
                "removed stale pid file {}\n",
                pid.display()
            ));
        }
    }
    Ok(())
}

/// SIGINT/SIGTERM set `stop` (and which one in `signal`); SIGHUP sets `hup`.
pub struct Signals {
    /// Set by SIGINT and SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// Which of them (0: none yet).
    pub signal: Arc<std::sync::atomic::AtomicUsize>,
    /// Set by SIGHUP (and the operator socket's `reload`).
    pub hup: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> Result<Self, RunError> {
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

/// The RADIUS accounting listener, if configured (a failed bind is logged: op25b runs
/// without the feed).
pub fn start_radius(
    cfg: &Config,
    shared: &Arc<OverlayShared>,
    counters: &Arc<radius::Counters>,
    stop: &Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    match &cfg.radius {
        None => None,
        Some(r) => match radius::serve(r.clone(), shared.clone(), counters.clone(), stop.clone()) {
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
pub fn start_operator(
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
pub fn drop_capabilities(open: bool, fast: &datapath::fast_path::FastPathView) {
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
pub fn log_detached(cfg: &Config) {
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
