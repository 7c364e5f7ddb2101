//! Any text as a YAML config: load_str must return Ok or a typed error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = op25b::config::load_str(std::path::Path::new("/nonexistent/fuzz.yaml"), text);
    }
});
