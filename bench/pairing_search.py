"""Pose search at scale: the exact scan against FAISS candidates re-scored exactly, speed and agreement.

    python bench/pairing_search.py [--sizes 100000 1000000] [--settings 32:256 64:512] [--smoke]
                                   [--out bench/results/pairing_search.json]

Per size N (poses stored in one domain and view; `bench/pairing.py`'s synthetic poses, each keypoint missing with
probability 1/8) in its own subprocess, so that peak RSS belongs to that size: the index is loaded, then the same
queries (fresh synthetic poses, the other domain's new patches) are searched in batches of --batch, top 1 at
`pair.min_similarity`, by the exact scan and by FAISS with each nprobe:candidates setting. The first FAISS search
trains its index (k-means lists, template, every pose added): that time is the rebuild time. Reopen: the pose store
read back from its files, as at a restart.

Agreement with the exact search, per setting: found = share of the queries whose exact best reaches the threshold
that FAISS also pairs; within 0.001 = share of those whose FAISS pair is within 0.001 of the exact best; and the
gap (exact best - FAISS best, of the pairs FAISS found) at the median and the 99th percentile. The same on the
real poses of the view dev set (tests/data/views/cases.json): per view class, each keypoint source's poses searched
among the other sources'.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.pairing import random_keypoints, rss_mb  # noqa: E402
from bench.pairing_quality import CLASSES, patch_poses  # noqa: E402
from humanstyle.stages.pairing.ann import SearchSettings  # noqa: E402
from humanstyle.stages.pairing.pose import prepare  # noqa: E402
from humanstyle.stages.pairing.pose_store import PoseStore  # noqa: E402
from humanstyle.stages.settings import PairSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = PairSettings().min_similarity
LOAD_BATCH = 100_000


def best_by_query(result: tuple, n: int) -> np.ndarray:
    """Best similarity per query (-inf where none reached the threshold) from PoseStore.search's arrays."""
    best = np.full(n, -np.inf)
    rows, sims = result[0], result[3]
    np.maximum.at(best, rows, sims)
    return best


def agreement(exact: np.ndarray, approx: np.ndarray) -> dict:
    has = np.isfinite(exact)
    both = has & np.isfinite(approx)
    gap = exact[both] - approx[both]  # of the pairs found: how far below the exact best
    return {"queries_with_exact_pair": int(has.sum()),
            "found": round(float(both.sum() / has.sum()), 4) if has.any() else None,
            "within_0_001": round(float((gap <= 1e-3).sum() / has.sum()), 4) if has.any() else None,
            "gap_median": round(float(np.median(gap)), 5) if both.any() else None,
            "gap_p99": round(float(np.percentile(gap, 99)), 5) if both.any() else None,
            "extra_pairs": int((np.isfinite(approx) & ~has).sum())}


