"""Add the daemon's own keypoint model to the view development set: Keypoint R-CNN exactly as the classify stage
builds it (``stages.classify.build_estimator`` on a config), run on every patch with the patch's person box as its
target (the own-person choice), as ``keypoint_rcnn`` cases of ``cases.json`` (earlier ones are replaced).

    .venv/bin/python tests/data/views/keypoint_rcnn.py --super-gradients SG --cvpr19 CV --litehrnet LH \\
        [--config config.toml] [--weights DEFAULT|PATH.pth] [--cases tests/data/views/cases.json]

Run it in the project's venv (not MediaPipe's), with the sources build.py takes. It needs pretrained weights:
torchvision's COCO Keypoint R-CNN in the torch hub cache ("DEFAULT") or a .pth file; without them it stops with the
daemon's own message. Random weights ("none") are refused: they would write noise into the set. Confidences are
the daemon's (``keypoint_confidence``: 0.5 = visible), so no calibration is needed. Then ``python bench/views.py``
scores the rules on it as one more keypoint source.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build  # noqa: E402

SOURCE = "keypoint_rcnn"


def keypoint_rcnn_cases(cases: list[dict], patches: dict[str, np.ndarray], estimator) -> list[dict]:
    """One case per patch in `patches` (crop id -> 256 x 256 BGR patch), copying the fields its MediaPipe case has
    (every patch has one), with the keypoints the estimator gives for the patch's own person, or null and the
    reason (`no_person`, `no_matching_person`) in `keypoints_missing`."""
    base = {build.crop_of(c): c for c in cases if c["keypoints_from"] == "mediapipe"}
    crops = [crop for crop in patches if crop in base]
    found = estimator.estimate_own([patches[c] for c in crops], [base[c]["box"] for c in crops])
    out = []
    for crop, (result, reason) in zip(crops, found, strict=True):
        case = {**base[crop], "id": f"{crop}.{SOURCE}", "keypoints_from": SOURCE,
                "keypoints": None if result is None else build._r(np.asarray(result.keypoints, dtype=np.float64))}
        if reason:
            case["keypoints_missing"] = reason
        out.append(case)
    return out


def main(argv: list[str] | None = None) -> int:
    from humanstyle.daemon.config import load
    from humanstyle.models.weights import choice_kind
    from humanstyle.stages.classify import build_estimator
    from humanstyle.stages.settings import StageFatal

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--super-gradients", type=Path, required=True)
    ap.add_argument("--cvpr19", type=Path, required=True)
    ap.add_argument("--litehrnet", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None, help="daemon config whose [classify] is used")
    ap.add_argument("--weights", default=None, help="override classify.weights: DEFAULT or a .pth path")
    ap.add_argument("--cases", type=Path, default=HERE / "cases.json")
    args = ap.parse_args(argv)

    settings = load(args.config)
    if args.weights is not None:
        settings = dataclasses.replace(settings, classify=dataclasses.replace(settings.classify, weights=args.weights))
    if choice_kind(settings.classify.weights) == "none":
        raise SystemExit('classify.weights = "none": random weights would write noise into the dev set')
    try:
        estimator = build_estimator(settings)
    except StageFatal as exc:
        raise SystemExit(str(exc)) from None
    doc = json.loads(args.cases.read_text())
    wanted = {build.crop_of(c) for c in doc["cases"]}
    people = build.load_people(args.super_gradients, args.cvpr19, args.litehrnet)
    patches = {c.crop_id: c.patch for c in build.cut_crops(people) if c.crop_id in wanted}
    new = keypoint_rcnn_cases(doc["cases"], patches, estimator)
    doc["cases"] = [c for c in doc["cases"] if c["keypoints_from"] != SOURCE] + new
    doc[SOURCE] = {"weights": str(settings.classify.weights), "config": str(args.config or "built-in defaults"),
                   "chosen_by": "box overlap with the patch's person box (classify.min_person_overlap)"}
    args.cases.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{len(new)} {SOURCE} cases, {sum(c['keypoints'] is None for c in new)} without a person",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
