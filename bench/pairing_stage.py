"""The pairing stage at scale: new patches per second from catalog row to pair row, with N poses already stored.

    python bench/pairing_stage.py [--sizes 100000 1000000] [--new 4096] [--catalog-url postgresql://...] [--smoke]
                                  [--out bench/results/pairing_stage.json]

Per size N (poses per (domain, view), one view; `bench/pairing.py`'s synthetic poses), in its own process: a
catalog with N paired patches per domain (rows only, no image files) and their pose store, built directly (not
timed as pairing). Then, timed:

- catalog inserts: --new patch rows (half per domain, in runs of 32 as videos bring them) through
  `Catalog.add_patch`, in transactions of 32 rows as the index stage writes them (and, for comparison, one
  transaction per row);
- sustained pairing, per search (`pair.search` exact and faiss): the pairing stage (`stages.pairing.stage.
  PairingHandler`, batches of `pair.batch` = 256) pairs those rows; patches/s = rows / time;
- catalog row to pair row: a second process inserts rows at half the measured FAISS rate while the stage runs its
  loop (idle waits included); the delay of each row from its `created_at` to its pairing, p50 and p99.

The catalog is SQLite in a temporary folder, or with --catalog-url a PostgreSQL server (each size gets its own
database, dropped afterwards).
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
from humanstyle.daemon import config  # noqa: E402
from humanstyle.stages.handler import ListOutbox  # noqa: E402
from humanstyle.stages.index.stage import PATCH_BATCH  # noqa: E402
from humanstyle.stages.pairing.rule import PairingRule  # noqa: E402
from humanstyle.stages.pairing.stage import PairingHandler  # noqa: E402
from humanstyle.stages.store.catalog import Catalog  # noqa: E402
from humanstyle.stages.vocabulary import VIEWS  # noqa: E402

VIEW = "FULL-BODY-FRONT"
DOMAINS = ("movie", "game")
LOAD = 100_000
RUN = 32  # patches per run of one domain among the new ones


def settings_for(folder: Path, search: str, catalog_url: str) -> config.Settings:
    return config.from_dict({"paths": {"data_dir": "data", "watch_dir": "watch"}, "catalog": {"url": catalog_url},
                             "pair": {"search": search, "batch": 256}}, folder)


def build(settings: config.Settings, n: int, rng: np.random.Generator) -> dict:
    """N paired patches per domain in the catalog and the pose store; returns timings."""
    settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings.catalog.url or settings.paths.catalog)
    videos = {d: catalog.add_video(f"fp-{d}", f"/w/{d}.mp4", d, 1, 0.0)[0].id for d in DOMAINS}
    index = PairingRule(settings.paths.data_dir / "index", DOMAINS, VIEWS, durable=False)
    t0 = time.perf_counter()
    for d in DOMAINS:
        for start in range(0, n, LOAD):
            kp = random_keypoints(rng, min(LOAD, n - start)).astype(np.float32)
            rows = [(videos[d], d, 0, start + i, 0, "anchor", 0.0, "[]", "[]", 0.9, VIEW, "", 0.9, kp[i].tobytes(),
                     "", 1, 0.0) for i in range(len(kp))]
            with catalog.transaction():
                cur = catalog.db.cursor()
                cur.executemany(_sql(catalog), rows)
            last = catalog.dialect.execute("SELECT MAX(id) FROM patches WHERE domain = ? AND view = ?", (d, VIEW))
            first = int(last.fetchone()[0]) - len(kp) + 1
            index.commit_batch(np.arange(first, first + len(kp)), d, VIEW, kp)
    index.close()
    catalog.close()
    return {"build_s": round(time.perf_counter() - t0, 1)}


def _sql(catalog: Catalog) -> str:
    """The bulk insert in the driver's own placeholders (executemany goes to the driver: the dialect has none)."""
    sql = ("INSERT INTO patches (video_id, domain, window_index, frame_index, person_index, kind, timestamp, box, "
           "square, score, view, reason, keypoint_score, keypoints, path, indexed, created_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    return sql.replace("?", "%s") if catalog.dialect.__class__.__name__.startswith("Postgres") else sql



def insert_new(target: str | Path, count: int, first_frame: int, seed: int, rate: float = 0.0,
               per_transaction: int = PATCH_BATCH) -> float:
    """`count` new kept patches through Catalog.add_patch, runs of RUN per domain, `per_transaction` rows per
    transaction; at `rate` rows/s if set. Returns the seconds it took."""
    rng = np.random.default_rng(seed)
    catalog = Catalog(target)
    videos = {d: catalog.add_video(f"fp-{d}", f"/w/{d}.mp4", d, 1, 0.0)[0].id for d in DOMAINS}
    kp = random_keypoints(rng, count).astype(np.float32)
    t0 = time.perf_counter()
    for first in range(0, count, per_transaction):
        with catalog.transaction():
            for i in range(first, min(count, first + per_transaction)):
                domain = DOMAINS[(i // RUN) % 2]
                fields = {"video_id": videos[domain], "domain": domain, "window_index": 0,
                          "frame_index": first_frame + i, "person_index": 0, "kind": "anchor", "timestamp": 0.0,
                          "box": [0, 0, 1, 1], "square": [0, 0, 1, 1], "score": 0.9, "view": VIEW, "reason": "",
                          "keypoint_score": 0.9}
                catalog.add_patch(fields, kp[i], "")
        if rate:
            lag = t0 + min(count, first + per_transaction) / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
    catalog.close()
    return time.perf_counter() - t0


def run_size(n: int, new: int, catalog_url: str) -> dict:
    out: dict = {"poses_per_domain": n, "new_patches": new, "catalog": "postgresql" if catalog_url else "sqlite"}
    rng = np.random.default_rng(n)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        url = _database(catalog_url, f"bench_pairing_{n}") if catalog_url else ""
        try:
            settings = settings_for(Path(tmp), "exact", url)
            out.update(build(settings, n, rng))
            target = url or settings.paths.catalog
            frame = 10 * n
            seconds = insert_new(target, new, frame, seed=frame, per_transaction=1)
            out["catalog_inserts_per_s_one_per_transaction"] = round(new / seconds)
            frame += new
            catalog = Catalog(target)  # those rows measured the inserts only: left out of the pairing runs
            catalog.mark_indexed([r["id"] for r in catalog.unindexed_patches()])
            catalog.close()
            for search in ("exact", "faiss"):
                seconds = insert_new(target, new, frame, seed=frame)
                out.setdefault("catalog_inserts_per_s", round(new / seconds))
                frame += new
                handler = PairingHandler(settings_for(Path(tmp), search, url))
                handler.start(ListOutbox())
                t0 = time.perf_counter()
                handler.pair_batch()  # a FAISS index trains at its first search: the rebuild, timed apart
                first_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                pairs = handler.pair_all()
                seconds = time.perf_counter() - t0
                out[search] = {"patches_per_s": round((new - 256) / seconds), "pairs": pairs,
                               "first_batch_s": round(first_s, 2), "rss_mb": round(rss_mb())}
                if search == "faiss":
                    out[search]["delay"] = stream(handler, target, frame, out[search]["patches_per_s"] / 2, new)
                handler.close()
        finally:
            if catalog_url:
                _drop(catalog_url, url)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def stream(handler: PairingHandler, target: str | Path, frame: int, rate: float, count: int) -> dict:
    """Rows arrive at `rate` from another process while the stage runs its loop; delays row -> pair."""
    producer = subprocess.Popen([sys.executable, __file__, "--produce", str(target), str(count), str(frame),
                                 str(rate)])
    delays: list[float] = []
    out = ListOutbox()
    original = handler.pair_batch

    def pair_batch():
        rows, added = original()
        now = time.time()
        delays.extend(now - float(r["created_at"]) for r in rows)
        return rows, added

    handler.pair_batch = pair_batch
    while producer.poll() is None or handler.catalog.unindexed_count():
        handler.step(out)
    handler.pair_batch = original
    d = np.array(delays)
    return {"rate_per_s": round(rate), "rows": len(d), "p50_s": round(float(np.percentile(d, 50)), 3),
            "p99_s": round(float(np.percentile(d, 99)), 3)}


def _database(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def _drop(url: str, database_url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {database_url.rsplit('/', 1)[1]} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--new", type=int, default=4096)
    parser.add_argument("--catalog-url", default="", help="a PostgreSQL server URL (else SQLite)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 5k poses, 768 new (CI)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pairing_stage.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--produce", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        target, count, frame, rate = args.produce
        insert_new(target if "://" in target else Path(target), int(count), int(frame), int(frame), float(rate))
        return
    if args.smoke:
        args.sizes, args.new = [5_000], 768
    if args.one:
        print(json.dumps(run_size(args.one, args.new, args.catalog_url)))
        return
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--new", str(args.new), "--catalog-url", args.catalog_url]
        results.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                                  .strip().splitlines()[-1]))
    print("poses/domain | catalog | inserts/s (1 per tx) | exact patches/s | faiss patches/s | faiss first batch s | "
          "row->pair p50 s | p99 s (at rate) | peak RSS MB")
    for r in results:
        f, delay = r["faiss"], r["faiss"]["delay"]
        print(f"{r['poses_per_domain']} | {r['catalog']} | {r['catalog_inserts_per_s']} "
              f"({r['catalog_inserts_per_s_one_per_transaction']}) | "
              f"{r['exact']['patches_per_s']} | {f['patches_per_s']} | {f['first_batch_s']} | {delay['p50_s']} | "
              f"{delay['p99_s']} ({delay['rate_per_s']}/s) | {r['peak_rss_mb']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
