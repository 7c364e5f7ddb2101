#!/usr/bin/env bash
# setup.sh - install what op25b's build and tests need on Debian 12.
#
# As root: installs the missing Debian packages (apt-get update runs once,
# and only if something is missing), preseeding debconf so tshark installs
# non-interactively, then adds the clippy/rustfmt rustup components if cargo
# is present and they are missing (failure there is only a warning), and installs
# cargo-deb (scripts/package.sh) with `cargo install --locked` when `cargo deb` is missing.
# bpftool is optional: skipped with a warning when apt has no candidate.
#
# As non-root: only reports what is missing; exit 1 if anything is, else 0.
#
# Then, root or not, probes the installed tools for what the project uses (swaks' IPv6
# and TLS, aiosmtpd, tshark, nft, tc, taskset/chrt, clang's BPF target...) and fails
# loudly, naming the package, when one cannot do its part.
#
# Prints one line per action.  Safe to re-run.

set -euo pipefail

PACKAGES=(
    clang llvm libelf-dev zlib1g-dev libpcap-dev pkg-config m4 make gcc
    libc6-dev iproute2 ethtool nftables swaks python3-aiosmtpd python3-yaml tshark curl
    python3-prometheus-client  # scripts/soak.py reads /metrics with the client's parser
    gnuplot-nox openssl libcap2-bin procps psmisc iputils-ping util-linux
    # swaks' IPv6 (IO::Socket::INET6) and TLS (Net::SSLeay) support: only Recommends
    # of swaks, so --no-install-recommends leaves them out.
    libio-socket-inet6-perl libnet-ssleay-perl
    shellcheck        # scripts/test.sh lints every script
    lintian           # scripts/package.sh --check lints the .deb
    dpkg-dev binutils # cargo-deb: dpkg-shlibdeps ($auto depends), objcopy (dbgsym)
    systemd man-db    # systemd-analyze/systemd-escape (scripts/check_unit.sh), man (package --check)
    prometheus        # promtool: scripts/check_monitoring.sh checks the rules
    freeradius-utils  # radclient: the NAS in the RADIUS accounting end-to-end test
    netcat-openbsd    # nc: a plain TCP client reads the SMTP notice (tests/e2e_lab.rs)
)
OPTIONAL_PACKAGES=(bpftool)   # installed when the archive has it
RUST_COMPONENTS=(clippy rustfmt)
CARGO_DEB_VERSION=3.8.0   # scripts/package.sh; the version scripts/package.sh was checked with

say() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: WARNING: %s\n' "$*" >&2; }

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

# apt has an installation candidate for the package (needs package lists).
available() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
    [[ -n "$cand" && "$cand" != "(none)" ]]
}

# --- rust toolchain helpers ---------------------------------------------------
find_rustup() {
    if command -v rustup >/dev/null 2>&1; then
        command -v rustup
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/rustup" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/rustup"
    fi
}
have_cargo() {
    command -v cargo >/dev/null 2>&1 || [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]
}
missing_rust_components() {
    local rustup list c
    have_cargo || return 0
    rustup=$(find_rustup)
    [[ -n "$rustup" ]] || return 0
    list=$("$rustup" component list --installed 2>/dev/null || true)
    for c in "${RUST_COMPONENTS[@]}"; do
        grep -q "^${c}\(-\|$\)" <<<"$list" || echo "$c"
    done
}

# --- what is missing ----------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
missing_opt=()
for p in "${OPTIONAL_PACKAGES[@]}"; do
    installed "$p" || missing_opt+=("$p")
done
mapfile -t missing_rust < <(missing_rust_components)
find_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        command -v cargo
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
    fi
}
# cargo-deb is missing when cargo is there but `cargo deb` is not.
missing_cargo_deb=0
if have_cargo && ! "$(find_cargo)" deb --version >/dev/null 2>&1; then
    missing_cargo_deb=1
fi

if [[ $EUID -ne 0 ]]; then
    rc=0
    for p in "${missing[@]}"; do say "missing package: $p"; rc=1; done
    for p in "${missing_opt[@]}"; do
        if available "$p"; then
            say "missing package: $p"; rc=1
        else
            say "optional package $p not installed (no candidate in apt lists)"
        fi
    done
    for c in "${missing_rust[@]}"; do say "missing rustup component: $c"; rc=1; done
    if ((missing_cargo_deb)); then say "missing cargo subcommand: cargo-deb $CARGO_DEB_VERSION"; rc=1; fi
    if [[ $rc -eq 0 ]]; then
        say "nothing missing"
    else
        say "run as root to install the missing packages"
        exit "$rc"
    fi
fi

# --- root: install --------------------------------------------------------------
if [[ $EUID -ne 0 ]]; then
    :
