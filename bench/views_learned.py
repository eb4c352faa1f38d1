"""Are the view rules the limit? A learned baseline for their hardest decision, front or back, on the same keypoints.

    python bench/views_learned.py [--cases tests/data/views/cases.json] [--out bench/results/views_learned.json]

A logistic regression (class-balanced, L2) on left/right layout features of the keypoints of every labelled view
where the keypoint model found somebody, cross-validated in five folds of people (crc32 of the person id), so no
person is scored by a model that saw them. It decides every patch; abstaining when its probability is within a
margin of 0.5 trades patches for fewer wrong calls, like the rules' `conflicting_orientation` and `side_view`. The
rules' own figures are on the same patches: wrong orientation among the patches they keep.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.views import dev_set_parser, predict, write_report  # noqa: E402
from humanstyle.daemon.config import ClassifySettings  # noqa: E402
from humanstyle.stages.classify import REJECTED  # noqa: E402

# COCO order: eyes, ears, shoulders, elbows, wrists, hips, knees, ankles as (left, right).
SIDES = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
FOLDS = 5
MARGINS = (0.0, 0.2, 0.35, 0.45)


def features(keypoints: np.ndarray, min_confidence: float) -> np.ndarray:
    """Per left/right pair: signed horizontal gap (in person extents), its sign and which of the two are seen; the
    nose's offset from the shoulders' middle; the face keypoints' confidences."""
    seen = keypoints[:, 2] >= min_confidence
    pts = keypoints[seen, :2]
    extent = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0) if len(pts) else 1.0
    out: list[float] = []
    for left, right in SIDES:
        both = bool(seen[left] and seen[right])
        gap = (keypoints[left, 0] - keypoints[right, 0]) / extent if both else 0.0
        out += [gap, float(np.sign(gap)), float(both), float(seen[left]), float(seen[right])]
    shoulders = bool(seen[5] and seen[6])
    middle = (keypoints[5, 0] + keypoints[6, 0]) / 2
    out += [float(seen[0]), (keypoints[0, 0] - middle) / extent if seen[0] and shoulders else 0.0]
    out += list(np.clip(keypoints[:5, 2], 0.0, 1.0))
    return np.asarray(out)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 3000, rate: float = 0.5):
    """Class-balanced logistic regression by gradient descent; returns a function giving P(back)."""
    mean, std = x.mean(0), x.std(0) + 1e-9

    def design(a: np.ndarray) -> np.ndarray:
        return np.c_[(a - mean) / std, np.ones(len(a))]

    z, w = design(x), np.zeros(x.shape[1] + 1)
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        w -= rate * (z.T @ (weight * (p - y)) / len(y) + l2 * np.r_[w[:-1], 0.0])
    return lambda a: 1 / (1 + np.exp(-design(a) @ w))


def main(argv: list[str] | None = None) -> int:
    args = dev_set_parser(__doc__, "views_learned.json").parse_args(argv)
    min_confidence = ClassifySettings().min_keypoint_confidence
    cases = [c for c in json.loads(args.cases.read_text())["cases"]
             if c["label"] != REJECTED and c["keypoints"] is not None]
    x = np.stack([features(np.asarray(c["keypoints"], np.float64), min_confidence) for c in cases])
    back = np.array([c["label"].endswith("BACK") for c in cases])
    fold = np.array([zlib.crc32(c["person"].encode()) % FOLDS for c in cases])
    p_back = np.zeros(len(cases))
    for k in range(FOLDS):
        p_back[fold == k] = fit(x[fold != k], back[fold != k].astype(float))(x[fold == k])

    rules = [predict(c, min_confidence)[0] for c in cases]
    kept = np.array([r != REJECTED for r in rules])
    rules_back = np.array([r.endswith("BACK") for r in rules])
    rules_wrong = int((kept & (rules_back != back)).sum())
    report = {"views": len(cases), "back_views": int(back.sum()),
              "rules": {"decided": int(kept.sum()), "wrong": rules_wrong,
                        "back_recall": float((kept & rules_back & back).sum() / back.sum()),
                        "front_recall": float((kept & ~rules_back & ~back).sum() / (~back).sum())},
              "learned": []}
    print(f"{len(cases)} labelled views with keypoints ({int(back.sum())} back), {FOLDS} folds by person")
    print(f"{'':<32}{'decided':>8}{'wrong':>7}{'wrong %':>9}{'back rec':>10}{'front rec':>10}")
    r = report["rules"]
    print(f"{'rules (kept patches)':<32}{r['decided']:>8}{r['wrong']:>7}{100 * r['wrong'] / r['decided']:>9.2f}"
          f"{r['back_recall']:>10.3f}{r['front_recall']:>10.3f}")
    called_back = p_back >= 0.5
    for margin in MARGINS:
        decided = np.abs(p_back - 0.5) >= margin
        wrong = int((decided & (called_back != back)).sum())
        row = {"abstain_margin": margin, "decided": int(decided.sum()), "wrong": wrong,
               "back_recall": float((decided & called_back & back).sum() / back.sum()),
               "front_recall": float((decided & ~called_back & ~back).sum() / (~back).sum())}
        report["learned"].append(row)
        print(f"{f'learned, abstain within {margin:.2f}':<32}{row['decided']:>8}{wrong:>7}"
              f"{100 * wrong / max(row['decided'], 1):>9.2f}{row['back_recall']:>10.3f}{row['front_recall']:>10.3f}")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
