#!/usr/bin/python3
"""Summarise the run rows of scripts/bench.sh into results.json and a table.

usage: bench_summary.py ROWS_JSONL RESULTS_JSON DURATION REPEATS PROFILE QUICK [GEN [DUT_NICE IDLE_NOTE [SINK]]]

ROWS_JSONL may hold the rows of several runs of bench.sh (each leaves its rows.jsonl
beside its results.json): `cat A/rows.jsonl B/rows.jsonl > all.jsonl` summarises them
together, as one table with one set of goals.

Per variant: the saturation runs (unlimited offered load; median, min and max of the
rate the DUT handled, the sink rate, CPU-1 us per handled frame, latency), the 90%
check and the overload curve. Then the goals (docs/bench/log.md), each with the
figures it was judged on. Exit 1 on a leak by a policy-applying DUT, or on loss by the
DUT in a check run or below 90% of saturation. With the xdp generator (no backpressure)
frames dropped at the DUT's receive ring count as the DUT's loss there: a NIC would
count them as rx_missed.
"""

import datetime
import json
import os
import platform
import statistics
import sys

LABELS = {
    "xdp-redirect": ("XDP redirect (ceiling)", "baseline", None),
    "bridge-nft": ("bridge + nftables", "baseline", None),
    "naive-fwd": ("naive xsk-rs forwarder", "baseline", None),
    "op25b-kernel": ("op25b, mode kernel", "op25b", 1),
    "op25b-unblockable": ("op25b, mode unblockable", "op25b", 1),
    "op25b-off": ("op25b, mode off (all via worker)", "op25b", 1),
    "op25b-kernel-1m": ("op25b, mode kernel, 1M prefixes", "op25b", 1),
    # The names of runs before the modes (fast path on = unblockable, off).
    "op25b": ("op25b, fast path", "op25b", 1),
    "op25b-userspace": ("op25b, all via worker", "op25b", 1),
    "op25b-unfair": ("op25b, worker, unfair", "op25b", 1),
    "op25b-noguard": ("op25b, worker, no overload guard", "op25b", 1),
    "op25b-unfair-noguard": ("op25b, worker, unfair, no overload guard", "op25b", 1),
    "op25b-2w": ("op25b, 2 workers", "op25b", 2),
}
# DUTs that apply no policy: blocked frames reaching the sink are expected there.
NO_POLICY = {"xdp-redirect", "naive-fwd"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def lat(rows, key):
    return med([(r.get("latency_us") or {}).get(key) for r in rows])


def curve_pct(run):
    """The offered load of a curve run's name: curve200 or curve200.2 (--curve-repeats)."""
    return int(str(run)[5:].split(".")[0])


def curve_points(rows):
    """One point per offered load: the run with the median handled rate (the lower of the
    two middle ones for an even count), with the spread of all runs at that load."""
    by_pct = {}
    for r in rows:
        if str(r["run"]).startswith("curve"):
            by_pct.setdefault(curve_pct(r["run"]), []).append(r)
    points = []
    for pct, runs in by_pct.items():
        ordered = sorted(runs, key=lambda x: x["handled_mpps"])
        r = ordered[(len(ordered) - 1) // 2]
        points.append({
            "pct": pct, "offered_mpps": r["offered_mpps"], "gen_mpps": r["gen_mpps"],
            "handled_mpps": r["handled_mpps"], "sink_mpps": r["sink_mpps"],
            "runs": len(runs), "handled_min_mpps": ordered[0]["handled_mpps"],
            "handled_max_mpps": ordered[-1]["handled_mpps"],
            "lost_by_dut": r["lost_by_dut"], "lost_at_dut_rx_ring": r.get("lost_at_dut_rx_ring", 0),
            "loss_ratio": r["loss_ratio"], "loss": r["loss"],
            "latency_us": r["latency_us"], "generator_bound": r["generator_bound"]})
    return points


def main(argv):
    rows_path, out_path, duration, repeats, profile, quick = argv[1:7]
    quick = quick == "1"
    gen = argv[7] if len(argv) > 7 else "afxdp"
    dut_nice = argv[8] if len(argv) > 8 else "0"
    idle = argv[9] if len(argv) > 9 else "idle CPUs may halt"
    sink = argv[10] if len(argv) > 10 else "afxdp"
    rows = [json.loads(line) for line in open(rows_path) if line.strip()]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": platform.release(), "machine": f"{os.cpu_count()} vCPU {cpu}",
        "method": f"fair (threaded NAPI, CPU 1 = DUT (op25b, naive-fwd at nice {dut_nice}) and its NAPI threads at nice 0, "
                  f"CPU 0 = tester with its NAPI threads at SCHED_FIFO 50; scripts/lab.sh fair; {idle})",
        "generator": {"xdp": "BPF_PROG_RUN live frames (op25b-bench gen --engine xdp)",
                      "afxdp": "AF_XDP copy mode (op25b-bench gen --engine afxdp)"}.get(gen, gen),
        "sink": {"xdp": "XDP program checking and dropping each frame (op25b-bench sink --engine xdp)",
                 "afxdp": "AF_XDP copy mode (op25b-bench sink --engine afxdp)"}.get(sink, sink),
        "xdp_mode": next((r["sink_mode"] for r in rows if r["sink_mode"] != "xdp-prog"), "n/a (XDP sink)"),
        "profile": profile, "frame_size": 64,
        "duration_s": float(duration), "repeats": int(repeats), "quick": quick,
        "variants": [], "checks": [], "goals": [],
    }
    problems = []
    by_name = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        sat = [r for r in mine if quick or not r["rate_limit_pps"]]
        base, _, prof = name.partition("@")
        label, kind, workers = LABELS[base]
        if prof:
            label += f" [{prof}]"
        h = [r["handled_mpps"] for r in sat]
        v = {
            "name": name, "base": base, "profile": prof or "standard", "label": label, "kind": kind,
        "workers": workers, "runs": sat,
            "median_mpps": med(h), "min_mpps": min(h), "max_mpps": max(h),
            "median_sink_mpps": med([r["sink_mpps"] for r in sat]),
            "median_gen_mpps": med([r["gen_mpps"] for r in sat]),
            "median_us_per_frame": med([r["dut_us_per_frame"] for r in sat]),
            "median_cpu_busy": med([r["dut_cpu_busy"] for r in sat]),
            "latency_us": {k: lat(sat, k) for k in ("p50", "p99", "p999", "max")},
            "generator_bound": sum(r["generator_bound"] for r in sat) * 2 > len(sat),
            "median_lost_at_dut_rx_ring": med([r.get("lost_at_dut_rx_ring", 0) for r in sat]),
            # Storm: of the frames that should pass, the share that reached the sink.
            "median_legit_delivered": med([r.get("legit_delivered") for r in sat]),
            "min_legit_delivered": min((r["legit_delivered"] for r in sat if r.get("legit_delivered") is not None), default=None),
            "max_legit_delivered": max((r["legit_delivered"] for r in sat if r.get("legit_delivered") is not None), default=None),
            "median_sent_pass_mpps": med([r["sent_pass"] / r["sent"] * r["gen_mpps"] for r in sat if r["sent"]]),
            # Start and reload figures where the runs timed them (op25b-kernel-1m).
            "dut_times": [r["dut_times"] for r in sat if r.get("dut_times")],
            "curve": curve_points(mine),
        }
        out["variants"].append(v)
        by_name[name] = v
        for r in mine:
            if r["leaked"] and base not in NO_POLICY:
                problems.append(f"{name} run {r['run']}: {r['leaked']} blocked frames LEAKED")
            if r["run"] == "check90" or quick:
                out["checks"].append({"variant": name, "offered_pps": r["rate_limit_pps"],
                                      "handled_mpps": r["handled_mpps"], "sink_mpps": r["sink_mpps"],
                                      "lost": r["lost"], "loss": r["loss"], "leaked": r["leaked"],
                                      "lost_at_dut_rx_ring": r.get("lost_at_dut_rx_ring", 0)})
                # A generator that sent far less than asked proves nothing (an engine that
                # sends nothing loses and leaks nothing).
                want = (r["rate_limit_pps"] or 0) * float(duration)
                if want and r["sent"] < 0.5 * want:
                    problems.append(f"{name} run {r['run']}: the generator sent {r['sent']} frames of the "
                                    f"{int(want)} asked ({r['rate_limit_pps']}/s for {duration} s)")
                if r["handled"] <= 0 or r["passed"] <= 0:
                    problems.append(f"{name} run {r['run']}: nothing reached the sink")
                # --quick judges the DUT alone (rx-ring drops are printed with the check),
                # and so does the storm: it is offered without backpressure on purpose
                # (what d0's ring cannot take is its measure, for the ceiling too).
                storm = r.get("profile", "").endswith("-storm.yaml")
                dut_loss = r["lost_by_dut"] + (0 if quick or storm else r.get("lost_at_dut_rx_ring", 0))
                if dut_loss:
                    problems.append(f"{name}: the DUT lost {r['lost_by_dut']} passing frames, and its receive ring "
                                    f"dropped {r.get('lost_at_dut_rx_ring', 0)} frames, at "
                                    f"{r['rate_limit_pps']} frames/s offered ({'a moderate rate' if quick else '90% of saturation'})")
            if str(r["run"]).startswith("curve") and curve_pct(r["run"]) < 90 and (r["lost_by_dut"] + r.get("lost_at_dut_rx_ring", 0)):
                problems.append(f"{name}: the DUT lost {r['lost_by_dut']} passing frames (receive ring: "
                                f"{r.get('lost_at_dut_rx_ring', 0)} frames) at {curve_pct(r['run'])}% of saturation"
                                f" (run {r['run']})")
    json.dump(out, open(out_path, "w"), indent=1)

    print(f"\n{'variant':44} {'handled Mpps (min-max)':24} {'sink':>7} {'gen':>7} {'us/frame':>9} {'CPU1':>5} {'p50 us':>7} {'p99 us':>7} {'leaked':>7}")
    for v in out["variants"]:
        gb = "  generator-bound" if v["generator_bound"] else ""
        us = f"{v['median_us_per_frame']:.2f}" if v["median_us_per_frame"] else "-"
        l50, l99 = v["latency_us"]["p50"], v["latency_us"]["p99"]
        print(f"{v['label']:44} {v['median_mpps']:.3f} ({v['min_mpps']:.3f}-{v['max_mpps']:.3f}){'':5}"
              f" {v['median_sink_mpps']:7.3f} {v['median_gen_mpps']:7.3f} {us:>9} {100 * v['median_cpu_busy']:4.0f}%"
              f" {l50 if l50 is not None else '-':>7} {l99 if l99 is not None else '-':>7}"
              f" {sum(r['leaked'] for r in v['runs']):7}{gb}")
    for v in out["variants"]:
        if v["profile"] == "storm" and v["median_legit_delivered"] is not None:
            print(f"storm, {v['label']}: {100 * v['median_legit_delivered']:.1f}% of the legitimate frames offered delivered "
                  f"({100 * v['min_legit_delivered']:.1f}-{100 * v['max_legit_delivered']:.1f}%), "
                  f"offered {v['median_gen_mpps']:.3f} Mpps ({v['median_sent_pass_mpps']:.3f} legitimate), "
                  f"lost at the DUT's receive ring {v['median_lost_at_dut_rx_ring']:.0f} per run")
    for c in out["checks"]:
        l = c["loss"]
        print(f"check {c['variant']} at {c['offered_pps']} frames/s: handled {c['handled_mpps']:.3f} Mpps, "
              f"lost {max(c['lost'], 0)} (generator link {l['generator_link']}, DUT socket {l['dut_socket']}, "
              f"DUT->sink {l['dut_to_sink_link']}, sink {l['sink_link'] + l['sink_socket']}, by the DUT {l['lost_by_dut']}; "
              f"of the generator link, at the DUT's receive ring {c['lost_at_dut_rx_ring']}), leaked {c['leaked']}")
    for v in out["variants"]:
        if not v["curve"]:
            continue
        print(f"\noverload curve, {v['label']} (saturation {v['median_mpps']:.3f} Mpps handled)")
        many = any(p["runs"] > 1 for p in v["curve"])
        print(f"  {'offered':>7} {'Mpps':>7} {'gen':>7} {'handled':>8}{' (min-max, runs)' if many else ''} {'sink':>7} {'lost by DUT':>12} {'rx ring':>9} {'p50 us':>7} {'p99 us':>7} {'p99.9':>7} {'max':>7}")
        for p in sorted(v["curve"], key=lambda p: p["pct"]):
            l = p["latency_us"] or {}
            spread = f" ({p['handled_min_mpps']:.3f}-{p['handled_max_mpps']:.3f}, {p['runs']})" if many else ""
            print(f"  {p['pct']:6}% {p['offered_mpps']:7.3f} {p['gen_mpps']:7.3f} {p['handled_mpps']:8.3f}{spread} {p['sink_mpps']:7.3f}"
                  f" {p['lost_by_dut']:12} {p['lost_at_dut_rx_ring']:9} {l.get('p50', '-'):>7} {l.get('p99', '-'):>7} {l.get('p999', '-'):>7} {l.get('max', '-'):>7}"
                  f"{'  generator-bound' if p['generator_bound'] else ''}")

    def goal(text, ok, figures):
        out["goals"].append({"goal": text, "met": ok, "figures": figures})
        print(f"goal: {text}: {'MET' if ok else ('NOT MET' if ok is not None else 'NOT MEASURED')} ({figures})")

    if not quick:
        print()
        def ratio(text, a, b, want):
            va, vb = by_name.get(a), by_name.get(b)
            if va and vb and vb["median_mpps"]:
                r = va["median_mpps"] / vb["median_mpps"]
                gb = "; generator-bound" if va["generator_bound"] or vb["generator_bound"] else ""
                goal(text, r >= want, f"{va['median_mpps']:.3f} vs {vb['median_mpps']:.3f} Mpps: {r:.2f}x{gb}")

        # Every frame through the worker (the AF_XDP copy-mode path).
        ratio("op25b-off handles >= 95% of the naive forwarder", "op25b-off", "naive-fwd", 0.95)
        ratio("op25b-off handles >= 1.3x bridge + nftables", "op25b-off", "bridge-nft", 1.3)
        # Issue 35 (kernel verdicts): mode kernel against the ceiling and the bridge on
        # the same profile and generator.
        ratio("op25b-kernel, mixed profile, handles >= 0.85 of the XDP-redirect ceiling",
              "op25b-kernel@mixed", "xdp-redirect@mixed", 0.85)
        ratio("op25b-kernel, all-TCP/25 profile, handles >= 0.85 of the XDP-redirect ceiling",
              "op25b-kernel@smtp25", "xdp-redirect@smtp25", 0.85)
        ratio("op25b-kernel, ISP profile (1% TCP/25), handles >= 0.9 of the XDP-redirect ceiling",
              "op25b-kernel@isp", "xdp-redirect@isp", 0.90)
        ratio("op25b-kernel, mixed profile, handles >= 1.6x bridge + nftables",
              "op25b-kernel@mixed", "bridge-nft@mixed", 1.6)
        ratio("op25b-kernel, all-TCP/25 profile, handles >= 2x bridge + nftables",
              "op25b-kernel@smtp25", "bridge-nft@smtp25", 2.0)
        ratio("op25b-kernel with a 1M-prefix policy, mixed profile, handles >= 0.8 of the XDP-redirect ceiling",
              "op25b-kernel-1m@mixed", "xdp-redirect@mixed", 0.80)
        v = by_name.get("op25b-kernel@storm")
        if v and v["median_legit_delivered"] is not None:
            figures = (f"{100 * v['median_legit_delivered']:.1f}% (min {100 * v['min_legit_delivered']:.1f}%) "
                       f"at {v['median_gen_mpps']:.3f} Mpps offered")
            if any(r.get("gen_backpressure") for r in v["runs"]):
                figures += "; the generator was backpressured (its rate followed the DUT's)"
            for other in ("op25b-unblockable@storm", "op25b-off@storm", "xdp-redirect@storm", "bridge-nft@storm"):
                o = by_name.get(other)
                if o and o["median_legit_delivered"] is not None:
                    figures += f"; {other} {100 * o['median_legit_delivered']:.1f}% at {o['median_gen_mpps']:.3f}"
            goal("storm profile: op25b-kernel delivers >= 95% of the legitimate frames offered",
                 v["median_legit_delivered"] >= 0.95, figures)
        # Zero leaked frames in every run of a DUT that applies the policy.
        policy_rows = [r for r in rows if r["base"] not in NO_POLICY]
        if policy_rows:
            leaked = sum(r["leaked"] for r in policy_rows)
            goal("zero blocked frames leaked in every op25b and bridge run", leaked == 0,
                 f"{leaked} leaked over {len(policy_rows)} runs")
        for base in ("op25b-kernel", "op25b-unblockable", "op25b-off", "op25b-kernel-1m", "bridge-nft", "naive-fwd"):
            for prof in ("standard", "mixed", "isp", "smtp25", "storm", "hostile"):
                a = base if prof == "standard" else f"{base}@{prof}"
                b = "xdp-redirect" if prof == "standard" else f"xdp-redirect@{prof}"
                c = "bridge-nft" if prof == "standard" else f"bridge-nft@{prof}"
                va, vb, vc = by_name.get(a), by_name.get(b), by_name.get(c)
                if va and vb and vb["median_mpps"]:
                    line = f"reported: {a} handles {va['median_mpps']:.3f} Mpps = {va['median_mpps'] / vb['median_mpps']:.2f}x the ceiling ({vb['median_mpps']:.3f})"
                    if vc and vc["median_mpps"] and a != c:
                        line += f", {va['median_mpps'] / vc['median_mpps']:.2f}x bridge-nft ({vc['median_mpps']:.3f})"
                    print(line)
        for v in out["variants"]:
            for t in v["dut_times"]:
                if "start_s" in t and v["base"] == "op25b-kernel-1m":
                    print(f"reported: {v['name']} start: {t}")
        for name in ("op25b-off", "op25b-unfair", "op25b-noguard", "op25b-unfair-noguard", "op25b-kernel", "op25b-unblockable"):
            v = by_name.get(name)
            if not v or not v["curve"]:
                continue
            for pct in (200, 400):
                p = next((p for p in v["curve"] if p["pct"] == pct), None)
                if p is None:
                    continue
                reached = p["gen_mpps"] / v["median_mpps"]
                ok = p["handled_mpps"] >= 0.9 * v["median_mpps"]
                figures = f"handled {p['handled_mpps']:.3f} of {v['median_mpps']:.3f} Mpps"
                if p["runs"] > 1:
                    figures += f" (median of {p['runs']} runs, {p['handled_min_mpps']:.3f}-{p['handled_max_mpps']:.3f})"
                if reached < pct / 100 * 0.95:
                    # The generator could not offer that much: the point says nothing.
                    ok = None
                    figures += f"; the generator reached only {100 * reached:.0f}% of saturation ({p['gen_mpps']:.3f} Mpps)"
                goal(f"{name} at {pct}% offered handles >= 90% of its saturation", ok, figures)
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
