//! The datapath: UMEM, rings, NIC setup, the XDP program and the worker threads. The
//! only module of the appliance with `unsafe` (in `xsk.rs`, `xdp.rs`, `nic.rs`,
//! `privileges.rs` and the `clock` below); it asks `classify` for every decision and
//! never reads the config ([`settings::DatapathSettings`], which the config builds, is
//! what it needs to start).
//!
//! * [`io`]: the [`io::FrameIo`] seam and an in-memory implementation for tests;
//! * [`worker`]: the burst loop, generic over `FrameIo`;
//! * [`counters`]: per-worker counters and frame census;
//! * `xsk`: AF_XDP sockets sharing one UMEM per worker (xsk-rs / libxdp);
//! * [`settings`]: [`settings::DatapathSettings`] and the ring geometry derived from it;
//! * `nic`: interface checks, promiscuous mode, XDP attach state;
//! * `xdp`: op25b's XDP program and its socket map, attached through a bpf_link (the
//!   kernel detaches it when the process ends, however it ends);
//! * [`privileges`]: dropping capabilities after start (each worker drops all of its own
//!   when it starts; the control plane keeps only what it uses).

pub mod counters;
pub mod fast_path;
pub mod io;
pub mod nic;
pub mod privileges;

/// The kernel's CLOCK_MONOTONIC: the clock the benchmark tags and the XDP program's
/// offender times carry (the only clock every network namespace shares).
pub mod clock {
    /// CLOCK_MONOTONIC in microseconds.
    #[inline]
    pub fn monotonic_us() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid out-pointer for the call; CLOCK_MONOTONIC always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
    }

    /// CLOCK_MONOTONIC nanoseconds of the process clock's zero ([`crate::clock::zero`]):
    /// turns the XDP program's `bpf_ktime_get_ns` times into [`crate::clock::secs`].
    pub fn zero_ns() -> u64 {
        let now_ns = monotonic_us().saturating_mul(1000);
        now_ns.saturating_sub(crate::clock::zero().0.elapsed().as_nanos() as u64)
    }

    #[cfg(test)]
    mod tests {
        /// The zero is in the past, and the monotonic clock converted with it agrees
        /// with the process clock.
        #[test]
        fn the_kernel_clock_converts_to_the_process_clock() {
            let now = super::monotonic_us() * 1000;
            let z = super::zero_ns();
            assert!(z <= now);
            let c = crate::clock::secs();
            let from_mono = crate::clock::of_monotonic(now, z);
            assert!(from_mono.abs_diff(c) <= 1, "{from_mono} vs {c}");
        }
    }
}
pub mod kernel;
pub mod settings;
pub mod worker;
pub mod xdp;
pub mod xsk;

use crate::policy::Policy;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The policy the workers read: an atomic pointer to an immutable [`Policy`] plus a
/// generation number. Workers load it once per burst and never block; the control
/// plane publishes a new one with one pointer swap.
pub struct PolicyCell {
    policy: ArcSwap<Policy>,
    generation: AtomicU64,
    /// The per-class counter slots: every policy published here gets its table first.
    class_slots: std::sync::Mutex<counters::ClassSlots>,
    /// The runtime overlay (per-subscriber classes), published apart from the policy:
    /// an update never needs a reload.
    overlay: ArcSwap<Overlay>,
    /// The XDP program's copy of the policy and overlay ([`kernel`]), written before
    /// the workers' on every publish, once the datapath has loaded the programs.
    kernel: std::sync::Mutex<Option<kernel::KernelPolicy>>,
    /// Writes of the kernel's copy that failed since start.
    pub kernel_errors: AtomicU64,
    /// Whether the kernel's copy is complete and in force, as of the last write (read
    /// without the lock: a scrape must not wait for a long publish).
    kernel_ok: AtomicBool,
}

impl PolicyCell {
    pub fn new(policy: Arc<Policy>) -> Self {
        let mut class_slots = counters::ClassSlots::default();
        class_slots.assign(&policy);
        Self {
            policy: ArcSwap::new(policy),
            generation: AtomicU64::new(1),
            class_slots: std::sync::Mutex::new(class_slots),
            overlay: ArcSwap::new(Arc::new(Overlay::default())),
            kernel: std::sync::Mutex::new(None),
            kernel_errors: AtomicU64::new(0),
            kernel_ok: AtomicBool::new(false),
        }
    }

