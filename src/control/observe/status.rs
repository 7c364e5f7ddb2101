//! `op25b status`: asks the running instance's metrics endpoint (control.listen) twice,
//! one second apart, and prints its state and rates (the metrics of
//! [`super::schema`], read back by name; `status_matches_golden` checks each is
//! rendered); `op25b top`'s client (the operator
//! socket) and table.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use super::prometheus::Samples;
use crate::datapath::counters::Counter;

/// GET `path` from the control endpoint at `addr`; the body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "GET {path}: {}",
            if status.is_empty() {
                "no answer"
            } else {
                status
            }
        )));
    }
    Ok(body.to_string())
}

/// GET /metrics from `addr`.
pub fn scrape(addr: SocketAddr) -> std::io::Result<Samples> {
    Samples::parse(&get(addr, "/metrics")?).map_err(std::io::Error::other)
}

/// The merged abuse-desk list (JSON) from the operator socket at `socket`.
pub fn top(socket: &std::path::Path, n: usize) -> std::io::Result<serde_json::Value> {
    let v = crate::control::overlay::operator::request(
        socket,
        &serde_json::json!({"op": "top", "n": n}),
    )?;
    if v["ok"] != true {
        return Err(std::io::Error::other(format!(
            "top not answered: {}",
            v["error"]
                .as_str()
                .unwrap_or("no reason given (an older op25b?)")
        )));
    }
    Ok(v)
}

/// The top list as a table.
pub fn top_table(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let now = v["generated_at"].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "{:>4}  {:<40} {:<12} {:>10} {:>6} {:>10} {:>10}  dst sample",
        "rank", "source", "class", "attempts", "dsts", "first", "last"
    );
    let ago = |t: u64| {
        let d = now.saturating_sub(t);
        if d < 120 {
            format!("{d}s ago")
        } else if d < 7200 {
            format!("{}m ago", d / 60)
        } else {
            format!("{}h ago", d / 3600)
        }
    };
    let empty = Vec::new();
    let list = v["offenders"].as_array().unwrap_or(&empty);
    for (i, t) in list.iter().enumerate() {
        let attempts = t["attempts"].as_u64().unwrap_or(0);
        let err = t["error"].as_u64().unwrap_or(0);
        let a = if err > 0 {
            format!("{attempts}(±{err})")
        } else {
            attempts.to_string()
        };
        let _ = writeln!(
            o,
            "{:>4}  {:<40} {:<12} {:>10} {:>6} {:>10} {:>10}  {}",
            i + 1,
            t["src"].as_str().unwrap_or("?"),
            t["class"].as_str().unwrap_or("-"),
            a,
            t["distinct_destinations"].as_u64().unwrap_or(0),
            ago(t["first_seen"].as_u64().unwrap_or(0)),
            ago(t["last_seen"].as_u64().unwrap_or(0)),
            t["dst_sample"].as_str().unwrap_or("?"),
        );
    }
    if list.is_empty() {
        o.push_str("      (no blocked attempts since start)\n");
    }
    o
}

fn sum(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.sum(name, labels)
}

/// The status as JSON (also the source of the text table).
pub fn status(addr: SocketAddr) -> std::io::Result<serde_json::Value> {
    let a = scrape(addr)?;
    std::thread::sleep(Duration::from_secs(1));
    let b = scrape(addr)?;
    Ok(status_of(addr, &a, &b))
}

