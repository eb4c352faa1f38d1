#!/usr/bin/env bash
# Every bench at a smoke size (seconds each), so that a bench that no longer runs fails CI (.ci/run). Results go to a
# temporary folder: the committed bench/results/ are the full-size runs that bench/README.md quotes.
# GPU benches (gpu_ingest, gpu_train, ref_train through gpu_train) run in bench/gpu.sh --cpu, which .ci/run also calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export BENCH_TMP="$out"

run() {
    local name=$1
    shift
    local start=$SECONDS
    if ! "$PYTHON" "$@" >"$out/$name.log" 2>&1; then
        cat "$out/$name.log"
        echo "bench smoke: $name failed: $*"
        exit 1
    fi
    echo "bench smoke: $name ok ($((SECONDS - start)) s)"
}

cases=tests/data/views/cases.json
run pairing bench/pairing.py --sizes 2000 --out "$out/pairing.json"
run pairing_search bench/pairing_search.py --smoke --out "$out/pairing_search.json"
run pairing_stage bench/pairing_stage.py --smoke --out "$out/pairing_stage.json"
run pairing_quality bench/pairing_quality.py --cases "$cases" --repeats 1 --out "$out/pairing_quality.json"
run train_refresh bench/train_refresh.py --smoke --out "$out/train_refresh.json"
run views bench/views.py --cases "$cases" --out "$out/views.json"
run views_frontier bench/views_frontier.py --cases "$cases" --smoke --out "$out/views_frontier.json"
run views_gbt bench/views_gbt.py --cases "$cases" --smoke --out "$out/views_gbt.json"
run views_learned bench/views_learned.py --cases "$cases" --out "$out/views_learned.json"
run own_person bench/own_person.py --cases "$cases" --out "$out/own_person.json"
run web bench/web.py --pairs 2000 --patches 1000 --repeat 2 --out "$out/web.json"
run watch bench/watch.py --files 200 --repeats 2 --out "$out/watch.json"
run decode bench/decode.py --seconds 1 --size 320x240 --repeat 1 --out "$out/decode.json"
run train bench/train.py --device cpu --threads 2 --steps 1 --warmup 0 --configs pix2pix_64_b32 --out-dir "$out"
run scale bench/scale.py --smoke --out "$out/scale.json"
run ingest bench/ingest.py --seconds 1 --size 320x240 --runs daemon_default --skip-memory --out "$out/ingest.json"
run tracking bench/tracking.py --smoke --out "$out/tracking.json"
run translate_video bench/translate_video.py --smoke --out "$out/translate_video.json"
