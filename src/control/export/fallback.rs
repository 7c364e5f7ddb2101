//! `failure_mode`: what carries traffic while op25b is not running.
//!
//! * `closed`: the two interfaces must not be bridged (nor enslaved to anything that
//!   forwards). While op25b runs its XDP programs take every frame; when it stops or
//!   dies the kernel detaches them (bpf_link) and the frames end in the host stack of the
//!   box, which has no addresses on those interfaces and forwards nothing.
//! * `open`: the interfaces are ports of a Linux bridge (`interfaces.fallback_bridge`,
//!   created if missing) and an nftables `bridge` table generated from the same policy
//!   (`op25b export-nft`) filters what the bridge forwards. op25b installs that table
//!   before it enslaves anything and re-installs it on every reload, so the fallback
//!   always enforces the policy in force. While op25b runs the bridge sees no frames
//!   (XDP takes them first); once it is gone the bridge forwards them through the rules.
//!
//! The work is done with `ip` (iproute2) and `nft` (nftables): each call is one atomic
//! kernel transaction, and an operator can replay every step by hand.

use super::nft::{Family, NftOptions};
use crate::config::{Config, FailureMode, Loaded};
use crate::policy::ClassId;
use ipnet::IpNet;
use std::process::{Command, Stdio};

/// The nftables tables op25b owns in `failure_mode: open` are `bridge op25b_fallback_<n>`.
pub const TABLE: &str = "op25b_fallback";

/// Why the failure mode cannot be set up. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("failure_mode closed, but {iface:?} is a port of {master:?}: that device would forward traffic past op25b while it is not running; remove it (`ip link set {iface} nomaster`) or set `interfaces.failure_mode: open`")]
    Enslaved { iface: String, master: String },
    #[error("failure_mode open: {iface:?} is a port of {master:?}, not of interfaces.fallback_bridge {bridge:?}; release it (`ip link set {iface} nomaster`) or set fallback_bridge: {master}")]
    OtherMaster {
        iface: String,
        master: String,
        bridge: String,
    },
    #[error("{what}: `{cmd}` failed: {detail} (is {tool} installed? `apt-get install {package}`)")]
    Tool {
        what: &'static str,
        cmd: String,
        detail: String,
        tool: &'static str,
        package: &'static str,
    },
    #[error("failure_mode open: cannot build the fallback rule set: {0}")]
    Config(#[from] crate::config::ConfigError),
}

