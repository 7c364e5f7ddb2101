//! Compiles op25b's XDP program (bpf/op25b_xdp.c) with clang into `$OUT_DIR/op25b_xdp.o`;
//! src/datapath/xdp.rs embeds the object with `include_bytes!` and loads it through libbpf,
//! so nothing ships beside the binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/op25b_xdp.c";
    println!("cargo:rerun-if-changed={src}");
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
