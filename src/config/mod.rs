//! YAML -> validated [`Config`] -> compiled [`Policy`].
//!
//! Three stages, as ripgrep does with `LowArgs` -> `HiArgs`: serde structs that mirror the
//! file (`deny_unknown_fields`, so a typo is an error), validation that names the file,
//! the field or line and the bad value, and a call into [`PolicyBuilder`]. Workers never
//! see anything from this module: they get the compiled `Policy`. A config either loads
//! whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Deserialize;

pub mod diff;
pub mod overrides;

pub use overrides::Override;

/// The datapath owns these; the YAML parses straight into them.
pub use crate::datapath::settings::{FastPathMode, XdpMode, ZeroCopy};
use crate::policy::{BlockAction, ClassId, FragmentPolicy, Policy, PolicyBuilder, ReplyKind};

/// Default metrics/control listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9725";
/// Default pid file.
pub const DEFAULT_PID_FILE: &str = "/run/op25b/op25b.pid";
/// Where every subcommand looks for the config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/op25b/op25b.yaml";

/// Everything that can be wrong with a config. Each message names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A prefix file named by the config could not be read.
    #[error("{}: cannot read: {source} (listed in {})", file.display(), config.display())]
    ReadListed {
        config: PathBuf,
        file: PathBuf,
        source: std::io::Error,
    },
    /// YAML syntax, a wrong type, an unknown field or an unparseable value; serde_yaml's
    /// message carries the field path, line and column.
    #[error("{}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    /// A value that parses but does not make sense.
    #[error("{}: {field}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        message: String,
    },
    /// The policy builder refused what the file describes (a class twice, too many
    /// classes, a table too large).
    #[error("{}: {field}: {source}", file.display())]
    Policy {
        file: PathBuf,
        field: String,
        source: crate::policy::PolicyError,
    },
    /// A `--set KEY=VALUE` that does not fit the file.
    #[error("{}: {source}", file.display())]
    Override {
        file: PathBuf,
        source: overrides::OverrideError,
    },
    /// A bad line in a prefix file.
    #[error("{}:{line}: {message} (listed in {})", file.display(), config.display())]
    PrefixFile {
        config: PathBuf,
        file: PathBuf,
        line: usize,
        message: String,
    },
}

impl ConfigError {
    fn invalid(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Stage 1: the file as written.

/// A prefix as written: `ADDR/LEN` or a bare address (a host route). Host bits must be
/// clear: `198.51.100.7/24` is an error, not silently `198.51.100.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix(pub IpNet);

/// Why a string is not a [`Prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixError(String);

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let net = if t.contains('/') {
            t.parse::<IpNet>().map_err(|_| {
                PrefixError(format!(
                    "{s:?} is not an IPv4/IPv6 prefix (expected ADDRESS/LENGTH, length 0-32 \
                     for IPv4, 0-128 for IPv6)"
                ))
            })?
        } else {
            let addr = t.parse::<std::net::IpAddr>().map_err(|_| {
                PrefixError(format!(
                    "{s:?} is not an IPv4/IPv6 prefix (expected ADDRESS/LENGTH or an address)"
                ))
            })?;
            IpNet::from(addr)
        };
        if net.trunc() != net {
            return Err(PrefixError(format!(
                "{s:?} has host bits set (did you mean {}?)",
                net.trunc()
            )));
        }
        Ok(Prefix(net))
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `interfaces:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterfaces {
    subscriber: String,
    upstream: String,
    #[serde(default = "default_queues")]
    queues: u32,
    #[serde(default)]
    xdp_mode: XdpMode,
    #[serde(default)]
    zero_copy: ZeroCopy,
    #[serde(default = "default_frame_size")]
    frame_size: u32,
    #[serde(default = "default_ring_size")]
    ring_size: u32,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default = "default_fallback_bridge")]
    fallback_bridge: String,
}

fn default_fallback_bridge() -> String {
    "br-op25b".to_string()
}

/// What happens to traffic while op25b is not running (stopped, crashed, killed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// No traffic crosses: the interfaces are not bridged, so nothing forwards frames
    /// once op25b's XDP programs are gone. Subscribers are offline until it restarts.
    #[default]
    Closed,
    /// The two interfaces are ports of a Linux bridge that filters with an nftables
    /// rule set generated from the same policy; op25b's XDP programs take every frame
    /// before the bridge while it runs, and the kernel detaches them when it dies.
    Open,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Closed => "closed",
            FailureMode::Open => "open",
        }
    }
}

fn default_queues() -> u32 {
    1
}
fn default_frame_size() -> u32 {
    4096
}
fn default_ring_size() -> u32 {
    2048
}

/// `workers:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    #[serde(default)]
    cores: Option<Vec<usize>>,
    #[serde(default = "default_burst")]
    burst: u32,
    #[serde(default)]
    busy_poll: bool,
    #[serde(default = "default_stats_interval")]
    stats_interval_secs: u64,
}

impl Default for RawWorkers {
    fn default() -> Self {
        Self {
            cores: None,
            burst: default_burst(),
            busy_poll: false,
            stats_interval_secs: default_stats_interval(),
        }
    }
}

fn default_burst() -> u32 {
    64
}
fn default_stats_interval() -> u64 {
    10
}

/// `policy.classes.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    #[serde(default = "default_block_ports")]
    block_ports: Vec<i64>,
    #[serde(default)]
    action: RawAction,
    #[serde(default)]
    reply: Option<RawReply>,
    #[serde(default)]
    block_inbound_smtp: bool,
}

