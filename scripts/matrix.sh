#!/usr/bin/env bash
# matrix.sh - end-to-end OP25B case matrix against the veth lab (scripts/lab.sh).
#
# Works with whatever forwards between d0 and d1 in op25b-dut: op25b itself,
# or the reference `lab.sh up --forwarder bridge`.  SMTP cases use swaks via
# `ip netns exec`; every message carries `X-Case: <case>` and
# `X-Matrix-Run: <run id>` headers, and a case only counts as `delivered`
# when swaks exits 0 AND the sink's spool log (/run/op25b-lab/spool-*/
# log.jsonl) gained a message with those headers on the expected listener.
#
# Observed outcomes (SMTP cases):
#   delivered    swaks exit 0 and the message is in the right spool
#   refused      connect() failed with ECONNREFUSED (a TCP RST)
#   unreachable  connect() failed with an ICMP error: EHOSTUNREACH
#                ("No route to host", ICMP 3/13), EACCES ("Permission
#                denied", ICMPv6 1/1), or EALREADY ("Operation already in
#                progress") - see classify_swaks for why EALREADY is an ICMP
#                error here
#   timeout      swaks' connect timeout expired (SYN silently dropped)
#   notice       the connection opened and the "server" greeted with 554 5.7.1: op25b's
#                SMTP notice (reply: smtp-notice); the reference bridge forwarder
#                cannot speak SMTP and answers those cases with a RST (refused)
#   error:<text> anything else, e.g. error:neighbour-failed when a timeout or
#                unreachable happened without ARP/ND for the server ever being
#                answered (nothing was forwarded at all, so the case proves
#                nothing), error:not-in-spool, error:smtp-<reply>
#   (timeout/unreachable are only accepted when the client's neighbour entry
#   for the server is resolved afterwards; a FAILED/INCOMPLETE entry is
#   deleted before each case so an earlier case cannot poison it)
# Ping cases observe `ok` when every echo in both directions was answered,
# else fail:<direction>.
#
# `refused`, `unreachable` and `notice` must also happen within MATRIX_FAST_LIMIT
# seconds (default 2; slower = FAIL).
#
# Cases expected to `timeout` only wait for swaks' timeout: they run at the same time,
# in the background, started before the others; the report keeps the table's order.
#
# usage: matrix.sh [--json FILE] [--only LIST] [--list]
#   --json FILE   also write a JSON array of cases {name, expected, observed,
#                 ok, seconds, attempts, detail}
#   --only LIST   comma-separated case names or shell globs (dyn4-*,ping4);
#                 same as MATRIX_ONLY=LIST
#   --list        print the case table and exit
# `attempts` is the number of TCP connection attempts (SYNs from a fresh
# connect()) a case made: 1 for every SMTP case, 0 for pings - to
# cross-check appliance counters.
#
# Exit: 0 all selected cases as expected, 1 some case differs, 2 usage/lab
# not up.
#
# Environment: MATRIX_ONLY, MATRIX_TIMEOUT (swaks --timeout, default 2: the lab's
#              round trip is well under a millisecond, and every `timeout` case
#              waits this long),
#              MATRIX_FAST_LIMIT (default 2).

set -euo pipefail

