#!/usr/bin/env bash
# bench.sh - measure op25b against its baselines on the veth lab, side by side.
#
# Same generator (op25b bench gen, AF_XDP, in op25b-sub on s0), same verifying sink
# (op25b bench sink, AF_XDP, in op25b-up on u0), same profile and duration for every
# DUT variant in op25b-dut between d0 and d1:
#   op25b-1w      op25b, 1 worker (configs/bench.yaml, 10k prefixes)
#   op25b-2w      op25b, 2 workers on 2-queue veths (configs/bench-2w.yaml)
#   bridge-nft    Linux bridge + nftables rules generated from configs/bench.yaml by
#                 `op25b export-nft` (what an operator would run without op25b)
#   xdp-redirect  in-kernel ceiling: an XDP program redirecting d0 -> d1 (no policy)
#
# "split" method (../shared/LAB-NOTES.md): generator and sink pinned to CPU 0; the DUT
# process pinned to CPU 1 and d0/d1 receive work steered there with RPS. Reported per
# run: sink Mpps, DUT CPU-1 microseconds per delivered frame, leaked blocked frames,
# lost passing frames. Rows where CPU 1 was not saturated (< 90 % busy) are marked
# generator-bound. After the op25b-1w rows, a run at 90 % of its median rate checks
# that nothing is lost below saturation.
#
# Results: bench-results/<UTC date-time>/results.json, mpps.svg, workers.svg.
#
# usage: bench.sh [--duration S] [--repeats N] [--variants a,b,...] [--quick]
#                 [--out DIR]
#   --quick   a few seconds per variant, correctness only (used by scripts/test.sh):
#             asserts zero leaked frames and sink count = sent - blocked at a
#             moderate rate; no charts.
# Needs root. Every run is bounded in time; the lab namespaces are removed at the end
# and root-namespace interface counters are checked unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD

DURATION=10
REPEATS=3
VARIANTS=op25b-1w,op25b-2w,bridge-nft,xdp-redirect
QUICK=0
OUT=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --variants) VARIANTS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "bench.sh: needs root (namespaces, XDP)" >&2; exit 1; }
[[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ && $REPEATS =~ ^[1-9][0-9]*$ ]] \
    || { echo "bench.sh: --duration and --repeats must be positive numbers" >&2; exit 2; }

BIN=${OP25B_BIN:-$HERE/target/release/op25b}
[[ -x $BIN ]] || { echo "bench.sh: $BIN not built (cargo build --release)" >&2; exit 1; }
NCPU=$(nproc)
((NCPU >= 2)) || { echo "bench.sh: the split method needs 2 CPUs" >&2; exit 1; }
PROFILE=configs/bench-profile.yaml
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
if ((QUICK)); then
    DURATION=2; REPEATS=1
    OUT=${OUT:-$(mktemp -d /tmp/op25b-bench-quick.XXXXXX)}
else
    OUT=${OUT:-bench-results/$STAMP}
