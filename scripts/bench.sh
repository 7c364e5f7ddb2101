#!/usr/bin/env bash
# bench.sh - measure op25b against its baselines on the veth lab, side by side, with the
# fair method (docs/benchmarks.md).
#
# Same generator (op25b-bench gen in op25b-sub on s0; --gen xdp, the default: frames
# made and sent in the kernel by BPF_PROG_RUN live frames, cheap enough to overload the
# DUT; --gen afxdp: an AF_XDP copy-mode socket, backpressured), same verifying sink
# (op25b-bench sink in op25b-up on u0; --sink xdp, the default: an XDP program that
# checks each frame's tag and drops it, which leaves CPU 0 to the generator; --sink
# afxdp: an AF_XDP socket, frames checked in userspace), same profile and duration for
# every DUT variant in op25b-dut between d0 and d1:
#   xdp-redirect  in-kernel ceiling: an XDP program redirecting d0 -> d1 (no policy)
#   bridge-nft    Linux bridge + nftables rules generated from configs/bench.yaml by
#                 `op25b export-nft` (what an operator would run without op25b)
#   naive-fwd     the simplest xsk-rs forwarder d0 <-> d1, no policy
#                 (examples/naive_fwd.rs): op25b's userspace overhead is the ratio to it
#   op25b-kernel  op25b, 1 worker (configs/bench.yaml, 10k prefixes, blocking classes
#                 `action: drop`), datapath.fast_path: kernel (the default): the XDP
#                 program judges every whole TCP segment it parses and forwards or drops
#                 it in the kernel; replies, fragments and unparsed frames go to the worker
#   op25b-unblockable  the same with datapath.fast_path: unblockable: only what no class
#                 can block is forwarded in the kernel, the rest goes through the worker
#   op25b-off     the same with datapath.fast_path: off: every frame through the worker
#                 (the AF_XDP copy-mode path)
#   op25b-kernel-1m  op25b-kernel with a 1,000,000-prefix dynamic table, written at run
#                 time by `op25b-bench prefixes` (not committed); its runs also report
#                 how long op25b took to start and to reload (SIGHUP) with it, and how
#                 long writing the policy into the XDP program's maps took
#   (op25b and op25b-userspace, the names before the modes, run op25b-kernel and
#   op25b-off)
#   op25b-unfair  op25b-off without the fair placement: the veths' receive work
#                 runs where the kernel puts it (the sink's receive and op25b's TX
#                 completions inside op25b's sendto on CPU 1), as a NIC whose TX
#                 completion interrupt lands on the worker's core
#   op25b-noguard op25b-off with workers.overload_guard: false (the fill ring keeps
#                 its full depth under overload): what the guard changes
#   op25b-unfair-noguard  op25b-unfair with the guard off: what it changes there
#   op25b-2w      op25b, 2 workers on 2-queue veths (configs/bench-2w.yaml); on 2 CPUs
#                 worker 1 shares CPU 0 with the tester, so not a fair figure
# VARIANT@PROFILE runs a variant on configs/bench-profile-PROFILE.yaml instead of
# configs/bench-profile.yaml: mixed (25% TCP/25), isp (1% TCP/25), smtp25 (100% TCP/25
# from outside the subscriber prefixes: a full lookup, none blocked), hostile (20%
# hostile-catalogue flows), storm (a spam storm: ~90% blocked TCP/25 SYNs from the dynamic
# pools, ~5% TCP/25 from an exempt host and unmatched space, ~5% TCP/443). Storm runs
# (but --quick) take the pfifo qdisc off the generator's link s0: the generator then
# sends at its highest rate whatever the DUT takes, and what d0's receive ring cannot
# hold is lost there (counted as lost at the DUT's receive ring), so the share of the
# legitimate frames offered that reached the sink (legit_delivered) measures the DUT.
#
# Fair placement, each run (scripts/lab.sh fair): the DUT and its veths' receive work
# (threaded NAPI of d0/d1, or RPS for the bridge) on CPU 1; the generator, the sink and
# their veths' receive work on CPU 0 (NAPI kthreads at SCHED_FIFO 50); pfifo qdiscs so
# a full veth ring pushes back instead of dropping. The DUT is started for each run and
# stopped after it, so its own report covers exactly that run.
#
# Per run: offered rate, what the generator sent, what reached the DUT, what the DUT
# handled (forwarded + blocked), what the sink got, every lost frame and where it was
# lost (generator link, DUT socket, DUT -> sink link, sink link, sink socket), CPU-1
# microseconds per handled frame and CPU-1 steal (/proc/stat), one-way latency
# percentiles (p50, p99, p99.9, max).
#
# Then, per variant: the saturation rate (median of --repeats unlimited runs), a loss
# check at 90% of it, and the overload curve: offered load from 25% to 400% of
# saturation (points the generator cannot reach are marked generator-bound).
#
# Results: bench-results/<UTC date-time>/results.json, mpps.svg, curve.svg,
# latency.svg, workers.svg; raw reports under raw/; rows.jsonl, the run rows, which
# scripts/bench_summary.py summarises together with other runs' (see its usage).
#
# usage: bench.sh [--duration S] [--repeats N] [--variants a,b,...] [--curve a,b,...]
#                 [--curve-duration S] [--curve-repeats N] [--points P,P,...] [--gen xdp|afxdp]
#                 [--sink xdp|afxdp] [--dut-napi-nice N] [--idle-halt] [--quick]
#                 [--out DIR]
#   --points    the curve's offered loads in % of saturation (default 25,50,75,90,100,150,200,400)
#   --curve-repeats  runs per curve point (default 1), in rounds over all points; each
#               point reports the run with the median handled rate (the lower middle
#               one of an even count) and the min-max
#   --idle-halt let idle CPUs halt (default: a 0 us cpu_dma_latency request for the run,
#               so they poll; docs/benchmarks.md, the fair method)
#   --gen       the generator's engine (default xdp; afxdp with --quick). With xdp there is no
#               backpressure: frames the DUT's receive ring (d0's veth ring, 256 frames)
#               cannot take are dropped there and reported as lost at the DUT's
#               receive ring, as a NIC counts rx_missed
#   --sink      the sink's engine (default xdp; afxdp with --quick). Both check every
#               frame's tag (leaks, order, latency); afxdp costs CPU 0 a copy-mode
#               receive and a userspace tally per frame, which caps what the generator
#               on the same CPU can offer
#   --dut-napi-nice  nice value of the DUT-side NAPI threads on CPU 1 (default 0; the
#               userspace DUTs run at -10): how the DUT's CPU is split between the
#               kernel's receive into the socket and the forwarder under overload
#   --variants  default: xdp-redirect, bridge-nft, naive-fwd, the three op25b modes and
#               op25b-unfair on the standard profile; then xdp-redirect, bridge-nft,
#               naive-fwd and the three modes on mixed, isp, smtp25 and storm;
#               op25b-kernel-1m on mixed; op25b-kernel and op25b-off on hostile
#   --curve     variants that get the overload curve (default: those of --variants on
#               the standard profile; "none" for no curve)
#   --quick     a few seconds per variant, correctness only (used by scripts/test.sh):
#               asserts zero leaked frames and zero loss by the DUT at a moderate
#               rate; no curve, no charts. Default variants: the standard seven plus
#               op25b-kernel@mixed, op25b-kernel@storm, op25b-kernel@hostile and
#               op25b-off@hostile.
# Needs root and 2 CPUs. Every run is bounded in time; the lab namespaces are removed at
# the end and root-namespace interface counters are checked unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD

DURATION=10
REPEATS=3
VARIANTS=""
CURVE=""
CURVE_DURATION=5
CURVE_REPEATS=1
CURVE_POINTS=(25 50 75 90 100 150 200 400)
QUICK=0
OUT=""
GEN=""
SINK=""
DUT_NAPI_NICE=0
IDLE_POLL=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --variants) VARIANTS=$2; shift 2 ;;
        --curve) CURVE=$2; shift 2 ;;
        --curve-duration) CURVE_DURATION=$2; shift 2 ;;
        --curve-repeats) CURVE_REPEATS=$2; shift 2 ;;
        --points) IFS=, read -r -a CURVE_POINTS <<<"$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --gen) GEN=$2; shift 2 ;;
        --sink) SINK=$2; shift 2 ;;
        --dut-napi-nice) DUT_NAPI_NICE=$2; shift 2 ;;
        --idle-halt) IDLE_POLL=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,102p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "bench.sh: needs root (namespaces, XDP)" >&2; exit 1; }
[[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ && $REPEATS =~ ^[1-9][0-9]*$ && $CURVE_REPEATS =~ ^[1-9][0-9]*$ && $CURVE_DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] \
    || { echo "bench.sh: --duration, --curve-duration, --repeats and --curve-repeats must be positive numbers" >&2; exit 2; }
for pct in "${CURVE_POINTS[@]}"; do
    [[ $pct =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --points takes percentages (25,50,...), not '$pct'" >&2; exit 2; }
done
[[ -z $GEN || $GEN == xdp || $GEN == afxdp ]] || { echo "bench.sh: --gen must be xdp or afxdp" >&2; exit 2; }
if ! [[ $DUT_NAPI_NICE =~ ^-?[0-9]+$ ]] || ((DUT_NAPI_NICE < -20 || DUT_NAPI_NICE > 19)); then
    echo "bench.sh: --dut-napi-nice takes a nice value (-20..19)" >&2; exit 2
fi
[[ -z $SINK || $SINK == xdp || $SINK == afxdp ]] || { echo "bench.sh: --sink must be xdp or afxdp" >&2; exit 2; }
STANDARD=xdp-redirect,bridge-nft,naive-fwd,op25b-kernel,op25b-unblockable,op25b-off,op25b-unfair
if [[ -z $VARIANTS ]]; then
    if ((QUICK)); then
        VARIANTS=$STANDARD,op25b-kernel@mixed,op25b-kernel@storm,op25b-kernel@hostile,op25b-off@hostile
    else
        VARIANTS=$STANDARD
        for p in mixed isp smtp25 storm; do
            for v in xdp-redirect bridge-nft naive-fwd op25b-kernel op25b-unblockable op25b-off; do
                VARIANTS+=,$v@$p
            done
        done
        VARIANTS+=,op25b-kernel-1m@mixed,op25b-kernel@hostile,op25b-off@hostile
    fi
fi
# The names from before the modes: op25b (the default mode, now kernel) and
# op25b-userspace (every frame through the worker).
VARIANTS=$(tr , '\n' <<<"$VARIANTS" | sed -E 's/^op25b(@|$)/op25b-kernel\1/; s/^op25b-userspace(@|$)/op25b-off\1/' | paste -sd, -)
[[ -z $CURVE || $CURVE == none ]] \
    || CURVE=$(tr , '\n' <<<"$CURVE" | sed -E 's/^op25b(@|$)/op25b-kernel\1/; s/^op25b-userspace(@|$)/op25b-off\1/' | paste -sd, -)
if [[ -z $CURVE ]]; then
    CURVE=$(tr , '\n' <<<"$VARIANTS" | grep -v @ | paste -sd, -)
fi

BIN=${OP25B_BIN:-$HERE/target/release/op25b}
# The generator, sink and report: the test kit's binary (package op25b-testkit).
BENCH=${OP25B_BENCH:-$(dirname "$BIN")/op25b-bench}
NAIVE=${OP25B_NAIVE:-$HERE/target/release/examples/naive_fwd}
[[ -x $BIN ]] || { echo "bench.sh: $BIN not built (cargo build --release)" >&2; exit 1; }
[[ -x $BENCH ]] || { echo "bench.sh: $BENCH not built (cargo build --release --workspace)" >&2; exit 1; }
NCPU=$(nproc)
((NCPU >= 2)) || { echo "bench.sh: the fair method needs 2 CPUs" >&2; exit 1; }
PROFILE=configs/bench-profile.yaml
# profile_of VARIANT: the traffic profile file of VARIANT[@PROFILE].
profile_of() {
    if [[ $1 == *@* ]]; then
        printf 'configs/bench-profile-%s.yaml\n' "${1#*@}"
    else
        printf '%s\n' "$PROFILE"
    fi
}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
# The correctness run (--quick, in CI) uses the backpressured AF_XDP generator: zero loss
# at a moderate rate is then a property of the DUT alone. Measurements use the xdp one.
if [[ -z $GEN ]]; then
    if ((QUICK)); then GEN=afxdp; else GEN=xdp; fi
fi
# Likewise the sink: the AF_XDP one in the correctness run, the XDP one in measurements.
if [[ -z $SINK ]]; then
    if ((QUICK)); then SINK=afxdp; else SINK=xdp; fi
fi
if ((QUICK)); then
    DURATION=2; REPEATS=1; CURVE=none
    OUT=${OUT:-$(mktemp -d /tmp/op25b-bench-quick.XXXXXX)}
else
    OUT=${OUT:-bench-results/$STAMP}
fi
mkdir -p "$OUT/raw"
WORK=$(mktemp -d /tmp/op25b-bench.XXXXXX)

say() { printf 'bench: %s\n' "$*" >&2; }
PIDS=()
# shellcheck disable=SC2317  # invoked through the trap
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    bash scripts/lab.sh down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU 1 busy jiffies (everything but idle and iowait) from /proc/stat.
cpu1_busy() { awk '$1=="cpu1" {print $2+$4+$7+$8+$9}' /proc/stat; }
# CPU 1 steal jiffies: time the hypervisor ran something else on this vCPU (in a VM, the
# usual cause of a NAPI thread that runs late and a veth ring that overflows).
cpu1_steal() { awk '$1=="cpu1" {print $9}' /proc/stat; }
HZ=$(getconf CLK_TCK)

lab_up() { # lab_up QUEUES FORWARDER
    bash scripts/lab.sh down >/dev/null 2>&1 || true
    bash scripts/lab.sh up --no-sinks --queues "$1" --forwarder "$2" >"$WORK/lab.log" 2>&1 \
        || { cat "$WORK/lab.log" >&2; say "lab up failed"; exit 1; }
    if [[ $2 == bridge ]]; then
        # The bridge table comes from the same YAML as op25b's policy, loaded per run.
        ip netns exec op25b-dut nft flush ruleset
        ip netns exec op25b-dut sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
        # A veth takes XDP-transmitted frames (the xdp generator) only with a NAPI
        # instance, which GRO gives it when no XDP program is attached; lab.sh fair then
        # threads it onto the DUT's CPU like the other variants' d0.
        ip netns exec op25b-dut ethtool -K d0 gro on >/dev/null
    fi
}

# The userspace DUTs (op25b, naive-fwd) run at nice -10: on the DUT's CPU their threads
# come before the veths' NAPI threads (nice 0), so under overload the receive work only
# gets the CPU the forwarder leaves and the excess is dropped at d0's ring, not copied
# into the DUT's socket first and dropped there (receive livelock; docs/benchmarks.md).
DUT_NICE=-10
DUT_PID=""
# wait_started NEEDLE WHAT [SECONDS]: wait (10 s unless told) until the DUT's log says NEEDLE.
wait_started() {
    for _ in $(seq "$((${3:-10} * 10))"); do
        grep -q "$1" "$WORK/dut.log" 2>/dev/null && return 0
        kill -0 "$DUT_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$WORK/dut.log" >&2; say "$2 did not start"; exit 1
}

# config_of VARIANT: the op25b config the DUT runs with and the generator judges by.
config_of() {
    case $1 in
        op25b-2w) echo configs/bench-2w.yaml ;;
        op25b-kernel-1m) echo "$WORK/bench-1m.yaml" ;;
        *) echo configs/bench.yaml ;;
    esac
}