fn default_block_ports() -> Vec<i64> {
    vec![25]
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    #[default]
    Drop,
    Reject,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawReply {
    #[default]
    TcpReset,
    IcmpProhibited,
}

/// `policy.subscribers[i]:` exactly one of `prefix`, `prefixes`, `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribers {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    prefixes: Option<Vec<String>>,
    #[serde(default)]
    file: Option<PathBuf>,
    class: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawFragmentAction {
    #[default]
    Drop,
    Forward,
}

/// `policy.auto_quarantine:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoQuarantine {
    attempts_per_minute: u64,
    class: String,
    duration_secs: u64,
}

/// Moves a source that makes at least `attempts_per_minute` blocked outbound attempts
/// within a minute into `class` for `duration` (through the runtime overlay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoQuarantine {
    pub attempts_per_minute: u64,
    pub class: String,
    pub duration: Duration,
}

/// `policy.fragments:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragments {
    #[serde(default = "fragment_drop")]
    tiny_first: RawFragmentAction,
    #[serde(default = "fragment_forward")]
    non_first: RawFragmentAction,
}

fn fragment_drop() -> RawFragmentAction {
    RawFragmentAction::Drop
}
fn fragment_forward() -> RawFragmentAction {
    RawFragmentAction::Forward
}

impl Default for RawFragments {
    fn default() -> Self {
        Self {
            tiny_first: fragment_drop(),
            non_first: fragment_forward(),
        }
    }
}

/// `policy.reject_rate:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    #[serde(default = "default_rate")]
    per_second: u32,
    #[serde(default = "default_rate_burst")]
    burst: u32,
}

fn default_rate() -> u32 {
    1000
}
fn default_rate_burst() -> u32 {
    100
}

impl Default for RawRate {
    fn default() -> Self {
        Self {
            per_second: default_rate(),
            burst: default_rate_burst(),
        }
    }
}

/// `policy.classes`: a map that refuses a class name given twice (a plain map would
/// silently keep the last definition).
#[derive(Debug, Default)]
struct ClassMap(BTreeMap<String, RawClass>);

impl<'de> Deserialize<'de> for ClassMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ClassMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of class names to class definitions")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<ClassMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "class {k:?} is defined twice; each class name once"
                        )));
                    }
                    let v = m.next_value::<RawClass>()?;
                    out.insert(k, v);
                }
                Ok(ClassMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl std::ops::Deref for ClassMap {
    type Target = BTreeMap<String, RawClass>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// `policy:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    classes: ClassMap,
    #[serde(default)]
    subscribers: Vec<RawSubscribers>,
    #[serde(default)]
    allowed_destinations: Vec<String>,
    #[serde(default)]
    allowed_destination_files: Vec<PathBuf>,
    #[serde(default)]
    unmatched_class: Option<String>,
    /// The class `op25b exempt add` gives when no `--class` is named.
    #[serde(default)]
    exempt_class: Option<String>,
    #[serde(default)]
    auto_quarantine: Option<RawAutoQuarantine>,
    #[serde(default)]
    fragments: RawFragments,
    #[serde(default)]
    reject_rate: RawRate,
}

/// `control:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_pid_file")]
    pid_file: PathBuf,
    /// The operator socket (`op25b exempt`, `sessions`); default: the pid file's path
    /// with the extension `.sock`.
    #[serde(default)]
    socket: Option<PathBuf>,
    /// Where the runtime overlay is kept across restarts; none: not kept.
    #[serde(default)]
    state_file: Option<PathBuf>,
}

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
                let full = resolve(file, p);
                read_text(&full, 4096, "RADIUS secret file")
                    .map_err(|source| ConfigError::Read { file: full, source })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
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
    for (id, class) in &r.filter_ids {
        if !policy.classes.contains_key(class) {
            return Err(ConfigError::invalid(
                file,
                format!("radius.filter_ids.{id}"),
                format!("{class:?} is not a class of policy.classes"),
            ));
        }
    }
    if r.session_timeout_secs == 0 {
        return Err(ConfigError::invalid(
            file,
            "radius.session_timeout_secs",
            "0 would expire every session at once; expected at least 1",
        ));
    }
    Ok(RadiusSettings {
        listen,
        clients,
        filter_ids: r.filter_ids.clone(),
        session_timeout: Duration::from_secs(r.session_timeout_secs),
    })
}

