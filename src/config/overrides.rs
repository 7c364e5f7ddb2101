//! `--set KEY=VALUE`: one setting of the config file replaced (or added) on the command
//! line, applied to the YAML document before it is deserialized, so the result is
//! checked exactly as if the file said it.
//!
//! `KEY` is a dotted path (`control.listen`, `policy.classes.dynamic.block_ports`); a
//! numeric segment indexes a sequence (`policy.subscribers.0.prefix`). `VALUE` is YAML
//! (flow style): `2`, `off`, `[0, 1]`, `{file: x.txt, class: dynamic}`, `"127.0.0.1:9735"`.
//! The last segment may name a key the mapping does not have yet (it is added); every
//! segment before it must exist, so a typo in a section name is an error, not a new
//! section.

use std::fmt;
use std::str::FromStr;

use serde_yaml::Value;

/// The top-level sections of a config file (`RawConfig`'s fields).
pub const SECTIONS: &[&str] = &[
    "interfaces",
    "workers",
    "datapath",
    "policy",
    "control",
    "logging",
    "radius",
];

/// One `KEY=VALUE`, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// As given, for messages and logs.
    text: String,
    path: Vec<String>,
    value: Value,
}

/// Why a `--set` cannot be applied. Each message starts with the override as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// Not `KEY=VALUE`, or an empty segment in `KEY`.
    #[error(
        "--set {set:?}: {why}; expected KEY=VALUE with a dotted KEY such as interfaces.queues=2"
    )]
    Malformed { set: String, why: String },
    /// `VALUE` is not YAML.
    #[error("--set {set:?}: the value is not YAML ({message}); quote strings that contain YAML syntax, e.g. 'control.listen=\"127.0.0.1:9735\"'")]
    Value { set: String, message: String },
    /// `KEY` starts with a section the config does not have.
    #[error("--set {set:?}: {section:?} is not a section of the config; expected one of {}", SECTIONS.join(", "))]
    UnknownSection { set: String, section: String },
    /// The file is not a mapping at the top.
    #[error("--set {set:?}: the config file is not a mapping of sections")]
    NotAMapping { set: String },
    /// A segment before the last names nothing.
    #[error("--set {set:?}: {at} is not in the file; only the last key of a --set is added, so set the whole mapping instead (e.g. --set '{at}={{...}}')")]
    Missing { set: String, at: String },
    /// A segment before the last names a scalar.
    #[error(
        "--set {set:?}: {at} is {kind}, not a mapping or a sequence; cannot set {next:?} in it"
    )]
    NotContainer {
        set: String,
        at: String,
        kind: &'static str,
        next: String,
    },
    /// A sequence indexed by something that is not a number.
    #[error("--set {set:?}: {at} is a sequence; {segment:?} is not an index (0, 1, ...)")]
    NotIndex {
        set: String,
        at: String,
        segment: String,
    },
    /// An index past the end of a sequence.
    #[error("--set {set:?}: {at} has {len} entries; index {index} is out of range (set the whole sequence instead)")]
    OutOfRange {
        set: String,
        at: String,
        index: usize,
        len: usize,
    },
}

