//! The XDP sink program (testkit/bpf/sink.c) judged against the userspace sink's tally
//! (`traffic::SinkTally::record`) on the same frames, run in the kernel with
//! BPF_PROG_RUN (no interface, no traffic). Root-only: `#[ignore]`d, so a plain
//! `cargo test` lists it as not run; `scripts/test.sh` runs it as root.

use op25b_testkit::traffic::{Expect, SinkTally, Tag, TAG_LEN};
use op25b_testkit::xdpsink::SinkProgram;

const XDP_DROP: u32 = 1;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn now_us() -> u32 {
    (op25b::datapath::clock::monotonic_us() & 0xff_ffff) as u32
}

fn tagged(len: usize, expect: Expect, stream: u8, seq: u32, sent_us: u32) -> Vec<u8> {
    let mut f = vec![0x42u8; len];
    let tag = Tag {
        expect,
        stream,
        seq,
        sent_us,
    };
    f[len - TAG_LEN..].copy_from_slice(&tag.encode());
    f
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
#[ignore = "needs root (loads an XDP program; scripts/test.sh runs it as root)"]
fn xdp_sink_counts_as_the_userspace_sink_does() {
    assert!(is_root(), "needs root (BPF)");
    let prog = SinkProgram::load().expect("load testkit/bpf/sink.c");
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let t = now_us();
    // The named cases: pass, block, reordered, foreign, broken checksum, shortest frame.
    frames.push(tagged(
        64,
        Expect::Pass,
        3,
        10,
        t.wrapping_sub(1000) & 0xff_ffff,
    ));
    frames.push(tagged(64, Expect::Block, 3, 11, t));
    frames.push(tagged(128, Expect::Pass, 3, 9, t)); // behind 11: out of order
    frames.push(tagged(64, Expect::Pass, 5, 0xff_fffe, t));
    frames.push(tagged(64, Expect::Pass, 5, 1, t)); // wrapped around: in order
    frames.push(vec![0u8; 60]); // no magic
    let mut bad = tagged(64, Expect::Pass, 1, 1, t);
    bad[63] ^= 1; // checksum broken
    frames.push(bad);
    frames.push(vec![0xb5; 14]); // an Ethernet header, magic but no valid tag
                                 // Then random frames: tags of random streams and nearby sequence numbers (so some
                                 // arrive out of order), some with a flipped bit.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let r = rng.next();
        let len = 14 + (r % 1500) as usize;
        let len = len.max(TAG_LEN + 14);
        let expect = if r >> 20 & 7 == 0 {
            Expect::Block
        } else {
            Expect::Pass
        };
        let mut f = tagged(
            len,
            expect,
            (r >> 24) as u8 & 3,
            (r >> 32) as u32 & 63,
            t.wrapping_sub((r >> 40) as u32 & 0xfff) & 0xff_ffff,
        );
        if r >> 60 == 0 {
            let i = (r >> 8) as usize % len;
            f[i] ^= 0x10;
        }
        frames.push(f);
    }
    let mut oracle = SinkTally::default();
    for f in &frames {
        assert_eq!(prog.test_run(f).expect("BPF_PROG_RUN"), XDP_DROP);
        oracle.record(f, op25b::datapath::clock::monotonic_us());
    }
    let s = prog.stats().expect("read the counters");
    assert_eq!(s.received, frames.len() as u64);
    assert_eq!(s.bytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(
        (s.foreign, s.passed, s.leaked, s.out_of_order),
        (
            oracle.foreign,
            oracle.passed,
            oracle.leaked,
            oracle.out_of_order
        ),
        "XDP sink (foreign, passed, leaked, out of order) vs the userspace tally"
    );
    assert!(s.leaked > 0 && s.out_of_order > 0 && s.foreign >= 3);
    let streams = prog.streams().expect("read the streams");
    for (sid, received, ooo) in streams {
        let o = &oracle.streams[sid as usize];
        assert_eq!(
            (received, ooo),
            (o.received, o.out_of_order),
            "stream {sid}"
        );
    }
    // Latency: the first frame was stamped 1000 us ago, the others up to 4 ms ago.
    let l = prog
        .latency()
        .expect("read the latency")
        .summary()
        .expect("samples");
    assert_eq!(l.samples, s.passed + s.leaked);
    let o = oracle.latency.summary().expect("samples");
    assert!(
        l.p50.abs_diff(o.p50) <= o.p50 / 50 + 50,
        "p50 {} vs the userspace sink's {}",
        l.p50,
        o.p50
    );
    assert!(s.max_delay_us >= 1000 && s.max_delay_us < 0x1000 + 1_000_000);
}