impl RawControl {
    fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.pid_file.with_extension("sock"))
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}
fn default_pid_file() -> PathBuf {
    PathBuf::from(DEFAULT_PID_FILE)
}

impl Default for RawControl {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            pid_file: default_pid_file(),
            socket: None,
            state_file: None,
        }
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `logging:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default)]
    level: LogLevel,
    #[serde(default)]
    format: LogFormat,
}

/// `datapath:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    #[serde(default)]
    fast_path: FastPathMode,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interfaces: RawInterfaces,
    #[serde(default)]
    workers: RawWorkers,
    #[serde(default)]
    datapath: RawDatapath,
    policy: RawPolicy,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    radius: Option<RawRadius>,
}

/// `radius:` (the accounting listener).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRadius {
    listen: String,
    clients: Vec<RawRadiusClient>,
    #[serde(default)]
    filter_ids: BTreeMap<String, String>,
    #[serde(default = "default_session_timeout")]
    session_timeout_secs: u64,
}

fn default_session_timeout() -> u64 {
    900
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRadiusClient {
    address: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
}

/// The RADIUS accounting listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadiusSettings {
    pub listen: SocketAddr,
    /// NAS addresses (or prefixes) and their shared secrets.
    pub clients: Vec<(IpNet, String)>,
    /// Filter-Id value -> class.
    pub filter_ids: BTreeMap<String, String>,
    /// An entry expires this long after its last Start or Interim-Update.
    pub session_timeout: Duration,
}

// ---------------------------------------------------------------------------------------
// Stage 2: validated settings.

/// The two NICs and how to attach to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interfaces {
    /// Subscriber-facing NIC (outbound traffic enters here).
    pub subscriber: String,
    /// Upstream/core-facing NIC.
    pub upstream: String,
    /// Queue pairs: one worker per queue.
    pub queues: u32,
    pub xdp_mode: XdpMode,
    pub zero_copy: ZeroCopy,
    /// UMEM frame size in bytes (2048 or 4096): bounds the largest frame (MTU).
    pub frame_size: u32,
    /// Size of each RX/TX/fill/completion ring (power of two).
    pub ring_size: u32,
    pub failure_mode: FailureMode,
    /// The Linux bridge that carries traffic in `failure_mode: open`.
    pub fallback_bridge: String,
}

/// Worker threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workers {
    /// Core for each worker (index = queue). Defaults to 0, 1, ... when not given.
    pub cores: Vec<usize>,
    /// Frames received, decided and acted on per loop iteration.
    pub burst: u32,
    /// Spin on the rings instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// Interval of the one-line counter summary in the log (0: off).
    pub stats_interval: Duration,
}

/// Token bucket for replies (per worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Control endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// Metrics/control HTTP listen address.
    pub listen: SocketAddr,
    pub pid_file: PathBuf,
    /// The operator socket (owner-only): state-changing commands.
    pub socket: PathBuf,
    /// The runtime overlay's state file, if kept.
    pub state_file: Option<PathBuf>,
}

/// Logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logging {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// A validated config. The policy part is compiled separately into a [`Policy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    pub interfaces: Interfaces,
    pub workers: Workers,
    pub reject_rate: RateLimit,
    pub control: Control,
    pub logging: Logging,
    /// Reloadable.
    pub datapath: DatapathSettings,
    /// The RADIUS accounting feed, if configured.
    pub radius: Option<RadiusSettings>,
}

/// `datapath:`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatapathSettings {
    pub fast_path: FastPathMode,
}

