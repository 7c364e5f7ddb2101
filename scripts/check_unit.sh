#!/usr/bin/env bash
# check_unit.sh - offline checks of the systemd unit (configs/op25b.service) and of its
# generator (configs/systemd/op25b-generator). Needs no systemd as PID 1 and no root.
#
#   1. systemd-analyze verify, in a throw-away root: a copy of this host's
#      /lib/systemd/system (sysinit.target & co.), the unit, and a stub /usr/sbin/op25b
#      (verify refuses a unit whose Exec*= binaries are missing). verify exits 0 on an
#      unknown key (`Typ=notify` is only a warning), so ANY output fails the check; two
#      negative controls (a typo, a missing binary) prove it fails on this systemd.
#   2. systemd-analyze security --offline=yes: prints the exposure score and fails
#      above OP25B_UNIT_MAX_EXPOSURE (default 2.5; systemd calls < 4.0 "OK").
#   3. The generator (POSIX sh, run by dash) with a stub op25b: writes the stub's
#      drop-in to <normal-dir>/op25b.service.d/50-interfaces.conf (plus
#      <device>.wants/op25b.service links only while the unit is enabled), and writes
#      nothing but still exits 0 when op25b fails, prints garbage, or op25b or the
#      config is missing; then the unit plus the drop-in are verified together.
#   4. The generator with the real target/release/op25b (or OP25B_BIN; skipped only
#      when it is not built) and interfaces sub0/up-0, then .dot0/x%y: the drop-in
#      names both device units exactly as `systemd-escape --path --suffix=device` does;
#      then with a radius: section: LoadCredential= and the IP filter, verified.
#
# usage: scripts/check_unit.sh        (from any directory; exit 1 on any failure)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNIT=$HERE/configs/op25b.service
GEN=$HERE/configs/systemd/op25b-generator
CONFIG=$HERE/configs/op25b.yaml

# set_interfaces FILE SUB UP: FILE with interfaces.subscriber/upstream set, on stdout.
# A structured edit (python3-yaml), not a text one: the generator must read a file. The
# section's other keys and the rest of the file are kept as they are (only the
# `interfaces:` mapping is re-written, so no other value goes through PyYAML's YAML 1.1).
set_interfaces() {
    python3 - "$@" <<'PY'
import sys, yaml
path, sub, up = sys.argv[1:4]
text = open(path).read()
doc = yaml.safe_load(text)
ifs = doc["interfaces"]
ifs["subscriber"], ifs["upstream"] = sub, up
# Keep every other section byte for byte: drop the old interfaces mapping, prepend the new.
lines = text.splitlines(keepends=True)
start = next(i for i, l in enumerate(lines) if l.startswith("interfaces:"))
end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()
            and not lines[i].startswith("#")), len(lines))
sys.stdout.write("".join(lines[:start]) + yaml.safe_dump({"interfaces": ifs}, sort_keys=False)
                 + "".join(lines[end:]))
PY
}
MAX_EXPOSURE=${OP25B_UNIT_MAX_EXPOSURE:-2.5}
REAL_BIN=${OP25B_BIN:-$HERE/target/release/op25b}

case ${1:-} in
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    "") ;;
    *) echo "usage: $0" >&2; exit 64 ;;
esac

say() { printf 'check_unit: %s\n' "$*"; }
fail() { printf 'check_unit: FAIL: %s\n' "$*" >&2; exit 1; }

for tool in systemd-analyze systemd-escape dash; do
    command -v "$tool" >/dev/null || fail "$tool not found (package systemd / dash)"
done
[[ -f $UNIT ]] || fail "$UNIT missing"
[[ -f $GEN ]] || fail "$GEN missing"

tmp=$(mktemp -d)
# shellcheck disable=SC2317  # invoked through the trap
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

# --- 1. systemd-analyze verify in a throw-away root -----------------------------
root=$tmp/root
mkdir -p "$root/lib/systemd" "$root/usr/sbin" "$root/etc/systemd/system"
cp -a /lib/systemd/system "$root/lib/systemd/"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/op25b"
chmod 0755 "$root/usr/sbin/op25b"