fi
mkdir -p "$OUT"
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
cpu1_busy() { awk '$1=="cpu1" {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
HZ=$(getconf CLK_TCK)

lab_up() { # lab_up QUEUES FORWARDER
    bash scripts/lab.sh down >/dev/null 2>&1 || true
    bash scripts/lab.sh up --no-sinks --queues "$1" --forwarder "$2" >"$WORK/lab.log" 2>&1 \
        || { cat "$WORK/lab.log" >&2; say "lab up failed"; exit 1; }
    # Split: all receive work of d0/d1 on CPU 1 (mask 2).
    # With 2 queues (op25b-2w) queue 1 is worker 1's, on CPU 0 (mask 1).
    local dev
    for dev in d0 d1; do
        ip netns exec op25b-dut sh -c "echo 2 > /sys/class/net/$dev/queues/rx-0/rps_cpus"
        if (($1 > 1)); then
            ip netns exec op25b-dut sh -c "echo 1 > /sys/class/net/$dev/queues/rx-1/rps_cpus"
        fi
    done
}

DUT_PID=""
dut_start() { # dut_start VARIANT
    case $1 in
        op25b-1w|op25b-2w)
            # 1 worker: the whole process on CPU 1. 2 workers: cores 1 and 0 (this
            # 2-CPU machine has no third core, so worker 1 shares CPU 0 with the
            # generator and sink: that row is not a split-method figure).
            local cfg=configs/bench.yaml cpus=1
            [[ $1 == op25b-2w ]] && cfg=configs/bench-2w.yaml cpus=0,1
            ip netns exec op25b-dut taskset -c "$cpus" "$BIN" run --config "$cfg" --duration 600 \
                --report "$WORK/dut.json" >/dev/null 2>"$WORK/dut.log" &
            DUT_PID=$!
            PIDS+=("$DUT_PID")
            for _ in $(seq 100); do
                grep -q "op25b running" "$WORK/dut.log" 2>/dev/null && return 0
                kill -0 "$DUT_PID" 2>/dev/null || break
                sleep 0.1
            done
            cat "$WORK/dut.log" >&2; say "op25b did not start"; exit 1 ;;
        bridge-nft)
            # Replace the lab's hand-written table by one generated from the same YAML.
            ip netns exec op25b-dut nft flush ruleset
            local fam ok=0
            for fam in "bridge --reject-as-drop" "netdev"; do
                # shellcheck disable=SC2086  # two words on purpose
                "$BIN" export-nft --config configs/bench.yaml --family $fam >"$WORK/policy.nft"
                if ip netns exec op25b-dut nft -f "$WORK/policy.nft" 2>"$WORK/nft.err"; then
                    ok=1; echo "$fam" >"$WORK/nft.family"; break
                fi
            done
            ((ok)) || { cat "$WORK/nft.err" >&2; say "nft refused the generated rule set"; exit 1; }
            ip netns exec op25b-dut sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true ;;
        xdp-redirect)
            bash scripts/xdp/redirect.sh attach op25b-dut d0 d1 "$WORK/xdp" >/dev/null ;;
    esac
}

dut_stop() { # dut_stop VARIANT
    case $1 in
        op25b-*)
            kill -TERM "$DUT_PID" 2>/dev/null || true
            wait "$DUT_PID" || { say "op25b exited non-zero"; tail -5 "$WORK/dut.log" >&2; }
            DUT_PID="" ;;
        xdp-redirect) bash scripts/xdp/redirect.sh detach op25b-dut d0 ;;
        bridge-nft) : ;;
    esac
}

# one_run VARIANT RUN [RATE]: prints one JSON object (a run row) on stdout.
one_run() {
    local v=$1 n=$2 rate=${3:-} gen_args=() b0 b1 t0 t1
    rm -f "$WORK/ready" "$WORK/gen.json" "$WORK/sink.json"
    local queues=1
    [[ $v == op25b-2w ]] && queues=2
    ip netns exec op25b-up taskset -c 0 "$BIN" bench sink -i u0 --queues "$queues" --duration "$(python3 -c "print($DURATION + 20)")" \
        --idle 1.5 --dump-foreign 5 --report "$WORK/sink.json" --ready-file "$WORK/ready" >/dev/null 2>"$WORK/sink.log" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    for _ in $(seq 100); do [[ -e $WORK/ready ]] && break; sleep 0.05; done
    [[ -e $WORK/ready ]] || { cat "$WORK/sink.log" >&2; say "sink did not start"; exit 1; }
    [[ -n $rate ]] && gen_args+=(--rate "$rate")
    [[ $v == op25b-2w ]] && gen_args+=(--threads 2)
    b0=$(cpu1_busy); t0=$(date +%s.%N)
    ip netns exec op25b-sub taskset -c 0 "$BIN" bench gen -i s0 -c configs/bench.yaml -p "$PROFILE" \
        -d "$DURATION" "${gen_args[@]}" --report "$WORK/gen.json" >/dev/null 2>"$WORK/gen.log" \
        || { cat "$WORK/gen.log" >&2; say "generator failed"; exit 1; }
    b1=$(cpu1_busy); t1=$(date +%s.%N)
    wait "$sink_pid" || { cat "$WORK/sink.log" >&2; say "sink failed"; exit 1; }
    mkdir -p "$OUT/raw"
    cp "$WORK/gen.json" "$OUT/raw/$v-$n-gen.json"
    cp "$WORK/sink.json" "$OUT/raw/$v-$n-sink.json"
    cp "$WORK/sink.log" "$OUT/raw/$v-$n-sink.log"
    # Exit 3 (leak or loss) is judged below from the JSON, not here.
    "$BIN" bench report --gen "$WORK/gen.json" --sink "$WORK/sink.json" --json \
        >"$WORK/verdict.json" 2>/dev/null || true
    python3 - "$WORK/gen.json" "$WORK/sink.json" "$WORK/verdict.json" "$b0" "$b1" "$t0" "$t1" "$HZ" "$v" "$n" "${rate:-}" <<'PY'
import json, sys
g, s, v = (json.load(open(p)) for p in sys.argv[1:4])
b0, b1, t0, t1, hz = (float(x) for x in sys.argv[4:9])
busy_s = (b1 - b0) / hz
wall = t1 - t0
delivered = s["passed"] + s["leaked"]
row = {
    "variant": sys.argv[9], "run": int(sys.argv[10]),
    "rate_limit_pps": int(sys.argv[11]) if sys.argv[11] else None,
    "sent": g["sent"], "sent_block": g["sent_block"], "received": s["received"],
    "passed": s["passed"], "leaked": s["leaked"], "lost": v["lost"],
    "lost_on_generator_link": v["lost_on_generator_link"], "lost_by_dut": v["lost"] - v["lost_on_generator_link"],
    "loss_ratio": v["loss_ratio"], "out_of_order": s["out_of_order"],
    "gen_mpps": g["mpps"], "sink_mpps": s["mpps"],
    "dut_cpu_busy": busy_s / wall if wall > 0 else 0,
    "dut_us_per_frame": busy_s * 1e6 / delivered if delivered else None,
    "generator_bound": busy_s / wall < 0.9 if wall > 0 else True,
    "gen_mode": g["mode"], "sink_mode": s["mode"],
}
print(json.dumps(row))
PY
    return 0
}

