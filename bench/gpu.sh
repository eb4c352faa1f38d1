#!/usr/bin/env bash
# Every GPU check of the project in one call (issue 18): ingest on the GPU (bench/gpu_ingest.py) and training side by
# side with the reference implementation (bench/gpu_train.py), with nvidia-smi sampled in the background.
#
#   bash bench/gpu.sh                  # on a CUDA machine: writes under $OUT (or a temp folder), at most ~8 minutes
#   bash bench/gpu.sh --cpu            # tiny sizes on the CPU, < 2 minutes: proves the script (CI runs it)
#
# Options: --reference DIR (default .ref/pytorch-CycleGAN-and-pix2pix; "reference absent" when missing),
# --python PY (default: python3; --cpu: .venv/bin/python when present), --wheels DIR (carried wheels installed with
# pip --target into a temp folder put on PYTHONPATH; default .whl when present, never in --cpu mode),
# --budget-s N (seconds for the whole run, default 420; the last part, the largest-batch search, gets what is left).
# Files: ingest_daemon_<mode>.json, train_reference_<mode>.json, reference_<mode>.log, translate_video_<mode>.json
# (translate-video: flicker and 720p frames per second, bench/translate_video.py), train_largest_cuda.json,
# gpu_util_<mode>.csv (unix time, GPU %, memory MiB, power W), gpu_<mode>.log (everything printed); <mode> is
# "cuda" or "cpumode". Exit status 1 when a part failed (its JSON says which).
set -uo pipefail
cd "$(dirname "$0")/.."

mode=cuda
ref=.ref/pytorch-CycleGAN-and-pix2pix
py=${PYTHON:-}
wheels=
budget=420
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) mode=cpu ;;
        --reference) ref=$2; shift ;;
        --python) py=$2; shift ;;
        --wheels) wheels=$2; shift ;;
        --budget-s) budget=$2; shift ;;
        *) echo "bench/gpu.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$py" ]; then
    if [ "$mode" = cpu ] && [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
if [ "$mode" = cuda ] && [ -z "$wheels" ] && compgen -G ".whl/*.whl" >/dev/null; then wheels=.whl; fi
suffix=$([ "$mode" = cuda ] && echo cuda || echo cpumode)
out=${OUT:-$(mktemp -d -t humanstyle-gpu-XXXXXX)}
mkdir -p "$out"

run_all() {
    start=$(date +%s)
    echo "bench/gpu.sh --$mode: writing to $out"

    if [ -n "$wheels" ]; then
        # Packages the machine lacks (pyzmq, albumentations, ...), as wheels carried next to the working tree.
        site=$(mktemp -d -t humanstyle-site-XXXXXX)
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl \
            || exit 1
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if ! "$py" -c 'import humanstyle' 2>/dev/null; then
        # Not installed there: the package maps humanstyle.daemon, .stages and .models to the top-level folders
        # (pyproject.toml), and links give the same mapping (the pose store's C kernel then falls back to numpy).
        shim=$(mktemp -d -t humanstyle-pkg-XXXXXX)
        mkdir "$shim/humanstyle" && touch "$shim/humanstyle/__init__.py"
        for d in daemon stages models; do ln -s "$PWD/$d" "$shim/humanstyle/$d"; done
        export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
        echo "humanstyle is not installed for $py: imported from this checkout through $shim"
    fi
    export PYTHONUNBUFFERED=1 KINETO_LOG_LEVEL=5  # kineto (torch.profiler) is chatty on stderr otherwise
    "$py" -c 'import platform, torch, torchvision, cv2, zmq; print("python", platform.python_version(), "| torch",
torch.__version__, "| torchvision", torchvision.__version__, "| opencv", cv2.__version__, "| pyzmq", zmq.__version__,
"| CUDA available:", torch.cuda.is_available())' || exit 1

    sampler=
    if [ "$mode" = cuda ]; then
        "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
            || { echo "bench/gpu.sh: torch sees no CUDA device (use --cpu on a machine without one)"; exit 1; }
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
            # One sample per call, stamped here: nvidia-smi's own loop may buffer its output.
            (while :; do
                v=$(nvidia-smi --query-gpu=utilization.gpu,memory.used,power.draw --format=csv,noheader,nounits \
                    2>/dev/null | head -1) && echo "$(date +%s.%N),$v"
                sleep 0.2
            done) > "$out/gpu_util_$suffix.csv" &
            sampler=$!
            trap 'kill "$sampler" 2>/dev/null' EXIT
        else
            echo "nvidia-smi not found: no GPU utilisation samples"
        fi
    fi

    # In order of importance, so that a slow part squeezes the later ones rather than the run's limit: ingest with the
    # daemon's defaults and with batch sizes raised (a third variant, two workers per model stage, only if it starts
    # within 150 s), training against the reference, then the largest-batch search with whatever time is left.
    status=0
    left() { echo $(( budget - ($(date +%s) - start) )); }
    gpu_csv=()
    [ -n "$sampler" ] && gpu_csv=(--gpu-util "$out/gpu_util_$suffix.csv")
    echo; echo "== ingest ($(left) s left)"
    "$py" bench/gpu_ingest.py --mode "$mode" ${gpu_csv[@]+"${gpu_csv[@]}"} --budget-s 150 \
        --out "$out/ingest_daemon_$suffix.json" || status=1
    echo; echo "== training against the reference ($(left) s left)"
    "$py" bench/gpu_train.py --mode "$mode" --part compare --reference "$ref" \
        --out "$out/train_reference_$suffix.json" --log "$out/reference_$suffix.log" || status=1
    echo; echo "== translate-video ($(left) s left)"
    if [ "$mode" = cuda ]; then tv_size=(--speed-seconds 4); else tv_size=(--smoke); fi
    "$py" bench/translate_video.py "${tv_size[@]}" --out "$out/translate_video_$suffix.json" || status=1
    if [ "$mode" = cuda ]; then
        search=$(( $(left) - 30 )); [ "$search" -gt 150 ] && search=150
        echo; echo "== largest batches ($(left) s left, searching for at most $search s)"
        if [ "$search" -ge 20 ]; then
            "$py" bench/gpu_train.py --mode cuda --part largest --max-batch-budget-s "$search" \
                --out "$out/train_largest_$suffix.json" || status=1
        else
            echo "skipped: too little time left"
        fi
    fi

    echo; echo "bench/gpu.sh: $(( $(date +%s) - start )) s, status $status; files in $out:"
    ls "$out"
    return $status
}

# Everything printed also goes to the log file (a function piped to tee: the log is complete when the script ends).
run_all 2>&1 | tee -a "$out/gpu_$suffix.log"
exit "${PIPESTATUS[0]}"