# The 1M-prefix policy: configs/bench.yaml with its dynamic table replaced by one of
# 1,000,000 prefixes (the same layout, `op25b-bench prefixes`), written once per run.
make_1m() {
    [[ -e $WORK/bench-1m.yaml ]] && return 0
    "$BENCH" prefixes --count 1000000 --out "$WORK/bench-1m-dynamic.txt" \
        || { say "cannot write the 1M-prefix table"; exit 1; }
    sed "s|prefixes/bench-dynamic.txt|$WORK/bench-1m-dynamic.txt|" configs/bench.yaml >"$WORK/bench-1m.yaml"
    grep -q "$WORK/bench-1m-dynamic.txt" "$WORK/bench-1m.yaml" \
        || { say "configs/bench.yaml names no prefixes/bench-dynamic.txt to replace"; exit 1; }
}

# $WORK/dutstart.json: how long the DUT took to start (wall clock to "op25b running"),
# what op25b says it spent building its tables and writing the XDP program's maps,
# and, after dut_reload, the same for a reload.
DUT_T0=0
dut_start() { # dut_start VARIANT
    rm -f "$WORK/dut.json" "$WORK/dut.log"
    echo '{}' >"$WORK/dutstart.json"
    case $1 in
        op25b-kernel|op25b-unblockable|op25b-off|op25b-kernel-1m|op25b-unfair|op25b-noguard|op25b-unfair-noguard|op25b-2w)
            # 1 worker: the whole process on CPU 1. 2 workers: cores 1 and 0.
            local cfg cpus=1 wait=10
            cfg=$(config_of "$1")
            [[ $1 == op25b-2w ]] && cpus=0,1
            [[ $1 == op25b-kernel-1m ]] && wait=120
            # The mode: kernel, unblockable, or off (every variant but the first three).
            local -a sets=()
            case $1 in
                op25b-kernel|op25b-kernel-1m|op25b-2w) sets=(--set datapath.fast_path=kernel) ;;
                op25b-unblockable) sets=(--set datapath.fast_path=unblockable) ;;
                *) sets=(--set datapath.fast_path=off) ;;
            esac
            [[ $1 == *-noguard ]] && sets+=(--set workers.overload_guard=false)
            DUT_T0=$(date +%s.%N)
            ip netns exec op25b-dut taskset -c "$cpus" nice -n "$DUT_NICE" "$BIN" run --config "$cfg" "${sets[@]}" --duration 600 \
                --report "$WORK/dut.json" >/dev/null 2>"$WORK/dut.log" &
            DUT_PID=$!
            PIDS+=("$DUT_PID")
            wait_started "op25b running" op25b "$wait"
            dut_times start "$(date +%s.%N)" ;;
        naive-fwd)
            [[ -x $NAIVE ]] || { say "$NAIVE not built (cargo build --release --examples)"; exit 1; }
            ip netns exec op25b-dut nice -n "$DUT_NICE" "$NAIVE" d0 d1 --duration 600 --core 1 \
                >"$WORK/dut.json" 2>"$WORK/dut.log" &
            DUT_PID=$!
            PIDS+=("$DUT_PID")
            wait_started forwarding naive_fwd ;;
        bridge-nft)
            local fam ok=0
            for fam in "bridge --reject-as-drop" "netdev"; do
                # shellcheck disable=SC2086  # two words on purpose
                "$BIN" export-nft --config configs/bench.yaml --family $fam >"$WORK/policy.nft"
                if ip netns exec op25b-dut nft -f "$WORK/policy.nft" 2>"$WORK/nft.err"; then
                    ok=1; break
                fi
            done
            ((ok)) || { cat "$WORK/nft.err" >&2; say "nft refused the generated rule set"; exit 1; } ;;
        xdp-redirect)
            bash scripts/xdp/redirect.sh attach op25b-dut d0 d1 "$WORK/xdp" >/dev/null ;;
    esac
}