bash scripts/lab.sh rootcheck-begin >/dev/null
ROWS=$WORK/rows.jsonl
: >"$ROWS"
FAIL=0
IFS=, read -r -a VLIST <<<"$VARIANTS"
for v in "${VLIST[@]}"; do
    case $v in
        op25b-1w) lab_up 1 none ;;
        op25b-2w) lab_up 2 none ;;
        bridge-nft) lab_up 1 bridge ;;
        xdp-redirect) lab_up 1 none ;;
        *) say "unknown variant '$v'"; exit 2 ;;
    esac
    dut_start "$v"
    for n in $(seq "$REPEATS"); do
        if ((QUICK)); then
            # Correctness at a rate the DUT sustains: nothing leaked, nothing lost.
            row=$(one_run "$v" "$n" 100000)
        else
            row=$(one_run "$v" "$n")
        fi
        echo "$row" >>"$ROWS"
        say "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-13s run %d: sink %.3f Mpps, gen %.3f Mpps, DUT CPU1 %.0f%% %.2f us/frame, leaked %d, lost %d (%d on the generator link)" % (r["variant"], r["run"], r["sink_mpps"], r["gen_mpps"], 100*r["dut_cpu_busy"], r["dut_us_per_frame"] or 0, r["leaked"], r["lost"], r["lost_on_generator_link"]))' "$row")"
    done
    if [[ $v == op25b-1w ]] && ((!QUICK)); then
        # Loss check below saturation: 90 % of the median sink rate, once.
        sat=$(python3 -c 'import json,sys,statistics; r=[json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["variant"]=="op25b-1w" and not json.loads(l)["rate_limit_pps"]]; print(int(statistics.median(x["sink_mpps"] for x in r)*1e6*0.9/(1-statistics.median(x["sent_block"]/x["sent"] for x in r))))' "$ROWS")
        row=$(one_run "$v" 0 "$sat")
        echo "$row" >>"$ROWS"
        say "op25b-1w at 90% of saturation ($sat frames/s offered): $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("sink %.3f Mpps, leaked %d, lost by the DUT %d (%.4f%%), on the generator link %d" % (r["sink_mpps"], r["leaked"], r["lost_by_dut"], 100*r["loss_ratio"], r["lost_on_generator_link"]))' "$row")"
    fi
    dut_stop "$v"
    if [[ $v == bridge-nft ]]; then
        ip netns exec op25b-dut nft list ruleset >"$OUT/raw/bridge-nft-counters.nft" 2>&1 || true
    fi
    [[ -f $WORK/dut.json ]] && cp "$WORK/dut.json" "$OUT/raw/$v-dut.json"
    if [[ $v == op25b-* && -f $WORK/dut.json ]]; then
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["frames_conserved"] and r["verdicts_account_for_rx"] else 1)' "$WORK/dut.json" \
            || { say "$v: op25b frame accounting broken (see $WORK/dut.json)"; FAIL=1; }
    fi
