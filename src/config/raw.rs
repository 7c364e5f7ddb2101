//! Stage 1 of loading: the file as written (serde structs, `deny_unknown_fields`), and
//! the value types that parse straight from YAML (`Prefix`, `FailureMode`, `LogLevel`,
//! ...).
//!
//! Every on/off field (`interfaces.zero_copy`, `workers.busy_poll`,
//! `workers.overload_guard`, `datapath.fast_path`, `policy.classes.*.block_inbound_smtp`)
//! goes through [`Switch`], so each takes `on`/`off` and `true`/`false` alike: YAML 1.1
//! tools (PyYAML, Ansible) read an unquoted `on` as a boolean and write it back as
//! `true`, while serde_yaml (YAML 1.2) reads `on` as a string.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{
    read_text, ConfigError, FastPathMode, XdpMode, ZeroCopy, DEFAULT_LISTEN, DEFAULT_PID_FILE,
};

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

/// An on/off field as written: a YAML boolean (`true`/`false`) or one of the words `on`,
/// `off`, `true`, `false`; `None` is `auto`, for the fields that take it
/// (`zero_copy`). The one parser of every such field (module doc).
struct Switch {
    auto: bool,
}

impl<'de> serde::de::Visitor<'de> for Switch {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("on or off (true or false)")?;
        if self.auto {
            f.write_str(", or auto")?;
        }
        Ok(())
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Option<bool>, E> {
        Ok(Some(b))
    }
    fn visit_str<E: serde::de::Error>(self, w: &str) -> Result<Option<bool>, E> {
        match w {
            "on" | "true" => Ok(Some(true)),
            "off" | "false" => Ok(Some(false)),
            "auto" if self.auto => Ok(None),
            _ => Err(E::custom(format_args!(
                "{w:?} is not a switch: expected on or off (true or false){}",
                if self.auto { ", or auto" } else { "" }
            ))),
        }
    }
}

/// `workers.busy_poll`, `workers.overload_guard`, `block_inbound_smtp`: see [`Switch`].
fn switch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(d.deserialize_any(Switch { auto: false })? == Some(true))
}

/// `datapath.fast_path`: `kernel`, `unblockable` or `off`; the switch words of the
/// earlier on/off setting keep loading (`on`/`true` is `unblockable`, what it meant).
fn fast_path_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FastPathMode, D::Error> {
    struct Mode;
    impl<'de> serde::de::Visitor<'de> for Mode {
        type Value = FastPathMode;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("kernel, unblockable or off (on is unblockable)")
        }
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<FastPathMode, E> {
            Ok(if b {
                FastPathMode::Unblockable
            } else {
                FastPathMode::Off
            })
        }
        fn visit_str<E: serde::de::Error>(self, w: &str) -> Result<FastPathMode, E> {
            match w {
                "kernel" => Ok(FastPathMode::Kernel),
                "unblockable" | "on" | "true" => Ok(FastPathMode::Unblockable),
                "off" | "false" => Ok(FastPathMode::Off),
                _ => Err(E::custom(format_args!(
                    "{w:?} is not a fast-path mode: expected kernel, unblockable or off (on is unblockable)"
                ))),
            }
        }
    }
    d.deserialize_any(Mode)
}

/// `interfaces.zero_copy`: `auto` or a [`Switch`].
fn zero_copy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ZeroCopy, D::Error> {
    Ok(match d.deserialize_any(Switch { auto: true })? {
        None => ZeroCopy::Auto,
        Some(true) => ZeroCopy::On,
        Some(false) => ZeroCopy::Off,
    })
}

/// `interfaces:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterfaces {
    pub(super) subscriber: String,
    pub(super) upstream: String,
    #[serde(default = "default_queues")]
    pub(super) queues: u32,
    #[serde(default)]
    pub(super) xdp_mode: XdpMode,
    #[serde(default, deserialize_with = "zero_copy")]
    pub(super) zero_copy: ZeroCopy,
    #[serde(default = "default_frame_size")]
    pub(super) frame_size: u32,
    #[serde(default = "default_ring_size")]
    pub(super) ring_size: u32,
    #[serde(default)]
    pub(super) failure_mode: FailureMode,
    #[serde(default = "default_fallback_bridge")]
    pub(super) fallback_bridge: String,
}

pub(super) fn default_fallback_bridge() -> String {
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

pub(super) fn default_queues() -> u32 {
    1
}
pub(super) fn default_frame_size() -> u32 {
    4096
}
pub(super) fn default_ring_size() -> u32 {
    2048
}

/// `workers:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    #[serde(default)]
    pub(super) cores: Option<Vec<usize>>,
    #[serde(default = "default_burst")]
    pub(super) burst: u32,
    #[serde(default, deserialize_with = "switch")]
    pub(super) busy_poll: bool,
    #[serde(default = "default_overload_guard", deserialize_with = "switch")]
    pub(super) overload_guard: bool,
    #[serde(default = "default_stats_interval")]
    pub(super) stats_interval_secs: u64,
}

