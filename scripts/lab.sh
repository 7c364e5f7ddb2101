#!/usr/bin/env bash
# lab.sh - the op25b veth lab: three network namespaces joined by veth pairs.
#
#   op25b-sub  s0 ==veth== d0  op25b-dut  d1 ==veth== u0  op25b-up
#   (subscriber host)        (the appliance)         (relay + external MTA)
#
# Nothing is ever created in the root namespace: each veth pair is created
# from inside op25b-sub / op25b-up with its peer placed straight into
# op25b-dut.  Every address is a documentation address (RFC 5737 / RFC 3849).
#
#   op25b-sub s0 (02:00:00:00:01:01)        op25b-up u0 (02:00:00:00:02:01)
#     198.51.100.10    dynamic               203.0.113.25    ISP relay (allowed)
#     198.51.100.200   static                203.0.113.80    external MTA
#     198.51.100.130   quarantine            2001:db8:ff::25 ISP relay (allowed)
#     192.0.2.10       icmp class            2001:db8:ff::80 external MTA
#     192.0.2.140      smtp-notice class     routes 198.51.100.0/24, 192.0.2.0/25,
#     2001:db8:100::10 dynamic                 192.0.2.128/26 src 203.0.113.80,
#     2001:db8:100::200 static                 2001:db8:100::/48, 2001:db8:200::/48
#     2001:db8:100:666::10 quarantine          and 2001:db8:300::/48 src ::80
#     2001:db8:200::10 icmp class
#     2001:db8:300::10 smtp-notice class
#     routes 203.0.113.0/24 src .10, 2001:db8:ff::/48 src 2001:db8:100::10
#
#   op25b-dut: d0 (02:00:00:00:01:02, subscriber side), d1 (02:00:00:00:02:02,
#   upstream side); no addresses, IPv6 disabled, promiscuous, lo up.
#
# All routes are on-link (dev only), so ARP and ND cross the L2 bump.  TX
# checksum offload, TSO and GSO are off on all four veth ends: AF_XDP copy
# mode forwards raw frames, so no CHECKSUM_PARTIAL skbs and no frames larger
# than the MTU may exist.  GRO is off on d0/d1 and on on the host ends s0/u0,
# so that they take the frames op25b's XDP fast path redirects to them.
#
# SMTP sinks (scripts/smtp_sink.py, run with /usr/bin/python3):
#   op25b-up : ports 25, 587 and 465 (implicit TLS, self-signed cert) on all
#              four upstream addresses, spool /run/op25b-lab/spool-up
#   op25b-sub: port 25 on 198.51.100.10, 198.51.100.200, 2001:db8:100::10,
#              2001:db8:100::200 (inbound IP25B test), spool .../spool-sub
#
# Forwarders (--forwarder):
#   none   (default) d0/d1 are left alone; op25b bridges them with AF_XDP.
#   bridge br0 in op25b-dut with d0+d1 plus an nftables table implementing
#          the lab OP25B policy (configs/lab.yaml) - a reference/baseline for
#          scripts/matrix.sh and benchmarks.  See policy_ruleset below for the
#          family used (bridge, or netdev ingress when the kernel's bridge
#          family cannot reject).
#
# State: /run/op25b-lab (pidfiles, spools, certs, logs, nft ruleset).
#
# Root-namespace check (run around a test session):
#   lab.sh rootcheck-begin          snapshot root-ns rx/tx packet counters
#   lab.sh rootcheck-end [MAX]      print deltas; fail if any root interface
#                                   moved more than MAX packets (default
#                                   10000), if s0/d0/d1/u0/br0 exists in the
#                                   root ns, or if a lab-range address/route
#                                   appeared there since rootcheck-begin.
#
# Environment: LAB_SINK_TIMEOUT (seconds to wait for the sinks, default 20).

set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SINK=$HERE/smtp_sink.py
PYTHON=/usr/bin/python3

NS_SUB=op25b-sub
NS_DUT=op25b-dut
NS_UP=op25b-up
ALL_NS=("$NS_SUB" "$NS_DUT" "$NS_UP")

STATE=/run/op25b-lab
ROOTCHECK_SNAP=/run/op25b-rootcheck.snap     # counters
ROOTCHECK_NET=/run/op25b-rootcheck.net       # lab-range addresses/routes
SINK_TIMEOUT=${LAB_SINK_TIMEOUT:-20}

MAC_S0=02:00:00:00:01:01
MAC_D0=02:00:00:00:01:02
MAC_D1=02:00:00:00:02:02
MAC_U0=02:00:00:00:02:01
MAC_BR0=02:00:00:00:00:fe
MTU=1500                # `up --mtu N` (LAB_MTU): all four veth ends

