#!/usr/bin/env bash
# demo.sh - the README's first command: on a fresh Debian machine, as root, install
# what is missing, build op25b, bring up the veth lab (scripts/lab.sh), run op25b
# between the subscriber and upstream namespaces, drive real SMTP through it
# (scripts/matrix.sh: swaks -> aiosmtpd) and print case -> expected -> observed, then
# op25b's own counters, then tear everything down. Exit non-zero if any case differs.
#
# usage: demo.sh [--mode kernel|unblockable|off]
#   --mode  datapath.fast_path for op25b (default: kernel, as configs/lab.yaml): the
#           matrix expects the same outcome in every mode, the load run zero leaked
#
# Traffic stays in the lab's namespaces; the root namespace is checked untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=kernel
while [[ $# -gt 0 ]]; do
    case $1 in
        --mode) [[ $# -ge 2 ]] || { echo "demo.sh: --mode needs kernel, unblockable or off" >&2; exit 2; }
            MODE=$2; shift 2 ;;
        --mode=*) MODE=${1#*=}; shift ;;
        *) echo "demo.sh: unknown argument $1 (usage: demo.sh [--mode kernel|unblockable|off])" >&2; exit 2 ;;
    esac
done
case $MODE in kernel|unblockable|off) ;; *) echo "demo.sh: --mode must be kernel, unblockable or off, not '$MODE'" >&2; exit 2 ;; esac

[[ $EUID -eq 0 ]] || { echo "demo.sh: needs root (network namespaces, XDP): run it as root" >&2; exit 1; }
(( $(nproc) >= 2 )) || { echo "demo.sh: needs 2 CPUs (op25b's worker on CPU 1, the test tools on CPU 0)" >&2; exit 1; }

