//! Every shipped op25b config still loads, to the same settings and the same compiled
//! policy, after a YAML 1.1 tool rewrote it: PyYAML (what Ansible uses) reads an
//! unquoted `off` as a boolean and writes `busy_poll: off` back as `busy_poll: false`.
//!
//! Needs python3 with PyYAML (`python3-yaml`, installed by scripts/setup.sh); without it
//! the test fails and says so, it never passes without having run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every `*.yaml` under `configs/` that is an op25b config (has `interfaces:`); the
/// Prometheus rules and the bench traffic profiles are other formats.
fn shipped_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                let doc: serde_yaml::Value =
                    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                if doc.get("interfaces").is_some() {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs"),
        &mut out,
    );
    out.sort();
    out
}

/// `yaml.safe_dump(yaml.safe_load(file))`.
fn pyyaml_round_trip(file: &Path) -> String {
    let script = "import sys, yaml\n\
                  sys.stdout.write(yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install python3 and python3-yaml (scripts/setup.sh)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'yaml'"),
        "PyYAML is missing: apt-get install python3-yaml (scripts/setup.sh installs it)"
    );
    assert!(
        out.status.success(),
        "{}: PyYAML round trip failed: {stderr}",
        file.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_shipped_config_loads_the_same_after_a_pyyaml_round_trip() {
    let files = shipped_configs();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for must in ["op25b.yaml", "example.yaml", "lab.yaml", "bench.yaml"] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found: {names:?}"
        );
    }
    let mut rewrote_a_switch = false;
    for f in &files {
        let original = op25b::config::load(f).unwrap_or_else(|e| panic!("{e}"));
        let text = pyyaml_round_trip(f);
        rewrote_a_switch |= text.contains("busy_poll: false")
            && std::fs::read_to_string(f)
                .unwrap()
                .contains("busy_poll: off");
        // Loaded as if it were the original file, so that relative prefix-file paths
        // resolve as they do for it.
        let again = op25b::config::load_str(f, &text)
            .unwrap_or_else(|e| panic!("after a PyYAML round trip: {e}\n{text}"));
        let what = f.display();
        assert_eq!(original.config, again.config, "{what}: settings differ");
        assert_eq!(
            format!("{:?}", original.policy),
            format!("{:?}", again.policy),
            "{what}: compiled policy differs"
        );
        let (a, b) = (&original.report, &again.report);
        assert_eq!(a.classes, b.classes, "{what}");
        assert_eq!(a.allowed, b.allowed, "{what}");
        assert_eq!(a.files, b.files, "{what}");
        assert_eq!(a.exempt_class, b.exempt_class, "{what}");
        assert_eq!(a.auto_quarantine, b.auto_quarantine, "{what}");
    }
    // The case this test is about happened at least once.
    assert!(
        rewrote_a_switch,
        "no config had `busy_poll: off` to rewrite"
    );
}