# verify_root LABEL: verify op25b.service as installed in $root; prints what
# systemd-analyze said and returns 1 if it failed or said anything at all.
verify_root() {
    local out rc=0
    out=$(systemd-analyze verify --man=no --root="$root" op25b.service 2>&1) || rc=$?
    if [[ $rc -ne 0 || -n $out ]]; then
        printf '%s\n' "$out" | sed "s|$root||g; s|^|    |" >&2
        return 1
    fi
}

# Negative controls first: the check must catch a typo and a missing binary.
sed 's/^Type=notify$/Typ=notify/' "$UNIT" >"$root/lib/systemd/system/op25b.service"
grep -q '^Typ=notify$' "$root/lib/systemd/system/op25b.service" \
    || fail "negative control: no 'Type=notify' line in $UNIT to break"
if verify_root 2>/dev/null; then
    fail "negative control: verify accepted a unit with 'Typ=notify'"
fi
cp "$UNIT" "$root/lib/systemd/system/op25b.service"
mv "$root/usr/sbin/op25b" "$root/usr/sbin/op25b.off"
if verify_root 2>/dev/null; then
    fail "negative control: verify accepted a unit whose /usr/sbin/op25b is missing"
fi
mv "$root/usr/sbin/op25b.off" "$root/usr/sbin/op25b"
say "verify catches a typo and a missing binary (negative controls)"

verify_root || fail "systemd-analyze verify configs/op25b.service"
say "verify ok: configs/op25b.service"

# --- 2. exposure score ------------------------------------------------------------
sec=$(systemd-analyze security --offline=yes "$UNIT" 2>&1) \
    || { printf '%s\n' "$sec" >&2; fail "systemd-analyze security --offline=yes"; }
overall=$(grep -m1 'Overall exposure level' <<<"$sec") \
    || { printf '%s\n' "$sec" >&2; fail "no overall exposure level in the output"; }
score=$(sed -E 's/.*: ([0-9]+\.[0-9]+) .*/\1/' <<<"$overall")
[[ $score =~ ^[0-9]+\.[0-9]+$ ]] || fail "cannot read the score from: $overall"
say "security: ${overall#→ } (threshold $MAX_EXPOSURE)"
if awk -v s="$score" -v t="$MAX_EXPOSURE" 'BEGIN { exit !(s > t) }'; then
    grep '✗' <<<"$sec" >&2 || true
    fail "exposure $score is above $MAX_EXPOSURE"
fi

# --- 3. the generator with a stub op25b --------------------------------------------
if command -v shellcheck >/dev/null; then
    shellcheck -s sh "$GEN" || fail "shellcheck $GEN"
fi

stub=$tmp/stub-op25b
expected=$tmp/expected.conf
printf '[Unit]\nBindsTo=sys-subsystem-net-devices-sub0.device sys-subsystem-net-devices-up\\x2d0.device\nAfter=sys-subsystem-net-devices-sub0.device sys-subsystem-net-devices-up\\x2d0.device\n' >"$expected"
# The stub answers `systemd-deps --config FILE` like op25b does for sub0/up-0; STUB_MODE
# makes it fail or print garbage. It logs its arguments.
cat >"$stub" <<EOF
#!/bin/sh
echo "\$*" >>"$tmp/stub.args"
case \${STUB_MODE:-ok} in
    ok) [ "\$1 \$2" = "systemd-deps --config" ] && [ -f "\$3" ] || exit 64
        cat "$expected" ;;
    fail) echo "error: config broken" >&2; exit 78 ;;
    garbage) echo "op25b 0.1.0" ;;
esac
EOF
chmod 0755 "$stub"
cfgdir=$tmp/etc-op25b
mkdir -p "$tmp/unit-etc"   # op25b.service not enabled
mkdir -p "$tmp/unit-etc-enabled/multi-user.target.wants"
ln -s /usr/lib/systemd/system/op25b.service "$tmp/unit-etc-enabled/multi-user.target.wants/op25b.service"
mkdir -p "$cfgdir"
cp "$CONFIG" "$cfgdir/op25b.yaml"
cp -r "$HERE/configs/prefixes" "$cfgdir/prefixes"
set_interfaces "$CONFIG" sub0 up-0 >"$cfgdir/op25b.yaml" \
    || fail "configs/op25b.yaml: cannot set the interfaces to sub0/up-0"