# dut_times start|reload T1 [FROM]: records in $WORK/dutstart.json the wall seconds from
# DUT_T0 to T1 and what op25b logged for the start or the reload in the DUT's log from
# line FROM on: its build and total times, how long writing the XDP program's maps took,
# or the error that write met.
dut_times() {
    python3 - "$WORK/dut.log" "$WORK/dutstart.json" "$1" "$DUT_T0" "$2" "${3:-0}" <<'PY'
import json, re, sys
log, path, what, t0, t1, first = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
lines = open(log, errors="replace").read().splitlines()[first:]
d = json.load(open(path))
d[what + "_s"] = round(t1 - t0, 3)
for l in lines:
    m = re.search(r"XDP policy generation \d+: .* written in (\d+) ms", l)
    if m:
        d[what + "_kernel_write_ms"] = int(m.group(1))
    elif "ERROR" in l and ("LPM trie" in l or "XDP program's map" in l):
        d[what + "_kernel_error"] = l.split("ERROR", 1)[1].strip()[:300]
key = "op25b running" if what == "start" else "policy reloaded"
for l in reversed(lines):
    if key in l:
        for k in ("build_ms", "total_ms"):
            m = re.search(k + r'="?([0-9.]+)', l)
            if m:
                d[what + "_" + k] = float(m.group(1))
        break
json.dump(d, open(path, "w"))
PY
}

