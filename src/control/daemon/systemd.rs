//! systemd service protocol (sd_notify(3)) and the worker watchdog.
//!
//! Under `Type=notify` op25b tells systemd `READY=1` once every worker goes round its
//! loop, keeps a `STATUS=` line current, says `RELOADING=1`/`READY=1` around reloads and
//! `STOPPING=1` at shutdown. With `WatchdogSec=` (systemd sets `WATCHDOG_USEC`) the
//! control thread sends `WATCHDOG=1` only while every worker's heartbeat is fresh: a
//! wedged worker stops the pings and systemd restarts the service. Without
//! `NOTIFY_SOCKET` nothing is sent, and a stalled worker is still logged and exported
//! (`op25b_worker_heartbeat_age_seconds`).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::{Duration, Instant};

/// The watchdog timeout while a reload runs on the control thread.
pub const RELOAD_WATCHDOG: Duration = Duration::from_secs(120);

/// Sends sd_notify datagrams to `NOTIFY_SOCKET`; a no-op when it is not set.
pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The socket systemd named in `NOTIFY_SOCKET` (a path, or `@name` for the
    /// abstract namespace). Unset: a notifier that sends nothing.
    pub fn from_env() -> io::Result<Self> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Self::to(Path::new(&v)),
            _ => Ok(Self { sock: None }),
        }
    }

    /// A notifier for the socket at `path` (`@name`: abstract).
    pub fn to(path: &Path) -> io::Result<Self> {
        let text = path.as_os_str().as_encoded_bytes();
        let addr = if let Some(name) = text.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        } else {
            SocketAddr::from_pathname(path)?
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock: Some((sock, addr)),
        })
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { sock: None }
    }

    /// True when messages go somewhere.
    pub fn enabled(&self) -> bool {
        self.sock.is_some()
    }

    /// Sends one message (`KEY=value` lines).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        match &self.sock {
            Some((s, addr)) => s.send_to_addr(msg.as_bytes(), addr).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this pid when
/// `WATCHDOG_PID` is set).
pub fn watchdog_from_env() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// How long a worker may go without a heartbeat before it counts as stalled: half the
/// watchdog interval, within 1..=5 s (an idle worker beats every 100 ms).
pub fn stall_after(watchdog: Option<Duration>) -> Duration {
    watchdog
        .map(|w| (w / 2).clamp(Duration::from_secs(1), Duration::from_secs(5)))
        .unwrap_or(Duration::from_secs(5))
}

/// The workers' health as the watchdog sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Some worker has not gone round its loop yet.
    Starting,
    /// Every worker beat within the stall limit.
    Running,
    /// These workers (index, milliseconds since their last beat) did not.
    Stalled(Vec<(usize, u64)>),
}

/// Sends READY=1 and WATCHDOG=1 as the workers' heartbeats allow.
pub struct Supervisor {
    notifier: Notifier,
    /// Ping period: half of `WATCHDOG_USEC`.
    ping_every: Option<Duration>,
    stall_ms: u64,
    ready: bool,
    last_ping: Option<Instant>,
    /// Workers reported stalled (logged once per stall).
    stalled: Vec<bool>,
    pings: u64,
}

impl Supervisor {
    pub fn new(notifier: Notifier, watchdog: Option<Duration>, workers: usize) -> Self {
        Self {
            notifier,
            ping_every: watchdog.map(|w| w / 2),
            stall_ms: stall_after(watchdog).as_millis() as u64,
            ready: false,
            last_ping: None,
            stalled: vec![false; workers],
            pings: 0,
        }
    }

    /// The stall limit in milliseconds.
    pub fn stall_ms(&self) -> u64 {
        self.stall_ms
    }

    /// Watchdog pings sent so far.
    pub fn pings(&self) -> u64 {
        self.pings
    }

