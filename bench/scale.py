"""Scale-out benchmark: bytes on the wire per video second, and a cluster of ingest machines on these 2 cores.

    python bench/scale.py                      # ~4 min here; writes nothing unless --out
    python bench/scale.py --out bench/results/scale.json
    python bench/scale.py --smoke              # CI: tiny sizes, 1 and 2 machines
    HS_BENCH_DEBUG=1 python bench/scale.py ... # keep the work folder (logs, configs), give up after 2 minutes

1. Wire (no server). What crosses the network per second of video now that every machine decodes its own share:
   the compressed video in (the benchmark clip of bench/gpu_ingest.py: 1280x720, panning textured background, four
   walking figures, mp4v, as its file holds it), and the patches out (each a 256 px PNG and its mask PNG, cut from
   the clip's decoded frames where its figures stand, exactly as stages/index/results.py writes them) for 1 and for 4
   people per frame with every anchor bursting (the anchor and 4 burst frames per window), plus the catalog row of
   each patch (its size measured in PostgreSQL in part 2). The head/worker path sent 4.4 MB per video second of PNG
   frames to the workers alone (bench/results/scale_cpu.json).
2. Cluster. The servers (PostgreSQL and moto's S3, tests/scale_helpers.Services), a real coordinator
   (`humanstyle run --role coordinator`: watch, register and upload, segments, pairing) and 1, 2, 4 and 8 ingest
   machines. The ingest machines are a STAND-IN for the model stages: each claims segments with the real leases
   (stages/store/segments.py), fetches the video from storage, decodes its segment with the real decoder, then sleeps
   --model-ms per window in place of detection and classification (a GPU's latency), writes one patch per window
   (real PNG to S3, real catalog row with a pose the coordinator pairs) and finishes the segment. Timed from the
   drop of the clips until every video is done and every patch paired. Per run: video seconds per second, the CPU
   seconds per video second of each part (coordinator, PostgreSQL, S3 server, the machines' decoding), and the
   bytes downloaded (each machine downloads a whole video once, into its cache). The first ceiling is the part
   that first uses the 2 cores: named in the output.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import gpu_ingest  # noqa: E402  (the benchmark clip)

TICK = os.sysconf("SC_CLK_TCK")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


# --- 1. the wire ----------------------------------------------------------------------------------------------------
def wire(clip: Path, seconds: float) -> dict[str, Any]:
    """Bytes per video second: the compressed video in, and the patches out for 1 and 4 people per frame."""
    import cv2

    from humanstyle.stages.decode import decode_windows
    from humanstyle.stages.index.results import encode_png

    cv2.setNumThreads(1)
    with decode_windows(clip, 1.0, 4, 1280) as dec:
        windows = list(dec)
    h, w = windows[0].frames[0].shape[:2]
    side = int(h * 0.8)
    sizes = []
    for win in windows:
        for frame in win.frames:
            for x in (0.1, 0.5, 0.8, 0.3):  # where bench/gpu_ingest.py's four figures start
                x0 = int(min(max(0, x * w - side / 2), w - side))
                crop = cv2.resize(frame[h - side:h, x0:x0 + side], (256, 256), interpolation=cv2.INTER_AREA)
                mask = np.zeros((256, 256), np.uint8)
                cv2.ellipse(mask, (128, 128), (50, 120), 0, 0, 360, 255, -1)  # a person-shaped mask
                sizes.append(len(encode_png(crop)) + len(encode_png(mask)))
    frames_per_window = np.mean([len(win.frames) for win in windows])
    patch = float(np.mean(sizes))
    video_in = clip.stat().st_size / seconds
    return {"clip": f"{w}x{h} {seconds:g} s mp4v", "video_in_mb_per_s": round(video_in / 1e6, 3),
            "patch_bytes": round(patch), "frames_per_window": round(float(frames_per_window), 2),
            "patches_out_mb_per_s": {str(n): round(n * frames_per_window * patch / 1e6, 3) for n in (1, 4)}}


# --- 2. the cluster -------------------------------------------------------------------------------------------------
def session_cpu(sid: int) -> float:
    """CPU seconds of every live process in session `sid` (a daemon and its stage processes)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state ppid pgrp session ...
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def process_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def postmaster_session(pg_dir: str) -> int:
    pid = int(Path(pg_dir, "data", "postmaster.pid").read_text().split()[0])
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[3])


