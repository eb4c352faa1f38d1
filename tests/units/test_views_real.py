"""The view rules on real people (tests/data/views, see its SOURCES.md): the quality bench/views.py measures must not
slip. Floors sit just under what the rules reach today (bench/results/views.json), so a change that costs real
patches fails here even when every hand-made case in test_classify_rules.py still passes. Each keypoint source has
its own floors: the sources differ a lot (annotations, MediaPipe, MoveNet), and a pooled figure could hide a loss on
one of them behind a gain on another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.views import plain_rules, predict, score

CASES = Path(__file__).resolve().parents[1] / "data" / "views" / "cases.json"
SOURCES = ("annotation", "mediapipe", "movenet")
# source: (balanced accuracy, FULL-BODY-BACK recall, HEAD-AND-SHOULDER-BACK recall), on the patches where that
# source has keypoints (MediaPipe finds nobody on some; the others always give keypoints).
FLOORS = {"annotation": (0.90, 0.78, 0.95), "mediapipe": (0.79, 0.78, 0.72), "movenet": (0.82, 0.74, 0.86)}


@pytest.fixture(scope="module")
def results():
    cases = json.loads(CASES.read_text())["cases"]
    predictions = [predict(c, 0.5) for c in cases]
    found = [i for i, c in enumerate(cases) if c["keypoints"] is not None]
    by_source = {}
    for source in SOURCES:
        idx = [i for i in found if cases[i]["keypoints_from"] == source]
        by_source[source] = score([cases[i] for i in idx], [predictions[i] for i in idx])
    return score(cases, predictions), by_source


def test_every_keypoint_source_is_scored(results):
    _, by_source = results
    assert all(by_source[s]["cases"] >= 500 for s in SOURCES)


def test_balanced_accuracy_on_real_people(results):
    everything, by_source = results
    assert everything["balanced_accuracy"] >= 0.82
    for source, (floor, _, _) in FLOORS.items():
        assert by_source[source]["balanced_accuracy"] >= floor, source


def test_back_views_are_kept(results):
    _, by_source = results
    for source, (_, full_body, head_and_shoulder) in FLOORS.items():
        per_class = by_source[source]["per_class"]
        assert per_class["FULL-BODY-BACK"]["recall"] >= full_body, source
        assert per_class["HEAD-AND-SHOULDER-BACK"]["recall"] >= head_and_shoulder, source


def test_front_and_back_are_rarely_swapped(results):
    everything, by_source = results
    assert everything["swap_rate_of_kept"] <= 0.02
    assert all(by_source[s]["swap_rate_of_kept"] <= 0.02 for s in SOURCES)
    assert everything["per_class"]["REJECTED"]["recall"] >= 0.9


def test_the_plain_baseline_reproduces_its_figures():
    """The calibration anchor of issue #28 (bench/views.py's plain rules) gives the figures the issue states, so
    the comparison in bench/README.md is against the same baseline."""
    cases = json.loads(CASES.read_text())["cases"]
    expected = {"annotation": 0.885, "mediapipe": 0.733, "movenet": 0.855}
    for source, balanced in expected.items():
        chosen = [c for c in cases if c["keypoints_from"] == source]
        result = score(chosen, [plain_rules(c, 0.5) for c in chosen])
        assert result["balanced_accuracy"] == pytest.approx(balanced, abs=0.0005), source
