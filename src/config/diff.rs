//! What a reload changes: the restart-only settings that differ (named, so the operator
//! knows what still needs a restart) and the policy's changes (prefixes added and
//! removed per class, classes added, removed or changed, allowed destinations), for the
//! log line of an applied reload; and the reload guard ([`PolicyFacts::losses`]): a
//! reload in which a class, or one of its prefix files, drops to 0 prefixes or loses more
//! than `control.reload_max_loss_percent` of them is refused unless forced, so a
//! truncated file cannot take a pool out of the policy.

use super::{ClassId, Config, IpNet, Loaded};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// The settings that only take effect at start, by their YAML names, that differ
/// between `running` and `new`.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (running, new);
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    let (da, db) = (&a.datapath, &b.datapath);
    check(da.subscriber != db.subscriber, "interfaces.subscriber");
    check(da.upstream != db.upstream, "interfaces.upstream");
    check(da.queues != db.queues, "interfaces.queues");
    check(da.xdp_mode != db.xdp_mode, "interfaces.xdp_mode");
    check(da.zero_copy != db.zero_copy, "interfaces.zero_copy");
    check(da.frame_size != db.frame_size, "interfaces.frame_size");
    check(da.ring_size != db.ring_size, "interfaces.ring_size");
    let (ia, ib) = (&a.interfaces, &b.interfaces);
    check(
        ia.failure_mode != ib.failure_mode,
        "interfaces.failure_mode",
    );
    check(
        ia.fallback_bridge != ib.fallback_bridge,
        "interfaces.fallback_bridge",
    );
    check(da.cores != db.cores, "workers.cores");
    check(da.burst != db.burst, "workers.burst");
    check(da.busy_poll != db.busy_poll, "workers.busy_poll");
    check(
        da.overload_guard != db.overload_guard,
        "workers.overload_guard",
    );
    check(da.reply_rate != db.reply_rate, "policy.reject_rate");
    check(a.control.listen != b.control.listen, "control.listen");
    check(a.control.pid_file != b.control.pid_file, "control.pid_file");
    check(a.control.socket != b.control.socket, "control.socket");
    check(a.control.http_top != b.control.http_top, "control.http_top");
    check(
        a.control.state_file != b.control.state_file,
        "control.state_file",
    );
    check(a.logging.format != b.logging.format, "logging.format");
    check(a.radius != b.radius, "radius");
    out
}

/// The settings a reload applies, that differ (for the log and the reload's answer).
pub fn applied_setting_changes(running: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if running.logging.level != new.logging.level {
        out.push(format!(
            "logging.level {:?} -> {:?}",
            running.logging.level, new.logging.level
        ));
    }
    if running.workers.stats_interval != new.workers.stats_interval {
        out.push(format!(
            "workers.stats_interval_secs {} -> {}",
            running.workers.stats_interval.as_secs(),
            new.workers.stats_interval.as_secs()
        ));
    }
    if running.datapath.fast_path != new.datapath.fast_path {
        out.push(format!(
            "datapath.fast_path {:?} -> {:?}",
            running.datapath.fast_path, new.datapath.fast_path
        ));
    }
    out
}

/// What a reload compares: a policy's classes, prefixes and allowed destinations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFacts {
    /// Class name -> its settings, as one comparable line.
    classes: BTreeMap<String, String>,
    /// Class name -> its prefixes.
    prefixes: BTreeMap<String, BTreeSet<IpNet>>,
    allowed: BTreeSet<IpNet>,
    /// (prefix file, its class) -> prefixes in it.
    files: BTreeMap<(PathBuf, String), usize>,
    /// Unmatched class and fragment handling, as one line.
    other: String,
}