# dut_reload: SIGHUP with the same config; waits (120 s at most) for op25b to log the
# reload and records its figures (dut_times reload).
dut_reload() {
    local before lines
    before=$(grep -c "policy reloaded" "$WORK/dut.log" || true)
    lines=$(wc -l <"$WORK/dut.log")
    DUT_T0=$(date +%s.%N)
    kill -HUP "$DUT_PID"
    for _ in $(seq 1200); do
        (($(grep -c "policy reloaded" "$WORK/dut.log" || true) > before)) && break
        sleep 0.1
    done
    (($(grep -c "policy reloaded" "$WORK/dut.log" || true) > before)) \
        || { tail -5 "$WORK/dut.log" >&2; say "op25b did not log a reload within 120 s"; FAIL=1; return 0; }
    dut_times reload "$(date +%s.%N)" "$lines"
}

dut_stop() { # dut_stop VARIANT: the DUT's own report of the run -> $WORK/dut.json
    case $1 in
        op25b*|naive-fwd)
            kill -TERM "$DUT_PID" 2>/dev/null || true
            wait "$DUT_PID" || { say "$1 exited non-zero"; tail -5 "$WORK/dut.log" >&2; FAIL=1; }
            DUT_PID="" ;;
        xdp-redirect)
            bash scripts/xdp/redirect.sh detach op25b-dut d0
            echo '{}' >"$WORK/dut.json" ;;
        bridge-nft)
            ip netns exec op25b-dut nft -j list ruleset >"$WORK/nft.json"
            ip netns exec op25b-dut nft flush ruleset
            python3 -c '
import json, sys
dropped = 0
for item in json.load(open(sys.argv[1]))["nftables"]:
    for e in item.get("rule", {}).get("expr", []):
        if "counter" in e:
            dropped += e["counter"]["packets"]
print(json.dumps({"blocked": dropped}))' "$WORK/nft.json" >"$WORK/dut.json" ;;
    esac
}

link_stat() { # link_stat NS DEV COUNTER
    ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"
}

# d0_xdp_drops: frames an XDP program on d0 dropped (the veth's per-queue xdp_drops; in
# mode kernel, op25b's verdict drops: frames it judged without a worker).
d0_xdp_drops() {
    ip netns exec op25b-dut ethtool -S d0 2>/dev/null | awk -F: '$1 ~ /rx_queue_[0-9]+_xdp_drops/ {n += $2} END {print n + 0}'
}

