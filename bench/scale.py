"""Scale-out benchmark: bytes on the wire per video second for each frame codec, and windows per second of the
single-machine daemon (ipc) against a head with 1 and 2 workers (tcp, CURVE).

    python bench/scale.py                # cpu: wire on 10 s of the 720p benchmark clip; daemons on a small clip
    python bench/scale.py --mode cuda    # cuda: wire as above; daemons on 60 s of the 720p clip, on the GPU
    python bench/scale.py --out bench/results/scale_cpu.json

1. Wire (no daemon). The benchmark clip of bench/gpu_ingest.py (1280x720, panning textured background, four walking
   figures, mp4v) decoded exactly as the decode stage does (one window per second: the anchor and 4 burst frames,
   decode.max_side 1280), then every window packed as the head sends it (daemon.remote: a `work` message) with each
   codec: raw (the frames as they are: what the issue's 13.8 MB per window is), png (lossless), jpeg q95 and q90
   (lossy). Per codec: bytes per video second head -> worker, compression and expansion milliseconds per window on one
   thread, and the largest and mean pixel error. The way back (worker -> head, the `result` messages) is measured on
   the worst case the detector can send: the real Mask R-CNN at its default input size with random weights, score
   threshold 0 and 4 persons per frame, so every anchor bursts and every window returns 20 patches of 256 px
   (stages.detect.detect_window, as a detector does), classified with empty keypoints; on the first
   --result-windows windows.
2. Daemons, on one clip dropped as a movie and as a game video (weights "none", score threshold 0: every anchor
   bursts): the single-machine daemon over ipc with its default processes (1 decode, 1 detect, 1 classify), then a
   head (2 decoders) with 1 and with 2 workers over tcp on this machine (CURVE keys, PNG frames), each worker running
   1 detect and 1 classify process. Timed from the moment the clips are moved into the watch folder (every model
   built and idle) until the catalog says both are done. Windows per second = windows decoded / that time; bytes per
   video second from the head's humanstyle_remote_bytes_total over the seconds of footage ingested. On a machine
   with fewer cores than the processes need, more workers cannot be faster: the JSON records the core count and
   the load average, and bench/README.md says what the numbers mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gpu_ingest  # noqa: E402  (the benchmark clip)
import ingest as bench_ingest  # noqa: E402  (BenchDaemon)

CODECS = (("raw", 95), ("png", 95), ("jpeg", 95), ("jpeg", 90))
MODES = {
    "cpu": {"size": (320, 240), "seconds": 8, "max_persons": 2, "patch_size": 64, "device": "cpu",
            "settings": {"detect": {"min_size": 128, "max_size": 192, "proposals": 20, "threads": 1},
                         "classify": {"proposals": 10, "threads": 1}}},
    "cuda": {"size": (1280, 720), "seconds": 60, "max_persons": 4, "patch_size": 256, "device": "cuda",
             "settings": {"detect": {"batch_size": 8}, "classify": {"batch_size": 16}}},
}
LIMIT = 256 * 1024 * 1024


# --- 1. the wire ----------------------------------------------------------------------------------------------------
def decoded_windows(clip: Path) -> list:
    import cv2

    from humanstyle.stages.decode import decode_windows, window_record

    cv2.setNumThreads(1)
    video = {"video_id": 1, "attempt": 1, "domain": "movie"}
    with decode_windows(clip, 1.0, 4, 1280) as dec:
        return [window_record(w, video) for w in dec]


def wire_codecs(windows: list, result_windows: int) -> dict[str, Any]:
    from humanstyle.daemon import remote

    seconds = len(windows)
    rows = []
    for codec, quality in CODECS:
        sent, t_pack, t_unpack, err_max, err_sum, err_n = 0, 0.0, 0.0, 0, 0.0, 0
        for w in windows:
            t0 = time.perf_counter()
            frames = remote.pack_record(w, codec, quality)
            msg = remote.message("work", [frames], work="e.1", seq=1, kind="window")
            t1 = time.perf_counter()
            back = remote.unpack_record(remote.parse(msg)[1][0], LIMIT)
            t2 = time.perf_counter()
            sent += remote.framed_bytes(msg)
            t_pack, t_unpack = t_pack + t1 - t0, t_unpack + t2 - t1
            diff = np.abs(back.frames.astype(np.int16) - w.frames)
            err_max, err_sum, err_n = max(err_max, int(diff.max())), err_sum + float(diff.sum()), err_n + diff.size
        rows.append({"codec": codec if codec != "jpeg" else f"jpeg q{quality}", "lossless": codec in ("raw", "png"),
                     "to_worker_mb_per_video_s": round(sent / seconds / 1e6, 3),
                     "pack_ms_per_window": round(1000 * t_pack / len(windows), 1),
                     "unpack_ms_per_window": round(1000 * t_unpack / len(windows), 1),
                     "max_pixel_error": err_max, "mean_pixel_error": round(err_sum / err_n, 3)})
    results = result_bytes(windows[:result_windows])
    for row in rows:
        row["to_head_mb_per_video_s"] = results[row["codec"]]
    return {"video_seconds": seconds, "windows": len(windows), "codecs": rows,
            "result_windows": min(result_windows, len(windows)),
            "result_patches_per_window": results["patches_per_window"]}


def result_bytes(windows: list) -> dict[str, float]:
    """MB per video second of `result` messages for these windows, per codec, at the detector's worst case."""
    import torch

    from humanstyle.daemon import remote
    from humanstyle.daemon.config import from_dict
    from humanstyle.stages.classify import rejected
    from humanstyle.stages.detect import build_detector, detect_window

    torch.set_num_threads(os.cpu_count() or 1)
    settings = from_dict({"detect": {"weights": "none", "score_threshold": 0.0, "max_persons": 4, "min_box_side": 1,
                                     "device": "cpu"}}, ROOT)
    detector = build_detector(settings.detect)
    results = []
    for w in windows:
        patches, done = detect_window(detector, w, settings.detect.margin, settings.detect.patch_size)
        results.append([rejected(p, "no_person") for p in patches] + [done])
    out = {}
    for codec, quality in CODECS:
        total = sum(remote.framed_bytes(remote.message("result", [remote.pack_record(r, codec, quality) for r in rs],
                                                       work="e.1")) for rs in results)
        out[codec if codec != "jpeg" else f"jpeg q{quality}"] = round(total / len(windows) / 1e6, 3)
    out["patches_per_window"] = round(sum(len(rs) - 1 for rs in results) / len(windows), 1)
    return out