impl PolicyFacts {
    /// From a load and its listing (`config::load_listing`).
    pub fn new(loaded: &Loaded, listing: &[(IpNet, ClassId)]) -> Self {
        let names = &loaded.report.classes;
        let mut classes = BTreeMap::new();
        for c in loaded.policy.classes() {
            let ports: Vec<String> = c.blocked_ports.iter().map(|p| p.to_string()).collect();
            classes.insert(
                c.name.clone(),
                format!(
                    "block_ports [{}], action {:?}, block_inbound_smtp {}",
                    ports.join(","),
                    c.action,
                    c.block_inbound_smtp
                ),
            );
        }
        let mut prefixes: BTreeMap<String, BTreeSet<IpNet>> =
            names.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
        for (net, id) in listing {
            if let Some(name) = names.get(usize::from(*id)) {
                prefixes.entry(name.clone()).or_default().insert(*net);
            }
        }
        let mut files = BTreeMap::new();
        for f in &loaded.report.files {
            if let Some(class) = &f.class {
                *files.entry((f.path.clone(), class.clone())).or_default() += f.prefixes;
            }
        }
        Self {
            classes,
            prefixes,
            files,
            allowed: loaded.report.allowed.iter().copied().collect(),
            other: format!(
                "unmatched_class {:?}, fragments {:?}",
                loaded
                    .policy
                    .unmatched_class()
                    .and_then(|id| names.get(usize::from(id))),
                loaded.policy.fragments()
            ),
        }
    }

    /// The reload guard: each class in both policies, and each prefix file listed for
    /// the same class in both, that drops to 0 prefixes or loses more than
    /// `max_loss_percent` of them, as `dynamic: 0 prefixes, was 10,000`; a class whose
    /// prefixes cover that much fewer IPv4 addresses or IPv6 /64s (a lost /12 is one
    /// line of a file but most of a pool); and a class that had prefixes and is gone.
    /// Empty: the reload may go ahead.
    pub fn losses(&self, new: &PolicyFacts, max_loss_percent: u32) -> Vec<String> {
        let gutted = |was: u128, now: u128| {
            was > 0 && (now == 0 || (was - now.min(was)) * 100 > was * u128::from(max_loss_percent))
        };
        let mut out = Vec::new();
        for (name, old) in &self.prefixes {
            let Some(cur) = new.prefixes.get(name) else {
                if !old.is_empty() && !new.classes.contains_key(name) {
                    out.push(format!(
                        "{name}: class removed, had {} prefixes",
                        thousands(old.len())
                    ));
                }
                continue;
            };
            if gutted(old.len() as u128, cur.len() as u128) {
                out.push(format!(
                    "{name}: {} prefixes, was {}",
                    thousands(cur.len()),
                    thousands(old.len())
                ));
                continue;
            }
            let (was, now) = (coverage(old), coverage(cur));
            for (family, w, n) in [
                ("IPv4 addresses", was.0, now.0),
                ("IPv6 /64s", was.1, now.1),
            ] {
                if gutted(w, n) {
                    out.push(format!(
                        "{name}: covers {} {family}, was {}",
                        thousands_u128(n),
                        thousands_u128(w)
                    ));
                }
            }
        }
        for ((path, class), &was) in &self.files {
            if let Some(&now) = new.files.get(&(path.clone(), class.clone())) {
                if gutted(was as u128, now as u128) {
                    out.push(format!(
                        "{} (class {class}): {} prefixes, was {}",
                        path.display(),
                        thousands(now),
                        thousands(was)
                    ));
                }
            }
        }
        out
    }

    /// What changed from `self` to `new`.
    pub fn diff(&self, new: &PolicyFacts) -> PolicyDiff {
        let mut d = PolicyDiff::default();
        for (name, settings) in &new.classes {
            match self.classes.get(name) {
                None => d.classes_added.push(name.clone()),
                Some(old) if old != settings => d
                    .classes_changed
                    .push(format!("{name}: {old} -> {settings}")),
                Some(_) => {}
            }
        }
        for name in self.classes.keys() {
            if !new.classes.contains_key(name) {
                d.classes_removed.push(name.clone());
            }
        }
        let empty = BTreeSet::new();
        let names: BTreeSet<&String> = self.prefixes.keys().chain(new.prefixes.keys()).collect();
        for name in names {
            let old = self.prefixes.get(name).unwrap_or(&empty);
            let cur = new.prefixes.get(name).unwrap_or(&empty);
            let added: Vec<IpNet> = cur.difference(old).copied().collect();
            let removed: Vec<IpNet> = old.difference(cur).copied().collect();
            if !added.is_empty() || !removed.is_empty() {
                d.prefixes.push(ClassPrefixes {
                    class: name.clone(),
                    added,
                    removed,
                });
            }
        }
        d.allowed_added = new.allowed.difference(&self.allowed).copied().collect();
        d.allowed_removed = self.allowed.difference(&new.allowed).copied().collect();
        if self.other != new.other {
            d.other = Some(format!("{} -> {}", self.other, new.other));
        }
        d
    }
}

