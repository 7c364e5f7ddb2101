//! Command-line interface: argument parsing, wiring and exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use op25b::classify::{self, Net};
use op25b::config;
use op25b::control::daemon::stdout;
use op25b::offline::capture::{Capture, CaptureError};
use op25b::offline::summary::VerdictTally;
use op25b::policy::{Direction, Verdict};
use op25b::{out, outln};

const ABOUT: &str = "Outbound Port 25 Blocking (OP25B) bump-in-the-wire appliance on AF_XDP.

Bridges a subscriber-facing NIC and an upstream NIC at layer 2 and blocks outbound
SMTP (TCP/25, or the ports a class names) from subscriber prefixes, except towards the
ISP's own relays. Everything else crosses untouched.";

/// `op25b --version`: version, git revision and compiler.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("OP25B_REVISION"),
    ", rustc ",
    env!("OP25B_RUSTC"),
    ")"
);

/// Exit codes, after sysexits.h, so a unit's `RestartPreventExitStatus=` and scripts can
/// tell them apart (docs/operations.md lists them).
pub mod exit {
    /// Bad command line (unknown option, missing argument).
    pub const USAGE: u8 = 64;
    /// An input is malformed (a truncated or unsupported capture).
    pub const DATAERR: u8 = 65;
    /// An input file cannot be opened.
    pub const NOINPUT: u8 = 66;
    /// No running op25b answers on control.listen.
    pub const UNAVAILABLE: u8 = 69;
    /// A worker died while running (a bug: the report says which).
    pub const SOFTWARE: u8 = 70;
    /// The datapath cannot start (interface, queues, MTU, XDP attach, sockets).
    pub const OSERR: u8 = 71;
    /// A file op25b writes (pid file, report) cannot be created.
    pub const CANTCREAT: u8 = 73;
    /// Try again later (another op25b holds the pid file; a reload got no answer).
    pub const TEMPFAIL: u8 = 75;
    /// Missing privileges (capabilities, or signalling the instance).
    pub const NOPERM: u8 = 77;
    /// The config is invalid (or a reload was refused for it).
    pub const CONFIG: u8 = 78;
}

fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}

/// A config that does not load: its one-line error on stderr and exit 78.
fn or_config_error<T>(r: Result<T, config::ConfigError>) -> Result<T, ExitCode> {
    r.map_err(|e| {
        eprintln!("error: {e}");
        code(exit::CONFIG)
    })
}

