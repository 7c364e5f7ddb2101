//! The real worker loop over in-memory rings (`MemIo`): every golden fixture crosses it
//! with the verdict the table expects, replies are rate-limited, and frame conservation
//! holds through reject bursts, full TX rings and a stalled peer.

use crossbeam_utils::CachePadded;
use op25b::classify::reply;
use op25b::datapath::counters::{Counter, WorkerCounters};
use op25b::datapath::io::MemIo;
use op25b::datapath::io::Side;
use op25b::datapath::worker::{Worker, WorkerConfig};
use op25b::datapath::PolicyCell;
use op25b::policy::{Direction, Verdict};
use op25b_testkit::fixtures;
use proptest::prelude::*;
use std::sync::Arc;

const RING: usize = 64;

fn worker(frames: usize, rate: u32, burst: u32) -> Worker<MemIo> {
    let io = MemIo::new(frames, 2048, RING);
    let cfg = WorkerConfig {
        burst: 16,
        fill_target: 32,
        busy_poll: false,
        reply_rate: rate,
        reply_burst: burst,
    };
    let policy = Arc::new(PolicyCell::new(Arc::new(fixtures::policy())));
    Worker::new(
        io,
        cfg,
        policy,
        Arc::new(CachePadded::new(WorkerCounters::new())),
    )
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
                let n = reply::build_reply(&fx.frame, kind, &mut buf).unwrap();
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
        s.action_total(Side::Subscriber, 2) + s.action_total(Side::Upstream, 2),
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
    assert_eq!(s.action_total(Side::Subscriber, 2), sent);
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
    let top = op25b::control::topk::merge(lists.iter().map(Vec::as_slice), &names, 0, 10);
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
