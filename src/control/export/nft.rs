//! An nftables rule set that implements a config's OP25B policy (`op25b export-nft`):
//! the baseline an operator would run without op25b (Linux bridge + nftables), and the
//! fallback of `failure_mode: open`.
//!
//! op25b picks a source's class by longest prefix match; nftables interval maps cannot
//! hold overlapping prefixes, so the prefixes are first flattened into disjoint address
//! ranges, each carrying the class of its longest covering prefix ([`flatten`]).
//!
//! What the rule set does not do (op25b does): look inside 802.1Q/QinQ/PPPoE
//! encapsulation, and judge IPv6 fragments or malformed TCP headers.

use crate::config::Loaded;
use crate::policy::{BlockAction, ClassId, ReplyKind};
use ipnet::IpNet;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A disjoint, inclusive address range and the class that covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: u128,
    pub last: u128,
    pub class: ClassId,
}

/// Flattens possibly nested prefixes (as `(first, last, class)`, all of one family,
/// no duplicates) into disjoint ranges where each address has the class of its
/// longest covering prefix. Adjacent ranges of the same class are merged.
pub fn flatten(mut prefixes: Vec<(u128, u128, ClassId)>) -> Vec<Range> {
    // Containers before what they contain: by start, then widest first.
    prefixes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<Range> = Vec::new();
    let mut emit = |first: u128, last: u128, class: ClassId| {
        if let Some(prev) = out.last_mut() {
            if prev.class == class && prev.last.checked_add(1) == Some(first) {
                prev.last = last;
                return;
            }
        }
        out.push(Range { first, last, class });
    };
    // Open prefixes (end, class), innermost on top; `cursor`: first address not yet
    // emitted (None: past the end of the address space).
    let mut stack: Vec<(u128, ClassId)> = Vec::new();
    let mut cursor: Option<u128> = Some(0);
    for (first, last, class) in prefixes {
        while let Some(&(end, c)) = stack.last() {
            if end >= first {
                break;
            }
            if let Some(cur) = cursor {
                if cur <= end {
                    emit(cur, end, c);
                    cursor = end.checked_add(1);
                }
            }
            stack.pop();
        }
        if let (Some(&(_, c)), Some(cur)) = (stack.last(), cursor) {
            if cur < first {
                emit(cur, first - 1, c);
            }
        }
        stack.push((last, class));
        cursor = Some(first);
    }
    while let Some((end, c)) = stack.pop() {
        if let Some(cur) = cursor {
            if cur <= end {
                emit(cur, end, c);
                cursor = end.checked_add(1);
            }
        }
    }
    out
}

