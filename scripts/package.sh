#!/usr/bin/env bash
# package.sh - build op25b's Debian package with cargo-deb ([package.metadata.deb] in
# Cargo.toml), and with --check lint it, install it, check the installed files and
# purge it again.
#
# usage: scripts/package.sh [--check]      (from any directory, also a fresh clone)
#
# Uses the already built target/release/op25b (or $CARGO_TARGET_DIR/release/op25b); runs
# `cargo build --release --locked --bin op25b` only if it is missing. Then
# `op25b generate-assets --out target/assets` (man pages, shell completions) and
# `cargo deb --no-build`; prints the .deb's path (and the -dbgsym .ddeb's) on stdout.
#
# --check (root; refuses to run when op25b is installed, as a package or by hand, so an
# operator's install is never clobbered):
#   lintian (fails on errors and warnings; overrides: packaging/lintian-overrides),
#   dpkg -i, op25b --version names the git revision, op25b check of the packaged config
#   (as root and as an unprivileged user, as DynamicUser= runs it), systemd-analyze
#   verify of the installed unit (with its man page), the generator's drop-in for the
#   packaged config, man pages and completions installed, then dpkg --purge and nothing
#   of op25b left. The package is purged on failure too.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$HERE"

say() { printf 'package: %s\n' "$*" >&2; }
fail() { printf 'package: FAIL: %s\n' "$*" >&2; exit 1; }

check=0
case ${1:-} in
    --check) check=1 ;;
    "") ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--check]" >&2; exit 64 ;;
esac
[[ $# -le 1 ]] || { echo "usage: $0 [--check]" >&2; exit 64; }

TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}
BIN=$TARGET_DIR/release/op25b
ASSETS=$HERE/target/assets   # the path [package.metadata.deb] assets name
PKG=op25b

# --- preflight ------------------------------------------------------------------
cargo deb --version >/dev/null 2>&1 \
    || fail "cargo-deb missing: run scripts/setup.sh as root (cargo install cargo-deb --locked)"

installed_state() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || true; }

if ((check)); then
    [[ $EUID -eq 0 ]] || fail "--check installs the package: run as root"
    for tool in lintian dpkg systemd-analyze setpriv man; do
        command -v "$tool" >/dev/null || fail "--check needs $tool (scripts/setup.sh)"
    done
    state=$(installed_state)
    if [[ -n $state && $state != "unknown ok not-installed" && $state != *" not-installed" ]]; then
        fail "package $PKG is already on this machine ($state): not touching it"
    fi
    for p in /usr/sbin/op25b /usr/local/sbin/op25b /etc/op25b; do
        [[ ! -e $p ]] || fail "$p exists (an op25b installed by hand?): not touching it"
    done
fi

# --- build (only if missing), assets, package ----------------------------------------
if [[ ! -x $BIN ]]; then
    say "no $BIN: cargo build --release --locked --bin op25b"
    cargo build --release --locked --bin op25b >&2
fi
newer=$(find "$HERE/src" "$HERE/bpf" "$HERE/Cargo.toml" "$HERE/Cargo.lock" "$HERE/build.rs" \
    -newer "$BIN" -type f 2>/dev/null | head -n 3 || true)
if [[ -n $newer ]]; then
    say "WARNING: sources newer than $BIN (packaging it anyway; rebuild to include them):"
    printf '    %s\n' "$newer" >&2
fi
say "$("$BIN" --version)"

rm -rf "$ASSETS"
"$BIN" generate-assets --out "$ASSETS" >&2 || fail "$BIN generate-assets --out $ASSETS"
for f in man/op25b.1 completions/op25b.bash completions/_op25b completions/op25b.fish; do
    [[ -s $ASSETS/$f ]] || fail "generate-assets wrote no $ASSETS/$f"
done
mapfile -t man_pages < <(cd "$ASSETS/man" && ls -- *.1)
say "assets: ${#man_pages[@]} man pages, 3 completions in $ASSETS"

out=$(cargo deb --no-build) || fail "cargo deb --no-build"
deb=$(grep -E '\.deb$' <<<"$out" | tail -n 1) || true
[[ -n $deb && -f $deb ]] || fail "cargo deb printed no .deb path: $out"
printf '%s\n' "$out"
((check)) || exit 0

# --- --check ----------------------------------------------------------------------------
say "lintian $deb"
lintian --fail-on error,warning --info "$deb" >&2 \
    || fail "lintian found errors or warnings (fix them, or justify an override in packaging/lintian-overrides)"

# Every dependency installed first: dpkg -i does not fetch them.
IFS=',' read -r -a deps <<<"$(dpkg-deb -f "$deb" Depends)"
for d in "${deps[@]}"; do
    name=$(sed -E 's/^ *([^ (]+).*/\1/' <<<"$d")
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'ok installed' \
        || fail "dependency $name is not installed (apt-get install $name)"