    fn kernel_lock(&self) -> std::sync::MutexGuard<'_, Option<kernel::KernelPolicy>> {
        self.kernel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records whether `k`'s copy is in force (after every write of it).
    fn kernel_state(&self, k: &kernel::KernelPolicy) {
        self.kernel_ok.store(!k.invalid(), Ordering::Relaxed);
    }

    fn kernel_failed(&self, e: &kernel::KernelError) {
        self.kernel_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!("{e}; until a write succeeds, every frame the XDP program would judge goes to the workers");
    }

    /// Hands the cell the writer of the XDP program's policy maps and writes the policy
    /// and overlay in force into them. From here on every publish writes the kernel's
    /// copy first.
    pub fn attach_kernel(&self, mut k: kernel::KernelPolicy) -> Result<(), kernel::KernelError> {
        let policy = self.policy.load_full();
        let result = k.publish(&policy).and_then(|p| {
            tracing::info!(
                "XDP policy generation {}: {} subscriber prefixes, {} allowed destinations written in {} ms",
                p.generation,
                p.subscribers,
                p.allowed,
                p.millis
            );
            let overlay = self.load_overlay();
            k.write_overlay(overlay.for_policy(&policy), None, &policy)
        });
        self.kernel_state(&k);
        *self.kernel_lock() = Some(k);
        result
    }

    /// Retries a kernel write that failed (once a second, from the control thread).
    pub fn kernel_retry(&self) {
        let mut guard = self.kernel_lock();
        let Some(k) = guard.as_mut() else { return };
        if !k.invalid() && !k.overlay_dirty() {
            return;
        }
        // A write that keeps failing (out of memory) is retried with a growing wait:
        // a 1M-prefix rewrite every second would cost more than the failure.
        if !k.retry_due(std::time::Instant::now()) {
            return;
        }
        let policy = self.policy.load_full();
        let overlay = self.load_overlay();
        let result = k
            .publish(&policy)
            .and_then(|_| k.write_overlay(overlay.for_policy(&policy), None, &policy));
        self.kernel_state(k);
        match result {
            Ok(()) => {
                tracing::info!("the XDP program's policy is written again: it judges in the kernel")
            }
            Err(e) => {
                self.kernel_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("kernel policy retry failed: {e}");
            }
        }
    }

    /// True while the kernel's copy is complete and in force (false before the datapath
    /// attached it). Never waits for a write in progress.
    pub fn kernel_valid(&self) -> bool {
        self.kernel_ok.load(Ordering::Relaxed)
    }

    /// The current overlay (a cheap, lock-free load). Its class ids are valid for the
    /// policy of its `generation` only.
    pub fn load_overlay(&self) -> arc_swap::Guard<Arc<Overlay>> {
        self.overlay.load()
    }

    /// Publishes an overlay snapshot: to the XDP program's maps first (`changed`: the
    /// prefixes changed since the last snapshot, `None`: all), then to the workers. When
    /// it returns, an entry is in force in both.
    pub fn publish_overlay(&self, next: Arc<Overlay>, changed: Option<&[ipnet::IpNet]>) {
        {
            let mut guard = self.kernel_lock();
            if let Some(k) = guard.as_mut() {
                let policy = self.policy.load_full();
                let result = if next.policy_id == Overlay::policy_id_of(&policy) {
                    k.write_overlay(&next, changed, &policy)
                } else {
                    // Built for another policy (cannot happen under the store's lock):
                    // the kernel's copy is rewritten whole with the next snapshot.
                    k.write_overlay(Overlay::empty(), None, &policy)
                };
                if let Err(e) = result {
                    self.kernel_failed(&e);
                }
                self.kernel_state(k);
            }
        }
        self.overlay.store(next);
    }

