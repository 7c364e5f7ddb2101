//! The XDP fast path's settings, kept in step with the policy and with the interfaces.
//!
//! Each interface's program sends a frame on in the kernel only when its `settings` allow
//! it (see [`super::xdp`]). This module owns those settings:
//! * **the port set** follows the policy: on a reload the ports the new policy adds are
//!   written *before* it is published (the map holds old ∪ new), the ports it removes
//!   only *after* (then the map holds new). At no moment can a frame the policy in force
//!   may block take the fast path; a worker still on the old policy for one burst sees
//!   only frames the map sent to it anyway;
//! * **the switch** is `datapath.fast_path` (reloadable);
//! * **peer readiness**: a frame redirected to a device that cannot transmit redirected
//!   frames is lost, so each direction is on only while its target says it takes them
//!   (`NETDEV_XDP_ACT_NDO_XMIT`; a veth says so only while its peer has an XDP program or
//!   GRO on). [`FastPath::refresh`] re-reads it once a second; meanwhile frames take the
//!   userspace path and are forwarded there.
//!
//! What this module believes is in a map is updated only after the kernel took the write,
//! and a write that fails is retried by [`FastPath::refresh`].
//!
//! The program reads `settings` without a lock while a write copies the new value in
//! place, so it may see some bytes old and some new. Every port-set write therefore only
//! adds ports (before a publish) or only removes them (after): any mixture is a superset
//! of what the policy in force may block. Keep it that way.

use super::io::Side;
use super::settings::FastPathMode;
use super::xdp::{KernelVerdicts, PathStats, Program, StatsMap, VerdictsMap, XdpProgramSettings};
use crate::policy::{Direction, Policy, PortSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the metrics endpoint reads, shared with the control thread.
#[derive(Debug)]
pub struct FastPathView {
    stats: [StatsMap; 2],
    verdicts: [VerdictsMap; 2],
    /// The last verdicts read: a failed read returns them, so the totals the metrics
    /// add them to never go backwards.
    last_verdicts: std::sync::Mutex<[KernelVerdicts; 2]>,
    /// `datapath.fast_path` as in force (not `off`).
    pub enabled: AtomicBool,
    /// `datapath.fast_path: kernel` in force.
    pub kernel: AtomicBool,
    /// Per side: the program may take the fast path (as last written to its map).
    pub active: [AtomicBool; 2],
}

impl FastPathView {
    /// Per side (subscriber, upstream) counters, summed over CPUs; zero when unreadable.
    pub fn stats(&self) -> [PathStats; 2] {
        [0, 1].map(|i| self.stats[i].read().unwrap_or_default())
    }

    /// Per side (subscriber, upstream): what the program decided in the kernel, summed
    /// over CPUs; a side that cannot be read keeps its last reading.
    pub fn verdicts(&self) -> [KernelVerdicts; 2] {
        let mut last = self.last_verdicts.lock().unwrap_or_else(|p| p.into_inner());
        for (i, l) in last.iter_mut().enumerate() {
            if let Ok(v) = self.verdicts[i].read() {
                *l = v;
            }
        }
        last.clone()
    }

    /// One read of the counters, with its error: what the running process does with
    /// `bpf()` (`privileges::bpf_needs_capability` tries it without CAP_BPF).
    pub fn read_once(&self) -> io::Result<()> {
        self.stats[0].read().map(|_| ())
    }

    /// `datapath.fast_path` in force.
    pub fn mode(&self) -> FastPathMode {
        if self.kernel.load(Ordering::Relaxed) {
            FastPathMode::Kernel
        } else if self.enabled.load(Ordering::Relaxed) {
            FastPathMode::Unblockable
        } else {
            FastPathMode::Off
        }
    }
}

/// Why the fast path could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error("cannot write the XDP fast-path settings of {iface:?}: {source}")]
    Settings { iface: String, source: io::Error },
    #[error("cannot point {iface:?}'s XDP fast path at {target:?}: {source}")]
    Peer {
        iface: String,
        target: String,
        source: io::Error,
    },
}

/// Whether an interface takes redirected frames: [`super::xdp::takes_redirects`] in service.
pub type ReadinessProbe = fn(u32) -> io::Result<Option<bool>>;

/// What one program's `settings` map holds.
#[derive(Clone, PartialEq, Eq)]
struct Written {
    mode: FastPathMode,
    peer_ready: bool,
    ports: PortSet,
}