# run_gen DIR [env...]: run the generator like systemd does (three dirs), by dash.
run_gen() {
    local dir=$1
    shift
    rm -rf "$dir"
    mkdir -p "$dir/normal" "$dir/early" "$dir/late"
    env OP25B_BIN="$stub" OP25B_CONFIG="$cfgdir/op25b.yaml" OP25B_UNIT_ETC="$tmp/unit-etc" "$@" \
        dash "$GEN" "$dir/normal" "$dir/early" "$dir/late" 2>"$dir/stderr"
}
dropin_of() { echo "$1/normal/op25b.service.d/50-interfaces.conf"; }
only_dropin() {  # nothing else written anywhere (no temp files left behind)
    local n
    n=$(find "$1/normal" "$1/early" "$1/late" -mindepth 1 -type f | wc -l)
    [[ $n -eq 1 && -f $(dropin_of "$1") ]]
}
nothing_written() {
    [[ -z $(find "$1/normal" "$1/early" "$1/late" -mindepth 1) ]]
}

g=$tmp/gen
run_gen "$g" || fail "generator exited non-zero with a working op25b"
only_dropin "$g" || fail "generator: expected exactly $(dropin_of "$g")"
cmp -s "$expected" "$(dropin_of "$g")" || fail "generator: the drop-in is not op25b's output"
grep -qx "systemd-deps --config $cfgdir/op25b.yaml" "$tmp/stub.args" \
    || fail "generator: op25b was not run as 'systemd-deps --config FILE' (got: $(cat "$tmp/stub.args"))"
[[ -z $(find "$g/normal" -name '*.wants') ]] || fail "generator: .wants links for a unit that is not enabled"
say "generator ok: writes op25b systemd-deps' output to op25b.service.d/50-interfaces.conf"

run_gen "$g.enabled" OP25B_UNIT_ETC="$tmp/unit-etc-enabled" || fail "generator exited non-zero (enabled)"
cmp -s "$expected" "$(dropin_of "$g.enabled")" || fail "generator (enabled): wrong drop-in"
for dev in 'sys-subsystem-net-devices-sub0.device' 'sys-subsystem-net-devices-up\x2d0.device'; do
    link=$g.enabled/normal/$dev.wants/op25b.service
    [[ -L $link && $(readlink "$link") == /usr/lib/systemd/system/op25b.service ]] \
        || fail "generator (enabled): no $dev.wants/op25b.service"
done
say "generator ok: enabled unit: both devices want op25b.service (started again when a NIC comes back)"

run_gen "$g.fail" STUB_MODE=fail || fail "generator exited non-zero when op25b failed"
nothing_written "$g.fail" || fail "generator wrote something when op25b failed"
grep -q 'not bound' "$g.fail/stderr" || fail "generator: no note when op25b failed"
run_gen "$g.garbage" STUB_MODE=garbage || fail "generator exited non-zero on garbage"
nothing_written "$g.garbage" || fail "generator wrote op25b's garbage"
run_gen "$g.nobin" OP25B_BIN="$tmp/no-such-op25b" || fail "generator exited non-zero without op25b"
nothing_written "$g.nobin" || fail "generator wrote something without op25b"
run_gen "$g.nocfg" OP25B_CONFIG="$tmp/no-such.yaml" || fail "generator exited non-zero without a config"
nothing_written "$g.nocfg" || fail "generator wrote something without a config"
env OP25B_BIN="$stub" dash "$GEN" 2>/dev/null || fail "generator exited non-zero without arguments"
say "generator ok: op25b failing, garbage, no op25b, no config, no arguments: nothing written, exit 0"

mkdir -p "$root/etc/systemd/system/op25b.service.d"
cp "$(dropin_of "$g")" "$root/etc/systemd/system/op25b.service.d/50-interfaces.conf"
verify_root || fail "systemd-analyze verify of the unit with the generated drop-in"
say "verify ok: unit + generated drop-in (systemd-analyze reads no generator dir offline: the drop-in was placed in /etc/systemd/system/op25b.service.d)"