fn bounds(p: &IpNet) -> (u128, u128) {
    match p {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Which nftables family and hooks to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `table bridge`: a prerouting chain on the bridge, dispatching on `iifname`.
    Bridge,
    /// `table netdev`: ingress chains on the two devices (runs before the bridge).
    Netdev,
}

/// Options of [`ruleset`].
#[derive(Clone, Debug)]
pub struct NftOptions {
    pub family: Family,
    /// Turn every reject into drop (for kernels without bridge-family reject).
    pub reject_as_drop: bool,
    pub table: String,
    /// Start with `table ...; delete table ...`, so `nft -f` of the output replaces the
    /// table instead of adding a second copy of every rule (export-nft). The fallback
    /// loads under a fresh name and deletes the old table after, so it does not.
    pub replace: bool,
}

fn chain_name(class: &str, v6: bool, dir: &str) -> String {
    format!(
        "{dir}{}_{}",
        if v6 { 6 } else { 4 },
        class.replace('-', "_")
    )
}

fn addr(v: u128, v6: bool) -> String {
    if v6 {
        Ipv6Addr::from(v).to_string()
    } else {
        Ipv4Addr::from(v as u32).to_string()
    }
}

fn elements(ranges: &[Range], v6: bool, verdict: impl Fn(ClassId) -> Option<String>) -> String {
    let mut s = String::new();
    for r in ranges {
        let Some(v) = verdict(r.class) else { continue };
        if !s.is_empty() {
            s.push_str(",\n\t\t\t");
        }
        if r.first == r.last {
            let _ = write!(s, "{} : {v}", addr(r.first, v6));
        } else {
            let _ = write!(s, "{}-{} : {v}", addr(r.first, v6), addr(r.last, v6));
        }
    }
    s
}

/// The rule set for `loaded` with its subscriber prefixes `listing`, for the
/// interfaces named in the config.
pub fn ruleset(loaded: &Loaded, listing: &[(IpNet, ClassId)], opts: &NftOptions) -> String {
    let sub = &loaded.config.datapath.subscriber;
    let up = &loaded.config.datapath.upstream;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by `op25b export-nft` from {}.\n# OP25B policy for the path {sub} (subscribers) -> {up} (upstream); \
         classes by longest prefix match,\n# flattened into disjoint ranges. Not covered: VLAN/QinQ/PPPoE-encapsulated \
         frames, IPv6 fragments.",
        loaded.config.path.display()
    );
    let fam = match opts.family {
        Family::Bridge => "bridge",
        Family::Netdev => "netdev",
    };
    if opts.replace {
        // `table` creates it when missing, so the `delete` never fails: `nft -f` of
        // this file twice leaves one copy.
        let _ = writeln!(
            s,
            "table {fam} {}\ndelete table {fam} {}",
            opts.table, opts.table
        );
    }
    let _ = writeln!(s, "table {fam} {} {{", opts.table);
    for v6 in [false, true] {
        family_rules(&mut s, loaded, listing, opts, v6);
    }
    dispatch(&mut s, loaded);
    hooks(&mut s, opts.family, sub, up);
    s.push_str("}\n");
    s
}

/// One address family's sets, verdict maps and class chains.
fn family_rules(
    s: &mut String,
    loaded: &Loaded,
    listing: &[(IpNet, ClassId)],
    opts: &NftOptions,
    v6: bool,
) {
    let classes = loaded.policy.classes();
    let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
    let n = if v6 { 6 } else { 4 };
    let ranges = flatten(
        listing
            .iter()
            .filter(|(p, _)| matches!(p, IpNet::V6(_)) == v6)
            .map(|(p, c)| {
                let (a, b) = bounds(p);
                (a, b, *c)
            })
            .collect(),
    );
    let allowed: Vec<&IpNet> = loaded
        .report
        .allowed
        .iter()
        .filter(|p| matches!(p, IpNet::V6(_)) == v6)
        .collect();
    if !allowed.is_empty() {
        let list: Vec<String> = allowed.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            s,
            "\tset allowed{n} {{\n\t\ttype {ty}; flags interval; auto-merge;\n\t\telements = {{ {} }}\n\t}}",
            list.join(", ")
        );
    }
    let out_el = elements(&ranges, v6, |c| {
        let class = &classes[usize::from(c)];
        (!class.blocked_ports.is_empty())
            .then(|| format!("jump {}", chain_name(&class.name, v6, "out")))
            .or(Some("accept".into()))
    });
    if !out_el.is_empty() {
        let _ = writeln!(
            s,
            "\tmap out{n} {{\n\t\ttype {ty} : verdict; flags interval;\n\t\telements = {{ {out_el} }}\n\t}}"
        );
    }
    let in_el = elements(&ranges, v6, |c| {
        let class = &classes[usize::from(c)];
        Some(if class.block_inbound_smtp {
            format!("jump {}", chain_name(&class.name, v6, "in"))
        } else {
            "accept".into()
        })
    });
    if !in_el.is_empty() {
        let _ = writeln!(
            s,
            "\tmap in{n} {{\n\t\ttype {ty} : verdict; flags interval;\n\t\telements = {{ {in_el} }}\n\t}}"
        );
    }
    for class in classes.iter() {
        class_chains(s, loaded, class, opts, v6, !allowed.is_empty());
    }
}