/// The status from two scrapes `a` and `b` of `addr`, one second apart.
pub fn status_of(addr: SocketAddr, a: &Samples, b: &Samples) -> serde_json::Value {
    let rate = |name: &str, labels: &[(&str, &str)]| sum(b, name, labels) - sum(a, name, labels);
    let mode = b
        .matching("op25b_info", &[])
        .find_map(|s| s.label("mode"))
        .unwrap_or("?")
        .to_string();
    let workers = b
        .matching("op25b_rx_frames_total", &[("interface", "subscriber")])
        .count();
    let fast_path_mode = b
        .matching("op25b_fast_path_mode", &[])
        .find(|s| s.value > 0.0)
        .and_then(|s| s.label("mode"))
        .unwrap_or("?")
        .to_string();
    let xdp = [("worker", "xdp")];
    let xdp_drop = [("worker", "xdp"), ("verdict", "drop")];
    serde_json::json!({
        "listen": addr.to_string(),
        "uptime_seconds": sum(b, "op25b_uptime_seconds", &[]),
        "mode": mode,
        "workers": workers,
        "policy_generation": sum(b, "op25b_policy_generation", &[]),
        "policy_table_bytes": sum(b, "op25b_policy_table_bytes", &[]),
        "last_reload_success": b.get("op25b_config_last_reload_successful", &[]),
        "fast_path_mode": fast_path_mode,
        "kernel_policy_valid": b.get("op25b_xdp_kernel_policy_valid", &[]).map(|v| v > 0.0),
        "kernel_policy_write_errors": sum(b, "op25b_xdp_kernel_policy_write_errors_total", &[]),
        "restart_pending": sum(b, "op25b_config_restart_pending", &[]),
        "reloads_applied": sum(b, "op25b_config_reloads_total", &[("result", "applied")]),
        "reloads_refused": sum(b, "op25b_config_reloads_total", &[("result", "refused")]),
        "frames_per_second": {
            "outbound": rate("op25b_rx_frames_total", &[("interface", "subscriber")]),
            "inbound": rate("op25b_rx_frames_total", &[("interface", "upstream")]),
            "blocked": rate("op25b_blocked_total", &[]),
            "replies": rate(Counter::RepliesSent.metric(), &[]),
            "fast_path": rate("op25b_fast_path_frames_total", &[]),
            "to_userspace": rate("op25b_xdp_to_userspace_frames_total", &[]),
            "judged_in_xdp": rate("op25b_frames_total", &xdp),
            "dropped_in_xdp": rate("op25b_frames_total", &xdp_drop),
        },
        "fast_path_active": {
            "subscriber": sum(b, "op25b_fast_path_active", &[("interface", "subscriber")]) > 0.0,
            "upstream": sum(b, "op25b_fast_path_active", &[("interface", "upstream")]) > 0.0,
        },
        "totals": {
            "outbound_frames": sum(b, "op25b_rx_frames_total", &[("interface", "subscriber")]),
            "inbound_frames": sum(b, "op25b_rx_frames_total", &[("interface", "upstream")]),
            "blocked_outbound": sum(b, "op25b_blocked_total", &[("direction", "outbound")]),
            "blocked_inbound": sum(b, "op25b_blocked_total", &[("direction", "inbound")]),
            "blocked_port_25": sum(b, "op25b_blocked_total", &[("port", "25")]),
            "replies_sent": sum(b, Counter::RepliesSent.metric(), &[]),
            "replies_rate_limited": sum(b, Counter::RepliesRateLimited.metric(), &[]),
            "tx_ring_full": sum(b, Counter::TxRingFull.metric(), &[]),
            "fill_starved": sum(b, Counter::FillStarved.metric(), &[]),
            "fast_path_frames": sum(b, "op25b_fast_path_frames_total", &[]),
            "to_userspace_frames": sum(b, "op25b_xdp_to_userspace_frames_total", &[]),
            "judged_in_xdp_frames": sum(b, "op25b_frames_total", &xdp),
            "dropped_in_xdp_frames": sum(b, "op25b_frames_total", &xdp_drop),
            "xdp_dropped_too_big": sum(b, "op25b_xdp_dropped_too_big_frames_total", &[]),
        },
    })
}