# one_run VARIANT RUN [RATE [DURATION]]: prints one JSON object (a run row) on stdout.
one_run() {
    local full=$1 n=$2 rate=${3:-} dur=${4:-$DURATION} gen_args=() b0 b1 st0 st1 t0 t1 d1tx0 d1tx1 queues=1
    local v=${full%@*} profile cfg gen_bp=1 x0 x1
    profile=$(profile_of "$full")
    cfg=$(config_of "$v")
    rm -f "$WORK/ready" "$WORK/gen.json" "$WORK/sink.json"
    [[ $v == op25b-2w ]] && queues=2
    dut_start "$v"
    local sink_args=()
    # The XDP sink keeps no frame to print.
    [[ $SINK == afxdp ]] && sink_args+=(--dump-foreign 5)
    ip netns exec op25b-up taskset -c 0 "$BENCH" sink -i u0 --engine "$SINK" --queues "$queues" \
        --duration "$(python3 -c "print($dur + 20)")" --idle 1.5 "${sink_args[@]}" \
        --report "$WORK/sink.json" --ready-file "$WORK/ready" >/dev/null 2>"$WORK/sink.log" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    for _ in $(seq 100); do [[ -e $WORK/ready ]] && break; sleep 0.05; done
    [[ -e $WORK/ready ]] || { cat "$WORK/sink.log" >&2; say "sink did not start"; exit 1; }
    if [[ $v != op25b-unfair* ]]; then
        bash scripts/lab.sh fair --dut-cpu 1 --tester-cpu 0 --dut-napi-nice "$DUT_NAPI_NICE" >"$WORK/fair.log" 2>&1 \
            || { cat "$WORK/fair.log" >&2; say "fair placement failed"; exit 1; }
        if [[ $profile == *-storm.yaml ]] && ((!QUICK)); then
            # The storm is offered at the generator's highest rate, not at the rate the
            # DUT takes: no qdisc on s0, so a full d0 ring drops instead of pushing back.
            ip netns exec op25b-sub tc qdisc del dev s0 root 2>/dev/null || true
            gen_bp=0
        fi
    fi
    [[ -n $rate ]] && gen_args+=(--rate "$rate")
    [[ $v == op25b-2w ]] && gen_args+=(--threads 2)
    d1tx0=$(link_stat op25b-dut d1 tx_dropped)
    x0=$(d0_xdp_drops)
    b0=$(cpu1_busy); st0=$(cpu1_steal); t0=$(date +%s.%N)
    ip netns exec op25b-sub taskset -c 0 "$BENCH" gen -i s0 -c "$cfg" -p "$profile" \
        -d "$dur" --engine "$GEN" "${gen_args[@]}" --report "$WORK/gen.json" >/dev/null 2>"$WORK/gen.log" \
        || { cat "$WORK/gen.log" >&2; say "generator failed"; exit 1; }
    b1=$(cpu1_busy); st1=$(cpu1_steal); t1=$(date +%s.%N)
    wait "$sink_pid" || { cat "$WORK/sink.log" >&2; say "sink failed"; exit 1; }
    d1tx1=$(link_stat op25b-dut d1 tx_dropped)
    x1=$(d0_xdp_drops)
    # The 1M policy: one reload with it (after the traffic), timed.
    [[ $v == op25b-kernel-1m && $n == 1 ]] && dut_reload
    dut_stop "$v"
    local tag="$full-$n"
    cp "$WORK/gen.json" "$OUT/raw/$tag-gen.json"
    cp "$WORK/sink.json" "$OUT/raw/$tag-sink.json"
    cp "$WORK/dut.json" "$OUT/raw/$tag-dut.json"
    [[ $v == op25b* ]] && cp "$WORK/dut.log" "$OUT/raw/$tag-dut.log"
    cp "$WORK/sink.log" "$OUT/raw/$tag-sink.log"
    # What the DUT counted, in the shape `op25b-bench report --dut` reads.
    python3 - "$v" "$WORK/dut.json" "$((d1tx1 - d1tx0))" >"$WORK/dutdrops.json" <<'PY'
import json, sys
v, path, d1tx = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = json.load(open(path))
if v.startswith("op25b"):
    k = d["received_on"]["subscriber"]["kernel_drops"]
elif v == "naive-fwd":
    k = d["kernel_drops"]["d0"]
else:
    k = {"rx_dropped": 0, "rx_ring_full": 0}
print(json.dumps({"received_on": {"subscriber": {"kernel_drops": {"rx_dropped": k["rx_dropped"], "rx_ring_full": k["rx_ring_full"]}}},
                  "link_drops": {"upstream": {"tx_dropped": d1tx}}}))
PY
    # Exit 3 (leak or loss) is judged below from the JSON, not here.
    "$BENCH" report --gen "$WORK/gen.json" --sink "$WORK/sink.json" --dut "$WORK/dutdrops.json" --json \
        >"$WORK/verdict.json" 2>/dev/null || true
    cp "$WORK/verdict.json" "$OUT/raw/$tag-verdict.json"
    python3 - "$WORK/gen.json" "$WORK/sink.json" "$WORK/verdict.json" "$WORK/dut.json" \
        "$b0" "$b1" "$t0" "$t1" "$HZ" "$full" "$n" "${rate:-}" "$dur" "$profile" "$st0" "$st1" \
        "$((x1 - x0))" "$gen_bp" "$WORK/dutstart.json" <<'PY'
import json, sys
g, s, v, d = (json.load(open(p)) for p in sys.argv[1:5])
b0, b1, t0, t1, hz = (float(x) for x in sys.argv[5:10])
full, run, rate, dur, profile = sys.argv[10], sys.argv[11], sys.argv[12], float(sys.argv[13]), sys.argv[14]
steal_s = (float(sys.argv[16]) - float(sys.argv[15])) / hz
kernel_drops, gen_bp, times = int(sys.argv[17]), sys.argv[18] == "1", json.load(open(sys.argv[19]))
name = full.split("@")[0]
busy_s = (b1 - b0) / hz
wall = t1 - t0
delivered = s["passed"] + s["leaked"]
loss = v["loss"]
reached = g["sent"] - loss["generator_link"]
# Frames the DUT judged: its own count where it keeps one.
fast = 0
if name.startswith("op25b"):
    # The workers' frames plus what the XDP program forwarded and (mode kernel) dropped
    # in the kernel.
    fast = d.get("fast_path", {}).get("subscriber", {}).get("fast_path_frames", 0)
    handled = d["received_on"]["subscriber"]["rx_frames"] + fast + kernel_drops
elif name == "naive-fwd":
    handled = d["forwarded"]["d0"]
elif name == "bridge-nft":
    handled = delivered + d.get("blocked", 0)
else:  # xdp-redirect: everything it handles, it forwards
    handled = delivered
secs = g["seconds"] if g["seconds"] > 0 else dur
row = {
    "variant": full, "base": name, "profile": profile, "run": run,
    "rate_limit_pps": int(rate) if rate else None, "fast_path_frames": fast,
    "kernel_drops": kernel_drops if name.startswith("op25b") else 0,
    "sent": g["sent"], "sent_pass": g["sent_pass"], "sent_block": g["sent_block"],
    "reached_dut": reached, "handled": handled, "delivered": delivered,
    "passed": s["passed"], "leaked": s["leaked"], "lost": v["lost"], "loss": loss,
    "lost_on_generator_link": loss["generator_link"], "lost_by_dut": loss["lost_by_dut"],
    "loss_ratio": v["loss_ratio"], "out_of_order": s["out_of_order"],
    "offered_mpps": (int(rate) / 1e6) if rate else None,
    "gen_mpps": g["mpps"], "sink_mpps": s["mpps"], "handled_mpps": handled / secs / 1e6,
    "latency_us": s.get("latency_us"),
    "dut_cpu_busy": busy_s / wall if wall > 0 else 0,
    "dut_us_per_frame": busy_s * 1e6 / handled if handled else None,
    # Of dut_cpu_busy: the part the hypervisor took (steal), as a share of the run.
    "dut_cpu_steal": steal_s / wall if wall > 0 else 0,
    "generator_bound": (busy_s / wall < 0.9 if wall > 0 else True) if not rate else g["mpps"] < 0.95 * int(rate) / 1e6,
    "gen_mode": g["mode"], "sink_mode": s["mode"],
    # The xdp engine has no backpressure, nor the afxdp one without s0's qdisc (storm):
    # what the DUT's receive ring (d0) could not take is counted on the generator's link;
    # with backpressure that counter is the tester's own.
    "lost_at_dut_rx_ring": loss["generator_link"] if g["mode"] == "xdp-live" or not gen_bp else 0,
    "gen_backpressure": gen_bp and g["mode"] != "xdp-live",
    "gen_schedule_restarts": g.get("schedule_restarts", 0),
    # Of the frames the generator offered that should pass, the share the sink got.
    "legit_delivered": s["passed"] / g["sent_pass"] if g["sent_pass"] else None,
    "dut_times": times,
}
print(json.dumps(row))
PY
    return 0
}