# --- 2. the daemons -------------------------------------------------------------------------------------------------
def job_sections(mode: dict[str, Any], folder: Path) -> dict[str, dict]:
    """bench/ingest.py's daemon on the mode's device, every detection kept, the config's burst and margin."""
    from humanstyle.stages.settings import DecodeSettings, DetectSettings

    job = {"burst_frames": DecodeSettings().burst_frames, "score_threshold": 0.0, "max_persons": mode["max_persons"],
           "min_box_side": 1, "patch_size": mode["patch_size"], "margin": DetectSettings().margin}
    extra = {stage: {"device": mode["device"], **mode["settings"].get(stage, {})} for stage in ("detect", "classify")}
    return bench_ingest.daemon_sections(folder, job, {**mode["settings"], **extra})


def free_port() -> int:
    from tests.conftest import free_port as free

    return free()


def plain_env() -> dict[str, str]:
    path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def timed_run(name: str, work: Path, clip: Path, mode: dict[str, Any], workers: int) -> dict[str, Any]:
    from tests.scale_helpers import Worker, head_sections, make_keys, wait, worker_sections

    folder = work / name
    sections = job_sections(mode, folder)
    keys, port, started = None, free_port(), []
    if workers:
        keys = make_keys(work / f"{name}-keys")
        sections = head_sections(sections, f"127.0.0.1:{port}", keys, frame_codec="png")
        sections["decode"] = {"workers": 2}
    daemon = bench_ingest.BenchDaemon(folder, sections, seed=0).start()
    try:
        for i in range(workers):
            wsec = worker_sections(sections, work / f"{name}-w{i}", f"127.0.0.1:{port}", f"w{i}",
                                   f"127.0.0.1:{free_port()}", keys)
            wsec["paths"]["runtime_dir"] = str(work / f"{name}-w{i}" / "run")
            started.append(Worker(work / f"{name}-w{i}", wsec, env=plain_env()).start())
        h = daemon.harness
        if workers:
            wait(lambda: len((h.health() or {}).get("workers", [])) == workers
                 and all((w.health() or {}).get("status") == "ok" for w in started), 600, "the workers",
                 [w.folder / "worker.log" for w in started])
        staged = work / f"{name}-staging"
        staged.mkdir()
        for domain, trailer in (("movie", b""), ("game", b"\0" * 16)):
            copy = staged / f"{domain}.mp4"
            shutil.copy(clip, copy)
            with open(copy, "ab") as fh:
                fh.write(trailer)
        t0 = time.monotonic()
        for domain in ("movie", "game"):
            os.rename(staged / f"{domain}.mp4", folder / "watch" / domain / "clip.mp4")
        h.wait_for(lambda: h.value("humanstyle_videos_total", status="done") >= 2, 3600, f"{name}: both videos")
        wall = time.monotonic() - t0
        windows = h.value("humanstyle_windows_sent_total")
        video_s = h.value("humanstyle_video_seconds_ingested_total")
        row = {"run": name, "transport": "tcp + CURVE, png" if workers else "ipc, raw", "workers": workers,
               "wall_s": round(wall, 1), "windows": int(windows), "video_s": round(video_s, 1),
               "windows_per_s": round(windows / wall, 2), "video_s_per_s": round(video_s / wall, 2),
               "load_avg": [round(v, 2) for v in os.getloadavg()]}
        if workers:
            row["to_workers_mb_per_video_s"] = round(h.value("humanstyle_remote_bytes_total", direction="sent")
                                                     / video_s / 1e6, 3)
            row["to_head_mb_per_video_s"] = round(h.value("humanstyle_remote_bytes_total", direction="received")
                                                  / video_s / 1e6, 3)
            row["redone"] = int(h.value("humanstyle_remote_items_total", outcome="redone"))
        else:
            w, hh = mode["size"]
            row["ipc_raw_mb_per_video_s"] = round(windows * 5 * w * hh * 3 / video_s / 1e6, 3)
        return row
    finally:
        for w in started:
            w.kill()
        gpu_ingest.stop(daemon)


