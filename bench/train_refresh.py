"""Trainer refresh at scale: reading the whole catalog against reading what is new since the last refresh.

    python bench/train_refresh.py [--pairs 1000000] [--new 1000] [--smoke] [--out bench/results/train_refresh.json]

A SQLite catalog with --pairs pairs over pairs/4 patches per domain (each patch in four pairs, as the issue that
asked for this measured), rows only (a local data folder: reading the data opens no image). Then, timed: the full
read with its digest (`load_training_data` + `data_digest`, what every refresh did before), a trainer's first
refresh (the same work through the incremental path), and its refresh after --new more pairs (and their patches)
and 10 verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from humanstyle.stages.store.catalog import Catalog  # noqa: E402
from humanstyle.stages.store.storage import Storage  # noqa: E402
from humanstyle.stages.train.data import TrainingData, data_digest, load_training_data, read_delta  # noqa: E402

DOMAINS = ("movie", "game")
VIEW = "FULL-BODY-FRONT"


def fill(catalog: Catalog, pairs: int) -> None:
    """`pairs` more pairs over pairs/4 new patches per domain, written in one transaction per table."""
    db = catalog.db
    now = time.time()
    patches_per_domain = max(1, pairs // 4)
    ids = {}
    with catalog.transaction():
        (video,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM videos").fetchone()
        if not video:
            db.execute("INSERT INTO videos (fingerprint, path, domain, size, status, created_at, updated_at) "
                       "VALUES ('fp', '/v.mp4', 'movie', 1, 'done', 0, 0)")
            video = 1
        for d in DOMAINS:
            (start,) = db.execute("SELECT COALESCE(MAX(frame_index), 0) + 1 FROM patches WHERE domain = ?",
                                  (d,)).fetchone()
            rows = [(video, d, 0, start + i + (10**9 if d == "game" else 0), 0, "anchor", 0.0, "[]", "[]", 0.9, VIEW,
                     "", 0.9, f"patches/{d}/{VIEW}/p{start + i:09d}.png", 1, now) for i in range(patches_per_domain)]
            db.executemany("INSERT INTO patches (video_id, domain, window_index, frame_index, person_index, kind, "
                           "timestamp, box, square, score, view, reason, keypoint_score, path, indexed, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            # Numbered as the pairing stage numbers what it paired (the trainer follows that order).
            db.execute("UPDATE patches SET paired_seq = id WHERE indexed = 1 AND paired_seq = 0")
            last = db.execute("SELECT MAX(id) FROM patches").fetchone()[0]
            ids[d] = list(range(last - patches_per_domain + 1, last + 1))
        # Each movie patch in four pairs, with four different game patches.
        n = patches_per_domain
        rows = [(ids["movie"][i % n], ids["game"][(i * 7 + i // n) % n], VIEW, 0.995, now, i % 5 == 0)
                for i in range(pairs)]
        db.executemany("INSERT INTO pairs (a_patch_id, b_patch_id, view, similarity, created_at, mirrored) "
                       "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)


def run(pairs: int, new: int) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = Path(tmp) / "catalog.db"
        writer = Catalog(path)
        t0 = time.perf_counter()
        fill(writer, pairs)
        fill_s = time.perf_counter() - t0
        storage = Storage("", Path(tmp), Path(tmp) / "cache")
        reader = Catalog(path, readonly=True)
        t0 = time.perf_counter()
        full = load_training_data(reader, storage, DOMAINS, 0.1, 0.1)
        data_digest(full)
        full_s = time.perf_counter() - t0
        data = TrainingData()
        t0 = time.perf_counter()
        data.apply(read_delta(data, reader, storage, DOMAINS, 0.1, 0.1, reader.watermark()))
        first_s = time.perf_counter() - t0
        fill(writer, new)
        for pair_id in range(1, 11):
            writer.set_verdict(pair_id * 97, "bad")
        t0 = time.perf_counter()
        delta = read_delta(data, reader, storage, DOMAINS, 0.1, 0.1, reader.watermark())
        data.apply(delta)
        refresh_s = time.perf_counter() - t0
        total = reader.pair_count()
        reader.close()
        writer.close()
    return {"pairs": pairs, "new_pairs": new, "pairs_after": total, "fill_s": round(fill_s, 1),
            "full_read_and_digest_s": round(full_s, 3), "first_refresh_s": round(first_s, 3),
            "refresh_after_new_s": round(refresh_s, 4), "pairs_read_by_refresh": len(delta.pairs),
            "dropped_by_refresh": len(delta.dropped)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="seconds: 20k pairs (CI)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_refresh.json")
    args = parser.parse_args()
    sizes = [20_000] if args.smoke else args.pairs
    results = [run(n, args.new) for n in sizes]
    print("pairs | full read + digest s | first refresh s | refresh after +new s | pairs read | dropped")
    for r in results:
        print(f"{r['pairs']} | {r['full_read_and_digest_s']} | {r['first_refresh_s']} | {r['refresh_after_new_s']} | "
              f"{r['pairs_read_by_refresh']} | {r['dropped_by_refresh']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
