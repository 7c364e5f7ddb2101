//! Reloads: `SIGHUP` or `op25b reload` on the running daemon ([`reload`], run on the
//! control thread, and [`record_reload`], which files its outcome for the operator
//! socket and the metrics), and `op25b reload`'s client ([`request_reload`]).

use super::error::RunError;
use crate::config::{self, Config};
use crate::control::export::fallback;
use crate::control::observe::MetricsState;
use crate::control::overlay::OverlayShared;
use crate::datapath::{self, PolicyCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records a reload's outcome in the reload status (operator socket, metrics) and
/// applies what the control plane holds (exempt class, auto-quarantine);
/// the old policy waits in `retired` until no worker holds it. Returns the message.
pub fn record_reload(
    outcome: Result<Reloaded, RunError>,
    mstate: &MetricsState,
    shared: &OverlayShared,
    retired: &mut Vec<Arc<crate::policy::Policy>>,
    generation: u64,
) -> String {
    let mut st = mstate.reload.lock().unwrap_or_else(|p| p.into_inner());
    st.attempts += 1;
    st.last_at = crate::clock::unix_now();
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
    log: &super::logging::LogHandle,
    overlay: &OverlayShared,
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
    check_mtu(running, c.datapath.fast_path)?;
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
    let summary = summary(
        cell.generation(),
        &diff,
        &losses,
        &settings,
        &restart_pending,
    );
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

/// Refuses a fast-path mode that the running interfaces' MTU does not allow.
fn check_mtu(running: &Config, mode: datapath::settings::FastPathMode) -> Result<(), RunError> {
    for name in [&running.datapath.subscriber, &running.datapath.upstream] {
        let Ok(nic) = datapath::nic::inspect(name) else {
            continue;
        };
        datapath::check_mtu(name, nic.mtu, running.datapath.frame_size, mode)
            .map_err(RunError::ReloadMtu)?;
    }
    Ok(())
}

/// What an applied reload changed, in one line.
fn summary(
    generation: u64,
    diff: &impl std::fmt::Display,
    losses: &[String],
    settings: &[String],
    restart_pending: &[String],
) -> String {
    let mut summary = format!("applied: policy generation {generation}; {diff}");
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
    summary
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
    let asked = crate::control::overlay::operator::request(
        socket,
        &serde_json::json!({"op": "reload", "force": force}),
    )
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
        match crate::control::overlay::operator::request(
            socket,
            &serde_json::json!({"op": "reload_status"}),
        ) {
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