show_row() {
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); l = r["latency_us"] or {}
off = "unlimited" if not r["rate_limit_pps"] else "%d/s" % r["rate_limit_pps"]
late = ", generator fell behind %d times" % r["gen_schedule_restarts"] if r.get("gen_schedule_restarts") else ""
if r.get("profile", "").endswith("-storm.yaml") and r.get("legit_delivered") is not None:
    late += ", legitimate frames delivered %.1f%%" % (100 * r["legit_delivered"])
t = r.get("dut_times") or {}
if "start_kernel_write_ms" in t:
    late += ", start %.1f s (XDP maps %d ms)" % (t["start_s"], t["start_kernel_write_ms"])
if "reload_s" in t:
    late += ", reload %.1f s (XDP maps %s)" % (t["reload_s"], "%d ms" % t["reload_kernel_write_ms"] if "reload_kernel_write_ms" in t else "NOT written: " + t.get("reload_kernel_error", "no log line"))
print("%-18s %-6s offered %-10s sent %.3f handled %.3f sink %.3f Mpps, CPU1 %.0f%% (steal %.1f%%) %.2f us/frame, p50 %s p99 %s us, leaked %d, lost %d (by the DUT %d, at its rx ring %d)%s" % (
    r["variant"], r["run"], off, r["gen_mpps"], r["handled_mpps"], r["sink_mpps"], 100 * r["dut_cpu_busy"], 100 * r.get("dut_cpu_steal", 0),
    r["dut_us_per_frame"] or 0, l.get("p50", "-"), l.get("p99", "-"), r["leaked"], max(r["lost"], 0), r["lost_by_dut"],
    r["lost_at_dut_rx_ring"], late))' "$1" >&2
}