PROG=${0##*/}
STATE=/run/op25b-lab
NS_SUB=op25b-sub
NS_DUT=op25b-dut
NS_UP=op25b-up
SWAKS_TIMEOUT=${MATRIX_TIMEOUT:-2}
FAST_LIMIT=${MATRIX_FAST_LIMIT:-2}
BIG_BYTES=20000

# name | ns (sub|up) | kind (smtp|smtps|smtp-big|ping|bigping) | src | dst | port | expected
CASES='
dyn4-ext-25       sub smtp     198.51.100.10        203.0.113.80     25  refused
dyn6-ext-25       sub smtp     2001:db8:100::10     2001:db8:ff::80  25  refused
dyn4-ext-587      sub smtp     198.51.100.10        203.0.113.80     587 delivered
dyn6-ext-587      sub smtp     2001:db8:100::10     2001:db8:ff::80  587 delivered
dyn4-ext-465      sub smtps    198.51.100.10        203.0.113.80     465 delivered
dyn6-ext-465      sub smtps    2001:db8:100::10     2001:db8:ff::80  465 delivered
dyn4-relay-25     sub smtp     198.51.100.10        203.0.113.25     25  delivered
dyn6-relay-25     sub smtp     2001:db8:100::10     2001:db8:ff::25  25  delivered
static4-ext-25    sub smtp     198.51.100.200       203.0.113.80     25  delivered
static6-ext-25    sub smtp     2001:db8:100::200    2001:db8:ff::80  25  delivered
quar4-ext-587     sub smtp     198.51.100.130       203.0.113.80     587 timeout
quar6-ext-587     sub smtp     2001:db8:100:666::10 2001:db8:ff::80  587 timeout
quar4-ext-25      sub smtp     198.51.100.130       203.0.113.80     25  timeout
quar4-relay-25    sub smtp     198.51.100.130       203.0.113.25     25  delivered
quar6-relay-25    sub smtp     2001:db8:100:666::10 2001:db8:ff::25  25  delivered
icmp4-ext-25      sub smtp     192.0.2.10           203.0.113.80     25  unreachable
icmp6-ext-25      sub smtp     2001:db8:200::10     2001:db8:ff::80  25  unreachable
notice4-ext-25    sub smtp     192.0.2.140          203.0.113.80     25  notice
notice6-ext-25    sub smtp     2001:db8:300::10     2001:db8:ff::80  25  notice
notice4-ext-587   sub smtp     192.0.2.140          203.0.113.80     587 delivered
ip25b4            up  smtp     203.0.113.80         198.51.100.10    25  timeout
ip25b6            up  smtp     2001:db8:ff::80      2001:db8:100::10 25  timeout
ip25b-static4     up  smtp     203.0.113.80         198.51.100.200   25  delivered
ip25b-static6     up  smtp     2001:db8:ff::80      2001:db8:100::200 25 delivered
ping4             sub ping     198.51.100.10        203.0.113.80     -   ok
ping6             sub ping     2001:db8:100::10     2001:db8:ff::80  -   ok
big4              sub bigping  198.51.100.10        203.0.113.80     -   ok
big6              sub bigping  2001:db8:100::10     2001:db8:ff::80  -   ok
dyn4-ext-587-big  sub smtp-big 198.51.100.10        203.0.113.80     587 delivered
'

usage() {
    sed -n '/^# usage:/,/^# cross-check/p' "$0" | sed 's/^# \{0,1\}//'
}
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 2; }

JSON=""
ONLY=${MATRIX_ONLY:-}
LIST=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --json) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; JSON=$2; shift 2 ;;
        --json=*) JSON=${1#*=}; shift ;;
        --only) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --list) LIST=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) printf '%s: unknown argument %s\n' "$PROG" "$1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $SWAKS_TIMEOUT =~ ^[0-9]+$ ]] || die "MATRIX_TIMEOUT must be whole seconds"
[[ $FAST_LIMIT =~ ^[0-9]+([.][0-9]+)?$ ]] || die "MATRIX_FAST_LIMIT must be a number"

selected() {   # selected NAME: in MATRIX_ONLY / --only (names or globs)?
    local pat pats=()
    [[ -z $ONLY ]] && return 0
    IFS=, read -ra pats <<<"$ONLY"
    for pat in "${pats[@]}"; do
        pat=${pat// /}
        # shellcheck disable=SC2053  # glob match on purpose
        [[ -n $pat && $1 == $pat ]] && return 0
    done
    return 1
}

if ((LIST)); then
    printf '%-18s %-4s %-9s %-21s %-18s %-4s %s\n' CASE NS KIND SRC DST PORT EXPECTED
    while read -r name ns kind src dst port expected; do
        [[ -n ${name:-} ]] || continue
        selected "$name" || continue
        printf '%-18s %-4s %-9s %-21s %-18s %-4s %s\n' "$name" "$ns" "$kind" "$src" "$dst" "$port" "$expected"
    done <<<"$CASES"
    exit 0
fi

# --- preflight -----------------------------------------------------------------------
[[ $EUID -eq 0 ]] || die "must run as root (ip netns exec)"
for c in ip swaks ping timeout; do
    command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found"
done
for ns in "$NS_SUB" "$NS_DUT" "$NS_UP"; do
    [[ -e /run/netns/$ns ]] || die "namespace $ns missing: is the lab up? (scripts/lab.sh up)"
done
for s in up sub; do
    if ! { [[ -s $STATE/smtp-$s.pid ]] && kill -0 "$(tr -dc '0-9' <"$STATE/smtp-$s.pid")" 2>/dev/null; }; then
        die "SMTP sink '$s' not running (scripts/lab.sh status)"
    fi
done

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)-$$"
TMP=$(mktemp -d /tmp/op25b-matrix.XXXXXX)
trap 'rm -rf -- "$TMP"' EXIT

