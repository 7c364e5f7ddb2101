//! The naive baseline of `scripts/bench.sh`: the simplest AF_XDP forwarder one can write
//! with xsk-rs, and no policy. Two copy-mode sockets (IN and OUT, queue 0) share one
//! UMEM; every frame received on one is sent out of the other by passing its descriptor;
//! a completed transmission goes back to the fill ring of the socket that received it, so
//! each fill ring only ever holds its own half of the frames (and always has room). It sleeps in
//! `poll()` when idle (need_wakeup), like op25b. libxdp loads its default program on
//! each interface.
//!
//! op25b's own datapath does the same ring traffic plus parsing, classification,
//! counters and replies: the ratio between the two is op25b's overhead.
//!
//! ```sh
//! ip netns exec op25b-dut target/release/examples/naive_fwd d0 d1 --duration 30 --core 1
//! ```
//!
//! Prints one JSON line at the end: frames forwarded each way and the sockets' kernel
//! drop counters. Test kit only: not part of the appliance binary.

use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xsk_rs::config::{BindFlags, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

const RING: u32 = 4096;
const BURST: usize = 256;

struct Side {
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    forwarded: u64,
    /// Frames on this side's TX ring, not yet completed.
    in_flight: usize,
}

fn open(umem: &Umem, dev: &str) -> Side {
    let q = |n| QueueSize::new(n).unwrap();
    let cfg = SocketConfig::builder()
        .rx_queue_size(q(RING))
        .tx_queue_size(q(RING))
        .xdp_flags(XdpFlags::XDP_FLAGS_DRV_MODE)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_COPY)
        .build();
    let iface: Interface = dev.parse().expect("interface name");
    let mut tries = 0;
    loop {
        // SAFETY: the UMEM is shared by exactly these two sockets on two different
        // (netdev, queue) pairs; each gets its own fill and completion ring.
        match unsafe { Socket::new(cfg, umem, &iface, 0) } {
            Ok((tx, rx, Some((fq, cq)))) => {
                return Side {
                    tx,
                    rx,
                    fq,
                    cq,
                    forwarded: 0,
                    in_flight: 0,
                }
            }
            Ok(_) => panic!("{dev}: no fill/completion ring"),
            // The kernel frees a queue asynchronously after the last socket closes.
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("naive_fwd: {dev}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("naive_fwd: cannot open an AF_XDP socket on {dev}: {e}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: naive_fwd IN OUT [--duration SECS] [--core N]";
    let (a, b) = match (args.get(1), args.get(2)) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let mut duration = Duration::from_secs(3600);
    let mut core = None;
    let mut i = 3;
    while i < args.len() {
        match args[i].as_str() {
            "--duration" if i + 1 < args.len() => {
                duration = Duration::from_secs_f64(args[i + 1].parse().expect(usage));
                i += 2;
            }
            "--core" if i + 1 < args.len() => {
                core = Some(args[i + 1].parse::<usize>().expect(usage));
                i += 2;
            }
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        }
    }
    if let Some(c) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).expect("signal handler");
    }

    // Each side owns 2*RING frames, exactly what its fill ring holds.
    let frames = 4 * RING;
    let ucfg = UmemConfig::builder()
        .frame_size(2048.try_into().unwrap())
        .fill_queue_size(QueueSize::new(RING * 2).unwrap())
        .comp_queue_size(QueueSize::new(RING * 2).unwrap())
        .build()
        .unwrap();
    let (umem, mut free) = Umem::new(ucfg, NonZeroU32::new(frames).unwrap(), false).expect("UMEM");
    let mut sides = [open(&umem, &a), open(&umem, &b)];
    // Half the frames to each fill ring.
    for s in sides.iter_mut() {
        let start = free.len() - (2 * RING) as usize;
        // SAFETY: the descriptors are ours (never given to a ring) and from this UMEM.
        let done = unsafe { s.fq.produce(&free[start..]) };
        assert_eq!(done, (2 * RING) as usize, "fill ring takes its half");
        free.truncate(start);
    }
    eprintln!("naive_fwd: forwarding {a} <-> {b} (copy mode, need_wakeup, burst {BURST})");

    let mut descs = vec![FrameDesc::default(); BURST];
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < duration {
        let mut moved = 0;
        for from in 0..2 {
            let to = 1 - from;
            // `to` transmits only what `from` received: its completions go back to
            // `from`'s fill ring, which has room for every frame `from` owns.
            // SAFETY: the completion ring is this UMEM's; `descs` is only written.
            let done = unsafe { sides[to].cq.consume(&mut descs) };
            if done > 0 {
                sides[to].in_flight -= done;
                // SAFETY: completed descriptors are ours again, and from this UMEM.
                let put = unsafe { sides[from].fq.produce(&descs[..done]) };
                assert_eq!(put, done, "a fill ring holds all of its own frames");
            }
            // Received on `from`: straight onto `to`'s TX ring.
            let room = sides[to].tx.nb_free(BURST as u32) as usize;
            if room > 0 {
                // SAFETY: the RX ring is this UMEM's; `descs` is only written.
                let n = unsafe { sides[from].rx.consume(&mut descs[..room.min(BURST)]) };
                if n > 0 {
                    // SAFETY: received descriptors are ours until submitted; `room` says
                    // the TX ring takes all `n`.
                    let sent = unsafe { sides[to].tx.produce(&descs[..n]) };
                    assert_eq!(sent, n, "TX ring had room");
                    sides[to].in_flight += n;
                    sides[from].forwarded += n as u64;
                    moved += n;
                }
            }
            // Copy mode sends at most a budget per kick: kick while anything is queued.
            if sides[to].in_flight > 0 && sides[to].tx.needs_wakeup() {
                let _ = sides[to].tx.wakeup();
            }
            if sides[from].fq.needs_wakeup() {
                let s = &mut sides[from];
                let _ = s.fq.wakeup(s.rx.fd_mut(), 0);
            }
        }
        if moved == 0 && sides.iter().all(|s| s.in_flight == 0) {
            let mut fds = [
                libc::pollfd {
                    fd: sides[0].rx.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sides[1].rx.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
        }
    }
    let stats = |s: &Side| {
        s.rx.fd()
            .xdp_statistics()
            .map(|x| {
                serde_json::json!({
                    "rx_dropped": x.rx_dropped(),
                    "rx_ring_full": x.rx_ring_full(),
                    "fill_empty": x.rx_fill_ring_empty_descs(),
                })
            })
            .unwrap_or(serde_json::Value::Null)
    };
    println!(
        "{}",
        serde_json::json!({
            "seconds": t0.elapsed().as_secs_f64(),
            "forwarded": {a.as_str(): sides[0].forwarded, b.as_str(): sides[1].forwarded},
            "kernel_drops": {a.as_str(): stats(&sides[0]), b.as_str(): stats(&sides[1])},
        })
    );
}