fn run(
    what: &'static str,
    tool: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, FallbackError> {
    let package = if tool == "nft" {
        "nftables"
    } else {
        "iproute2"
    };
    let fail = |detail: String| FallbackError::Tool {
        what,
        cmd: format!("{tool} {}", args.join(" ")),
        detail,
        tool,
        package,
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing the rule set: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        // nft names the failing rule on the lines after its error: keep a few, joined.
        let err = String::from_utf8_lossy(&out.stderr);
        let text: Vec<&str> = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~'))
            .take(3)
            .collect();
        let mut text = text.join(" / ");
        text.truncate(400);
        return Err(fail(format!("{text} ({})", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The device `iface` is enslaved to, if any (`ip -j link show`).
pub fn master_of(iface: &str) -> Result<Option<String>, FallbackError> {
    let out = run(
        "reading interface state",
        "ip",
        &["-j", "link", "show", "dev", iface],
        None,
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    Ok(v.get(0)
        .and_then(|l| l.get("master"))
        .and_then(|m| m.as_str())
        .map(str::to_string))
}

fn exists(dev: &str) -> bool {
    crate::datapath::nic::inspect(dev).is_ok()
}

/// Checks before start: `closed` refuses bridged interfaces; `open` refuses interfaces
/// enslaved to some other device.
pub fn preflight(cfg: &Config) -> Result<(), FallbackError> {
    let i = &cfg.interfaces;
    for iface in [&cfg.datapath.subscriber, &cfg.datapath.upstream] {
        if !exists(iface) {
            continue; // the datapath's interface check names it
        }
        let Some(master) = master_of(iface)? else {
            continue;
        };
        match i.failure_mode {
            FailureMode::Closed => {
                return Err(FallbackError::Enslaved {
                    iface: iface.clone(),
                    master,
                })
            }
            FailureMode::Open if master != i.fallback_bridge => {
                return Err(FallbackError::OtherMaster {
                    iface: iface.clone(),
                    master,
                    bridge: i.fallback_bridge.clone(),
                })
            }
            FailureMode::Open => {}
        }
    }
    Ok(())
}

/// The fallback tables present now (`op25b_fallback_<n>`).
fn fallback_tables() -> Result<Vec<String>, FallbackError> {
    let out = run(
        "failure_mode open: listing nftables tables",
        "nft",
        &["-j", "list", "tables", "bridge"],
        None,
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    Ok(v.get("nftables")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("table")?.get("name")?.as_str().map(str::to_string))
                .filter(|n| n.starts_with(TABLE))
                .collect()
        })
        .unwrap_or_default())
}

/// The fallback rule set of one config, rendered (with rejects, and with rejects as
/// drops for kernels without reject in the bridge family), under a placeholder name.
pub struct Rules {
    with_reject: String,
    as_drop: String,
}

const PLACEHOLDER: &str = "op25b_fallback_NEW";

impl Rules {
    /// Renders the rule set from a loaded config and its prefix listing
    /// ([`crate::config::load_listing`]).
    pub fn new(loaded: &Loaded, listing: &[(IpNet, ClassId)]) -> Rules {
        let render = |reject_as_drop| {
            super::nft::ruleset(
                loaded,
                listing,
                &NftOptions {
                    family: Family::Bridge,
                    reject_as_drop,
                    table: PLACEHOLDER.into(),
                    replace: false,
                },
            )
        };
        Rules {
            with_reject: render(false),
            as_drop: render(true),
        }
    }
}

/// (Re)installs the fallback rule set. The new table is loaded under a fresh name and
/// committed before the old one is deleted, so some complete rule set filters every
/// frame at every moment. (Replacing a table in one transaction is not enough: the
/// kernel activates the new interval maps' elements just after the new rules, and
/// frames in that gap match no element.) Returns the table name and whether rejects
/// had to become drops (kernels without reject in the bridge family).
pub fn install_rules(rules: &Rules) -> Result<(String, bool), FallbackError> {
    let old = fallback_tables()?;
    let name = (0u32..)
        .map(|i| format!("{TABLE}_{i}"))
        .find(|n| !old.contains(n))
        .expect("a free name");
    let load = |text: &str| {
        run(
            "failure_mode open: loading the fallback nftables rule set",
            "nft",
            &["-f", "-"],
            Some(&text.replace(PLACEHOLDER, &name)),
        )
    };
    let as_drop = match load(&rules.with_reject) {
        Ok(_) => false,
        // Only a kernel that cannot reject here gets the drop-only variant.
        Err(e) if e.to_string().contains("reject") => {
            load(&rules.as_drop)?;
            true
        }
        Err(e) => return Err(e),
    };
    for t in old {
        run(
            "failure_mode open: removing the previous fallback table",
            "nft",
            &["delete", "table", "bridge", &t],
            None,
        )?;
    }
    Ok((name, as_drop))
}

/// Creates the fallback bridge if missing (no IPv6 on it, so the box itself never
/// speaks on the wire), brings it up and enslaves both interfaces. Idempotent.
pub fn ensure_bridge(cfg: &Config) -> Result<Vec<String>, FallbackError> {
    let i = &cfg.interfaces;
    let br = i.fallback_bridge.as_str();
    let mut notes = Vec::new();
    if !exists(br) {
        run(
            "failure_mode open: creating the fallback bridge",
            "ip",
            &[
                "link",
                "add",
                "name",
                br,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
            None,
        )?;
        notes.push(format!("created bridge {br}"));
    }
    let knob = format!("/proc/sys/net/ipv6/conf/{br}/disable_ipv6");
    if let Err(e) = std::fs::write(&knob, "1") {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("failure_mode open: {knob}: {e}; the bridge may answer IPv6 neighbour discovery itself");
        }
    }
    for iface in [&cfg.datapath.subscriber, &cfg.datapath.upstream] {
        if master_of(iface)?.as_deref() != Some(br) {
            run(
                "failure_mode open: adding an interface to the fallback bridge",
                "ip",
                &["link", "set", "dev", iface, "master", br],
                None,
            )?;
            notes.push(format!("{iface} is now a port of {br}"));
        }
    }
    run(
        "failure_mode open: bringing the fallback bridge up",
        "ip",
        &["link", "set", "dev", br, "up"],
        None,
    )?;
    Ok(notes)
}
