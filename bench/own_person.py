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

Then the same two choices among the people a real multi-person model finds in the patch, with its own person
scores: MoveNet MultiPose Lightning (stored on the crowded cases by tests/data/views/build.py). A found person is
the patch's own person when its keypoints lie closer to the own person's annotated keypoints than to any annotated
neighbour's (median distance over the annotated points inside the patch) and within OWN_DISTANCE of the patch
side; otherwise it is somebody else. Counted at several person-score cuts, since MoveNet's scores are not Keypoint
R-CNN's.
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


OWN_DISTANCE = 0.1  # median keypoint distance, as a share of the patch side
PERSON_SCORE_CUTS = (0.1, 0.2, 0.3)


def is_own(found: np.ndarray, case: dict) -> bool:
    """Whether found keypoints (17, 3) are the case's own person's rather than a neighbour's or nobody's."""
    w, h = case["size"]

    def distance(truth: np.ndarray) -> float:
        # Only points the model could see: labelled and inside the patch (a legs crop's head is not in it).
        seen = (truth[:, 2] > 0) & (truth[:, 0] >= 0) & (truth[:, 0] <= w) & (truth[:, 1] >= 0) & (truth[:, 1] <= h)
        if seen.sum() < 3:
            return np.inf
        return float(np.median(np.hypot(*(found[seen, :2] - truth[seen, :2]).T)))

    own = distance(np.asarray(case["keypoints"], float))
    neighbours = [distance(np.asarray(o["keypoints"], float)) for o in case["others"] if o["keypoints"]]
    return own <= OWN_DISTANCE * max(w, h) and all(own < d for d in neighbours)


def real_model(cases: list[dict], min_overlap: float) -> dict:
    """By score against by overlap among the people MoveNet MultiPose finds, per person-score cut."""
    out = {}
    for cut in PERSON_SCORE_CUTS:
        c = {"patches": 0, "nobody_found": 0, "by_score_own": 0, "by_overlap_own": 0, "by_overlap_other": 0,
             "by_overlap_none": 0, "own_found": 0}
        for case in cases:
            people = [p for p in case["multipose"] if p["score"] >= cut]
            c["patches"] += 1
            if not people:
                c["nobody_found"] += 1
                continue
            own = [is_own(np.asarray(p["keypoints"], float), case) for p in people]
            scores = np.array([p["score"] for p in people])
            by_overlap = choose_person(np.array([p["box"] for p in people]), scores, case["box"], min_overlap)
            c["own_found"] += any(own)
            c["by_score_own"] += own[int(np.argmax(scores))]
            if by_overlap is None:
                c["by_overlap_none"] += 1
            else:
                c["by_overlap_own" if own[by_overlap] else "by_overlap_other"] += 1
        out[str(cut)] = c
    return out


def print_real_model(results: dict, min_overlap: float) -> None:
    print("\nMoveNet MultiPose Lightning on the same patches (real person scores), per person-score cut:")
    print(f"{'cut':>5}{'found sb':>10}{'own among':>11}{'score: own':>12}{'overlap: own':>14}{'other':>7}{'none':>6}")
    for cut, c in results.items():
        print(f"{cut:>5}{c['patches'] - c['nobody_found']:>10}{c['own_found']:>11}{c['by_score_own']:>12}"
              f"{c['by_overlap_own']:>14}{c['by_overlap_other']:>7}{c['by_overlap_none']:>6}")
    print(f"(overlap: IoU >= {min_overlap} with the cut box; 'none' = rejected as no_matching_person)")


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
    report = {"min_overlap": min_overlap, "score_stand_in": "most keypoints inside the patch", **counts}
    found = [c for c in cases if "multipose" in c]
    if found:
        report["movenet_multipose"] = {"patches": len(found), "own_distance": OWN_DISTANCE,
                                       "by_person_score_cut": real_model(found, min_overlap)}
        print_real_model(report["movenet_multipose"]["by_person_score_cut"], min_overlap)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