def standin(name: str, config_path: str, model_ms: float, stop, results) -> None:
    """An ingest machine whose model stages are a fixed sleep (see the module's docstring)."""
    import cv2

    from humanstyle.daemon import config
    from humanstyle.stages.decode import decode_windows
    from humanstyle.stages.index.results import ResultWriter
    from humanstyle.stages.records import Classified
    from humanstyle.stages.store.catalog import open_catalog
    from humanstyle.stages.store.segments import Segments
    from humanstyle.stages.store.storage import open_storage

    cv2.setNumThreads(1)
    settings = config.load(Path(config_path))
    catalog = open_catalog(settings, role=f"standin-{name}")
    segments, storage, writer = Segments(catalog), open_storage(settings), ResultWriter(settings, catalog)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    pose = np.array([[128 + 30 * np.sin(k), 20 + 13 * k, 1.0] for k in range(17)], np.float32)
    stats = {"decode_cpu_s": 0.0, "windows": 0, "segments": 0, "downloaded_bytes": 0, "grabbed_frames": 0,
             "own_frames": 0}
    fetched: set[str] = set()
    started = time.process_time()
    while not stop.is_set():
        claimed = segments.claim(name, 1, settings.ingest.lease_s)
        if not claimed:
            time.sleep(0.05)
            continue
        seg = claimed[0]
        path = storage.fetch([seg.source])[0]
        if seg.source not in fetched:
            fetched.add(seg.source)
            stats["downloaded_bytes"] += path.stat().st_size
        cpu = time.process_time()
        dec = decode_windows(path, settings.decode.anchor_every_s, settings.decode.burst_frames,
                             settings.decode.max_side or None, seg.start_window, seg.end_window)
        with dec:
            for window in dec:
                stats["decode_cpu_s"] += time.process_time() - cpu
                time.sleep(model_ms / 1000)  # the stand-in for detection and classification
                image = cv2.resize(window.frames[-1], (256, 256))
                noisy = pose.copy()
                noisy[:, :2] += rng.normal(0, 2, (17, 2)).astype(np.float32)
                patch = Classified(video_id=seg.video_id, attempt=seg.attempt, domain=seg.domain,
                                   window_index=window.window_index, frame_index=window.anchor_index,
                                   person_index=0, kind="anchor", timestamp=window.timestamps_s[-1],
                                   box=[0, 0, 256, 256], square=[0, 0, 256, 256], score=0.9, image=image,
                                   mask=np.full((256, 256), 255, np.uint8), keypoints=noisy,
                                   view="FULL-BODY-FRONT", reason="", keypoint_score=0.9)
                with catalog.transaction():
                    writer.write_patch(patch)
                stats["windows"] += 1
                cpu = time.process_time()
        summary = dec.summary
        stats["grabbed_frames"] += summary.frames_read
        stats["own_frames"] += summary.frames_own
        segments.finish(name, seg.key, summary.status, summary.reason or "", summary.windows,
                        summary.frames_own / summary.fps_used, summary.frames_own)
        stats["segments"] += 1
    stats["cpu_s"] = time.process_time() - started  # idle polling included: a few ms
    results.put((name, stats))
    catalog.close()