# ~20 KB of plain text for the full-size-segment case
{
    for ((i = 1; i <= 300; i++)); do
        printf 'line %04d: op25b matrix full-size TCP segment filler, the quick brown fox jumps.\n' "$i"
    done
} >"$TMP/big-body.txt"

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }
secs() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000000 }'; }
over_limit() { awk -v s="$1" -v l="$FAST_LIMIT" 'BEGIN { exit !(s > l) }'; }

fmt_listen() { if [[ $1 == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi; }

spool_lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

sanitize() {   # one short line of safe text
    tr -c 'A-Za-z0-9 ._:/()<>=+-' ' ' <<<"$1" | tr -s ' ' | sed 's/^ //; s/ $//' | cut -c1-"${2:-60}"
}

# classify_swaks RC OUTFILE -> one of delivered-candidate ("sent") / refused /
# unreachable / timeout / error:<text>
#
# swaks connects with IO::Socket(::INET6) and --timeout, i.e. a non-blocking
# connect(), select() for writability, then a *second* connect() whose errno
# it reports as "IO::Socket::INET6: connect: <strerror>" (or "connect:
# timeout" when select() timed out).  Observed on Linux 6.18:
#   RST               -> socket closed          -> "Connection refused"
#   ICMPv6 1/1        -> socket closed, sk_err  -> "Permission denied" (EACCES)
#   ICMP 3/13         -> sk_err=EHOSTUNREACH but the socket is left in
#                        SYN_SENT, so the second connect() returns EALREADY:
#                        "Operation already in progress" (a blocking connect
#                        or getsockopt(SO_ERROR) shows "No route to host").
#                        An RST never leaves the socket in SYN_SENT, and a
#                        drop ends in "connect: timeout", so EALREADY after
#                        a select() wake-up means an ICMP error: unreachable.
#   dropped SYN       -> "connect: timeout"
classify_swaks() {
    local rc=$1 out=$2 line
    if ((rc == 0)); then echo sent; return; fi
    if ((rc == 124 || rc == 137)); then echo "error:swaks-hung"; return; fi
    if grep -q 'connect: Connection refused' "$out"; then echo refused; return; fi
    if grep -Eq 'connect: (No route to host|Permission denied|Operation already in progress)' "$out"; then
        echo unreachable; return
    fi
    if grep -q 'connect: timeout' "$out"; then echo timeout; return; fi
    if line=$(grep -m1 -o 'connect: .*' "$out"); then
        echo "error:$(sanitize "${line#connect: }" 40)"; return
    fi
    if grep -Eq '^<\*\* +554[ -]5\.7\.1 ' "$out"; then echo notice; return; fi
    if line=$(grep -m1 -E '^(<\*\*|<~\*) ' "$out"); then
        echo "error:smtp-$(sanitize "${line:4}" 40)"; return
    fi
    if grep -q 'Timeout (.* secs) waiting for server response' "$out"; then echo "error:smtp-timeout"; return; fi
    if grep -q 'TLS startup failed' "$out"; then echo "error:tls-failed"; return; fi
    if grep -q 'closed connection unexpectedly' "$out"; then echo "error:closed-unexpectedly"; return; fi
    echo "error:swaks-exit-$rc"
}

# spool_has SPOOLDIR FROMLINE LISTEN CASE MINBYTES: a message for this case
# and run appeared on LISTEN after line FROMLINE of log.jsonl?  Prints
# "spooled <file> (<n> bytes)" when it did.
spool_has() {
    local dir=$1 from=$2 listen=$3 name=$4 minbytes=$5 line file bytes
    [[ -f $dir/log.jsonl ]] || return 1
    while IFS= read -r line; do
        [[ $line == *"\"listen\": \"$listen\""* ]] || continue
        file=$(sed -n 's/.*"file": "\([^"]*\)".*/\1/p' <<<"$line")
        bytes=$(sed -n 's/.*"bytes": \([0-9]*\).*/\1/p' <<<"$line")
        [[ -n $file && -f $dir/$file ]] || continue
        # the spooled message has CRLF line ends
        grep -qE "^X-Case: $name"$'\r'"?\$" "$dir/$file" || continue
        grep -qE "^X-Matrix-Run: $RUN_ID"$'\r'"?\$" "$dir/$file" || continue
        ((${bytes:-0} >= minbytes)) || continue
        echo "spooled ${dir##*/}/$file ($bytes bytes)"
        return 0
    done < <(tail -n +"$((from + 1))" "$dir/log.jsonl")
    return 1
}

# neigh_state NS DEV ADDR: REACHABLE, STALE, DELAY, PROBE, FAILED, INCOMPLETE,
# PERMANENT, ... or NONE when there is no entry.
neigh_state() {
    local out
    out=$(ip -n "$1" neigh show to "$3" dev "$2" 2>/dev/null | awk 'NR == 1 { print $NF }')
    echo "${out:-NONE}"
}

# Results: parallel arrays
R_NAME=() R_EXP=() R_OBS=() R_OK=() R_SECS=() R_ATT=() R_DETAIL=()

record() {   # name expected observed ok secs attempts detail
    R_NAME+=("$1") R_EXP+=("$2") R_OBS+=("$3") R_OK+=("$4") R_SECS+=("$5") R_ATT+=("$6") R_DETAIL+=("$7")
}

run_smtp() {
    local name=$1 ns=$2 kind=$3 src=$4 dst=$5 port=$6 expected=$7
    local nsname dev spooldir listen before t0 t1 rc s observed ok detail="" args minbytes=0 nstate
    if [[ $ns == sub ]]; then nsname=$NS_SUB dev=s0 spooldir=$STATE/spool-up
    else nsname=$NS_UP dev=u0 spooldir=$STATE/spool-sub; fi
    # A neighbour entry left FAILED by an earlier case would make the kernel
    # fail this connect() locally with EHOSTUNREACH: start from a clean slate.
    case $(neigh_state "$nsname" "$dev" "$dst") in
        FAILED|INCOMPLETE) ip -n "$nsname" neigh del "$dst" dev "$dev" 2>/dev/null || true ;;
    esac
    listen=$(fmt_listen "$dst" "$port")
    before=$(spool_lines "$spooldir/log.jsonl")
    args=(--server "$dst" --port "$port" --local-interface "$src"
          --to rcpt@example.net --from a@example.org --timeout "$SWAKS_TIMEOUT"
          --header "X-Case: $name" --header "X-Matrix-Run: $RUN_ID"
          --header "Subject: op25b matrix $name")
    case $kind in
        smtps) args+=(--tlsc) ;;
        smtp-big) args+=(--body "@$TMP/big-body.txt" --suppress-data); minbytes=$BIG_BYTES ;;
    esac
    t0=$(now_us)
    set +e
    timeout 30 ip netns exec "$nsname" swaks "${args[@]}" >"$TMP/$name.out" 2>&1
    rc=$?
    set -e
    t1=$(now_us)
    s=$(secs $((t1 - t0)))
    observed=$(classify_swaks "$rc" "$TMP/$name.out")
    if [[ $observed == sent ]]; then
        if detail=$(spool_has "$spooldir" "$before" "$listen" "$name" "$minbytes"); then
            observed=delivered
        else
            observed="error:not-in-spool"
            detail="swaks exit 0 but no X-Case $name message on $listen in ${spooldir##*/}"
        fi
    fi
    # `timeout` and `unreachable` only count when ARP/ND for the server got
    # answered: a SYN never sent for lack of a neighbour proves nothing
    # (and a FAILED neighbour makes connect() fail locally with EHOSTUNREACH).
    if [[ $observed == timeout || $observed == unreachable ]]; then
        nstate=$(neigh_state "$nsname" "$dev" "$dst")
        case $nstate in
            FAILED|INCOMPLETE|NONE)
                detail="ARP/ND for $dst unanswered (neighbour $nstate), swaks said: $(grep -m1 -o 'connect: .*' "$TMP/$name.out" || true)"
                detail=$(sanitize "$detail" 100)
                observed="error:neighbour-${nstate,,}" ;;
        esac
    fi
    if [[ -z $detail ]]; then
        # the errno text of a failed connect, else the first swaks error line
        detail=$(grep -m1 -o 'connect: .*' "$TMP/$name.out" \
            || grep -m1 -E '^(<\*\*|<~\*|\*\*\*) ' "$TMP/$name.out" || true)
        detail=$(sanitize "$detail" 80)
    fi
    # The reference bridge forwarder renders smtp-notice as a TCP reset (export-nft).
    [[ $expected == notice && -f $STATE/policy ]] && expected=refused
    ok=false
    [[ $observed == "$expected" ]] && ok=true
    if [[ $ok == true && ($expected == refused || $expected == unreachable || $expected == notice) ]] && over_limit "$s"; then
        ok=false
        detail="too slow: ${s}s > ${FAST_LIMIT}s; $detail"
    fi
    if [[ $ok == false && -n ${MATRIX_VERBOSE:-} ]]; then
        sed "s/^/    [$name] /" "$TMP/$name.out" >&2
    fi
    record "$name" "$expected" "$observed" "$ok" "$s" 1 "$detail"
}

