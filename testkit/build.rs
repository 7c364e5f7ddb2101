//! Compiles the benchmark generator's XDP program (bpf/gen.c) with clang into
//! `$OUT_DIR/gen.o`; src/xdpgen.rs embeds it with `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/gen.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("gen.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
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
            "cannot run {clang} to compile the generator's XDP program {src}: {e}; install \
             clang (`apt-get install clang`, or run scripts/setup.sh) or point CLANG at it"
        ),
    }
}
