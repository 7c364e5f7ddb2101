//! The real worker loop over in-memory rings (`MemIo`): every golden fixture crosses it
//! with the verdict the table expects, replies are rate-limited, and frame conservation
//! holds through reject bursts, full TX rings and a stalled peer.

use crossbeam_utils::CachePadded;
use op25b::classify::notice::{self, CookieKey, NoticeStep};
use op25b::classify::reply;
use op25b::datapath::counters::{Counter, WorkerCounters};
use op25b::datapath::io::MemIo;
use op25b::datapath::io::Side;
use op25b::datapath::worker::{Worker, WorkerConfig};
use op25b::datapath::PolicyCell;
use op25b::policy::{Action, Direction, ReplyKind, Verdict};
use op25b_testkit::fixtures;
use proptest::prelude::*;
use std::sync::Arc;

const RING: usize = 64;
const KEY: CookieKey = CookieKey([1, 2]);

/// A worker over `io` with bursts of 16, on the fixture policy.
fn worker_on(
    io: MemIo,
    fill_target: usize,
    overload_fill: Option<usize>,
    rate: u32,
    burst: u32,
) -> Worker<MemIo> {
    let cfg = WorkerConfig {
        burst: 16,
        fill_target,
        overload_fill,
        busy_poll: false,
        reply_rate: rate,
        reply_burst: burst,
        cookie_key: KEY,
    };
    let policy = Arc::new(PolicyCell::new(Arc::new(fixtures::policy())));
    Worker::new(
        io,
        cfg,
        policy,
        Arc::new(CachePadded::new(WorkerCounters::new())),
    )
}

fn worker(frames: usize, rate: u32, burst: u32) -> Worker<MemIo> {
    worker_on(MemIo::new(frames, 2048, RING), 32, None, rate, burst)
}

fn side_of(d: Direction) -> Side {
    match d {
        Direction::Outbound => Side::Subscriber,
        Direction::Inbound => Side::Upstream,
    }
}

/// The worker's census must agree with where MemIo actually holds the descriptors.
fn check_conservation(w: &Worker<MemIo>) {
    let c = w.census();
    assert!(c.conserved(), "census does not add up: {c:?}");
    for side in Side::BOTH {
        let (fill, rx, tx, comp) = w.io().ring_levels(side);
        assert_eq!(c.fill[side.index()], (fill + rx) as u64, "{side:?} fill+rx");
        assert_eq!(
            c.tx[side.index()],
            (tx + comp) as u64,
            "{side:?} tx+completion"
        );
    }
    assert_eq!(c.total, w.io().frame_count() as u64);
}

fn settle(w: &mut Worker<MemIo>) {
    for _ in 0..8 {
        w.poll_once();
        check_conservation(w);
    }
}

#[test]
fn every_fixture_crosses_the_worker_as_the_table_says() {
    let mut w = worker(256, 1_000_000, 1_000_000);
    for fx in fixtures::all() {
        let side = side_of(fx.direction);
        assert!(
            w.io_mut().inject(side, &fx.frame),
            "{}: no fill descriptor",
            fx.description
        );
        settle(&mut w);
        let forwarded = w.io_mut().wire(side.other(), usize::MAX);
        let answered = w.io_mut().wire(side, usize::MAX);
        match fx.expected {
            Verdict::Forward(_) => {
                assert_eq!(
                    forwarded,
                    vec![fx.frame.clone()],
                    "{}: not forwarded unchanged",
                    fx.description
                );
                assert!(answered.is_empty(), "{}", fx.description);
            }
            Verdict::Drop(_) => {
                assert!(
                    forwarded.is_empty() && answered.is_empty(),
                    "{}: dropped frame left",
                    fx.description
                );
            }
            Verdict::Reject(_, kind) => {
                assert!(
                    forwarded.is_empty(),
                    "{}: rejected frame forwarded",
                    fx.description
                );
                let mut buf = [0u8; reply::MAX_REPLY_LEN];
                let n = if kind == ReplyKind::SmtpNotice {
                    // The notice's answer: a SYN-ACK to a SYN; a RST to anything else
                    // (a fixture's ACK carries no valid cookie).
                    let info = op25b::classify::parse(&fx.frame);
                    match notice::step(&fx.frame, &info, KEY, w.clock_secs()) {
                        s @ NoticeStep::SynAck { .. } => {
                            notice::build(&fx.frame, &info, s, b"", &mut buf).unwrap()
                        }
                        NoticeStep::Refuse => {
                            reply::build_reply(&fx.frame, ReplyKind::TcpReset, &mut buf).unwrap()
                        }
                        s => panic!("{}: unexpected notice step {s:?}", fx.description),
                    }
                } else {
                    reply::build_reply(&fx.frame, kind, &mut buf).unwrap()
                };
                assert_eq!(
                    answered,
                    vec![buf[..n].to_vec()],
                    "{}: wrong reply",
                    fx.description
                );
            }
        }
        settle(&mut w);
    }
    let s = w.counters().snapshot();
    assert!(s.verdicts_account_for_rx());
    let n = fixtures::all().len() as u64;
    assert_eq!(s.rx_frames[0] + s.rx_frames[1], n);
    let rejects = fixtures::all()
        .iter()
        .filter(|f| matches!(f.expected, Verdict::Reject(..)))
        .count() as u64;
    assert_eq!(s.get(Counter::RepliesSent), rejects);
    assert_eq!(
        s.action_total(Side::Subscriber, Action::Reject)
            + s.action_total(Side::Upstream, Action::Reject),
        rejects
    );
}

