//! Every broken config under `tests/configs/` must be refused by `op25b check` with exit 1
//! and a message that names the file, the field (or line) and the bad value.

use std::path::Path;
use std::process::Command;

/// (file, substrings the one-line error must contain)
const CASES: &[(&str, &[&str])] = &[
    ("bad-action.yaml", &["policy.classes.dynamic.action", "`bounce`", "`drop` or `reject`", "line 4"]),
    ("bad-allowed.yaml", &["policy.allowed_destinations[0]", "\"203.0.113.300\"", "is not an IPv4/IPv6 prefix"]),
    ("bad-listen.yaml", &["control.listen", "\"localhost\"", "address:port"]),
    ("bad-prefix-file.yaml", &["bad-pool.txt:4", "\"203.0.113.0/240\"", "listed in tests/configs/bad-prefix-file.yaml"]),
    ("bad-prefix-length.yaml", &["tests/configs/bad-prefix-length.yaml: policy.subscribers[0].prefix: \"198.51.100.7/33\" is not an IPv4/IPv6 prefix"]),
    ("bad-xdp-mode.yaml", &["interfaces.xdp_mode", "`fast`", "`auto`, `native`, `generic`"]),
    ("conflicting-duplicate.yaml", &["policy.subscribers[1].prefix", "198.51.100.0/24", "\"static\"", "\"dynamic\"", "policy.subscribers[0].prefix"]),
    ("cores-mismatch.yaml", &["workers.cores", "1 cores listed for 2 queues"]),
    ("duplicate-class.yaml", &["policy.classes", "class \"dynamic\" is defined twice", "line 4"]),
    ("generic-zero-copy.yaml", &["interfaces.zero_copy", "needs native XDP"]),
    ("notice-missing-text.yaml", &["policy.classes.dynamic.notice", "`reply: smtp-notice` needs the greeting's lines"]),
    ("notice-not-ascii.yaml", &["policy.classes.dynamic.notice[1]", "is not printable ASCII", "SMTPUTF8"]),
    ("notice-line-too-long.yaml", &["policy.classes.dynamic.notice[0]", "201 characters; at most 200"]),
    ("notice-too-big.yaml", &["policy.classes.dynamic.notice", "the reply is", "at most 512"]),
    ("notice-without-smtp-notice.yaml", &["policy.classes.dynamic.notice", "`notice` is the text of `reply: smtp-notice`"]),
    ("reply-without-reject.yaml", &["policy.classes.dynamic.reply", "only sent with `action: reject`"]),
    ("duplicate-key.yaml", &["duplicate field `classes`", "line 3"]),
    ("empty-interface.yaml", &["interfaces.subscriber", "is empty", "network interface name"]),
    ("host-bits-set.yaml", &["policy.subscribers[0].prefix", "\"198.51.100.7/24\" has host bits set", "198.51.100.0/24"]),
    ("missing-policy.yaml", &["missing-policy.yaml", "missing field `policy`"]),
    ("missing-prefix-file.yaml", &["missing-pool.txt", "cannot read", "No such file", "listed in tests/configs/missing-prefix-file.yaml"]),
    ("port-too-big.yaml", &["policy.classes.dynamic.block_ports[1]", "port 70000 is outside 1..65535"]),
    ("port-wrong-type.yaml", &["policy.classes.dynamic.block_ports[0]", "\"smtp\"", "line 4"]),
    ("port-zero.yaml", &["policy.classes.dynamic.block_ports[0]", "port 0 is outside 1..65535"]),
    ("prefix-and-file.yaml", &["policy.subscribers[0]", "expected exactly one of them"]),
    ("same-interface.yaml", &["interfaces.upstream", "\"d0\"", "two different NICs"]),
    ("undefined-class.yaml", &["policy.subscribers[0].class", "\"dynamc\" is not a defined class", "dynamic, static"]),
    ("unknown-field.yaml", &["policy.classes.dynamic", "unknown field `acton`", "line 4"]),
    ("yaml-syntax.yaml", &["yaml-syntax.yaml", "line 2 column 7"]),
];

fn check(config: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_op25b"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--config", config])
        .output()
        .expect("run op25b");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_broken_config_fails_with_its_message() {
    let mut failures = Vec::new();
    for (file, wants) in CASES {
        let path = format!("tests/configs/{file}");
        let (code, stdout, stderr) = check(&path);
        if code != 78 {
            failures.push(format!(
                "{file}: exit {code}, expected 78, EX_CONFIG (stderr: {stderr})"
            ));
            continue;
        }
        if !stdout.is_empty() {
            failures.push(format!(
                "{file}: printed a summary although it failed: {stdout}"
            ));
        }
        let lines: Vec<&str> = stderr.lines().collect();
        if lines.len() != 1 || !lines[0].starts_with("error: ") {
            failures.push(format!(
                "{file}: expected one `error: ...` line, got {stderr:?}"
            ));
        }
        for want in *wants {
            if !stderr.contains(want) {
                failures.push(format!("{file}: message lacks {want:?}: {stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_file_in_tests_configs_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") {
            assert!(
                CASES.iter().any(|(f, _)| *f == name),
                "{name} has no expected message in tests/offline/config_errors.rs"
            );
        }
    }
}

#[test]
fn shipped_configs_pass() {
    for config in ["configs/example.yaml", "configs/lab.yaml"] {
        let (code, stdout, stderr) = check(config);
        assert_eq!(code, 0, "{config}: {stderr}");
        assert!(
            stdout.contains("dynamic"),
            "{config}: summary lacks classes: {stdout}"
        );
    }
}

/// `secret_file: credential:NAME` reads `$CREDENTIALS_DIRECTORY/NAME` (systemd's
/// LoadCredential=); without the variable `op25b check` refuses with the line to add.
#[test]
fn a_radius_secret_comes_from_a_systemd_credential() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("radius-secret"), "s3cret\n").unwrap();
    let radius = "radius={listen: \"127.0.0.1:1813\", clients: [{address: 192.0.2.1, \
                  secret_file: \"credential:radius-secret\"}]}";
    let run = |env: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_op25b"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["check", "--config", "configs/lab.yaml", "--set", radius])
            .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(d) = env {
            c.env("CREDENTIALS_DIRECTORY", d);
        }
        let out = c.output().expect("run op25b");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(Some(creds.path()));
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run(None);
    assert_eq!(code, 78, "{stderr}");
    for want in [
        "radius.clients[0].secret_file",
        "$CREDENTIALS_DIRECTORY is not set",
        "LoadCredential=radius-secret:configs/radius-secret",
    ] {
        assert!(stderr.contains(want), "{want:?} missing: {stderr}");
    }
}