impl Config {
    /// What the datapath needs to start (it never reads the config itself).
    pub fn datapath_settings(&self) -> crate::datapath::settings::Settings {
        let ifs = &self.interfaces;
        crate::datapath::settings::Settings {
            subscriber: ifs.subscriber.clone(),
            upstream: ifs.upstream.clone(),
            queues: ifs.queues,
            xdp_mode: ifs.xdp_mode,
            zero_copy: ifs.zero_copy,
            frame_size: ifs.frame_size,
            ring_size: ifs.ring_size,
            cores: self.workers.cores.clone(),
            burst: self.workers.burst,
            busy_poll: self.workers.busy_poll,
            reply_rate: self.reject_rate.per_second,
            reply_burst: self.reject_rate.burst,
            fast_path: self.datapath.fast_path,
        }
    }
}

/// Facts about a load, for `op25b check` and the logs.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Class names in id order.
    pub classes: Vec<String>,
    /// Allowed destinations as given.
    pub allowed: Vec<IpNet>,
    /// Prefix files read, with their line counts.
    pub files: Vec<(PathBuf, usize)>,
    /// `policy.exempt_class`: the class `op25b exempt add` gives by default.
    pub exempt_class: Option<String>,
    /// `policy.auto_quarantine`.
    pub auto_quarantine: Option<AutoQuarantine>,
    /// Time to parse, validate and compile tables.
    pub build_time: Duration,
}

/// A loaded config: settings, the compiled policy, and a report.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub policy: Policy,
    pub report: LoadReport,
}

/// Largest config file (prefix lists belong in `file:` entries).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest prefix file (about 40 million lines).
pub const MAX_PREFIX_FILE_BYTES: u64 = 1 << 30;

/// Reads a whole text file of at most `limit` bytes, with errors that say what is wrong
/// (a directory, too large, not UTF-8) rather than a bare errno.
fn read_text(path: &Path, limit: u64, what: &str) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(Error::other(format!("is a directory; expected a {what}")));
    }
    let too_big = |n: u64| {
        Error::other(format!(
            "{n} bytes is more than the {} MiB a {what} may have",
            limit >> 20
        ))
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {}); expected a {what}",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Where a running config comes from: the file, and the `--set` overrides applied to it
/// at every read (at start and at each reload).
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub path: PathBuf,
    pub overrides: Vec<Override>,
}

impl Source {
    /// [`load_listing_with`] of this file and these overrides.
    pub fn load_listing(&self) -> Result<(Loaded, Vec<(IpNet, ClassId)>), ConfigError> {
        load_listing_with(&self.path, &self.overrides)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        for o in &self.overrides {
            write!(f, " --set {o}")?;
        }
        Ok(())
    }
}

/// The config file's text.
fn read_config(path: &Path) -> Result<String, ConfigError> {
    read_text(path, MAX_CONFIG_BYTES, "YAML config file").map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })
}

/// Reads, validates and compiles a config file and every prefix file it names.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with(path, &[])
}

/// [`load`] with `--set` overrides applied to the file.
pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Loaded, ConfigError> {
    load_str_with(path, &read_config(path)?, overrides)
}

/// The `control:` section alone (for `op25b status`, `top` and `reload`, which must
/// work while the policy or its prefix files are broken): the rest of the file must
/// only be YAML.
pub fn load_control(path: &Path) -> Result<Control, ConfigError> {
    #[derive(Deserialize)]
    struct OnlyControl {
        #[serde(default)]
        control: RawControl,
    }
    let raw: OnlyControl = parse_with(path, &read_config(path)?, &[])?;
    let listen: SocketAddr = raw.control.listen.parse().map_err(|_| {
        ConfigError::invalid(
            path,
            "control.listen",
            format!(
                "{:?} is not an address:port such as \"127.0.0.1:9725\"",
                raw.control.listen
            ),
        )
    })?;
    Ok(Control {
        listen,
        socket: raw.control.socket_path(),
        state_file: raw.control.state_file.clone(),
        pid_file: raw.control.pid_file,
    })
}

/// Deserializes `T` from the config text with `--set` overrides applied. Without
/// overrides, straight from the text, so errors keep their line and column; with them,
/// through the edited document (serde_yaml gives no position then, so the message names
/// the overrides instead).
fn parse_with<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    overrides: &[Override],
) -> Result<T, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        file: path.to_path_buf(),
        message,
    };
    if overrides.is_empty() {
        return serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()));
    }
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))?;
    overrides::apply_all(&mut doc, overrides).map_err(|source| ConfigError::Override {
        file: path.to_path_buf(),
        source,
    })?;
    serde_yaml::from_value(doc).map_err(|e| {
        let sets: Vec<String> = overrides.iter().map(|o| format!("--set {o}")).collect();
        syntax(format!("{e} (in the file with {})", sets.join(" ")))
    })
}