fn blocked_syn() -> Vec<u8> {
    use fixtures::addr::*;
    let ip = fixtures::tcp4(DYNAMIC4, EXTERNAL4, 40000, 25, fixtures::Tcp::Syn, &[]);
    fixtures::wrap(fixtures::Encap::Plain, &ip, false, true)
}

fn passing(i: u16) -> Vec<u8> {
    use fixtures::addr::*;
    let ip = fixtures::tcp4(
        DYNAMIC4,
        EXTERNAL4,
        40000 + i,
        587,
        fixtures::Tcp::Data(1),
        &[7; 100],
    );
    fixtures::wrap(fixtures::Encap::Plain, &ip, false, true)
}

#[test]
fn replies_stay_within_the_bucket() {
    // Rate 0/s: only the bucket depth is ever answered.
    let mut w = worker(256, 0, 5);
    let syn = blocked_syn();
    let mut sent = 0;
    for _ in 0..10 {
        for _ in 0..10 {
            assert!(w.io_mut().inject(Side::Subscriber, &syn));
            sent += 1;
        }
        settle(&mut w);
        w.io_mut().wire(Side::Subscriber, usize::MAX);
    }
    let s = w.counters().snapshot();
    assert_eq!(s.get(Counter::RepliesSent), 5);
    assert_eq!(s.get(Counter::RepliesRateLimited), sent - 5);
    assert_eq!(s.action_total(Side::Subscriber, Action::Reject), sent);
    assert_eq!(s.tx_frames[Side::Subscriber.index()], 5);
    assert_eq!(s.tx_frames[Side::Upstream.index()], 0);
    settle(&mut w);
}

#[test]
fn full_tx_ring_and_stalled_peer_lose_count_not_frames() {
    let mut w = worker(256, 1_000_000, 1_000_000);
    w.io_mut().set_stalled(Side::Upstream, true);
    let mut accepted = 0u64;
    for round in 0..20u16 {
        for i in 0..16 {
            if w.io_mut()
                .inject(Side::Subscriber, &passing(round * 16 + i))
            {
                accepted += 1;
            }
        }
        settle(&mut w);
    }
    let s = w.counters().snapshot();
    // The upstream TX ring (64) filled up; the rest was recycled and counted.
    assert_eq!(s.tx_frames[Side::Upstream.index()], RING as u64);
    assert_eq!(s.get(Counter::TxRingFull), accepted - RING as u64);
    assert_eq!(s.rx_frames[Side::Subscriber.index()], accepted);
    // The peer comes back: the ring drains, completions return, forwarding resumes.
    w.io_mut().set_stalled(Side::Upstream, false);
    assert_eq!(w.io_mut().wire(Side::Upstream, usize::MAX).len(), RING);
    settle(&mut w);
    assert!(w.io_mut().inject(Side::Subscriber, &passing(999)));
    settle(&mut w);
    assert_eq!(
        w.io_mut().wire(Side::Upstream, usize::MAX),
        vec![passing(999)]
    );
    settle(&mut w);
    assert_eq!(w.census().tx, [0, 0]);
}