struct SideState {
    iface: String,
    /// The interface this side's fast path sends to.
    target: String,
    target_ifindex: u32,
    peer_ready: bool,
    /// The ports of the policy in force.
    ports: PortSet,
    /// What the map holds (the last write the kernel took).
    written: Written,
    /// A write failed: [`FastPath::refresh`] writes the wanted state again.
    dirty: bool,
    /// `None` until the first readiness check has been logged.
    logged_ready: Option<bool>,
}

/// The fast path of both interfaces. Owned by the control thread.
pub struct FastPath {
    programs: [Program; 2],
    sides: [SideState; 2],
    mode: FastPathMode,
    /// The largest frame a worker takes (bytes): bigger ones that need a worker are
    /// dropped in the kernel.
    frame_max: u32,
    generation: u64,
    probe: ReadinessProbe,
    view: Arc<FastPathView>,
}

fn direction(side: usize) -> Direction {
    if side == Side::Subscriber as usize {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

impl FastPath {
    /// Points each program at the other interface and writes the first settings from
    /// `policy` (generation `generation`). `names`/`ifindexes`: subscriber, upstream;
    /// `frame_max`: the largest frame a worker takes; `probe` says whether an interface
    /// takes redirected frames.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        programs: [Program; 2],
        names: [&str; 2],
        ifindexes: [u32; 2],
        mode: FastPathMode,
        frame_max: u32,
        policy: &Policy,
        generation: u64,
        probe: ReadinessProbe,
    ) -> Result<FastPath, FastPathError> {
        let stats = [
            programs[0].stats().try_clone(),
            programs[1].stats().try_clone(),
        ];
        let stats = match stats {
            [Ok(a), Ok(b)] => [a, b],
            [Err(source), _] | [_, Err(source)] => {
                return Err(FastPathError::Settings {
                    iface: names[0].to_string(),
                    source,
                })
            }
        };
        let verdicts = match [
            programs[0].verdicts().try_clone(),
            programs[1].verdicts().try_clone(),
        ] {
            [Ok(a), Ok(b)] => [a, b],
            [Err(source), _] | [_, Err(source)] => {
                return Err(FastPathError::Settings {
                    iface: names[0].to_string(),
                    source,
                })
            }
        };
        // A fresh program's map is all zero: fast path off, no ports.
        let sides = [0, 1].map(|i| SideState {
            iface: names[i].to_string(),
            target: names[1 - i].to_string(),
            target_ifindex: ifindexes[1 - i],
            peer_ready: false,
            ports: policy.userspace_ports(direction(i)),
            written: Written {
                mode: FastPathMode::Off,
                peer_ready: false,
                ports: PortSet::new(),
            },
            dirty: true,
            logged_ready: None,
        });
        for (p, s) in programs.iter().zip(&sides) {
            p.set_peer(s.target_ifindex)
                .map_err(|source| FastPathError::Peer {
                    iface: s.iface.clone(),
                    target: s.target.clone(),
                    source,
                })?;
        }
        let mut fp = FastPath {
            programs,
            sides,
            mode,
            frame_max,
            generation,
            probe,
            view: Arc::new(FastPathView {
                stats,
                verdicts,
                last_verdicts: Default::default(),
                enabled: AtomicBool::new(mode != FastPathMode::Off),
                kernel: AtomicBool::new(mode == FastPathMode::Kernel),
                active: [AtomicBool::new(false), AtomicBool::new(false)],
            }),
        };
        fp.refresh_readiness();
        for i in 0..2 {
            let w = fp.wanted(i, None);
            fp.write(i, w)?;
        }
        Ok(fp)
    }

    /// The handle the metrics endpoint reads.
    pub fn view(&self) -> Arc<FastPathView> {
        self.view.clone()
    }

    pub fn enabled(&self) -> bool {
        self.mode != FastPathMode::Off
    }

    /// `datapath.fast_path` in force.
    pub fn mode(&self) -> FastPathMode {
        self.mode
    }

    /// The state side `i` should have, with `ports` instead of the policy's if given.
    fn wanted(&self, i: usize, ports: Option<PortSet>) -> Written {
        let s = &self.sides[i];
        Written {
            mode: self.mode,
            peer_ready: s.peer_ready,
            ports: ports.unwrap_or_else(|| s.ports.clone()),
        }
    }

    /// Writes `w` into side `i`'s map; only once the kernel took it does this module
    /// believe the map holds it. A failure marks the side for [`FastPath::refresh`].
    fn write(&mut self, i: usize, w: Written) -> Result<(), FastPathError> {
        let settings = XdpProgramSettings::new(
            w.mode,
            w.peer_ready,
            i == Side::Upstream as usize,
            self.frame_max,
            &w.ports,
            self.generation,
        );
        let s = &mut self.sides[i];
        match self.programs[i].write_settings(&settings) {
            Ok(()) => {
                s.written = w;
                s.dirty = false;
                self.view.active[i].store(settings.active(), Ordering::Relaxed);
                Ok(())
            }
            Err(source) => {
                s.dirty = true;
                Err(FastPathError::Settings {
                    iface: s.iface.clone(),
                    source,
                })
            }
        }
    }

    /// Re-reads whether each target takes redirected frames; true when anything changed.
    fn refresh_readiness(&mut self) -> bool {
        let mut changed = false;
        for s in self.sides.iter_mut() {
            let ready = match (self.probe)(s.target_ifindex) {
                Ok(Some(r)) => r,
                // A kernel older than 6.3 does not say: a driver that runs op25b's XDP
                // program in native mode transmits redirected frames.
                Ok(None) => true,
                Err(e) => {
                    if s.logged_ready.is_none() {
                        tracing::warn!("cannot query whether {} takes redirected frames ({e}): {}'s fast path stays off", s.target, s.iface);
                    }
                    false
                }
            };
            if s.logged_ready != Some(ready) {
                if ready {
                    tracing::info!(
                        "XDP fast path {} -> {}: {} takes redirected frames",
                        s.iface,
                        s.target,
                        s.target
                    );
                } else {
                    tracing::warn!("XDP fast path {} -> {} is off: {} does not take redirected frames (a veth takes them only while its peer has an XDP program or GRO on); every frame from {} goes through the workers", s.iface, s.target, s.target, s.iface);
                }
                s.logged_ready = Some(ready);
            }
            if s.peer_ready != ready {
                s.peer_ready = ready;
                changed = true;
            }
        }
        changed
    }

    /// Once a second from the control thread: follows the targets' readiness and retries
    /// a write that failed. Writes the ports of the policy in force: a superset left by a
    /// failed reload shrinks back to them.
    pub fn refresh(&mut self) {
        let changed = self.refresh_readiness();
        for i in 0..2 {
            if changed || self.sides[i].dirty {
                let w = self.wanted(i, None);
                if w != self.sides[i].written || self.sides[i].dirty {
                    if let Err(e) = self.write(i, w) {
                        tracing::error!("{e}; retrying in a second");
                    }
                }
            }
        }
    }

    /// Before `next` is published: the map of each side holds the union of the ports in
    /// the map and the ports `next` may block. On error nothing may be published (the
    /// maps hold supersets of the policy in force, which [`FastPath::refresh`] shrinks).
    pub fn before_publish(&mut self, next: &Policy) -> Result<(), FastPathError> {
        for i in 0..2 {
            let union = self.sides[i]
                .written
                .ports
                .union(&next.userspace_ports(direction(i)));
            if union != self.sides[i].written.ports {
                let w = self.wanted(i, Some(union));
                self.write(i, w)?;
            }
        }
        Ok(())
    }

    /// After `next` (generation `generation`) is published: the maps hold exactly its
    /// ports. A failure leaves a superset in the map (more frames through the workers,
    /// none leaked), is logged and retried by [`FastPath::refresh`].
    pub fn after_publish(&mut self, next: &Policy, generation: u64) {
        self.generation = generation;
        for i in 0..2 {
            self.sides[i].ports = next.userspace_ports(direction(i));
            let w = self.wanted(i, None);
            if let Err(e) = self.write(i, w) {
                tracing::warn!("{e}; the map keeps a superset of the ports in force (retried)");
            }
        }
    }

    /// Changes the mode (`datapath.fast_path`, on reload). A side whose write fails
    /// keeps its old state until [`FastPath::refresh`] succeeds.
    pub fn set_mode(&mut self, mode: FastPathMode) -> Result<(), FastPathError> {
        if mode == self.mode {
            return Ok(());
        }
        self.mode = mode;
        self.view
            .enabled
            .store(mode != FastPathMode::Off, Ordering::Relaxed);
        self.view
            .kernel
            .store(mode == FastPathMode::Kernel, Ordering::Relaxed);
        let mut result = Ok(());
        for i in 0..2 {
            let w = self.wanted(i, None);
            if let Err(e) = self.write(i, w) {
                result = Err(e);
            }
        }
        tracing::info!("XDP fast path: mode {}", mode.as_str());
        result
    }

    /// The ports each side's map holds now (subscriber, upstream).
    pub fn ports(&self) -> [&PortSet; 2] {
        [&self.sides[0].written.ports, &self.sides[1].written.ports]
    }
}
