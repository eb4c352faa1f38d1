"""The view rules on real people (tests/data/views, see its SOURCES.md): the quality bench/views.py measures must not
slip. Floors sit just under what the rules reach today (bench/results/views.json), so a change that costs real
patches fails here even when every hand-made case in test_classify_rules.py still passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.views import predict, score

CASES = Path(__file__).resolve().parents[1] / "data" / "views" / "cases.json"


@pytest.fixture(scope="module")
def results():
    cases = json.loads(CASES.read_text())["cases"]
    predictions = [predict(c, 0.5) for c in cases]
    found = [i for i, c in enumerate(cases) if c["keypoints"] is not None]
    return score(cases, predictions), score([cases[i] for i in found], [predictions[i] for i in found])


def test_balanced_accuracy_on_real_people(results):
    everything, with_keypoints = results
    assert everything["balanced_accuracy"] >= 0.83
    assert with_keypoints["balanced_accuracy"] >= 0.86


def test_back_views_are_kept(results):
    _, with_keypoints = results
    for label in ("FULL-BODY-BACK", "HEAD-AND-SHOULDER-BACK"):
        assert with_keypoints["per_class"][label]["recall"] >= 0.78, label


def test_front_and_back_are_rarely_swapped(results):
    everything, _ = results
    assert everything["swap_rate_of_kept"] <= 0.02
    assert everything["per_class"]["REJECTED"]["recall"] >= 0.9