impl Default for RawWorkers {
    fn default() -> Self {
        Self {
            cores: None,
            burst: default_burst(),
            busy_poll: false,
            overload_guard: default_overload_guard(),
            stats_interval_secs: default_stats_interval(),
        }
    }
}

pub(super) fn default_burst() -> u32 {
    64
}
pub(super) fn default_overload_guard() -> bool {
    true
}
pub(super) fn default_stats_interval() -> u64 {
    10
}

/// `policy.classes.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    #[serde(default = "default_block_ports")]
    pub(super) block_ports: Vec<i64>,
    #[serde(default)]
    pub(super) action: RawAction,
    #[serde(default)]
    pub(super) reply: Option<RawReply>,
    #[serde(default, deserialize_with = "switch")]
    pub(super) block_inbound_smtp: bool,
    /// `reply: smtp-notice`: the lines of the 554 greeting.
    #[serde(default)]
    pub(super) notice: Option<Vec<String>>,
    /// A prefix file of this class may hold no prefix (otherwise an empty file is an
    /// error: a truncated file must not empty the class).
    #[serde(default, deserialize_with = "switch")]
    pub(super) allow_empty: bool,
}

pub(super) fn default_block_ports() -> Vec<i64> {
    vec![25]
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawAction {
    #[default]
    Drop,
    Reject,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawReply {
    #[default]
    TcpReset,
    IcmpProhibited,
    SmtpNotice,
}

/// `policy.subscribers[i]:` exactly one of `prefix`, `prefixes`, `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubscribers {
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) prefixes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) file: Option<PathBuf>,
    pub(super) class: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawFragmentAction {
    #[default]
    Drop,
    Forward,
}

/// `policy.auto_quarantine:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoQuarantine {
    pub(super) attempts_per_minute: u64,
    pub(super) class: String,
    pub(super) duration_secs: u64,
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
pub(super) struct RawFragments {
    #[serde(default = "fragment_drop")]
    pub(super) tiny_first: RawFragmentAction,
    #[serde(default = "fragment_forward")]
    pub(super) non_first: RawFragmentAction,
}

pub(super) fn fragment_drop() -> RawFragmentAction {
    RawFragmentAction::Drop
}
pub(super) fn fragment_forward() -> RawFragmentAction {
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
pub(super) struct RawRate {
    #[serde(default = "default_rate")]
    pub(super) per_second: u32,
    #[serde(default = "default_rate_burst")]
    pub(super) burst: u32,
}

pub(super) fn default_rate() -> u32 {
    1000
}
pub(super) fn default_rate_burst() -> u32 {
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
pub(super) struct ClassMap(BTreeMap<String, RawClass>);

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
pub(super) struct RawPolicy {
    pub(super) classes: ClassMap,
    #[serde(default)]
    pub(super) subscribers: Vec<RawSubscribers>,
    #[serde(default)]
    pub(super) allowed_destinations: Vec<String>,
    #[serde(default)]
    pub(super) allowed_destination_files: Vec<PathBuf>,
    #[serde(default)]
    pub(super) unmatched_class: Option<String>,
    /// The class `op25b exempt add` gives when no `--class` is named.
    #[serde(default)]
    pub(super) exempt_class: Option<String>,
    #[serde(default)]
    pub(super) auto_quarantine: Option<RawAutoQuarantine>,
    #[serde(default)]
    pub(super) fragments: RawFragments,
    #[serde(default)]
    pub(super) reject_rate: RawRate,
}

/// `control:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    #[serde(default = "default_pid_file")]
    pub(super) pid_file: PathBuf,
    /// The operator socket (`op25b exempt`, `sessions`); default: the pid file's path
    /// with the extension `.sock`.
    #[serde(default)]
    pub(super) socket: Option<PathBuf>,
    /// Where the runtime overlay is kept across restarts; none: not kept.
    #[serde(default)]
    pub(super) state_file: Option<PathBuf>,
    /// A reload in which a class (or one of its prefix files) loses more than this
    /// percentage of its prefixes is refused unless forced.
    #[serde(default = "default_reload_max_loss_percent")]
    pub(super) reload_max_loss_percent: u64,
    /// Also serve `GET /top` (subscriber addresses) on `listen`.
    #[serde(default, deserialize_with = "switch")]
    pub(super) http_top: bool,
}

/// Resolves a path in the config relative to the config file's folder.
pub(super) fn resolve(config: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// The environment variable systemd sets to the unit's credentials folder
/// (`LoadCredential=`).
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The prefix of a `secret_file` that names a systemd credential: `credential:NAME`
/// reads `$CREDENTIALS_DIRECTORY/NAME`.
pub const CREDENTIAL_PREFIX: &str = "credential:";

/// The credential name of a `secret_file` written `credential:NAME`, if it is one.
pub fn credential_name(p: &Path) -> Option<&str> {
    p.to_str()?.strip_prefix(CREDENTIAL_PREFIX)
}

/// A credential name op25b accepts: letters, digits and `-_.@`, not starting with `.`
/// (one file name that a unit file can carry without quoting).
pub fn valid_credential_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

pub(super) fn bad_credential_name(name: &str) -> String {
    format!(
        "credential name {name:?}: use letters, digits and - _ . @ (not . first), \
         such as credential:radius-secret"
    )
}

/// Reads a RADIUS shared secret (one line) from `secret_file` `p` of config `file`:
/// `credential:NAME` is `NAME` in `creds` (the value of `$CREDENTIALS_DIRECTORY`), any
/// other value a path relative to the config's folder.
pub(super) fn read_secret_file(
    file: &Path,
    field: &str,
    p: &Path,
    creds: Option<&std::ffi::OsStr>,
) -> Result<String, ConfigError> {
    let full = match credential_name(p) {
        None => resolve(file, p),
        Some(name) => {
            if !valid_credential_name(name) {
                return Err(ConfigError::invalid(file, field, bad_credential_name(name)));
            }
            let Some(dir) = creds.filter(|d| !d.is_empty()) else {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    format!(
                        "{p:?} names a systemd credential but ${CREDENTIALS_DIRECTORY} is not set: \
                         run op25b from its unit with LoadCredential={name}:{} (the drop-in \
                         `op25b systemd-deps` writes has it), or for a check by hand: \
                         CREDENTIALS_DIRECTORY={} op25b check --config {}",
                        credential_source(file, name).display(),
                        credential_source(file, name)
                            .parent()
                            .unwrap_or(Path::new("."))
                            .display(),
                        file.display()
                    ),
                ));
            };
            let full = Path::new(dir).join(name);
            if !full.exists() {
                return Err(ConfigError::invalid(
                    file,
                    field,
                    format!(
                        "{p:?}: no credential {name:?} in ${CREDENTIALS_DIRECTORY} ({}): \
                         is LoadCredential={name}:{} in the unit, and does that file exist?",
                        full.display(),
                        credential_source(file, name).display()
                    ),
                ));
            }
            full
        }
    };
    Ok(read_text(&full, 4096, "RADIUS secret file")
        .map_err(|source| ConfigError::Read { file: full, source })?
        .trim_end_matches(['\n', '\r'])
        .to_string())
}