/// The IPv4 addresses and the IPv6 /64s the prefixes cover (nested prefixes counted
/// each time: the guard compares a class with itself, so the measure only has to move
/// with what is lost).
fn coverage(prefixes: &BTreeSet<IpNet>) -> (u128, u128) {
    prefixes.iter().fold((0, 0), |(v4, v6), p| match p {
        IpNet::V4(n) => (v4 + (1u128 << (32 - n.prefix_len())), v6),
        IpNet::V6(n) => (v4, v6 + (1u128 << (64 - n.prefix_len().min(64)))),
    })
}

/// [`thousands`] for a `u128`.
fn thousands_u128(n: u128) -> String {
    usize::try_from(n).map_or_else(|_| n.to_string(), thousands)
}

/// `10000` as `10,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A reload refused by the guard ([`PolicyFacts::losses`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("it would gut the policy: {}: a class or prefix file that drops to 0 prefixes or loses more than {max_loss_percent}% of them (control.reload_max_loss_percent) is refused; check the file, or apply it anyway with `op25b reload --force`", losses.join("; "))]
pub struct PolicyShrink {
    /// One line per class or file, e.g. `dynamic: 0 prefixes, was 10,000`.
    pub losses: Vec<String>,
    pub max_loss_percent: u32,
}

/// Prefixes that moved in or out of one class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassPrefixes {
    pub class: String,
    pub added: Vec<IpNet>,
    pub removed: Vec<IpNet>,
}

/// The policy changes of a reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDiff {
    pub classes_added: Vec<String>,
    pub classes_removed: Vec<String>,
    pub classes_changed: Vec<String>,
    pub prefixes: Vec<ClassPrefixes>,
    pub allowed_added: Vec<IpNet>,
    pub allowed_removed: Vec<IpNet>,
    pub other: Option<String>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        *self == PolicyDiff::default()
    }
}

/// At most this many prefixes are named per list; the rest are counted.
const SAMPLE: usize = 5;

fn list(f: &mut fmt::Formatter<'_>, nets: &[IpNet]) -> fmt::Result {
    for (i, n) in nets.iter().take(SAMPLE).enumerate() {
        write!(f, "{}{n}", if i == 0 { "" } else { " " })?;
    }
    if nets.len() > SAMPLE {
        write!(f, " and {} more", nets.len() - SAMPLE)?;
    }
    Ok(())
}