bash scripts/lab.sh rootcheck-begin >/dev/null
# For the whole run, keep idle CPUs out of halt (a 0 us PM QoS request on
# /dev/cpu_dma_latency, as tuned's latency-performance profile does): in a VM an idle
# vCPU that halts takes a VM exit to wake, and the DUT's NAPI thread waking late
# overflows d0's 256-frame ring. The request lasts as long as this descriptor is open.
if ((!IDLE_POLL)); then
    IDLE_NOTE="idle CPUs may halt (--idle-halt)"
elif { exec 7>/dev/cpu_dma_latency; } 2>/dev/null; then
    printf '\0\0\0\0' >&7 && IDLE_NOTE="idle CPUs poll (cpu_dma_latency 0)"
else
    IDLE_NOTE="cpu_dma_latency not available: idle CPUs may halt"
fi
say "$IDLE_NOTE"
ROWS=$WORK/rows.jsonl
: >"$ROWS"
FAIL=0
IFS=, read -r -a VLIST <<<"$VARIANTS"
for v in "${VLIST[@]}"; do
    [[ -f $(profile_of "$v") ]] || { say "variant '$v': no profile $(profile_of "$v")"; exit 2; }
    case ${v%@*} in
        op25b-kernel|op25b-unblockable|op25b-off|op25b-unfair|op25b-noguard|op25b-unfair-noguard|naive-fwd|xdp-redirect) lab_up 1 none ;;
        op25b-kernel-1m) make_1m; lab_up 1 none ;;
        op25b-2w) lab_up 2 none ;;
        bridge-nft) lab_up 1 bridge ;;
        *) say "unknown variant '$v'"; exit 2 ;;
    esac
    for n in $(seq "$REPEATS"); do
        if ((QUICK)); then
            # Correctness at a rate every DUT sustains: nothing leaked, nothing lost.
            row=$(one_run "$v" "$n" 100000)
        else
            row=$(one_run "$v" "$n")
        fi
        echo "$row" >>"$ROWS"
        show_row "$row"
    done
    if ((!QUICK)); then
        # Saturation: the median handled rate of the unlimited runs.
        sat=$(python3 -c 'import json,sys,statistics; r=[json.loads(l) for l in open(sys.argv[1])]; r=[x for x in r if x["variant"]==sys.argv[2] and not x["rate_limit_pps"]]; print(int(statistics.median(x["handled_mpps"] for x in r)*1e6))' "$ROWS" "$v")
        say "$v: saturation $sat frames/s handled"
        # No loss below saturation: one run at 90 %.
        row=$(one_run "$v" check90 "$((sat * 9 / 10))")
        echo "$row" >>"$ROWS"; show_row "$row"
        if [[ ",$CURVE," == *",$v,"* ]]; then
            # --curve-repeats rounds over all points (not N runs of one point after the
            # other), so a slow drift of the machine spreads over every point.
            for k in $(seq "$CURVE_REPEATS"); do
                for pct in "${CURVE_POINTS[@]}"; do
                    run_name=curve$pct
                    ((CURVE_REPEATS > 1)) && run_name+=".$k"
                    row=$(one_run "$v" "$run_name" "$((sat * pct / 100))" "$CURVE_DURATION")
                    echo "$row" >>"$ROWS"; show_row "$row"
                done
            done
        fi
    fi
done
bash scripts/lab.sh down >/dev/null 2>&1 || true
# The run rows as measured: bench_summary.py can summarise several runs' rows together.
cp "$ROWS" "$OUT/rows.jsonl"
bash scripts/lab.sh rootcheck-end >"$WORK/rootcheck.txt" 2>&1 \
    || { cat "$WORK/rootcheck.txt" >&2; say "root-namespace check FAILED"; FAIL=1; }

python3 scripts/bench_summary.py "$ROWS" "$OUT/results.json" "$DURATION" "$REPEATS" "$PROFILE" "$QUICK" "$GEN" \
    "$DUT_NICE" "$IDLE_NOTE" "$SINK" || FAIL=1
if ((!QUICK)); then
    python3 scripts/bench_chart.py "$OUT/results.json" "$OUT" >/dev/null || FAIL=1
    say "results: $OUT/results.json, $OUT/*.svg"
else
    say "results: $OUT/results.json"
fi
exit "$FAIL"
