#!/usr/bin/env bash
# redirect.sh - attach/detach the "in-kernel ceiling" XDP baseline
# (redirect.c): every frame arriving on IN_IF is XDP_REDIRECTed to OUT_IF,
# both in network namespace NS.
#
#   redirect.sh attach NS IN_IF OUT_IF [OBJDIR]
#       Resolves OUT_IF's ifindex inside NS (ifindexes are per namespace),
#       compiles redirect.c with -DTARGET_IFINDEX=<n> into OBJDIR (default: a
#       new mktemp directory; the directory is printed on stdout) and attaches
#       it to IN_IF in native mode (xdpdrv).  Fails with one line on stderr
#       and exit 1 if native mode is not available or attaching fails.
#   redirect.sh detach NS IN_IF
#       Removes the XDP program from IN_IF.
#
# NOTE: XDP_REDIRECT into a veth needs an XDP program on the *receiving
# peer* of the target veth (for d0 -> d1, the peer of d1 in the other
# namespace), or the redirected frames vanish (dropped by the veth driver).
# The benchmark's sink already runs an AF_XDP program on that peer, so this
# script does not handle it; for a manual test attach pass.c there.
#
# Requires clang and iproute2 (built with libbpf, as in Debian 12); no libbpf
# headers are needed.
set -euo pipefail

prog=${0##*/}
src_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

usage() {
	printf 'usage: %s attach NS IN_IF OUT_IF [OBJDIR]\n       %s detach NS IN_IF\n' \
		"$prog" "$prog" >&2
	exit 2
}

# The kernel UAPI headers include <asm/types.h>, which lives in the
# multiarch directory; clang -target bpf does not search it by itself.
multiarch_include() {
	local triple=""
	triple=$(clang -print-multiarch 2>/dev/null) || triple=""
	if [[ -z $triple ]] && command -v gcc >/dev/null 2>&1; then
		triple=$(gcc -dumpmachine 2>/dev/null) || triple=""
	fi
	if [[ -n $triple && -d /usr/include/$triple ]]; then
		printf '%s\n' "/usr/include/$triple"
	fi
}

attach() {
	local ns=$1 in_if=$2 out_if=$3 objdir=${4:-}
	local line ifindex inc obj err

	command -v clang >/dev/null 2>&1 || die "clang not found"

	line=$(ip -n "$ns" -o link show "$out_if" 2>/dev/null) ||
		die "cannot find interface $out_if in namespace $ns"
	ifindex=${line%%:*}
	[[ $ifindex =~ ^[0-9]+$ ]] ||
		die "cannot parse ifindex of $out_if in namespace $ns"

	if [[ -z $objdir ]]; then
		objdir=$(mktemp -d "${TMPDIR:-/tmp}/op25b-xdp.XXXXXX")
	else
		mkdir -p -- "$objdir"
	fi
	obj=$objdir/redirect.o

	local -a cflags=(-O2 -g -target bpf "-DTARGET_IFINDEX=$ifindex")
	inc=$(multiarch_include)
	if [[ -n $inc ]]; then
		cflags+=("-I$inc")
	fi
	clang "${cflags[@]}" -c "$src_dir/redirect.c" -o "$obj" ||
		die "cannot compile $src_dir/redirect.c"

	if ! err=$(ip -n "$ns" link set dev "$in_if" xdpdrv obj "$obj" sec xdp 2>&1); then
		err=$(printf '%s\n' "$err" | sed '/^[[:space:]]*$/d' | tail -n 1)
		die "cannot attach XDP in native (xdpdrv) mode to $in_if in namespace $ns: ${err:-unknown error}"
	fi
	printf '%s\n' "$objdir"
}

detach() {
	local ns=$1 in_if=$2 err
	if ! err=$(ip -n "$ns" link set dev "$in_if" xdp off 2>&1); then
		err=$(printf '%s\n' "$err" | sed '/^[[:space:]]*$/d' | tail -n 1)
		die "cannot detach XDP from $in_if in namespace $ns: ${err:-unknown error}"
	fi
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
attach)
	[[ $# -eq 3 || $# -eq 4 ]] || usage
	attach "$@"
	;;
detach)
	[[ $# -eq 2 ]] || usage
	detach "$@"
	;;
*)
	usage
	;;
esac