impl Override {
    /// `KEY=VALUE` as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Override {
    type Err = OverrideError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = |why: &str| OverrideError::Malformed {
            set: s.to_string(),
            why: why.to_string(),
        };
        let (key, value) = s.split_once('=').ok_or_else(|| malformed("no '='"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(malformed("the key is empty"));
        }
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(malformed(&format!("{key:?} has an empty segment")));
        }
        let value = serde_yaml::from_str(value).map_err(|e| OverrideError::Value {
            set: s.to_string(),
            message: e.to_string(),
        })?;
        Ok(Override {
            text: s.to_string(),
            path,
            value,
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Override {
    /// Sets this override's key in `doc` (the whole config file).
    pub fn apply(&self, doc: &mut Value) -> Result<(), OverrideError> {
        let set = || self.text.clone();
        if !SECTIONS.contains(&self.path[0].as_str()) {
            return Err(OverrideError::UnknownSection {
                set: set(),
                section: self.path[0].clone(),
            });
        }
        if !doc.is_mapping() {
            return Err(OverrideError::NotAMapping { set: set() });
        }
        let (last, parents) = self.path.split_last().expect("a key has a segment");
        let mut cur = doc;
        for (i, seg) in parents.iter().enumerate() {
            let at = self.path[..=i].join(".");
            cur = match cur {
                Value::Mapping(m) => m
                    .get_mut(seg.as_str())
                    .ok_or(OverrideError::Missing { set: set(), at })?,
                Value::Sequence(s) => {
                    let parent = self.path[..i].join(".");
                    let index = seg.parse::<usize>().map_err(|_| OverrideError::NotIndex {
                        set: set(),
                        at: parent.clone(),
                        segment: seg.clone(),
                    })?;
                    let len = s.len();
                    s.get_mut(index).ok_or(OverrideError::OutOfRange {
                        set: set(),
                        at: parent,
                        index,
                        len,
                    })?
                }
                other => {
                    return Err(OverrideError::NotContainer {
                        set: set(),
                        at: self.path[..i].join("."),
                        kind: kind(other),
                        next: seg.clone(),
                    })
                }
            };
        }
        let at = parents.join(".");
        match cur {
            Value::Mapping(m) => {
                m.insert(Value::String(last.clone()), self.value.clone());
            }
            Value::Sequence(s) => {
                let index = last.parse::<usize>().map_err(|_| OverrideError::NotIndex {
                    set: set(),
                    at: at.clone(),
                    segment: last.clone(),
                })?;
                let len = s.len();
                *s.get_mut(index).ok_or(OverrideError::OutOfRange {
                    set: set(),
                    at,
                    index,
                    len,
                })? = self.value.clone();
            }
            other => {
                return Err(OverrideError::NotContainer {
                    set: set(),
                    at,
                    kind: kind(other),
                    next: last.clone(),
                })
            }
        }
        Ok(())
    }
}

/// Applies every override, in order (a later one wins).
pub fn apply_all(doc: &mut Value, overrides: &[Override]) -> Result<(), OverrideError> {
    overrides.iter().try_for_each(|o| o.apply(doc))
}

/// Why [`apply_to_text`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the text is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error(transparent)]
    Override(#[from] OverrideError),
}

/// A config text with `(KEY, VALUE)` settings applied, as YAML text again (comments and
/// layout are not kept). For tests and scripts that must write a variant file (a live
/// reload needs a changed file): the same code as `--set`, so a key path that is not
/// in the file fails here instead of silently changing nothing.
pub fn apply_to_text(text: &str, sets: &[(&str, &str)]) -> Result<String, EditError> {
    let mut doc: Value = serde_yaml::from_str(text)?;
    for (k, v) in sets {
        format!("{k}={v}").parse::<Override>()?.apply(&mut doc)?;
    }
    Ok(serde_yaml::to_string(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "
interfaces: {subscriber: sub0, upstream: up0, queues: 1}
workers: {cores: [1]}
policy:
  classes:
    dynamic: {block_ports: [25], action: reject}
  subscribers:
    - {prefix: 198.51.100.0/24, class: dynamic}
control: {listen: 127.0.0.1:9725}
";

    fn set(sets: &[&str]) -> Result<Value, OverrideError> {
        let mut doc: Value = serde_yaml::from_str(DOC).unwrap();
        for s in sets {
            s.parse::<Override>()?.apply(&mut doc)?;
        }
        Ok(doc)
    }

    #[test]
    fn replaces_adds_and_indexes() {
        let d = set(&[
            "interfaces.queues=2",
            "workers.cores=[0, 1]",
            "interfaces.failure_mode=open",
            "policy.classes.dynamic.block_ports=[]",
            "policy.subscribers.0.prefix=192.0.2.0/24",
            "control.listen=\"127.0.0.1:9735\"",
        ])
        .unwrap();
        assert_eq!(d["interfaces"]["queues"], Value::from(2));
        assert_eq!(
            d["workers"]["cores"],
            serde_yaml::from_str::<Value>("[0, 1]").unwrap()
        );
        assert_eq!(d["interfaces"]["failure_mode"], Value::from("open"));
        assert_eq!(
            d["policy"]["classes"]["dynamic"]["block_ports"],
            Value::Sequence(vec![])
        );
        assert_eq!(
            d["policy"]["subscribers"][0]["prefix"],
            Value::from("192.0.2.0/24")
        );
        assert_eq!(d["control"]["listen"], Value::from("127.0.0.1:9735"));
        // A whole entry of a sequence, and a plain scalar that YAML 1.1 would call a bool.
        let d = set(&[
            "policy.subscribers.0={file: x.txt, class: dynamic}",
            "datapath={fast_path: off}",
        ])
        .unwrap();
        assert_eq!(d["policy"]["subscribers"][0]["file"], Value::from("x.txt"));
        assert_eq!(d["datapath"]["fast_path"], Value::from("off"));
        // A later override wins.
        let d = set(&["interfaces.queues=2", "interfaces.queues=4"]).unwrap();
        assert_eq!(d["interfaces"]["queues"], Value::from(4));
    }

    #[test]
    fn refuses_what_it_cannot_apply() {
        let err = |s: &str| set(&[s]).unwrap_err();
        assert!(matches!(
            err("interfaces.queues"),
            OverrideError::Malformed { .. }
        ));
        assert!(matches!(err("=2"), OverrideError::Malformed { .. }));
        assert!(matches!(
            err("interfaces..queues=2"),
            OverrideError::Malformed { .. }
        ));
        assert!(matches!(
            err("workers.cores=[0,"),
            OverrideError::Value { .. }
        ));
        let e = err("interface.queues=2");
        assert!(matches!(e, OverrideError::UnknownSection { .. }), "{e}");
        assert!(e.to_string().contains("expected one of interfaces,"), "{e}");
        // A leaf of a section the file does not have: the section is not made up.
        let e = err("logging.level=debug");
        assert!(
            matches!(e, OverrideError::Missing { ref at, .. } if at == "logging"),
            "{e}"
        );
        let e = err("datapath.fast_path=off");
        assert_eq!(
            e.to_string(),
            "--set \"datapath.fast_path=off\": datapath is not in the file; only the last key \
             of a --set is added, so set the whole mapping instead (e.g. --set 'datapath={...}')"
        );
        let e = err("policy.clases.dynamic.block_ports=[]");
        assert!(
            matches!(e, OverrideError::Missing { ref at, .. } if at == "policy.clases"),
            "{e}"
        );
        let e = err("interfaces.queues.x=1");
        assert!(
            e.to_string()
                .contains("interfaces.queues is a number, not a mapping"),
            "{e}"
        );
        let e = err("policy.subscribers.3.prefix=192.0.2.0/24");
        assert!(
            matches!(
                e,
                OverrideError::OutOfRange {
                    index: 3,
                    len: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = err("policy.subscribers.first.prefix=192.0.2.0/24");
        assert!(matches!(e, OverrideError::NotIndex { .. }), "{e}");
        let e = err("workers.cores.5=3");
        assert!(matches!(e, OverrideError::OutOfRange { .. }), "{e}");
    }

    #[test]
    fn edits_text_and_fails_loudly() {
        let out = apply_to_text(DOC, &[("interfaces.queues", "2")]).unwrap();
        let v: Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["interfaces"]["queues"], Value::from(2));
        assert_eq!(v["control"]["listen"], Value::from("127.0.0.1:9725"));
        assert!(apply_to_text(DOC, &[("policy.nope.x", "1")]).is_err());
        assert!(apply_to_text("a: [", &[]).is_err());
    }

    #[test]
    fn sections_are_the_config_sections() {
        // Every name in SECTIONS is accepted by the config's deny_unknown_fields.
        for s in SECTIONS {
            let mut doc: Value = serde_yaml::from_str(DOC).unwrap();
            if doc.get(s).is_none() {
                doc.as_mapping_mut()
                    .unwrap()
                    .insert(Value::from(*s), Value::Mapping(Default::default()));
            }
            let text = serde_yaml::to_string(&doc).unwrap();
            let e = crate::config::load_str(std::path::Path::new("t.yaml"), &text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!e.contains("unknown field"), "{s}: {e}");
        }
    }
}
