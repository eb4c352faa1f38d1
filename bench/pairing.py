"""Pairing benchmark: streaming append+query with PairingRule vs recomputing the whole similarity matrix.

    python bench/pairing.py [--sizes 10000 100000 1000000] [--out bench/results/pairing.json]

Each size runs in its own subprocess so peak RSS (ru_maxrss) belongs to that size alone. Per size N (patches per
domain, one view): bulk-load N movie + N game patches (commit_batch-equivalent appends of 10k rows, fsynced), then
time streaming `add` of single patches (query the other domain + durable append), `propose_batch` alone (the
query without the fsyncs), and `add_batch` of 128 patches. The naive alternative recomputes the full N x N
similarity matrix (row blocks, top-1 per row; one complex dot product per pair, a lower bound of the real score's
cost) for every new patch; it is measured in full at 10k, on a 1/10 row sample at 100k (every row costs the same,
so it scales linearly), and extrapolated (x100) for 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from humanstyle.stages.pairing.pose import NUM_KEYPOINTS, prepare  # noqa: E402
from humanstyle.stages.pairing.rule import PairingRule  # noqa: E402
from humanstyle.stages.settings import PairSettings  # noqa: E402
from humanstyle.stages.vocabulary import VISIBLE_CONFIDENCE  # noqa: E402

VIEW = "FULL-BODY-FRONT"
BATCH = 10_000
# Each keypoint is missing (under the visibility cut) with this probability, whatever the cut is: the workload
# must not change when the cut does (uniform(0.2, 1) confidences gave 1/8 under the old 0.3 cut, 3/8 under 0.5).
MISSING = 1 / 8


def random_keypoints(rng: np.random.Generator, n: int) -> np.ndarray:
    base = np.array([(50, 10), (48, 8), (52, 8), (45, 9), (55, 9), (40, 25), (60, 25), (35, 42), (65, 42),
                     (35, 58), (65, 58), (43, 60), (57, 60), (43, 80), (57, 80), (43, 100), (57, 100)], float)
    kp = np.empty((n, 17, 3))
    kp[..., :2] = base * rng.uniform(0.5, 2, (n, 1, 1)) + rng.uniform(0, 100, (n, 1, 2)) + rng.normal(0, 8, (n, 17, 2))
    cut = VISIBLE_CONFIDENCE
    kp[..., 2] = np.where(rng.random((n, 17)) < MISSING, rng.uniform(0, cut, (n, 17)), rng.uniform(cut, 1, (n, 17)))
    return kp


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def naive_seconds_per_patch(feats_a: np.ndarray, feats_b: np.ndarray, rows: int) -> float:
    """Time to recompute top-1 over the whole a x b matrix, measured on `rows` rows of a and scaled to all.

    A lower bound of the naive cost: one complex dot product (rotation-invariant cosine of the prepared poses)
    per pair, where the real score also re-centres on the shared keypoints and tries the mirror image.
    """
    start = time.perf_counter()
    conj_b = feats_b.conj().T
    for r0 in range(0, rows, 1024):
        sims = np.abs(feats_a[r0 : min(rows, r0 + 1024)] @ conj_b)
        sims.argmax(axis=1)
    return (time.perf_counter() - start) * len(feats_a) / rows


def run_size(n: int) -> dict:
    rng = np.random.default_rng(n)
    result: dict = {"patches_per_domain": n, "rss_start_mb": round(rss_mb(), 1)}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        index = PairingRule(Path(tmp), ("movie", "game"), views=(VIEW,),
                             min_similarity=PairSettings().min_similarity, top_k=1)
        loaded, feature_s, append_s = 0, 0.0, 0.0
        sample: dict[str, np.ndarray] = {}
        for domain in index.domains:
            parts = []
            for start in range(0, n, BATCH):
                t0 = time.perf_counter()
                masks, z = prepare(random_keypoints(rng, min(BATCH, n - start)))
                t1 = time.perf_counter()
                ids = np.arange(start, start + len(z)) + (0 if domain == "movie" else 10**12)
                loaded += index.store(domain, VIEW).append(ids, masks, z)
                append_s += time.perf_counter() - t1
                feature_s += t1 - t0
                if n <= 100_000:
                    parts.append(z)
            sample[domain] = np.concatenate(parts) if parts else np.empty((0, NUM_KEYPOINTS), np.complex64)
        result.update(bulk_append_patches_per_s=round(loaded / append_s),
                      features_per_s=round(loaded / feature_s), rss_after_load_mb=round(rss_mb(), 1))

        streams = 200 if n < 1_000_000 else 100
        kp = random_keypoints(rng, streams + 4 * 128)
        next_id = 2 * 10**12
        pairs, add_t, query_t, batch_t = 0, [], [], []
        for i in range(streams):
            t0 = time.perf_counter()
            pairs += len(index.add(next_id + i, index.domains[i % 2], VIEW, kp[i]))
            add_t.append(time.perf_counter() - t0)
        for i in range(streams):
            t0 = time.perf_counter()
            index.propose_batch([next_id + 10**6 + i], index.domains[i % 2], VIEW, kp[i][None])
            query_t.append(time.perf_counter() - t0)
        for j in range(4):
            chunk = kp[streams + 128 * j : streams + 128 * (j + 1)]
            t0 = time.perf_counter()
            ids = np.arange(128) + next_id + 2 * 10**6 + 128 * j
            pairs += len(index.add_batch(ids, index.domains[j % 2], VIEW, chunk))
            batch_t.append((time.perf_counter() - t0) / 128)
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        index.close()

    # Medians: the 2 shared cores make single timings spiky (other jobs), and a median is what a steady
    # stream sees; p90 shows the spikes.
    result.update(
        stream_add_patches_per_s=round(1 / np.median(add_t), 1),
        stream_add_ms_median=round(np.median(add_t) * 1e3, 2),
        stream_add_ms_p90=round(np.percentile(add_t, 90) * 1e3, 2),
        query_only_patches_per_s=round(1 / np.median(query_t), 1),
        query_only_ms_median=round(np.median(query_t) * 1e3, 2),
        batch128_add_patches_per_s=round(1 / np.median(batch_t), 1),
        pairs_found=pairs,
        index_disk_mb=round(disk / 2**20, 1),
        rss_end_mb=round(rss_mb(), 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    if n <= 10_000:
        naive = naive_seconds_per_patch(sample["movie"], sample["game"], n)
        result["naive_method"] = "measured: full N x N recompute"
    elif n <= 100_000:
        naive = naive_seconds_per_patch(sample["movie"], sample["game"], n // 10)
        result["naive_method"] = "measured on N/10 rows of the N x N recompute, scaled x10 (cost is per row)"
    else:
        naive = None
        result["naive_method"] = "not run: extrapolated from 100k (quadratic, x100)"
    if naive is not None:
        result["naive_s_per_patch"] = round(naive, 3)
        result["naive_patches_per_s"] = round(1 / naive, 4)
    result["naive_full_matrix_gb"] = round(n * n * 4 / 1e9, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pairing.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_size(args.one)))
        return
    results = []
    load_before = os.getloadavg()
    for n in args.sizes:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"wall_s": round(time.perf_counter() - t0)})
    by_n = {r["patches_per_domain"]: r for r in results}
    if 100_000 in by_n and 1_000_000 in by_n and "naive_s_per_patch" in by_n[100_000]:
        naive = by_n[100_000]["naive_s_per_patch"] * 100
        by_n[1_000_000].update(naive_s_per_patch=round(naive, 1), naive_patches_per_s=round(1 / naive, 6))
    header = ["N/domain", "bulk app/s", "add/s", "query/s", "batch128/s", "naive/s", "naive s/patch",
              "RSS load MB", "peak RSS MB", "disk MB"]
    print(" | ".join(header))
    for r in results:
        print(" | ".join(str(v) for v in (
            r["patches_per_domain"], r["bulk_append_patches_per_s"], r["stream_add_patches_per_s"],
            r["query_only_patches_per_s"], r["batch128_add_patches_per_s"], r.get("naive_patches_per_s"),
            r.get("naive_s_per_patch"), r["rss_after_load_mb"], r["peak_rss_mb"], r["index_disk_mb"])))
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
               "platform": platform.platform(), "note": "2 CPU cores shared with other jobs while measured",
               "load_average_1_5_15_before": [round(v, 2) for v in load_before],
               "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "view": VIEW, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