/// A class's outbound chain (its blocked ports) and inbound chain (IP25B), if it has
/// them.
fn class_chains(
    s: &mut String,
    loaded: &Loaded,
    class: &crate::policy::Class,
    opts: &NftOptions,
    v6: bool,
    has_allowed: bool,
) {
    let fam_kw = if v6 { "ip6" } else { "ip" };
    let n = if v6 { 6 } else { 4 };
    if !class.blocked_ports.is_empty() {
        let ports: Vec<String> = class.blocked_ports.iter().map(|p| p.to_string()).collect();
        let ports = format!("{{ {} }}", ports.join(", "));
        let action = match (class.action, opts.reject_as_drop) {
            (BlockAction::Drop, _) | (_, true) => "drop".to_string(),
            // nftables cannot speak SMTP: the notice becomes the RST it falls back to.
            (BlockAction::Reject(ReplyKind::TcpReset | ReplyKind::SmtpNotice), _) => {
                "reject with tcp reset".into()
            }
            (BlockAction::Reject(ReplyKind::IcmpProhibited), false) => {
                if v6 {
                    "reject with icmpv6 type admin-prohibited".into()
                } else {
                    "reject with icmp type admin-prohibited".into()
                }
            }
        };
        let _ = writeln!(s, "\tchain {} {{", chain_name(&class.name, v6, "out"));
        if !v6 && loaded.policy.fragments().drop_non_first {
            let _ = writeln!(
                s,
                "\t\tip frag-off & 0x1fff != 0 counter drop comment \"non-first fragment\""
            );
        }
        if has_allowed {
            let _ = writeln!(
                s,
                "\t\t{fam_kw} daddr @allowed{n} accept comment \"allowed destination\""
            );
        }
        let _ = writeln!(
            s,
            "\t\ttcp dport {ports} counter {action} comment \"class {}\"\n\t}}",
            class.name
        );
    }
    if class.block_inbound_smtp {
        let _ = writeln!(
            s,
            "\tchain {} {{\n\t\ttcp dport 25 counter drop comment \"IP25B class {}\"\n\t}}",
            chain_name(&class.name, v6, "in"),
            class.name
        );
    }
}

/// The `outbound` and `inbound` chains: each family's verdict map, then the class of
/// addresses no prefix matches.
fn dispatch(s: &mut String, loaded: &Loaded) {
    let policy = &loaded.policy;
    let classes = policy.classes();
    let mut outbound = String::new();
    let mut inbound = String::new();
    for v6 in [false, true] {
        let n = if v6 { 6 } else { 4 };
        let fam_kw = if v6 { "ip6" } else { "ip" };
        if s.contains(&format!("map out{n} ")) {
            let _ = writeln!(outbound, "\t\t{fam_kw} saddr vmap @out{n}");
        }
        if s.contains(&format!("map in{n} ")) {
            let _ = writeln!(inbound, "\t\t{fam_kw} daddr vmap @in{n}");
        }
        if let Some(c) = policy.unmatched_class() {
            let class = &classes[usize::from(c)];
            if !class.blocked_ports.is_empty() {
                let _ = writeln!(
                    outbound,
                    "\t\tmeta protocol {} jump {}",
                    if v6 { "ip6" } else { "ip" },
                    chain_name(&class.name, v6, "out")
                );
            }
            if class.block_inbound_smtp {
                let _ = writeln!(
                    inbound,
                    "\t\tmeta protocol {} jump {}",
                    if v6 { "ip6" } else { "ip" },
                    chain_name(&class.name, v6, "in")
                );
            }
        }
    }
    let _ = writeln!(s, "\tchain outbound {{\n{outbound}\t}}");
    let _ = writeln!(s, "\tchain inbound {{\n{inbound}\t}}");
}

