//! The systemd protocol over a NOTIFY_SOCKET of the test's own, with real worker loops
//! over in-memory rings (`MemIo`): READY=1 only once every worker goes round its loop,
//! WATCHDOG=1 while they all do, no pings while one is wedged (blocked in its wait, as
//! in a stuck poll()), and pings again once it recovers. The same supervisor runs in
//! `op25b run`; tests/e2e_lab.rs checks the messages of the real binary in the lab.

use crossbeam_utils::CachePadded;
use op25b::clock::beat_ms as beat_clock;
use op25b::control::daemon::systemd::{Health, Notifier, Supervisor};
use op25b::datapath::counters::WorkerCounters;
use op25b::datapath::io::MemIo;
use op25b::datapath::worker::{Worker, WorkerConfig};
use op25b::datapath::PolicyCell;
use op25b_testkit::fixtures;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Running {
    counters: Arc<CachePadded<WorkerCounters>>,
    stop: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn spawn_worker(start_hung: bool) -> Running {
    let hang = Arc::new(AtomicBool::new(start_hung));
    let mut io = MemIo::new(256, 2048, 64);
    io.hang_in_wait(hang.clone());
    let counters = Arc::new(CachePadded::new(WorkerCounters::new()));
    let cfg = WorkerConfig {
        burst: 16,
        fill_target: 32,
        overload_fill: None,
        busy_poll: false,
        reply_rate: 100,
        reply_burst: 10,
        cookie_key: op25b::classify::notice::CookieKey([1, 2]),
    };
    let policy = Arc::new(PolicyCell::new(Arc::new(fixtures::policy())));
    let mut w = Worker::new(io, cfg, policy, counters.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || w.run(&s));
    Running {
        counters,
        stop,
        hang,
        thread: Some(thread),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.hang.store(false, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every datagram that arrived so far.
fn drain(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// Runs the supervisor's tick every 20 ms for `d`; returns the messages and the last
/// health.
fn supervise(
    sup: &mut Supervisor,
    workers: &[&Running],
    sock: &UnixDatagram,
    d: Duration,
) -> (Vec<String>, Health) {
    let end = Instant::now() + d;
    let mut health = Health::Starting;
    while Instant::now() < end {
        let beats: Vec<u64> = workers.iter().map(|w| w.counters.heartbeat_ms()).collect();
        health = sup.tick(&beats, beat_clock(), || "test status".into());
        std::thread::sleep(Duration::from_millis(20));
    }
    (drain(sock), health)
}

#[test]
fn watchdog_pings_only_while_every_worker_makes_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    // WatchdogSec=1s: pings every 500 ms, a worker is stalled after 1 s without a beat.
    let watchdog = Some(Duration::from_secs(1));
    let mut sup = Supervisor::new(Notifier::to(&path).unwrap(), watchdog, 2);
    assert_eq!(sup.stall_ms(), 1000);

    // One worker runs, the other is wedged from its first wait on: not ready, no pings.
    let a = spawn_worker(false);
    let b = spawn_worker(true);
    let (msgs, _) = supervise(&mut sup, &[&a, &b], &sock, Duration::from_millis(400));
    // b went round once (its first beat) before it hung: ready may have been sent, but
    // within the stall limit b counts as fresh; what matters is what follows.
    let (later, health) = supervise(&mut sup, &[&a, &b], &sock, Duration::from_millis(2500));
    let all: Vec<String> = msgs.iter().chain(&later).cloned().collect();
    assert!(
        matches!(&health, Health::Stalled(l) if l.iter().any(|&(i, _)| i == 1)),
        "worker 1 is wedged: {health:?}"
    );
    // After the stall limit, no more pings: count pings in the last 1.4 s of `later`.
    let pings_before = sup.pings();
    let (tail, _) = supervise(&mut sup, &[&a, &b], &sock, Duration::from_millis(1500));
    assert_eq!(
        sup.pings(),
        pings_before,
        "no WATCHDOG=1 while a worker is stalled: {tail:?}"
    );
    assert!(
        !tail.iter().any(|m| m.contains("WATCHDOG=1")),
        "no WATCHDOG=1 while a worker is stalled: {tail:?}"
    );
    assert!(
        all.iter().any(|m| m.starts_with("STATUS=worker 1 stalled")),
        "the stall is reported in STATUS=: {all:?}"
    );

    // It recovers: pings resume.
    b.hang.store(false, Ordering::SeqCst);
    let (msgs, health) = supervise(&mut sup, &[&a, &b], &sock, Duration::from_millis(1500));
    assert_eq!(health, Health::Running);
    let pings = msgs.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 2, "pings resume after recovery: {msgs:?}");
}

#[test]
fn ready_waits_for_every_worker_then_pings_follow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut sup = Supervisor::new(
        Notifier::to(&path).unwrap(),
        Some(Duration::from_millis(400)),
        2,
    );
    let a = spawn_worker(false);
    // The second worker has not started its loop: no READY=1, no WATCHDOG=1.
    let never = Running {
        counters: Arc::new(CachePadded::new(WorkerCounters::new())),
        stop: Arc::new(AtomicBool::new(false)),
        hang: Arc::new(AtomicBool::new(false)),
        thread: None,
    };
    let (msgs, health) = supervise(&mut sup, &[&a, &never], &sock, Duration::from_millis(600));
    assert_eq!(health, Health::Starting);
    assert!(
        msgs.is_empty(),
        "nothing before every worker runs: {msgs:?}"
    );
    assert!(!sup.ready());

    let b = spawn_worker(false);
    let (msgs, health) = supervise(&mut sup, &[&a, &b], &sock, Duration::from_millis(900));
    assert_eq!(health, Health::Running);
    assert!(sup.ready());
    assert_eq!(
        msgs.first().map(String::as_str),
        Some("READY=1\nSTATUS=test status"),
        "{msgs:?}"
    );
    assert_eq!(
        msgs.iter().filter(|m| m.starts_with("READY=1")).count(),
        1,
        "READY=1 once: {msgs:?}"
    );
    // Ping period 200 ms over 900 ms: about 4 pings.
    let pings = msgs.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!((3..=6).contains(&pings), "{pings} pings: {msgs:?}");

    // A reload: one last ping, the watchdog timeout raised while the control thread
    // is busy with it, then put back; READY=1 after.
    let beats: Vec<u64> = [&a, &b].iter().map(|w| w.counters.heartbeat_ms()).collect();
    let _ = drain(&sock);
    sup.reloading(&beats, beat_clock());
    sup.reloaded("reloaded");
    sup.stopping();
    let msgs = drain(&sock);
    assert_eq!(
        msgs,
        [
            "RELOADING=1\nSTATUS=reloading",
            "WATCHDOG=1",
            "WATCHDOG_USEC=120000000",
            "WATCHDOG_USEC=400000",
            "READY=1\nSTATUS=reloaded",
            "STOPPING=1\nSTATUS=stopping"
        ]
    );
}

#[test]
fn without_notify_socket_nothing_is_sent_and_abstract_names_work() {
    let n = Notifier::disabled();
    assert!(!n.enabled());
    assert!(n.send("READY=1").is_ok());
    // An abstract-namespace socket (`@name`), as systemd may hand out.
    let name = format!("op25b-test-{}", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = Notifier::to(std::path::Path::new(&format!("@{name}"))).unwrap();
    n.send("READY=1").unwrap();
    let mut buf = [0u8; 64];
    let len = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"READY=1");
}
