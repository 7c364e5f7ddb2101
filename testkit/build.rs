//! Compiles the benchmark's XDP programs (bpf/gen.c: the generator, bpf/sink.c: the
//! sink, both including bpf/tag.h and op25b's ../bpf/kernel_abi.h, the one copy of the
//! kernel ABI) with clang into `$OUT_DIR/{gen,sink}.o`; src/xdpgen.rs and src/xdpsink.rs
//! embed them with `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=bpf/tag.h");
    println!("cargo:rerun-if-changed=../bpf/kernel_abi.h");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    for name in ["gen", "sink"] {
        let src = format!("bpf/{name}.c");
        println!("cargo:rerun-if-changed={src}");
        let out = out_dir.join(format!("{name}.o"));
        let status = Command::new(&clang)
            .args([
                "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Wextra", "-Werror", "-I",
                "../bpf", "-c",
            ])
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed to compile {src} ({s})"),
            Err(e) => panic!(
                "cannot run {clang} to compile the benchmark's XDP program {src}: {e}; install \
                 clang (`apt-get install clang`, or run scripts/setup.sh) or point CLANG at it"
            ),
        }
    }
}