/// The base chains: where the frames of each interface enter the rules.
fn hooks(s: &mut String, family: Family, sub: &str, up: &str) {
    match family {
        Family::Bridge => {
            let _ = writeln!(
                s,
                "\tchain pre {{\n\t\ttype filter hook prerouting priority -200; policy accept;\n\t\tiifname \"{sub}\" jump outbound\n\t\tiifname \"{up}\" jump inbound\n\t}}"
            );
        }
        Family::Netdev => {
            let _ = writeln!(
                s,
                "\tchain ingress_sub {{\n\t\ttype filter hook ingress device \"{sub}\" priority 0; policy accept;\n\t\tjump outbound\n\t}}\n\tchain ingress_up {{\n\t\ttype filter hook ingress device \"{up}\" priority 0; policy accept;\n\t\tjump inbound\n\t}}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lpm(prefixes: &[(u128, u128, ClassId)], a: u128) -> Option<ClassId> {
        prefixes
            .iter()
            .filter(|(f, l, _)| *f <= a && a <= *l)
            .min_by_key(|(f, l, _)| l - f)
            .map(|p| p.2)
    }

    fn range_of(ranges: &[Range], a: u128) -> Option<ClassId> {
        ranges
            .iter()
            .find(|r| r.first <= a && a <= r.last)
            .map(|r| r.class)
    }

    proptest! {
        /// Every address gets the class of its longest covering prefix, ranges are
        /// disjoint and sorted, and no address outside every prefix is covered.
        #[test]
        fn flatten_matches_longest_prefix(raw in proptest::collection::vec((0u32..256, 0u8..9, 0u8..4), 1..20),
                                           probes in proptest::collection::vec(0u128..256, 50)) {
            let mut seen = std::collections::HashSet::new();
            let mut prefixes = Vec::new();
            for (a, len, c) in raw {
                let size = 256u128 >> len;
                let first = u128::from(a) & !(size - 1);
                if seen.insert((first, len)) {
                    prefixes.push((first, first + size - 1, c));
                }
            }
            let ranges = flatten(prefixes.clone());
            for w in ranges.windows(2) {
                prop_assert!(w[0].last < w[1].first);
            }
            for a in probes {
                prop_assert_eq!(range_of(&ranges, a), lpm(&prefixes, a), "address {}", a);
            }
        }
    }

    #[test]
    fn flatten_handles_the_whole_space() {
        let r = flatten(vec![(0, u128::MAX, 1), (10, 19, 2)]);
        assert_eq!(
            r,
            vec![
                Range {
                    first: 0,
                    last: 9,
                    class: 1
                },
                Range {
                    first: 10,
                    last: 19,
                    class: 2
                },
                Range {
                    first: 20,
                    last: u128::MAX,
                    class: 1
                }
            ]
        );
    }

    #[test]
    fn lab_ruleset_names_every_class_and_interface() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/lab.yaml"));
        let (loaded, listing) = crate::config::load_listing(path).unwrap();
        let r = ruleset(
            &loaded,
            &listing,
            &NftOptions {
                family: Family::Netdev,
                reject_as_drop: false,
                table: "op25b".into(),
                replace: true,
            },
        );
        // Idempotent: the first statements replace the table (nft -f twice: one copy).
        let first: Vec<&str> = r.lines().filter(|l| !l.starts_with('#')).take(3).collect();
        assert_eq!(
            first,
            [
                "table netdev op25b",
                "delete table netdev op25b",
                "table netdev op25b {"
            ]
        );
        for needle in [
            "table netdev op25b",
            "device \"d0\"",
            "device \"d1\"",
            "198.51.100.200 : accept",
            "198.51.100.128-198.51.100.143 : jump out4_quarantine",
            "reject with tcp reset",
            "reject with icmp type admin-prohibited",
            "ip daddr @allowed4 accept",
            "tcp dport 25 counter drop comment \"IP25B class dynamic\"",
        ] {
            assert!(r.contains(needle), "missing {needle:?} in\n{r}");
        }
    }
}
