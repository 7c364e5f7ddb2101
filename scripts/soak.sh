#!/usr/bin/env bash
# soak.sh - hardening runs on the veth lab: soak, overload, hostile frames, reply abuse,
# faults and failure modes, each with its checks and one result row.
#
# usage: soak.sh [SCENARIO...|all] [--short] [--duration S] [--out DIR] [--unfair]
#                [--fast-path kernel|unblockable|off]
#   soak         70% of measured saturation for 600 s (--short: 50% for OP25B_SOAK_SECS,
#                default 20 s), bench profile
#                with rejects: zero leaked, zero loss, conservation, RSS flat
#   overload     150% of saturation, then 50%: no leak, no stall, recovery
#   hostile      50% hostile frames at line rate and at 50k/s: no crash, nothing
#                blocked arrives (tags + independent oracle), counters per reason
#   reply-abuse  SYN flood to 25 from a reject class: replies within reject_rate,
#                other traffic unaffected
#   notice-flood the same flood on a `reply: smtp-notice` class: SYN-ACKs only while
#                the budget also pays for their greeting, RSTs after, memory flat
#   faults       upstream link down/up, peer stops reading, 100 SIGHUPs in 10 s (a
#                third invalid), kill -9 + restart; clean load check after each
#   failover     failure_mode open and closed: kill -9 under load, outage in ms,
#                blocked traffic stays blocked
# Every scenario uses the fair placement of docs/benchmarks.md (scripts/lab.sh fair);
# --unfair leaves the veths' receive work on the kernel's default CPUs, to compare.
# --fast-path kernel|unblockable runs op25b with its XDP program deciding in the kernel
# (default off: every frame through the worker); the soak then reports apart what the
# lab's veth could not take from the XDP redirect (xdp_xmit_errors: the peer's
# 256-frame ring was full).
# Needs root and a release build (target/release/op25b, or OP25B_BIN). Traffic stays in
# the lab namespaces; root-namespace counters are checked. Exit 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in -h|--help) sed -n '2,27p' "$0"; exit 0 ;; esac
# Debian's interpreter: soak.py needs python3-yaml and python3-prometheus-client from
# apt (scripts/setup.sh), which another python3 first on PATH (pyenv, venv) may lack.
exec /usr/bin/python3 scripts/soak.py "$@"
