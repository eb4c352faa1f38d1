#!/usr/bin/env bash
# Validate the Prometheus side of the monitoring kit with promtool: the scrape config, the rules, and the rules'
# unit tests. Installs promtool (Debian's `prometheus` package) when it is missing and we are root on an apt
# system; otherwise says so and exits 0, so a CI without promtool skips rather than fails.
set -euo pipefail
cd "$(dirname "$0")/prometheus"

if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "promtool not found: installing Debian's prometheus package (provides promtool)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        # --no-install-recommends keeps it to the server binary and promtool; the service is never started here.
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
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
