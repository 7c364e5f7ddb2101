//! YAML -> validated [`Config`] -> compiled [`Policy`].
//!
//! Three stages, as ripgrep does with `LowArgs` -> `HiArgs`: serde structs that mirror the
//! file (`deny_unknown_fields`, so a typo is an error), validation that names the file,
//! the field or line and the bad value, and a call into [`PolicyBuilder`]. Workers never
//! see anything from this module: they get the compiled `Policy`. A config either loads
//! whole or not at all.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde::Deserialize;

mod compile;
pub mod diff;
pub mod overrides;
mod raw;
mod validate;

use compile::compile_policy;
pub use compile::{load_listing, load_listing_with, policy_builder_str, read_prefix_file};
use raw::*;
pub use raw::{
    credential_name, credential_source, AutoQuarantine, FailureMode, LogFormat, LogLevel, Prefix,
    PrefixError, RadiusSettings, CREDENTIALS_DIRECTORY,
};
use validate::validate_settings;

pub use overrides::Override;

/// The datapath owns these; validation builds them (the enums parse straight from the
/// YAML).
pub use crate::datapath::settings::{DatapathSettings, FastPathMode, RateLimit, XdpMode, ZeroCopy};
use crate::policy::{ClassId, Policy};

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
    /// A prefix file with no prefix (empty, or only comments and blank lines): a
    /// truncated file must not empty its class.
    #[error("{}: no prefixes in it (empty, or only comments and blank lines): class {class:?} would get none from it (listed in {}); fill the file, or set `policy.classes.{class}.allow_empty: true` if the class may be empty", file.display(), config.display())]
    EmptyPrefixFile {
        config: PathBuf,
        file: PathBuf,
        class: String,
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
// Stage 2: validated settings.

/// `interfaces:` as the control plane uses it: what happens to traffic while op25b is
/// not running. The rest of the section is the datapath's ([`DatapathSettings`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interfaces {
    pub failure_mode: FailureMode,
    /// The Linux bridge that carries traffic in `failure_mode: open`.
    pub fallback_bridge: String,
}

/// `workers:` as the control plane uses it; the rest of the section is the datapath's
/// ([`DatapathSettings`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workers {
    /// Interval of the one-line counter summary in the log (0: off).
    pub stats_interval: Duration,
}

/// Control endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// Metrics/control HTTP listen address.
    pub listen: SocketAddr,
    pub pid_file: PathBuf,
    /// The operator socket (owner and group): state-changing commands, reloads, `top`.
    pub socket: PathBuf,
    /// The runtime overlay's state file, if kept.
    pub state_file: Option<PathBuf>,
    /// A reload in which a class, or one of its prefix files, loses more than this
    /// percentage of its prefixes (or drops to 0) is refused unless forced.
    pub reload_max_loss_percent: u32,
    /// `GET /top` (subscriber addresses) on `listen` too, not only on the operator socket.
    pub http_top: bool,
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
    /// What the datapath needs (`interfaces:`, `workers:`, `policy.reject_rate`,
    /// `datapath:`), handed as it is to `datapath::preflight` and `datapath::start`.
    pub datapath: DatapathSettings,
    pub interfaces: Interfaces,
    pub workers: Workers,
    pub control: Control,
    pub logging: Logging,
    /// The RADIUS accounting feed, if configured.
    pub radius: Option<RadiusSettings>,
}

/// Facts about a load, for `op25b check` and the logs.
#[derive(Clone, Debug)]
pub struct ConfigLoadReport {
    /// Class names in id order.
    pub classes: Vec<String>,
    /// Allowed destinations as given.
    pub allowed: Vec<IpNet>,
    /// Prefix files read, with their prefix counts.
    pub files: Vec<PrefixFileCount>,
    /// `policy.exempt_class`: the class `op25b exempt add` gives by default.
    pub exempt_class: Option<String>,
    /// `policy.auto_quarantine`.
    pub auto_quarantine: Option<AutoQuarantine>,
    /// Time to parse, validate and compile tables.
    pub build_time: Duration,
}

/// A prefix file read by a load: how many prefixes it held, for which class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixFileCount {
    pub path: PathBuf,
    /// The class its prefixes get; none for `allowed_destination_files`.
    pub class: Option<String>,
    pub prefixes: usize,
}

