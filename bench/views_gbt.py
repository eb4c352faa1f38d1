"""Can a learned decision meet the view goals of issue #28 where the rules do not? Gradient-boosted trees on the
keypoints' geometry, all five labels, against the plain rules and the project's rules on the same cases.

    python bench/views_gbt.py [--cases tests/data/views/cases.json] [--out bench/results/views_gbt.json] [--smoke]

scikit-learn's HistGradientBoostingClassifier (class-balanced weights), cross-validated in five folds of people
(crc32 of the person id, so no person is scored by a model that saw them, whichever keypoint source), trained on
all three keypoint sources together. Features: per keypoint its confidence and whether it is seen; positions
relative to the shoulders' middle in torso lengths; the left/right gaps of every pair; shoulder width over torso;
the lowest knee's and ankle's room to the patch's bottom; the head's room to its top. A case the keypoint model found
nobody in is REJECTED, as the rules do. Abstaining (REJECTED when the most likely label's probability is below a
margin) trades views for fewer wrong calls; each margin is scored like the rules, per keypoint source, with the
goals checked: balanced accuracy >= plain + 0.03, no class's recall more than 0.03 below plain, front/back swaps
<= 1.5 % of kept, on MoveNet balanced accuracy >= 0.88.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.views import dev_set_parser, plain_rules, predict, score, write_report  # noqa: E402
from humanstyle.daemon.config import ClassifySettings  # noqa: E402
from humanstyle.stages.classify import LABELS, REJECTED  # noqa: E402

FOLDS = 5
MARGINS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8)
PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def features(keypoints: np.ndarray, size: tuple[float, float], min_confidence: float) -> np.ndarray:
    width, height = size
    x, y, conf = keypoints[:, 0], keypoints[:, 1], np.clip(np.nan_to_num(keypoints[:, 2]), 0, 1)
    seen = (conf >= min_confidence) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    shoulders = [i for i in (5, 6) if seen[i]]
    hips = [i for i in (11, 12) if seen[i]]
    pts = keypoints[seen, :2]
    extent = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0) if len(pts) else 1.0
    origin = keypoints[shoulders, :2].mean(0) if shoulders else (pts.mean(0) if len(pts) else np.zeros(2))
    torso = float(np.hypot(*(keypoints[hips, :2].mean(0) - origin))) if shoulders and hips else extent / 2
    torso = max(torso, 1.0)
    rel = np.where(seen[:, None], (keypoints[:, :2] - origin) / torso, 0.0)
    gaps = [(x[a] - x[b]) / torso if seen[a] and seen[b] else 0.0 for a, b in PAIRS]
    width_ratio = (abs(x[5] - x[6]) / torso) if seen[5] and seen[6] else 0.0
    knees = [y[i] for i in (13, 14) if seen[i]]
    ankles = [y[i] for i in (15, 16) if seen[i]]
    head = [y[i] for i in range(5) if seen[i]]
    room = [(height - max(knees)) / torso if knees else -1.0, (height - max(ankles)) / torso if ankles else -1.0,
            min(head) / torso if head else -1.0]
    return np.concatenate([conf, seen.astype(float), rel.ravel(), gaps, [width_ratio, len(pts) / 17.0], room])


def main(argv: list[str] | None = None) -> int:
    ap = dev_set_parser(__doc__, "views_gbt.json")
    ap.add_argument("--smoke", action="store_true", help="20 boosting iterations (seconds)")
    args = ap.parse_args(argv)
    from sklearn.ensemble import HistGradientBoostingClassifier

    min_confidence = ClassifySettings().min_keypoint_confidence
    cases = json.loads(args.cases.read_text())["cases"]
    found = [i for i, c in enumerate(cases) if c["keypoints"] is not None]
    x = np.stack([features(np.asarray(cases[i]["keypoints"], np.float64), tuple(cases[i]["size"]), min_confidence)
                  for i in found])
    y = np.array([LABELS.index(cases[i]["label"]) for i in found])
    fold = np.array([zlib.crc32(cases[i]["person"].encode()) % FOLDS for i in found])
    proba = np.zeros((len(found), len(LABELS)))
    for k in range(FOLDS):
        model = HistGradientBoostingClassifier(max_iter=20 if args.smoke else 300, learning_rate=0.05,
                                               max_leaf_nodes=15, l2_regularization=1.0, class_weight="balanced",
                                               random_state=0)
        model.fit(x[fold != k], y[fold != k])
        proba[np.ix_(fold == k, model.classes_)] = model.predict_proba(x[fold == k])

    sources = sorted({c["keypoints_from"] for c in cases})
    rows = {"plain": [plain_rules(c, min_confidence) for c in cases],
            "project rules": [predict(c, min_confidence) for c in cases]}
    for margin in MARGINS:
        preds: list[tuple[str, str | None]] = [(REJECTED, "no_person")] * len(cases)
        for j, i in enumerate(found):
            best = int(np.argmax(proba[j]))
            preds[i] = (REJECTED, "abstain") if proba[j, best] < margin else (LABELS[best], None)
        rows[f"trees, abstain below {margin}"] = preds
    report = {"folds": FOLDS, "smoke": args.smoke, "by_source": {}}
    print(f"{'decision':<30}" + "".join(f"{s:>34}" for s in sources))
    print(f"{'':<30}" + "".join(f"{'BA  worst class vs plain  swaps':>34}" for _ in sources))
    for name, preds in rows.items():
        cells, goals = [], True
        for source in sources:
            idx = [i for i, c in enumerate(cases) if c["keypoints_from"] == source]
            result = score([cases[i] for i in idx], [preds[i] for i in idx])
            plain = score([cases[i] for i in idx], [rows["plain"][i] for i in idx])
            worst = min(result["per_class"][k]["recall"] - plain["per_class"][k]["recall"] for k in LABELS)
            met = (result["balanced_accuracy"] >= plain["balanced_accuracy"] + 0.03 and worst >= -0.03
                   and result["swap_rate_of_kept"] <= 0.015
                   and (source != "movenet" or result["balanced_accuracy"] >= 0.88))
            goals &= met
            report["by_source"].setdefault(source, {})[name] = {
                "balanced_accuracy": result["balanced_accuracy"], "worst_class_vs_plain": worst,
                "swap_rate_of_kept": result["swap_rate_of_kept"], "kept": result["kept"], "goals_met": met,
                "recall": {k: result["per_class"][k]["recall"] for k in LABELS}}
            cells.append(f"{result['balanced_accuracy']:.3f} {worst:+.3f} {100 * result['swap_rate_of_kept']:5.1f} %"
                         + (" ok" if met else "   "))
        print(f"{name:<30}" + "".join(f"{c:>34}" for c in cells) + ("   all goals met" if goals else ""))
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