def cluster_run(work: Path, clips: list[Path], machines: int, model_ms: float, services, segment_s: float) -> dict:
    import s3fs

    from tests.conftest import fast_sections, write_config
    from tests.harness import daemon_env
    from tests.reliability_helpers import all_finished, drop
    from tests.scale_helpers import Machine

    database, bucket = f"bench_{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(services.postgres_url("127.0.0.1", "postgres"), autocommit=True) as db:
        db.execute(f"CREATE DATABASE {database}")
    endpoint = services.s3_endpoint("127.0.0.1")
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench")
    fs.mkdir(bucket)
    url = services.postgres_url("127.0.0.1", database)
    shared = {"catalog": {"url": url}, "storage": {"url": f"s3://{bucket}/hs", "endpoint_url": endpoint},
              "ingest": {"segment_s": segment_s, "lease_s": 60.0}, "pair": {"min_similarity": -1.0, "top_k": 3},
              "decode": {"burst_frames": 4, "max_side": 1280}}
    coordinator_dir = work / f"coordinator-{machines}"
    sections = fast_sections(coordinator_dir, **shared)
    sections["ingest"]["role"] = "coordinator"
    env = {**daemon_env(), **CREDENTIALS}
    coordinator = Machine(coordinator_dir, sections, env=env).start()
    os.environ.update(CREDENTIALS)
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    procs = []
    try:
        deadline = time.monotonic() + 120
        while (coordinator.health() or {}).get("status") != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError(coordinator.log_path.read_text()[-2000:])
            time.sleep(0.5)
        for i in range(machines):
            folder = work / f"standin-{machines}-{i}"
            folder.mkdir(parents=True)
            cfg = write_config(folder, fast_sections(folder, **shared))
            p = ctx.Process(target=standin, args=(f"m{i}", str(cfg), model_ms, stop, results))
            p.start()
            procs.append(p)
        time.sleep(3)  # the stand-ins have imported and connected: the clock measures ingestion only
        print(f"  {machines} machine(s): started, dropping {len(clips)} clips", file=sys.stderr, flush=True)
        pg_sid = postmaster_session(services.info["PG_DIR"])
        before = {"coordinator": session_cpu(coordinator.proc.pid), "postgresql": session_cpu(pg_sid),
                  "s3": process_cpu(int(services.info["S3_PID"]))}
        start = time.monotonic()
        for k, clip in enumerate(clips):
            drop(coordinator_dir, clip, ("movie", "game")[k % 2], name=f"{k}-{clip.name}", trailer=bytes([k]) * 16)
        deadline = time.monotonic() + (120 if os.environ.get("HS_BENCH_DEBUG") else 900)
        ingested = None
        with psycopg.connect(url, autocommit=True) as db:
            while not all_finished(coordinator_dir / "data", len(clips), url):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not finish: " + coordinator.log_path.read_text()[-2000:])
                if ingested is None and db.execute(
                        "SELECT COUNT(DISTINCT video_id) = %s AND COUNT(*) FILTER (WHERE status IN "
                        "('pending', 'leased')) = 0 FROM segments", (len(clips),)).fetchone()[0]:
                    ingested = time.monotonic() - start  # every segment finished: ingestion's own time
                time.sleep(0.1)
        wall = time.monotonic() - start
        ingested = ingested or wall
        after = {"coordinator": session_cpu(coordinator.proc.pid), "postgresql": session_cpu(pg_sid),
                 "s3": process_cpu(int(services.info["S3_PID"]))}
        with psycopg.connect(url) as db:
            seconds = db.execute("SELECT COALESCE(SUM(seconds), 0) FROM segments").fetchone()[0]
            row_bytes = db.execute("SELECT AVG(pg_column_size(p.*)) FROM patches p").fetchone()[0]
    finally:
        stop.set()
        stats = dict(results.get(timeout=60) for _ in procs) if procs else {}
        for p in procs:
            p.join(30)
        coordinator.kill()
        with psycopg.connect(services.postgres_url("127.0.0.1", "postgres"), autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    windows = sum(s["windows"] for s in stats.values())
    cpu = {part: round((after[part] - before[part]) / seconds, 4) for part in after}
    decode = sum(s["decode_cpu_s"] for s in stats.values())
    cpu["decode"] = round(decode / seconds, 4)
    cpu["ingest_rest"] = round((sum(s["cpu_s"] for s in stats.values()) - decode) / seconds, 4)
    grabbed = sum(s["grabbed_frames"] for s in stats.values())
    own = sum(s["own_frames"] for s in stats.values())
    return {"machines": machines, "video_s": round(seconds, 1), "ingest_s": round(ingested, 2),
            "wall_s": round(wall, 2), "video_s_per_s": round(seconds / ingested, 2), "windows": windows,
            "ideal_video_s_per_s": round(machines * 1000 / model_ms, 1),
            "cpu_s_per_video_s": cpu, "cores_busy": round(sum(cpu.values()) * seconds / ingested, 2),
            "grabbed_per_own_frame": round(grabbed / max(own, 1), 2),
            "downloaded_mb_per_video_s": round(sum(s["downloaded_bytes"] for s in stats.values()) / seconds / 1e6, 3),
            "row_bytes": round(float(row_bytes or 0))}


def ceiling(runs: list[dict], cores: int) -> str:
    """The first limit the runs reach: the first run below 75 % of linear growth from one machine, named by the
    part that uses the most CPU per video second (every part shares these cores), with the throughput the cores
    allow at the CPU cost measured there."""
    single = runs[0]["video_s_per_s"]
    for run in runs[1:]:
        efficiency = run["video_s_per_s"] / (run["machines"] * single)
        if efficiency < 0.75:
            cpu = run["cpu_s_per_video_s"]
            part = max(cpu, key=cpu.get)
            return (f"CPU, mostly {part}: at {run['machines']} machines {efficiency:.0%} of linear growth, "
                    f"{run['cores_busy']} of {cores} cores busy, {sum(cpu.values()) * 1000:.0f} ms of CPU per video "
                    f"second in all, so these cores allow at most ~{cores / sum(cpu.values()):.0f} video s/s")
    return f"none up to {runs[-1]['machines']} machines"


def print_report(report: dict) -> None:
    w = report["wire"]
    print(f"wire ({w['clip']}): video in {w['video_in_mb_per_s']} MB per video s; patches out "
          f"{w['patches_out_mb_per_s']['1']} MB (1 person per frame) / {w['patches_out_mb_per_s']['4']} MB "
          f"(4 people), {w['patch_bytes']} B per patch and mask")
    print(f"{'machines':>8} {'video s/s':>9} {'ideal':>6} {'cores':>5} {'coord':>6} {'pg':>6} {'s3':>6} "
          f"{'decode':>6} {'ingest':>6} {'grab/own':>8} {'dl MB/s':>7} {'tail s':>6}   (CPU s per video s; "
          "ingest: STAND-IN models)")
    for r in report["cluster"]:
        c = r["cpu_s_per_video_s"]
        print(f"{r['machines']:>8} {r['video_s_per_s']:>9} {r['ideal_video_s_per_s']:>6} {r['cores_busy']:>5} "
              f"{c['coordinator']:>6} {c['postgresql']:>6} {c['s3']:>6} {c['decode']:>6} {c['ingest_rest']:>6} "
              f"{r['grabbed_per_own_frame']:>8} {r['downloaded_mb_per_video_s']:>7} "
              f"{r['wall_s'] - r['ingest_s']:>6.2f}")
    if report["cluster"]:
        print(f"first ceiling: {report['ceiling']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, 1 and 2 machines (CI)")
    parser.add_argument("--machines", default="1,2,4,8")
    parser.add_argument("--model-ms", type=float, default=100.0, help="the stand-in's latency per window")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # A timeout's SIGTERM unwinds like an exception, so the coordinator and the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from tests.scale_helpers import Services

    smoke = args.smoke
    machines = [1, 2] if smoke else [int(m) for m in args.machines.split(",")]
    work = Path(tempfile.mkdtemp(prefix="hs-scale-"))
    try:
        wire_s = 2 if smoke else 10
        wire_clip = gpu_ingest.make_people_clip(work / "wire.mp4", wire_s, (1280, 720))
        report: dict[str, Any] = {"bench": "scale", "when": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                                  "smoke": smoke, "model_ms": args.model_ms, "wire": wire(wire_clip, wire_s)}
        size, seconds, count = ((320, 180), 4, 2) if smoke else ((640, 360), 30, 8)
        clips = [gpu_ingest.make_people_clip(work / f"clip{k}.mp4", seconds, size) for k in range(count)]
        report["cluster_clips"] = f"{count} x {seconds} s {size[0]}x{size[1]}"
        report["segment_s"] = 2.0 if smoke else 5.0
        with Services("127.0.0.1", "127.0.0.1/32") as services:
            report["cluster"] = [cluster_run(work, clips, m, args.model_ms, services, report["segment_s"])
                                 for m in machines]
        report["ceiling"] = ceiling(report["cluster"], os.cpu_count() or 1)
        print_report(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if not os.environ.get("HS_BENCH_DEBUG"):
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