# --- 4. the generator with the real op25b -------------------------------------------------
# real_case SUB UP: the generator with the real op25b and interfaces SUB/UP writes a
# drop-in whose BindsTo= and After= name exactly systemd-escape's device units.
real_case() {
    local sub=$1 up=$2 dir=$tmp/real-$3 key u real
    local -a units
    mkdir -p "$dir/cfg"
    cp -r "$HERE/configs/prefixes" "$dir/cfg/prefixes"
    set_interfaces "$CONFIG" "$sub" "$up" >"$dir/cfg/op25b.yaml" \
        || fail "configs/op25b.yaml: cannot set the interfaces to '$sub'/'$up'"
    run_gen "$dir/gen" OP25B_BIN="$REAL_BIN" OP25B_CONFIG="$dir/cfg/op25b.yaml" \
        || fail "generator exited non-zero with $REAL_BIN"
    only_dropin "$dir/gen" \
        || fail "generator with $REAL_BIN wrote no drop-in for '$sub'/'$up': $(cat "$dir/gen/stderr")"
    real=$(dropin_of "$dir/gen")
    sed 's/^/    /' "$real"
    read -r -a units < <(systemd-escape --path --suffix=device \
        "/sys/subsystem/net/devices/$sub" "/sys/subsystem/net/devices/$up")
    for key in BindsTo After; do
        for u in "${units[@]}"; do
            grep -E "^$key=" "$real" | sed "s/^$key=//" | tr ' ' '\n' | grep -qxF "$u" \
                || fail "op25b systemd-deps for '$sub'/'$up': $key= does not name $u (systemd-escape --path --suffix=device /sys/subsystem/net/devices/NAME)"
        done
    done
    cp "$real" "$root/etc/systemd/system/op25b.service.d/50-interfaces.conf"
    verify_root || fail "systemd-analyze verify of the unit with op25b's drop-in for '$sub'/'$up'"
    say "generator ok with $REAL_BIN for '$sub'/'$up': ${units[*]}"
}
if [[ ! -x $REAL_BIN ]]; then
    say "SKIP real op25b: $REAL_BIN not built"
else
    "$REAL_BIN" systemd-deps --help >/dev/null 2>&1 \
        || fail "$REAL_BIN has no 'systemd-deps' subcommand"
    real_case sub0 up-0 plain
    # Escaping corners: a leading '.' of the interface name is not the unit name's
    # first character (systemd escapes only that one), '%' would be a specifier.
    real_case .dot0 'x%y' corners
    # radius: with a credential: the drop-in's [Service] part loads it from the config's
    # folder and lets IP in only from loopback and the RADIUS clients; systemd accepts it.
    dir=$tmp/real-radius
    mkdir -p "$dir/cfg"
    cp -r "$HERE/configs/prefixes" "$dir/cfg/prefixes"
    { set_interfaces "$CONFIG" sub0 up-0
      printf '\nradius:\n  listen: 127.0.0.1:1813\n  clients:\n'
      printf '    - {address: 192.0.2.1, secret_file: credential:radius-secret}\n'
      printf '    - {address: 2001:db8::/64, secret: testing123}\n'
    } >"$dir/cfg/op25b.yaml" || fail "configs/op25b.yaml: cannot add a radius section"
    run_gen "$dir/gen" OP25B_BIN="$REAL_BIN" OP25B_CONFIG="$dir/cfg/op25b.yaml" \
        || fail "generator exited non-zero with $REAL_BIN (radius)"
    real=$(dropin_of "$dir/gen")
    sed 's/^/    /' "$real"
    grep -qx "LoadCredential=radius-secret:$dir/cfg/radius-secret" "$real" \
        || fail "op25b systemd-deps: no LoadCredential= for secret_file: credential:radius-secret"
    if ! grep -qx 'IPAddressDeny=any' "$real" \
        || ! grep -qx 'IPAddressAllow=localhost 192.0.2.1/32 2001:db8::/64' "$real"; then
        fail "op25b systemd-deps: no IPAddressDeny=any/IPAddressAllow= for radius.clients"
    fi
    cp "$real" "$root/etc/systemd/system/op25b.service.d/50-interfaces.conf"
    verify_root || fail "systemd-analyze verify of the unit with the radius drop-in"
    say "generator ok with $REAL_BIN and radius: LoadCredential=, IPAddressDeny=any, IPAddressAllow= localhost + clients"
fi

say "all checks passed (exposure $score)"
