//! Broken command lines and files that cannot be configs: each must give exactly one
//! `error: ...` line naming what to fix and a non-zero exit (2 for bad arguments, 1 for
//! bad input), never a panic. Together with `config_errors.rs` (24 broken configs) and
//! the interface checks in `e2e_lab.rs` this is the table in docs/reliability.md.
//! Generated cases: a prefix file of 1,000,000 lines with one bad line, sparse files
//! past the size limits, a non-UTF-8 file, a directory, and (as root) a file the user
//! running op25b cannot read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The test kit's `op25b-bench` (package op25b-testkit), built beside op25b by
/// `cargo build --workspace` (scripts/test.sh does).
fn bench_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_op25b")).with_file_name("op25b-bench");
    assert!(
        p.exists(),
        "{} is not built: cargo build --release -p op25b-testkit",
        p.display()
    );
    p
}

fn op25b(args: &[&str], as_nobody: bool) -> (i32, String, String) {
    // `bench ...` runs the test kit's op25b-bench.
    let (exe, args) = match args.split_first() {
        Some((&"bench", rest)) => (bench_bin(), rest),
        _ => (PathBuf::from(env!("CARGO_BIN_EXE_op25b")), args),
    };
    let mut c = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = c
        .args(args)
        .current_dir(root())
        .output()
        .expect("run op25b");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config like lab.yaml whose subscribers come from `file`, with a private pid file and
/// an unused listen address.
/// (Written through the same code as `--set`: `reload` reads only the file.)
fn config_with_file(dir: &Path, name: &str, file: &Path) -> PathBuf {
    let text = op25b::config::overrides::apply_to_text(
        &std::fs::read_to_string(root().join("configs/lab.yaml")).unwrap(),
        &[
            (
                "policy.subscribers.0",
                &format!("{{file: {:?}, class: dynamic}}", file.display().to_string()),
            ),
            ("control.pid_file", "/tmp/op25b-cli-errors.pid"),
            ("control.listen", "\"127.0.0.1:1\""),
        ],
    )
    .unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    wants: Vec<String>,
    as_nobody: bool,
}

fn case(name: &'static str, args: &[&str], code: i32, wants: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        wants: wants.iter().map(|s| s.to_string()).collect(),
        as_nobody: false,
    }
}

