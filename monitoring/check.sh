#!/usr/bin/env bash
# Validate the monitoring kit with promtool: the scrape config, the rules, the rules' unit tests, and (with
# python3) the PromQL syntax of every Grafana dashboard query. Installs promtool (Debian's `prometheus` package)
# when it is missing and we are root on an apt system. Otherwise it says so and exits 0 (SKIP), unless
# HUMANSTYLE_REQUIRE_ALL=1 (set by .ci/run): then a missing promtool is a failure, so CI cannot pass unchecked.
set -euo pipefail
cd "$(dirname "$0")/prometheus"

if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "promtool not found: installing Debian's prometheus package (provides promtool)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        # --no-install-recommends keeps it to the server binary and promtool; the service is never started here.
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    elif [ "${HUMANSTYLE_REQUIRE_ALL:-0}" != "0" ]; then
        echo "FAIL: promtool not found and cannot install it (need root and apt-get), and" \
             "HUMANSTYLE_REQUIRE_ALL=1 forbids skipping these checks" >&2
        exit 1
    else
        echo "SKIP: promtool not found and cannot install it (need root and apt-get);" \
             "install Prometheus' promtool to run these checks" >&2
        exit 0
    fi
fi

promtool --version 2>&1 | head -n 1
promtool check config prometheus.yml
promtool check rules rules.yml
promtool test rules rules_test.yml

# Grafana's own variables are not PromQL: substitute plain values, then let promtool parse each query as a rule.
if command -v python3 >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 - ../grafana/dashboards/*.json >"$tmp/dashboard_queries.yml" <<'PY'
import json
import re
import sys

print("groups:\n  - name: dashboard_queries\n    rules:")
n = 0
for path in sys.argv[1:]:
    stack = [json.load(open(path))]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                expr = re.sub(r"\$__(rate_interval|range|interval)", "5m", node["expr"])
                expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
                n += 1
                print(f"      - record: dashboard_query_{n}\n        expr: {json.dumps(expr)}")
            stack.extend(node.values())
PY
    echo "Dashboard queries:"
    promtool check rules "$tmp/dashboard_queries.yml"
fi
