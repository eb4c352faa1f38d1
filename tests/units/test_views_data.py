"""Sanity checks on the view development set (tests/data/views/cases.json, see tests/data/views/SOURCES.md)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from humanstyle.stages.detect import DEFAULT_MARGIN, square_box
from humanstyle.stages.vocabulary import KEYPOINT_NAMES, LABELS

HERE = Path(__file__).resolve().parents[1] / "data" / "views"


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads((HERE / "cases.json").read_text())


def test_format_and_minimum_counts(doc: dict) -> None:
    assert doc["format"] == 1
    assert tuple(doc["keypoint_order"]) == KEYPOINT_NAMES
    cases = doc["cases"]
    labels = Counter(c["label"] for c in cases)
    assert len(cases) >= 500
    assert len({c["person"] for c in cases}) >= 150
    assert labels["FULL-BODY-BACK"] + labels["HEAD-AND-SHOULDER-BACK"] >= 80
    assert labels["FULL-BODY-BACK"] >= 35 and labels["HEAD-AND-SHOULDER-BACK"] >= 35
    assert labels["REJECTED"] >= 100 and labels["FULL-BODY-FRONT"] >= 35 and labels["HEAD-AND-SHOULDER-FRONT"] >= 35
    assert len({c["id"] for c in cases}) == len(cases)


def test_every_case_is_well_formed(doc: dict) -> None:
    sources = (HERE / "SOURCES.md").read_text()
    for case in doc["cases"]:
        assert case["label"] in LABELS, case["id"]
        assert case["keypoints_from"] in ("annotation", "mediapipe", "movenet", "keypoint_rcnn"), case["id"]
        assert f"`{case['source']}`" in sources, case["source"]
        width, height = case["size"]
        assert width > 0 and height > 0
        kp = case["keypoints"]
        assert kp is None or (len(kp) == 17 and all(len(p) == 3 for p in kp)), case["id"]
        if kp is not None:
            assert all(0.0 <= p[2] <= 1.0 for p in kp), case["id"]
        if case["keypoints_from"] == "annotation":
            assert kp is not None and len(case["visibility"]) == 17
        for other in case["others"]:
            assert len(other["box"]) == 4
            assert other["keypoints"] is None or len(other["keypoints"]) == 17


def test_every_crop_has_both_kinds_of_case_where_annotated(doc: dict) -> None:
    kinds: dict[str, set[str]] = {}
    for case in doc["cases"]:
        kinds.setdefault(case["id"].rsplit(".", 1)[0], set()).add(case["keypoints_from"])
    assert all("mediapipe" in k and "movenet" in k for k in kinds.values())
    assert sum("annotation" in k for k in kinds.values()) >= 250


def test_movenet_scores_are_calibrated_against_the_annotations(doc: dict) -> None:
    """MoveNet's scores are mapped so that its cut for "visible", found against the annotated keypoints of the
    same patches, reads as 0.5 (see build.py): at 0.5 most annotated points count as seen and most unannotated ones
    do not, as for the annotations themselves."""
    assert 0.05 <= doc["movenet"]["visible_score"] <= 0.95
    annotated = {c["id"].rsplit(".", 1)[0]: c for c in doc["cases"] if c["keypoints_from"] == "annotation"}
    hits = misses = false = quiet = 0
    for case in doc["cases"]:
        crop = case["id"].rsplit(".", 1)[0]
        if case["keypoints_from"] != "movenet" or crop not in annotated:
            continue
        w, h = case["size"]
        for (_, _, c), (x, y, truth) in zip(case["keypoints"], annotated[crop]["keypoints"], strict=True):
            labelled = truth > 0 and 0 <= x < w and 0 <= y < h  # where the annotation puts it
            seen = c >= 0.5
            hits += labelled and seen
            misses += labelled and not seen
            false += seen and not labelled
            quiet += not seen and not labelled
    assert hits / (hits + misses) >= 0.85 and quiet / (quiet + false) >= 0.8


def test_crop_squares_follow_the_detector_rule(doc: dict) -> None:
    """crop_box is the daemon's square around the person's box (box is stored in patch pixels)."""
    checked = 0
    for case in doc["cases"]:
        if case["crop"] != "full" or case["keypoints_from"] != "mediapipe":  # one case per patch
            continue
        x0, y0, x1, y1 = case["crop_box"]
        scale = case["size"][0] / (x1 - x0)
        bx = [x0 + case["box"][0] / scale, y0 + case["box"][1] / scale,
              x0 + case["box"][2] / scale, y0 + case["box"][3] / scale]
        again = square_box(bx, DEFAULT_MARGIN)
        assert max(abs(a - b) for a, b in zip(again, case["crop_box"], strict=True)) <= 1, case["id"]
        checked += 1
    assert checked >= 150


def test_labels_file_matches_the_cases(doc: dict) -> None:
    with (HERE / "labels.csv").open(newline="") as fh:
        labels = {row["crop_id"]: row["label"] for row in csv.DictReader(fh)}
    for case in doc["cases"]:
        assert labels[case["id"].rsplit(".", 1)[0]] == case["label"], case["id"]


def test_crowded_patches_carry_the_people_multipose_found(doc: dict) -> None:
    crowded = [c for c in doc["cases"] if c["keypoints_from"] == "annotation" and c["others"]]
    assert doc["multipose"]["patches"] == len(crowded) >= 100
    assert all(c.get("multipose") is not None for c in crowded)
    assert not any("multipose" in c for c in doc["cases"] if c not in crowded)
    found = [p for c in crowded for p in c["multipose"]]
    assert len(found) >= len(crowded)  # most crowded patches show somebody to it
    for person in found:
        assert len(person["box"]) == 4 and person["box"][0] < person["box"][2] and person["box"][1] < person["box"][3]
        assert doc["multipose"]["people_kept_from_score"] <= person["score"] <= 1.0
        assert len(person["keypoints"]) == 17 and all(0.0 <= p[2] <= 1.0 for p in person["keypoints"])
