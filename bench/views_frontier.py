"""Issue #28's goals against the whole family of the project's view rules: can any setting of them hold?

    python bench/views_frontier.py [--cases tests/data/views/cases.json] [--out bench/results/views_frontier.json]
                                   [--smoke]

The family is stages/classify.py's checks in its order with nine knobs, each ranging over the project's value and
the looser ones that the plain rules or the reason costs (bench/README.md) point to:
- one_shoulder: a view needs both shoulders (the project) or one (the plain rules);
- side: the side-view ratio (shoulder width / torso) below which a view is rejected;
- head_room: how far below the patch top the head must start (0: no check);
- extent: full body from the knees' room to the bottom (the project's "room for the shin", `shin` torso
  lengths), or room OR a visible ankle;
- eye_span, nose_slack: the front call's face-in-profile check (eyes at least eye_span shoulder widths apart in the
  front order, nose between them give or take nose_slack; eye_span < 0 switches the check off; nose_slack None skips
  the nose);
- strong: the profile check only applies when the shoulders' offset is below strong x torso (a strong body layout
  overrides the face);
- cue: the offset (torso lengths) under which a left/right layout abstains.
Per keypoint source it reports how many settings meet every goal (balanced accuracy >= plain + 0.03, no class's
recall more than 0.03 below plain, swaps <= 1.5 % of kept; on MoveNet BA >= 0.88), the best balanced accuracy among
settings that keep swaps <= 1.5 %, the fewest swaps among those reaching plain + 0.03, and the best worst-class gap
at swaps <= 1.5 %. Then why: the keypoints' confidences of front calls on true fronts and on back views, with the
loosest setting.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.views import dev_set_parser, plain_rules, score, write_report  # noqa: E402
from humanstyle.stages import classify as rules  # noqa: E402
from humanstyle.stages import vocabulary as coco  # noqa: E402  (keypoint indices)
from humanstyle.stages.classify import LABELS, REJECTED  # noqa: E402

GRID = {"one_shoulder": [False, True], "side": [0.15, 0.25], "head_room": [0.0, 0.5], "shin": [0.4, 0.55, 0.7],
        "extent": ["shin", "shin_or_ankle"], "eye_span": [-1.0, 0.0, 0.05, 0.1, 0.15],
        "nose_slack": [None, 0.1, 0.25, 0.5], "strong": [0.5, math.inf], "cue": [0.02, 0.05, 0.1]}
SMOKE_GRID = {**{k: v[-1:] for k, v in GRID.items()}, "one_shoulder": [False, True]}
PROJECT = {"one_shoulder": False, "side": 0.25, "head_room": 0.5, "shin": 0.7, "extent": "shin", "eye_span": 0.1,
           "nose_slack": 0.25, "strong": math.inf, "cue": 0.05}
LOOSEST = {**PROJECT, "one_shoulder": True, "side": 0.15, "head_room": 0.0, "eye_span": 0.0, "nose_slack": None}
COS_TILT = math.cos(math.radians(45.0))


def view(kp: np.ndarray, width: float, height: float, k: dict, min_conf: float = 0.5) -> str:
    """The family's label for one person's keypoints (stages/classify.py's order of checks, with the knobs `k`)."""
    x, y, conf = kp[:, 0], kp[:, 1], kp[:, 2]
    with np.errstate(invalid="ignore"):
        vis = np.isfinite(kp).all(axis=1) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height) & (conf >= min_conf)
    both = bool(vis[coco.L_SHOULDER] and vis[coco.R_SHOULDER])
    shoulders = [i for i in (coco.L_SHOULDER, coco.R_SHOULDER) if vis[i]]
    head = [i for i in coco.HEAD if vis[i]]
    if vis.sum() < 3 or not (both or (k["one_shoulder"] and shoulders)) or not head:
        return REJECTED
    shoulder_mid, head_mid = kp[shoulders, :2].mean(0), kp[head, :2].mean(0)
    if y[head].min() < k["head_room"] * (shoulder_mid[1] - head_mid[1]):
        return REJECTED
    hips = [i for i in (coco.L_HIP, coco.R_HIP) if vis[i]]
    sdx = float(x[coco.L_SHOULDER] - x[coco.R_SHOULDER]) if both else math.nan
    sw = float(np.hypot(sdx, y[coco.L_SHOULDER] - y[coco.R_SHOULDER])) if both else math.nan
    if hips:
        down = kp[hips, :2].mean(0) - shoulder_mid
        torso = float(np.hypot(*down))
        upright = torso > 0 and down[1] >= COS_TILT * torso
    else:
        torso = 2.0 * float(np.hypot(*(shoulder_mid - head_mid)))
        level = (sw > 0 and abs(sdx) >= COS_TILT * sw) if both else True
        upright = level and head_mid[1] < shoulder_mid[1]
    if not (torso > 0 and upright) or (both and sw < k["side"] * torso):
        return REJECTED
    body = {_side_cue(sdx, torso, k["cue"])} if both else set()
    if len(hips) == 2:
        body.add(_side_cue(float(x[coco.L_HIP] - x[coco.R_HIP]), torso, k["cue"]))
    body.discard(0)
    if len(body) > 1:
        return REJECTED
    cast = body or ({rules._face_vote(vis)} - {0})
    if not cast:
        return REJECTED
    front = cast.pop() > 0
    if front and both and k["eye_span"] >= 0 and vis[coco.L_EYE] and vis[coco.R_EYE] and abs(sdx) < k["strong"] * torso:
        span = float(x[coco.L_EYE] - x[coco.R_EYE])
        profile = span < k["eye_span"] * sw
        if not profile and vis[coco.NOSE] and k["nose_slack"] is not None:
            t = float(x[coco.NOSE] - x[coco.R_EYE]) / span
            profile = not (-k["nose_slack"] <= t <= 1.0 + k["nose_slack"])
        if profile:
            return REJECTED
    knees = [i for i in (coco.L_KNEE, coco.R_KNEE) if vis[i]]
    room = bool(knees) and height - max(y[i] for i in knees) >= k["shin"] * torso
    ankle = k["extent"] == "shin_or_ankle" and bool(vis[coco.L_ANKLE] or vis[coco.R_ANKLE])
    if len(hips) == 2 and (room or ankle):
        return rules.FULL_BODY_FRONT if front else rules.FULL_BODY_BACK
    return rules.HEAD_AND_SHOULDER_FRONT if front else rules.HEAD_AND_SHOULDER_BACK


