//! Writes fuzz seed corpora: every golden fixture frame, the frames of the tcpdump
//! corpus, and the shipped configs.
//!
//! `cargo run --release --example fuzz_seeds -- fuzz/corpus [PCAP_DIR]` (PCAP_DIR: captures whose frames become seeds, e.g. tcpdump's test captures)

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("fuzz/corpus"));
    let frames_dirs = [out.join("classify"), out.join("reply"), out.join("notice")];
    for d in &frames_dirs {
        std::fs::create_dir_all(d)?;
    }
    std::fs::create_dir_all(out.join("config"))?;
    let mut seen = HashSet::new();
    let write = |seen: &mut HashSet<Vec<u8>>, frame: &[u8]| -> std::io::Result<()> {
        if frame.is_empty() || !seen.insert(frame.to_vec()) {
            return Ok(());
        }
        let name = format!("seed-{:06}", seen.len());
        for d in &frames_dirs {
            std::fs::write(d.join(&name), frame)?;
        }
        Ok(())
    };
    for fx in op25b_testkit::fixtures::all() {
        write(&mut seen, &fx.frame)?;
    }
    let fixtures = seen.len();
    if let Some(dir) = args.get(2) {
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            for frame in pcap_frames(&f).into_iter().take(20) {
                write(&mut seen, &frame)?;
            }
        }
    }
    for cfg in ["configs/lab.yaml", "configs/example.yaml"] {
        if let Ok(text) = std::fs::read(cfg) {
            let name = Path::new(cfg).file_name().unwrap();
            std::fs::write(out.join("config").join(name), text)?;
        }
    }
    println!(
        "fuzz seeds: {fixtures} fixtures, {} frames in total -> {}",
        seen.len(),
        out.display()
    );
    Ok(())
}

/// Frames of a classic pcap (the corpus is pcap); anything unreadable yields what it has.
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(f) = std::fs::File::open(path) else {
        return out;
    };
    let Ok(mut r) = pcap_file::pcap::PcapReader::new(f) else {
        return out;
    };
    while let Some(Ok(p)) = r.next_raw_packet() {
        out.push(p.data.into_owned());
    }
    out
}