# ping_ok NS SRC DST [extra ping args]: every one of 3 echoes answered?
ping_ok() {
    local ns=$1 src=$2 dst=$3 out
    shift 3
    out=$(timeout 15 ip netns exec "$ns" ping -n -q -c 3 -i 0.2 -W 1 -I "$src" "$@" "$dst" 2>&1) || return 1
    grep -q ' 3 received' <<<"$out"
}

run_ping() {
    local name=$1 kind=$2 src=$3 dst=$4 expected=$5 t0 t1 extra=() fails=() observed ok
    [[ $kind == bigping ]] && extra=(-s 1400 -M "do")
    [[ $src == *:* ]] && extra=(-6 "${extra[@]}")
    t0=$(now_us)
    ping_ok "$NS_SUB" "$src" "$dst" "${extra[@]}" || fails+=(out)
    ping_ok "$NS_UP" "$dst" "$src" "${extra[@]}" || fails+=(in)
    t1=$(now_us)
    if ((${#fails[@]} == 0)); then observed=ok
    else observed="fail:$(IFS=+; echo "${fails[*]}")"; fi
    ok=false
    [[ $observed == "$expected" ]] && ok=true
    record "$name" "$expected" "$observed" "$ok" "$(secs $((t1 - t0)))" 0 \
        "$src <-> $dst${extra[*]:+ (ping ${extra[*]})}"
}

forwarder=$(cat "$STATE/forwarder" 2>/dev/null || echo unknown)
echo "matrix: run $RUN_ID, lab forwarder: $forwarder, swaks --timeout $SWAKS_TIMEOUT, fast limit ${FAST_LIMIT}s"

# Cases expected to time out (a dropped SYN) only wait: they run in the background,
# started first, each writing its record to a file; the rest run one after another.
# The report lists every case in table order.
declare -A BG=()
show() {   # show I: the progress line of record I
    printf '  %-18s %-12s %-12s %6ss  %s\n' "${R_NAME[$1]}" "${R_EXP[$1]}" "${R_OBS[$1]}" "${R_SECS[$1]}" \
        "$([[ ${R_OK[$1]} == true ]] && echo PASS || echo FAIL)" >&2
}
n_sel=0
while read -r name ns kind src dst port expected; do
    [[ -n ${name:-} ]] || continue
    selected "$name" || continue
    [[ $expected == timeout && $kind == smtp* ]] || continue
    (
        run_smtp "$name" "$ns" "$kind" "$src" "$dst" "$port" "$expected"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${R_NAME[0]}" "${R_EXP[0]}" "${R_OBS[0]}" \
            "${R_OK[0]}" "${R_SECS[0]}" "${R_ATT[0]}" "${R_DETAIL[0]}" >"$TMP/$name.rec"
    ) &
    BG[$name]=$!
done <<<"$CASES"
# Let their ARP/ND settle before a foreground case looks at the neighbour table.
((${#BG[@]} == 0)) || sleep 0.3
while read -r name ns kind src dst port expected; do
    [[ -n ${name:-} ]] || continue
    selected "$name" || continue
    n_sel=$((n_sel + 1))
    [[ -n ${BG[$name]:-} ]] && continue
    case $kind in
        smtp|smtps|smtp-big) run_smtp "$name" "$ns" "$kind" "$src" "$dst" "$port" "$expected" ;;
        ping|bigping) run_ping "$name" "$kind" "$src" "$dst" "$expected" ;;
        *) die "bad case kind '$kind' for $name" ;;
    esac
    show $((${#R_NAME[@]} - 1))
done <<<"$CASES"
((n_sel > 0)) || die "no case matches '$ONLY' (see --list)"
# Collect the background cases, then put every record in table order.
for name in "${!BG[@]}"; do
    wait "${BG[$name]}" || true
    if IFS=$'\t' read -r f_name f_exp f_obs f_ok f_secs f_att f_detail <"$TMP/$name.rec"; then
        record "$f_name" "$f_exp" "$f_obs" "$f_ok" "$f_secs" "$f_att" "$f_detail"
    else
        record "$name" timeout "error:no-record" false 0 1 "the background case left no record"
    fi
    show $((${#R_NAME[@]} - 1))
done
declare -A AT=()
for i in "${!R_NAME[@]}"; do AT[${R_NAME[i]}]=$i; done
O_NAME=() O_EXP=() O_OBS=() O_OK=() O_SECS=() O_ATT=() O_DETAIL=()
while read -r name _; do
    [[ -n ${name:-} && -n ${AT[$name]:-} ]] || continue
    i=${AT[$name]}
    O_NAME+=("${R_NAME[i]}") O_EXP+=("${R_EXP[i]}") O_OBS+=("${R_OBS[i]}") O_OK+=("${R_OK[i]}")
    O_SECS+=("${R_SECS[i]}") O_ATT+=("${R_ATT[i]}") O_DETAIL+=("${R_DETAIL[i]}")
done <<<"$CASES"
R_NAME=("${O_NAME[@]}") R_EXP=("${O_EXP[@]}") R_OBS=("${O_OBS[@]}") R_OK=("${O_OK[@]}")
R_SECS=("${O_SECS[@]}") R_ATT=("${O_ATT[@]}") R_DETAIL=("${O_DETAIL[@]}")

# --- report -------------------------------------------------------------------------
passed=0
echo
printf '%-18s %-12s %-26s %7s %4s  %-6s %s\n' CASE EXPECTED OBSERVED SECONDS ATT RESULT DETAIL
for i in "${!R_NAME[@]}"; do
    res=FAIL
    if [[ ${R_OK[i]} == true ]]; then res=PASS; passed=$((passed + 1)); fi
    printf '%-18s %-12s %-26s %7s %4s  %-6s %s\n' "${R_NAME[i]}" "${R_EXP[i]}" "${R_OBS[i]}" \
        "${R_SECS[i]}" "${R_ATT[i]}" "$res" "${R_DETAIL[i]}"
done
total=${#R_NAME[@]}
attempts=0
for a in "${R_ATT[@]}"; do attempts=$((attempts + a)); done
echo "matrix: $total cases, $passed passed, $attempts TCP connection attempts"

json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=$(tr -d '\000-\037' <<<"$s")
    printf '"%s"' "$s"
}

if [[ -n $JSON ]]; then
    {
        echo "["
        for i in "${!R_NAME[@]}"; do
            printf '  {"name": %s, "expected": %s, "observed": %s, "ok": %s, "seconds": %s, "attempts": %s, "detail": %s}%s\n' \
                "$(json_str "${R_NAME[i]}")" "$(json_str "${R_EXP[i]}")" "$(json_str "${R_OBS[i]}")" \
                "${R_OK[i]}" "${R_SECS[i]}" "${R_ATT[i]}" "$(json_str "${R_DETAIL[i]}")" \
                "$(if ((i < total - 1)); then echo ,; fi)"
        done
        echo "]"
    } >"$JSON.tmp.$$"
    mv -f "$JSON.tmp.$$" "$JSON"
    echo "matrix: JSON written to $JSON"
fi

((passed == total))
