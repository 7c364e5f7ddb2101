#!/usr/bin/env bash
# check_monitoring.sh - checks the monitoring files op25b ships in configs/:
#   - configs/prometheus/op25b-alerts.yaml: promtool check rules; every alert has a
#     for:, a severity label (critical/warning/info), a summary and a description, and
#     its expr uses only exported metric names;
#   - configs/prometheus/op25b-alerts.test.yaml: promtool test rules, and every alert has
#     at least one case where it fires and one where it does not (no test names an
#     alert that does not exist: promtool would pass it silently);
#   - configs/grafana/op25b-dashboard.json: valid JSON, unique panel ids, gridPos inside
#     the 24 columns without overlaps, every query (panel targets, annotations, template
#     variables) uses only exported metric names.
# Exported metric names: configs/prometheus/metric-names.txt (one per line; `up`, the
# scrape health series Prometheus adds, is allowed too). Keep it in step with
# src/control/observe/schema.rs (the schema_names_match_metric_names_txt unit test compares them).
#
# usage: scripts/check_monitoring.sh          (from any directory; exit 1 on any failure)
# needs: promtool (Debian package prometheus, installed by scripts/setup.sh), python3
# with the yaml module (Debian package python3-yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=configs/prometheus/op25b-alerts.yaml
TESTS=configs/prometheus/op25b-alerts.test.yaml
NAMES=configs/prometheus/metric-names.txt
DASHBOARD=configs/grafana/op25b-dashboard.json

step() { printf '\n== check_monitoring.sh: %s\n' "$*"; }
fail() {
    echo "check_monitoring.sh: FAILED: $*" >&2
    exit 1
}

command -v promtool >/dev/null 2>&1 ||
    fail "promtool not found; install the prometheus package: scripts/setup.sh (or apt-get install --no-install-recommends prometheus)"
command -v python3 >/dev/null 2>&1 || fail "python3 not found"
python3 -c 'import yaml' 2>/dev/null ||
    fail "python3 has no yaml module; install the python3-yaml package (apt-get install python3-yaml)"
for f in "$RULES" "$TESTS" "$NAMES" "$DASHBOARD"; do
    [[ -f $f ]] || fail "$f is missing"
done

# The Python half: metric-name extraction from PromQL and the structural checks.
# argv: rules|dashboard, then the files.
CHECKS=$(
    cat <<'PY'
import json, re, sys

def load_names(path):
    names, errors = set(), []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line):
                errors.append(f"{path}:{n}: not a metric name: {line!r}")
            elif line in names:
                errors.append(f"{path}:{n}: duplicate metric name {line}")
            names.add(line)
    if not names:
        errors.append(f"{path}: no metric names")
    return names | {"up"}, errors

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}