/// The two interface names of `interfaces:` alone (for `op25b systemd-deps`), with
/// `--set` overrides applied to the file.
pub fn load_interface_names(
    path: &Path,
    overrides: &[Override],
) -> Result<[String; 2], ConfigError> {
    #[derive(Deserialize)]
    struct Names {
        subscriber: String,
        upstream: String,
    }
    #[derive(Deserialize)]
    struct OnlyInterfaces {
        interfaces: Names,
    }
    // Unknown keys of the rest are ignored: `OnlyInterfaces` does not deny them.
    let raw: OnlyInterfaces = parse_with(path, &read_config(path)?, overrides)?;
    for (field, v) in [
        ("interfaces.subscriber", &raw.interfaces.subscriber),
        ("interfaces.upstream", &raw.interfaces.upstream),
    ] {
        if v.is_empty() || v.contains('/') {
            return Err(ConfigError::invalid(
                path,
                field,
                format!("{v:?} is not a network interface name"),
            ));
        }
    }
    Ok([raw.interfaces.subscriber, raw.interfaces.upstream])
}

/// [`load`] from text already read; `path` names it in errors and anchors relative
/// prefix-file paths.
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    load_str_with(path, text, &[])
}

/// [`load_str`] with `--set` overrides applied to the text.
pub fn load_str_with(
    path: &Path,
    text: &str,
    overrides: &[Override],
) -> Result<Loaded, ConfigError> {
    let started = Instant::now();
    let raw: RawConfig = parse_with(path, text, overrides)?;
    let config = validate_settings(path, &raw)?;
    let (policy, mut report) = compile_policy(path, &raw.policy, None)?;
    report.build_time = started.elapsed();
    Ok(Loaded {
        config,
        policy,
        report,
    })
}

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

fn validate_settings(file: &Path, raw: &RawConfig) -> Result<Config, ConfigError> {
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
    let listen: SocketAddr = raw.control.listen.parse().map_err(|_| {
        ConfigError::invalid(
            file,
            "control.listen",
            format!(
                "{:?} is not an address:port such as \"127.0.0.1:9725\"",
                raw.control.listen
            ),
        )
    })?;
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
            stats_interval: Duration::from_secs(w.stats_interval_secs),
        },
        reject_rate: RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        },
        control: Control {
            listen,
            pid_file: raw.control.pid_file.clone(),
            socket: raw.control.socket_path(),
            state_file: raw.control.state_file.clone(),
        },
        logging: Logging {
            level: raw.logging.level,
            format: raw.logging.format,
        },
        datapath: DatapathSettings {
            fast_path: raw.datapath.fast_path,
        },
    })
}

/// Resolves a path in the config relative to the config file's folder.
fn resolve(config: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// Reads a prefix file: one prefix per line, `#` starts a comment, blank lines ignored.
pub fn read_prefix_file(config: &Path, file: &Path) -> Result<Vec<(Prefix, usize)>, ConfigError> {
    let text = read_text(file, MAX_PREFIX_FILE_BYTES, "prefix file").map_err(|source| {
        ConfigError::ReadListed {
            config: config.to_path_buf(),
            file: file.to_path_buf(),
            source,
        }
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let p = body
            .parse::<Prefix>()
            .map_err(|e| ConfigError::PrefixFile {
                config: config.to_path_buf(),
                file: file.to_path_buf(),
                line: n + 1,
                message: e.to_string(),
            })?;
        out.push((p, n + 1));
    }
    Ok(out)
}

fn parse_prefix(file: &Path, field: &str, text: &str) -> Result<Prefix, ConfigError> {
    text.parse()
        .map_err(|e: PrefixError| ConfigError::invalid(file, field, e.to_string()))
}

/// Where a prefix came from, for error messages.
#[derive(Clone, Debug)]
enum Origin {
    Field(String),
    Line(PathBuf, usize),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Field(s) => f.write_str(s),
            Origin::Line(p, l) => write!(f, "{}:{l}", p.display()),
        }
    }
}

/// [`load`], and also every subscriber prefix with its class (for exporting the policy
/// to other tools, e.g. `op25b export-nft`).
pub fn load_listing(path: &Path) -> Result<(Loaded, Vec<(IpNet, ClassId)>), ConfigError> {
    load_listing_with(path, &[])
}

/// [`load_listing`] with `--set` overrides applied to the file.
pub fn load_listing_with(
    path: &Path,
    overrides: &[Override],
) -> Result<(Loaded, Vec<(IpNet, ClassId)>), ConfigError> {
    let raw: RawConfig = parse_with(path, &read_config(path)?, overrides)?;
    let config = validate_settings(path, &raw)?;
    let mut listing = Vec::new();
    let (policy, report) = compile_policy(path, &raw.policy, Some(&mut listing))?;
    Ok((
        Loaded {
            config,
            policy,
            report,
        },
        listing,
    ))
}

