//! Command-line interface: argument parsing, wiring and exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use op25b::classify::{self, Net};
use op25b::config;
use op25b::control::stdout;
use op25b::policy::{Direction, Reason, Verdict};
use op25b::{out, outln};

const ABOUT: &str = "Outbound Port 25 Blocking (OP25B) bump-in-the-wire appliance on AF_XDP.

Bridges a subscriber-facing NIC and an upstream NIC at layer 2 and blocks outbound
SMTP (TCP/25, or the ports a class names) from subscriber prefixes, except towards the
ISP's own relays. Everything else crosses untouched.";

/// op25b command line.
#[derive(Parser, Debug)]
#[command(name = "op25b", version, about = ABOUT, long_about = ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a config and print a summary (exit 0), or print the error (exit 1).
    Check {
        /// YAML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Classify every frame of a pcap/pcapng capture offline with a config's policy.
    ///
    /// Prints one line per frame and a summary. Exit 0 on success, 1 on a bad config,
    /// 2 on unreadable input (missing file, truncated capture, unsupported link type).
    Classify {
        /// YAML config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Capture file (classic pcap or pcapng, Ethernet link type).
        #[arg(short, long)]
        pcap: PathBuf,
        /// Direction the captured frames travel.
        #[arg(short, long, value_enum, default_value_t = DirectionArg::Outbound)]
        direction: DirectionArg,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Make the running op25b re-read its config (SIGHUP to the pid in control.pid_file).
    ///
    /// The new policy is validated and built off the workers, then swapped in at once; an
    /// invalid config, or a change that needs a restart, is logged by the running
    /// instance and the old policy stays. Exit 0 once the signal is sent.
    Reload {
        /// YAML config file (its control.pid_file names the instance).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Show the running instance's state and rates (from its metrics endpoint).
    Status {
        /// YAML config file (its control.listen names the instance).
        #[arg(short, long)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the top sources of blocked outbound attempts (the abuse-desk list): likely
    /// infected subscribers, with attempts, distinct destinations, first/last seen.
    Top {
        /// YAML config file (its control.listen names the instance).
        #[arg(short, long)]
        config: PathBuf,
        /// How many sources.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the appliance: bridge the two interfaces of the config through AF_XDP.
    ///
    /// Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK). Stops on SIGINT or
    /// SIGTERM, detaches its XDP programs and prints the final counters as JSON on
    /// stdout. Exit 0 after a clean stop, 1 if it cannot start (the reason is printed).
    Run {
        /// YAML config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Also write the final counters (JSON) to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Stop by itself after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Do not run: detach any XDP program left on the config's interfaces (after a
        /// crash or kill -9) and remove a stale pid file.
        #[arg(long)]
        cleanup: bool,
    },
    /// Benchmark harness: AF_XDP traffic generator, verifying sink, run report.
    #[command(subcommand)]
    Bench(crate::cli_bench::BenchCommand),
    /// Print an nftables rule set implementing the config's policy (Linux bridge +
    /// nftables baseline, and the `failure_mode: open` fallback).
    ExportNft {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = crate::cli_bench::NftFamily::Netdev)]
        family: crate::cli_bench::NftFamily,
        /// Drop instead of reject (kernels without reject in the chosen family).
        #[arg(long)]
        reject_as_drop: bool,
        /// Table name.
        #[arg(long, default_value = "op25b")]
        table: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DirectionArg {
    /// Subscriber -> upstream.
    Outbound,
    /// Upstream -> subscriber.
    Inbound,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::Outbound => Direction::Outbound,
            DirectionArg::Inbound => Direction::Inbound,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Text,
    /// One JSON object per line.
    Jsonl,
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Bench(cmd) => crate::cli_bench::bench(cmd),
        Command::ExportNft {
            config,
            family,
            reject_as_drop,
            table,
        } => crate::cli_bench::export_nft(&config, family, reject_as_drop, &table),
        Command::Classify {
            config,
            pcap,
            direction,
            format,
        } => classify_cmd(&config, &pcap, direction.into(), format),
        Command::Status { config, json } => {
            let addr = match op25b::config::load(&config) {
                Ok(l) => l.config.control.listen,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            match op25b::control::status::status(addr) {
                Ok(v) if json => {
                    outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    out!("{}", op25b::control::status::table(&v));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "error: no op25b answering at http://{addr}/metrics (control.listen): {e}"
                    );
                    ExitCode::from(1)
                }
            }
        }
        Command::Top { config, n, json } => {
            let addr = match op25b::config::load(&config) {
                Ok(l) => l.config.control.listen,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            match op25b::control::status::top(addr, n.clamp(1, 1000)) {
                Ok(v) if json => {
                    outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    out!("{}", op25b::control::status::top_table(&v));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "error: no op25b answering at http://{addr}/top (control.listen): {e}"
                    );
                    ExitCode::from(1)
                }
            }
        }
        Command::Reload { config } => match op25b::control::signal_reload(&config) {
            Ok(pid) => {
                outln!("sent SIGHUP to op25b pid {pid}; see its log for the result");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Run {
            config,
            report,
            duration,
            cleanup,
        } => {
            let opts = op25b::control::RunOptions {
                config,
                report,
                cleanup,
                duration: duration.map(std::time::Duration::from_secs_f64),
            };
            match op25b::control::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn check(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let c = &loaded.config;
    let p = &loaded.policy;
    let s = p.summary();
    outln!("{}: OK", path.display());
    outln!(
        "interfaces: subscriber {} <-> upstream {}, {} queue(s), xdp {:?}, zero-copy {:?}, frame {} B, rings {}",
        c.interfaces.subscriber,
        c.interfaces.upstream,
        c.interfaces.queues,
        c.interfaces.xdp_mode,
        c.interfaces.zero_copy,
        c.interfaces.frame_size,
        c.interfaces.ring_size
    );
    outln!(
        "workers: cores {:?}, burst {}, busy_poll {}",
        c.workers.cores,
        c.workers.burst,
        c.workers.busy_poll
    );
    outln!("classes:");
    outln!(
        "  {:<16} {:<18} {:<22} {:>8} {:>8}  inbound-25",
        "name",
        "blocked ports",
        "action",
        "IPv4",
        "IPv6"
    );
    for (i, class) in p.classes().iter().enumerate() {
        let ports: Vec<String> = class.blocked_ports.iter().map(|x| x.to_string()).collect();
        let action = match class.action {
            _ if class.blocked_ports.is_empty() => "-".to_string(),
            op25b::policy::BlockAction::Drop => "drop".to_string(),
            op25b::policy::BlockAction::Reject(k) => format!("reject ({})", k.as_str()),
        };
        let (v4, v6) = s.prefixes_per_class[i];
        outln!(
            "  {:<16} {:<18} {:<22} {:>8} {:>8}  {}",
            class.name,
            if ports.is_empty() {
                "-".to_string()
            } else {
                ports.join(",")
            },
            action,
            v4,
            v6,
            if class.block_inbound_smtp {
                "blocked"
            } else {
                "open"
            }
        );
    }
    let allowed: Vec<String> = loaded
        .report
        .allowed
        .iter()
        .map(|n| n.to_string())
        .collect();
    outln!(
        "allowed destinations: {} IPv4, {} IPv6{}",
        s.allowed_v4,
        s.allowed_v6,
        if allowed.len() <= 8 && !allowed.is_empty() {
            format!(" ({})", allowed.join(", "))
        } else {
            String::new()
        }
    );
    for (f, n) in &loaded.report.files {
        outln!("prefix file: {} ({n} prefixes)", f.display());
    }
    let f = p.fragments();
    outln!(
        "fragments: tiny first {}, non-first {}",
        if f.drop_tiny_first { "drop" } else { "forward" },
        if f.drop_non_first { "drop" } else { "forward" }
    );
    let ports = |d| {
        let v: Vec<String> = p.userspace_ports(d).iter().map(|x| x.to_string()).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    outln!(
        "fast path: {}; to the workers: TCP outbound to {}, inbound to {}; every fragment; what the XDP program does not fully parse",
        match c.datapath.fast_path {
            config::FastPathMode::On => "on",
            config::FastPathMode::Off => "off (every frame to the workers)",
        },
        ports(Direction::Outbound),
        ports(Direction::Inbound)
    );
    outln!(
        "reject rate: {}/s per worker, burst {}",
        c.reject_rate.per_second,
        c.reject_rate.burst
    );
    outln!(
        "control: {} (pid file {})",
        c.control.listen,
        c.control.pid_file.display()
    );
    outln!(
        "tables: {} in memory, built in {:.1} ms",
        human_bytes(s.table_bytes),
        loaded.report.build_time.as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}

/// Frames from a capture, whatever its format.
enum Capture {
    Pcap(pcap_file::pcap::PcapReader<std::io::BufReader<std::fs::File>>),
    PcapNg(pcap_file::pcapng::PcapNgReader<std::io::BufReader<std::fs::File>>),
}

/// Why a capture cannot be read.
#[derive(Debug, thiserror::Error)]
enum CaptureError {
    #[error("{0}: cannot open: {1}")]
    Open(PathBuf, std::io::Error),
    #[error("{0}: not a pcap or pcapng file (magic {1:02x?})")]
    Magic(PathBuf, Vec<u8>),
    #[error("{0}: {1}")]
    Format(PathBuf, String),
    #[error("{0}: link type {1} is not supported; expected Ethernet (1)")]
    LinkType(PathBuf, String),
}

impl Capture {
    fn open(path: &Path) -> Result<Self, CaptureError> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| CaptureError::Open(path.into(), e))?;
        let mut magic = [0u8; 4];
        let n = f
            .read(&mut magic)
            .map_err(|e| CaptureError::Open(path.into(), e))?;
        drop(f);
        let f = std::fs::File::open(path).map_err(|e| CaptureError::Open(path.into(), e))?;
        let r = std::io::BufReader::new(f);
        let fmt = |e: pcap_file::PcapError| CaptureError::Format(path.into(), e.to_string());
        match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => Ok(Capture::PcapNg(
                pcap_file::pcapng::PcapNgReader::new(r).map_err(fmt)?,
            )),
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                let rd = pcap_file::pcap::PcapReader::new(r).map_err(fmt)?;
                // The upper 16 bits may carry FCS flags (pcap spec); tcpdump masks them.
                let link = u32::from(rd.header().datalink) & 0xffff;
                if link != 1 {
                    return Err(CaptureError::LinkType(path.into(), link.to_string()));
                }
                Ok(Capture::Pcap(rd))
            }
            _ => Err(CaptureError::Magic(path.into(), magic[..n].to_vec())),
        }
    }

    /// The next Ethernet frame; `Err` on a damaged file.
    fn next(&mut self, path: &Path) -> Option<Result<Vec<u8>, CaptureError>> {
        let fmt = |e: pcap_file::PcapError| CaptureError::Format(path.into(), e.to_string());
        match self {
            // Raw records: tcpdump accepts orig_len > snaplen (and so do we); only a record
            // cut short by the end of the file is an error.
            Capture::Pcap(r) => r
                .next_raw_packet()
                .map(|p| p.map(|p| p.data.into_owned()).map_err(fmt)),
            Capture::PcapNg(r) => loop {
                let block = match r.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(fmt(e))),
                };
                use pcap_file::pcapng::Block;
                let (iface, data) = match block {
                    Block::EnhancedPacket(p) => (Some(p.interface_id), p.data.into_owned()),
                    Block::SimplePacket(p) => (Some(0), p.data.into_owned()),
                    _ => continue,
                };
                if let Some(i) = iface {
                    let lt = r.interfaces().get(i as usize).map(|d| d.linktype);
                    if lt != Some(pcap_file::DataLink::ETHERNET) {
                        return Some(Err(CaptureError::LinkType(path.into(), format!("{lt:?}"))));
                    }
                }
                return Some(Ok(data));
            },
        }
    }
}

fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        other => other.to_string(),
    }
}

fn classify_cmd(config_path: &Path, pcap: &Path, direction: Direction, format: Format) -> ExitCode {
    let loaded = match config::load(config_path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let policy = &loaded.policy;
    let mut cap = match Capture::open(pcap) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut counts = vec![[0u64; 3]; Reason::COUNT];
    let mut frames = 0u64;
    let mut failure = None;
    if format == Format::Text {
        stdout::or_exit(writeln!(
            out,
            "{:>6} {:<8} {:<20} {:<11} {:<26} {:<26} {:<6} {:>5} link",
            "frame", "verdict", "reason", "class", "source", "destination", "proto", "dport"
        ));
    }
    while let Some(next) = cap.next(pcap) {
        let frame = match next {
            Ok(f) => f,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        frames += 1;
        let info = classify::parse(&frame);
        let c = classify::classify_parsed(&info, direction, policy);
        counts[c.verdict.reason().index()][c.verdict.action_index()] += 1;
        let class = c
            .class
            .and_then(|id| policy.class(id))
            .map_or("-", |k| k.name.as_str());
        let (src, dst, proto) = match info.net {
            Net::Ip { addrs, segment, .. } => (
                addrs.src().to_string(),
                addrs.dst().to_string(),
                Some(segment.protocol),
            ),
            _ => ("-".into(), "-".into(), None),
        };
        let vlans: Vec<u16> = info.link.vlans.iter().flatten().copied().collect();
        let reply = match c.verdict {
            Verdict::Reject(_, k) => Some(k.as_str()),
            _ => None,
        };
        let written = match format {
            Format::Text => {
                let mut link = String::new();
                if !vlans.is_empty() {
                    link.push_str(&format!(
                        "vlan={}",
                        vlans
                            .iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(".")
                    ));
                }
                if let Some(s) = info.link.pppoe_session {
                    if !link.is_empty() {
                        link.push(' ');
                    }
                    link.push_str(&format!("pppoe={s:#06x}"));
                }
                writeln!(
                    out,
                    "{:>6} {:<8} {:<20} {:<11} {:<26} {:<26} {:<6} {:>5} {}",
                    frames,
                    c.verdict.action_str(),
                    c.verdict.reason().as_str(),
                    class,
                    src,
                    dst,
                    proto.map_or("-".into(), protocol_name),
                    c.dst_port.map_or("-".into(), |p| p.to_string()),
                    if link.is_empty() { "-" } else { &link }
                )
            }
            Format::Jsonl => {
                let v = serde_json::json!({
                    "frame": frames,
                    "verdict": c.verdict.action_str(),
                    "reason": c.verdict.reason().as_str(),
                    "reply": reply,
                    "class": c.class.and_then(|id| policy.class(id)).map(|k| k.name.as_str()),
                    "src": (src != "-").then_some(&src),
                    "dst": (dst != "-").then_some(&dst),
                    "protocol": proto,
                    "dst_port": c.dst_port,
                    "vlans": vlans,
                    "pppoe_session": info.link.pppoe_session,
                    "len": frame.len(),
                });
                writeln!(out, "{v}")
            }
        };
        stdout::or_exit(written);
    }
    // Summary.
    let mut by_verdict = [0u64; 3];
    for row in &counts {
        for (i, n) in row.iter().enumerate() {
            by_verdict[i] += n;
        }
    }
    let names = ["forward", "drop", "reject"];
    match format {
        Format::Text => {
            stdout::or_exit(writeln!(
                out,
                "summary: {frames} frames: {} forward, {} drop, {} reject",
                by_verdict[0], by_verdict[1], by_verdict[2]
            ));
            for r in Reason::ALL {
                for (i, n) in counts[r.index()].iter().enumerate() {
                    if *n > 0 {
                        stdout::or_exit(writeln!(
                            out,
                            "summary: {:<8} {:<20} {n}",
                            names[i],
                            r.as_str()
                        ));
                    }
                }
            }
        }
        Format::Jsonl => {
            let mut reasons = serde_json::Map::new();
            for r in Reason::ALL {
                for (i, n) in counts[r.index()].iter().enumerate() {
                    if *n > 0 {
                        reasons.insert(format!("{}/{}", names[i], r.as_str()), (*n).into());
                    }
                }
            }
            let v = serde_json::json!({"summary": {
                "frames": frames,
                "forward": by_verdict[0], "drop": by_verdict[1], "reject": by_verdict[2],
                "reasons": reasons,
                "complete": failure.is_none(),
            }});
            stdout::or_exit(writeln!(out, "{v}"));
        }
    }
    stdout::or_exit(out.flush());
    if let Some(e) = failure {
        eprintln!("error: {e} (after {frames} frames)");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