def timed_search(index: PoseStore, masks: np.ndarray, z: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    best, seconds = np.full(len(masks), -np.inf), 0.0
    for start in range(0, len(masks), batch):
        t0 = time.perf_counter()
        result = index.search(masks[start : start + batch], z[start : start + batch], 1, THRESHOLD)
        seconds += time.perf_counter() - t0
        best[start : start + batch] = best_by_query(result, len(masks[start : start + batch]))
    return best, seconds


def run_size(n: int, queries: int, batch: int, settings: list[tuple[int, int]]) -> dict:
    rng = np.random.default_rng(n)
    out: dict = {"poses": n, "queries": queries, "batch": batch}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        index = PoseStore(Path(tmp), durable=False, search=SearchSettings("exact"))
        t0 = time.perf_counter()
        for start in range(0, n, LOAD_BATCH):
            masks, z = prepare(random_keypoints(rng, min(LOAD_BATCH, n - start)))
            index.append(np.arange(start, start + len(z)), masks, z)
        out["load_s"] = round(time.perf_counter() - t0, 1)
        index.close()
        del index  # freed before the reopen: RSS then is what a restarted pairing stage holds for this index
        t0 = time.perf_counter()
        index = PoseStore(Path(tmp), durable=False, search=SearchSettings("exact"))  # what a restart reads
        out["reopen_s"] = round(time.perf_counter() - t0, 1)
        out["rss_loaded_mb"] = round(rss_mb())
        q_masks, q_z = prepare(random_keypoints(rng, queries))
        exact, seconds = timed_search(index, q_masks, q_z, batch)
        out["exact"] = {"queries_per_s": round(queries / seconds, 1)}
        out["faiss"] = []
        for nprobe, candidates in settings:
            index.search_settings = SearchSettings("faiss", 0, nprobe, candidates)
            index._ann = None  # each setting trains its own lists: its first search is a rebuild
            t0 = time.perf_counter()
            index.search(q_masks[:1], q_z[:1], 1, THRESHOLD)
            build_s = time.perf_counter() - t0
            approx, seconds = timed_search(index, q_masks, q_z, batch)
            out["faiss"].append({"nprobe": nprobe, "candidates": candidates, "rebuild_s": round(build_s, 1),
                                 "faiss_mb": round(index._ann.memory_bytes / 2**20),
                                 "queries_per_s": round(queries / seconds, 1), "rss_mb": round(rss_mb())}
                                | agreement(exact, approx))
        index.close()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def dev_set(cases_path: Path, settings: list[tuple[int, int]]) -> dict:
    """Per class and keypoint source: that source's poses searched among the other sources' poses of the class."""
    cases = json.loads(cases_path.read_text())["cases"]
    out: dict = {}
    for label in CLASSES:
        poses = [(case["keypoints_from"], kp) for case, kp in patch_poses(cases) if case["label"] == label]
        for source in sorted({s for s, _ in poses}):
            stored = np.stack([kp for s, kp in poses if s != source])
            query = np.stack([kp for s, kp in poses if s == source])
            masks, z = prepare(stored)
            q_masks, q_z = prepare(query)
            with tempfile.TemporaryDirectory() as tmp:
                index = PoseStore(Path(tmp), durable=False, search=SearchSettings("exact"))
                index.append(np.arange(len(z)), masks, z)
                exact, _ = timed_search(index, q_masks, q_z, 256)
                row = {"stored": len(z), "queries": len(q_z)}
                for nprobe, candidates in settings:
                    index.search_settings = SearchSettings("faiss", 0, nprobe, candidates)
                    index._ann = None
                    approx, _ = timed_search(index, q_masks, q_z, 256)
                    row[f"{nprobe}:{candidates}"] = agreement(exact, approx)
                index.close()
            out[f"{label} {source}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--settings", nargs="+", default=["32:256", "64:512"], help="nprobe:candidates")
    parser.add_argument("--cases", type=Path, default=ROOT / "tests" / "data" / "views" / "cases.json")
    parser.add_argument("--smoke", action="store_true", help="seconds: 20k poses, 64 queries (CI)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pairing_search.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings]
    if args.smoke:
        args.sizes, args.queries = [20_000], 64
    if args.one:
        print(json.dumps(run_size(args.one, args.queries, args.batch, settings)))
        return
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--queries", str(args.queries), "--batch", str(args.batch),
               "--settings", *args.settings]
        results.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                                  .strip().splitlines()[-1]))
    print("poses | search | queries/s | rebuild s | found | within 0.001 | gap p50 | gap p99 | RSS MB")
    for r in results:
        print(f"{r['poses']} | exact | {r['exact']['queries_per_s']} | - | 1 | 1 | 0 | 0 | {r['rss_loaded_mb']}")
        for f in r["faiss"]:
            print(f"{r['poses']} | faiss {f['nprobe']}:{f['candidates']} | {f['queries_per_s']} | {f['rebuild_s']} | "
                  f"{f['found']} | {f['within_0_001']} | {f['gap_median']} | {f['gap_p99']} | {f['rss_mb']}")
    real = dev_set(args.cases, settings) if args.cases.exists() else {}
    if real:
        print("dev set (class source) | stored | queries | " + " | ".join(f"found / within {s}" for s in args.settings))
        for key, row in real.items():
            cells = [f"{row[s]['found']} / {row[s]['within_0_001']}" for s in args.settings]
            print(f"{key} | {row['stored']} | {row['queries']} | " + " | ".join(cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]}
    args.out.write_text(json.dumps({"machine": machine, "threshold": THRESHOLD, "results": results,
                                    "dev_set": real}, indent=2) + "\n")


if __name__ == "__main__":
    main()
