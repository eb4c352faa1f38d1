"""Whose keypoints a crowded patch gets: the person it was cut around, or the best-scoring person in it.

    python bench/own_person.py [--cases tests/data/views/cases.json] [--out bench/results/own_person.json]

On the real dev set's crowded patches (annotated patches whose square also holds other annotated people, with
their boxes and keypoints in patch pixels), compare two choices of person:

- by score, as the classifier did (Keypoint R-CNN's `keep=1`). No score exists for annotations, so a stand-in
  is used: the person showing the most keypoints inside the patch (ties: the larger box area inside it), the one
  a detector is most sure of. The stand-in is stated in the output; it is not Keypoint R-CNN;
- by overlap with the box the patch was cut around (`models.detection.choose_person`, IoU >= the config's
  `classify.min_person_overlap`).

For each, how often it is the patch's own person, and how often choosing wrongly changes the view the rules give.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.views import dev_set_parser, write_report  # noqa: E402
from humanstyle.daemon.config import ClassifySettings  # noqa: E402
from humanstyle.models.detection import box_iou, choose_person  # noqa: E402
from humanstyle.stages.classify import classify_keypoints  # noqa: E402


def inside_count(kp: np.ndarray, size: tuple[int, int]) -> int:
    w, h = size
    return int(((kp[:, 0] >= 0) & (kp[:, 0] <= w) & (kp[:, 1] >= 0) & (kp[:, 1] <= h) & (kp[:, 2] > 0)).sum())


def area_inside(box: np.ndarray, size: tuple[int, int]) -> float:
    w, h = size
    x1, y1, x2, y2 = np.clip(box, 0, [w, h, w, h])
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def main(argv: list[str] | None = None) -> int:
    args = dev_set_parser(__doc__, "own_person.json").parse_args(argv)
    min_overlap = ClassifySettings().min_person_overlap
    cases = [c for c in json.loads(args.cases.read_text())["cases"]
             if c["keypoints_from"] == "annotation" and c["others"] and c["keypoints"] is not None]
    counts = {"crowded_patches": len(cases), "by_score_own": 0, "by_overlap_own": 0, "by_overlap_none": 0,
              "choice_differs": 0, "view_changes_when_wrong": 0, "neighbour_overlap_at_least_min": 0}
    worst: list[float] = []  # per patch, the largest IoU of a neighbour's box with the cut box
    for case in cases:
        size = tuple(case["size"])
        people = [(np.asarray(case["keypoints"], float), np.asarray(case["box"], float))]
        # Crowd boxes annotated without keypoints still stand in the way as people a detector could pick.
        people += [(np.asarray(o["keypoints"] if o["keypoints"] else np.zeros((17, 3)), float),
                    np.asarray(o["box"], float)) for o in case["others"]]
        boxes = np.stack([b for _, b in people])
        stand_in = [(inside_count(kp, size), area_inside(b, size)) for kp, b in people]
        by_score = max(range(len(people)), key=lambda i: stand_in[i])
        # The detector's box is the own person's box; the people "found" are every annotated person.
        scores = np.array([s[0] + s[1] * 1e-9 for s in stand_in])
        by_overlap = choose_person(boxes, scores, people[0][1], min_overlap)
        counts["by_score_own"] += by_score == 0
        counts["by_overlap_own"] += by_overlap == 0
        counts["by_overlap_none"] += by_overlap is None
        counts["choice_differs"] += by_score != by_overlap
        neighbour_iou = float(box_iou(boxes[1:], people[0][1]).max())
        worst.append(neighbour_iou)
        counts["neighbour_overlap_at_least_min"] += neighbour_iou >= min_overlap
        if by_score != 0:
            own = classify_keypoints(people[0][0], size)
            other = classify_keypoints(people[by_score][0], size)
            counts["view_changes_when_wrong"] += own != other
    n = max(1, counts["crowded_patches"])
    print(f"crowded real patches (annotated, other people inside the square): {counts['crowded_patches']}")
    print(f"{'choice':<44}{'own person':>12}")
    print(f"{'by score (stand-in: most keypoints shown)':<44}"
          f"{counts['by_score_own']:>8} ({counts['by_score_own'] / n:.0%})")
    print(f"{f'by overlap with the cut box (IoU >= {min_overlap})':<44}"
          f"{counts['by_overlap_own']:>8} ({counts['by_overlap_own'] / n:.0%})")
    print(f"the two choices differ: {counts['choice_differs']}; when by-score is wrong the view changes in "
          f"{counts['view_changes_when_wrong']}; a neighbour's box overlaps the cut box by >= {min_overlap} IoU in "
          f"{counts['neighbour_overlap_at_least_min']}")
    if worst:
        counts["neighbour_iou_median"] = round(float(np.median(worst)), 3)
        counts["neighbour_iou_max"] = round(float(np.max(worst)), 3)
        print(f"largest neighbour IoU with the cut box: median {counts['neighbour_iou_median']}, "
              f"max {counts['neighbour_iou_max']}")
    write_report(args.out, {"min_overlap": min_overlap, "score_stand_in": "most keypoints inside the patch", **counts})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
