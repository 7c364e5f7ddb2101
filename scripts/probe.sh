#!/usr/bin/env bash
# shellcheck disable=SC2034  # the facilities' variables are read by name at the end
# probe.sh - which optional kernel facilities work on this machine, asked once.
# scripts/test.sh runs it before the lab steps; a step that needs a missing one says so
# in one line and falls back (README.md, "What each step needs"):
#   live_frames    BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (kernel >= 5.18; some
#                  kernels and containers refuse it even to root): the XDP generator
#                  (op25b-bench gen --engine xdp)
#   threaded_napi  /sys/class/net/DEV/threaded (kernel >= 5.12): the fair placement
#                  (scripts/lab.sh fair) pins the veths' NAPI threads with it
#   xdp_features   the kernel reports a device's XDP features (kernel >= 6.3): op25b
#                  asks whether a fast-path target takes redirected frames
# Prints shell assignments on stdout (NAME=yes|no, NAME_why='...' when no) and one line
# per facility on stderr. Exit 1 on a fault that is not a missing facility (the
# generator does not load). Needs root and target/release/op25b-bench (or
# OP25B_BENCH). Works in a namespace of its own (op25b-probe-PID: one veth pair,
# removed at exit); nothing is sent.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || { echo "probe.sh: needs root (a namespace, BPF)" >&2; exit 1; }
BENCH=${OP25B_BENCH:-$PWD/target/release/op25b-bench}
[[ -x $BENCH ]] || { echo "probe.sh: $BENCH not built (cargo build --release --workspace)" >&2; exit 1; }
NS=op25b-probe-$$
# shellcheck disable=SC2317  # invoked through the trap
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
nsx() { ip netns exec "$NS" "$@"; }
ip netns add "$NS"
nsx ip link add p0 type veth peer name p1
nsx ip link set p0 up
nsx ip link set p1 up

# live_frames, live_frames_why, xdp_features: assigned by op25b-bench probe's output.
live_frames=no live_frames_why="" xdp_features=no xdp_features_why="" threaded_napi=no threaded_napi_why=""
out=$(nsx "$BENCH" probe -i p0) || { echo "probe.sh: op25b-bench probe failed (see above)" >&2; exit 1; }
eval "$out"
if [[ $xdp_features == no ]]; then
    xdp_features_why="kernel $(uname -r) reports no XDP features (6.3 and later do)"
fi
# A veth has a NAPI instance (and so threads to pin) with GRO on.
threaded_napi_why="no /sys/class/net/DEV/threaded (kernel $(uname -r); 5.12 and later have it)"
if nsx test -e /sys/class/net/p0/threaded; then
    threaded_napi_why="writing 1 to /sys/class/net/p0/threaded failed (GRO on)"
    if nsx ethtool -K p0 gro on >/dev/null 2>&1 \
        && nsx sh -c 'echo 1 > /sys/class/net/p0/threaded' 2>/dev/null \
        && [[ $(nsx cat /sys/class/net/p0/threaded) == 1 ]]; then
        threaded_napi=yes
    fi
fi

for f in live_frames threaded_napi xdp_features; do
    why=${f}_why
    printf '%s=%s\n' "$f" "${!f}"
    if [[ ${!f} == yes ]]; then
        echo "probe.sh: $f: yes" >&2
    else
        printf '%s=%q\n' "$why" "${!why}"
        echo "probe.sh: $f: NO (${!why})" >&2
    fi
done