/// Human table of [`status`].
pub fn table(v: &serde_json::Value) -> String {
    let f = |p: &str| v.pointer(p).and_then(|x| x.as_f64()).unwrap_or(0.0);
    let mut o = String::new();
    o += &format!(
        "op25b at {}: up {:.0} s, {}, {} worker(s)\n",
        v["listen"].as_str().unwrap_or("?"),
        f("/uptime_seconds"),
        v["mode"].as_str().unwrap_or("?"),
        v["workers"]
    );
    o += &format!(
        "policy: generation {}, tables {:.1} KiB, last reload {}{}\n",
        f("/policy_generation"),
        f("/policy_table_bytes") / 1024.0,
        match v["last_reload_success"].as_f64() {
            None => "unknown",
            Some(x) if x > 0.0 => "ok",
            _ => "REFUSED (see the log, or `op25b reload`)",
        },
        match f("/restart_pending") as u64 {
            0 => String::new(),
            n => format!(", {n} setting(s) wait for a restart"),
        }
    );
    let on = |p: &str| {
        if v.pointer(p).and_then(|x| x.as_bool()).unwrap_or(false) {
            "on"
        } else {
            "off"
        }
    };
    o += &format!(
        "fast path: mode {}{}, outbound {}, inbound {}\n",
        v["fast_path_mode"].as_str().unwrap_or("?"),
        match v["kernel_policy_valid"].as_bool() {
            Some(false) => " (its copy of the policy is NOT valid: the workers judge everything)",
            _ => "",
        },
        on("/fast_path_active/subscriber"),
        on("/fast_path_active/upstream")
    );
    o += &format!("{:<22} {:>14} {:>14}\n", "", "per second", "total");
    for (name, rate, total) in [
        (
            "workers: outbound",
            "/frames_per_second/outbound",
            "/totals/outbound_frames",
        ),
        (
            "workers: inbound",
            "/frames_per_second/inbound",
            "/totals/inbound_frames",
        ),
        (
            "judged in XDP",
            "/frames_per_second/judged_in_xdp",
            "/totals/judged_in_xdp_frames",
        ),
        (
            "dropped in XDP",
            "/frames_per_second/dropped_in_xdp",
            "/totals/dropped_in_xdp_frames",
        ),
        (
            "blocked outbound",
            "/frames_per_second/blocked",
            "/totals/blocked_outbound",
        ),
        (
            "replies sent",
            "/frames_per_second/replies",
            "/totals/replies_sent",
        ),
        (
            "fast path (kernel)",
            "/frames_per_second/fast_path",
            "/totals/fast_path_frames",
        ),
        (
            "to workers (XDP)",
            "/frames_per_second/to_userspace",
            "/totals/to_userspace_frames",
        ),
    ] {
        o += &format!("{name:<22} {:>14.0} {:>14.0}\n", f(rate), f(total));
    }
    o += &format!(
        "blocked inbound (IP25B) {:.0}, to port 25 {:.0}, replies rate-limited {:.0}, tx ring full {:.0}, fill starved {:.0}\n",
        f("/totals/blocked_inbound"), f("/totals/blocked_port_25"), f("/totals/replies_rate_limited"), f("/totals/tx_ring_full"), f("/totals/fill_starved")
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `op25b status` of the golden /metrics text (two scrapes a second apart, the
    /// second with every counter one higher) stays what it was: its JSON and its table.
    /// Every metric it reads is one the schema renders.
    #[test]
    fn status_matches_golden() {
        use crate::control::observe::metrics::tests::{golden, golden_reading};
        let text = crate::control::observe::metrics::text(&golden_reading());
        let a = Samples::parse(&text).unwrap();
        let later: String = text
            .lines()
            .map(|l| match l.rsplit_once(' ') {
                Some((series, v)) if !l.starts_with('#') => match v.parse::<u64>() {
                    Ok(n) => format!("{series} {}\n", n + 1),
                    Err(_) => format!("{l}\n"),
                },
                _ => format!("{l}\n"),
            })
            .collect();
        let b = Samples::parse(&later).unwrap();
        let addr: SocketAddr = "127.0.0.1:9725".parse().unwrap();
        let v = status_of(addr, &a, &b);
        let out = serde_json::to_string_pretty(&v).unwrap() + "\n" + &table(&v);
        golden("status.txt", &out);
    }

    /// Two scrapes of a box in mode kernel: what the XDP program judged is in the rates
    /// and totals, blocked counts it, and the table says the mode and the policy copy.
    #[test]
    fn status_counts_what_the_kernel_judged() {
        let scrape = |xdp_drop: u64, xdp_fwd: u64, valid: u8| {
            let text = format!(
                "op25b_rx_frames_total{{worker=\"0\",interface=\"subscriber\"}} 10\n\
                 op25b_rx_frames_total{{worker=\"0\",interface=\"upstream\"}} 4\n\
                 op25b_frames_total{{worker=\"0\",direction=\"outbound\",verdict=\"reject\",reason=\"blocked_port\"}} 2\n\
                 op25b_frames_total{{worker=\"xdp\",direction=\"outbound\",verdict=\"drop\",reason=\"blocked_port\"}} {xdp_drop}\n\
                 op25b_frames_total{{worker=\"xdp\",direction=\"outbound\",verdict=\"forward\",reason=\"port_open\"}} {xdp_fwd}\n\
                 op25b_blocked_total{{direction=\"outbound\",port=\"25\"}} {}\n\
                 op25b_fast_path_mode{{mode=\"kernel\"}} 1\n\
                 op25b_fast_path_mode{{mode=\"unblockable\"}} 0\n\
                 op25b_fast_path_mode{{mode=\"off\"}} 0\n\
                 op25b_xdp_kernel_policy_valid {valid}\n\
                 op25b_xdp_kernel_policy_write_errors_total 3\n\
                 op25b_xdp_dropped_too_big_frames_total{{interface=\"subscriber\"}} 1\n",
                xdp_drop + 2
            );
            Samples::parse(&text).unwrap()
        };
        let addr: SocketAddr = "127.0.0.1:9725".parse().unwrap();
        let v = status_of(addr, &scrape(100, 40, 1), &scrape(250, 90, 1));
        assert_eq!(v["workers"], 1);
        assert_eq!(v["fast_path_mode"], "kernel");
        assert_eq!(v["kernel_policy_valid"], true);
        assert_eq!(v["kernel_policy_write_errors"], 3.0);
        assert_eq!(v["frames_per_second"]["judged_in_xdp"], 200.0);
        assert_eq!(v["frames_per_second"]["dropped_in_xdp"], 150.0);
        assert_eq!(v["frames_per_second"]["blocked"], 150.0);
        assert_eq!(v["totals"]["judged_in_xdp_frames"], 340.0);
        assert_eq!(v["totals"]["dropped_in_xdp_frames"], 250.0);
        assert_eq!(v["totals"]["blocked_outbound"], 252.0);
        assert_eq!(v["totals"]["xdp_dropped_too_big"], 1.0);
        let t = table(&v);
        assert!(t.contains("fast path: mode kernel, outbound off"), "{t}");
        assert!(t.contains("judged in XDP"), "{t}");
        let v = status_of(addr, &scrape(1, 1, 0), &scrape(1, 1, 0));
        assert_eq!(v["kernel_policy_valid"], false);
        assert!(table(&v).contains("NOT valid"), "{}", table(&v));
    }
}
