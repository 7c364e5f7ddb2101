//! Stage 2 of loading: the settings outside `policy:` checked and turned into a
//! [`Config`] (interface names, cores, rings, control, logging, RADIUS, whose secret
//! files are read here); the datapath's part becomes its [`DatapathSettings`] once, here.

use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::*;
use super::*;

fn validate_ifname(file: &Path, field: &str, name: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(ConfigError::invalid(
            file,
            field,
            format!("{name:?} {why}; expected a network interface name such as \"eth1\""),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 15 {
        return bad("is longer than 15 bytes (IFNAMSIZ)");
    }
    if name.contains(['/', ' ', '\t', '\n', ':']) || name == "." || name == ".." {
        return bad("contains a character not allowed in interface names");
    }
    Ok(())
}

/// Stage 2: everything outside `policy:` (but `policy.reject_rate`), checked in the
/// order the file reads.
pub(super) fn validate_settings(file: &Path, raw: &RawConfig) -> Result<Config, ConfigError> {
    let i = &raw.interfaces;
    check_interfaces(file, i)?;
    let w = &raw.workers;
    let cores = worker_cores(file, w, i.queues)?;
    check_burst(file, w.burst, i.ring_size)?;
    if i.xdp_mode == XdpMode::Generic && i.zero_copy == ZeroCopy::On {
        return Err(ConfigError::invalid(
            file,
            "interfaces.zero_copy",
            "`on` needs native XDP, but interfaces.xdp_mode is `generic`; use `zero_copy: auto` or `off`, or `xdp_mode: native`",
        ));
    }
    let reply_rate = reject_rate(file, &raw.policy.reject_rate)?;
    let control = control_settings(file, &raw.control)?;
    let radius = match &raw.radius {
        None => None,
        Some(r) => Some(radius_settings(file, r, &raw.policy)?),
    };
    Ok(Config {
        radius,
        path: file.to_path_buf(),
        datapath: DatapathSettings {
            subscriber: i.subscriber.clone(),
            upstream: i.upstream.clone(),
            queues: i.queues,
            xdp_mode: i.xdp_mode,
            zero_copy: i.zero_copy,
            frame_size: i.frame_size,
            ring_size: i.ring_size,
            cores,
            burst: w.burst,
            busy_poll: w.busy_poll,
            overload_guard: w.overload_guard,
            reply_rate,
            fast_path: raw.datapath.fast_path,
        },
        interfaces: Interfaces {
            failure_mode: i.failure_mode,
            fallback_bridge: i.fallback_bridge.clone(),
        },
        workers: Workers {
            stats_interval: Duration::from_secs(w.stats_interval_secs),
        },
        control,
        logging: Logging {
            level: raw.logging.level,
            format: raw.logging.format,
        },
    })
}

/// `interfaces:`: the two NICs, the queues, the UMEM frame and ring sizes, the bridge.
fn check_interfaces(file: &Path, i: &RawInterfaces) -> Result<(), ConfigError> {
    validate_ifname(file, "interfaces.subscriber", &i.subscriber)?;
    validate_ifname(file, "interfaces.upstream", &i.upstream)?;
    if i.subscriber == i.upstream {
        return Err(ConfigError::invalid(
            file,
            "interfaces.upstream",
            format!(
                "{:?} is also the subscriber interface; expected two different NICs",
                i.upstream
            ),
        ));
    }
    if !(1..=64).contains(&i.queues) {
        return Err(ConfigError::invalid(
            file,
            "interfaces.queues",
            format!("{} is outside 1..64", i.queues),
        ));
    }
    if i.frame_size != 2048 && i.frame_size != 4096 {
        return Err(ConfigError::invalid(
            file,
            "interfaces.frame_size",
            format!(
                "{} is not 2048 or 4096 (AF_XDP UMEM frame sizes)",
                i.frame_size
            ),
        ));
    }
    if !i.ring_size.is_power_of_two() || !(64..=16384).contains(&i.ring_size) {
        return Err(ConfigError::invalid(
            file,
            "interfaces.ring_size",
            format!("{} is not a power of two in 64..16384", i.ring_size),
        ));
    }
    validate_ifname(file, "interfaces.fallback_bridge", &i.fallback_bridge)?;
    if [&i.subscriber, &i.upstream].contains(&&i.fallback_bridge) {
        return Err(ConfigError::invalid(
            file,
            "interfaces.fallback_bridge",
            format!(
                "{:?} is one of the two interfaces; name the bridge that joins them (default {:?})",
                i.fallback_bridge,
                default_fallback_bridge()
            ),
        ));
    }
    Ok(())
}

/// `workers.cores`: one distinct core per queue; 0, 1, ... when not given.
fn worker_cores(file: &Path, w: &RawWorkers, queues: u32) -> Result<Vec<usize>, ConfigError> {
    let Some(c) = &w.cores else {
        return Ok((0..queues as usize).collect());
    };
    if c.len() != queues as usize {
        return Err(ConfigError::invalid(
            file,
            "workers.cores",
            format!(
                "{} cores listed for {} queues; expected one core per queue",
                c.len(),
                queues
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (n, core) in c.iter().enumerate() {
        if !seen.insert(core) {
            return Err(ConfigError::invalid(
                file,
                format!("workers.cores[{n}]"),
                format!("core {core} is listed twice; expected one worker per core"),
            ));
        }
    }
    Ok(c.clone())
}

/// `workers.burst`: 1..256, and at most half the ring.
fn check_burst(file: &Path, burst: u32, ring_size: u32) -> Result<(), ConfigError> {
    if !(1..=256).contains(&burst) {
        return Err(ConfigError::invalid(
            file,
            "workers.burst",
            format!("{burst} is outside 1..256"),
        ));
    }
    if burst > ring_size / 2 {
        return Err(ConfigError::invalid(
            file,
            "workers.burst",
            format!("{burst} is more than half of interfaces.ring_size ({ring_size})"),
        ));
    }
    Ok(())
}

/// `policy.reject_rate`: a bucket that lets replies out, or none at all.
fn reject_rate(file: &Path, r: &RawRate) -> Result<RateLimit, ConfigError> {
    if r.burst == 0 && r.per_second > 0 {
        return Err(ConfigError::invalid(
            file,
            "policy.reject_rate.burst",
            "0 would never let a reply out; expected at least 1 (to send no replies use `action: drop`, or per_second: 0 with burst: 0)",
        ));
    }
    Ok(RateLimit {
        per_second: r.per_second,
        burst: r.burst,
    })
}

/// `control:`, validated (also read alone by `op25b status`, `top` and `reload`).
pub(super) fn control_settings(file: &Path, c: &RawControl) -> Result<Control, ConfigError> {
    let listen: SocketAddr = c.listen.parse().map_err(|_| {
        ConfigError::invalid(
            file,
            "control.listen",
            format!(
                "{:?} is not an address:port such as \"127.0.0.1:9725\"",
                c.listen
            ),
        )
    })?;
    if !(1..=100).contains(&c.reload_max_loss_percent) {
        return Err(ConfigError::invalid(
            file,
            "control.reload_max_loss_percent",
            format!(
                "{} is outside 1..100 (a reload in which a class loses more than this percentage of its prefixes is refused; 100: refuse only a class that drops to 0)",
                c.reload_max_loss_percent
            ),
        ));
    }
    Ok(Control {
        listen,
        pid_file: c.pid_file.clone(),
        socket: c.socket_path(),
        state_file: c.state_file.clone(),
        reload_max_loss_percent: c.reload_max_loss_percent as u32,
        http_top: c.http_top,
    })
}

/// `radius:`, validated (the secret files are read here).
fn radius_settings(
    file: &Path,
    r: &RawRadius,
    policy: &RawPolicy,
) -> Result<RadiusSettings, ConfigError> {
    let listen: SocketAddr = r.listen.parse().map_err(|_| {
        ConfigError::invalid(
            file,
            "radius.listen",
            format!(
                "{:?} is not an address:port such as \"127.0.0.1:1813\"",
                r.listen
            ),
        )
    })?;
    if r.clients.is_empty() {
        return Err(ConfigError::invalid(
            file,
            "radius.clients",
            "empty: no NAS could send accounting; list each with address and secret",
        ));
    }
    let clients = radius_clients(file, r)?;
    for (id, class) in &r.filter_ids {
        if !policy.classes.contains_key(class) {
            return Err(ConfigError::invalid(
                file,
                format!("radius.filter_ids.{id}"),
                format!("{class:?} is not a class of policy.classes"),
            ));
        }
    }
    check_radius_limits(file, r)?;
    Ok(RadiusSettings {
        listen,
        clients,
        filter_ids: r.filter_ids.clone(),
        session_timeout: Duration::from_secs(r.session_timeout_secs),
        duplicate_window: Duration::from_secs(r.duplicate_window_secs),
        event_timestamp_window: Duration::from_secs(r.event_timestamp_window_secs),
        max_entries: usize::try_from(r.max_entries).unwrap_or(usize::MAX),
        min_ipv6_prefix_len: r.min_ipv6_prefix_len,
    })
}

/// `radius.clients`: each address or prefix with its shared secret (given, or read from
/// its `secret_file`).
fn radius_clients(file: &Path, r: &RawRadius) -> Result<Vec<(IpNet, String)>, ConfigError> {
    let mut clients = Vec::new();
    for (i, c) in r.clients.iter().enumerate() {
        let field = format!("radius.clients[{i}]");
        let net: IpNet = c
            .address
            .parse::<IpNet>()
            .or_else(|_| c.address.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ConfigError::invalid(
                    file,
                    format!("{field}.address"),
                    format!("{:?} is not an address or prefix", c.address),
                )
            })?;
        let secret = match (&c.secret, &c.secret_file) {
            (Some(s), None) => s.clone(),
            (None, Some(p)) => {
                let creds = std::env::var_os(CREDENTIALS_DIRECTORY);
                read_secret_file(file, &format!("{field}.secret_file"), p, creds.as_deref())?
            }
            _ => {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    "give exactly one of `secret` and `secret_file`",
                ))
            }
        };
        if secret.is_empty() {
            return Err(ConfigError::invalid(
                file,
                field,
                "the shared secret is empty",
            ));
        }
        clients.push((net, secret));
    }
    Ok(clients)
}

/// `radius:`'s timeouts, windows and limits: none may be 0, the IPv6 prefix length is
/// one.
fn check_radius_limits(file: &Path, r: &RawRadius) -> Result<(), ConfigError> {
    if r.session_timeout_secs == 0 {
        return Err(ConfigError::invalid(
            file,
            "radius.session_timeout_secs",
            "0 would expire every session at once; expected at least 1",
        ));
    }
    for (field, v, what) in [
        (
            "radius.duplicate_window_secs",
            r.duplicate_window_secs,
            "0 would apply every retransmission again",
        ),
        (
            "radius.event_timestamp_window_secs",
            r.event_timestamp_window_secs,
            "0 would refuse every request that carries an Event-Timestamp",
        ),
        (
            "radius.max_entries",
            r.max_entries,
            "0 would refuse every RADIUS entry",
        ),
    ] {
        if v == 0 {
            return Err(ConfigError::invalid(
                file,
                field,
                format!("{what}; expected at least 1"),
            ));
        }
    }
    if !(1..=128).contains(&r.min_ipv6_prefix_len) {
        return Err(ConfigError::invalid(
            file,
            "radius.min_ipv6_prefix_len",
            format!(
                "{} is not an IPv6 prefix length from 1 to 128",
                r.min_ipv6_prefix_len
            ),
        ));
    }
    Ok(())
}
