//! Any datagram: the RADIUS accounting codec returns an error or a decoded request,
//! never panics; a decoded request's prefixes are normalised (no host bits), and
//! verifying and answering it never panic either.
#![no_main]
use libfuzzer_sys::fuzz_target;
use op25b::control::overlay::radius::{decode, header, response, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(h) = header(data) else { return };
    assert!(h.length >= 20 && h.length <= data.len());
    let _ = verify(data, &h, b"secret");
    let r = response(&h, b"secret");
    assert_eq!(r[1], h.id);
    if let Ok(a) = decode(data, &h) {
        assert!(a.status.is_some());
        for p in &a.prefixes {
            assert_eq!(p.trunc(), *p);
        }
    }
});