    /// True once READY=1 was sent (or would have been, without systemd).
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Judges the heartbeats (`beats[i]`: the worker's last beat on the heartbeat
    /// clock, 0 if none yet; `now_ms` on the same clock), sends READY=1 the first time
    /// every worker has beaten, and WATCHDOG=1 when due and every worker is fresh.
    /// Stalls and recoveries are logged once each.
    pub fn tick(&mut self, beats: &[u64], now_ms: u64, status: impl FnOnce() -> String) -> Health {
        let health = judge(beats, now_ms, self.stall_ms);
        match &health {
            Health::Starting => {}
            Health::Running => {
                for (i, s) in self.stalled.iter_mut().enumerate() {
                    if std::mem::take(s) {
                        tracing::warn!(worker = i, "worker {i} is making progress again");
                    }
                }
                // Marked sent only once the datagram went out: a full notify queue
                // (EAGAIN) is retried at the next tick.
                if !self.ready && self.send(&format!("READY=1\nSTATUS={}", status())).is_ok() {
                    self.ready = true;
                }
                self.ping_if_due();
            }
            Health::Stalled(list) => {
                for &(i, age) in list {
                    if let Some(s) = self.stalled.get_mut(i) {
                        if !*s {
                            *s = true;
                            tracing::error!(
                                worker = i,
                                stalled_ms = age,
                                "worker {i} made no progress for {:.1} s: {}",
                                age as f64 / 1e3,
                                if self.ping_every.is_some() {
                                    "watchdog pings withheld, systemd will restart op25b"
                                } else {
                                    "no systemd watchdog (WatchdogSec=) to restart op25b"
                                }
                            );
                            let _ = self.send(&format!(
                                "STATUS=worker {i} stalled for {:.1} s; watchdog pings withheld",
                                age as f64 / 1e3
                            ));
                        }
                    }
                }
            }
        }
        health
    }

    fn ping_if_due(&mut self) {
        let due = self
            .ping_every
            .is_some_and(|p| self.last_ping.is_none_or(|t| t.elapsed() >= p));
        if due && self.send("WATCHDOG=1").is_ok() {
            self.last_ping = Some(Instant::now());
            self.pings += 1;
        }
    }

    /// Sends `msg` as is.
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.notifier.send(msg)
    }

    /// `STATUS=` line.
    pub fn status(&self, text: &str) {
        let _ = self.send(&format!("STATUS={text}"));
    }

    /// Before a reload, which runs on the control thread and stops the ticks until it
    /// is done: one last ping if every worker is fresh, and the watchdog timeout raised
    /// to [`RELOAD_WATCHDOG`] meanwhile (`WATCHDOG_USEC=`, systemd ≥ 236). systemd ≥ 253
    /// also shows "reloading".
    pub fn reloading(&mut self, beats: &[u64], now_ms: u64) {
        let _ = self.send("RELOADING=1\nSTATUS=reloading");
        if let Some(p) = self.ping_every {
            if judge(beats, now_ms, self.stall_ms) == Health::Running
                && self.send("WATCHDOG=1").is_ok()
            {
                self.last_ping = Some(Instant::now());
                self.pings += 1;
            }
            let longer = (p * 2).max(RELOAD_WATCHDOG);
            let _ = self.send(&format!("WATCHDOG_USEC={}", longer.as_micros()));
        }
    }

    /// After a reload, applied or refused: the watchdog timeout back to what systemd set,
    /// and READY=1 (only once start-up has said it).
    pub fn reloaded(&mut self, status: &str) {
        if let Some(p) = self.ping_every {
            let _ = self.send(&format!("WATCHDOG_USEC={}", (p * 2).as_micros()));
            self.last_ping = None;
        }
        if self.ready {
            let _ = self.send(&format!("READY=1\nSTATUS={status}"));
        } else {
            self.status(status);
        }
    }