impl fmt::Display for PolicyDiff {
    /// One line: `classes added [x]; class dynamic: +3 (…) -1 (…); allowed +1 (…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "policy unchanged");
        }
        let mut sep = "";
        let mut part = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            let r = write!(f, "{sep}");
            sep = "; ";
            r
        };
        if !self.classes_added.is_empty() {
            part(f)?;
            write!(f, "classes added: {}", self.classes_added.join(", "))?;
        }
        if !self.classes_removed.is_empty() {
            part(f)?;
            write!(f, "classes removed: {}", self.classes_removed.join(", "))?;
        }
        for c in &self.classes_changed {
            part(f)?;
            write!(f, "class changed: {c}")?;
        }
        for p in &self.prefixes {
            part(f)?;
            write!(f, "class {} prefixes", p.class)?;
            if !p.added.is_empty() {
                write!(f, " +{} (", p.added.len())?;
                list(f, &p.added)?;
                write!(f, ")")?;
            }
            if !p.removed.is_empty() {
                write!(f, " -{} (", p.removed.len())?;
                list(f, &p.removed)?;
                write!(f, ")")?;
            }
        }
        if !self.allowed_added.is_empty() || !self.allowed_removed.is_empty() {
            part(f)?;
            write!(f, "allowed destinations")?;
            if !self.allowed_added.is_empty() {
                write!(f, " +{} (", self.allowed_added.len())?;
                list(f, &self.allowed_added)?;
                write!(f, ")")?;
            }
            if !self.allowed_removed.is_empty() {
                write!(f, " -{} (", self.allowed_removed.len())?;
                list(f, &self.allowed_removed)?;
                write!(f, ")")?;
            }
        }
        if let Some(o) = &self.other {
            part(f)?;
            write!(f, "policy settings: {o}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn facts(yaml: &str) -> (Loaded, PolicyFacts) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, yaml).unwrap();
        let (l, listing) = super::super::load_listing(&p).unwrap();
        let f = PolicyFacts::new(&l, &listing);
        (l, f)
    }

    const BASE: &str = "interfaces: {subscriber: s, upstream: u}
policy:
  classes:
    dynamic: {block_ports: [25]}
    business: {block_ports: []}
  subscribers:
    - {class: dynamic, prefixes: [198.51.100.0/24, 2001:db8:1::/48]}
    - {class: business, prefixes: [203.0.113.0/28]}
  allowed_destinations: [192.0.2.25]
";

    #[test]
    fn the_same_file_changes_nothing() {
        let (a, fa) = facts(BASE);
        let (b, fb) = facts(BASE);
        assert!(fa.diff(&fb).is_empty());
        assert_eq!(fa.diff(&fb).to_string(), "policy unchanged");
        assert!(restart_only_changes(&a.config, &b.config).is_empty());
        assert!(applied_setting_changes(&a.config, &b.config).is_empty());
    }

    #[test]
    fn prefixes_classes_and_allowed_destinations_are_named() {
        let (_, fa) = facts(BASE);
        let changed = BASE
            .replace("198.51.100.0/24, ", "198.51.100.0/25, 198.51.100.128/25, ")
            .replace(
                "business: {block_ports: []}",
                "business: {block_ports: [465]}\n    lab: {block_ports: [25]}",
            )
            .replace("[192.0.2.25]", "[192.0.2.26]");
        let (_, fb) = facts(&changed);
        let d = fa.diff(&fb);
        assert_eq!(d.classes_added, vec!["lab".to_string()]);
        assert!(d.classes_removed.is_empty());
        assert_eq!(d.classes_changed.len(), 1, "{d:?}");
        assert!(d.classes_changed[0].starts_with("business: block_ports []"));
        assert_eq!(d.prefixes.len(), 1);
        assert_eq!(d.prefixes[0].class, "dynamic");
        assert_eq!(d.prefixes[0].added.len(), 2);
        assert_eq!(
            d.prefixes[0].removed,
            vec!["198.51.100.0/24".parse::<IpNet>().unwrap()]
        );
        let text = d.to_string();
        assert!(text.contains("class dynamic prefixes +2 (198.51.100.0/25 198.51.100.128/25) -1 (198.51.100.0/24)"), "{text}");
        assert!(
            text.contains("allowed destinations +1 (192.0.2.26/32) -1 (192.0.2.25/32)"),
            "{text}"
        );
        assert!(text.contains("classes added: lab"), "{text}");
    }

    /// Writes `lines` prefixes of 198.51.100.0/24 (as /32s) to `pool.txt` beside the
    /// config, whose dynamic class reads it.
    fn pool_facts(dir: &tempfile::TempDir, lines: usize) -> PolicyFacts {
        let pool = dir.path().join("pool.txt");
        let text: String = (0..lines).map(|i| format!("198.51.100.{i}\n")).collect();
        std::fs::write(&pool, format!("# dynamic pool\n{text}")).unwrap();
        let cfg = dir.path().join("c.yaml");
        std::fs::write(
            &cfg,
            "interfaces: {subscriber: s, upstream: u}
policy:
  classes:
    dynamic: {block_ports: [25], allow_empty: true}
    business: {block_ports: []}
  subscribers:
    - {class: dynamic, file: pool.txt}
    - {class: dynamic, prefixes: [2001:db8:1::/48]}
    - {class: business, prefixes: [203.0.113.0/28]}
",
        )
        .unwrap();
        let (l, listing) = super::super::load_listing(&cfg).unwrap();
        PolicyFacts::new(&l, &listing)
    }

    #[test]
    fn reload_guard_refuses_a_gutted_class_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let full = pool_facts(&dir, 200);
        // 200 -> 0: the class keeps its IPv6 prefix (201 -> 1) and the file is empty.
        let empty = pool_facts(&dir, 0);
        let l = full.losses(&empty, 50);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0], "dynamic: 1 prefixes, was 201");
        assert!(
            l[1].ends_with("pool.txt (class dynamic): 0 prefixes, was 200"),
            "{l:?}"
        );
        // Losing 60% is refused at the default 50%, allowed at 60%; losing 40% passes.
        let sixty = pool_facts(&dir, 80);
        assert_eq!(full.losses(&sixty, 50).len(), 2);
        assert!(full.losses(&sixty, 60).is_empty());
        let forty = pool_facts(&dir, 120);
        assert!(full.losses(&forty, 50).is_empty());
        // 100%: only a drop to 0 is refused: the file, and the class's IPv4 addresses
        // (its IPv6 prefix stays).
        assert_eq!(
            full.losses(&empty, 100)[0],
            "dynamic: covers 0 IPv4 addresses, was 200"
        );
        assert_eq!(full.losses(&empty, 100).len(), 2);
        // Growth and the same policy pass.
        assert!(empty.losses(&full, 50).is_empty());
        assert!(full.losses(&full, 50).is_empty());
        let e = PolicyShrink {
            losses: full.losses(&empty, 50),
            max_loss_percent: 50,
        }
        .to_string();
        assert!(
            e.starts_with("it would gut the policy: dynamic: 1 prefixes, was 201; ")
                && e.contains("op25b reload --force"),
            "{e}"
        );
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    /// Coverage and removed classes: both passed the prefix-count guard before.
    #[test]
    fn reload_guard_refuses_a_lost_wide_prefix_and_a_removed_class() {
        let guard = |classes: &str, subscribers: &str| {
            facts(&format!(
                "interfaces: {{subscriber: s, upstream: u}}\npolicy:\n  classes:\n{classes}  subscribers:\n{subscribers}"
            ))
            .1
        };
        let classes = "    dynamic: {block_ports: [25]}\n    business: {block_ports: []}\n";
        let hosts: String = (1..10)
            .map(|i| format!("    - {{class: dynamic, prefix: 203.0.113.{i}/32}}\n"))
            .collect();
        let business = "    - {class: business, prefix: 198.51.100.0/28}\n";
        let wide = "    - {class: dynamic, prefix: 192.0.2.0/24}\n";
        let full = guard(classes, &format!("{wide}{hosts}{business}"));
        // One line of ten (10%), but 256 of 265 addresses.
        let narrow = guard(classes, &format!("{hosts}{business}"));
        assert_eq!(
            full.losses(&narrow, 50),
            ["dynamic: covers 9 IPv4 addresses, was 265"]
        );
        // The business class gone with its subscribers.
        let gone = guard(
            "    dynamic: {block_ports: [25]}\n",
            &format!("{wide}{hosts}"),
        );
        assert_eq!(
            full.losses(&gone, 50),
            ["business: class removed, had 1 prefixes"]
        );
        assert!(full.losses(&full, 50).is_empty());
    }

    #[test]
    fn long_lists_are_sampled() {
        let nets: Vec<IpNet> = (0..9)
            .map(|i| format!("198.51.100.{i}/32").parse().unwrap())
            .collect();
        let d = PolicyDiff {
            prefixes: vec![ClassPrefixes {
                class: "c".into(),
                added: nets,
                removed: vec![],
            }],
            ..Default::default()
        };
        assert!(
            d.to_string().ends_with("198.51.100.4/32 and 4 more)"),
            "{d}"
        );
    }

    #[test]
    fn restart_only_fields_are_named_and_reloadable_ones_are_not() {
        let (a, _) = facts(BASE);
        let text = format!(
            "{BASE}workers: {{cores: [1], burst: 32, stats_interval_secs: 3}}\nlogging: {{level: debug}}\ncontrol: {{listen: 127.0.0.1:9999}}\n"
        );
        let (b, _) = facts(&text);
        let r = restart_only_changes(&a.config, &b.config);
        assert!(r.contains(&"workers.cores"), "{r:?}");
        assert!(r.contains(&"workers.burst"), "{r:?}");
        assert!(r.contains(&"control.listen"), "{r:?}");
        assert!(!r
            .iter()
            .any(|f| f.contains("stats_interval") || f.contains("level")));
        let applied = applied_setting_changes(&a.config, &b.config);
        assert_eq!(applied.len(), 2, "{applied:?}");
        let _ = Path::new("unused");
    }
}