    /// The current policy (a cheap, lock-free load).
    pub fn load(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// The names behind the per-class counter slots, sorted by name
    /// ([`counters::ClassSlots::named`]).
    pub fn class_slots(&self) -> Vec<(usize, String)> {
        self.class_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .named()
    }

    /// The class name behind counter slot `slot`.
    pub fn class_slot_name(&self, slot: usize) -> Option<String> {
        self.class_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .name(slot)
            .map(str::to_string)
    }

    /// Generation of the current policy (1 at start, +1 per publish).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Publishes `next`; returns the previous policy so the caller, not a worker, frees
    /// it (after the workers have moved to the new generation).
    pub fn publish(&self, next: Arc<Policy>) -> Arc<Policy> {
        self.class_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .assign(&next);
        if let Some(k) = self.kernel_lock().as_mut() {
            match k.publish(&next) {
                Ok(p) => tracing::info!(
                    "XDP policy generation {}: {} subscriber prefixes, {} allowed destinations written in {} ms",
                    p.generation,
                    p.subscribers,
                    p.allowed,
                    p.millis
                ),
                Err(e) => self.kernel_failed(&e),
            }
            self.kernel_state(k);
        }
        let old = self.policy.swap(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }
}

use crate::policy::overlay::Overlay;
use counters::{FrameCensus, WorkerCounters};
use crossbeam_utils::CachePadded;
use settings::{DatapathSettings, FastPathMode, XdpMode};
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

/// Why `op25b run` could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("missing privileges: {0}; run as root or grant them (see docs/operations.md)")]
    NotPrivileged(String),
    #[error(transparent)]
    Nic(#[from] nic::NicError),
    #[error("interface {name:?} has {queues} queue(s); interfaces.queues asks for {wanted} (queues 0..{wanted}); lower interfaces.queues or add channels with `ethtool -L`")]
    Queues {
        name: String,
        queues: u32,
        wanted: u32,
    },
    #[error("interface {name:?} has {queues} RX queues but interfaces.queues is {wanted}: frames the NIC steers to queues {wanted}..{queues} would be lost; set interfaces.queues: {queues} (and one core each) or reduce the channels with `ethtool -L {name} combined {wanted}`")]
    UnservedQueues {
        name: String,
        queues: u32,
        wanted: u32,
    },
    #[error("interface {name:?} has MTU {mtu}, but frames of {frame_size} B hold at most MTU {max} (frame minus 256 B XDP headroom, Ethernet header and two VLAN tags); raise interfaces.frame_size, lower the MTU, or use datapath.fast_path: kernel (which judges bigger frames in the kernel)")]
    Mtu {
        name: String,
        mtu: u32,
        max: u32,
        frame_size: u32,
    },
    #[error("interface {name:?} already has XDP program id {prog} attached; another op25b or XDP tool owns it (after a crash: `op25b run --cleanup --config FILE` or `ip link set dev {name} xdp off`)")]
    XdpAttached { name: String, prog: u32 },
    #[error("cannot query XDP state of {name:?}: {source}")]
    XdpQuery {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot write the policy into op25b's XDP program's maps: {0}")]
    KernelPolicy(kernel::KernelError),
    #[error("cannot load op25b's XDP program for {name:?}: {source} (EPERM/EACCES: op25b needs CAP_BPF and CAP_PERFMON, or the kernel's verifier refused the program: set logging.level: debug to see its log)")]
    XdpLoad {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot attach op25b's XDP program to {name:?}: {attempts}")]
    XdpAttach { name: String, attempts: String },
    #[error("workers.cores names core {core}, but this machine has cores {available}")]
    NoSuchCore { core: usize, available: String },
    #[error("cannot set {name:?} promiscuous: {source}")]
    Promisc {
        name: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Xsk(#[from] xsk::XskError),
    #[error(transparent)]
    FastPath(#[from] fast_path::FastPathError),
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot read /dev/urandom for the SMTP notice's cookie key: {0}")]
    CookieKey(std::io::Error),
}

/// Per-worker result at exit.
#[derive(Clone, Copy, Debug)]
pub struct WorkerExit {
    pub census: FrameCensus,
}

/// A running datapath.
pub struct Running {
    pub mode: xsk::ModeInUse,
    pub subscriber: nic::Nic,
    pub upstream: nic::Nic,
    pub counters: Vec<Arc<CachePadded<WorkerCounters>>>,
    /// The XDP fast path's settings (the control thread keeps them in step).
    pub fast_path: fast_path::FastPath,
    /// The abuse desk's list of the sources whose attempts the XDP program dropped (the
    /// control thread drains it).
    pub offenders: kernel::OffenderReader,
    workers: Vec<JoinHandle<WorkerExit>>,
    stop: Arc<AtomicBool>,
    /// Subscriber and upstream programs: dropped (detached) after the workers stop.
    links: Vec<xdp::XdpLink>,
    _promisc: Vec<nic::Promisc>,
}

/// Bytes the kernel keeps free in front of each frame (XDP_PACKET_HEADROOM).
pub const XDP_HEADROOM: u32 = 256;

/// Fails with the list of missing capabilities, if any.
pub fn check_privileges() -> Result<(), StartError> {
    let missing = nic::missing_capabilities();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StartError::NotPrivileged(missing.join(", ")))
    }
}

/// The largest MTU a worker takes whole with UMEM frames of `frame_size` bytes: a frame
/// holds the XDP headroom, the Ethernet header, two VLAN tags and the MTU.
pub fn max_mtu(frame_size: u32) -> u32 {
    use crate::classify::wire::{ETH_HEADER, VLAN_TAG};
    frame_size.saturating_sub(XDP_HEADROOM + (ETH_HEADER + 2 * VLAN_TAG) as u32)
}

/// Interface `name` with `mtu` in `mode`, against UMEM frames of `frame_size` bytes: at
/// start ([`preflight`]) and at every reload that sets the mode. Modes `unblockable` and
/// `off` need every frame a worker may have to judge to fit a UMEM frame: a larger MTU is
/// refused. Mode `kernel` judges bigger frames in the kernel by their headers (the
/// program is `xdp.frags`-aware); one that needs a worker and does not fit is dropped
/// and counted (`dropped_too_big`): the MTU is accepted with the returned warning.
pub fn check_mtu(
    name: &str,
    mtu: u32,
    frame_size: u32,
    mode: FastPathMode,
) -> Result<Option<String>, StartError> {
    let max = max_mtu(frame_size);
    if mtu <= max {
        return Ok(None);
    }
    if mode != FastPathMode::Kernel {
        return Err(StartError::Mtu {
            name: name.to_string(),
            mtu,
            max,
            frame_size,
        });
    }
    Ok(Some(format!(
        "warning: interface {name} has MTU {mtu} above the {max} a {frame_size} B UMEM frame holds: frames that need a worker (replies, fragments, headers the XDP program does not parse) and are larger are dropped and counted; raise interfaces.frame_size (4096 holds MTU {}) to let the workers take them",
        max_mtu(4096)
    )))
}

/// The start-up checks (`op25b run --dry-run` prints them): privileges, both
/// interfaces (present, queues, MTU against the frame size, no other XDP program), the
/// worker cores. Returns the interfaces and what was checked, warnings prefixed with
/// `warning: `; attaches nothing.
pub fn preflight(cfg: &DatapathSettings) -> Result<(nic::Nic, nic::Nic, Vec<String>), StartError> {
    check_privileges()?;
    let mut notes = vec![
        "privileges: CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK present"
            .to_string(),
    ];
    let sub = nic::inspect(&cfg.subscriber)?;
    let up = nic::inspect(&cfg.upstream)?;
    let max_mtu = max_mtu(cfg.frame_size);
    for n in [&sub, &up] {
        let queues = n.rx_queues.min(n.tx_queues);
        if cfg.queues > queues {
            return Err(StartError::Queues {
                name: n.name.clone(),
                queues,
                wanted: cfg.queues,
            });
        }
        if n.rx_queues > cfg.queues {
            return Err(StartError::UnservedQueues {
                name: n.name.clone(),
                queues: n.rx_queues,
                wanted: cfg.queues,
            });
        }
        if let Some(warning) = check_mtu(&n.name, n.mtu, cfg.frame_size, cfg.fast_path)? {
            notes.push(warning);
        }
        match nic::xdp_program(n.ifindex) {
            Ok(None) => {}
            Ok(Some(prog)) => {
                return Err(StartError::XdpAttached {
                    name: n.name.clone(),
                    prog,
                })
            }
            Err(source) => {
                return Err(StartError::XdpQuery {
                    name: n.name.clone(),
                    source,
                })
            }
        }
        notes.push(format!(
            "interface {}: ifindex {}, {} rx / {} tx queue(s) (config: {}), MTU {} (at most {max_mtu} with frame_size {}), no XDP program attached",
            n.name, n.ifindex, n.rx_queues, n.tx_queues, cfg.queues, n.mtu, cfg.frame_size
        ));
        if !n.up {
            notes.push(format!(
                "warning: interface {} is down; frames will flow once it is up",
                n.name
            ));
        }
        match nic::rx_vlan_offload(&n.name) {
            Ok(true) => notes.push(format!(
                "warning: interface {0} strips VLAN tags on receive (rx-vlan-offload on): tagged frames may reach XDP without their tag and cross untagged; turn it off: ethtool -K {0} rxvlan off",
                n.name
            )),
            Ok(false) => notes.push(format!("interface {}: rx-vlan-offload off", n.name)),
            Err(e) => notes.push(format!(
                "interface {}: rx-vlan-offload unknown ({e})",
                n.name
            )),
        }
        if nic::driver(&n.name).is_ok_and(|d| d == "veth") {
            notes.push(format!("warning: {}", nic::veth_warning(&n.name)));
        }
    }
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    for &c in &cfg.cores {
        if !cores.contains(&c) {
            let available = format!("{cores:?}");
            return Err(StartError::NoSuchCore { core: c, available });
        }
    }
    notes.push(format!(
        "worker cores {:?}: available (this process may run on {cores:?})",
        cfg.cores
    ));
    Ok((sub, up, notes))
}

/// Checks everything that can be checked, opens every socket, then starts the workers.
/// On error nothing is left running or attached.
pub fn start(
    cfg: &DatapathSettings,
    policy: Arc<PolicyCell>,
    stop: Arc<AtomicBool>,
) -> Result<Running, StartError> {
    nic::raise_memlock();
    let (sub, up, notes) = preflight(cfg)?;
    for n in notes {
        if let Some(w) = n.strip_prefix("warning: ") {
            tracing::warn!("{w}");
        }
    }
    let promisc = [&sub, &up]
        .iter()
        .map(|n| {
            nic::promiscuous(n.ifindex).map_err(|source| StartError::Promisc {
                name: n.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (programs, offenders, mut fast_path) = load_programs(cfg, &sub, &up, &policy)?;
    let (links, link_notes) = attach_links(&sub, &up, &programs, cfg.xdp_mode)?;
    // Some drivers take redirected frames only once an XDP program is attached.
    fast_path.refresh();
    let (ios, mode) = open_sockets(cfg, &sub, &up, &links, &link_notes)?;
    let wcfg = worker::WorkerConfig::new(
        cfg,
        crate::classify::notice::CookieKey::random().map_err(StartError::CookieKey)?,
    );
    let (counters, workers) = spawn_workers(cfg, ios, wcfg, &policy, &stop)?;
    Ok(Running {
        mode,
        subscriber: sub,
        upstream: up,
        counters,
        fast_path,
        offenders,
        workers,
        stop,
        links,
        _promisc: promisc,
    })
}

/// Loads op25b's program for both interfaces (the upstream copy shares the subscriber
/// copy's policy maps), writes the policy in force into its maps and sets up the fast
/// path; attaches nothing.
fn load_programs(
    cfg: &DatapathSettings,
    sub: &nic::Nic,
    up: &nic::Nic,
    policy: &PolicyCell,
) -> Result<
    (
        [xdp::Program; 2],
        kernel::OffenderReader,
        fast_path::FastPath,
    ),
    StartError,
> {
    // Load both programs and write their settings before attaching them: from the first
    // frame on, what the policy can never block takes the fast path (while no socket is
    // registered, the rest goes to the kernel stack, counted as passed).
    // The upstream copy shares the subscriber copy's policy maps.
    let load = |n: &nic::Nic, with: Option<&xdp::SharedMaps>| {
        xdp::Program::load_sharing(cfg.queues, with).map_err(|source| StartError::XdpLoad {
            name: n.name.clone(),
            source,
        })
    };
    let first = load(sub, None)?;
    let second = load(up, Some(first.shared()))?;
    let programs = [first, second];
    let load_failed = |source| StartError::XdpLoad {
        name: sub.name.clone(),
        source,
    };
    // The policy and overlay in force into the kernel's maps, whatever the mode: a
    // reload that turns mode kernel on finds them ready.
    let shared = programs[0].shared().try_clone().map_err(load_failed)?;
    let offenders = kernel::OffenderReader::new(&shared).map_err(load_failed)?;
    kernel::KernelPolicy::new(shared)
        .and_then(|k| policy.attach_kernel(k))
        .map_err(StartError::KernelPolicy)?;
    let clones = match (programs[0].try_clone(), programs[1].try_clone()) {
        (Ok(a), Ok(b)) => [a, b],
        (Err(source), _) | (_, Err(source)) => return Err(load_failed(source)),
    };
    let fast_path = fast_path::FastPath::new(
        clones,
        [&sub.name, &up.name],
        [sub.ifindex, up.ifindex],
        cfg.fast_path,
        cfg.frame_size - XDP_HEADROOM,
        &policy.load(),
        policy.generation(),
        xdp::takes_redirects,
    )?;
    Ok((programs, offenders, fast_path))
}

/// Opens one worker's pair of AF_XDP sockets per queue (on error, those opened are
/// closed before the caller drops the links). Returns them and the mode the kernel gave.
fn open_sockets(
    cfg: &DatapathSettings,
    sub: &nic::Nic,
    up: &nic::Nic,
    links: &[xdp::XdpLink],
    link_notes: &[String],
) -> Result<(Vec<xsk::XskIo>, xsk::ModeInUse), StartError> {
    let mut ios = Vec::new();
    let mut mode = None;
    for q in 0..cfg.queues {
        match xsk::XskIo::open(&sub.name, &up.name, q, cfg, [&links[0], &links[1]]) {
            Ok((io, m, mut failed)) => {
                failed.splice(0..0, link_notes.iter().cloned());
                if q == 0 && !failed.is_empty() {
                    tracing::info!(
                        "AF_XDP: using {m}; better modes unavailable: {}",
                        failed.join("; ")
                    );
                }
                mode.get_or_insert(m);
                ios.push(io);
            }
            Err(e) => {
                drop(ios);
                return Err(e.into());
            }
        }
    }
    let mode = mode.expect("at least one queue");
    Ok((ios, mode))
}

/// Starts one worker thread per socket pair, pinned to its core. Each worker says when
/// its state is built (fill rings primed), then waits until memory is locked with all of
/// it resident: only then does it take its first frame (the RX rings hold what arrives
/// meanwhile).
#[allow(clippy::type_complexity)]
fn spawn_workers(
    cfg: &DatapathSettings,
    ios: Vec<xsk::XskIo>,
    wcfg: worker::WorkerConfig,
    policy: &Arc<PolicyCell>,
    stop: &Arc<AtomicBool>,
) -> Result<
    (
        Vec<Arc<CachePadded<WorkerCounters>>>,
        Vec<JoinHandle<WorkerExit>>,
    ),
    StartError,
> {
    let mut counters = Vec::new();
    let mut workers = Vec::new();
    // `go` is closed, never sent on.
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<usize>(cfg.queues as usize);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    for (i, io) in ios.into_iter().enumerate() {
        let c = Arc::new(CachePadded::new(WorkerCounters::new()));
        counters.push(c.clone());
        let core = cfg.cores.get(i).copied();
        let policy = policy.clone();
        let stop_w = stop.clone();
        let ready = ready_tx.clone();
        let go = go_rx.clone();
        let h = std::thread::Builder::new()
            .name(format!("op25b-w{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(worker = i, core, "could not pin worker to its core");
                    }
                }
                // A worker only uses the descriptors it was given: no capability.
                if let Err(e) = privileges::drop_all_in_this_thread() {
                    tracing::error!(worker = i, "cannot drop the worker's capabilities: {e}");
                }
                let mut w = worker::Worker::new(io, wcfg, policy, c);
                let _ = ready.send(i);
                let _ = go.recv();
                w.run(&stop_w);
                WorkerExit { census: w.census() }
            });
        match h {
            Ok(h) => workers.push(h),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                drop(go_tx); // release the workers already waiting, so they can stop
                for h in workers {
                    let _ = h.join();
                }
                return Err(StartError::Thread(e));
            }
        }
    }
    drop(ready_tx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for _ in 0..workers.len() {
        // A worker that died before saying so closes its sender: the loop ends early and
        // the control thread sees the dead worker at once.
        if ready_rx.recv_deadline(deadline).is_err() {
            break;
        }
    }
    match nic::lock_memory() {
        Ok(kib) => tracing::info!(locked_kib = kib, "memory locked (mlockall): UMEM, rings and worker state resident before the first frame"),
        Err(e) => tracing::warn!("cannot lock memory (mlockall: {e}): pages may be faulted in or swapped on the frame path; grant CAP_IPC_LOCK"),
    }
    drop(go_tx);
    Ok((counters, workers))
}

/// Attaches op25b's program to both interfaces in the best mode the config allows
/// (both in the same mode). Returns the links and why better modes failed.
fn attach_links(
    sub: &nic::Nic,
    up: &nic::Nic,
    programs: &[xdp::Program; 2],
    mode: XdpMode,
) -> Result<(Vec<xdp::XdpLink>, Vec<String>), StartError> {
    let natives: &[bool] = match mode {
        XdpMode::Auto => &[true, false],
        XdpMode::Native => &[true],
        XdpMode::Generic => &[false],
    };
    let mut attempts = Vec::new();
    let mut failed_on = sub;
    for &native in natives {
        let how = if native { "native" } else { "generic" };
        let first = match xdp::XdpLink::attach(&programs[0], sub.ifindex, native) {
            Ok(l) => l,
            Err(e) => {
                attempts.push(format!("{how} XDP on {}: {e}", sub.name));
                failed_on = sub;
                continue;
            }
        };
        match xdp::XdpLink::attach(&programs[1], up.ifindex, native) {
            Ok(second) => return Ok((vec![first, second], attempts)),
            Err(e) => {
                attempts.push(format!("{how} XDP on {}: {e}", up.name));
                failed_on = up;
            }
        }
    }
    Err(StartError::XdpAttach {
        name: failed_on.name.clone(),
        attempts: attempts.join("; "),
    })
}

/// After the links are dropped, make sure no XDP program is left (the kernel detaches a
/// link's program when its last descriptor closes; this reports anything else).
fn detach_leftovers(nics: &[&nic::Nic]) -> Vec<String> {
    let mut notes = Vec::new();
    for n in nics {
        if let Ok(Some(prog)) = nic::xdp_program(n.ifindex) {
            match nic::detach_xdp(n.ifindex) {
                Ok(()) => notes.push(format!(
                    "detached leftover XDP program {prog} from {}",
                    n.name
                )),
                Err(e) => notes.push(format!(
                    "could not detach XDP program {prog} from {}: {e}",
                    n.name
                )),
            }
        }
    }
    notes
}

impl Running {
    /// Stops the workers (they flush their TX rings), closes the sockets and checks that
    /// no XDP program is left. Returns each worker's final frame census.
    pub fn stop(mut self) -> (Vec<WorkerExit>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut exits = Vec::new();
        let mut notes = Vec::new();
        for (i, h) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            match h.join() {
                Ok(e) => exits.push(e),
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    notes.push(format!("worker {i} panicked: {msg}"));
                }
            }
        }
        drop(std::mem::take(&mut self.links));
        notes.extend(detach_leftovers(&[&self.subscriber, &self.upstream]));
        (exits, notes)
    }

    /// True once any worker thread has ended (on stop, or when one crashed or panicked).
    pub fn any_worker_finished(&self) -> bool {
        self.workers.iter().any(|h| h.is_finished())
    }
}

/// `--cleanup`: detaches XDP programs from the named interfaces. Returns what it did.
pub fn cleanup(names: &[&str]) -> Result<Vec<String>, nic::NicError> {
    let mut notes = Vec::new();
    for name in names {
        let n = nic::inspect(name)?;
        match nic::xdp_program(n.ifindex) {
            Ok(Some(prog)) => {
                nic::detach_xdp(n.ifindex).map_err(|e| nic::NicError::Io(n.name.clone(), e))?;
                notes.push(format!("{name}: detached XDP program {prog}"));
            }
            Ok(None) => notes.push(format!("{name}: no XDP program attached")),
            Err(e) => return Err(nic::NicError::Io(n.name.clone(), e)),
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Modes unblockable and off refuse an MTU a UMEM frame cannot hold, at start and at
    /// reload; mode kernel accepts it with a warning naming the limit.
    #[test]
    fn mtu_above_the_umem_frame_is_refused_but_in_mode_kernel() {
        assert_eq!(max_mtu(2048), 1770);
        assert_eq!(max_mtu(4096), 3818);
        for mode in [
            FastPathMode::Kernel,
            FastPathMode::Unblockable,
            FastPathMode::Off,
        ] {
            assert!(matches!(check_mtu("d0", 1770, 2048, mode), Ok(None)));
        }
        for mode in [FastPathMode::Unblockable, FastPathMode::Off] {
            let e = check_mtu("d1", 9000, 2048, mode).unwrap_err();
            assert!(
                e.to_string()
                    .contains("\"d1\" has MTU 9000, but frames of 2048 B hold at most MTU 1770"),
                "{e}"
            );
        }
        let w = check_mtu("d1", 9000, 2048, FastPathMode::Kernel)
            .unwrap()
            .unwrap();
        assert!(
            w.starts_with(
                "warning: interface d1 has MTU 9000 above the 1770 a 2048 B UMEM frame holds"
            ) && w.contains("4096 holds MTU 3818"),
            "{w}"
        );
    }
}