    /// At shutdown.
    pub fn stopping(&self) {
        let _ = self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// The pure verdict over heartbeats.
pub fn judge(beats: &[u64], now_ms: u64, stall_ms: u64) -> Health {
    if beats.contains(&0) {
        return Health::Starting;
    }
    let late: Vec<(usize, u64)> = beats
        .iter()
        .enumerate()
        .map(|(i, &b)| (i, now_ms.saturating_sub(b)))
        .filter(|&(_, age)| age > stall_ms)
        .collect();
    if late.is_empty() {
        Health::Running
    } else {
        Health::Stalled(late)
    }
}

/// The `[Service]` part of the drop-in `op25b systemd-deps` prints (after `[Unit]`),
/// from the config at `config`:
/// * `LoadCredential=NAME:<config folder>/NAME` for each `secret_file: credential:NAME`,
///   so the secret file can stay 0600 root-owned (systemd reads it as root and hands the
///   dynamic user a private copy under `$CREDENTIALS_DIRECTORY`);
/// * with a `radius:` section and a loopback `control.listen`: `IPAddressDeny=any` and
///   `IPAddressAllow=localhost` plus the RADIUS clients, so the kernel drops IP traffic
///   from anyone else before op25b reads it. The filter applies to op25b's IP sockets
///   only (the control endpoint and the RADIUS listener): AF_XDP and packet sockets,
///   and the frames op25b or the fallback bridge forwards, are not IP sockets of the
///   unit. With a control.listen that is not loopback, scrapers op25b does not know
///   must reach it: no filter is written, and a comment says so.
///
/// Empty when there is nothing to write.
pub fn service_dropin(config: &Path, unit: &crate::config::UnitService) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for name in &unit.credentials {
        let src = crate::config::credential_source(config, name);
        match src.to_str() {
            Some(s) if !s.chars().any(char::is_whitespace) => {
                let _ = writeln!(
                    o,
                    "# secret_file: credential:{name} (read by systemd as root; keep the file 0600 root:root)\nLoadCredential={name}:{}",
                    s.replace('%', "%%")
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "# secret_file: credential:{name}: {} cannot be written in a unit file (blanks); add LoadCredential= yourself",
                    src.display()
                );
            }
        }
    }
    if let Some(clients) = &unit.radius_clients {
        let loopback = unit
            .control_listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if loopback {
            let nets: Vec<String> = clients.iter().map(|n| n.to_string()).collect();
            let _ = writeln!(
                o,
                "# IP only from loopback (control.listen {}) and radius.clients; after changing either: systemctl daemon-reload\nIPAddressDeny=any\nIPAddressAllow=localhost {}",
                unit.control_listen,
                nets.join(" ")
            );
        } else {
            let _ = writeln!(
                o,
                "# No IPAddressDeny=: control.listen {} is not loopback and the config does not name its scrapers;\n# to filter, add IPAddressDeny=any and IPAddressAllow=localhost <radius.clients> <scrapers> in a drop-in of your own",
                unit.control_listen
            );
        }
    }
    if o.is_empty() {
        o
    } else {
        format!("\n[Service]\n{o}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_service_dropin_loads_credentials_and_filters_ip_only_where_it_can() {
        use crate::config::UnitService;
        use std::path::Path;
        let cfg = Path::new("/etc/op25b/op25b.yaml");
        assert_eq!(super::service_dropin(cfg, &UnitService::default()), "");
        let mut u = UnitService {
            control_listen: "127.0.0.1:9725".into(),
            radius_clients: Some(vec![
                "192.0.2.1/32".parse().unwrap(),
                "2001:db8::/64".parse().unwrap(),
            ]),
            credentials: vec!["radius-secret".into()],
        };
        let d = super::service_dropin(cfg, &u);
        assert!(d.starts_with("\n[Service]\n"), "{d}");
        assert!(
            d.contains("\nLoadCredential=radius-secret:/etc/op25b/radius-secret\n"),
            "{d}"
        );
        assert!(d.contains("\nIPAddressDeny=any\n"), "{d}");
        assert!(
            d.contains("\nIPAddressAllow=localhost 192.0.2.1/32 2001:db8::/64\n"),
            "{d}"
        );
        // A control endpoint for remote scrapers: no deny rule that would cut them off.
        u.control_listen = "198.51.100.2:9725".into();
        let d = super::service_dropin(cfg, &u);
        assert!(!d.contains("\nIPAddressDeny="), "{d}");
        assert!(d.contains("LoadCredential=radius-secret:"), "{d}");
    }

    use super::*;

    #[test]
    fn judge_waits_for_every_worker_then_flags_the_late_ones() {
        assert_eq!(judge(&[5, 0], 10, 1000), Health::Starting);
        assert_eq!(judge(&[], 10, 1000), Health::Running);
        assert_eq!(judge(&[9000, 9500], 10_000, 1000), Health::Running);
        assert_eq!(
            judge(&[8000, 9500], 10_000, 1000),
            Health::Stalled(vec![(0, 2000)])
        );
        // A beat stamped after `now` (read order) is fresh, not a huge age.
        assert_eq!(judge(&[10_001], 10_000, 1000), Health::Running);
    }

    #[test]
    fn stall_limit_follows_the_watchdog_within_bounds() {
        assert_eq!(stall_after(None), Duration::from_secs(5));
        assert_eq!(
            stall_after(Some(Duration::from_secs(10))),
            Duration::from_secs(5)
        );
        assert_eq!(
            stall_after(Some(Duration::from_secs(4))),
            Duration::from_secs(2)
        );
        assert_eq!(
            stall_after(Some(Duration::from_millis(500))),
            Duration::from_secs(1)
        );
        assert_eq!(
            stall_after(Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
    }
}