SUB_V4=(198.51.100.10 198.51.100.200 198.51.100.130 192.0.2.10 192.0.2.140)
SUB_V6=(2001:db8:100::10 2001:db8:100::200 2001:db8:100:666::10 2001:db8:200::10 2001:db8:300::10)
UP_V4=(203.0.113.25 203.0.113.80)
UP_V6=(2001:db8:ff::25 2001:db8:ff::80)
SUB_SINK_ADDRS=(198.51.100.10 198.51.100.200 2001:db8:100::10 2001:db8:100::200)
UP_SINK_PORTS=(25 587 465)
LAB_IFNAMES=(s0 d0 d1 u0 br0)

usage() {
    cat <<EOF
usage: $PROG up [--forwarder none|bridge] [--queues N] [--mtu N] [--no-sinks]
       $PROG down
       $PROG status
       $PROG fair [--dut-cpu N] [--tester-cpu M] [--dut-napi-nice N]
       $PROG rootcheck-begin
       $PROG rootcheck-end [MAX_PACKETS]     (default 10000)

  up       build the lab (namespaces $NS_SUB, $NS_DUT, $NS_UP), start the
           SMTP sinks; refuses if the lab already exists.
           --forwarder none    (default) leave d0/d1 to op25b
           --forwarder bridge  Linux bridge br0 + nftables OP25B policy
           --queues N          N RX/TX queues per veth end (default 1)
           --mtu N             MTU of the four veth ends (default $MTU; e.g. 9000
                               for jumbo links, 68..65535)
           --no-sinks          do not start the SMTP sinks (benchmarks)
  down     stop the sinks, delete the namespaces and $STATE (idempotent)
  status   namespaces, links with counters, XDP on d0/d1, sinks, nft counters
  fair     the fair benchmark placement (docs/benchmarks.md), run once the XDP
           programs are attached (op25b, the sink, the generator): threaded NAPI
           on every veth end that has NAPI; napi/d0-*, napi/d1-* pinned to the
           DUT's CPU (default 1), at nice 0 (--dut-napi-nice N; bench.sh runs
           the DUT's own process at nice -10, see docs/benchmarks.md);
           napi/s0-*, napi/u0-* pinned to the tester's CPU
           (default 0) at SCHED_FIFO 50, so the tester's receive work is never
           billed to the DUT and never starved by it; and a pfifo qdisc on all
           four ends, so that a veth whose peer's 256-frame receive ring is full
           pushes back on its sender (as a NIC's TX ring does) instead of
           dropping: threaded NAPI drains that ring later than the sender's
           softirq did.  d0/d1 without an XDP program (the bridge baseline):
           their receive work goes to the DUT's CPU with RPS instead.  Pin the test tools
           themselves with taskset -c M.  Re-run after op25b restarts (its XDP
           detach removes the veth NAPI instances and their threads).
  rootcheck-begin / rootcheck-end
           check that the root network namespace was left alone
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_die() { printf '%s: %s\n' "$PROG" "$*" >&2; usage >&2; exit 2; }

need_root() {
    [[ $EUID -eq 0 ]] || die "must run as root (network namespaces, veths, nft)"
}

need_cmds() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found (see scripts/setup.sh)"
    done
}

ns_exists() { [[ -e /run/netns/$1 ]]; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# True when this shell is in the root network namespace.  Compare with pid
# 1's namespace when readable; in sandboxes where /proc/1/ns is off limits,
# settle for "not inside any named namespace (/run/netns/*)".
in_root_netns() {
    local self init f
    self=$(stat -L -c %i /proc/self/ns/net) || return 1
    if init=$(stat -L -c %i /proc/1/ns/net 2>/dev/null); then
        [[ $self == "$init" ]]
        return
    fi
    for f in /run/netns/*; do
        [[ -e $f ]] || continue
        [[ $(stat -L -c %i "$f" 2>/dev/null) == "$self" ]] && return 1
    done
    return 0
}

# --- process helpers -----------------------------------------------------------

pid_alive() {   # running and not a zombie
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

pid_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# Our sink: a smtp_sink.py whose command line names our state dir.
is_lab_sink() {
    local cmd
    cmd=$(pid_cmdline "$1")
    [[ $cmd == *smtp_sink.py* && $cmd == *"$STATE/"* ]]
}

# stop_pid PID LABEL: SIGTERM, wait up to 5 s, then SIGKILL (bounded).
stop_pid() {
    local pid=$1 label=$2 i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || { say "stopped $label (pid $pid)"; return 0; }
        sleep 0.1
    done
    warn "$label (pid $pid) ignored SIGTERM for 5 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    warn "$label (pid $pid) still alive after SIGKILL"
}

# --- down --------------------------------------------------------------------------

stop_sinks() {
    local f pid name
    [[ -d $STATE ]] || return 0
    for f in "$STATE"/smtp-*.pid "$STATE"/smtp-*.launch; do
        [[ -f $f ]] || continue
        pid=$(tr -dc '0-9' <"$f")
        name=${f##*/}
        name=${name%.*}
        if [[ -n $pid ]] && pid_alive "$pid"; then
            if is_lab_sink "$pid"; then
                stop_pid "$pid" "$name"
            else
                warn "$f names pid $pid which is not a lab sink; not touching it"
            fi
        fi
    done
}

# Anything still running inside a lab namespace was started for the lab
# (an op25b under test, a stray swaks): stop it by PID so the namespace,
# and with it the veths, really goes away.
stop_ns_stragglers() {
    local ns pid
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
            [[ $pid == "$$" ]] && continue
            pid_alive "$pid" || continue
            warn "process $pid still in $ns: $(pid_cmdline "$pid")"
            stop_pid "$pid" "process $pid in $ns"
        done
    done
}

teardown() {
    local ns
    stop_sinks
    stop_ns_stragglers
    for ns in "${ALL_NS[@]}"; do
        if ns_exists "$ns"; then
            ip netns del "$ns" 2>/dev/null || warn "ip netns del $ns failed"
            say "deleted namespace $ns"
        fi
    done
    if [[ -d $STATE ]]; then
        rm -rf -- "$STATE"
        say "removed $STATE"
    fi
}

cmd_down() {
    [[ $# -eq 0 ]] || usage_die "down takes no arguments"
    need_root
    teardown
    say "lab is down"
}

# --- up --------------------------------------------------------------------------

# Sysctls set in a fresh namespace before any link exists in it, so that the
# "default" values apply to the veths created there.
ns_init() {
    local ns=$1
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
    nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ip -n "$ns" link set lo up
}

veth_offloads_off() {
    local ns=$1 dev=$2 feats
    # tx off = tx-checksumming off (also drops TSO); then GRO/TSO/GSO explicitly.
    nsx "$ns" ethtool -K "$dev" tx off >/dev/null 2>&1 \
        || die "ethtool -K $dev tx off failed in $ns"
    nsx "$ns" ethtool -K "$dev" gro off tso off gso off >/dev/null 2>&1 \
        || die "ethtool -K $dev gro off tso off gso off failed in $ns"
    feats=$(nsx "$ns" ethtool -k "$dev")
    if grep -Eq '^(tx-checksumming|generic-receive-offload|tcp-segmentation-offload|generic-segmentation-offload): on' <<<"$feats"; then
        die "offloads still on for $dev in $ns: $(grep -E '^(tx-checksumming|generic-receive-offload|tcp-segmentation-offload|generic-segmentation-offload):' <<<"$feats" | tr '\n' ' ')"
    fi
}

build_links() {
    # Created from inside the end namespaces; the peer goes straight into
    # op25b-dut.  Nothing appears in the root namespace at any time.
    # LAB_QUEUES (from `up --queues N`): RX/TX queues per veth end, so op25b
    # can run one worker per queue pair.
    # LAB_MTU (from `up --mtu N`): the MTU of all four ends.
    local q=${LAB_QUEUES:-1} mtu=${LAB_MTU:-$MTU}
    ip -n "$NS_SUB" link add s0 address "$MAC_S0" mtu "$mtu" \
        numtxqueues "$q" numrxqueues "$q" type veth \
        peer name d0 address "$MAC_D0" mtu "$mtu" netns "$NS_DUT" \
        numtxqueues "$q" numrxqueues "$q"
    ip -n "$NS_UP" link add u0 address "$MAC_U0" mtu "$mtu" \
        numtxqueues "$q" numrxqueues "$q" type veth \
        peer name d1 address "$MAC_D1" mtu "$mtu" netns "$NS_DUT" \
        numtxqueues "$q" numrxqueues "$q"

    veth_offloads_off "$NS_SUB" s0
    veth_offloads_off "$NS_DUT" d0
    veth_offloads_off "$NS_DUT" d1
    veth_offloads_off "$NS_UP" u0
    # The host ends receive op25b's XDP fast path: a veth takes frames redirected
    # into it (ndo_xdp_xmit of d0/d1) only while its peer runs NAPI, which an XDP
    # program or GRO turns on; without it op25b keeps its fast path off.  GRO on a
    # host end only merges what that host's own stack receives.
    nsx "$NS_SUB" ethtool -K s0 gro on >/dev/null 2>&1 || die "ethtool -K s0 gro on failed in $NS_SUB"
    nsx "$NS_UP" ethtool -K u0 gro on >/dev/null 2>&1 || die "ethtool -K u0 gro on failed in $NS_UP"

    ip -n "$NS_DUT" link set d0 promisc on up
    ip -n "$NS_DUT" link set d1 promisc on up
    ip -n "$NS_SUB" link set s0 up
    ip -n "$NS_UP" link set u0 up
}

configure_addresses() {
    local a
    for a in "${SUB_V4[@]}"; do ip -n "$NS_SUB" addr add "$a/32" dev s0; done
    for a in "${SUB_V6[@]}"; do ip -n "$NS_SUB" addr add "$a/128" dev s0 nodad; done
    ip -n "$NS_SUB" route add 203.0.113.0/24 dev s0 scope link src 198.51.100.10
    ip -n "$NS_SUB" -6 route add 2001:db8:ff::/48 dev s0 src 2001:db8:100::10

    for a in "${UP_V4[@]}"; do ip -n "$NS_UP" addr add "$a/32" dev u0; done
    for a in "${UP_V6[@]}"; do ip -n "$NS_UP" addr add "$a/128" dev u0 nodad; done
    ip -n "$NS_UP" route add 198.51.100.0/24 dev u0 scope link src 203.0.113.80
    ip -n "$NS_UP" route add 192.0.2.0/25 dev u0 scope link src 203.0.113.80
    ip -n "$NS_UP" route add 192.0.2.128/26 dev u0 scope link src 203.0.113.80
    ip -n "$NS_UP" -6 route add 2001:db8:100::/48 dev u0 src 2001:db8:ff::80
    ip -n "$NS_UP" -6 route add 2001:db8:200::/48 dev u0 src 2001:db8:ff::80
    ip -n "$NS_UP" -6 route add 2001:db8:300::/48 dev u0 src 2001:db8:ff::80
}

# policy_ruleset FAMILY REJECT
#   FAMILY: bridge (prerouting hook, iifname d0/d1) or netdev (ingress hooks
#           on d0 and d1; these run before the bridge rx handler)
#   REJECT: yes (tcp reset / icmp admin-prohibited) or no (every reject
#           becomes drop)
# The rule set is configs/lab.yaml's policy as `op25b export-nft` renders it: the
# lab policy has one source (the binary is OP25B_BIN, default target/release/op25b).
policy_ruleset() {
    local family=$1 reject=$2 top bin
    top=$(dirname "$HERE")
    bin=${OP25B_BIN:-$top/target/release/op25b}
    [[ -x $bin ]] || die "--forwarder bridge renders configs/lab.yaml with op25b export-nft: $bin is not built (cargo build --release)"
    local args=(export-nft -c "$top/configs/lab.yaml" --family "$family")
    [[ $reject == yes ]] || args+=(--reject-as-drop)
    "$bin" "${args[@]}"
}

setup_bridge_forwarder() {
    local f sysctl_dir=/proc/sys/net/bridge
    ip -n "$NS_DUT" link add br0 address "$MAC_BR0" type bridge \
        stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$NS_DUT" link set d0 master br0
    ip -n "$NS_DUT" link set d1 master br0
    ip -n "$NS_DUT" link set br0 up
    # Bridged frames must not be diverted through the IP-family hooks.
    for f in bridge-nf-call-iptables bridge-nf-call-ip6tables bridge-nf-call-arptables; do
        if nsx "$NS_DUT" test -e "$sysctl_dir/$f"; then
            nsx "$NS_DUT" sysctl -qw "net.bridge.$f=0"
        fi
    done

    # nft's bridge family can only reject when the kernel has
    # CONFIG_NFT_BRIDGE_REJECT (this lab's 6.18 kernel does not).  The netdev
    # family's ingress hook can reject (CONFIG_NFT_REJECT_NETDEV) and runs on
    # d0/d1 before the bridge sees the frame, so it is the equivalent second
    # choice.  Last resort: bridge family with every reject turned into drop
    # (then the refused/unreachable matrix cases observe "timeout").
    local family reject err family_reject hint
    for family_reject in bridge:yes netdev:yes bridge:no; do
        family=${family_reject%:*} reject=${family_reject#*:}
        policy_ruleset "$family" "$reject" >"$STATE/policy.nft"
        if err=$(nsx "$NS_DUT" nft -f "$STATE/policy.nft" 2>&1); then
            echo "$family reject=$reject" >"$STATE/policy"
            say "nftables policy loaded: table $family op25b (reject=$reject)"
            [[ $reject == yes ]] || warn "policy uses drop instead of reject: matrix 'refused'/'unreachable' cases will fail"
            return 0
        fi
        hint=""
        [[ $family_reject == bridge:yes ]] && hint=" (kernel without CONFIG_NFT_BRIDGE_REJECT?)"
        say "nftables: table $family op25b with reject=$reject not accepted by the kernel$hint: ${err%%$'\n'*}"
    done
    die "could not load any nftables OP25B policy (see $STATE/policy.nft)"
}

make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$STATE/tls/key.pem" -out "$STATE/tls/cert.pem" -days 30 \
        -subj "/CN=smtp-sink.example.net" \
        -addext "subjectAltName=DNS:smtp-sink.example.net,IP:203.0.113.25,IP:203.0.113.80,IP:2001:db8:ff::25,IP:2001:db8:ff::80" \
        >"$STATE/tls/openssl.log" 2>&1 || { cat "$STATE/tls/openssl.log" >&2; die "openssl could not make the sink certificate"; }
    chmod 600 "$STATE/tls/key.pem"
}

fmt_listen() { if [[ $1 == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi; }

# start_sink NAME NS ARGS...: background sink, pid of the launch in NAME.launch
start_sink() {
    local name=$1 ns=$2
    shift 2
    # ip netns exec and setsid both exec in place: $! is the python's pid.
    ip netns exec "$ns" setsid "$PYTHON" "$SINK" \
        --spool "$STATE/spool-$name" --pidfile "$STATE/smtp-$name.pid" "$@" \
        </dev/null >"$STATE/smtp-$name.log" 2>&1 &
    echo $! >"$STATE/smtp-$name.launch"
}

wait_sinks() {
    local name pid deadline ready
    deadline=$((SECONDS + SINK_TIMEOUT))
    while :; do
        ready=1
        for name in "$@"; do
            [[ -s $STATE/smtp-$name.pid ]] && continue
            ready=0
            pid=$(<"$STATE/smtp-$name.launch")
            if ! pid_alive "$pid"; then
                wait "$pid" 2>/dev/null || true
                echo "---- $STATE/smtp-$name.log" >&2
                tail -n 20 "$STATE/smtp-$name.log" >&2 || true
                die "SMTP sink '$name' exited before becoming ready"
            fi
        done
        ((ready)) && return 0
        if ((SECONDS >= deadline)); then
            for name in "$@"; do
                [[ -s $STATE/smtp-$name.pid ]] && continue
                echo "---- $STATE/smtp-$name.log" >&2
                tail -n 20 "$STATE/smtp-$name.log" >&2 || true
            done
            die "SMTP sinks not ready after ${SINK_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

start_sinks() {
    local a p args=()
    mkdir -p "$STATE/tls"
    make_cert
    for a in "${UP_V4[@]}" "${UP_V6[@]}"; do
        for p in "${UP_SINK_PORTS[@]}"; do args+=(--listen "$(fmt_listen "$a" "$p")"); done
    done
    start_sink up "$NS_UP" "${args[@]}" --tls-port 465 \
        --cert "$STATE/tls/cert.pem" --key "$STATE/tls/key.pem"
    args=()
    for a in "${SUB_SINK_ADDRS[@]}"; do args+=(--listen "$(fmt_listen "$a" 25)"); done
    start_sink sub "$NS_SUB" "${args[@]}"
    wait_sinks up sub
    say "SMTP sinks ready: up (pid $(<"$STATE/smtp-up.pid"), ${#UP_V4[@]}+${#UP_V6[@]} addrs x ports ${UP_SINK_PORTS[*]}, 465 implicit TLS), sub (pid $(<"$STATE/smtp-sub.pid"), port 25)"
}

UP_DONE=0
on_up_exit() {
    local rc=$?
    if ((rc != 0 && UP_DONE == 0)); then
        warn "lab up failed (exit $rc); tearing down what was built"
        trap - EXIT
        teardown || true
    fi
}

# --- fair placement (threaded NAPI) -------------------------------------------------

# napi_pids DEV: pids of the threaded-NAPI kthreads of DEV (named napi/DEV-<id>).
napi_pids() {
    local dev=$1 p comm
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        [[ $comm == "napi/$dev-"* ]] && echo "${p#/proc/}"
    done
}

# fair_dev NS DEV CPU [fifo:PRIO|nice:N]: threaded NAPI on NS/DEV, its kthreads on
# CPU, at SCHED_FIFO PRIO or at nice N. Prints one line; returns 1 when DEV has no NAPI
# instance (no XDP program yet).
fair_dev() {
    local ns=$1 dev=$2 cpu=$3 sched=${4:-} pids p prio="" nice="" how=""
    case $sched in
        fifo:*) prio=${sched#fifo:}; how=" at SCHED_FIFO $prio" ;;
        nice:*) nice=${sched#nice:}; how=" at nice $nice" ;;
    esac
    if ! nsx "$ns" sh -c "echo 1 > /sys/class/net/$dev/threaded" 2>/dev/null; then
        say "fair: $ns/$dev has no NAPI instance (no XDP program attached): left as is"
        return 1
    fi
    mapfile -t pids < <(napi_pids "$dev")
    ((${#pids[@]})) || die "fair: threaded NAPI set on $ns/$dev but no napi/$dev-* thread found"
    for p in "${pids[@]}"; do
        taskset -pc "$cpu" "$p" >/dev/null || die "fair: cannot pin napi/$dev thread $p to CPU $cpu"
        if [[ -n $prio ]]; then
            chrt -f -p "$prio" "$p" || die "fair: cannot set SCHED_FIFO $prio on napi/$dev thread $p"
        elif [[ -n $nice ]]; then
            renice -n "$nice" -p "$p" >/dev/null || die "fair: cannot set nice $nice on napi/$dev thread $p"
        fi
    done
    say "fair: $ns/$dev threaded NAPI, ${#pids[@]} thread(s) (${pids[*]}) on CPU $cpu$how"
}

cmd_fair() {
    local dut_cpu=1 tester_cpu=0 ncpu dut_nice=0
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dut-napi-nice) [[ $# -ge 2 && $2 =~ ^-?[0-9]+$ && $2 -ge -20 && $2 -le 19 ]] \
                    || usage_die "--dut-napi-nice needs a nice value (-20..19)"
                dut_nice=$2; shift 2 ;;
            --dut-cpu) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage_die "--dut-cpu needs a CPU number"
                dut_cpu=$2; shift 2 ;;
            --tester-cpu) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage_die "--tester-cpu needs a CPU number"
                tester_cpu=$2; shift 2 ;;
            *) usage_die "fair: unknown argument '$1'" ;;
        esac
    done
    need_root
    need_cmds taskset chrt renice tc
    ncpu=$(nproc)
    ((dut_cpu < ncpu && tester_cpu < ncpu)) || die "fair: CPUs $dut_cpu/$tester_cpu: this machine has $ncpu"
    ((dut_cpu != tester_cpu)) || die "fair: the DUT and the tester need different CPUs"
    for ns in "${ALL_NS[@]}"; do ns_exists "$ns" || die "fair: namespace $ns missing (lab.sh up first)"; done
    # The DUT's receive work (d0, d1: frames towards op25b) on the DUT's CPU; the
    # tester's (s0, u0: frames op25b sent) on the tester's, at a real-time priority.
    # Without an XDP program (the bridge baseline) a veth has no NAPI: its receive work
    # is skb backlog work, which RPS moves (RPS does not move XDP work).
    local dev mask
    mask=$(printf '%x' $((1 << dut_cpu)))
    for dev in d0 d1; do
        if ! fair_dev "$NS_DUT" "$dev" "$dut_cpu" "nice:$dut_nice"; then
            nsx "$NS_DUT" sh -c "for q in /sys/class/net/$dev/queues/rx-*; do echo $mask > \$q/rps_cpus; done" \
                || die "fair: cannot steer $dev's receive work to CPU $dut_cpu with RPS"
            say "fair: $NS_DUT/$dev receive work steered to CPU $dut_cpu with RPS (rps_cpus $mask)"
        fi
    done
    fair_dev "$NS_UP" u0 "$tester_cpu" fifo:50 || true
    fair_dev "$NS_SUB" s0 "$tester_cpu" fifo:50 || true
    local nd
    for nd in "$NS_SUB:s0" "$NS_DUT:d0" "$NS_DUT:d1" "$NS_UP:u0"; do
        nsx "${nd%%:*}" tc qdisc replace dev "${nd#*:}" root pfifo limit 1000 \
            || die "fair: cannot add a pfifo qdisc to ${nd#*:} in ${nd%%:*}"
    done
    say "fair: pfifo qdisc on s0, d0, d1, u0 (a full veth ring pushes back instead of dropping)"
}

cmd_up() {
    local forwarder=none ns sinks=1
    while [[ $# -gt 0 ]]; do
        case $1 in
            --no-sinks) sinks=0; shift ;;
            --forwarder)
                [[ $# -ge 2 ]] || usage_die "--forwarder needs a value (none|bridge)"
                forwarder=$2; shift 2 ;;
            --forwarder=*) forwarder=${1#*=}; shift ;;
            --queues)
                [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage_die "--queues needs a positive number"
                LAB_QUEUES=$2; shift 2 ;;
            --mtu)
                if ! [[ $# -ge 2 && $2 =~ ^[1-9][0-9]{1,4}$ ]] || (($2 < 68 || $2 > 65535)); then
                    usage_die "--mtu needs a number in 68..65535"
                fi
                LAB_MTU=$2; shift 2 ;;
            *) usage_die "up: unknown argument '$1'" ;;
        esac
    done
    case $forwarder in none|bridge) ;; *) usage_die "bad --forwarder '$forwarder' (none|bridge)" ;; esac

    need_root
    need_cmds ip ethtool openssl setsid
    [[ $forwarder == bridge ]] && need_cmds nft
    if ((sinks)); then
        [[ -x $PYTHON ]] || die "$PYTHON not found"
        "$PYTHON" -c 'import aiosmtpd' 2>/dev/null \
            || die "$PYTHON cannot import aiosmtpd (apt-get install python3-aiosmtpd)"
        [[ -f $SINK ]] || die "$SINK not found"
    fi
    in_root_netns || die "run $PROG from the root network namespace"

    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" && die "the lab already exists (namespace $ns); run '$PROG down' first"
    done
    [[ -e $STATE ]] && die "the lab already exists ($STATE); run '$PROG down' first"

    trap on_up_exit EXIT
    mkdir -p "$STATE"
    echo "$forwarder" >"$STATE/forwarder"

    for ns in "${ALL_NS[@]}"; do ns_init "$ns"; done
    # The appliance is a pure L2 bump: no IPv6 (no link-local, RS, MLD) there.
    nsx "$NS_DUT" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    build_links
    configure_addresses
    if [[ $forwarder == bridge ]]; then
        setup_bridge_forwarder
    fi
    if ((sinks)); then start_sinks; else say "SMTP sinks not started (--no-sinks)"; fi
    UP_DONE=1
    trap - EXIT
    say "lab is up (forwarder: $forwarder, MTU ${LAB_MTU:-$MTU}); state in $STATE"
    [[ $forwarder == none ]] && say "d0/d1 in $NS_DUT are not connected: start op25b there (configs/lab.yaml)"
    return 0
}

# --- status ------------------------------------------------------------------------

cmd_status() {
    [[ $# -eq 0 ]] || usage_die "status takes no arguments"
    need_root
    local ns any=0 dev line mode progs name pid n
    for ns in "${ALL_NS[@]}"; do ns_exists "$ns" && any=1; done
    if ((any == 0)); then
        say "lab is down (no $NS_SUB/$NS_DUT/$NS_UP namespaces)"
        [[ -d $STATE ]] && warn "$STATE exists although the namespaces do not; run '$PROG down'"
        return 3
    fi
    echo "== namespaces"
    # only the lab's own three (other tools may run op25b-* namespaces too)
    ip netns list | grep -E "^($NS_SUB|$NS_DUT|$NS_UP)( |\$)" || true
    [[ -f $STATE/forwarder ]] && echo "forwarder: $(<"$STATE/forwarder")"
    [[ -f $STATE/policy ]] && echo "nft policy: $(<"$STATE/policy")"
    for ns in "${ALL_NS[@]}"; do
        ns_exists "$ns" || { echo "== $ns: MISSING"; continue; }
        echo "== $ns: links"
        ip -n "$ns" -s link show
        if [[ $ns != "$NS_DUT" ]]; then
            echo "== $ns: addresses"
            ip -n "$ns" -br addr show
        fi
    done
    if ns_exists "$NS_DUT"; then
        echo "== XDP on $NS_DUT"
        for dev in d0 d1; do
            # `ip -d link`: "mtu 1500 xdp|xdpgeneric|xdpdrv|xdpoffload|xdpmulti"
            # on the first line, then "prog/xdp id N name NAME ..." per program.
            line=$(ip -n "$NS_DUT" -d link show dev "$dev" 2>/dev/null) || { echo "$dev: MISSING"; continue; }
            mode=$(head -n 1 <<<"$line" | grep -Eo ' (xdp|xdpgeneric|xdpdrv|xdpoffload|xdpmulti) ' | tr -d ' ' || true)
            progs=$(grep -Eo 'prog/xdp[a-z]* id [0-9]+( name [^ ]+)?' <<<"$line" | sed 's|^prog/||' | paste -sd, - || true)
            if [[ -n $mode || -n $progs ]]; then
                echo "$dev: XDP attached, mode ${mode:-?}: ${progs:-?}"
            else
                echo "$dev: no XDP program"
            fi
        done
        if [[ -f $STATE/policy ]]; then
            echo "== nftables in $NS_DUT ($(<"$STATE/policy"))"
            nsx "$NS_DUT" nft list table "$(cut -d' ' -f1 <"$STATE/policy")" op25b || true
        fi
    fi
    echo "== SMTP sinks"
    for name in up sub; do
        if [[ -s $STATE/smtp-$name.pid ]]; then
            pid=$(tr -dc '0-9' <"$STATE/smtp-$name.pid")
            if pid_alive "$pid" && is_lab_sink "$pid"; then
                n=0
                [[ -f $STATE/spool-$name/log.jsonl ]] && n=$(wc -l <"$STATE/spool-$name/log.jsonl")
                echo "$name: running (pid $pid), $n messages spooled, log $STATE/smtp-$name.log"
            else
                echo "$name: NOT running (stale pidfile, pid $pid)"
            fi
        else
            echo "$name: NOT running (no pidfile)"
        fi
    done
}

# --- root namespace check -------------------------------------------------------

root_counters() {
    local d n
    for d in /sys/class/net/*; do
        n=${d##*/}
        [[ -r $d/statistics/rx_packets ]] || continue
        printf '%s %s %s\n' "$n" "$(<"$d/statistics/rx_packets")" "$(<"$d/statistics/tx_packets")"
    done
}

# Root-ns addresses and routes in the lab's documentation ranges, one per
# line, without the ever-changing lifetimes.  The host itself may legitimately
# use such a range (this build VM's eth0 is 192.0.2.2/24), so rootcheck-end
# only complains about lines that were not there at rootcheck-begin.
root_lab_net() {
    {
        ip -o addr show | awk '{ print "addr", $2, $3, $4 }'
        ip -4 route show table all | sed 's/^/route4 /'
        ip -6 route show table all | sed 's/^/route6 /; s/ expires [0-9]*sec//'
    } 2>/dev/null | grep -E '198\.51\.100\.|203\.0\.113\.|192\.0\.2\.|2001:db8:' | sort -u || true
}

cmd_rootcheck_begin() {
    [[ $# -eq 0 ]] || usage_die "rootcheck-begin takes no arguments"
    in_root_netns || die "not in the root network namespace"
    root_counters >"$ROOTCHECK_SNAP.tmp"
    mv -f "$ROOTCHECK_SNAP.tmp" "$ROOTCHECK_SNAP"
    root_lab_net >"$ROOTCHECK_NET"
    say "root-ns snapshot: $ROOTCHECK_SNAP ($(wc -l <"$ROOTCHECK_SNAP") interfaces), $ROOTCHECK_NET ($(wc -l <"$ROOTCHECK_NET") pre-existing lab-range addresses/routes)"
}

cmd_rootcheck_end() {
    local max=10000
    if [[ $# -gt 1 ]]; then usage_die "rootcheck-end takes at most one argument"; fi
    if [[ $# -eq 1 ]]; then
        [[ $1 =~ ^[0-9]+$ ]] || usage_die "rootcheck-end: MAX_PACKETS must be a number, got '$1'"
        max=$1
    fi
    in_root_netns || die "not in the root network namespace"
    [[ -f $ROOTCHECK_SNAP ]] || die "no snapshot; run '$PROG rootcheck-begin' first"
    local -A rx0=() tx0=()
    local n r t fail=0 drx dtx flag name a
    while read -r n r t; do rx0[$n]=$r; tx0[$n]=$t; done <"$ROOTCHECK_SNAP"
    printf '%-16s %12s %12s  %s\n' IFACE RX_DELTA TX_DELTA NOTE
    while read -r n r t; do
        flag=""
        if [[ -z ${rx0[$n]+x} ]]; then
            flag="new since rootcheck-begin"
            drx=$r dtx=$t
        else
            drx=$((r - rx0[$n])) dtx=$((t - tx0[$n]))
            unset "rx0[$n]"
        fi
        if ((drx > max || dtx > max)); then flag="${flag:+$flag; }MOVED MORE THAN $max"; fail=1; fi
        printf '%-16s %12s %12s  %s\n' "$n" "$drx" "$dtx" "$flag"
    done < <(root_counters)
    for n in "${!rx0[@]}"; do printf '%-16s %12s %12s  %s\n' "$n" - - "gone since rootcheck-begin"; done
    for name in "${LAB_IFNAMES[@]}"; do
        if [[ -e /sys/class/net/$name ]]; then
            echo "FAIL: lab interface '$name' exists in the root namespace"
            fail=1
        fi
    done
    touch "$ROOTCHECK_NET"
    a=$(root_lab_net | comm -13 "$ROOTCHECK_NET" - || true)
    if [[ -n $a ]]; then
        echo "FAIL: new lab-range (documentation) addresses/routes in the root namespace:"
        echo "$a"
        fail=1
    fi
    rm -f "$ROOTCHECK_SNAP" "$ROOTCHECK_NET"
    if ((fail)); then
        say "rootcheck: FAILED (threshold $max packets)"
        return 1
    fi
    say "rootcheck: ok (no root interface moved more than $max packets, no lab interfaces, no new lab-range addresses/routes in the root ns)"
}

# --- main ------------------------------------------------------------------------

[[ $# -ge 1 ]] || usage_die "missing command"
cmd=$1
shift
case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    fair) cmd_fair "$@" ;;
    rootcheck-begin) need_root; cmd_rootcheck_begin "$@" ;;
    rootcheck-end) need_root; cmd_rootcheck_end "$@" ;;
    -h|--help|help) usage ;;
    *) usage_die "unknown command '$cmd'" ;;
esac
