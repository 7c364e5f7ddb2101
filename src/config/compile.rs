//! Stage 3 of loading: `policy:` and the prefix files it names, fed to the
//! [`PolicyBuilder`] and compiled into a [`Policy`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::raw::*;
use super::*;
use crate::policy::{BlockAction, ClassId, FragmentPolicy, Policy, PolicyBuilder, ReplyKind};

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
    let started = Instant::now();
    let raw: RawConfig = parse_with(path, &read_config(path)?, overrides)?;
    let config = validate_settings(path, &raw)?;
    let mut listing = Vec::new();
    let (policy, mut report) = compile_policy(path, &raw.policy, Some(&mut listing))?;
    report.build_time = started.elapsed();
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
    listing: Option<&mut Vec<(IpNet, ClassId)>>,
) -> Result<(PolicyBuilder, BTreeMap<String, ClassId>, ConfigLoadReport), ConfigError> {
    let mut b = PolicyBuilder::new();
    let ids = add_classes(file, raw, &mut b)?;
    let classes = Classes {
        file,
        raw,
        ids: &ids,
    };
    let mut files = Vec::new();
    let mut subscribers = Subscribers {
        file,
        raw,
        seen: HashMap::new(),
        listing,
    };
    subscribers.add_all(&mut b, &classes, &mut files)?;
    let allowed = allowed_destinations(file, raw, &mut files)?;
    for p in &allowed {
        b.allow(*p);
    }
    if let Some(name) = &raw.unmatched_class {
        let id = classes.id("policy.unmatched_class", name)?;
        b.unmatched(Some(id));
    }
    if let Some(name) = &raw.exempt_class {
        classes.id("policy.exempt_class", name)?;
    }
    let auto_quarantine = auto_quarantine(file, raw, &classes)?;
    b.fragments(FragmentPolicy {
        drop_tiny_first: raw.fragments.tiny_first == RawFragmentAction::Drop,
        drop_non_first: raw.fragments.non_first == RawFragmentAction::Drop,
    });
    let report = ConfigLoadReport {
        classes: raw.classes.keys().cloned().collect(),
        allowed,
        files,
        exempt_class: raw.exempt_class.clone(),
        auto_quarantine,
        build_time: Duration::ZERO,
    };
    Ok((b, ids, report))
}

/// `policy.classes`: each class checked and given to the builder; their ids by name.
fn add_classes(
    file: &Path,
    raw: &RawPolicy,
    b: &mut PolicyBuilder,
) -> Result<BTreeMap<String, ClassId>, ConfigError> {
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
        let (action, notice) = class_action(file, &field, c)?;
        let policy_err = |source| ConfigError::Policy {
            file: file.to_path_buf(),
            field: field.clone(),
            source,
        };
        let id = b
            .class(name, ports, action, c.block_inbound_smtp)
            .map_err(policy_err)?;
        if let Some(reply) = notice {
            b.notice(id, &reply).map_err(policy_err)?;
        }
        ids.insert(name.clone(), id);
    }
    Ok(ids)
}

/// A class's `action`, `reply` and `notice`: what it does to a blocked segment, and the
/// SMTP notice's rendered reply if it sends one.
fn class_action(
    file: &Path,
    field: &str,
    c: &RawClass,
) -> Result<(BlockAction, Option<Vec<u8>>), ConfigError> {
    let action = match c.action {
        RawAction::Drop if c.reply.is_some() => return Err(ConfigError::invalid(
            file,
            format!("{field}.reply"),
            "a reply is only sent with `action: reject`; remove `reply` or set `action: reject`",
        )),
        RawAction::Drop => BlockAction::Drop,
        RawAction::Reject => BlockAction::Reject(match c.reply.unwrap_or_default() {
            RawReply::TcpReset => ReplyKind::TcpReset,
            RawReply::IcmpProhibited => ReplyKind::IcmpProhibited,
            RawReply::SmtpNotice => ReplyKind::SmtpNotice,
        }),
    };
    let notice = match (&c.notice, action) {
        (Some(lines), BlockAction::Reject(ReplyKind::SmtpNotice)) => {
            Some(notice_reply(file, &format!("{field}.notice"), lines)?)
        }
        (None, BlockAction::Reject(ReplyKind::SmtpNotice)) => {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.notice"),
                "`reply: smtp-notice` needs the greeting's lines, e.g. `notice: [\"Port 25 to other networks is blocked on this line (OP25B).\", \"Send mail through port 587 with authentication.\"]`",
            ))
        }
        (Some(_), _) => {
            return Err(ConfigError::invalid(
                file,
                format!("{field}.notice"),
                "`notice` is the text of `reply: smtp-notice`; set `action: reject` and `reply: smtp-notice`, or remove it",
            ))
        }
        (None, _) => None,
    };
    Ok((action, notice))
}

