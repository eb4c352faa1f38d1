"""Ingest on the GPU: the real daemon on a generated clip, decode's ceiling, and where a window's time goes.

    python bench/gpu_ingest.py --mode cuda --gpu-util OUT/gpu_util.csv --out OUT/ingest_cuda.json
    python bench/gpu_ingest.py --mode cpu --out ...     # 2 s 320x240 clip, tiny model sizes (bench/gpu.sh --cpu)

1. Clip: --seconds of --size at 24 fps (cuda: 60 s 1280x720), mp4v, a textured background that pans and four
   people-sized walking figures (cuda: 40-75 % of the frame height), so the codec has motion to decode.
2. Decode alone: stages.decode.decode_windows over the whole clip in this process, with cv2 threads as the decode
   stage sets them (1) and with OpenCV's default; plus the wire framing of every window (encode + decode, no
   socket). This is the ceiling one decoder process puts on one video.
3. The daemon (bench/ingest.py's BenchDaemon: `humanstyle run` with its own stage processes), weights "none",
   detect.score_threshold 0 so every anchor bursts (the worst case: 5 detector frames per video second),
   detect.min_box_side 1, classify.min_person_overlap 0 (bench/ingest.py's settings: random boxes overlap nothing),
   train off. Timed from the clip's move into the watch folder to the catalog's "done". Variants: the defaults,
   then detect/classify batch sizes raised (--variants). Per run: video seconds per second, the daemon's own
   humanstyle_decode_seconds_total and humanstyle_stage_seconds per stage (busy share of the wall time), and the
   GPU utilisation from the nvidia-smi samples (--gpu-util, written by bench/gpu.sh) inside the run.
4. Where the time goes, in this process with the daemon's own builders (stages.detect.build_detector,
   stages.classify.build_estimator) and functions (detect_window, classify_patches): per window, wall time of
   serialisation, detection and classification, and under torch.profiler the device time of kernels and of
   host->device / device->host copies; what is left of a model call's wall time is host work (Python, launches,
   CPU-side ops, synchronisation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ingest as bench_ingest  # noqa: E402  (bench/ingest.py: BenchDaemon and the daemon config it writes)

FPS = 24.0
JOB = {"score_threshold": 0.0, "min_box_side": 1, "margin": 0.15, "burst_frames": 4}
MODES = {
    # clip, persons per frame, patch side, extra daemon settings shared by every variant
    "cuda": {"seconds": 60, "size": (1280, 720), "max_persons": 4, "patch_size": 256, "settings": {}},
    "cpu": {"seconds": 2, "size": (320, 240), "max_persons": 1, "patch_size": 64,
            "settings": {"detect": {"min_size": 128, "max_size": 192, "proposals": 20},
                         "classify": {"proposals": 10}}},
}
VARIANTS = {
    "default": {},
    "batched": {"detect": {"batch_size": 8}, "classify": {"batch_size": 16}},
    "batched_2workers": {"detect": {"batch_size": 8, "workers": 2}, "classify": {"batch_size": 16, "workers": 2}},
}


# --- the clip ------------------------------------------------------------------------------------------------------

def make_people_clip(path: Path, seconds: float, size: tuple[int, int], fps: float = FPS) -> Path:
    """A clip with a panning textured background and four walking figures of people's proportions."""
    w, h = size
    rng = np.random.default_rng(0)
    coarse = rng.integers(40, 220, (h // 48 + 2, w // 48 + 2, 3), dtype=np.uint8)
    background = cv2.resize(coarse, (w + 64, h), interpolation=cv2.INTER_CUBIC)  # smooth shapes of a scene
    background = cv2.add(background, rng.integers(0, 12, background.shape, dtype=np.uint8))  # sensor grain
    people = [{"height": h * f, "x": w * x, "speed": w * s / fps,
               "colour": tuple(int(c) for c in rng.integers(30, 230, 3))}
              for f, x, s in ((0.75, 0.1, 0.08), (0.6, 0.5, -0.05), (0.45, 0.8, 0.11), (0.4, 0.3, -0.09))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    for i in range(round(seconds * fps)):
        shift = (2 * i) % 64
        frame = np.ascontiguousarray(background[:, shift:shift + w])
        for p in people:
            draw_figure(frame, (p["x"] + p["speed"] * i) % w, h * 0.95, p["height"], p["colour"], i)
        writer.write(frame)
    writer.release()
    return path


def draw_figure(frame: np.ndarray, x: float, foot_y: float, height: float, colour: tuple, t: int) -> None:
    """Head, torso, arms and swinging legs; proportions of a standing adult (head ~ 1/8 of the height)."""
    u = height / 8
    hip = (int(x), int(foot_y - 4 * u))
    neck = (int(x), int(foot_y - 6.8 * u))
    swing = int(0.8 * u * np.sin(t / 4))
    thick = max(2, int(u / 2))
    cv2.circle(frame, (int(x), int(foot_y - 7.4 * u)), max(2, int(0.55 * u)), colour, -1)
    cv2.line(frame, neck, hip, colour, max(3, int(u)))
    for sign in (-1, 1):
        cv2.line(frame, hip, (int(x + sign * swing), int(foot_y)), colour, thick)
        cv2.line(frame, neck, (int(x - sign * swing), int(foot_y - 4.2 * u)), colour, max(2, thick // 2))


# --- decode alone -------------------------------------------------------------------------------------------------

def decode_only(clip: Path, max_side: int, burst: int, threads: int | None) -> dict[str, Any]:
    """Whole clip through decode_windows in this process; `threads` None = OpenCV's default."""
    from humanstyle.daemon.runtime import wire
    from humanstyle.stages.decode import decode_windows, window_record

    cv2.setNumThreads(-1 if threads is None else threads)  # -1: back to OpenCV's default
    windows = frames = 0
    serialise = 0.0
    start = time.perf_counter()
    with decode_windows(clip, 1.0, burst, max_side or None) as dec:
        for window in dec:
            windows += 1
            frames += len(window.frames)
            t = time.perf_counter()
            msg = window_record(window, {"video_id": 1, "attempt": 1, "domain": "movie"})
            wire.decode(wire.encode(msg), 1 << 31)
            serialise += time.perf_counter() - t
        summary = dec.summary
    wall = time.perf_counter() - start - serialise
    cv2.setNumThreads(-1)
    video_s = summary.frames_read / summary.fps_used
    return {"cv2_threads": threads if threads is not None else f"default ({cv2.getNumThreads()})",
            "windows": windows, "frames_converted": frames, "frames_read": summary.frames_read,
            "wall_s": round(wall, 3), "video_s": round(video_s, 3), "video_s_per_s": round(video_s / wall, 2),
            "serialise_s_per_window": round(serialise / max(windows, 1), 5)}


# --- the daemon ----------------------------------------------------------------------------------------------------

def merge(*parts: dict[str, dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in parts:
        for section, values in part.items():
            out.setdefault(section, {}).update(values)
    return out


def metric(values: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in values.items()
               if n == name and all(dict(lbls).get(k) == val for k, val in labels.items()))


def gpu_samples(csv: Path | None, start: float, end: float) -> list[tuple[float, float, float]]:
    """(unix time, utilisation %, memory MiB) rows of bench/gpu.sh's sampler inside [start, end]."""
    if csv is None or not csv.exists():
        return []
    rows = []
    for line in csv.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            t, util, mem = float(parts[0]), float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            continue
        if start <= t <= end:
            rows.append((t, util, mem))
    return rows


def stop(d: bench_ingest.BenchDaemon) -> None:
    """Stop the daemon (SIGINT, its drain); kill it if it is not gone in time, so no run outlives the benchmark."""
    proc = d.harness.proc
    if proc is None or proc.poll() is not None:
        return
    try:
        d.stop()
    except Exception:
        proc.kill()
        proc.wait(30)


def daemon_run(name: str, clip: Path, work: Path, mode: dict[str, Any], extra: dict[str, dict],
               gpu_csv: Path | None) -> dict[str, Any]:
    job = {**JOB, "max_persons": mode["max_persons"], "patch_size": mode["patch_size"]}
    sections = bench_ingest.daemon_sections(work / name, job, extra)
    d = bench_ingest.BenchDaemon(work / name, sections, 0)
    started_at = time.time()
    try:
        d.start()
        startup = time.time() - started_at
        staged = work / name / clip.name
        shutil.copy(clip, staged)
        t_drop = time.time()
        os.rename(staged, work / name / "watch" / "movie" / clip.name)
        # 3 s per video second at most (0.33 video s/s): slower than that, the run has gone wrong on a GPU.
        limit = max(120.0, 3 * mode["seconds"])
        d.harness.wait_for(lambda: d.videos("done", "partial", "failed") >= 1, limit, f"{name}: the clip")
        t_done = time.time()
        values = d.harness.metrics()
        done = d.videos("done") == 1
    finally:
        stop(d)
    wall = t_done - t_drop
    stages = sorted({dict(lbls).get("stage") for (n, lbls) in values if n == "humanstyle_stage_seconds_count"} - {None})
    busy = {s: {"units": int(metric(values, "humanstyle_stage_seconds_count", stage=s)),
                "seconds": round(metric(values, "humanstyle_stage_seconds_sum", stage=s), 3)} for s in stages}
    for s in busy.values():
        s["busy_share"] = round(s["seconds"] / wall, 3)
    samples = gpu_samples(gpu_csv, t_drop, t_done)
    util = [u for _, u, _ in samples]
    video_s = metric(values, "humanstyle_video_seconds_ingested_total")
    return {
        "run": name, "settings": {k: v for k, v in sections.items() if k in ("decode", "detect", "classify")},
        "startup_s": round(startup, 1), "wall_s": round(wall, 3), "video_s": round(video_s, 3),
        "video_s_per_s": round(video_s / wall, 3) if wall > 0 else None, "video_done": done,
        "decode_seconds_total": round(metric(values, "humanstyle_decode_seconds_total"), 3),
        "frames_detected": int(metric(values, "humanstyle_frames_detected_total")),
        "maskrcnn_calls": int(metric(values, "humanstyle_model_calls_total", model="maskrcnn")),
        "keypointrcnn_calls": int(metric(values, "humanstyle_model_calls_total", model="keypointrcnn")),
        "patches": int(metric(values, "humanstyle_patches_total")),
        "errors": {dict(lbls)["stage"] + "/" + dict(lbls)["kind"]: int(v) for (n, lbls), v in values.items()
                   if n == "humanstyle_errors_total" and v},
        "rejections": {r: int(metric(values, "humanstyle_rejections_total", reason=r)) for r in
                       sorted({dict(lbls)["reason"] for (n, lbls), v in values.items()
                               if n == "humanstyle_rejections_total" and v})},
        "stage_seconds": busy,
        "gpu_util": {"samples": len(util), "mean_pct": round(statistics.fmean(util), 1) if util else None,
                     "median_pct": round(statistics.median(util), 1) if util else None,
                     "share_of_samples_ge_70pct": round(sum(u >= 70 for u in util) / len(util), 3) if util else None,
                     "max_memory_mib": max((m for _, _, m in samples), default=None)},
    }


# --- where the time goes --------------------------------------------------------------------------------------------

def device_breakdown(prof: Any, cuda: bool, top: int = 6) -> dict[str, Any]:
    """Device time (ms) of kernels and copies from a torch.profiler run; the heaviest host and device ops."""
    from torch.autograd import DeviceType

    events = prof.key_averages()
    out: dict[str, Any] = {"kernels_ms": 0.0, "h2d_ms": 0.0, "d2h_ms": 0.0, "other_copies_ms": 0.0}

    def self_device_us(e: Any) -> float:
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))

    device = [e for e in events if cuda and e.device_type == DeviceType.CUDA]
    for e in device:
        ms = self_device_us(e) / 1000
        if "Memcpy HtoD" in e.key:
            out["h2d_ms"] += ms
        elif "Memcpy DtoH" in e.key:
            out["d2h_ms"] += ms
        elif "Memcpy" in e.key or "Memset" in e.key:
            out["other_copies_ms"] += ms
        else:
            out["kernels_ms"] += ms
    out = {k: round(v, 3) for k, v in out.items()}
    host = sorted((e for e in events if e.device_type == DeviceType.CPU), key=lambda e: e.self_cpu_time_total,
                  reverse=True)
    out["top_host_ops_ms"] = {e.key: round(e.self_cpu_time_total / 1000, 3) for e in host[:top]}
    out["top_device_ops_ms"] = {e.key[:80]: round(self_device_us(e) / 1000, 3)
                                for e in sorted(device, key=self_device_us, reverse=True)[:top]}
    return out


def where_time_goes(clip: Path, work: Path, mode: dict[str, Any], extra: dict[str, dict], windows: int,
                    cuda: bool) -> dict[str, Any]:
    """The daemon's detector and classifier in this process, on the first windows of the clip."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from humanstyle.daemon.config import load
    from humanstyle.daemon.runtime import wire
    from humanstyle.stages.classify import build_estimator, classify_patches
    from humanstyle.stages.decode import decode_windows, window_record
    from humanstyle.stages.detect import build_detector, detect_window

    job = {**JOB, "max_persons": mode["max_persons"], "patch_size": mode["patch_size"]}
    folder = work / "inprocess"
    folder.mkdir(parents=True)
    cfg = folder / "config.toml"
    cfg.write_text(bench_ingest.toml(bench_ingest.daemon_sections(folder, job, extra)))
    settings = load(cfg)
    d, c = settings.detect, settings.classify

    msgs = []
    with decode_windows(clip, settings.decode.anchor_every_s, settings.decode.burst_frames,
                        settings.decode.max_side or None) as dec:
        for window in dec:
            msgs.append(window_record(window, {"video_id": 1, "attempt": 1, "domain": "movie"}))
            if len(msgs) > windows:
                break
    detector, estimator = build_detector(settings.detect), build_estimator(settings)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def detect(msg):
        patches, _ = detect_window(detector, msg, d.margin, d.patch_size)
        sync()
        return patches

    def classify(patches: list) -> None:
        for i in range(0, len(patches), c.batch_size):
            classify_patches(estimator, patches[i:i + c.batch_size], c.min_keypoint_confidence)
        sync()

    classify(detect(msgs[0]))  # warm-up: first calls allocate, pick kernels, build caches
    timed = msgs[1:]
    wall = {"serialise_windows": 0.0, "serialise_patches": 0.0, "detect": 0.0, "classify": 0.0}
    all_patches = []
    for msg in timed:
        t = time.perf_counter()
        msg = wire.decode(wire.encode(msg), 1 << 31)
        wall["serialise_windows"] += time.perf_counter() - t
        t = time.perf_counter()
        patches = detect(msg)
        wall["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        patches = [wire.decode(wire.encode(p), 1 << 31) for p in patches]
        wall["serialise_patches"] += time.perf_counter() - t
        t = time.perf_counter()
        classify(patches)
        wall["classify"] += time.perf_counter() - t
        all_patches.append(patches)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof_detect:
        t = time.perf_counter()
        for msg in timed:
            detect(msg)
        detect_wall = time.perf_counter() - t
    with profile(activities=activities) as prof_classify:
        t = time.perf_counter()
        for patches in all_patches:
            classify(patches)
        classify_wall = time.perf_counter() - t
    n = len(timed)
    out: dict[str, Any] = {"windows": n, "patches": sum(len(p) for p in all_patches),
                           "detect_batch_size": d.batch_size, "classify_batch_size": c.batch_size,
                           "ms_per_window": {k: round(1000 * v / n, 2) for k, v in wall.items()}}
    for name, prof, w in (("detect", prof_detect, detect_wall), ("classify", prof_classify, classify_wall)):
        b = device_breakdown(prof, cuda)
        busy = b["kernels_ms"] + b["h2d_ms"] + b["d2h_ms"] + b["other_copies_ms"]
        b["profiled_wall_ms"] = round(1000 * w, 2)
        b["host_only_ms"] = round(1000 * w - busy, 2) if cuda else None
        b["per_window_ms"] = {k: round(b[k] / n, 3) for k in ("kernels_ms", "h2d_ms", "d2h_ms", "other_copies_ms")}
        b["per_window_ms"]["host_only_ms"] = round(b["host_only_ms"] / n, 3) if cuda else None
        out[name] = b
    return out


# --- report ----------------------------------------------------------------------------------------------------------

def print_report(report: dict[str, Any]) -> None:
    clip = report["clip"]
    print(f"\nclip {clip['width']}x{clip['height']}, {clip['seconds']:g} s at {FPS:g} fps, "
          f"{report['max_persons']} persons/frame max, every anchor bursts")
    for d in report["decode_only"]:
        print(f"decode alone (cv2 threads {d['cv2_threads']}): {d['video_s_per_s']:.1f} video s/s, "
              f"{d['frames_read']} frames read, {d['frames_converted']} converted; window framing "
              f"{1000 * d['serialise_s_per_window']:.2f} ms/window")
    head = f"{'run':<18}{'video s/s':>10}{'wall s':>8}{'patches':>8}{'GPU util %':>11}  busy share per stage"
    print(head)
    print("-" * len(head))
    for r in report["runs"]:
        if "error" in r:
            print(f"{r['run']:<18} error: {r['error'][:200]}")
            continue
        util = r["gpu_util"]["mean_pct"]
        busy = ", ".join(f"{s} {v['busy_share']:.0%}" for s, v in r["stage_seconds"].items())
        print(f"{r['run']:<18}{r['video_s_per_s']:>10.2f}{r['wall_s']:>8.1f}{r['patches']:>8}"
              f"{'-' if util is None else f'{util:.0f}':>11}  {busy}")
    for key in ("where_time_goes", "where_time_goes_batched"):
        w = report.get(key)
        if not w or "error" in w:
            if w:
                print(f"{key}: error {w['error'][:200]}")
            continue
        ms = w["ms_per_window"]
        decode = report["decode_only"][0]["video_s_per_s"] if report.get("decode_only") else None
        print(f"{key} (detect batch {w['detect_batch_size']}, classify batch {w['classify_batch_size']}), "
              f"ms per window (= per video second): "
              + (f"decode {1000 / decode:.1f} (alone, above), " if decode else "")
              + f"serialise {ms['serialise_windows'] + ms['serialise_patches']:.1f}, "
              f"detect {ms['detect']:.1f}, classify {ms['classify']:.1f} ({w['patches'] / w['windows']:.1f} patches)")
        for name in ("detect", "classify"):
            p = w[name]["per_window_ms"]
            if p["host_only_ms"] is not None:
                print(f"  {name}: kernels {p['kernels_ms']:.1f}, H2D {p['h2d_ms']:.2f}, D2H {p['d2h_ms']:.2f}, "
                      f"host only {p['host_only_ms']:.1f} ms per window")
    for line in report["verdict"]:
        print(line)


def verdict(report: dict[str, Any]) -> list[str]:
    lines = []
    dec = report["decode_only"][0]["video_s_per_s"] if report["decode_only"] else None
    for r in report["runs"]:
        if "error" in r or not r["video_s_per_s"]:
            continue
        busiest = max(r["stage_seconds"].items(), key=lambda kv: kv[1]["busy_share"], default=(None, None))
        line = f"{r['run']}: {r['video_s_per_s']:.2f} video s/s (goal >= 20)"
        if dec:
            line += f" = {r['video_s_per_s'] / dec:.0%} of decode alone ({dec:.1f})"
        if busiest[0]:
            line += f"; busiest stage {busiest[0]} ({busiest[1]['busy_share']:.0%} of the wall time)"
        if r["gpu_util"]["mean_pct"] is not None:
            line += f"; GPU {r['gpu_util']['mean_pct']:.0f} % (goal >= 70)"
        if r["errors"]:
            line += f"; ERRORS {r['errors']}"
        lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=tuple(MODES), default="cuda")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (cuda 60, cpu 2)")
    parser.add_argument("--variants", default=None, help="comma-separated of " + ", ".join(VARIANTS)
                        + " (cuda: all; cpu: default)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="no new daemon variant starts after this")
    parser.add_argument("--profile-windows", type=int, default=None, help="windows profiled in-process (cuda 8)")
    parser.add_argument("--gpu-util", type=Path, default=None, help="CSV of the nvidia-smi sampler (bench/gpu.sh)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (daemon logs)")
    args = parser.parse_args()

    cuda = args.mode == "cuda"
    mode = dict(MODES[args.mode])
    if args.seconds:
        mode["seconds"] = args.seconds
    names = (args.variants or ("default,batched,batched_2workers" if cuda else "default")).split(",")
    extra = merge(mode["settings"])
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="humanstyle-gpu-ingest-"))
    report: dict[str, Any] = {"benchmark": "ingest_gpu", "mode": args.mode,
                              "started": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version()},
                              "max_persons": mode["max_persons"], "job": JOB, "common_settings": extra, "runs": []}
    failed = False
    try:
        w, h = mode["size"]
        clip = make_people_clip(work / "clip.mp4", mode["seconds"], mode["size"])
        report["clip"] = {"width": w, "height": h, "seconds": mode["seconds"], "fps": FPS, "codec": "mp4v",
                          "bytes": clip.stat().st_size, "generated_in_s": round(time.monotonic() - t0, 1)}
        print(f"[{time.monotonic() - t0:6.1f} s] clip {w}x{h} {mode['seconds']:g} s written", flush=True)
        max_side = 1280  # the daemon's decode.max_side default
        report["decode_only"] = [decode_only(clip, max_side, JOB["burst_frames"], 1),
                                 decode_only(clip, max_side, JOB["burst_frames"], None)]
        print(f"[{time.monotonic() - t0:6.1f} s] decode alone done", flush=True)
        for name in names:
            if time.monotonic() - t0 > args.budget_s:
                report["runs"].append({"run": name, "error": "skipped: out of the time budget"})
                continue
            print(f"[{time.monotonic() - t0:6.1f} s] daemon: {name}", flush=True)
            try:
                report["runs"].append(daemon_run(name, clip, work, mode, merge(extra, VARIANTS[name]), args.gpu_util))
            except Exception as exc:  # keep the other measurements
                failed = True
                report["runs"].append({"run": name, "error": f"{type(exc).__name__}: {exc}"[-2000:]})
        windows = args.profile_windows or (8 if cuda else 1)
        for key, variant in (("where_time_goes", "default"), ("where_time_goes_batched", "batched")):
            if key.endswith("batched") and not cuda:
                continue
            print(f"[{time.monotonic() - t0:6.1f} s] in-process profile ({variant})", flush=True)
            try:
                report[key] = where_time_goes(clip, work / key, mode, merge(extra, VARIANTS[variant]), windows, cuda)
            except Exception as exc:
                failed = True
                report[key] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    report["verdict"] = verdict(report)
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    broken = [r["run"] for r in report["runs"] if "error" not in r and (not r["video_done"] or r["errors"])]
    return 1 if failed or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