#[derive(Clone, Debug)]
enum Op {
    Inject {
        side: bool,
        frame: usize,
        count: usize,
    },
    Wire {
        side: bool,
        max: usize,
    },
    Stall {
        side: bool,
        on: bool,
    },
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 0..1000usize, 1..80usize).prop_map(|(side, frame, count)| Op::Inject {
            side,
            frame,
            count
        }),
        (any::<bool>(), 0..100usize).prop_map(|(side, max)| Op::Wire { side, max }),
        (any::<bool>(), any::<bool>()).prop_map(|(side, on)| Op::Stall { side, on }),
        Just(Op::Poll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random traffic (all fixtures, both sides, reject bursts), random wire draining,
    /// stalls and a small frame pool: the census is exact after every iteration and every
    /// received frame has exactly one verdict.
    #[test]
    fn frames_are_conserved(ops in prop::collection::vec(op(), 1..120), pool in 70usize..300, bucket in 0u32..50) {
        let table = fixtures::all();
        let mut w = worker(pool, 1000, bucket);
        let mut accepted = [0u64; 2];
        for op in ops {
            match op {
                Op::Inject { side, frame, count } => {
                    let side = if side { Side::Upstream } else { Side::Subscriber };
                    let f = &table[frame % table.len()].frame;
                    for _ in 0..count {
                        if w.io_mut().inject(side, f) {
                            accepted[side.index()] += 1;
                        }
                    }
                }
                Op::Wire { side, max } => {
                    let side = if side { Side::Upstream } else { Side::Subscriber };
                    w.io_mut().wire(side, max);
                }
                Op::Stall { side, on } => {
                    let side = if side { Side::Upstream } else { Side::Subscriber };
                    w.io_mut().set_stalled(side, on);
                }
                Op::Poll => {}
            }
            w.poll_once();
            check_conservation(&w);
        }
        for side in Side::BOTH {
            w.io_mut().set_stalled(side, false);
        }
        for _ in 0..50 {
            w.poll_once();
            for side in Side::BOTH {
                w.io_mut().wire(side, usize::MAX);
            }
        }
        check_conservation(&w);
        let s = w.counters().snapshot();
        prop_assert!(s.verdicts_account_for_rx());
        prop_assert_eq!(s.rx_frames, accepted);
        // Everything settled: nothing left in TX, fill rings back at target.
        prop_assert_eq!(w.census().tx, [0, 0]);
    }
}

/// The abuse-desk list: three sources blocked at different rates (and one exempt
/// source) cross the real worker loop; the published top list has them in order with
/// exact counts, their class, distinct destinations and a destination sample.
#[test]
fn top_list_orders_sources_by_blocked_attempts() {
    use fixtures::addr::*;
    use std::net::{IpAddr, Ipv4Addr};
    let mut w = worker(256, 1_000_000, 1_000_000);
    let dynamic_b = [198, 51, 100, 11];
    let plan: [([u8; 4], usize); 4] = [
        (dynamic_b, 30),  // middle
        (DYNAMIC4, 50),   // most
        (QUARANTINE4, 7), // fewest (class quarantine, action drop)
        (STATIC4, 40),    // exempt: never blocked, never listed
    ];
    let longest = plan.iter().map(|p| p.1).max().unwrap();
    for round in 0..longest {
        for (src, n) in plan {
            if round < n {
                let dst = [203, 0, 113, 80 + (round % 3) as u8];
                let ip =
                    fixtures::tcp4(src, dst, 40000 + round as u16, 25, fixtures::Tcp::Syn, &[]);
                let f = fixtures::wrap(fixtures::Encap::Plain, &ip, false, true);
                assert!(w.io_mut().inject(Side::Subscriber, &f));
            }
        }
        settle(&mut w);
        w.io_mut().discard(Side::Upstream, usize::MAX);
        w.io_mut().discard(Side::Subscriber, usize::MAX);
    }
    w.publish_top();
    let lists = [w.counters().top.lock().unwrap().clone()];
    let names: Vec<String> = fixtures::policy()
        .classes()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    // The worker's cell gave the fixture policy's classes the slots 0.. in id order.
    let top = op25b::topk::merge(
        lists.iter().map(Vec::as_slice),
        |slot| names.get(slot).cloned(),
        0,
        10,
    );
    let got: Vec<(IpAddr, u64, Option<&str>)> = top
        .iter()
        .map(|o| (o.src, o.attempts, o.class.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (IpAddr::V4(Ipv4Addr::from(DYNAMIC4)), 50, Some("dynamic")),
            (IpAddr::V4(Ipv4Addr::from(dynamic_b)), 30, Some("dynamic")),
            (
                IpAddr::V4(Ipv4Addr::from(QUARANTINE4)),
                7,
                Some("quarantine")
            ),
        ]
    );
    for o in &top {
        assert_eq!(o.error, 0, "exact below capacity: {o:?}");
        assert!((2..=4).contains(&o.distinct_destinations), "{o:?}");
        assert!(matches!(o.dst_sample, IpAddr::V4(a) if a.octets()[..3] == [203, 0, 113]));
    }
}

