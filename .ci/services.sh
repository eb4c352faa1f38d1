#!/usr/bin/env bash
# Throwaway servers for the scale-out tests, on loopback only: a PostgreSQL 15 (initdb + pg_ctl in a temporary
# folder, run as a non-root user since initdb refuses root) and an S3 server (moto's server mode). Sourced by
# .ci/run:  source .ci/services.sh && start_services "$VENV" && trap stop_services EXIT
# Exports what the tests read: HUMANSTYLE_TEST_POSTGRES_URL (a superuser URL; each test creates its own database),
# HUMANSTYLE_TEST_POSTGRES_CTL (a script: `$HUMANSTYLE_TEST_POSTGRES_CTL restart -m immediate` crashes and restarts
# the server) and HUMANSTYLE_TEST_S3_ENDPOINT (http://127.0.0.1:PORT, any credentials).
# Run by hand for a development shell:  source .ci/services.sh && start_services .venv
# HS_LISTEN (default 127.0.0.1) binds both elsewhere, and HS_PG_HBA (a CIDR) lets PostgreSQL clients from there in:
# the scale-out test starts its own pair for machines in network namespaces (tests/scale_helpers.py). HS_PG_SETUP
# names a script run on the new data folder before the server starts (the TLS test's certificates and pg_hba).

_hs_free_port() {
    "$1/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_hs_pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
    done
    return 1
}

start_postgres() {
    local venv=$1 bin user port
    if ! bin=$(_hs_pg_bin); then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing Debian's postgresql for the catalog tests"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null
            apt-get install -y -qq --no-install-recommends postgresql >/dev/null
        fi
        bin=$(_hs_pg_bin) || { echo "no PostgreSQL server binaries: the PostgreSQL tests will not run"; return 1; }
    fi
    HS_PG_DIR=$(mktemp -d /tmp/humanstyle-pg.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then
        if id postgres >/dev/null 2>&1; then user=postgres; else user=nobody; fi
        chown "$user" "$HS_PG_DIR"
        HS_PG_AS="runuser -u $user --"
    else
        HS_PG_AS=""
    fi
    port=$(_hs_free_port "$venv")
    $HS_PG_AS "$bin/initdb" -D "$HS_PG_DIR/data" -U humanstyle --auth=trust -E UTF8 >"$HS_PG_DIR/initdb.log" 2>&1 \
        || { cat "$HS_PG_DIR/initdb.log"; return 1; }
    # Loopback TCP only, the socket in the private folder; fsync off: a test server, never a machine crash.
    cat >"$HS_PG_DIR/ctl" <<EOF
#!/bin/sh
exec $HS_PG_AS "$bin/pg_ctl" -D "$HS_PG_DIR/data" -l "$HS_PG_DIR/server.log" -w -t 60 \
    -o "-h ${HS_LISTEN:-127.0.0.1} -p $port -k $HS_PG_DIR -c fsync=off -c max_connections=200" "\$@"
EOF
    chmod 755 "$HS_PG_DIR/ctl"
    if [ -n "${HS_PG_HBA:-}" ]; then
        echo "host all all ${HS_PG_HBA} trust" >>"$HS_PG_DIR/data/pg_hba.conf"
    fi
    if [ -n "${HS_PG_SETUP:-}" ]; then  # a test's own server setup (TLS, authentication): DATA_DIR SERVER_USER
        "$HS_PG_SETUP" "$HS_PG_DIR/data" "${user:-$(id -un)}" || return 1
    fi
    "$HS_PG_DIR/ctl" start >/dev/null || { cat "$HS_PG_DIR/server.log"; return 1; }
    export HUMANSTYLE_TEST_POSTGRES_URL="postgresql://humanstyle@127.0.0.1:$port/postgres"
    export HUMANSTYLE_TEST_POSTGRES_CTL="$HS_PG_DIR/ctl"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

start_s3() {
    local venv=$1 port i
    port=$(_hs_free_port "$venv")
    HS_S3_LOG=$(mktemp /tmp/humanstyle-s3.XXXXXX.log)
    "$venv/bin/moto_server" -H "${HS_LISTEN:-127.0.0.1}" -p "$port" >"$HS_S3_LOG" 2>&1 &
    HS_S3_PID=$!
    for i in $(seq 1 100); do
        if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
            >/dev/null 2>&1; then
            export HUMANSTYLE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
            echo "S3 (moto) on 127.0.0.1:$port"
            return 0
        fi
        sleep 0.2
    done
    cat "$HS_S3_LOG"
    return 1
}

start_services() {
    start_postgres "$1" || true
    start_s3 "$1" || true
}

stop_services() {
    if [ -n "${HS_PG_DIR:-}" ] && [ -x "$HS_PG_DIR/ctl" ]; then
        "$HS_PG_DIR/ctl" stop -m fast >/dev/null 2>&1 || true
        rm -rf "$HS_PG_DIR"
    fi
    if [ -n "${HS_S3_PID:-}" ]; then
        kill "$HS_S3_PID" 2>/dev/null || true
        wait "$HS_S3_PID" 2>/dev/null || true
        rm -f "$HS_S3_LOG"
    fi
}
