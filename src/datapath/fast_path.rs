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

use super::counters::Side;
use super::xdp::{self, PathStats, Program, Settings, StatsMap};
use crate::policy::{Direction, Policy, PortSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the metrics endpoint reads, shared with the control thread.
#[derive(Debug)]
pub struct FastPathView {
    stats: [StatsMap; 2],
    /// `datapath.fast_path` as in force.
    pub enabled: AtomicBool,
    /// Per side: the program may take the fast path (enabled and its target ready).
    pub active: [AtomicBool; 2],
}

impl FastPathView {
    /// Per side (subscriber, upstream) counters, summed over CPUs; zero when unreadable.
    pub fn stats(&self) -> [PathStats; 2] {
        [0, 1].map(|i| self.stats[i].read().unwrap_or_default())
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

struct SideState {
    iface: String,
    /// The interface this side's fast path sends to.
    target: String,
    target_ifindex: u32,
    peer_ready: bool,
    /// Ports in the map now.
    ports: PortSet,
    /// `None` until the first readiness check has been logged.
    logged_ready: Option<bool>,
}

/// The fast path of both interfaces. Owned by the control thread.
pub struct FastPath {
    programs: [Program; 2],
    sides: [SideState; 2],
    enabled: bool,
    generation: u64,
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
    /// `policy` (generation `generation`). `names`/`ifindexes`: subscriber, upstream.
    pub fn new(
        programs: [Program; 2],
        names: [&str; 2],
        ifindexes: [u32; 2],
        enabled: bool,
        policy: &Policy,
        generation: u64,
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
        let sides = [0, 1].map(|i| SideState {
            iface: names[i].to_string(),
            target: names[1 - i].to_string(),
            target_ifindex: ifindexes[1 - i],
            peer_ready: false,
            ports: policy.userspace_ports(direction(i)),
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
            enabled,
            generation,
            view: Arc::new(FastPathView {
                stats,
                enabled: AtomicBool::new(enabled),
                active: [AtomicBool::new(false), AtomicBool::new(false)],
            }),
        };
        fp.refresh_readiness();
        for i in 0..2 {
            fp.write(i)?;
        }
        Ok(fp)
    }

    /// The handle the metrics endpoint reads.
    pub fn view(&self) -> Arc<FastPathView> {
        self.view.clone()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn write(&self, i: usize) -> Result<(), FastPathError> {
        let s = &self.sides[i];
        let settings = Settings::new(self.enabled, s.peer_ready, &s.ports, self.generation);
        self.programs[i]
            .write_settings(&settings)
            .map_err(|source| FastPathError::Settings {
                iface: s.iface.clone(),
                source,
            })?;
        self.view.active[i].store(settings.active(), Ordering::Relaxed);
        Ok(())
    }

    /// Re-reads whether each target takes redirected frames; true when anything changed.
    fn refresh_readiness(&mut self) -> bool {
        let mut changed = false;
        for s in self.sides.iter_mut() {
            let ready = match xdp::takes_redirects(s.target_ifindex) {
                Ok(Some(r)) => r,
                // An older kernel does not say: a driver that runs op25b's XDP program in
                // native mode transmits redirected frames.
                Ok(None) => true,
                Err(e) => {
                    if s.logged_ready.is_none() {
                        tracing::warn!(target_iface = %s.target, "cannot query whether {} takes redirected frames ({e}): {}'s fast path stays off", s.target, s.iface);
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

    /// Once a second from the control thread: follows the targets' readiness.
    pub fn refresh(&mut self) {
        if self.refresh_readiness() {
            for i in 0..2 {
                if let Err(e) = self.write(i) {
                    tracing::error!("{e}");
                }
            }
        }
    }

    /// Before `next` is published: the map of each side holds the union of the ports in
    /// force and the ports `next` may block. On error nothing may be published.
    pub fn before_publish(&mut self, next: &Policy) -> Result<(), FastPathError> {
        for i in 0..2 {
            let wanted = next.userspace_ports(direction(i));
            let union = self.sides[i].ports.union(&wanted);
            if union != self.sides[i].ports {
                self.sides[i].ports = union;
                self.write(i)?;
            }
        }
        Ok(())
    }

    /// After `next` (generation `generation`) is published: the maps hold exactly its
    /// ports. A failure leaves a superset in the map (more frames through the workers,
    /// none leaked) and is logged.
    pub fn after_publish(&mut self, next: &Policy, generation: u64) {
        self.generation = generation;
        for i in 0..2 {
            self.sides[i].ports = next.userspace_ports(direction(i));
            if let Err(e) = self.write(i) {
                tracing::warn!("{e}; the map keeps a superset of the ports in force");
            }
        }
    }

    /// Turns the fast path on or off (`datapath.fast_path`, on reload).
    pub fn set_enabled(&mut self, on: bool) -> Result<(), FastPathError> {
        if on != self.enabled {
            self.enabled = on;
            self.view.enabled.store(on, Ordering::Relaxed);
            for i in 0..2 {
                self.write(i)?;
            }
            tracing::info!("XDP fast path turned {}", if on { "on" } else { "off" });
        }
        Ok(())
    }

    /// The ports each side's map holds now (subscriber, upstream).
    pub fn ports(&self) -> [&PortSet; 2] {
        [&self.sides[0].ports, &self.sides[1].ports]
    }
}