/// A TCP segment from the notice pool's host to the external MTA's port 25.
fn notice_seg(seq: u32, ack: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    use etherparse::PacketBuilder;
    use fixtures::addr::*;
    let b = PacketBuilder::ethernet2(fixtures::SUB_MAC, fixtures::UP_MAC)
        .ipv4(NOTICE4, EXTERNAL4, 64)
        .tcp(40100, 25, seq, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(ack) } else { b };
    let b = if flags.contains('F') { b.fin() } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let b = if flags.contains('P') { b.psh() } else { b };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// (seq, ack, flags, payload) of the one TCP segment the worker sent back.
fn tcp_of(frames: &[Vec<u8>]) -> (u32, u32, u8, Vec<u8>) {
    assert_eq!(frames.len(), 1, "expected one reply, got {}", frames.len());
    let p = etherparse::SlicedPacket::from_ethernet(&frames[0]).unwrap();
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    let flags = u8::from(t.fin())
        | u8::from(t.syn()) << 1
        | u8::from(t.rst()) << 2
        | u8::from(t.psh()) << 3
        | u8::from(t.ack()) << 4;
    (
        t.sequence_number(),
        t.acknowledgment_number(),
        flags,
        t.payload().to_vec(),
    )
}

/// The whole stateless notice through the real worker loop: SYN -> cookie SYN-ACK; the
/// ACK of that cookie -> the 554 greeting with FIN; data before the greeting, a wrong
/// cookie and the client's late ACK -> RST; a RST -> nothing. Counted per stage.
#[test]
fn smtp_notice_handshake_greeting_and_refusals() {
    let mut w = worker(256, 1_000_000, 1_000_000);
    let exchange = |w: &mut Worker<MemIo>, frame: Vec<u8>| {
        assert!(w.io_mut().inject(Side::Subscriber, &frame));
        settle(w);
        assert!(
            w.io_mut().wire(Side::Upstream, usize::MAX).is_empty(),
            "forwarded"
        );
        w.io_mut().wire(Side::Subscriber, usize::MAX)
    };
    let (cookie, ack, flags, _) = tcp_of(&exchange(&mut w, notice_seg(1000, 0, "S", b"")));
    assert_eq!((ack, flags), (1001, 0x12), "SYN-ACK acks the SYN");
    // The handshake's ACK: the greeting, from cookie+1, with PSH|ACK|FIN.
    let (seq, ack, flags, text) = tcp_of(&exchange(
        &mut w,
        notice_seg(1001, cookie.wrapping_add(1), "A", b""),
    ));
    assert_eq!((seq, ack, flags), (cookie.wrapping_add(1), 1001, 0x19));
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with("554-5.7.1 Port 25 to other networks is blocked"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n") && text.lines().last().unwrap().starts_with("554 5.7.1 "),
        "{text}"
    );
    // Data with a valid cookie (sent before reading the greeting): RST.
    let (_, _, flags, _) = tcp_of(&exchange(
        &mut w,
        notice_seg(1001, cookie.wrapping_add(1), "AP", b"EHLO x\r\n"),
    ));
    assert_eq!(flags & 0x04, 0x04, "data gets a RST");
    // A wrong cookie: RST.
    let (_, _, flags, _) = tcp_of(&exchange(
        &mut w,
        notice_seg(1001, cookie.wrapping_add(2), "A", b""),
    ));
    assert_eq!(flags & 0x04, 0x04, "a bad cookie gets a RST");
    // The client's ACK of our FIN (late ACK) and its FIN: RST.
    let late = cookie.wrapping_add(1 + text.len() as u32 + 1);
    let (_, _, flags, _) = tcp_of(&exchange(&mut w, notice_seg(1001, late, "AF", b"")));
    assert_eq!(flags & 0x04, 0x04, "FIN gets a RST");
    // A RST from the client: no answer.
    assert!(exchange(&mut w, notice_seg(1001, 0, "R", b"")).is_empty());
    let s = w.counters().snapshot();
    assert_eq!(s.get(Counter::NoticeSynAcks), 1);
    assert_eq!(s.get(Counter::NoticeGreetings), 1);
    assert_eq!(s.get(Counter::NoticeRefused), 3);
    assert_eq!(s.get(Counter::RepliesSent), 5);
}

/// A SYN flood on a notice class: replies stay within the bucket (a SYN-ACK only while
/// two tokens are left, so its greeting is paid for; then one RST; then silence), and
/// the worker keeps no per-connection state (frames conserved, nothing else held).
#[test]
fn smtp_notice_syn_flood_stays_within_the_budget() {
    let mut w = worker(256, 0, 5);
    let mut sent = 0u64;
    for round in 0..20u32 {
        for i in 0..10u32 {
            let f = notice_seg(round * 1000 + i, 0, "S", b"");
            assert!(w.io_mut().inject(Side::Subscriber, &f));
            sent += 1;
        }
        settle(&mut w);
        w.io_mut().wire(Side::Subscriber, usize::MAX);
    }
    let s = w.counters().snapshot();
    // Depth 5: SYN-ACKs at 5, 4, 3, 2 tokens; at 1 token a RST; then nothing.
    assert_eq!(s.get(Counter::NoticeSynAcks), 4);
    assert_eq!(s.get(Counter::NoticeRefused), 1);
    assert_eq!(s.get(Counter::RepliesSent), 5);
    assert_eq!(s.get(Counter::RepliesRateLimited), sent - 5);
    settle(&mut w);
    check_conservation(&w);
}

/// A worker for the overload-guard tests: fill ring 512 deep, 64 under the guard (or no
/// guard), bursts of 16.
fn guarded_worker(overload_fill: Option<usize>) -> Worker<MemIo> {
    worker_on(MemIo::new(2048, 2048, 1024), 512, overload_fill, 1000, 100)
}

/// One simulated millisecond: `offered` frames arrive on the subscriber side, the worker
/// runs one iteration (16 frames at most), the upstream wire takes what it sent, and the
/// worker's overload guard ticks at `now`. Returns the frames the "kernel" accepted.
fn guard_step(w: &mut Worker<MemIo>, offered: u16, now: std::time::Instant) -> u64 {
    let mut accepted = 0;
    for i in 0..offered {
        accepted += u64::from(w.io_mut().inject(Side::Subscriber, &passing(i)));
    }
    w.poll_once();
    w.io_mut().discard(Side::Upstream, usize::MAX);
    w.guard_tick(now);
    check_conservation(w);
    accepted
}

/// Sustained overload (3x what the worker takes per iteration): the fill ring runs dry
/// and the whole ring stands in the RX ring; at the end of a `GUARD_WINDOW` with that
/// backlog and fill-empty drops the guard engages and holds the receive
/// backlog to the shallow depth. Once the load falls below capacity the backlog drains,
/// and after `GUARD_CALM_WINDOWS` windows in a row with less than a burst waiting on
/// average the full depth comes back; nothing offered below capacity is lost.
#[test]
fn overload_guard_bounds_the_backlog_under_sustained_overload_and_lets_go() {
    use op25b::datapath::worker::{GUARD_CALM_WINDOWS, GUARD_HOLD, GUARD_WINDOW};
    use std::time::Duration;
    let mut w = guarded_worker(Some(64));
    let t0 = std::time::Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    assert_eq!(w.fill_target(Side::Subscriber), 512);
    let mut t = 0;
    // Overload until the guard engages (well within a second of simulated time).
    while !w.guard_engaged(Side::Subscriber) {
        t += 1;
        assert!(t < 1000, "the guard did not engage under 3x overload");
        guard_step(&mut w, 48, ms(t));
    }
    assert!(
        t >= GUARD_WINDOW.as_millis() as u64,
        "engaged after {t} ms, before a whole window"
    );
    assert!(w.io().rx_dropped(Side::Subscriber) > 0);
    assert_eq!(w.fill_target(Side::Subscriber), 64);
    assert!(!w.guard_engaged(Side::Upstream), "the idle side stays deep");
    assert_eq!(w.fill_target(Side::Upstream), 512);
    // Still overloaded: the backlog that stood when it engaged drains, and from then on
    // the frames the kernel holds for receive (fill + RX) never exceed the shallow depth.
    for _ in 0..100 {
        t += 1;
        guard_step(&mut w, 48, ms(t));
    }
    for _ in 0..500 {
        t += 1;
        guard_step(&mut w, 48, ms(t));
        let (fill, rx, _, _) = w.io().ring_levels(Side::Subscriber);
        assert!(fill + rx <= 64, "receive backlog {fill}+{rx} above 64");
        assert!(w.guard_engaged(Side::Subscriber));
    }
    // A lull of 150 ms (at most two calm windows) inside the overload: the guard holds.
    for step in 0..400 {
        t += 1;
        guard_step(&mut w, if step < 150 { 8 } else { 48 }, ms(t));
        assert!(
            w.guard_engaged(Side::Subscriber),
            "let go in a lull, at {t} ms"
        );
    }
    let s = w.counters().snapshot();
    assert_eq!(s.get(Counter::OverloadGuardEngaged), 1);
    assert!(s.guard[Side::Subscriber.index()]);
    // Below capacity (8 frames a millisecond, the worker takes 16): nothing is lost, and
    // the guard lets go after the calm windows, without waiting for GUARD_HOLD.
    let dropped = w.io().rx_dropped(Side::Subscriber);
    let mut accepted = 0;
    let mut offered = 0;
    let calm_from = t;
    while w.guard_engaged(Side::Subscriber) {
        t += 1;
        assert!(
            t - calm_from <= u64::from(GUARD_CALM_WINDOWS + 1) * GUARD_WINDOW.as_millis() as u64,
            "the guard did not let go after the calm windows below capacity"
        );
        accepted += guard_step(&mut w, 8, ms(t));
        offered += 8;
    }
    assert!(t - calm_from >= u64::from(GUARD_CALM_WINDOWS - 1) * GUARD_WINDOW.as_millis() as u64);
    assert!(t - calm_from < GUARD_HOLD.as_millis() as u64);
    assert_eq!(accepted, offered, "frames lost below capacity");
    assert_eq!(w.io().rx_dropped(Side::Subscriber), dropped);
    assert_eq!(w.fill_target(Side::Subscriber), 512);
    guard_step(&mut w, 0, ms(t + 1));
    let (fill, rx, _, _) = w.io().ring_levels(Side::Subscriber);
    assert_eq!(fill + rx, 512, "the full depth is back");
    assert!(!w.counters().snapshot().guard[Side::Subscriber.index()]);
}

/// After an overload, load the worker keeps up with, and a stall now and then: more
/// than the guard's shallow ring holds, well within the deep one. The shallow ring's
/// drops must not keep the guard engaged (they would, judged on drops alone: one every
/// 100-200 ms, under `GUARD_HOLD`): it lets go after the calm windows, and from then on
/// the deep ring absorbs every stall and nothing more is lost. Two cases: 12 frames a
/// millisecond (the worker takes 16) with 150 at once every 200 ms and a shallow depth
/// of 64, where the backlog drains fast; and 14 a millisecond with 200 at once every
/// 150 ms and a shallow depth of 128, where the backlog drains for 56 ms of every 150
/// (about 21 frames waiting on average: more than a receive burst, under half the
/// shallow depth).
#[test]
fn overload_guard_lets_go_when_the_worker_keeps_up_despite_stalls() {
    use op25b::datapath::worker::{GUARD_CALM_WINDOWS, GUARD_WINDOW};
    use std::time::Duration;
    for (shallow, rate, stall, every) in [(64, 12u16, 150u16, 200u64), (128, 14, 200, 150)] {
        let case = format!("{rate} a ms, {stall} every {every} ms, shallow {shallow}");
        let mut w = guarded_worker(Some(shallow));
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut t = 0;
        while !w.guard_engaged(Side::Subscriber) {
            t += 1;
            assert!(t < 1000, "the guard did not engage under 3x overload");
            guard_step(&mut w, 48, ms(t));
        }
        let calm_from = t;
        let mut released_at = None;
        let mut lost_after_release = 0;
        for step in 0..3000u64 {
            t += 1;
            let offered = if step % every == every / 2 {
                stall
            } else {
                rate
            };
            let accepted = guard_step(&mut w, offered, ms(t));
            if released_at.is_some() {
                lost_after_release += u64::from(offered) - accepted;
            }
            if released_at.is_none() && !w.guard_engaged(Side::Subscriber) {
                released_at = Some(t);
            }
            if let Some(at) = released_at {
                assert!(
                    !w.guard_engaged(Side::Subscriber),
                    "{case}: engaged again at {t} ms (let go at {at} ms)"
                );
            }
        }
        let at = released_at
            .unwrap_or_else(|| panic!("{case}: the guard stayed engaged while the worker kept up"));
        assert!(
            at - calm_from <= u64::from(GUARD_CALM_WINDOWS + 1) * GUARD_WINDOW.as_millis() as u64,
            "{case}: let go {} ms after the overload ended",
            at - calm_from
        );
        assert_eq!(
            lost_after_release, 0,
            "{case}: stalls lost frames with the guard off"
        );
        assert_eq!(w.fill_target(Side::Subscriber), 512);
        assert_eq!(
            w.counters().snapshot().get(Counter::OverloadGuardEngaged),
            1,
            "{case}"
        );
    }
}

/// Stalls below capacity. One the deep fill ring absorbs, followed by load near
/// capacity (15 a millisecond, the worker takes 16): the backlog stands above half the
/// ring for a whole window, but nothing is dropped. One that overflows the ring (drops
/// while the worker does not run), followed by a quarter of the capacity: the drops stop
/// as soon as the worker runs and the backlog is gone well within a window. The guard
/// stays off and nothing more is lost.
#[test]
fn overload_guard_stays_off_after_stalls_below_capacity() {
    use std::time::Duration;
    let mut w = guarded_worker(Some(64));
    let t0 = std::time::Instant::now();
    let mut t = 0u64;
    let mut accepted = 0;
    let mut offered = 0;
    let mut lost = 0;
    // (frames arriving while the worker does not run, frames a millisecond after it)
    for (stall, rate) in [(450u16, 15u16), (600, 4)] {
        let (room, _, _, _) = w.io().ring_levels(Side::Subscriber);
        assert!((400..600).contains(&room), "fill ring holds {room}");
        lost += u64::from(stall).saturating_sub(room as u64);
        for i in 0..stall {
            accepted += u64::from(w.io_mut().inject(Side::Subscriber, &passing(i)));
        }
        offered += u64::from(stall);
        assert_eq!(offered - accepted, lost, "stall of {stall}");
        let mut standing_ms = 0;
        for step in 0..400 {
            t += 1;
            let (_, rx, _, _) = w.io().ring_levels(Side::Subscriber);
            if rx >= 256 {
                standing_ms += 1;
            }
            let got = guard_step(&mut w, rate, t0 + Duration::from_millis(t));
            accepted += got;
            offered += u64::from(rate);
            if step == 0 {
                // What arrives before the worker's first iteration after the stall is
                // part of the stall.
                lost += u64::from(rate) - got;
            }
            assert!(!w.guard_engaged(Side::Subscriber), "engaged at {t} ms");
        }
        if rate == 15 {
            assert!(standing_ms > 150, "backlog stood only {standing_ms} ms");
        }
        assert_eq!(offered - accepted, lost, "lost after the stall of {stall}");
        assert_eq!(w.io().rx_dropped(Side::Subscriber), lost);
    }
    assert!(lost > 0, "the second stall did not overflow the ring");
    assert_eq!(
        w.counters().snapshot().get(Counter::OverloadGuardEngaged),
        0
    );
    assert_eq!(w.fill_target(Side::Subscriber), 512);
}

/// `workers.overload_guard: false`: the fill ring keeps its full depth under overload.
#[test]
fn without_the_guard_the_fill_ring_stays_deep_under_overload() {
    use std::time::Duration;
    let mut w = guarded_worker(None);
    let t0 = std::time::Instant::now();
    for t in 1..=300u64 {
        guard_step(&mut w, 48, t0 + Duration::from_millis(t));
    }
    assert!(w.io().rx_dropped(Side::Subscriber) > 0);
    assert!(!w.guard_engaged(Side::Subscriber));
    assert_eq!(w.fill_target(Side::Subscriber), 512);
    let (fill, rx, _, _) = w.io().ring_levels(Side::Subscriber);
    assert!(
        fill + rx > 64 * 4,
        "backlog {fill}+{rx}: the deep ring stands full"
    );
}

/// Per-class counts and `/top` stay with the class *name* across a reload that adds a
/// class in front of the others (class ids follow the sorted names, so every id moves):
/// counted before and after, "dynamic" has all of its blocked frames, the new class
/// none, and the source recorded before the reload is still listed under "dynamic".
#[test]
fn per_class_counts_keep_their_name_across_a_reload_that_shifts_class_ids() {
    use fixtures::addr::*;
    use op25b::policy::{BlockAction, PolicyBuilder};
    let p4 = |a: [u8; 4], len: u8| -> ipnet::IpNet {
        ipnet::Ipv4Net::new(a.into(), len).unwrap().into()
    };
    let build = |with_aaa: bool| {
        let mut b = PolicyBuilder::new();
        if with_aaa {
            let aaa = b.class("aaa", [25], BlockAction::Drop, false).unwrap();
            b.subscriber(p4([192, 0, 2, 0], 24), aaa);
        }
        let dynamic = b.class("dynamic", [25], BlockAction::Drop, false).unwrap();
        b.subscriber(p4(DYNAMIC4, 24), dynamic);
        b.build().unwrap()
    };
    let before = build(false);
    let after = build(true);
    assert_eq!(before.classes()[0].name, "dynamic");
    assert_eq!(after.classes()[0].name, "aaa", "the new class takes id 0");
    let cell = Arc::new(PolicyCell::new(Arc::new(before)));
    let cfg = WorkerConfig {
        burst: 16,
        fill_target: 32,
        overload_fill: None,
        busy_poll: false,
        reply_rate: 1_000_000,
        reply_burst: 1_000_000,
        cookie_key: KEY,
    };
    let counters = Arc::new(CachePadded::new(WorkerCounters::new()));
    let mut w = Worker::new(
        MemIo::new(256, 2048, RING),
        cfg,
        cell.clone(),
        counters.clone(),
    );
    let send = |w: &mut Worker<MemIo>, n: usize| {
        for i in 0..n {
            let ip = fixtures::tcp4(
                DYNAMIC4,
                EXTERNAL4,
                40000 + i as u16,
                25,
                fixtures::Tcp::Syn,
                &[],
            );
            assert!(w.io_mut().inject(
                Side::Subscriber,
                &fixtures::wrap(fixtures::Encap::Plain, &ip, false, true)
            ));
            settle(w);
        }
        assert!(w.io_mut().wire(Side::Upstream, usize::MAX).is_empty());
    };
    send(&mut w, 5);
    w.publish_top();
    cell.publish(Arc::new(after));
    send(&mut w, 3);
    let report = counters.snapshot().to_json(&cell.class_slots());
    assert_eq!(
        report["blocked_by_class"],
        serde_json::json!({"aaa": 0, "dynamic": 8}),
        "{report}"
    );
    // The list copied out before the reload names the class of then.
    let lists = [counters.top.lock().unwrap().clone()];
    let top = op25b::topk::merge(
        lists.iter().map(Vec::as_slice),
        |slot| cell.class_slot_name(slot),
        0,
        10,
    );
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].class.as_deref(), Some("dynamic"), "{top:?}");
}

/// Frames that are not IP cross the worker forwarded and are counted by kind and side.
#[test]
fn non_ip_frames_are_counted_by_kind() {
    use op25b::classify::NonIpKind;
    let mut w = worker(256, 1_000_000, 1_000_000);
    let mut want = [[0u64; NonIpKind::COUNT]; 2];
    for fx in fixtures::all() {
        let info = op25b::classify::parse(&fx.frame);
        if info.net != op25b::classify::Net::NotIp {
            continue;
        }
        let side = side_of(fx.direction);
        want[side.index()][op25b::classify::non_ip_kind(&info.link).index()] += 1;
        assert!(w.io_mut().inject(side, &fx.frame));
        settle(&mut w);
        assert_eq!(w.io_mut().wire(side.other(), usize::MAX), vec![fx.frame]);
    }
    let s = w.counters().snapshot();
    assert_eq!(s.non_ip, want);
    let mpls = NonIpKind::Mpls.index();
    assert_eq!(
        s.non_ip[Side::Subscriber.index()][mpls],
        2,
        "{:?}",
        s.non_ip
    );
    let json = s.to_json(&[]);
    assert_eq!(json["received_on"]["subscriber"]["non_ip"]["mpls"], 2);
}