/// Where the unit loads credential `name` from: the file of that name in the config's
/// folder (`/etc/op25b/radius-secret` for `credential:radius-secret`).
pub fn credential_source(config: &Path, name: &str) -> PathBuf {
    resolve(config, Path::new(name))
}

impl RawControl {
    pub(super) fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.pid_file.with_extension("sock"))
    }
}

pub(super) fn default_reload_max_loss_percent() -> u64 {
    50
}
pub(super) fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}
pub(super) fn default_pid_file() -> PathBuf {
    PathBuf::from(DEFAULT_PID_FILE)
}

impl Default for RawControl {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            pid_file: default_pid_file(),
            socket: None,
            state_file: None,
            reload_max_loss_percent: default_reload_max_loss_percent(),
            http_top: false,
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
pub(super) struct RawLogging {
    #[serde(default)]
    pub(super) level: LogLevel,
    #[serde(default)]
    pub(super) format: LogFormat,
}

/// `datapath:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatapath {
    #[serde(default, deserialize_with = "fast_path_mode")]
    pub(super) fast_path: FastPathMode,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) interfaces: RawInterfaces,
    #[serde(default)]
    pub(super) workers: RawWorkers,
    #[serde(default)]
    pub(super) datapath: RawDatapath,
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) control: RawControl,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) radius: Option<RawRadius>,
}

/// `radius:` (the accounting listener).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRadius {
    pub(super) listen: String,
    pub(super) clients: Vec<RawRadiusClient>,
    #[serde(default)]
    pub(super) filter_ids: BTreeMap<String, String>,
    #[serde(default = "default_session_timeout")]
    pub(super) session_timeout_secs: u64,
    #[serde(default = "default_duplicate_window")]
    pub(super) duplicate_window_secs: u64,
    #[serde(default = "default_event_timestamp_window")]
    pub(super) event_timestamp_window_secs: u64,
    #[serde(default = "default_radius_max_entries")]
    pub(super) max_entries: u64,
    #[serde(default = "default_min_ipv6_prefix_len")]
    pub(super) min_ipv6_prefix_len: u8,
}

pub(super) fn default_session_timeout() -> u64 {
    900
}
pub(super) fn default_duplicate_window() -> u64 {
    30
}
pub(super) fn default_event_timestamp_window() -> u64 {
    300
}
pub(super) fn default_radius_max_entries() -> u64 {
    200_000
}
pub(super) fn default_min_ipv6_prefix_len() -> u8 {
    48
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRadiusClient {
    pub(super) address: String,
    #[serde(default)]
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) secret_file: Option<PathBuf>,
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
    /// A request seen again (same source address and port, Identifier and Request
    /// Authenticator) within this window is answered again, not applied again.
    pub duplicate_window: Duration,
    /// A request whose Event-Timestamp (plus Acct-Delay-Time) is further than this from
    /// the box's clock is refused (not applied, not answered).
    pub event_timestamp_window: Duration,
    /// At most this many RADIUS overlay entries; new ones beyond are refused.
    pub max_entries: usize,
    /// IPv6 prefixes shorter than this from RADIUS are refused.
    pub min_ipv6_prefix_len: u8,
}