# --- report ---------------------------------------------------------------------------------------------------------
def print_report(report: dict[str, Any]) -> None:
    wire = report["wire"]
    print(f"\nwire: {wire['video_seconds']} s of the {report['wire_clip']} benchmark clip, "
          f"results on {wire['result_windows']} windows ({wire['codecs'][0]['to_head_mb_per_video_s']} MB raw)")
    print(f"{'codec':10s} {'to worker MB/vs':>16s} {'to head MB/vs':>14s} {'pack ms/win':>12s} {'unpack ms/win':>14s} "
          f"{'max err':>8s} {'mean err':>9s}")
    for r in wire["codecs"]:
        print(f"{r['codec']:10s} {r['to_worker_mb_per_video_s']:16.2f} {r['to_head_mb_per_video_s']:14.2f} "
              f"{r['pack_ms_per_window']:12.1f} {r['unpack_ms_per_window']:14.1f} {r['max_pixel_error']:8d} "
              f"{r['mean_pixel_error']:9.3f}")
    print(f"\ndaemons: {report['daemon_clip']} clip x 2 videos, {report['machine']['cpus']} cores")
    print(f"{'run':14s} {'transport':18s} {'wall s':>7s} {'windows':>8s} {'win/s':>7s} {'vs/s':>6s} {'MB/vs out':>10s} "
          f"{'MB/vs back':>11s}")
    for r in report["runs"]:
        out = r.get("to_workers_mb_per_video_s", r.get("ipc_raw_mb_per_video_s"))
        print(f"{r['run']:14s} {r['transport']:18s} {r['wall_s']:7.1f} {r['windows']:8d} {r['windows_per_s']:7.2f} "
              f"{r['video_s_per_s']:6.2f} {out:10.2f} {r.get('to_head_mb_per_video_s', 0):11.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=tuple(MODES), default="cpu")
    parser.add_argument("--wire-seconds", type=float, default=10, help="seconds of the 720p clip for the wire part")
    parser.add_argument("--result-windows", type=int, default=4, help="windows run through the detector for the "
                        "way back")
    parser.add_argument("--seconds", type=float, default=None, help="clip length for the daemon runs")
    parser.add_argument("--skip-daemons", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    mode = dict(MODES[args.mode])
    if args.seconds:
        mode["seconds"] = args.seconds
    report: dict[str, Any] = {
        "bench": "scale", "mode": args.mode, "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_start": [round(v, 2) for v in os.getloadavg()]},
        "wire_clip": "1280x720", "daemon_clip": f"{mode['size'][0]}x{mode['size'][1]} {mode['seconds']:g} s",
    }
    with tempfile.TemporaryDirectory(prefix="hs-scale-") as tmp:
        work = Path(tmp)
        clip = gpu_ingest.make_people_clip(work / "bench720.mp4", args.wire_seconds, (1280, 720))
        report["wire"] = wire_codecs(decoded_windows(clip), args.result_windows)
        report["runs"] = []
        if not args.skip_daemons:
            small = clip if mode["size"] == (1280, 720) and mode["seconds"] == args.wire_seconds else \
                gpu_ingest.make_people_clip(work / "daemon.mp4", mode["seconds"], mode["size"])
            for name, workers in (("single-ipc", 0), ("head+1 worker", 1), ("head+2 workers", 2)):
                print(f"running {name} ...", flush=True)
                report["runs"].append(timed_run(name.replace(" ", "-").replace("+", "-"), work, small, mode, workers))
    print_report(report)
    out = args.out or ROOT / "bench" / "results" / f"scale_{args.mode}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