/// op25b command line.
#[derive(Parser, Debug)]
#[command(name = "op25b", version = VERSION, about = ABOUT, long_about = ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a config and print a summary (exit 0), or print the error (exit 78).
    Check {
        /// YAML config file.
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Override a setting of the file: KEY is a dotted path (interfaces.queues,
        /// policy.subscribers.0.prefix), VALUE is YAML ('workers.cores=[0, 1]'). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<config::Override>,
    },
    /// Classify every frame of a pcap/pcapng capture offline with a config's policy.
    ///
    /// Prints one line per frame and a summary. Exit 0 on success, 78 on a bad config,
    /// 66 when the capture cannot be opened, 65 when it is malformed (truncated,
    /// unsupported link type).
    Classify {
        /// YAML config file.
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
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
        /// Override a setting of the file: KEY is a dotted path (interfaces.queues,
        /// policy.subscribers.0.prefix), VALUE is YAML ('workers.cores=[0, 1]'). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<config::Override>,
    },
    /// Make the running op25b re-read its config, and print its answer.
    ///
    /// Asks the instance on its operator socket (control.socket) for a reload and waits
    /// there for the outcome; the HTTP endpoint is not used. The new policy is validated
    /// and built off the workers, then swapped in at once, with the reloadable settings
    /// (logging.level, workers.stats_interval_secs, datapath.fast_path); settings that
    /// need a restart are named and not applied. A policy in which a class or one of its
    /// prefix files drops to 0 prefixes or loses more than
    /// control.reload_max_loss_percent (50) of them is refused unless --force. Exit 0
    /// when applied, 78 when refused (the old policy stays), 69 when no op25b answers,
    /// 77 without the right to the socket.
    Reload {
        /// YAML config file (only its control section is read).
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The instance's control.socket (instead of reading the config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Apply the new policy even if a class or prefix file lost more than
        /// control.reload_max_loss_percent of its prefixes, or all of them.
        #[arg(long)]
        force: bool,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show the running instance's state and rates (from its metrics endpoint).
    Status {
        /// YAML config file (only its control section is read).
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The instance's control.listen address (instead of reading the config).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the top sources of blocked outbound attempts (the abuse-desk list): likely
    /// infected subscribers, with attempts, distinct destinations, first/last seen.
    /// From the operator socket (control.socket): subscriber addresses are not served
    /// over HTTP unless control.http_top says so.
    Top {
        /// YAML config file (only its control section is read).
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The instance's control.socket (instead of reading the config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// How many sources.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the appliance: bridge the two interfaces of the config through AF_XDP.
    ///
    /// Needs CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK to start and
    /// drops those it does not use once running (docs/operations.md). Stops on
    /// SIGINT or SIGTERM, detaches its XDP programs and prints the final counters as one
    /// JSON line on stdout. Under systemd (Type=notify) it reports READY=1, STATUS= and
    /// watchdog pings. Exit 0 after a clean stop; 78 bad config, 77 missing privileges,
    /// 71 cannot start, 75 already running, 70 a worker died.
    Run {
        /// YAML config file.
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
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
        /// Do not run: make every start-up check (privileges, interfaces, queues, MTU,
        /// attached XDP programs, VLAN stripping, cores, the XDP program against the
        /// verifier, pid file, control.listen) without attaching anything, and print them.
        #[arg(long, conflicts_with = "cleanup")]
        dry_run: bool,
        /// Override a setting of the file: KEY is a dotted path (interfaces.queues,
        /// policy.subscribers.0.prefix), VALUE is YAML ('workers.cores=[0, 1]'). Repeatable;
        /// a reload (SIGHUP, `op25b reload`) applies the same overrides to the re-read file.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<config::Override>,
    },
    /// Per-subscriber exemptions at runtime (the overlay): no reload, kept across
    /// restarts with control.state_file. Through control.socket (root, op25b's user or
    /// group).
    #[command(subcommand)]
    Exempt(ExemptCommand),
    /// List the runtime overlay's entries: prefix, class, source (operator, radius,
    /// auto), age and expiry.
    Sessions {
        /// YAML config file (only its control section is read).
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The instance's control.socket (instead of reading the config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an nftables rule set implementing the config's policy (Linux bridge +
    /// nftables baseline). It starts by replacing its table: `nft -f` twice leaves one
    /// copy.
    ExportNft {
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = NftFamily::Netdev)]
        family: NftFamily,
        /// Drop instead of reject (kernels without reject in the chosen family).
        #[arg(long)]
        reject_as_drop: bool,
        /// Table name.
        #[arg(long, default_value = "op25b")]
        table: String,
        /// Override a setting of the file: KEY is a dotted path (interfaces.queues,
        /// policy.subscribers.0.prefix), VALUE is YAML ('workers.cores=[0, 1]'). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<config::Override>,
    },
    /// Print a systemd drop-in that binds op25b.service to the config's two interfaces
    /// (BindsTo= and After= their device units), loads the `credential:` secrets
    /// (LoadCredential=) and, with `radius:` and a loopback control.listen, lets IP in
    /// only from loopback and the RADIUS clients (IPAddressDeny=/IPAddressAllow=). The
    /// packaged generator writes it at boot and on `systemctl daemon-reload`.
    SystemdDeps {
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Override a setting of the file: KEY is a dotted path (interfaces.queues,
        /// policy.subscribers.0.prefix), VALUE is YAML ('workers.cores=[0, 1]'). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<config::Override>,
    },
    /// Write man pages (DIR/man/*.1) and shell completions (DIR/completions) for
    /// packaging.
    #[command(hide = true)]
    GenerateAssets {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExemptCommand {
    /// Give ADDR (an address, or an IPv6 delegated prefix) a class of the policy at once,
    /// e.g. lift the port-25 block of a customer with their own mail server.
    Add {
        /// Address (IPv4 or IPv6) or IPv6 prefix (2001:db8:1:ab00::/56).
        addr: String,
        /// Class to give (default: policy.exempt_class).
        #[arg(long)]
        class: Option<String>,
        /// Expire after this long (3600, 90m, 12h, 30d); default: until removed.
        #[arg(long)]
        ttl: Option<String>,
        /// Free text kept with the entry (a ticket number).
        #[arg(long, default_value = "")]
        note: String,
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The instance's control.socket (instead of reading the config).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Remove the entry for ADDR: the file policy applies again.
    Del {
        addr: String,
        #[arg(short, long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        socket: Option<PathBuf>,
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

/// The control address: `--listen`, else the config's control section (only that is
/// read, so a broken policy does not stop `status`).
fn control_addr(
    config: &Path,
    listen: Option<std::net::SocketAddr>,
) -> Result<std::net::SocketAddr, ExitCode> {
    if let Some(a) = listen {
        return Ok(a);
    }
    config::load_control(config).map(|c| c.listen).map_err(|e| {
        eprintln!("error: {e} (or give the address: --listen ADDR)");
        code(exit::CONFIG)
    })
}

/// The exit code of an `op25b run` failure.
fn run_error_code(e: &op25b::control::daemon::RunError) -> u8 {
    use op25b::control::daemon::RunError as R;
    use op25b::datapath::StartError as S;
    match e {
        R::Config(_) | R::ReloadConfig(_) | R::ReloadShrink(_) | R::ReloadMtu(_) => exit::CONFIG,
        R::Start(S::NotPrivileged(_)) => exit::NOPERM,
        R::Start(_) | R::Cleanup(_) | R::Signals(_) | R::Listen(_) | R::Fallback(_) => exit::OSERR,
        R::ReloadFastPath(_) => exit::OSERR,
        R::AlreadyRunning { .. } => exit::TEMPFAIL,
        R::PidFile { .. } | R::Report { .. } => exit::CANTCREAT,
        R::WorkerDied => exit::SOFTWARE,
    }
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config, set } => check(&config, &set),
        Command::ExportNft {
            config,
            family,
            reject_as_drop,
            table,
            set,
        } => export_nft(&config, &set, family, reject_as_drop, &table),
        Command::Classify {
            config,
            pcap,
            direction,
            format,
            set,
        } => classify_cmd(&config, &set, &pcap, direction.into(), format),
        Command::Status {
            config,
            listen,
            json,
        } => status_cmd(&config, listen, json),
        Command::Top {
            config,
            socket,
            n,
            json,
        } => top_cmd(&config, socket, n, json),
        Command::Reload {
            config,
            socket,
            force,
            timeout,
        } => reload_cmd(&config, socket, force, timeout),
        Command::Run {
            config,
            report,
            duration,
            cleanup,
            dry_run,
            set,
        } => run_cmd(config, report, duration, cleanup, dry_run, set),
        Command::Exempt(cmd) => exempt_cmd(cmd),
        Command::Sessions {
            config,
            socket,
            json,
        } => sessions_cmd(&config, socket, json),
        Command::SystemdDeps { config, set } => systemd_deps(&config, &set),
        Command::GenerateAssets { out } => generate_assets(&out),
    }
}

/// `op25b status`: the instance's counters from control.listen.
fn status_cmd(config: &Path, listen: Option<std::net::SocketAddr>, json: bool) -> ExitCode {
    let addr = match control_addr(config, listen) {
        Ok(a) => a,
        Err(c) => return c,
    };
    match op25b::control::observe::status::status(addr) {
        Ok(v) if json => {
            outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
            ExitCode::SUCCESS
        }
        Ok(v) => {
            out!("{}", op25b::control::observe::status::table(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: no op25b answering at http://{addr}/metrics (control.listen): {e}");
            code(exit::UNAVAILABLE)
        }
    }
}

/// `op25b top`: the abuse desk's list from the operator socket.
fn top_cmd(config: &Path, socket: Option<PathBuf>, n: usize, json: bool) -> ExitCode {
    let path = match socket_path(config, socket) {
        Ok(p) => p,
        Err(c) => return c,
    };
    match op25b::control::observe::status::top(&path, n.clamp(1, 1000)) {
        Ok(v) if json => {
            outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
            ExitCode::SUCCESS
        }
        Ok(v) => {
            out!("{}", op25b::control::observe::status::top_table(&v));
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "error: {}: {e} (the operator socket is for root and op25b's user and group)",
                path.display()
            );
            code(exit::NOPERM)
        }
        Err(e) => {
            eprintln!(
                "error: no op25b answering on the operator socket {} (control.socket): {e}",
                path.display()
            );
            code(exit::UNAVAILABLE)
        }
    }
}

/// `op25b reload`: asks the instance to reload through the operator socket.
fn reload_cmd(config: &Path, socket: Option<PathBuf>, force: bool, timeout: u64) -> ExitCode {
    let path = match socket_path(config, socket) {
        Ok(p) => p,
        Err(c) => return c,
    };
    use op25b::control::daemon::ReloadRequestError as E;
    match op25b::control::daemon::request_reload(
        &path,
        force,
        std::time::Duration::from_secs(timeout),
    ) {
        Ok(a) if a.applied => {
            outln!("op25b pid {} reloaded: {}", a.pid, a.message);
            if !a.restart_pending.is_empty() {
                outln!(
                    "restart needed for: {} (systemctl restart op25b)",
                    a.restart_pending.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!(
                "error: op25b pid {} refused the reload (policy generation {} stays): {}",
                a.pid, a.generation, a.message
            );
            code(exit::CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            code(match e {
                E::Unreachable { .. } | E::BadAnswer { .. } => exit::UNAVAILABLE,
                E::Permission { .. } => exit::NOPERM,
                E::Timeout { .. } => exit::TEMPFAIL,
            })
        }
    }
}

/// `op25b run` (or `--dry-run`).
fn run_cmd(
    config: PathBuf,
    report: Option<PathBuf>,
    duration: Option<f64>,
    cleanup: bool,
    dry_run: bool,
    set: Vec<config::Override>,
) -> ExitCode {
    if dry_run {
        return dry_run_cmd(&config, &set);
    }
    let opts = op25b::control::daemon::RunOptions {
        config: config::ConfigSource {
            path: config,
            overrides: set,
        },
        report,
        cleanup,
        duration: duration.map(std::time::Duration::from_secs_f64),
    };
    match op25b::control::daemon::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            code(run_error_code(&e))
        }
    }
}

/// The operator socket: `--socket`, else the config's control section.
fn socket_path(config: &Path, socket: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    if let Some(s) = socket {
        return Ok(s);
    }
    config::load_control(config).map(|c| c.socket).map_err(|e| {
        eprintln!("error: {e} (or give the socket: --socket PATH)");
        code(exit::CONFIG)
    })
}

/// Sends one operator request; prints an error and returns the exit code on failure.
fn operator_request(path: &Path, req: serde_json::Value) -> Result<serde_json::Value, ExitCode> {
    match op25b::control::overlay::operator::request(path, &req) {
        Ok(v) if v["ok"].as_bool() == Some(true) => Ok(v),
        Ok(v) => {
            eprintln!("error: {}", v["error"].as_str().unwrap_or("refused"));
            Err(code(exit::DATAERR))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "error: {}: {e} (the operator socket is for root and op25b's user and group)",
                path.display()
            );
            Err(code(exit::NOPERM))
        }
        Err(e) => {
            eprintln!(
                "error: no op25b answering on {} (control.socket): {e}",
                path.display()
            );
            Err(code(exit::UNAVAILABLE))
        }
    }
}

fn exempt_cmd(cmd: ExemptCommand) -> ExitCode {
    match cmd {
        ExemptCommand::Add {
            addr,
            class,
            ttl,
            note,
            config,
            socket,
        } => {
            let ttl = match ttl.as_deref().map(op25b::control::overlay::parse_duration) {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => {
                    eprintln!("error: --ttl {e}");
                    return code(exit::USAGE);
                }
            };
            let path = match socket_path(&config, socket) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let req = serde_json::json!({
                "op": "exempt_add", "prefix": addr, "class": class, "ttl_secs": ttl, "note": note,
            });
            match operator_request(&path, req) {
                Ok(v) => {
                    let e = &v["entry"];
                    outln!(
                        "{} is class {} ({}){}",
                        e["prefix"].as_str().unwrap_or("?"),
                        e["class"].as_str().unwrap_or("?"),
                        match e["expires"].as_u64() {
                            Some(t) => format!("expires at {t}"),
                            None => "until removed".into(),
                        },
                        if v["replaced"].is_null() {
                            ""
                        } else {
                            "; replaced the previous entry"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(c) => c,
            }
        }
        ExemptCommand::Del {
            addr,
            config,
            socket,
        } => {
            let path = match socket_path(&config, socket) {
                Ok(p) => p,
                Err(c) => return c,
            };
            match operator_request(
                &path,
                serde_json::json!({"op": "exempt_del", "prefix": addr}),
            ) {
                Ok(v) => {
                    let e = &v["removed"];
                    outln!(
                        "{} removed (was class {}); the file policy applies again",
                        e["prefix"].as_str().unwrap_or("?"),
                        e["class"].as_str().unwrap_or("?")
                    );
                    ExitCode::SUCCESS
                }
                Err(c) => c,
            }
        }
    }
}

fn sessions_cmd(config: &Path, socket: Option<PathBuf>, json: bool) -> ExitCode {
    let path = match socket_path(config, socket) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let v = match operator_request(&path, serde_json::json!({"op": "sessions"})) {
        Ok(v) => v,
        Err(c) => return c,
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&v["entries"]).expect("json")
        );
        return ExitCode::SUCCESS;
    }
    let now = v["now"].as_u64().unwrap_or(0);
    outln!(
        "{:<44} {:<12} {:<9} {:>10} {:>12}  {:<6} note",
        "prefix",
        "class",
        "source",
        "age",
        "expires in",
        "active"
    );
    let empty = Vec::new();
    for e in v["entries"].as_array().unwrap_or(&empty) {
        let age = now.saturating_sub(e["created"].as_u64().unwrap_or(now));
        outln!(
            "{:<44} {:<12} {:<9} {:>9}s {:>12}  {:<6} {}",
            e["prefix"].as_str().unwrap_or("?"),
            e["class"].as_str().unwrap_or("?"),
            e["source"].as_str().unwrap_or("?"),
            age,
            match e["expires"].as_u64() {
                Some(t) => format!("{}s", t.saturating_sub(now)),
                None => "never".into(),
            },
            if e["active"].as_bool() == Some(true) {
                "yes"
            } else {
                "NO"
            },
            e["note"].as_str().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

/// `op25b run --dry-run`.
fn dry_run_cmd(path: &Path, set: &[config::Override]) -> ExitCode {
    let loaded = match or_config_error(config::load_with(path, set)) {
        Ok(l) => l,
        Err(c) => return c,
    };
    outln!("config {}: OK", path.display());
    for o in set {
        outln!("override: --set {o}");
    }
    match op25b::control::daemon::dry_run(&loaded.config) {
        Ok(notes) => {
            let mut warnings = 0;
            for n in &notes {
                if n.starts_with("warning: ") {
                    warnings += 1;
                    outln!("{n}");
                } else {
                    outln!("ok: {n}");
                }
            }
            outln!(
                "dry run: every start-up check passed ({warnings} warning(s)); nothing was attached"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            code(run_error_code(&e))
        }
    }
}

/// systemd's escaping of a unit name part (`systemd-escape`): `/` becomes `-`, bytes
/// outside `[A-Za-z0-9:_.]` (and a leading `.`) become `\xNN`.
pub fn systemd_escape(s: &str) -> String {
    let mut o = String::new();
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => o.push('-'),
            b'.' if i == 0 => o.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => o.push(b as char),
            _ => o.push_str(&format!("\\x{b:02x}")),
        }
    }
    o
}

fn systemd_deps(path: &Path, set: &[config::Override]) -> ExitCode {
    // Only `interfaces:` is read: this runs at every boot and daemon-reload, and a
    // broken prefix file must not drop the binding.
    let names = match or_config_error(config::load_interface_names(path, set)) {
        Ok(n) => n,
        Err(c) => return c,
    };
    let units: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                "{}.device",
                systemd_escape(&format!("sys/subsystem/net/devices/{n}"))
            )
        })
        .collect();
    outln!(
        "# Generated by `op25b systemd-deps` from {}: op25b runs only while both\n# interfaces exist, and stops when one goes away.\n[Unit]\nBindsTo={}\nAfter={}",
        path.display(),
        units.join(" "),
        units.join(" ")
    );
    // The [Service] part (credentials, IP filter) must not cost the binding: an error
    // there is a comment and a note, and the exit stays 0.
    match config::load_unit_service(path, set) {
        Ok(unit) => out!(
            "{}",
            op25b::control::daemon::systemd::service_dropin(path, &unit)
        ),
        Err(e) => {
            eprintln!("warning: {e}; no [Service] part (LoadCredential=, IPAddressAllow=) written");
            outln!("# no [Service] part: {}", e.to_string().replace('\n', " "));
        }
    }
    ExitCode::SUCCESS
}

fn generate_assets(out: &Path) -> ExitCode {
    use clap::CommandFactory;
    let write = || -> std::io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let man = out.join("man");
        let comp = out.join("completions");
        std::fs::create_dir_all(&man)?;
        std::fs::create_dir_all(&comp)?;
        let cmd = Cli::command();
        let mut page = |c: clap::Command, name: String| -> std::io::Result<()> {
            let path = man.join(format!("{name}.1"));
            let mut f = std::fs::File::create(&path)?;
            clap_mangen::Man::new(c.name(clap::builder::Str::from(name.leak() as &'static str)))
                .render(&mut f)?;
            written.push(path);
            Ok(())
        };
        page(cmd.clone(), "op25b".into())?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("op25b-{}", sub.get_name());
            page(sub.clone().version(VERSION), name)?;
        }
        for (shell, file) in [
            (clap_complete::Shell::Bash, "op25b.bash"),
            (clap_complete::Shell::Zsh, "_op25b"),
            (clap_complete::Shell::Fish, "op25b.fish"),
        ] {
            let path = comp.join(file);
            let mut f = std::fs::File::create(&path)?;
            clap_complete::generate(shell, &mut Cli::command(), "op25b", &mut f);
            written.push(path);
        }
        Ok(written)
    };
    match write() {
        Ok(files) => {
            for f in files {
                outln!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", out.display());
            code(exit::CANTCREAT)
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

fn check(path: &Path, set: &[config::Override]) -> ExitCode {
    let loaded = &match or_config_error(config::load_with(path, set)) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let c = &loaded.config;
    let p = &loaded.policy;
    let s = p.summary();
    outln!("{}: OK", path.display());
    for o in set {
        outln!("override: --set {o}");
    }
    outln!(
        "interfaces: subscriber {} <-> upstream {}, {} queue(s), xdp {:?}, zero-copy {:?}, frame {} B, rings {}",
        c.datapath.subscriber,
        c.datapath.upstream,
        c.datapath.queues,
        c.datapath.xdp_mode,
        c.datapath.zero_copy,
        c.datapath.frame_size,
        c.datapath.ring_size
    );
    outln!(
        "workers: cores {:?}, burst {}, busy_poll {}, overload_guard {}",
        c.datapath.cores,
        c.datapath.burst,
        c.datapath.busy_poll,
        c.datapath.overload_guard
    );
    check_classes(loaded);
    check_destinations(loaded);
    check_paths(loaded);
    check_control(loaded);
    outln!(
        "tables: {} in memory, built in {:.1} ms",
        human_bytes(s.table_bytes),
        loaded.report.build_time.as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}

/// `op25b check`: the class table.
fn check_classes(loaded: &config::Loaded) {
    let p = &loaded.policy;
    let s = p.summary();
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
}

/// `op25b check`: the allowed destinations and the prefix files.
fn check_destinations(loaded: &config::Loaded) {
    let s = loaded.policy.summary();
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
    for f in &loaded.report.files {
        outln!(
            "prefix file: {} ({} prefixes{})",
            f.path.display(),
            f.prefixes,
            f.class
                .as_ref()
                .map(|c| format!(", class {c}"))
                .unwrap_or_else(|| ", allowed destinations".into())
        );
    }
}

/// `op25b check`: fragments, the fast path, the reject rate.
fn check_paths(loaded: &config::Loaded) {
    let c = &loaded.config;
    let p = &loaded.policy;
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
            config::FastPathMode::Kernel => "kernel (the XDP program judges what it can)",
            config::FastPathMode::Unblockable => "unblockable (only what no class can block)",
            config::FastPathMode::Off => "off (every frame to the workers)",
        },
        ports(Direction::Outbound),
        ports(Direction::Inbound)
    );
    outln!(
        "reject rate: {}/s per worker, burst {}",
        c.datapath.reply_rate.per_second,
        c.datapath.reply_rate.burst
    );
}

/// `op25b check`: the control plane and the runtime overlay.
fn check_control(loaded: &config::Loaded) {
    let c = &loaded.config;
    outln!(
        "control: {} (pid file {}, operator socket {}, overlay state file {})",
        c.control.listen,
        c.control.pid_file.display(),
        c.control.socket.display(),
        c.control
            .state_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none: the overlay is not kept across restarts".into())
    );
    outln!(
        "runtime overlay: exempt_class {}; auto-quarantine {}; RADIUS {}",
        loaded.report.exempt_class.as_deref().unwrap_or("none"),
        match &loaded.report.auto_quarantine {
            Some(a) => format!(
                "{} blocked attempts within a minute -> class {} for {} s",
                a.attempts_per_minute,
                a.class,
                a.duration.as_secs()
            ),
            None => "off".into(),
        },
        match &c.radius {
            Some(r) => format!(
                "udp {}, {} client(s), Filter-Id -> class: {}, session timeout {} s",
                r.listen,
                r.clients.len(),
                if r.filter_ids.is_empty() {
                    "none".to_string()
                } else {
                    r.filter_ids
                        .iter()
                        .map(|(k, v)| format!("{k} -> {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                r.session_timeout.as_secs()
            ),
            None => "off".into(),
        }
    );
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

/// One frame's line of `op25b classify` (`n`: its number in the capture).
fn write_frame(
    out: &mut impl Write,
    format: Format,
    n: u64,
    frame: &[u8],
    info: &classify::FrameInfo,
    c: &classify::Classified,
    policy: &op25b::policy::Policy,
) -> std::io::Result<()> {
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
    match format {
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
                "{:>6} {:<8} {:<20} {:<15} {:<11} {:<26} {:<26} {:<6} {:>5} {}",
                n,
                c.verdict.action_str(),
                c.verdict.reason().as_str(),
                reply.unwrap_or("-"),
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
                "frame": n,
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
    }
}

/// Opens `op25b classify`'s capture; prints the error and returns the exit code on failure.
fn open_capture(pcap: &Path) -> Result<Capture, ExitCode> {
    match Capture::open(pcap) {
        Ok(c) => Ok(c),
        Err(e @ CaptureError::Open(..)) => {
            eprintln!("error: {e}");
            Err(code(exit::NOINPUT))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(code(exit::DATAERR))
        }
    }
}

fn classify_cmd(
    config_path: &Path,
    set: &[config::Override],
    pcap: &Path,
    direction: Direction,
    format: Format,
) -> ExitCode {
    let loaded = match or_config_error(config::load_with(config_path, set)) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let policy = &loaded.policy;
    let mut cap = match open_capture(pcap) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut tally = VerdictTally::default();
    let mut failure = None;
    if format == Format::Text {
        stdout::or_exit(writeln!(
            out,
            "{:>6} {:<8} {:<20} {:<15} {:<11} {:<26} {:<26} {:<6} {:>5} link",
            "frame",
            "verdict",
            "reason",
            "reply",
            "class",
            "source",
            "destination",
            "proto",
            "dport"
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
        let info = classify::parse(&frame);
        let c = classify::classify_parsed(&info, direction, policy);
        tally.record(c.verdict);
        let frames = tally.frames();
        stdout::or_exit(write_frame(
            &mut out, format, frames, &frame, &info, &c, policy,
        ));
    }
    match format {
        Format::Text => {
            for line in tally.text_lines() {
                stdout::or_exit(writeln!(out, "{line}"));
            }
        }
        Format::Jsonl => stdout::or_exit(writeln!(out, "{}", tally.json(failure.is_none()))),
    }
    stdout::or_exit(out.flush());
    if let Some(e) = failure {
        eprintln!("error: {e} (after {} frames)", tally.frames());
        return code(exit::DATAERR);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::systemd_escape;

    #[test]
    fn escapes_like_systemd_escape_path() {
        // Checked against `systemd-escape --path` (systemd 252).
        let dev = |n: &str| systemd_escape(&format!("sys/subsystem/net/devices/{n}"));
        assert_eq!(dev("sub0"), "sys-subsystem-net-devices-sub0");
        assert_eq!(dev("up-0"), "sys-subsystem-net-devices-up\\x2d0");
        assert_eq!(dev(".dot0"), "sys-subsystem-net-devices-.dot0");
        assert_eq!(dev("x%y"), "sys-subsystem-net-devices-x\\x25y");
        assert_eq!(systemd_escape(".a"), "\\x2ea");
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NftFamily {
    /// Bridge family, prerouting hook (needs the interfaces in a bridge).
    Bridge,
    /// Netdev family, ingress hooks on both interfaces.
    Netdev,
}

pub fn export_nft(
    config: &Path,
    set: &[config::Override],
    family: NftFamily,
    reject_as_drop: bool,
    table: &str,
) -> ExitCode {
    let (loaded, listing) = match config::load_listing_with(config, set) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let opts = op25b::control::export::nft::NftOptions {
        family: match family {
            NftFamily::Bridge => op25b::control::export::nft::Family::Bridge,
            NftFamily::Netdev => op25b::control::export::nft::Family::Netdev,
        },
        reject_as_drop,
        table: table.to_string(),
        replace: true,
    };
    out!(
        "{}",
        op25b::control::export::nft::ruleset(&loaded, &listing, &opts)
    );
    ExitCode::SUCCESS
}