/// Validates `policy:` and feeds it to a [`PolicyBuilder`]; returns the builder (not yet
/// built), the class ids by name, and the report.
fn policy_builder(
    file: &Path,
    raw: &RawPolicy,
    mut listing: Option<&mut Vec<(IpNet, ClassId)>>,
) -> Result<(PolicyBuilder, BTreeMap<String, ClassId>, LoadReport), ConfigError> {
    let mut b = PolicyBuilder::new();
    let mut ids: BTreeMap<String, ClassId> = BTreeMap::new();
    if raw.classes.is_empty() {
        return Err(ConfigError::invalid(
            file,
            "policy.classes",
            "no class defined; expected at least one, e.g. `dynamic: {block_ports: [25]}`",
        ));
    }
    for (name, c) in raw.classes.iter() {
        let field = format!("policy.classes.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(ConfigError::invalid(
                file,
                &field,
                format!("class name {name:?} must be letters, digits, '-' or '_'"),
            ));
        }
        let mut ports = Vec::new();
        for (n, &p) in c.block_ports.iter().enumerate() {
            if !(1..=65535).contains(&p) {
                return Err(ConfigError::invalid(
                    file,
                    format!("{field}.block_ports[{n}]"),
                    format!("port {p} is outside 1..65535"),
                ));
            }
            ports.push(p as u16);
        }
        let action = match c.action {
            RawAction::Drop if c.reply.is_some() => {
                return Err(ConfigError::invalid(
                    file,
                    format!("{field}.reply"),
                    "a reply is only sent with `action: reject`; remove `reply` or set `action: reject`",
                ))
            }
            RawAction::Drop => BlockAction::Drop,
            RawAction::Reject => BlockAction::Reject(match c.reply.unwrap_or_default() {
                RawReply::TcpReset => ReplyKind::TcpReset,
                RawReply::IcmpProhibited => ReplyKind::IcmpProhibited,
            }),
        };
        let id = b
            .class(name, ports, action, c.block_inbound_smtp)
            .map_err(|source| ConfigError::Policy {
                file: file.to_path_buf(),
                field: field.clone(),
                source,
            })?;
        ids.insert(name.clone(), id);
    }
    let defined = || {
        raw.classes
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let class_id = |field: &str, name: &str| {
        ids.get(name).copied().ok_or_else(|| {
            ConfigError::invalid(
                file,
                field,
                format!("{name:?} is not a defined class (defined: {})", defined()),
            )
        })
    };

    let mut files = Vec::new();
    let mut seen: HashMap<IpNet, (ClassId, Origin)> = HashMap::new();
    let mut add = |b: &mut PolicyBuilder, p: Prefix, id: ClassId, origin: Origin| {
        if let Some((prev, prev_origin)) = seen.get(&p.0) {
            if *prev != id {
                let names: Vec<&str> = raw.classes.keys().map(String::as_str).collect();
                return Err(ConfigError::invalid(
                    file,
                    origin.to_string(),
                    format!(
                        "{} is class {:?} here but class {:?} at {prev_origin}; a prefix can \
                         have one class (use a longer prefix for exceptions)",
                        p.0,
                        names[usize::from(id)],
                        names[usize::from(*prev)]
                    ),
                ));
            }
            return Ok(());
        }
        seen.insert(p.0, (id, origin));
        if let Some(l) = listing.as_deref_mut() {
            l.push((p.0, id));
        }
        b.subscriber(p.0, id);
        Ok(())
    };
    for (n, s) in raw.subscribers.iter().enumerate() {
        let field = format!("policy.subscribers[{n}]");
        let given = [s.prefix.is_some(), s.prefixes.is_some(), s.file.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given != 1 {
            return Err(ConfigError::invalid(
                file,
                &field,
                format!(
                    "has {given} of `prefix`, `prefixes`, `file`; expected exactly one of them"
                ),
            ));
        }
        let id = class_id(&format!("{field}.class"), &s.class)?;
        if let Some(p) = &s.prefix {
            let f = format!("{field}.prefix");
            add(&mut b, parse_prefix(file, &f, p)?, id, Origin::Field(f))?;
        }
        if let Some(list) = &s.prefixes {
            for (k, p) in list.iter().enumerate() {
                let f = format!("{field}.prefixes[{k}]");
                add(&mut b, parse_prefix(file, &f, p)?, id, Origin::Field(f))?;
            }
        }
        if let Some(f) = &s.file {
            let full = resolve(file, f);
            let list = read_prefix_file(file, &full)?;
            files.push((full.clone(), list.len()));
            for (p, line) in list {
                add(&mut b, p, id, Origin::Line(full.clone(), line))?;
            }
        }
    }

    let mut allowed = Vec::new();
    for (n, p) in raw.allowed_destinations.iter().enumerate() {
        allowed.push(parse_prefix(file, &format!("policy.allowed_destinations[{n}]"), p)?.0);
    }
    for f in &raw.allowed_destination_files {
        let full = resolve(file, f);
        let list = read_prefix_file(file, &full)?;
        files.push((full, list.len()));
        allowed.extend(list.into_iter().map(|(p, _)| p.0));
    }
    for p in &allowed {
        b.allow(*p);
    }
    if let Some(name) = &raw.unmatched_class {
        let id = class_id("policy.unmatched_class", name)?;
        b.unmatched(Some(id));
    }
    if let Some(name) = &raw.exempt_class {
        class_id("policy.exempt_class", name)?;
    }
    let auto_quarantine = match &raw.auto_quarantine {
        None => None,
        Some(a) => {
            class_id("policy.auto_quarantine.class", &a.class)?;
            if a.attempts_per_minute == 0 {
                return Err(ConfigError::invalid(
                    file,
                    "policy.auto_quarantine.attempts_per_minute",
                    "0 would quarantine every source at once; expected at least 1",
                ));
            }
            if a.duration_secs == 0 {
                return Err(ConfigError::invalid(
                    file,
                    "policy.auto_quarantine.duration_secs",
                    "0 would end the quarantine as it starts; expected at least 1",
                ));
            }
            Some(AutoQuarantine {
                attempts_per_minute: a.attempts_per_minute,
                class: a.class.clone(),
                duration: Duration::from_secs(a.duration_secs),
            })
        }
    };
    b.fragments(FragmentPolicy {
        drop_tiny_first: raw.fragments.tiny_first == RawFragmentAction::Drop,
        drop_non_first: raw.fragments.non_first == RawFragmentAction::Drop,
    });
    let report = LoadReport {
        classes: raw.classes.keys().cloned().collect(),
        allowed,
        files,
        exempt_class: raw.exempt_class.clone(),
        auto_quarantine,
        build_time: Duration::ZERO,
    };
    Ok((b, ids, report))
}

/// [`policy_builder`], then `build`.
fn compile_policy(
    file: &Path,
    raw: &RawPolicy,
    listing: Option<&mut Vec<(IpNet, ClassId)>>,
) -> Result<(Policy, LoadReport), ConfigError> {
    let (b, _, report) = policy_builder(file, raw, listing)?;
    let policy = b.build().map_err(|source| ConfigError::Policy {
        file: file.to_path_buf(),
        field: "policy".into(),
        source,
    })?;
    Ok((policy, report))
}

/// The policy part of a config (text already read) as a builder, before `build`, with
/// its class ids by name: benchmarks and the test kit add prefixes to the lab's policy.
pub fn policy_builder_str(
    path: &Path,
    text: &str,
) -> Result<(PolicyBuilder, BTreeMap<String, ClassId>), ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let (b, ids, _) = policy_builder(path, &raw.policy, None)?;
    Ok((b, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
interfaces: {subscriber: sub0, upstream: up0}
policy:
  classes:
    dynamic: {block_ports: [25], action: reject}
  subscribers:
    - {prefix: 198.51.100.0/24, class: dynamic}
";

    fn err(text: &str) -> String {
        load_str(Path::new("t.yaml"), text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let l = load_str(Path::new("t.yaml"), MINIMAL).unwrap();
        assert_eq!(l.config.interfaces.queues, 1);
        assert_eq!(l.config.interfaces.xdp_mode, XdpMode::Auto);
        assert_eq!(l.config.workers.cores, vec![0]);
        assert_eq!(l.config.control.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(l.policy.classes().len(), 1);
        assert!(l.policy.classes()[0].blocked_ports.contains(25));
    }

    #[test]
    fn bad_prefix_names_field_and_value() {
        let e = err(&MINIMAL.replace("198.51.100.0/24", "198.51.100.7/33"));
        assert!(e.contains("t.yaml: policy.subscribers[0].prefix: \"198.51.100.7/33\" is not an IPv4/IPv6 prefix"), "{e}");
    }

    #[test]
    fn host_bits_are_an_error() {
        let e = err(&MINIMAL.replace("198.51.100.0/24", "198.51.100.7/24"));
        assert!(
            e.contains("has host bits set (did you mean 198.51.100.0/24?)"),
            "{e}"
        );
    }

    #[test]
    fn undefined_class_is_an_error() {
        let e = err(&MINIMAL.replace("class: dynamic", "class: dynamc"));
        assert!(
            e.contains(
                "policy.subscribers[0].class: \"dynamc\" is not a defined class (defined: dynamic)"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = err(&MINIMAL.replace("action: reject", "acton: reject"));
        assert!(e.contains("unknown field `acton`"), "{e}");
    }

    #[test]
    fn overrides_apply_before_validation() {
        let sets = |v: &[&str]| -> Vec<Override> { v.iter().map(|s| s.parse().unwrap()).collect() };
        let p = Path::new("t.yaml");
        let l = load_str_with(
            p,
            MINIMAL,
            &sets(&["interfaces.queues=2", "workers={cores: [0, 1]}"]),
        )
        .unwrap();
        assert_eq!(l.config.interfaces.queues, 2);
        // Validated as if the file said it.
        let e = load_str_with(
            p,
            MINIMAL,
            &sets(&["policy.classes.dynamic.block_ports=[0]"]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("block_ports[0]: port 0 is outside"), "{e}");
        // A path that is not in the file: typed, names the file and the override.
        let e = load_str_with(p, MINIMAL, &sets(&["control.listen=x"])).unwrap_err();
        assert!(matches!(e, ConfigError::Override { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("t.yaml: --set \"control.listen=x\": control is not in the file"),
            "{e}"
        );
        // Serde errors: with overrides they name them; without, they keep the line.
        let e = load_str_with(p, MINIMAL, &sets(&["interfaces.queus=2"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `queus`")
                && e.contains("(in the file with --set interfaces.queus=2)"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("action: reject", "acton: reject"));
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn port_out_of_range_is_an_error() {
        let e = err(&MINIMAL.replace("[25]", "[25, 0]"));
        assert!(
            e.contains("policy.classes.dynamic.block_ports[1]: port 0 is outside 1..65535"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("[25]", "[70000]"));
        assert!(e.contains("port 70000 is outside 1..65535"), "{e}");
    }

    #[test]
    fn conflicting_duplicate_is_an_error_but_same_class_is_not() {
        let text = MINIMAL.replace(
            "    - {prefix: 198.51.100.0/24, class: dynamic}",
            "    - {prefix: 198.51.100.0/24, class: dynamic}\n    - {prefix: 198.51.100.0/24, class: static}",
        ).replace("dynamic: {block_ports: [25], action: reject}", "dynamic: {block_ports: [25], action: reject}\n    static: {block_ports: []}");
        let e = err(&text);
        assert!(e.contains("policy.subscribers[1].prefix: 198.51.100.0/24 is class \"static\" here but class \"dynamic\" at policy.subscribers[0].prefix"), "{e}");
        let same = MINIMAL.replace(
            "    - {prefix: 198.51.100.0/24, class: dynamic}",
            "    - {prefix: 198.51.100.0/24, class: dynamic}\n    - {prefix: 198.51.100.0/24, class: dynamic}",
        );
        load_str(Path::new("t.yaml"), &same).unwrap();
    }

    #[test]
    fn empty_interface_name_is_an_error() {
        let e = err(&MINIMAL.replace("subscriber: sub0", "subscriber: \"\""));
        assert!(e.contains("interfaces.subscriber: \"\" is empty"), "{e}");
    }

    #[test]
    fn prefix_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pool.txt");
        std::fs::write(
            &f,
            "# pool\n198.51.100.0/25\n\n198.51.100.128/25 # tail\n10.0.0.1/40\n",
        )
        .unwrap();
        let text = MINIMAL.replace(
            "{prefix: 198.51.100.0/24, class: dynamic}",
            &format!("{{file: {}, class: dynamic}}", f.display()),
        );
        let cfg = dir.path().join("c.yaml");
        let e = load_str(&cfg, &text).unwrap_err().to_string();
        assert!(
            e.contains("pool.txt:5: \"10.0.0.1/40\" is not an IPv4/IPv6 prefix"),
            "{e}"
        );
        std::fs::write(&f, "198.51.100.0/25\n198.51.100.128/25\n").unwrap();
        let l = load_str(&cfg, &text).unwrap();
        assert_eq!(l.policy.summary().prefixes_per_class, vec![(2, 0)]);
    }

    #[test]
    fn bare_address_is_a_host_prefix() {
        assert_eq!(
            "192.0.2.1".parse::<Prefix>().unwrap().0.to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(
            "2001:db8::1".parse::<Prefix>().unwrap().0.to_string(),
            "2001:db8::1/128"
        );
    }
}