def _side_cue(gap: float, torso: float, cue: float) -> int:
    """classify's left/right vote with another abstain width."""
    return 0 if not math.isfinite(gap) or abs(gap) <= cue * torso else rules._side_vote(gap, torso)


def labels(cases: list[dict], knobs: dict) -> list[tuple[str, str | None]]:
    return [(REJECTED, "no_person") if c["keypoints"] is None else
            (view(np.asarray(c["keypoints"], np.float64), *c["size"], knobs), None) for c in cases]


def frontier(cases: list[dict], plain: dict, grid: dict) -> dict:
    rows = []
    for values in itertools.product(*grid.values()):
        knobs = dict(zip(grid, values, strict=True))
        r = score(cases, labels(cases, knobs))
        worst = min(r["per_class"][k]["recall"] - plain["per_class"][k]["recall"] for k in LABELS)
        shown = {k: "inf" if v == math.inf else v for k, v in knobs.items()}  # JSON has no infinity
        rows.append({"knobs": shown, "balanced_accuracy": r["balanced_accuracy"], "worst_class_vs_plain": worst,
                     "swap_rate_of_kept": r["swap_rate_of_kept"]})
    floor = plain["balanced_accuracy"] + 0.03
    safe = [r for r in rows if r["swap_rate_of_kept"] <= 0.015]
    reach = [r for r in rows if r["balanced_accuracy"] >= floor]
    met = [r for r in safe if r["balanced_accuracy"] >= floor and r["worst_class_vs_plain"] >= -0.03]
    return {"rows": rows, "settings": len(rows), "all_goals_met": len(met),
            "best_ba_at_safe_swaps": max(safe, key=lambda r: r["balanced_accuracy"], default=None),
            "fewest_swaps_at_goal_ba": min(reach, key=lambda r: r["swap_rate_of_kept"], default=None),
            "best_worst_class_at_safe_swaps": max(safe, key=lambda r: r["worst_class_vs_plain"], default=None)}


