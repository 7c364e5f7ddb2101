#!/usr/bin/env bash
# test.sh - op25b's whole test suite: the README's test command; .ci/run runs exactly
# this. Installs what is missing (setup.sh), checks formatting and lints, builds every
# target, and runs unit, property, golden-fixture, CLI, corpus, tshark and - as root -
# the end-to-end lab tests (veth namespaces, swaks, aiosmtpd). Exit non-zero on any
# failure. As root it also runs the README's main command (scripts/demo.sh: the whole
# SMTP matrix and the zero-loss load run), so a broken demo turns CI red. Everything is
# compiled once, in the build step; no later step compiles anything. Optional kernel
# facilities are probed once (scripts/probe.sh); a step that needs a missing one says so
# in one line and falls back. What each step needs: README.md. Time per stage: at the end.
#
# Root-only tests are #[ignore]d (a plain `cargo test` lists them as ignored, never as
# passed); as root this script runs them with --include-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's name and start time, for the table at the end.
STAGES=()
STARTS=()
step() {
    printf '\n== test.sh: %s\n' "$*"
    STAGES+=("$*")
    STARTS+=("$SECONDS")
}
# The stage table: how long each stage took (printed at the end, and on failure).
stage_table() {
    local i n=${#STAGES[@]} end
    printf '\n== test.sh: time per stage\n'
    for ((i = 0; i < n; i++)); do
        if ((i + 1 < n)); then end=${STARTS[i + 1]}; else end=$SECONDS; fi
        printf '%6d s  %s\n' $((end - STARTS[i])) "${STAGES[i]:0:100}"
    done
    # Inside `cargo test`: the test binaries that took 10 s or more.
    if [[ -f /tmp/op25b-test.log ]]; then
        awk '/^     Running /{bin=$2} /^test result:.*finished in/{t=$NF; sub("s$","",t); if (t+0 >= 10) printf "        %6.0f s  cargo test: %s\n", t, bin}' /tmp/op25b-test.log
    fi
}
trap stage_table EXIT
rm -f /tmp/op25b-test.log
t0=$SECONDS

step "setup"
if [[ $EUID -eq 0 ]]; then
    bash scripts/setup.sh
else
    bash scripts/setup.sh || {
        echo "test.sh: packages are missing (see above); run as root once: sudo scripts/setup.sh" >&2
        exit 1
    }
    echo "test.sh: not root - the end-to-end lab tests will report that they did not run"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (all targets)"
cargo clippy --release --workspace --all-targets -- -D warnings

step "build (release, all targets, the appliance and its test kit)"
cargo build --release --workspace --all-targets

step "shellcheck scripts"
shellcheck -x scripts/*.sh scripts/xdp/*.sh .ci/run
sh -n configs/systemd/op25b-generator
shellcheck -s sh configs/systemd/op25b-generator

step "systemd unit: systemd-analyze verify and security (exposure score), the generator"
bash scripts/check_unit.sh

step "monitoring: promtool check/test rules, the Grafana dashboard's queries"
bash scripts/check_monitoring.sh

# Optional kernel facilities, asked once (scripts/probe.sh); the steps below that need
# one say in one line when it is missing here and fall back.
live_frames=no live_frames_why="not probed (not root)"
threaded_napi=no threaded_napi_why="" xdp_features=no xdp_features_why=""
if [[ $EUID -eq 0 ]]; then
    step "probe optional kernel facilities (live-frames BPF_PROG_RUN, threaded NAPI, xdp_features)"
    probe=$(bash scripts/probe.sh)
    eval "$probe"
    if [[ $threaded_napi != yes ]]; then
        echo "test.sh: FALLBACK: no threaded NAPI here ($threaded_napi_why): scripts/lab.sh fair steers the DUT veths' receive work with RPS and leaves the tester's where the kernel puts it (demo, soaks, benchmarks)"
    fi
    if [[ $xdp_features != yes ]]; then
        echo "test.sh: FALLBACK: no XDP features reported here ($xdp_features_why): op25b cannot ask whether a veth takes redirected frames and keeps its fast path on"
    fi
fi

TEST_ARGS=()
if [[ $EUID -eq 0 ]]; then
    TEST_ARGS=(-- --include-ignored)
    step "cargo test (unit, property, integration, and the root-only end-to-end tests; benches run once as tests)"
else
    step "cargo test (unit, property, integration; root-only tests listed as ignored; benches run once as tests)"
fi
# The examples hold no tests: the build step compiled them (as bench.sh runs them), and
# `cargo test --examples` would only compile them again with the test harness.
if grep -rlE '#\[(tokio::)?test\]' examples/ >/dev/null 2>&1; then
    echo "test.sh: an example has a #[test]: add --examples to the cargo test below" >&2
    exit 1
fi
set +e
# Libraries, binaries and integration tests take the harness's --include-ignored; the
# criterion benches (harness = false) run once as tests apart. The soaks of
# tests/hardening.rs run their short form (scripts/soak.py: OP25B_SOAK_SECS, 20 s).
cargo test --release --workspace --lib --bins --tests --no-fail-fast "${TEST_ARGS[@]}" 2>&1 \
    | tee /tmp/op25b-test.log
rc=${PIPESTATUS[0]}
cargo test --release --workspace --benches --no-fail-fast 2>&1 | tee -a /tmp/op25b-test.log
rc_benches=${PIPESTATUS[0]}
((rc == 0)) && rc=$rc_benches
# Doc tests: the compile_fail one proves a frame handle cannot be used once given away.
cargo test --release --workspace --doc --no-fail-fast 2>&1 | tee -a /tmp/op25b-test.log
rc_doc=${PIPESTATUS[0]}
((rc == 0)) && rc=$rc_doc
set -e
if [[ $rc -ne 0 ]]; then
    echo "test.sh: cargo test FAILED (exit $rc); failures:" >&2
    grep -E '^test .* FAILED|panicked at' /tmp/op25b-test.log >&2 || true
    exit 1
fi

if [[ $EUID -eq 0 ]]; then
    step "the README's main command: scripts/demo.sh (SMTP matrix + zero-loss load run)"
    bash scripts/demo.sh
else
    echo "test.sh: not root - scripts/demo.sh (the README's main command) did not run"
fi

if [[ $EUID -eq 0 ]]; then
    step "benchmark harness, short version (correctness only: zero leaked, sink = sent - blocked)"
    bash scripts/bench.sh --quick
    # The XDP generator needs BPF_PROG_RUN with live frames (probed above), which some
    # kernels and containers refuse even to root: then the AF_XDP generator feeds the
    # XDP sink. Any failure fails the suite.
    if [[ $live_frames == yes ]]; then
        step "benchmark harness, short version with the XDP engines (op25b-bench gen --engine xdp, sink --engine xdp)"
        bash scripts/bench.sh --quick --gen xdp --sink xdp --variants op25b,op25b-userspace
    else
        step "benchmark harness, short version with the XDP sink (FALLBACK: the AF_XDP generator; no live frames here)"
        echo "test.sh: FALLBACK: the XDP generator needs BPF_PROG_RUN with live frames, which this machine refuses ($live_frames_why): the XDP-engine benchmark runs with the AF_XDP generator (--gen afxdp) and the XDP sink"
        bash scripts/bench.sh --quick --gen afxdp --sink xdp --variants op25b,op25b-userspace
    fi
else
    echo "test.sh: not root - the short benchmark (scripts/bench.sh --quick) did not run"
fi

if [[ $EUID -eq 0 ]]; then
    step "package: cargo deb, lintian, dpkg -i, installed checks, dpkg --purge"
    bash scripts/package.sh --check
else
    echo "test.sh: not root - the package install check (scripts/package.sh --check) did not run"
fi

if [[ $EUID -eq 0 ]]; then
    step "leftovers"
    if ip netns list | grep -qE '^op25b-(sub|dut|up|e2e|probe)'; then
        echo "test.sh: a test left a lab namespace behind" >&2
        ip netns list >&2
        exit 1
    fi
fi

trap - EXIT
stage_table
printf '\n== test.sh: all passed in %d s\n' $((SECONDS - t0))