/// The classes defined, for the fields that name one.
struct Classes<'a> {
    file: &'a Path,
    raw: &'a RawPolicy,
    ids: &'a BTreeMap<String, ClassId>,
}

impl Classes<'_> {
    /// The id of class `name`, named in `field`; an error lists the classes defined.
    fn id(&self, field: &str, name: &str) -> Result<ClassId, ConfigError> {
        self.ids.get(name).copied().ok_or_else(|| {
            let defined = self
                .raw
                .classes
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            ConfigError::invalid(
                self.file,
                field,
                format!("{name:?} is not a defined class (defined: {defined})"),
            )
        })
    }
}

/// `policy.subscribers`, fed to the builder: each prefix once, with one class.
struct Subscribers<'a, 'l> {
    file: &'a Path,
    raw: &'a RawPolicy,
    /// Every prefix given so far, with its class and where it was given.
    seen: HashMap<IpNet, (ClassId, Origin)>,
    listing: Option<&'l mut Vec<(IpNet, ClassId)>>,
}

impl Subscribers<'_, '_> {
    /// Every entry of `policy.subscribers` (a prefix, a list, or a prefix file: exactly
    /// one), in order; the prefix files read go to `files`.
    fn add_all(
        &mut self,
        b: &mut PolicyBuilder,
        classes: &Classes,
        files: &mut Vec<PrefixFileCount>,
    ) -> Result<(), ConfigError> {
        let (file, raw) = (self.file, self.raw);
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
            let id = classes.id(&format!("{field}.class"), &s.class)?;
            if let Some(p) = &s.prefix {
                let f = format!("{field}.prefix");
                self.add(b, parse_prefix(file, &f, p)?, id, Origin::Field(f))?;
            }
            if let Some(list) = &s.prefixes {
                for (k, p) in list.iter().enumerate() {
                    let f = format!("{field}.prefixes[{k}]");
                    self.add(b, parse_prefix(file, &f, p)?, id, Origin::Field(f))?;
                }
            }
            if let Some(f) = &s.file {
                let full = resolve(file, f);
                let list = read_prefix_file(file, &full)?;
                if list.is_empty() && !raw.classes.get(&s.class).is_some_and(|c| c.allow_empty) {
                    return Err(ConfigError::EmptyPrefixFile {
                        config: file.to_path_buf(),
                        file: full,
                        class: s.class.clone(),
                    });
                }
                files.push(PrefixFileCount {
                    path: full.clone(),
                    class: Some(s.class.clone()),
                    prefixes: list.len(),
                });
                for (p, line) in list {
                    self.add(b, p, id, Origin::Line(full.clone(), line))?;
                }
            }
        }
        Ok(())
    }

    /// One prefix of class `id`: the same prefix again with the same class is ignored,
    /// with another class it is an error naming both places.
    fn add(
        &mut self,
        b: &mut PolicyBuilder,
        p: Prefix,
        id: ClassId,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        if let Some((prev, prev_origin)) = self.seen.get(&p.0) {
            if *prev != id {
                let names: Vec<&str> = self.raw.classes.keys().map(String::as_str).collect();
                return Err(ConfigError::invalid(
                    self.file,
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
        self.seen.insert(p.0, (id, origin));
        if let Some(l) = self.listing.as_deref_mut() {
            l.push((p.0, id));
        }
        b.subscriber(p.0, id);
        Ok(())
    }
}

/// `policy.allowed_destinations` and the prefixes of `allowed_destination_files` (the
/// files read go to `files`).
fn allowed_destinations(
    file: &Path,
    raw: &RawPolicy,
    files: &mut Vec<PrefixFileCount>,
) -> Result<Vec<IpNet>, ConfigError> {
    let mut allowed = Vec::new();
    for (n, p) in raw.allowed_destinations.iter().enumerate() {
        allowed.push(parse_prefix(file, &format!("policy.allowed_destinations[{n}]"), p)?.0);
    }
    for f in &raw.allowed_destination_files {
        let full = resolve(file, f);
        let list = read_prefix_file(file, &full)?;
        files.push(PrefixFileCount {
            path: full,
            class: None,
            prefixes: list.len(),
        });
        allowed.extend(list.into_iter().map(|(p, _)| p.0));
    }
    Ok(allowed)
}

/// `policy.auto_quarantine`, validated.
fn auto_quarantine(
    file: &Path,
    raw: &RawPolicy,
    classes: &Classes,
) -> Result<Option<AutoQuarantine>, ConfigError> {
    let Some(a) = &raw.auto_quarantine else {
        return Ok(None);
    };
    classes.id("policy.auto_quarantine.class", &a.class)?;
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
    Ok(Some(AutoQuarantine {
        attempts_per_minute: a.attempts_per_minute,
        class: a.class.clone(),
        duration: Duration::from_secs(a.duration_secs),
    }))
}

/// [`policy_builder`], then `build`.
pub(super) fn compile_policy(
    file: &Path,
    raw: &RawPolicy,
    listing: Option<&mut Vec<(IpNet, ClassId)>>,
) -> Result<(Policy, ConfigLoadReport), ConfigError> {
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

/// Most lines in a notice.
pub const NOTICE_MAX_LINES: usize = 8;
/// Longest notice line (text only; RFC 5321 4.5.3.1.5 allows 512 octets per reply line,
/// code and CRLF included).
pub const NOTICE_MAX_LINE: usize = 200;
/// Largest whole reply: it must fit one segment under the smallest default MSS (536
/// octets, RFC 9293 3.7.1), since op25b's SYN-ACK carries no MSS option.
pub const NOTICE_MAX_REPLY: usize = 512;

/// Renders notice lines as one multi-line SMTP reply (RFC 5321 4.2.1): `554-5.7.1 line`
/// for all but the last, `554 5.7.1 line` for the last, each ending in CRLF.
pub fn notice_reply(file: &Path, field: &str, lines: &[String]) -> Result<Vec<u8>, ConfigError> {
    if lines.is_empty() || lines.len() > NOTICE_MAX_LINES {
        return Err(ConfigError::invalid(
            file,
            field,
            format!(
                "{} lines; a notice has 1 to {NOTICE_MAX_LINES} lines",
                lines.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if l.trim().is_empty() {
            return Err(ConfigError::invalid(
                file,
                at,
                "an empty line; write the text or remove the line",
            ));
        }
        if l.len() > NOTICE_MAX_LINE {
            return Err(ConfigError::invalid(
                file,
                at,
                format!(
                    "{} characters; at most {NOTICE_MAX_LINE} per line (split it into two lines)",
                    l.len()
                ),
            ));
        }
        if let Some(bad) = l.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(ConfigError::invalid(
                file,
                at,
                format!(
                    "{bad:?} is not printable ASCII: an SMTP greeting comes before any extension (SMTPUTF8) is agreed, so it is ASCII only (RFC 5321 4.2); write a second language in ASCII on its own line"
                ),
            ));
        }
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("554{sep}5.7.1 {l}\r\n").as_bytes());
    }
    if out.len() > NOTICE_MAX_REPLY {
        return Err(ConfigError::invalid(
            file,
            field,
            format!(
                "the reply is {} bytes; at most {NOTICE_MAX_REPLY} (one TCP segment at the default MSS): shorten the lines",
                out.len()
            ),
        ));
    }
    Ok(out)
}