done

tmp=$(mktemp -d)
installed=0
# shellcheck disable=SC2317  # invoked through the trap
cleanup() {
    if ((installed)); then
        say "purging $PKG after the failure"
        dpkg --purge "$PKG" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

say "dpkg -i $deb"
installed=1
dpkg -i "$deb" >&2 || fail "dpkg -i $deb"

version=$(/usr/sbin/op25b --version)
say "installed: $version"
[[ $version =~ ^op25b\ [0-9][^\ ]*\ \(rev\ ([0-9a-f]{7,40})[^\)]*\) ]] \
    || fail "op25b --version does not name a git revision: '$version' (expected 'op25b X.Y.Z (rev abc1234, ...)')"
rev=${BASH_REMATCH[1]}
if head=$(git -C "$HERE" rev-parse HEAD 2>/dev/null) && [[ $head != "$rev"* ]]; then
    say "WARNING: the package's op25b is rev $rev, the checkout is at ${head:0:12}"
fi

/usr/sbin/op25b check --config /etc/op25b/op25b.yaml >/dev/null \
    || fail "op25b check --config /etc/op25b/op25b.yaml (the packaged config)"
# The unit runs op25b as a DynamicUser: the config and prefix files must be readable
# by an unprivileged user.
setpriv --reuid=65534 --regid=65534 --clear-groups \
    /usr/sbin/op25b check --config /etc/op25b/op25b.yaml >/dev/null \
    || fail "op25b check of the packaged config fails as an unprivileged user (file modes?)"
say "op25b check ok: /etc/op25b/op25b.yaml (as root and as uid 65534)"

unit=/usr/lib/systemd/system/op25b.service   # cargo-deb's systemd-units path
[[ -f $unit ]] || fail "$unit not installed"
vout=$(systemd-analyze verify "$unit" 2>&1) || { printf '%s\n' "$vout" >&2; fail "systemd-analyze verify $unit"; }
[[ -z $vout ]] || { printf '%s\n' "$vout" >&2; fail "systemd-analyze verify $unit printed warnings"; }
[[ -f /usr/share/doc/op25b/operations.md ]] || fail "the unit's Documentation= file:///usr/share/doc/op25b/operations.md is missing"
say "systemd-analyze verify ok: $unit (ExecStart binaries and man:op25b(1) found)"

gen=/lib/systemd/system-generators/op25b-generator
[[ -x $gen ]] || fail "$gen not installed"
mkdir -p "$tmp/n" "$tmp/e" "$tmp/l"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$gen" "$tmp/n" "$tmp/e" "$tmp/l" \
    || fail "$gen exited non-zero"
dropin=$tmp/n/op25b.service.d/50-interfaces.conf
[[ -f $dropin ]] || fail "$gen wrote no drop-in for the packaged config (op25b systemd-deps?)"
read -r -a want < <(systemd-escape --path --suffix=device \
    /sys/subsystem/net/devices/eth1 /sys/subsystem/net/devices/eth2)
for u in "${want[@]}"; do
    grep -E '^BindsTo=' "$dropin" | grep -qF "$u" || fail "the drop-in binds no $u: $(cat "$dropin")"
done
say "generator ok: $(grep -E '^BindsTo=' "$dropin")"

for page in "${man_pages[@]}"; do
    f=/usr/share/man/man1/$page.gz
    [[ -f $f ]] || fail "man page $f not installed"
    gzip -t "$f" || fail "$f is not gzip"
done
man -w op25b >/dev/null || fail "man -w op25b finds no page"
for f in /usr/share/bash-completion/completions/op25b /usr/share/zsh/vendor-completions/_op25b \
    /usr/share/fish/vendor_completions.d/op25b.fish; do
    [[ -s $f ]] || fail "completion $f not installed"
done
bash -n /usr/share/bash-completion/completions/op25b || fail "bash completion does not parse"
[[ -f /usr/share/doc/op25b/copyright ]] || fail "no /usr/share/doc/op25b/copyright"
say "installed: ${#man_pages[@]} man pages, completions for bash, zsh and fish, docs"

say "dpkg --purge $PKG"
dpkg --purge "$PKG" >&2 || fail "dpkg --purge $PKG"
installed=0
for p in /usr/sbin/op25b /etc/op25b "$unit" "$gen" /usr/share/doc/op25b /usr/share/man/man1/op25b.1.gz; do
    [[ ! -e $p ]] || fail "$p still there after dpkg --purge"
done
[[ $(installed_state) != *" installed" ]] || fail "dpkg still lists $PKG"
say "purged: nothing of op25b left"
say "check passed: $deb"