say() { printf '\n== demo: %s\n' "$*"; }
OP_PID=""
# shellcheck disable=SC2317  # invoked through the trap
cleanup() {
    if [[ -n "$OP_PID" ]] && kill -0 "$OP_PID" 2>/dev/null; then
        kill -TERM "$OP_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$OP_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    bash scripts/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

say "setup (installs missing Debian packages)"
bash scripts/setup.sh
command -v cargo >/dev/null || { echo "demo.sh: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }

say "build (release)"
# --examples: the examples may use the dev-dependencies, so cargo resolves the same
# dependency features as for the test suite's `cargo build --all-targets`, and neither
# build recompiles what the other made (scripts/test.sh runs this after its build: a
# no-op); bench.sh runs one of them (naive_fwd).
cargo build --release --workspace --bins --examples
BIN=$PWD/target/release/op25b
BENCH=$PWD/target/release/op25b-bench   # generator and sink (the test kit)
"$BIN" check --config configs/lab.yaml

say "lab up"
bash scripts/lab.sh down >/dev/null 2>&1 || true
bash scripts/lab.sh rootcheck-begin
bash scripts/lab.sh up

say "op25b run (in op25b-dut, bridging d0 <-> d1; datapath.fast_path: $MODE)"
LOG=/run/op25b-lab/op25b.log
REPORT=/run/op25b-lab/op25b-report.json
ip netns exec op25b-dut "$BIN" run --config configs/lab.yaml --set "datapath.fast_path=$MODE" \
    --duration 600 --report "$REPORT" >/dev/null 2>"$LOG" &
OP_PID=$!
for _ in $(seq 150); do
    grep -q "op25b running" "$LOG" 2>/dev/null && break
    kill -0 "$OP_PID" 2>/dev/null || { cat "$LOG"; echo "demo.sh: op25b failed to start" >&2; exit 1; }
    sleep 0.1
done
grep "op25b running" "$LOG" | sed 's/\x1b\[[0-9;]*m//g'

say "SMTP case matrix through op25b"
set +e
bash scripts/matrix.sh --json /run/op25b-lab/matrix.json
MATRIX_RC=$?
set -e

say "abuse-desk list (op25b top) after the matrix"
ip netns exec op25b-dut "$BIN" top --config configs/lab.yaml -n 10 || true

RATE=200000
say "10-second load run at $RATE frames/s: AF_XDP generator (op25b-sub) -> op25b -> verifying sink (op25b-up)"
# Fair placement (docs/benchmarks.md): op25b's worker and its veths' receive work on
# CPU 1; the generator, the sink and their veths' receive work on CPU 0, so no test
# tool ever runs on the worker's CPU.
LOADDIR=/run/op25b-lab/load
mkdir -p "$LOADDIR"
ip netns exec op25b-up taskset -c 0 "$BENCH" sink -i u0 --duration 40 --idle 2 \
    --report "$LOADDIR/sink.json" --ready-file "$LOADDIR/ready" >/dev/null 2>"$LOADDIR/sink.log" &
SINK_PID=$!
for _ in $(seq 100); do [[ -e $LOADDIR/ready ]] && break; sleep 0.05; done
[[ -e $LOADDIR/ready ]] || { cat "$LOADDIR/sink.log" >&2; echo "demo.sh: the sink did not start" >&2; exit 1; }
bash scripts/lab.sh fair --dut-cpu 1 --tester-cpu 0
LOAD_RC=0
ip netns exec op25b-sub taskset -c 0 "$BENCH" gen -i s0 -c configs/lab.yaml -p configs/bench-profile.yaml \
    -d 10 --rate "$RATE" --report "$LOADDIR/gen.json" >/dev/null 2>"$LOADDIR/gen.log" \
    || { cat "$LOADDIR/gen.log" >&2; LOAD_RC=1; }
wait "$SINK_PID" || { cat "$LOADDIR/sink.log" >&2; LOAD_RC=1; }

say "stop op25b (SIGTERM) and read its counters"
kill -TERM "$OP_PID"
wait "$OP_PID" || { echo "demo.sh: op25b exited non-zero" >&2; MATRIX_RC=1; }
OP_PID=""
python3 - "$REPORT" "$MODE" <<'PY' || MATRIX_RC=1
import json, sys
r = json.load(open(sys.argv[1]))
for side in ("subscriber", "upstream"):
    s = r["received_on"][side]
    print(f"received on {side:10}: {s['rx_frames']:8} frames, sent out {s['tx_frames']:8}")
    for k, v in sorted(s["verdicts"].items()):
        print(f"    {k:32} {v}")
    print(f"    {'kernel drops':32} {s['kernel_drops']}")
print("blocked by class:", {k: v for k, v in r["blocked_by_class"].items() if v})
e = r["events"]
print(f"replies sent {e['replies_sent']}, rate-limited {e['replies_rate_limited']}, tx ring full {e['tx_ring_full']}")
fp = r["fast_path"]
for side in ("subscriber", "upstream"):
    f = fp[side]
    u = f["to_userspace"]
    print(f"XDP on {side:10}: {f['fast_path_frames']:8} frames forwarded in the kernel (mode {sys.argv[2]}), "
          f"{sum(u.values()):8} to the worker ({', '.join(f'{k} {v}' for k, v in u.items() if v) or 'none'}), "
          f"{f['dropped_too_big']} dropped as too big for a worker")
print("frame conservation:", "holds" if r["frames_conserved"] else "BROKEN")
sys.exit(0 if r["frames_conserved"] and r["verdicts_account_for_rx"] else 1)
PY

say "load run verdict: zero leaked, zero passing frames lost by op25b (generator -> op25b -> sink)"
# Not --strict: the fast path's XDP redirect into the lab's veth has no backpressure, and
# the veth drops what its 256-frame ring cannot hold while the tester's vCPU is away
# (hypervisor steal); the breakdown shows such frames on the DUT -> sink link, apart
# from op25b's own loss (docs/reliability.md).
"$BENCH" report --gen "$LOADDIR/gen.json" --sink "$LOADDIR/sink.json" --dut "$REPORT" \
    || LOAD_RC=1
if [[ $LOAD_RC -eq 0 ]]; then
    say "load run: PASS"
else
    say "load run: FAIL (the breakdown above says where frames were lost)"
fi

say "lab down"
bash scripts/lab.sh down
bash scripts/lab.sh rootcheck-end

if [[ $MATRIX_RC -eq 0 && $LOAD_RC -eq 0 ]]; then
    say "every case as expected, load run PASS"
    exit 0
fi
[[ $MATRIX_RC -eq 0 ]] || say "SOME CASES DIFFER (see the table above)"
[[ $LOAD_RC -eq 0 ]] || say "THE LOAD RUN FAILED (see its verdict above)"
exit 1
