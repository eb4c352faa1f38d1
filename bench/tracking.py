"""Keeping people's identities through an occlusion: ByteTrack (Roboflow `trackers`) as the library ships it, and as
`translate-video` sets it up (humanstyle.stages.translate.tracking), on a real clip of two people crossing.

    python bench/tracking.py [--seeds 20] [--miss-below 0.3 0.5] [--score-drop 0.5 0.25] [--smoke]
                             [--out bench/results/tracking.json]

`translate-video` smooths each person's box along their track, so a track that jumps from one person to the other
moves a patch (and its translated person) onto the wrong body. The clip is tests/data/video/crossing.mp4: two real
people composited over a real street, person 0 walking in front of person 1 (tests/data/video/crossing_build.py;
ground truth from the construction, checked by eye, in crossing.json).

The trackers see boxes only, so the bench feeds them detections made from the ground truth the way a person
detector behaves at an occlusion (seeded, so every tracker sees the same detections for a seed):
- missed: a person whose visible fraction is below --miss-below (0.3) is not detected at all;
- box: the visible part's tight box (the detector boxes what it sees, not the person behind the other), each edge
  moved by Gaussian noise of sigma 2 % of the box's width (x) or height (y);
- score: uniform in [0.80, 0.95] per detection, minus --score-drop x (1 - visible), clipped to [0, 1]: a half
  hidden person scores about 0.62, below ByteTrack's 0.6-0.7 thresholds for its first association stage.
The order of the detections within a frame is shuffled.

Trackers:
- library, timestamps: `ByteTrackTracker()` with every default, each frame's presentation time passed;
- library, no timestamps: the same, one `update` per frame (the library's fixed-rate mode, `frame_rate` 30);
- project, as translate-video runs it: `make_tracker(25, 0.7)` through `track()`, fed every detection down to
  `track_threshold` (0.1; translate-video builds its detector with that threshold, see
  stages/translate/video_settings.py);
- project, fed only >= 0.7: the same tracker fed only what the daemon's detector keeps (`detect.score_threshold`),
  the first design, which this bench turned down: ByteTrack's second stage then never sees a weak detection.

Scoring, per seed: each frame, ground-truth persons are matched to the tracked detections (track id >= 0) by IoU >=
0.5 on the person's visible box (what a detector can box), Hungarian (scipy). An ID switch: a person matched to a
track id other than the one it was last matched to. A fragmentation: a person's matching interrupted and resumed
later. Coverage: the share of all ground-truth boxes (missed ones included) matched to a track. "Swapped": seeds
where some person ends the clip on a track that the other person started on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from humanstyle.stages.translate.tracking import make_tracker, track  # noqa: E402
from humanstyle.stages.translate.video_settings import VIDEO_DEFAULTS  # noqa: E402

CLIP = ROOT / "tests" / "data" / "video" / "crossing.json"
PROJECT_THRESHOLD = 0.7  # detect.score_threshold's default (stages/settings.py)
MATCH_IOU = 0.5


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (n,4) with every box of b (m,4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def detections(truth: list[list[dict]], seed: int, miss_below: float, score_drop: float) -> list[tuple]:
    """Per frame (boxes (n,4), scores (n,)) as a detector would report the ground truth (see the docstring)."""
    rng = np.random.default_rng(seed)
    frames = []
    for people in truth:
        boxes, scores = [], []
        for person in people:
            # Draw the noise for every person every frame, so a miss does not shift the other draws.
            noise, base = rng.normal(0.0, 0.02, 4), rng.uniform(0.80, 0.95)
            if person["visible"] < miss_below or person["visible_box"] is None:
                continue
            x1, y1, x2, y2 = person["visible_box"]
            w, h = x2 - x1, y2 - y1
            boxes.append([x1 + noise[0] * w, y1 + noise[1] * h, x2 + noise[2] * w, y2 + noise[3] * h])
            scores.append(float(np.clip(base - score_drop * (1.0 - person["visible"]), 0.0, 1.0)))
        order = rng.permutation(len(boxes))
        frames.append((np.asarray(boxes, np.float32).reshape(-1, 4)[order], np.asarray(scores, np.float32)[order]))
    return frames


def run_library(frames: list[tuple], fps: float, timestamps: bool) -> list[tuple]:
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker()
    out = []
    for t, (boxes, scores) in enumerate(frames):
        result = tracker.update(sv.Detections(xyxy=boxes, confidence=scores), timestamp=t / fps if timestamps else None)
        out.append((np.asarray(result.xyxy, np.float32).reshape(-1, 4), np.asarray(result.tracker_id, np.int64)))
    return out


def run_project(frames: list[tuple], fps: float, keep_at: float) -> list[tuple]:
    tracker = make_tracker(fps, PROJECT_THRESHOLD)
    out = []
    for t, (boxes, scores) in enumerate(frames):
        boxes, scores = boxes[scores >= keep_at], scores[scores >= keep_at]
        out.append((boxes, track(tracker, boxes, scores, t / fps)))
    return out


def score(truth: list[list[dict]], tracked: list[tuple]) -> dict:
    people = sorted({p["id"] for frame in truth for p in frame})
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    was_matched = {p: False for p in people}
    gap_open = {p: False for p in people}
    switches = fragmentations = covered = total = 0
    for frame, (boxes, ids) in zip(truth, tracked, strict=True):
        keep = ids >= 0
        boxes, ids = boxes[keep], ids[keep]
        gt = [p for p in frame if p["visible_box"] is not None]
        total += len(frame)
        matched = {}
        if gt and len(boxes):
            overlap = iou(np.asarray([p["visible_box"] for p in gt], np.float32), boxes)
            for r, c in zip(*linear_sum_assignment(overlap, maximize=True), strict=True):
                if overlap[r, c] >= MATCH_IOU:
                    matched[gt[r]["id"]] = int(ids[c])
        for pid in people:
            if pid in matched:
                covered += 1
                if pid in last and matched[pid] != last[pid]:
                    switches += 1
                if gap_open[pid]:
                    fragmentations += 1
                    gap_open[pid] = False
                first.setdefault(pid, matched[pid])
                last[pid] = matched[pid]
                was_matched[pid] = True
            elif was_matched[pid]:
                gap_open[pid] = True
    swapped = any(last.get(p) is not None and last[p] == first.get(q) for p in people for q in people if p != q)
    return {"id_switches": switches, "fragmentations": fragmentations, "coverage": covered / total,
            "swapped": swapped, "ids_used": len(set(first.values()) | set(last.values()))}


def bench(truth: list[list[dict]], fps: float, seeds: int, miss_below: float, score_drop: float) -> dict:
    runs = {
        "library, timestamps": lambda f: run_library(f, fps, timestamps=True),
        "library, no timestamps": lambda f: run_library(f, fps, timestamps=False),
        "project, as translate-video": lambda f: run_project(f, fps, keep_at=VIDEO_DEFAULTS.track_threshold),
        f"project, fed only >= {PROJECT_THRESHOLD}": lambda f: run_project(f, fps, keep_at=PROJECT_THRESHOLD),
    }
    per_seed = {name: [] for name in runs}
    for seed in range(seeds):
        frames = detections(truth, seed, miss_below, score_drop)
        for name, run in runs.items():
            per_seed[name].append(score(truth, run(frames)))
    summary = {}
    for name, rows in per_seed.items():
        summary[name] = {
            "id_switches_mean": round(float(np.mean([r["id_switches"] for r in rows])), 3),
            "seeds_with_switch": sum(r["id_switches"] > 0 for r in rows),
            "seeds_swapped": sum(r["swapped"] for r in rows),
            "fragmentations_mean": round(float(np.mean([r["fragmentations"] for r in rows])), 3),
            "coverage_mean": round(float(np.mean([r["coverage"] for r in rows])), 4),
            "coverage_min": round(float(np.min([r["coverage"] for r in rows])), 4),
            "per_seed": rows,
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--miss-below", type=float, nargs="+", default=[0.3, 0.5],
                        help="visible fraction under which the occluded person is not detected")
    parser.add_argument("--score-drop", type=float, nargs="+", default=[0.5, 0.25], help="score lost at full occlusion")
    parser.add_argument("--smoke", action="store_true", help="one seed, one miss threshold: seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tracking.json")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.miss_below, args.score_drop = 1, args.miss_below[:1], args.score_drop[:1]
    clip = json.loads(CLIP.read_text())
    truth, fps = clip["frames"], float(clip["fps"])
    visible = np.array([p["visible"] for frame in truth for p in frame if p["id"] != clip["front"]])
    report = {"clip": str(CLIP.relative_to(ROOT)), "frames": len(truth), "fps": fps, "seeds": args.seeds,
              "match_iou": MATCH_IOU, "project_threshold": PROJECT_THRESHOLD,
              "occluded_frames": {"visible<1": int((visible < 1).sum()), "visible<0.5": int((visible < 0.5).sum()),
                                  "visible<0.3": int((visible < 0.3).sum())},
              "runs": {}}
    start = time.perf_counter()
    for miss_below, drop in itertools.product(args.miss_below, args.score_drop):
        summary = bench(truth, fps, args.seeds, miss_below, drop)
        report["runs"][f"miss_below={miss_below} score_drop={drop}"] = summary
        print(f"\nmissed below visible {miss_below}, score - {drop} x hidden; {args.seeds} seeds, {len(truth)} frames")
        print(f"{'tracker':34} {'ID sw/seed':>10} {'seeds w/ sw':>11} {'swapped':>7} {'frag/seed':>9} "
              f"{'coverage':>8} {'min':>6}")
        for name, s in summary.items():
            print(f"{name:34} {s['id_switches_mean']:>10.2f} {s['seeds_with_switch']:>11} {s['seeds_swapped']:>7} "
                  f"{s['fragmentations_mean']:>9.2f} {s['coverage_mean']:>8.3f} {s['coverage_min']:>6.3f}")
    report["seconds"] = round(time.perf_counter() - start, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
