"""Decode benchmark: frames per second of the access patterns the decoder is built from, and of the decoder itself.

    python bench/decode.py [--seconds 10] [--size 1280x720] [--repeat 7] [--baseline-src DIR]
                           [--clip FILE] [--ffmpeg-threads N [N ...]] [--out bench/results/decode_cpu.json]

One generated clip (`tests.media.make_clip`, mp4v, moving content) is decoded with OpenCV's FFmpeg backend on one
thread (`cv2.setNumThreads(1)`, as the decode stage runs). Patterns, each over the whole clip:

- grab_only:      `grab()` every frame, never `retrieve()` (the floor: demux + decode, no colour conversion)
- retrieve_all:   `grab()` + `retrieve()` every frame (what `read()` costs)
- pattern_5_of_24: retrieve the 5 frames per 24 that one window per second uses (burst 4 + anchor), grab the rest
- decoder:        `stages.decode.decode_windows` end to end (probe included), frames kept at full size
- baseline_decoder: the same from another checkout's stages/decode.py (`--baseline-src`, e.g. a `git worktree`
                  of an older commit), to compare two decoders on the same clip under the same load

`--clip FILE` decodes that file instead of a generated one (e.g. 1080p H.264 made with ffmpeg's libx264).
`--ffmpeg-threads 1 2 0` adds pattern_5_of_24 with FFmpeg's own decoding threads set at open
(`CAP_PROP_N_THREADS`; 0 = FFmpeg's choice, what the decode stage uses): `cv2.setNumThreads` does not limit them.

The patterns run in rounds, one run of each per round (`--repeat` rounds), so a burst of load on the shared
machine hits all of them alike; the best and the median wall-clock run are reported, and frames per second of
this process's CPU time (median), which other people's load disturbs less. The 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from humanstyle.stages.decode import decode_windows  # noqa: E402
from tests.media import make_clip  # noqa: E402

WANTED_OFFSETS = {4, 9, 13, 18, 23}  # one window of 24 frames: the burst frames and the anchor


def run_pattern(path: Path, retrieve, threads: int | None = None) -> int:
    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads]
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    n = 0
    try:
        while cap.grab():
            if retrieve(n):
                ok, _ = cap.retrieve()
                assert ok
            n += 1
    finally:
        cap.release()
    return n


def run_decoder(path: Path, decode=decode_windows) -> int:
    dec = decode(path)
    for _ in dec:
        pass
    assert dec.summary is not None and dec.summary.status == "done", dec.summary
    return dec.summary.frames_read


PATTERNS = {
    "grab_only": lambda p: run_pattern(p, lambda i: False),
    "retrieve_all": lambda p: run_pattern(p, lambda i: True),
    "pattern_5_of_24": lambda p: run_pattern(p, lambda i: i % 24 in WANTED_OFFSETS),
    "decoder": run_decoder,
}


def load_baseline(src: Path):
    """decode_windows from another checkout's stages/decode.py (it imports this checkout's daemon package)."""
    spec = importlib.util.spec_from_file_location("baseline_decode", src / "stages" / "decode.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.decode_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--baseline-src", type=Path, help="checkout whose stages/decode.py is measured as baseline")
    ap.add_argument("--label", default="", help="free text stored with the results, e.g. the commit measured")
    ap.add_argument("--clip", type=Path, help="decode this file instead of a generated clip")
    ap.add_argument("--ffmpeg-threads", type=int, nargs="*", default=[],
                    help="also run pattern_5_of_24 with these FFmpeg decoding thread counts (0 = FFmpeg's choice)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/decode_cpu.json"))
    args = ap.parse_args()
    cv2.setNumThreads(1)
    w, h = (int(v) for v in args.size.split("x"))
    patterns = dict(PATTERNS)
    for n in args.ffmpeg_threads:
        patterns[f"5_of_24_threads_{n}"] = lambda p, n=n: run_pattern(p, lambda i: i % 24 in WANTED_OFFSETS, n)
    if args.baseline_src:
        baseline = load_baseline(args.baseline_src)
        patterns["baseline_decoder"] = lambda p: run_decoder(p, baseline)
    runs: dict[str, list[float]] = {name: [] for name in patterns}
    cpu: dict[str, list[float]] = {name: [] for name in patterns}
    frames: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or make_clip(Path(tmp) / "bench.mp4", args.seconds, fps=24, size=(w, h))
        for _ in range(args.repeat):
            for name, fn in patterns.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                frames[name] = fn(clip)
                runs[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    results = {}
    print(f"{'pattern':18s} {'frames':>6s} {'best f/s':>9s} {'median f/s':>10s} {'f/CPU s (median)':>17s}")
    for name, times in runs.items():
        n, best, median, cpu_median = frames[name], min(times), statistics.median(times), statistics.median(cpu[name])
        results[name] = {"frames": n, "best_s": round(best, 4), "median_s": round(median, 4),
                         "median_cpu_s": round(cpu_median, 4), "fps_best": round(n / best, 1),
                         "fps_median": round(n / median, 1), "frames_per_cpu_s_median": round(n / cpu_median, 1)}
        print(f"{name:18s} {n:6d} {n / best:9.1f} {n / median:10.1f} {n / cpu_median:17.1f}")
    record = {
        "label": args.label,
        "clip": {"file": args.clip.name} if args.clip else {"seconds": args.seconds, "size": args.size, "fps": 24,
                                                             "codec": "mp4v"},
        "repeat": args.repeat,
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "machine": {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "python": platform.python_version(),
                    "opencv": cv2.__version__},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