/// A loaded config: settings, the compiled policy, and a report.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub policy: Policy,
    pub report: ConfigLoadReport,
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
pub struct ConfigSource {
    pub path: PathBuf,
    pub overrides: Vec<Override>,
}

impl ConfigSource {
    /// [`load_listing_with`] of this file and these overrides.
    pub fn load_listing(&self) -> Result<(Loaded, Vec<(IpNet, ClassId)>), ConfigError> {
        load_listing_with(&self.path, &self.overrides)
    }
}

impl fmt::Display for ConfigSource {
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
    validate::control_settings(path, &raw.control)
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

/// What `op25b systemd-deps` writes into the unit's `[Service]` drop-in, read from the
/// config without its secrets and prefix files (the generator runs at boot, without
/// credentials).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitService {
    /// `control.listen` as written (default [`DEFAULT_LISTEN`]).
    pub control_listen: String,
    /// `radius.clients[].address`, when there is a `radius:` section.
    pub radius_clients: Option<Vec<IpNet>>,
    /// Credential names of `secret_file: credential:NAME`, in order, each once.
    pub credentials: Vec<String>,
}

/// Reads [`UnitService`] from the config (with `--set` overrides applied).
pub fn load_unit_service(path: &Path, overrides: &[Override]) -> Result<UnitService, ConfigError> {
    #[derive(Deserialize)]
    struct Control {
        #[serde(default = "raw::default_listen")]
        listen: String,
    }
    #[derive(Deserialize)]
    struct Client {
        address: String,
        #[serde(default)]
        secret_file: Option<PathBuf>,
    }
    #[derive(Deserialize)]
    struct Radius {
        clients: Vec<Client>,
    }
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        control: Option<Control>,
        #[serde(default)]
        radius: Option<Radius>,
    }
    let raw: Only = parse_with(path, &read_config(path)?, overrides)?;
    let mut out = UnitService {
        control_listen: raw
            .control
            .map(|c| c.listen)
            .unwrap_or_else(raw::default_listen),
        ..UnitService::default()
    };
    if let Some(r) = raw.radius {
        let mut nets = Vec::new();
        for (i, c) in r.clients.iter().enumerate() {
            let net = c
                .address
                .parse::<IpNet>()
                .or_else(|_| c.address.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        path,
                        format!("radius.clients[{i}].address"),
                        format!("{:?} is not an address or prefix", c.address),
                    )
                })?;
            nets.push(net.trunc());
            if let Some(name) = c.secret_file.as_deref().and_then(credential_name) {
                if !raw::valid_credential_name(name) {
                    return Err(ConfigError::invalid(
                        path,
                        format!("radius.clients[{i}].secret_file"),
                        raw::bad_credential_name(name),
                    ));
                }
                if !out.credentials.iter().any(|n| n == name) {
                    out.credentials.push(name.to_string());
                }
            }
        }
        out.radius_clients = Some(nets);
    }
    Ok(out)
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
        assert_eq!(l.config.datapath.queues, 1);
        assert_eq!(l.config.datapath.xdp_mode, XdpMode::Auto);
        assert_eq!(l.config.datapath.cores, vec![0]);
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
        assert_eq!(l.config.datapath.queues, 2);
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
    fn an_empty_prefix_file_is_an_error_unless_the_class_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pool.txt");
        std::fs::write(&f, "# the dynamic pool\n\n   \n# (truncated)\n").unwrap();
        let text = MINIMAL.replace(
            "{prefix: 198.51.100.0/24, class: dynamic}",
            &format!("{{file: {}, class: dynamic}}", f.display()),
        );
        let cfg = dir.path().join("c.yaml");
        let e = load_str(&cfg, &text).unwrap_err();
        assert!(matches!(e, ConfigError::EmptyPrefixFile { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("{}: no prefixes in it", f.display()))
                && e.contains("class \"dynamic\" would get none from it")
                && e.contains("policy.classes.dynamic.allow_empty: true"),
            "{e}"
        );
        let allowed = text.replace("action: reject}", "action: reject, allow_empty: true}");
        let l = load_str(&cfg, &allowed).unwrap();
        assert_eq!(l.policy.summary().prefixes_per_class, vec![(0, 0)]);
        assert_eq!(l.report.files[0].prefixes, 0);
        assert_eq!(l.report.files[0].class.as_deref(), Some("dynamic"));
    }

    #[test]
    fn every_load_path_measures_its_build_time() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.yaml");
        std::fs::write(&cfg, MINIMAL).unwrap();
        // `op25b run` and reloads load through load_listing, `op25b check` through load.
        let (l, _) = load_listing(&cfg).unwrap();
        assert!(
            !l.report.build_time.is_zero(),
            "load_listing: {:?}",
            l.report.build_time
        );
        let l = load(&cfg).unwrap();
        assert!(
            !l.report.build_time.is_zero(),
            "load: {:?}",
            l.report.build_time
        );
    }

    #[test]
    fn reload_max_loss_percent_is_checked() {
        let e = err(&format!(
            "{MINIMAL}control: {{reload_max_loss_percent: 0}}\n"
        ));
        assert!(
            e.contains("control.reload_max_loss_percent: 0 is outside 1..100"),
            "{e}"
        );
        let l = load_str(Path::new("t.yaml"), MINIMAL).unwrap();
        assert_eq!(l.config.control.reload_max_loss_percent, 50);
        assert!(!l.config.control.http_top);
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

    #[test]
    fn a_secret_file_may_name_a_systemd_credential() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("radius-secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("plain"), "plain-secret\n").unwrap();
        let cfg = dir.path().join("op25b.yaml");
        let read = |p: &str, env: Option<&Path>| {
            raw::read_secret_file(
                &cfg,
                "radius.clients[0].secret_file",
                Path::new(p),
                env.map(|d| d.as_os_str()),
            )
        };
        assert_eq!(
            read("credential:radius-secret", Some(&creds)).unwrap(),
            "s3cret"
        );
        // A relative path is still the config's folder, and needs no credentials.
        assert_eq!(read("plain", None).unwrap(), "plain-secret");
        // Named but not provided: the error says what to add to the unit.
        let e = read("credential:radius-secret", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("radius.clients[0].secret_file"), "{e}");
        assert!(e.contains("$CREDENTIALS_DIRECTORY is not set"), "{e}");
        assert!(
            e.contains(&format!(
                "LoadCredential=radius-secret:{}",
                dir.path().join("radius-secret").display()
            )),
            "{e}"
        );
        let e = read("credential:other", Some(&creds))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no credential \"other\""), "{e}");
        for bad in [
            "credential:",
            "credential:../x",
            "credential:a/b",
            "credential:.hidden",
        ] {
            let e = read(bad, Some(&creds)).unwrap_err().to_string();
            assert!(e.contains("credential name"), "{bad}: {e}");
        }
    }

    #[test]
    fn systemd_deps_reads_the_radius_clients_and_credentials_without_the_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("op25b.yaml");
        let text = format!(
            "{MINIMAL}radius:\n  listen: 127.0.0.1:1813\n  clients:\n    - {{address: 192.0.2.1, secret_file: credential:radius-secret}}\n    - {{address: 2001:db8::/64, secret_file: credential:radius-secret}}\n    - {{address: 192.0.2.16/28, secret: x}}\n"
        );
        std::fs::write(&cfg, text).unwrap();
        let u = load_unit_service(&cfg, &[]).unwrap();
        assert_eq!(u.control_listen, DEFAULT_LISTEN);
        assert_eq!(u.credentials, vec!["radius-secret".to_string()]);
        let nets: Vec<String> = u
            .radius_clients
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["192.0.2.1/32", "2001:db8::/64", "192.0.2.16/28"]);
        std::fs::write(&cfg, MINIMAL).unwrap();
        assert_eq!(load_unit_service(&cfg, &[]).unwrap().radius_clients, None);
    }

    #[test]
    fn radius_limits_must_be_sane() {
        let base = format!("{MINIMAL}radius:\n  listen: 127.0.0.1:1813\n  clients: [{{address: 192.0.2.1, secret: x}}]\n");
        let l = load_str(Path::new("/x.yaml"), &base).unwrap();
        let r = l.config.radius.unwrap();
        assert_eq!(
            (
                r.duplicate_window.as_secs(),
                r.event_timestamp_window.as_secs(),
                r.max_entries,
                r.min_ipv6_prefix_len
            ),
            (30, 300, 200_000, 48)
        );
        for (line, want) in [
            (
                "  max_entries: 0\n",
                "radius.max_entries: 0 would refuse every RADIUS entry",
            ),
            (
                "  min_ipv6_prefix_len: 0\n",
                "radius.min_ipv6_prefix_len: 0 is not",
            ),
            (
                "  min_ipv6_prefix_len: 129\n",
                "radius.min_ipv6_prefix_len: 129 is not",
            ),
            (
                "  duplicate_window_secs: 0\n",
                "radius.duplicate_window_secs: 0",
            ),
            (
                "  event_timestamp_window_secs: 0\n",
                "radius.event_timestamp_window_secs: 0",
            ),
        ] {
            let e = err(&format!("{base}{line}"));
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn on_off_fields_take_yaml_booleans_and_words_alike() {
        // What a YAML 1.1 tool (PyYAML, Ansible) writes back for `on`/`off`.
        let text = MINIMAL
            .replace(
                "interfaces: {subscriber: sub0, upstream: up0}",
                "interfaces: {subscriber: sub0, upstream: up0, zero_copy: false}
workers: {busy_poll: true, overload_guard: false}
datapath: {fast_path: false}",
            )
            .replace(
                "action: reject}",
                "action: reject, block_inbound_smtp: true}",
            );
        let l = load_str(Path::new("t.yaml"), &text).unwrap();
        assert_eq!(l.config.datapath.zero_copy, ZeroCopy::Off);
        assert!(l.config.datapath.busy_poll);
        assert!(!l.config.datapath.overload_guard);
        assert_eq!(l.config.datapath.fast_path, FastPathMode::Off);
        assert!(l.policy.classes()[0].block_inbound_smtp);
        // The words, in every field.
        let words = text
            .replace("zero_copy: false", "zero_copy: on")
            .replace("busy_poll: true", "busy_poll: on")
            .replace("overload_guard: false", "overload_guard: off")
            .replace("fast_path: false", "fast_path: on")
            .replace("block_inbound_smtp: true", "block_inbound_smtp: off");
        let l = load_str(Path::new("t.yaml"), &words).unwrap();
        assert_eq!(l.config.datapath.zero_copy, ZeroCopy::On);
        assert!(l.config.datapath.busy_poll);
        assert!(!l.config.datapath.overload_guard);
        assert_eq!(l.config.datapath.fast_path, FastPathMode::Unblockable);
        assert!(!l.policy.classes()[0].block_inbound_smtp);
        for (word, mode) in [
            ("kernel", FastPathMode::Kernel),
            ("unblockable", FastPathMode::Unblockable),
            ("true", FastPathMode::Unblockable),
            ("off", FastPathMode::Off),
        ] {
            let l = load_str(
                Path::new("t.yaml"),
                &words.replace("fast_path: on", &format!("fast_path: {word}")),
            )
            .unwrap();
            assert_eq!(l.config.datapath.fast_path, mode, "{word}");
        }
        let l = load_str(
            Path::new("t.yaml"),
            &words.replace("zero_copy: on", "zero_copy: true"),
        )
        .unwrap();
        assert_eq!(l.config.datapath.zero_copy, ZeroCopy::On);
        // The switches added with them (http_top, allow_empty) take both too.
        let l = load_str(
            Path::new("t.yaml"),
            &format!("{words}control: {{http_top: on}}\n"),
        )
        .unwrap();
        assert!(l.config.control.http_top);
        // Anything else is still an error that says what is expected.
        let e = err(&words.replace("fast_path: on", "fast_path: maybe"));
        assert!(
            e.contains(
                "datapath.fast_path: \"maybe\" is not a fast-path mode: expected kernel, unblockable or off (on is unblockable)"
            ),
            "{e}"
        );
        let e = err(&words.replace("zero_copy: on", "zero_copy: 1"));
        assert!(e.contains("interfaces.zero_copy"), "{e}");
        assert!(e.contains("expected on or off (true or false)"), "{e}");
        let e = err(&words.replace("zero_copy: on", "zero_copy: sometimes"));
        assert!(
            e.contains("expected on or off (true or false), or auto"),
            "{e}"
        );
    }
}
