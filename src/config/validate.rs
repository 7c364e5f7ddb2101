//! Stage 2 of loading: the settings outside `policy:` checked and turned into a
//! [`Config`] (interface names, cores, rings, control, logging, RADIUS).

use std::path::Path;
use std::time::Duration;

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

pub(super) fn validate_settings(file: &Path, raw: &RawConfig) -> Result<Config, ConfigError> {
    let i = &raw.interfaces;
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
                "{:?} is one of the two interfaces; name the bridge that joins them (default \"br-op25b\")",
                i.fallback_bridge
            ),
        ));
    }
    let w = &raw.workers;
    let cores = match &w.cores {
        Some(c) => {
            if c.len() != i.queues as usize {
                return Err(ConfigError::invalid(
                    file,
                    "workers.cores",
                    format!(
                        "{} cores listed for {} queues; expected one core per queue",
                        c.len(),
                        i.queues
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
            c.clone()
        }
        None => (0..i.queues as usize).collect(),
    };
    if !(1..=256).contains(&w.burst) {
        return Err(ConfigError::invalid(
            file,
            "workers.burst",
            format!("{} is outside 1..256", w.burst),
        ));
    }
    if w.burst > i.ring_size / 2 {
        return Err(ConfigError::invalid(
            file,
            "workers.burst",
            format!(
                "{} is more than half of interfaces.ring_size ({})",
                w.burst, i.ring_size
            ),
        ));
    }
    if i.xdp_mode == XdpMode::Generic && i.zero_copy == ZeroCopy::On {
        return Err(ConfigError::invalid(
            file,
            "interfaces.zero_copy",
            "`on` needs native XDP, but interfaces.xdp_mode is `generic`; use `zero_copy: auto` or `off`, or `xdp_mode: native`",
        ));
    }
    let r = &raw.policy.reject_rate;
    if r.burst == 0 && r.per_second > 0 {
        return Err(ConfigError::invalid(
            file,
            "policy.reject_rate.burst",
            "0 would never let a reply out; expected at least 1 (to send no replies use `action: drop`, or per_second: 0 with burst: 0)",
        ));
    }
    let control = control_settings(file, &raw.control)?;
    let radius = match &raw.radius {
        None => None,
        Some(r) => Some(radius_settings(file, r, &raw.policy)?),
    };
    Ok(Config {
        radius,
        path: file.to_path_buf(),
        interfaces: Interfaces {
            subscriber: i.subscriber.clone(),
            upstream: i.upstream.clone(),
            queues: i.queues,
            xdp_mode: i.xdp_mode,
            zero_copy: i.zero_copy,
            frame_size: i.frame_size,
            ring_size: i.ring_size,
            failure_mode: i.failure_mode,
            fallback_bridge: i.fallback_bridge.clone(),
        },
        workers: Workers {
            cores,
            burst: w.burst,
            busy_poll: w.busy_poll,
            overload_guard: w.overload_guard,
            stats_interval: Duration::from_secs(w.stats_interval_secs),
        },
        reject_rate: RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        },
        control,
        logging: Logging {
            level: raw.logging.level,
            format: raw.logging.format,
        },
        datapath: DatapathSettings {
            fast_path: raw.datapath.fast_path,
        },
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
