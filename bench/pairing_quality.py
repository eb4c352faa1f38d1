"""Pairing quality: is a pose found again among all poses of its view class once moved, cut or mirrored?

    python bench/pairing_quality.py [--cases tests/data/views/cases.json] [--out bench/results/pairing_quality.json]

Poses: the non-REJECTED cases of the view dev set that have keypoints (keypoints outside the patch count as not
visible, as on a detector's patch). Each case's keypoints come from one source (annotation, MediaPipe or MoveNet);
a patch appears once per source, so a class's candidates are the poses of one (class, source) group. Without the
file (or with fewer than 300 usable cases) the poses are synthetic (a kinematic skeleton), and the results say so.

For each pose and each condition, the query is the pose rotated by up to +-10 degrees about its centre, rescaled
(0.8-1.25), moved (up to 10 % of the patch) and given pixel noise (--noise, default 1 % of the patch side, per
coordinate):
  moved       nothing else
  3 removed   3 visible keypoints set invisible (not the ones its view class needs: shoulders; hips and knees for
              full body), as when a wrist or ankle is cut off in one domain and not the other
  mirrored    the pose as a detector reports it on the horizontally flipped image (x -> W - x, left and right
              keypoints swapped) before the rest
Found = the pose itself scores highest among its group (ties count as found); for "mirrored" the new score must
also flag the match as mirrored. Look-alike = a miss where the pose that won is at least as close to the query's
own pose (both unperturbed) as the perturbed query is: at that noise no score could tell them apart, and pairing
the winner gives as good a pair; "found or look-alike" separates such misses from wrong choices. Old = the score
before issue 13 (torso-centred, sqrt(confidence)-weighted cosine of all 17 keypoints, missing ones zeroed, no
mirror). False pairs: share of pairs of two different poses of a group whose score reaches each threshold.
Coverage: share of pairs of different poses, cut to s shared keypoints (random subsets), whose score reaches 0.9,
by s (why pairs need MIN_SHARED keypoints).

Across keypoint models (no made-up noise): the same patch's pose as one model reports it (the query) against every
pose of its class as another reports them (annotations, MediaPipe, MoveNet). Found = the best match is the same
person; also how often the true match reaches `pair.min_similarity` (a pair the daemon would make) and how often
it is flagged mirrored (one model swapped left and right). Between two domains the daemon runs one model, so this
is harder than what it meets: an upper bound on the keypoint noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from humanstyle.stages.pairing.pose import (  # noqa: E402
    DEFAULT_MIN_CONFIDENCE,
    MIN_COVERAGE,
    MIN_SHARED,
    MIRROR,
    prepare,
    score_prepared,
)
from humanstyle.stages.settings import PairSettings  # noqa: E402

CLASSES = ("FULL-BODY-FRONT", "HEAD-AND-SHOULDER-FRONT", "FULL-BODY-BACK", "HEAD-AND-SHOULDER-BACK")
CONDITIONS = ("moved", "3 removed", "mirrored")
THRESHOLDS = (0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.993, 0.995, 0.997, 0.998)
SWEEP_THRESHOLDS = (0.9, 0.99, 0.995)
SHOULDERS, FULL_BODY_NEEDS = (5, 6), (5, 6, 11, 12, 13, 14)
GOALS = {"moved": 0.97, "3 removed": 0.95, "mirrored": 0.95}


# ------------------------------------------------------------------------------------------------- poses
def load_cases(cases: list[dict]) -> list[dict]:
    """[{"group": (class, source), "keypoints": (17, 3), "size": (w, h)}] of the usable cases, one per person,
    class and keypoint source (the one showing most keypoints): a person's other cases of a class are crops or
    copies of the same photo, the same pose, not a different pose to tell apart."""
    best: dict[tuple[str, str, str], dict] = {}
    for case, kp in patch_poses(cases):
        w, h = case.get("size") or (256, 256)
        pose = {"group": (case["label"], case["keypoints_from"]), "keypoints": kp, "size": (w, h)}
        key = (case["label"], case["keypoints_from"], case.get("person", case["id"]))
        shown = int((kp[:, 2] >= DEFAULT_MIN_CONFIDENCE).sum())
        if key not in best or shown > int((best[key]["keypoints"][:, 2] >= DEFAULT_MIN_CONFIDENCE).sum()):
            best[key] = pose
    return list(best.values())


def patch_poses(cases: list[dict]):
    """(case, keypoints) for each case of a view class that has keypoints, those outside the patch made invisible
    (a detector's patch shows nothing there)."""
    for case in cases:
        if case["label"] not in CLASSES or case["keypoints"] is None:
            continue
        kp = np.array(case["keypoints"], dtype=np.float64)
        w, h = case.get("size") or (256, 256)
        outside = (kp[:, 0] < 0) | (kp[:, 0] > w) | (kp[:, 1] < 0) | (kp[:, 1] > h)
        kp[outside, 2] = 0.0
        yield case, kp


CROSS_PAIRS = (("movenet", "annotation"), ("mediapipe", "annotation"), ("movenet", "mediapipe"))


def cross_model(cases: list[dict], threshold: float) -> dict:
    """Per (query source, candidate source) and class: the same patch's pose found across two keypoint models."""
    crops: dict[str, dict] = {}
    for case, kp in patch_poses(cases):
        if int((kp[:, 2] >= DEFAULT_MIN_CONFIDENCE).sum()) < MIN_SHARED:
            continue
        entry = crops.setdefault(case["id"].rsplit(".", 1)[0], {"label": case["label"], "person": case["person"],
                                                                 "kp": {}})
        entry["kp"][case["keypoints_from"]] = kp
    out: dict[str, dict] = {}
    for a, b in CROSS_PAIRS:
        for label in CLASSES:
            both = [c for c in crops.values() if c["label"] == label and a in c["kp"] and b in c["kp"]]
            if len(both) < 2:
                continue
            scores, mirrored = new_scores(np.stack([c["kp"][a] for c in both]), np.stack([c["kp"][b] for c in both]))
            rows = np.arange(len(both))
            own = scores[rows, rows]
            winner = best_match(scores)
            persons = np.array([c["person"] for c in both])
            hit = np.isfinite(own) & (persons[winner] == persons)
            out[f"{a} -> {b} {label}"] = {
                "queries": len(both), "found": int(hit.sum()), "not_comparable": int((~np.isfinite(own)).sum()),
                "true_match_at_threshold": int((np.isfinite(own) & (own >= threshold)).sum()),
                "true_match_mirrored": int((np.isfinite(own) & mirrored[rows, rows]).sum()),
                "true_match_median": round(float(np.median(own[np.isfinite(own)])), 4) if np.isfinite(own).any()
                else None}
    return out


def print_cross_model(result: dict, threshold: float) -> None:
    print(f"across keypoint models (query -> candidates, class): queries | found % | not comparable % | true match "
          f">= {threshold} % | true match flagged mirrored % | true match median score")
    for key, r in result.items():
        n = r["queries"]
        print(f"{key} | {n} | {100 * r['found'] / n:.1f} | {100 * r['not_comparable'] / n:.1f} | "
              f"{100 * r['true_match_at_threshold'] / n:.1f} | {100 * r['true_match_mirrored'] / n:.1f} | "
              f"{r['true_match_median']}")


def synthetic_poses(rng: np.random.Generator, per_class: int = 120) -> list[dict]:
    """Kinematic skeletons with random limb angles, lean and turn; head-and-shoulder views cut below the hips,
    back views hide the face."""
    poses = []
    for label in CLASSES:
        for _ in range(per_class):
            kp = _skeleton(rng)
            if label.startswith("HEAD"):
                kp[13:, 2] = 0.0
                if rng.random() < 0.5:
                    kp[11:13, 2] = 0.0
            if label.endswith("BACK"):
                kp[:3, 2] = 0.0
                kp = _flip(kp, 256.0)  # seen from behind, the person's left is on the image's left
            poses.append({"group": (label, "synthetic"), "keypoints": kp, "size": (256, 256)})
    return poses


def _skeleton(rng: np.random.Generator) -> np.ndarray:
    kp = np.zeros((17, 3))
    torso, turn, lean = rng.uniform(50, 70), rng.uniform(-0.7, 0.7), rng.normal(0, 0.08)
    down = np.array([np.sin(lean), np.cos(lean)])
    right = np.array([down[1], -down[0]])
    neck = np.array([128.0, 70.0])
    shoulder, hip = 0.8 * torso * abs(np.cos(turn)) + 8, 0.55 * torso * abs(np.cos(turn)) + 6
    kp[5, :2], kp[6, :2] = neck + right * shoulder / 2, neck - right * shoulder / 2
    pelvis = neck + torso * down
    kp[11, :2], kp[12, :2] = pelvis + right * hip / 2, pelvis - right * hip / 2
    head = neck - 0.45 * torso * down + right * 0.15 * torso * np.sin(turn)
    kp[0, :2] = head + 0.05 * torso * down
    for i, (dx, dy) in zip((1, 2, 3, 4), ((0.1, -0.05), (-0.1, -0.05), (0.2, 0.0), (-0.2, 0.0)), strict=True):
        kp[i, :2] = head + torso * (dx * abs(np.cos(turn)) * right + dy * down)

    def limb(start: np.ndarray, a: float, b: float, l1: float, l2: float) -> tuple[np.ndarray, np.ndarray]:
        joint = start + l1 * np.array([np.sin(a), np.cos(a)])
        return joint, joint + l2 * np.array([np.sin(b), np.cos(b)])

    for side, s, e, w in ((1, 5, 7, 9), (-1, 6, 8, 10)):
        a = rng.uniform(-0.3, 2.8)
        kp[e, :2], kp[w, :2] = limb(kp[s, :2], side * a + lean, side * (a + rng.uniform(-2.0, 0.5)) + lean,
                                    0.6 * torso, 0.55 * torso)
    for side, h, k, a_ in ((1, 11, 13, 15), (-1, 12, 14, 16)):
        a = rng.uniform(-0.3, 0.5)
        kp[k, :2], kp[a_, :2] = limb(kp[h, :2], side * a, side * (a + rng.uniform(-0.6, 0.2)), 0.85 * torso,
                                     0.8 * torso)
    kp[:, 2] = np.where(rng.random(17) < 0.08, rng.uniform(0.0, 0.3, 17), rng.uniform(0.5, 1.0, 17))
    kp[list(FULL_BODY_NEEDS), 2] = np.maximum(kp[list(FULL_BODY_NEEDS), 2], 0.6)
    return kp


def _flip(kp: np.ndarray, width: float) -> np.ndarray:
    """The keypoints a detector reports on the horizontally flipped image."""
    out = kp[MIRROR].copy()
    out[:, 0] = width - out[:, 0]
    return out


def _query(rng: np.random.Generator, kp: np.ndarray, size: tuple[float, float], label: str, condition: str,
           noise: float) -> np.ndarray | None:
    side = float(max(size))
    q = _flip(kp, float(size[0])) if condition == "mirrored" else kp.copy()
    visible = q[:, 2] >= DEFAULT_MIN_CONFIDENCE
    if not visible.any():  # a labelled view the keypoint model saw nothing of: no pose to look for
        return None
    centre = q[visible, :2].mean(axis=0)
    angle, scale = np.deg2rad(rng.uniform(-10, 10)), rng.uniform(0.8, 1.25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    q[:, :2] = (q[:, :2] - centre) @ rot.T * scale + centre + rng.uniform(-0.1, 0.1, 2) * side
    q[:, :2] += rng.normal(0, noise * side, (17, 2))
    if condition == "3 removed":
        needed = FULL_BODY_NEEDS if label.startswith("FULL") else SHOULDERS
        removable = [i for i in np.flatnonzero(visible) if i not in needed]
        if len(removable) < 3:
            return None
        q[rng.choice(removable, 3, replace=False), 2] = 0.0
    return q


# ------------------------------------------------------------------------------------------------- scores
def old_scores(queries: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """The pre-issue-13 score: cosine of torso-centred, torso-scaled, sqrt(conf)-weighted, L2-normalised 34-dim
    features with missing keypoints zeroed (no mirror)."""
    def features(kp: np.ndarray) -> np.ndarray:
        xy, conf = kp[..., :2], np.clip(kp[..., 2], 0.0, 1.0)
        visible = conf >= DEFAULT_MIN_CONFIDENCE
        xy = np.where(visible[..., None], xy, 0.0)
        has_sh, has_hip = visible[:, 5] & visible[:, 6], visible[:, 11] & visible[:, 12]
        sh, hp = (xy[:, 5] + xy[:, 6]) / 2, (xy[:, 11] + xy[:, 12]) / 2
        count = np.maximum(visible.sum(axis=1), 1)
        centroid = xy.sum(axis=1) / count[:, None]
        torso = has_sh & has_hip
        centre = np.where(torso[:, None], (sh + hp) / 2,
                          np.where(has_sh[:, None], sh, np.where(has_hip[:, None], hp, centroid)))
        rel = (xy - centre[:, None]) * visible[..., None]
        vec = (rel * np.sqrt(conf)[..., None] * visible[..., None]).reshape(len(kp), 34)
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        return np.where(norm > 1e-9, vec / np.where(norm > 1e-9, norm, 1.0), 0.0)
    return features(queries) @ features(poses).T


def new_scores(queries: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return score_prepared(*prepare(queries), *prepare(poses))


def found(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per query: does its own pose (column rows[i]) score at least as high as every other pose?"""
    own = scores[np.arange(len(rows)), rows]
    return np.isfinite(own) & (own >= scores.max(axis=1))


def best_match(scores: np.ndarray) -> np.ndarray:
    """Per query (row): the column of the best finite score (non-comparable pairs score NaN)."""
    return np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)


def look_alike(scores: np.ndarray, rows: np.ndarray, between: np.ndarray) -> np.ndarray:
    """Per query: did another pose win that is at least as close to the query's own pose (unperturbed) as the
    query itself is? Then the perturbation made them indistinguishable: pairing the winner is as good as pairing
    the pose itself would be, at this noise."""
    own = scores[np.arange(len(rows)), rows]
    winner = best_match(scores)
    return np.isfinite(own) & (winner != rows) & (between[rows, winner] >= own)


# ------------------------------------------------------------------------------------------------- bench
def evaluate(poses: list[dict], seed: int, repeats: int, noise: float) -> dict:
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in poses:
        groups.setdefault(p["group"], []).append(p)
    per_class = {c: {"poses": 0, **{f"{m} {k}": [0, 0] for m in ("old", "new", "found or look-alike", "not comparable")
                                    for k in CONDITIONS},
                     "mirrored flag": [0, 0]} for c in CLASSES}
    self_scores: dict[str, list[float]] = {k: [] for k in CONDITIONS}
    false_old, false_new, pairs_total = np.zeros(len(THRESHOLDS)), np.zeros(len(THRESHOLDS)), 0
    coverage: dict[int, list[float]] = {}
    for (label, _source), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        kp = np.stack([m["keypoints"] for m in members])
        per_class[label]["poses"] += len(members)
        between = new_scores(kp, kp)[0]  # the group's poses as they are, against each other
        for _ in range(repeats):
            for condition in CONDITIONS:
                queries = [_query(rng, m["keypoints"], m["size"], label, condition, noise) for m in members]
                rows = np.array([i for i, q in enumerate(queries) if q is not None])
                if not len(rows):
                    continue
                q = np.stack([queries[i] for i in rows])
                old_hit = found(old_scores(q, kp), rows)
                new, mirrored = new_scores(q, kp)
                new_hit = found(new, rows)
                own_flag = mirrored[np.arange(len(rows)), rows]
                if condition == "mirrored":
                    new_hit &= own_flag
                    flag = per_class[label]["mirrored flag"]
                    flag[0] += int(own_flag[found(new, rows)].sum())
                    flag[1] += int(found(new, rows).sum())
                for name, hit in (("old", old_hit), ("new", new_hit),
                                  ("found or look-alike", new_hit | look_alike(new, rows, between)),
                                  ("not comparable", ~np.isfinite(new[np.arange(len(rows)), rows]))):
                    tally = per_class[label][f"{name} {condition}"]
                    tally[0] += int(hit.sum())
                    tally[1] += len(rows)
                self_scores[condition] += new[np.arange(len(rows)), rows].tolist()
        # Different poses of the group, as they are (no perturbation).
        upper = np.triu_indices(len(members), 1)
        old_pairs = old_scores(kp, kp)[upper]
        new_pairs = between[upper]
        pairs_total += len(old_pairs)
        false_old += np.array([(old_pairs >= t).sum() for t in THRESHOLDS])
        false_new += np.array([(new_pairs >= t).sum() for t in THRESHOLDS])
        _coverage_sweep(rng, kp, coverage)
    return {"per_class": per_class, "self_scores": self_scores, "pairs": pairs_total,
            "false_old": false_old.tolist(), "false_new": false_new.tolist(), "coverage": coverage}


def _coverage_sweep(rng: np.random.Generator, kp: np.ndarray, out: dict[int, list[int]], trials: int = 200
                    ) -> None:
    """Different poses restricted to the same random subset of s keypoints (both show it): how many score at
    least each of SWEEP_THRESHOLDS (out[s] = [counts..., pairs])."""
    visible = kp[:, :, 2] >= DEFAULT_MIN_CONFIDENCE
    n = len(kp)
    for s in range(3, 14):
        tally = out.setdefault(s, [0] * (len(SWEEP_THRESHOLDS) + 1))
        for _ in range(trials):
            i, j = rng.choice(n, 2, replace=False)
            common = np.flatnonzero(visible[i] & visible[j])
            if len(common) < s:
                continue
            keep = rng.choice(common, s, replace=False)
            a, b = kp[i].copy(), kp[j].copy()
            cut = np.setdiff1d(np.arange(17), keep)
            a[cut, 2] = b[cut, 2] = 0.0
            score = _free_score(a, b)
            for t, threshold in enumerate(SWEEP_THRESHOLDS):
                tally[t] += int(score >= threshold)
            tally[-1] += 1


def _free_score(a: np.ndarray, b: np.ndarray) -> float:
    """The new score without the coverage rule (to see what few shared keypoints allow)."""
    prepared = prepare(np.stack([a, b]), min_keypoints=2)
    return float(score_prepared(prepared[0][:1], prepared[1][:1], prepared[0][1:], prepared[1][1:], min_shared=2,
                                min_coverage=0.0)[0][0, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=Path("tests/data/views/cases.json"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pairing_quality.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="perturbed queries per pose and condition")
    parser.add_argument("--noise", type=float, default=0.01, help="pixel noise, as a share of the patch side")
    args = parser.parse_args()
    raw = args.cases.read_bytes() if args.cases.exists() else None
    cases = json.loads(raw)["cases"] if raw else []
    poses = load_cases(cases)
    source = str(args.cases)
    if poses:
        source += f" (sha256 {hashlib.sha256(raw).hexdigest()[:16]})"
    if len(poses) < 300:
        print(f"{args.cases}: {len(poses)} usable cases (< 300); using synthetic poses", file=sys.stderr)
        poses, source = synthetic_poses(np.random.default_rng(args.seed)), "synthetic"
    result = evaluate(poses, args.seed, args.repeats, args.noise)
    print(f"poses: {source} ({len(poses)} poses); noise {args.noise:.1%} of the patch side; coverage rule: "
          f">= {MIN_SHARED} shared keypoints and >= {MIN_COVERAGE:.0%} of the union")
    print("class | poses | " + " | ".join(f"{k} old/new %" for k in CONDITIONS) + " | mirrored flag %")
    totals = {k: np.zeros(4) for k in CONDITIONS}
    for label, row in result["per_class"].items():
        cells = []
        for k in CONDITIONS:
            o, n = row[f"old {k}"], row[f"new {k}"]
            totals[k] += [*o, *n]
            cells.append(f"{_pct(o)} / {_pct(n)}")
        print(f"{label} | {row['poses']} | " + " | ".join(cells) + f" | {_pct(row['mirrored flag'])}")
    print("all | " + str(sum(r["poses"] for r in result["per_class"].values())) + " | "
          + " | ".join(f"{_pct(t[:2])} / {_pct(t[2:])}" for t in totals.values()))
    goals = {k: bool(totals[k][3] and totals[k][2] / totals[k][3] >= GOALS[k]) for k in CONDITIONS}
    print("goals met (new): " + ", ".join(f"{k} >= {GOALS[k]:.0%}: {goals[k]}" for k in CONDITIONS))
    print("new score: found or a look-alike won (another pose at least as close to the pose as its perturbed "
          "query) % / query below the coverage rule %: class | " + " | ".join(CONDITIONS))
    alike = {k: np.zeros(2) for k in CONDITIONS}
    apart = {k: np.zeros(2) for k in CONDITIONS}
    for label, row in result["per_class"].items():
        for k in CONDITIONS:
            alike[k] += row[f"found or look-alike {k}"]
            apart[k] += row[f"not comparable {k}"]
        print(f"{label} | " + " | ".join(f"{_pct(row[f'found or look-alike {k}'])} / "
                                         f"{_pct(row[f'not comparable {k}'])}" for k in CONDITIONS))
    print("all | " + " | ".join(f"{_pct(alike[k])} / {_pct(apart[k])}" for k in CONDITIONS))
    print("threshold | false pairs old % | false pairs new % | self-match new score >= t % (moved, 3 removed, "
          "mirrored)")
    selfs = {k: np.array(v) for k, v in result["self_scores"].items()}
    for t, fo, fn in zip(THRESHOLDS, result["false_old"], result["false_new"], strict=True):
        kept = ", ".join(f"{100 * np.mean(selfs[k] >= t):.1f}" for k in CONDITIONS)
        print(f"{t} | {100 * fo / result['pairs']:.2f} | {100 * fn / result['pairs']:.2f} | {kept}")
    print("shared keypoints | different poses scoring >= " + " / ".join(map(str, SWEEP_THRESHOLDS))
          + " % (no coverage rule) | pairs")
    for s, tally in sorted(result["coverage"].items()):
        if tally[-1]:
            print(f"{s} | " + " / ".join(f"{100 * c / tally[-1]:.1f}" for c in tally[:-1]) + f" | {tally[-1]}")
    summary = {
        "source": source, "poses": len(poses), "seed": args.seed, "repeats": args.repeats, "noise": args.noise,
        "rule": {"min_shared": MIN_SHARED, "min_coverage": MIN_COVERAGE},
        "per_class": {label: {k: (v if not isinstance(v, list) else
                                  {"queries" if k.startswith("not comparable") else "found": v[0], "of": v[1]})
                              for k, v in row.items()} for label, row in result["per_class"].items()},
        "overall": {f"{m} {k}": {"found": int(totals[k][0 if m == "old" else 2]),
                                 "of": int(totals[k][1 if m == "old" else 3])} for k in CONDITIONS
                    for m in ("old", "new")}
        | {f"new found or look-alike {k}": {"found": int(alike[k][0]), "of": int(alike[k][1])} for k in CONDITIONS}
        | {f"new not comparable {k}": {"queries": int(apart[k][0]), "of": int(apart[k][1])} for k in CONDITIONS},
        "goals_met": goals,
        "false_pairs": {"pairs": result["pairs"], "thresholds": list(THRESHOLDS),
                        "old": result["false_old"], "new": result["false_new"]},
        "self_match_score_quantiles_1_5_10_50": {k: np.quantile(v[np.isfinite(v)], [0.01, 0.05, 0.1, 0.5])
                                                .round(4).tolist() for k, v in selfs.items() if np.isfinite(v).any()},
        "self_match_not_comparable": {k: round(float(np.mean(~np.isfinite(v))), 4) for k, v in selfs.items() if len(v)},
        "chance_score_by_shared_keypoints": {
            "thresholds": list(SWEEP_THRESHOLDS),
            "by_shared": {str(s): {"at_least": t[:-1], "of": t[-1]} for s, t in sorted(result["coverage"].items())}},
    }
    if source != "synthetic":
        threshold = PairSettings().min_similarity
        summary["across_keypoint_models"] = {"threshold": threshold, "by_pair": cross_model(cases, threshold)}
        print_cross_model(summary["across_keypoint_models"]["by_pair"], threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


def _pct(tally: list[int] | np.ndarray) -> str:
    return f"{100 * tally[0] / tally[1]:.1f}" if tally[1] else "-"


if __name__ == "__main__":
    main()
