//! Compiles op25b's XDP program (bpf/op25b_xdp.c, with the kernel ABI of bpf/kernel_abi.h
//! that the test kit's programs share) with clang into `$OUT_DIR/op25b_xdp.o`;
//! src/datapath/xdp.rs embeds the object with `include_bytes!` and loads it through libbpf,
//! so nothing ships beside the binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    build_info();
    let src = "bpf/op25b_xdp.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=bpf/kernel_abi.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("op25b_xdp.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // -g: libbpf needs the BTF that describes the maps; -mcpu=v3: 32-bit jumps and ALU
    // (kernel >= 5.1).
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Wextra", "-Werror", "-c", src,
            "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {src} ({s})"),
        Err(e) => panic!(
            "cannot run {clang} to compile op25b's XDP program {src}: {e}; install clang \
             (`apt-get install clang`, or run scripts/setup.sh) or point CLANG at it"
        ),
    }
}

/// `OP25B_REVISION` (the git commit, `-dirty` with local changes; `unknown` outside a
/// git checkout) and `OP25B_RUSTC` (the compiler's version) for `--version` and
/// `op25b_build_info`. `OP25B_REVISION` in the environment wins (package builds from a
/// tarball).
fn build_info() {
    println!("cargo:rerun-if-env-changed=OP25B_REVISION");
    for f in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            let p = format!(".git/{r}");
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            // `git status` must not rewrite the index (which this script watches).
            .env("GIT_OPTIONAL_LOCKS", "0")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let rev = std::env::var("OP25B_REVISION").ok().or_else(|| {
        run("git", &["rev-parse", "--short=12", "HEAD"]).map(|r| {
            let dirty = run("git", &["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty {
                format!("{r}-dirty")
            } else {
                r
            }
        })
    });
    println!(
        "cargo:rustc-env=OP25B_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(&rustc, &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    // "rustc 1.88.0 (6b00bc388 2025-06-23)" -> "1.88.0"
    let short = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_string();
    println!("cargo:rustc-env=OP25B_RUSTC={short}");
}