elif [[ ${#missing[@]} -eq 0 && ${#missing_opt[@]} -eq 0 ]]; then
    say "all packages present"
else
    say "apt-get update"
    apt-get update -q

    to_install=("${missing[@]}")
    for p in "${missing_opt[@]}"; do
        if available "$p"; then
            to_install+=("$p")
        else
            warn "optional package $p not available in this archive, skipping"
        fi
    done

    if [[ ${#to_install[@]} -gt 0 ]]; then
        if printf '%s\n' "${to_install[@]}" | grep -qx tshark; then
            say "preseed debconf: wireshark-common/install-setuid=false"
            echo 'wireshark-common wireshark-common/install-setuid boolean false' \
                | debconf-set-selections
        fi
        say "apt-get install ${to_install[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${to_install[@]}"
        for p in "${to_install[@]}"; do
            installed "$p" || { warn "package $p still not installed"; exit 1; }
        done
    fi
fi

if [[ $EUID -ne 0 ]]; then
    :
elif ! have_cargo; then
    say "cargo not found, skipping rustup components"
elif [[ ${#missing_rust[@]} -eq 0 ]]; then
    say "rustup components present: ${RUST_COMPONENTS[*]}"
else
    rustup=$(find_rustup)
    if [[ -z "$rustup" ]]; then
        warn "cargo present but rustup not found; cannot add ${missing_rust[*]}"
    else
        say "rustup component add ${missing_rust[*]}"
        "$rustup" component add "${missing_rust[@]}" \
            || warn "rustup component add ${missing_rust[*]} failed (continuing)"
    fi
fi

if [[ $EUID -ne 0 ]]; then
    :
elif ((missing_cargo_deb)); then
    say "cargo install cargo-deb --locked --version $CARGO_DEB_VERSION"
    "$(find_cargo)" install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet \
        || { warn "cargo install cargo-deb failed"; exit 1; }
elif have_cargo; then
    say "cargo-deb present"
fi

# --- probes: each tool can do what the project asks of it ----------------------------
# probe PACKAGE WHAT COMMAND...: run COMMAND quietly; on failure name PACKAGE.
probe_failed=0
probe() {
    local pkg=$1 what=$2
    shift 2
    if "$@" >/dev/null 2>&1; then
        say "probe ok: $what"
    else
        warn "probe FAILED: $what (package $pkg; command: $*)"
        probe_failed=1
    fi
}
swaks_has() { local s; s=$(swaks --support 2>&1) || true; grep -q "^=== $1 supported" <<<"$s"; }
tmp_probe=$(mktemp -d)
# shellcheck disable=SC2317  # invoked through the trap
cleanup_probe() { rm -rf "$tmp_probe"; }
trap cleanup_probe EXIT

probe swaks "swaks runs" swaks --version
probe libio-socket-inet6-perl "swaks speaks IPv6 (IO::Socket::INET6)" swaks_has IPv6
probe libnet-ssleay-perl "swaks speaks TLS, for port 465 (Net::SSLeay)" swaks_has TLS
probe python3-aiosmtpd "python3 has aiosmtpd (the lab's SMTP servers)" /usr/bin/python3 -c "import aiosmtpd.controller"
probe python3-yaml "python3 has yaml (structured edits of configs and profiles; tests/offline/config_roundtrip.rs)" /usr/bin/python3 -c "import yaml"
probe python3-prometheus-client "python3 parses Prometheus text (scripts/soak.py)" \
    /usr/bin/python3 -c "from prometheus_client.parser import text_string_to_metric_families"
probe tshark "tshark dissects captures" tshark --version
probe nftables "nft runs (bridge + nftables baseline, failure_mode open)" nft --version
probe iproute2 "ip and tc run (veth lab, qdiscs)" sh -c "ip -V && tc -V"
probe ethtool "ethtool runs (veth offloads)" ethtool --version
probe util-linux "taskset, chrt and setsid run (CPU placement)" sh -c "taskset -V && chrt -V && command -v setsid"
probe openssl "openssl makes certificates (the lab's port 465)" openssl version
probe clang "clang compiles for the BPF target (XDP programs)" \
    clang -O2 -target bpf -c -x c /dev/null -o "$tmp_probe/probe.o"
probe llvm "llvm-strip handles BPF objects" sh -c "command -v llvm-strip"
probe pkg-config "pkg-config finds libelf and zlib (libxdp/libbpf build)" pkg-config --exists libelf zlib
probe libpcap-dev "libpcap headers (libxdp build)" sh -c "test -e /usr/include/pcap/pcap.h"
probe m4 "m4 runs (libxdp build)" m4 --version
probe gnuplot-nox "gnuplot draws the benchmark charts" gnuplot --version
probe curl "curl scrapes the metrics endpoint" curl --version
probe shellcheck "shellcheck lints the scripts" shellcheck --version
probe freeradius-utils "radclient sends RADIUS accounting (tests/e2e_lab.rs)" radclient -v
probe lintian "lintian lints the .deb (scripts/package.sh --check)" lintian --version
probe prometheus "promtool checks the Prometheus rules" promtool --version
probe systemd "systemd-analyze verifies the unit (scripts/check_unit.sh)" \
    sh -c "systemd-analyze --version && command -v systemd-escape"
if ((probe_failed)); then
    warn "some tools cannot do what op25b's scripts need (see the FAILED probes above);"
    warn "install the named packages (as root: scripts/setup.sh) and run again"
    exit 1
fi
say "every probe passed"
say "done"