#[test]
fn every_broken_command_line_fails_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();

    // 1,000,000 prefixes, line 654,321 broken.
    let big = d.join("million.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        for i in 0u32..1_000_000 {
            if i == 654_320 {
                writeln!(f, "10.9.300.0/30").unwrap();
            } else {
                let a = 0x0a00_0000u32 + i * 4;
                writeln!(f, "{}/30", std::net::Ipv4Addr::from(a)).unwrap();
            }
        }
    }
    let million = config_with_file(d, "million.yaml", &big);
    // Sparse files past the limits (no disk used).
    let huge_cfg = d.join("huge.yaml");
    std::fs::File::create(&huge_cfg)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let huge_list = d.join("huge.txt");
    std::fs::File::create(&huge_list)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let huge_list_cfg = config_with_file(d, "huge-list.yaml", &huge_list);
    std::fs::write(
        d.join("latin1.yaml"),
        b"interfaces:\n  subscriber: d\xf60\n",
    )
    .unwrap();
    std::fs::write(d.join("empty.yaml"), b"").unwrap();
    std::fs::write(d.join("not-a-map.yaml"), b"- just\n- a list\n").unwrap();
    std::fs::write(
        d.join("hostile2.yaml"),
        std::fs::read_to_string(root().join("configs/bench-profile.yaml")).unwrap()
            + "hostile_share: 2\n",
    )
    .unwrap();
    let private = d.join("private.yaml");
    std::fs::copy(root().join("configs/lab.yaml"), &private).unwrap();
    // A policy that does not load (undefined class) with a valid control section:
    // status, top and reload read only the control section.
    std::fs::write(
        d.join("broken-policy.yaml"),
        "interfaces: {subscriber: a, upstream: b}\npolicy:\n  classes: {}\n  subscribers: [{class: nope, prefixes: [192.0.2.0/24]}]\ncontrol: {listen: \"127.0.0.1:1\"}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("bad-listen.yaml"),
        "control: {listen: \"localhost\"}\n",
    )
    .unwrap();
    let lab_quiet = config_with_file(
        d,
        "quiet.yaml",
        &root().join("configs/prefixes/dynamic-v4.txt"),
    );
    // A truncated pool: comments only.
    let empty_pool = d.join("empty-pool.txt");
    std::fs::write(&empty_pool, "# dynamic pool, exported nightly\n\n").unwrap();
    let empty_pool_cfg = config_with_file(d, "empty-pool.yaml", &empty_pool);

    let cases = vec![
        case(
            "unknown command",
            &["frobnicate"],
            64,
            &["unrecognized subcommand 'frobnicate'"],
        ),
        case(
            "run with --config on a flag",
            &["run", "--config"],
            64,
            &["a value is required for '--config <CONFIG>'"],
        ),
        case(
            "unknown option",
            &["check", "--conifg", "x.yaml"],
            64,
            &["unexpected argument '--conifg'"],
        ),
        case(
            "duration not a number",
            &["run", "-c", "configs/lab.yaml", "--duration", "soon"],
            64,
            &["invalid value 'soon' for '--duration"],
        ),
        case(
            "rate not a number",
            &[
                "bench",
                "gen",
                "-i",
                "s0",
                "-c",
                "configs/bench.yaml",
                "-p",
                "configs/bench-profile.yaml",
                "--rate",
                "fast",
            ],
            64,
            &["invalid value 'fast' for '--rate"],
        ),
        case(
            "bad nft family",
            &[
                "export-nft",
                "-c",
                "configs/lab.yaml",
                "--family",
                "ethernet",
            ],
            64,
            &["invalid value 'ethernet'", "bridge, netdev"],
        ),
        case(
            "sink queues 0",
            &["bench", "sink", "-i", "u0", "--queues", "0"],
            1,
            &["--queues 0 is outside 1..64"],
        ),
        case(
            "missing config file",
            &["check", "-c", "/nonexistent/op25b.yaml"],
            78,
            &["/nonexistent/op25b.yaml: cannot read", "No such file"],
        ),
        case(
            "config is a directory",
            &["check", "-c", d.to_str().unwrap()],
            78,
            &["is a directory; expected a YAML config file"],
        ),
        case(
            "config not UTF-8",
            &["check", "-c", &p("latin1.yaml")],
            78,
            &[
                "latin1.yaml: cannot read",
                "not UTF-8 text (invalid byte at offset 27)",
            ],
        ),
        case(
            "config of 17 MiB",
            &["check", "-c", huge_cfg.to_str().unwrap()],
            78,
            &["17825792 bytes is more than the 16 MiB a YAML config file may have"],
        ),
        case(
            "empty config",
            &["check", "-c", &p("empty.yaml")],
            78,
            &["missing field `interfaces`"],
        ),
        case(
            "config not a map",
            &["check", "-c", &p("not-a-map.yaml")],
            78,
            &["not-a-map.yaml", "expected struct"],
        ),
        case(
            "1M-line prefix file, one bad line",
            &["check", "-c", million.to_str().unwrap()],
            78,
            &["million.txt:654321", "\"10.9.300.0/30\"", "listed in"],
        ),
        case(
            "prefix file over 1 GiB",
            &["check", "-c", huge_list_cfg.to_str().unwrap()],
            78,
            &[
                "huge.txt",
                "1073741825 bytes is more than the 1024 MiB a prefix file may have",
            ],
        ),
        case(
            "classify a missing capture",
            &[
                "classify",
                "-c",
                "configs/lab.yaml",
                "--pcap",
                "/nonexistent.pcap",
            ],
            66,
            &["/nonexistent.pcap"],
        ),
        case(
            "profile share out of range",
            &[
                "bench",
                "gen",
                "-i",
                "s0",
                "-c",
                "configs/bench.yaml",
                "-p",
                &p("hostile2.yaml"),
            ],
            1,
            &["hostile_share", "2 is outside 0..1"],
        ),
        case(
            "reload with nothing running",
            &["reload", "-c", lab_quiet.to_str().unwrap()],
            69,
            &["no op25b answering on the operator socket /tmp/op25b-cli-errors.sock (control.socket)"],
        ),
        case(
            "check with an empty prefix file",
            &["check", "-c", empty_pool_cfg.to_str().unwrap()],
            78,
            &[
                "empty-pool.txt: no prefixes in it (empty, or only comments and blank lines): class \"dynamic\" would get none from it",
                "policy.classes.dynamic.allow_empty: true",
            ],
        ),
        case(
            "status with nothing listening",
            &["status", "-c", lab_quiet.to_str().unwrap()],
            69,
            &["no op25b answering at http://127.0.0.1:1/metrics"],
        ),
        case(
            "status with a broken policy still reads control.listen",
            &["status", "-c", &p("broken-policy.yaml")],
            69,
            &["no op25b answering at http://127.0.0.1:1/metrics"],
        ),
        case(
            "top with --socket and no config",
            &["top", "-c", "/nonexistent.yaml", "--socket", "/nonexistent.sock"],
            69,
            &["no op25b answering on the operator socket /nonexistent.sock"],
        ),
        case(
            "reload with a bad control section",
            &["reload", "-c", &p("bad-listen.yaml")],
            78,
            &["control.listen", "is not an address:port"],
        ),
        case(
            "--set without =",
            &[
                "check",
                "-c",
                "configs/lab.yaml",
                "--set",
                "interfaces.queues",
            ],
            64,
            &["--set \"interfaces.queues\": no '='", "expected KEY=VALUE"],
        ),
        case(
            "--set value not YAML",
            &[
                "check",
                "-c",
                "configs/lab.yaml",
                "--set",
                "workers.cores=[0,",
            ],
            64,
            &["--set \"workers.cores=[0,\": the value is not YAML"],
        ),
        case(
            "--set unknown section",
            &[
                "run",
                "-c",
                "configs/lab.yaml",
                "--set",
                "interface.queues=2",
            ],
            78,
            &[
                "configs/lab.yaml: --set \"interface.queues=2\"",
                "\"interface\" is not a section of the config; expected one of interfaces,",
            ],
        ),
        case(
            "--set into a scalar",
            &[
                "classify",
                "-c",
                "configs/lab.yaml",
                "--pcap",
                "/nonexistent.pcap",
                "--set",
                "datapath.fast_path.x=1",
            ],
            78,
            &["datapath.fast_path is a string, not a mapping or a sequence"],
        ),
        case(
            "--set index out of range",
            &[
                "export-nft",
                "-c",
                "configs/lab.yaml",
                "--set",
                "policy.subscribers.10.prefix=192.0.2.0/24",
            ],
            78,
            &["policy.subscribers has 10 entries; index 10 is out of range"],
        ),
        case(
            "--set a misspelt key",
            &[
                "check",
                "-c",
                "configs/lab.yaml",
                "--set",
                "interfaces.subscribr=d9",
            ],
            78,
            &["(in the file with --set interfaces.subscribr=d9)"],
        ),
        case(
            "--set a value the file may not have",
            &[
                "check",
                "-c",
                "configs/lab.yaml",
                "--set",
                "interfaces.queues=0",
            ],
            78,
            &["interfaces.queues"],
        ),
    ];
    assert!(cases.len() >= 19);
    check_cases(&cases);
}