def metric_names(expr):
    """Metric names a PromQL expression (possibly with Grafana variables) selects."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)        # Grafana variables
    s = re.sub(r"\{[^}]*\}", " ", s)                # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)               # ranges and subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    found = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*|\d[\w.]*", s):
        tok = m.group(0)
        if tok[0].isdigit() or tok.lower() in KEYWORDS:
            continue
        if re.match(r"\s*\(", s[m.end():]):        # a function or an aggregation
            continue
        found.add(tok)
    return found

def check_expr(where, expr, allowed, errors):
    names = metric_names(expr)
    unknown = sorted(names - allowed)
    if unknown:
        errors.append(f"{where}: unknown metric name(s) {', '.join(unknown)} in: {expr}")
    return names

def check_rules(rules_path, tests_path, names_path):
    import yaml
    allowed, errors = load_names(names_path)
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    alerts = {}
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert")
            if not name:
                continue
            where = f"{rules_path}: alert {name}"
            if name in alerts:
                errors.append(f"{where}: defined twice")
            alerts[name] = rule
            if not rule.get("for"):
                errors.append(f"{where}: no for: duration")
            sev = (rule.get("labels") or {}).get("severity")
            if sev not in ("critical", "warning", "info"):
                errors.append(f"{where}: severity label is {sev!r}, want critical, warning or info")
            ann = rule.get("annotations") or {}
            for key in ("summary", "description"):
                if not str(ann.get(key) or "").strip():
                    errors.append(f"{where}: no {key} annotation")
            check_expr(where, str(rule.get("expr", "")), allowed, errors)
    if not alerts:
        errors.append(f"{rules_path}: no alerts")
    with open(tests_path) as f:
        tests = yaml.safe_load(f)
    fires, quiet = set(), set()
    for test in tests.get("tests") or []:
        for case in test.get("alert_rule_test") or []:
            name = case.get("alertname")
            if name not in alerts:
                errors.append(f"{tests_path}: test {test.get('name')!r} checks alert {name!r}, "
                              f"which {rules_path} does not define")
                continue
            (fires if case.get("exp_alerts") else quiet).add(name)
    for name in sorted(alerts):
        if name not in fires:
            errors.append(f"{tests_path}: no test case where {name} fires (non-empty exp_alerts)")
        if name not in quiet:
            errors.append(f"{tests_path}: no test case where {name} stays quiet (exp_alerts: [])")
    if not errors:
        print(f"{len(alerts)} alerts: for, severity, summary, description and metric names OK; "
              f"each fires and stays quiet in {tests_path}")
    return errors

def check_dashboard(path, names_path):
    allowed, errors = load_names(names_path)
    try:
        with open(path) as f:
            dash = json.load(f)
    except json.JSONDecodeError as e:
        return [f"{path}: invalid JSON: {e}"]
    ids = {}
    n_targets = 0

    def layout(panels, where):
        boxes = []
        for p in panels:
            g = p.get("gridPos") or {}
            label = f"panel {p.get('id')} {p.get('title')!r}"
            if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
                errors.append(f"{path}: {label}: gridPos needs integer x, y, w, h")
                continue
            if g["w"] <= 0 or g["h"] <= 0 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
                errors.append(f"{path}: {label}: gridPos {g} is outside the 24-column grid")
            for other, og in boxes:
                if (g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"]
                        and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]):
                    errors.append(f"{path}: {label} overlaps {other} ({where})")
            boxes.append((label, g))

    def walk(panels):
        nonlocal n_targets
        for p in panels:
            pid, title = p.get("id"), p.get("title")
            label = f"panel {pid} {title!r}"
            if not isinstance(pid, int):
                errors.append(f"{path}: panel {title!r} has no integer id")
            elif pid in ids:
                errors.append(f"{path}: panel id {pid} used by {ids[pid]!r} and {title!r}")
            else:
                ids[pid] = title
            ptype = p.get("type")
            if ptype == "row":
                walk(p.get("panels") or [])
                if p.get("panels"):
                    layout(p["panels"], f"inside collapsed row {title!r}")
                continue
            if ptype == "text":
                if not str((p.get("options") or {}).get("content") or "").strip():
                    errors.append(f"{path}: {label}: text panel without content")
                continue
            targets = p.get("targets") or []
            exprs = [t for t in targets if str(t.get("expr") or "").strip()]
            if not exprs:
                errors.append(f"{path}: {label}: no query")
            refs = [t.get("refId") for t in targets]
            if len(refs) != len(set(refs)):
                errors.append(f"{path}: {label}: duplicate refId in {refs}")
            for t in exprs:
                n_targets += 1
                check_expr(f"{path}: {label} target {t.get('refId')}", t["expr"], allowed, errors)

    walk(dash.get("panels") or [])
    layout(dash.get("panels") or [], "top level")
    if not ids:
        errors.append(f"{path}: no panels")
    for a in (dash.get("annotations") or {}).get("list") or []:
        if a.get("expr"):
            check_expr(f"{path}: annotation {a.get('name')!r}", a["expr"], allowed, errors)
    for v in (dash.get("templating") or {}).get("list") or []:
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else str(q or "")
        for text in {q, str(v.get("definition") or "")}:
            m = re.fullmatch(r"\s*label_values\(\s*(?:(.*),\s*)?[A-Za-z_]\w*\s*\)\s*", text)
            if m:
                text = m.group(1) or ""
            if text.strip() and v.get("type") == "query":
                check_expr(f"{path}: variable {v.get('name')!r}", text, allowed, errors)
    if not errors:
        print(f"{len(ids)} panels with unique ids, no overlaps; {n_targets} queries use only "
              f"names from {names_path}")
    return errors

mode, args = sys.argv[1], sys.argv[2:]
errs = check_rules(*args) if mode == "rules" else check_dashboard(*args)
for e in errs:
    print(e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY
)

step "promtool check rules $RULES"
promtool check rules "$RULES" || fail "promtool check rules $RULES (see above)"

step "promtool test rules $TESTS"
promtool test rules "$TESTS" || fail "promtool test rules $TESTS: an alert test failed (see above)"

step "alert rules: labels, annotations, test coverage, metric names"
python3 -c "$CHECKS" rules "$RULES" "$TESTS" "$NAMES" ||
    fail "$RULES / $TESTS (see above)"

step "Grafana dashboard $DASHBOARD"
python3 -c "$CHECKS" dashboard "$DASHBOARD" "$NAMES" ||
    fail "$DASHBOARD (see above)"

echo
echo "check_monitoring.sh: OK (alert rules, alert tests, dashboard)"
