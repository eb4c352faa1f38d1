"""Watch-folder timings that the tests deliberately do not assert (they wait on events instead of clocks).

    python bench/watch.py [--files 10000] [--repeats 20] [--out bench/results/watch.json]

- scan: one `stages.watch.scan` of a tree of `--files` files in 100 folders, with symlink loops in it (a folder
  linking to its parent, one linking to itself, a ping-pong pair of file links), median of 5 scans;
- pickup: a file written into a watched folder until `Watcher.poll` reports it, with rescans an hour apart (only
  inotify events can wake the watcher), for watch.stable_s 0.2 s; the overhead is pickup minus stable_s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from humanstyle.stages.watch import Watcher, scan  # noqa: E402

DOMAINS = ("movie", "game")
STABLE_S = 0.2


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / DOMAINS[i % 2] / f"d{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"clip{i:06d}.mp4").write_bytes(b"x")
    (root / "movie" / "d000" / "up").symlink_to(root / "movie")
    (root / "movie" / "d002" / "self").symlink_to(".")
    (root / "game" / "ping.mp4").symlink_to(root / "game" / "pong.mp4")
    (root / "game" / "pong.mp4").symlink_to(root / "game" / "ping.mp4")


def scan_seconds(root: Path, files: int) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        found = scan(root, DOMAINS)
        times.append(time.perf_counter() - start)
        assert len(found) == files, len(found)
    return statistics.median(times)


def pickup_seconds(root: Path, repeats: int) -> list[float]:
    out = []
    with Watcher(root, DOMAINS, stable_s=STABLE_S, poll_interval_s=3600, min_rescan_s=0.05) as w:
        w.poll(timeout=0)
        for i in range(repeats):
            target = root / "game" / f"new{i:03d}.mp4"
            written = {}

            def write(target=target, written=written) -> None:
                written["at"] = time.monotonic()
                target.write_bytes(b"y" * 1000)

            threading.Timer(0.05, write).start()
            got = w.poll(timeout=60)
            assert [c.path for c in got] == [target], got
            out.append(time.monotonic() - written["at"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/watch.json"))
    args = parser.parse_args()
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        make_tree(tree, args.files)
        scan_s = scan_seconds(tree, args.files)
        fresh = Path(tmp) / "fresh"
        for d in DOMAINS:
            (fresh / d).mkdir(parents=True)
        pickups = pickup_seconds(fresh, args.repeats)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min": [load_start, round(os.getloadavg()[0], 2)]},
        "scan": {"files": args.files, "median_s": round(scan_s, 4)},
        "pickup": {"stable_s": STABLE_S, "repeats": args.repeats, "median_s": round(statistics.median(pickups), 4),
                   "max_s": round(max(pickups), 4),
                   "median_overhead_s": round(statistics.median(pickups) - STABLE_S, 4)},
    }
    print("what | value")
    print("--- | ---")
    print(f"scan of {args.files} files with symlink loops (median of 5) | {scan_s:.3f} s")
    print(f"pickup, stable_s {STABLE_S} s, events only (median / max of {args.repeats}) | "
          f"{statistics.median(pickups):.3f} s / {max(pickups):.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