/// Without --config every subcommand reads /etc/op25b/op25b.yaml.
#[test]
fn the_default_config_is_etc_op25b() {
    let (code, out, err) = op25b(&["check"], false);
    if std::path::Path::new("/etc/op25b/op25b.yaml").exists() {
        assert!(
            out.starts_with("/etc/op25b/op25b.yaml: OK") || err.contains("/etc/op25b/op25b.yaml"),
            "{code}: {out}{err}"
        );
    } else {
        assert_eq!(code, 78, "{err}");
        assert!(err.contains("/etc/op25b/op25b.yaml: cannot read"), "{err}");
    }
}

/// A config the user running op25b cannot read: one error line naming the file.
#[test]
#[ignore = "needs root: runs op25b as another user (scripts/test.sh runs it as root)"]
fn unreadable_config_is_named() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (setpriv to nobody)"
    );
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let private = d.join("private.yaml");
    std::fs::copy(root().join("configs/lab.yaml"), &private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = case(
        "config the user cannot read",
        &["check", "-c", private.to_str().unwrap()],
        78,
        &["private.yaml: cannot read", "Permission denied"],
    );
    c.as_nobody = true;
    check_cases(&[c]);
}

/// A reader that goes away (`op25b check | head -1`) ends every printing subcommand
/// normally: exit 0, nothing on stderr (no panic, no backtrace).
#[test]
fn closed_stdout_is_a_normal_end() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    // A capture long enough that `classify` writes far past any pipe buffer.
    let pcap = tmp.path().join("many.pcap");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&pcap).unwrap());
        // pcap global header: magic, v2.4, zone 0, sigfigs 0, snaplen 65535, Ethernet.
        f.write_all(&[
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ])
        .unwrap();
        let frame = [0u8; 60];
        for _ in 0..20_000 {
            f.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0])
                .unwrap();
            f.write_all(&frame).unwrap();
        }
    }
    let pcap = pcap.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["check", "-c", "configs/lab.yaml"],
        &["classify", "-c", "configs/lab.yaml", "-p", pcap],
        &["export-nft", "-c", "configs/bench.yaml"],
        &["--help"],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_op25b"))
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end at once: every write the command makes gets EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "op25b {args:?} with a closed stdout: {} {err}",
            out.status
        );
    }
}

fn check_cases(cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let (code, _out, err) = op25b(&args, c.as_nobody);
        let lines: Vec<&str> = err.lines().collect();
        if code != c.code {
            failures.push(format!(
                "{}: exit {code}, expected {}: {err}",
                c.name, c.code
            ));
        }
        if lines.len() != 1 || !lines[0].starts_with("error: ") {
            failures.push(format!(
                "{}: expected one `error: ...` line, got {err:?}",
                c.name
            ));
        }
        if err.contains("panicked") {
            failures.push(format!("{}: PANIC: {err}", c.name));
        }
        for w in &c.wants {
            if !err.contains(w.as_str()) {
                failures.push(format!("{}: message lacks {w:?}: {err}", c.name));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `--set` on the subcommands that read the whole config: the override is in force.
#[test]
fn set_overrides_the_file() {
    let (code, out, err) = op25b(
        &[
            "check",
            "-c",
            "configs/lab.yaml",
            "--set",
            "interfaces.queues=2",
            "--set",
            "workers.cores=[0, 1]",
            "--set",
            "datapath.fast_path=off",
        ],
        false,
    );
    assert_eq!(code, 0, "{err}");
    for want in [
        "override: --set interfaces.queues=2",
        "override: --set workers.cores=[0, 1]",
        "2 queue(s)",
        "fast path: off",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let (code, out, err) = op25b(
        &[
            "systemd-deps",
            "-c",
            "configs/lab.yaml",
            "--set",
            "interfaces.subscriber=sub9",
        ],
        false,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("net-devices-sub9.device"), "{out}");
}