done
bash scripts/lab.sh down >/dev/null 2>&1 || true
bash scripts/lab.sh rootcheck-end >"$WORK/rootcheck.txt" 2>&1 \
    || { cat "$WORK/rootcheck.txt" >&2; say "root-namespace check FAILED"; FAIL=1; }

python3 - "$ROWS" "$OUT/results.json" "$DURATION" "$REPEATS" "$PROFILE" "$QUICK" <<'PY' || FAIL=1
import json, platform, statistics, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
labels = {"op25b-1w": ("op25b, 1 worker", "op25b", 1), "op25b-2w": ("op25b, 2 workers", "op25b", 2),
          "bridge-nft": ("bridge + nftables", "baseline", None), "xdp-redirect": ("XDP redirect (ceiling)", "baseline", None)}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
       "kernel": platform.release(), "machine": f"{__import__('os').cpu_count()} vCPU {cpu}",
       "method": "split", "xdp_mode": rows[0]["sink_mode"] if rows else "?",
       "profile": sys.argv[5], "frame_size": 64, "duration_s": float(sys.argv[3]),
       "repeats": int(sys.argv[4]), "quick": sys.argv[6] == "1", "variants": [], "checks": []}
problems = []
for name in dict.fromkeys(r["variant"] for r in rows):
    runs = [r for r in rows if r["variant"] == name and (out["quick"] or not r["rate_limit_pps"])]
    label, kind, workers = labels[name]
    mpps = [r["sink_mpps"] for r in runs]
    us = [r["dut_us_per_frame"] for r in runs if r["dut_us_per_frame"]]
    out["variants"].append({"name": name, "label": label, "kind": kind, "workers": workers, "runs": runs,
        "median_mpps": statistics.median(mpps), "min_mpps": min(mpps), "max_mpps": max(mpps),
        "median_us_per_frame": statistics.median(us) if us else None,
        "median_cpu_busy": statistics.median(r["dut_cpu_busy"] for r in runs),
        "generator_bound": sum(r["generator_bound"] for r in runs) * 2 > len(runs)})
    for r in rows:
        if r["variant"] != name:
            continue
        if r["leaked"] and name != "xdp-redirect":  # the ceiling applies no policy
            problems.append(f"{name} run {r['run']}: {r['leaked']} blocked frames LEAKED")
        if r["rate_limit_pps"]:
            out["checks"].append({"variant": name, "offered_pps": r["rate_limit_pps"], "sink_mpps": r["sink_mpps"],
                                  "lost": r["lost"], "lost_by_dut": r["lost_by_dut"], "lost_on_generator_link": r["lost_on_generator_link"],
                                  "loss_ratio": r["loss_ratio"], "leaked": r["leaked"]})
            if name != "xdp-redirect" and (r["lost_by_dut"] != 0 if out["quick"] else r["loss_ratio"] > 0.001):
                problems.append(f"{name}: the DUT lost {r['lost_by_dut']} passing frames ({100*r['loss_ratio']:.3f}%) at {r['rate_limit_pps']} frames/s")
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(f"\n{'variant':24} {'sink Mpps (min-max)':24} {'us/frame':>9} {'CPU1':>6} {'leaked':>7}")
for v in out["variants"]:
    gb = "  generator-bound" if v["generator_bound"] else ""
    us = f"{v['median_us_per_frame']:.2f}" if v["median_us_per_frame"] else "-"
    print(f"{v['label']:24} {v['median_mpps']:.3f} ({v['min_mpps']:.3f}-{v['max_mpps']:.3f}){'':5} {us:>9} {100*v['median_cpu_busy']:5.0f}% {sum(r['leaked'] for r in v['runs']):7}{gb}")
for c in out["checks"]:
    print(f"check {c['variant']} at {c['offered_pps']} frames/s offered: sink {c['sink_mpps']:.3f} Mpps, lost by the DUT {c['lost_by_dut']} ({100*c['loss_ratio']:.4f}%), on the generator's link {c['lost_on_generator_link']}, leaked {c['leaked']}")
for p in problems:
    print("PROBLEM:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
if ((!QUICK)); then
    python3 scripts/bench_chart.py "$OUT/results.json" "$OUT" >/dev/null || FAIL=1
    say "results: $OUT/results.json, $OUT/mpps.svg, $OUT/workers.svg"
else
    say "results: $OUT/results.json"
fi
exit "$FAIL"