def confidences(cases: list[dict]) -> dict:
    """Face and shoulder confidences of the loosest setting's front calls: true fronts against back views."""
    out = {}
    for (label, _), case in zip(labels(cases, LOOSEST), cases, strict=True):
        if not label.endswith("FRONT") or case["label"] == REJECTED:
            continue
        kp = np.asarray(case["keypoints"], np.float64)
        side = "true front" if case["label"].endswith("FRONT") else "back view"
        row = out.setdefault(side, {"nose": [], "weaker eye": [], "weaker shoulder": []})
        row["nose"].append(kp[coco.NOSE, 2])
        row["weaker eye"].append(min(kp[coco.L_EYE, 2], kp[coco.R_EYE, 2]))
        row["weaker shoulder"].append(min(kp[coco.L_SHOULDER, 2], kp[coco.R_SHOULDER, 2]))
    return {side: {"calls": len(v["nose"]), **{k: {"q10": float(np.quantile(a, 0.1)), "median": float(np.median(a))}
                                                 for k, a in v.items()}} for side, v in out.items()}


def fmt(r: dict | None, key: str, scale: float = 1.0) -> str:
    return "-" if r is None else f"{scale * r[key]:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = dev_set_parser(__doc__, "views_frontier.json")
    ap.add_argument("--smoke", action="store_true", help="4 settings (seconds)")
    args = ap.parse_args(argv)
    cases = json.loads(args.cases.read_text())["cases"]
    grid = SMOKE_GRID if args.smoke else GRID
    report: dict = {"grid": {k: [str(v) for v in vs] for k, vs in grid.items()}, "by_source": {}}
    rows: dict[str, list[dict]] = {}
    for source in sorted({c["keypoints_from"] for c in cases}):
        subset = [c for c in cases if c["keypoints_from"] == source]
        plain = score(subset, [plain_rules(c, 0.5) for c in subset])
        project = score(subset, labels(subset, PROJECT))
        found = frontier(subset, plain, grid)
        found.update(plain_ba=plain["balanced_accuracy"], project_ba=project["balanced_accuracy"],
                     project_swap_rate=project["swap_rate_of_kept"], confidences=confidences(subset))
        rows[source] = found.pop("rows")
        report["by_source"][source] = found
        best, few = found["best_ba_at_safe_swaps"], found["fewest_swaps_at_goal_ba"]
        print(f"{source}: {found['settings']} settings, {found['all_goals_met']} meet every goal; plain BA "
              f"{plain['balanced_accuracy']:.3f}, project {project['balanced_accuracy']:.3f} (swaps "
              f"{100 * project['swap_rate_of_kept']:.1f} %); best BA with swaps <= 1.5 %: "
              f"{fmt(best, 'balanced_accuracy')} (worst class vs plain {fmt(best, 'worst_class_vs_plain')}); "
              f"fewest swaps at BA >= plain + 0.03: {fmt(few, 'swap_rate_of_kept', 100)} %")
        for side, row in found["confidences"].items():
            print(f"    {side:<11} {row['calls']:>4} front calls; " + ", ".join(
                f"{k} q10/median {row[k]['q10']:.2f}/{row[k]['median']:.2f}" for k in ("nose", "weaker eye",
                                                                                      "weaker shoulder")))
    report["no_worse_anywhere"] = no_worse_anywhere(rows, report["by_source"])
    print("settings at least as good as the project's on every source (BA, and swaps at most max(1.5 %, today's)): "
          f"{report['no_worse_anywhere']['settings']}; the best gains BA by at most "
          f"{report['no_worse_anywhere']['largest_gain']:+.3f} on a source")
    write_report(args.out, report)
    return 0


def no_worse_anywhere(rows: dict[str, list[dict]], by_source: dict) -> dict:
    """The settings that keep every source's balanced accuracy and swaps at least as good as the project's, and the
    largest balanced-accuracy gain any of them brings to any source."""
    keep, gain = 0, 0.0
    for settings in zip(*rows.values(), strict=True):
        ok = all(r["balanced_accuracy"] >= by_source[s]["project_ba"] - 1e-9 and r["swap_rate_of_kept"] <= max(
            0.015, by_source[s]["project_swap_rate"]) + 1e-9 for s, r in zip(rows, settings, strict=True))
        if ok:
            keep += 1
            gain = max(gain, *(r["balanced_accuracy"] - by_source[s]["project_ba"]
                               for s, r in zip(rows, settings, strict=True)))
    return {"settings": keep, "largest_gain": gain}


if __name__ == "__main__":
    raise SystemExit(main())
