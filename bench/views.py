"""How well the view rules label real people: per-class recall and precision, balanced accuracy, the confusion
matrix and front/back swaps on the real development set (tests/data/views/cases.json, see its SOURCES.md).

    python bench/views.py [--cases tests/data/views/cases.json] [--out bench/results/views.json]

"with_keypoints" leaves out the patches where the keypoint model found nobody (keypoints null): no rule can
label those, so it measures the rules alone; "all" is what the pipeline would do end to end.

Every source is also scored with PLAIN rules, a calibration anchor written from the view-rules issue (#28), so each
change to stages/classify.py is measured against it: rejected without any shoulder or without any of nose, eyes and
ears; front or back from a vote (shoulder order 2, hip order 1, each only when the two points are more than 2 % of
the patch width apart, facing the camera the person's left on the image's right; +1 when two or more of nose and
eyes are seen, -1 otherwise; front only when the vote is positive); full body when a hip and a knee or an ankle are
seen. And each rejection reason of the project's rules is costed: the labelled views it rejects against the true
rejects it catches.
Balanced accuracy is the mean recall over the five labels, so the scarce back views weigh as much as the
plentiful front views. A front/back swap (a front view labelled as a back view or the reverse) is counted
against the patches the rules keep: a wrong view poisons a training pair, a lost patch only costs data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from humanstyle.daemon.config import ClassifySettings  # noqa: E402
from humanstyle.stages.classify import (  # noqa: E402
    FULL_BODY_BACK,
    FULL_BODY_FRONT,
    HEAD_AND_SHOULDER_BACK,
    HEAD_AND_SHOULDER_FRONT,
    LABELS,
    REJECTED,
    classify_with_reason,
)
from humanstyle.stages.vocabulary import HEAD, L_HIP, L_SHOULDER, NOSE, R_HIP, R_SHOULDER  # noqa: E402

PLAIN_FACE = (NOSE, 1, 2)  # nose and both eyes
PLAIN_LOWER = (13, 14, 15, 16)  # knees and ankles


def orientation(label: str) -> str | None:
    return None if label == REJECTED else label.rsplit("-", 1)[1]


def predict(case: dict, min_confidence: float) -> tuple[str, str | None]:
    kp = case["keypoints"]
    return classify_with_reason(None if kp is None else np.asarray(kp, dtype=np.float64), tuple(case["size"]),
                                min_confidence)


def plain_rules(case: dict, min_confidence: float) -> tuple[str, str | None]:
    """The plain rule set (see the module docstring): the baseline every change to the view rules must beat."""
    if case["keypoints"] is None:
        return REJECTED, "no_person"
    kp = np.asarray(case["keypoints"], dtype=np.float64)
    width, height = case["size"]
    x, y, conf = kp[:, 0], kp[:, 1], kp[:, 2]
    with np.errstate(invalid="ignore"):
        seen = np.isfinite(kp).all(axis=1) & (conf >= min_confidence) & (x >= 0) & (x <= width) & (y >= 0) & (
            y <= height)
    if not (seen[L_SHOULDER] or seen[R_SHOULDER]):
        return REJECTED, "no_shoulders"
    if not any(seen[i] for i in HEAD):
        return REJECTED, "no_head"
    vote = 1 if sum(int(seen[i]) for i in PLAIN_FACE) >= 2 else -1
    for left, right, weight in ((L_SHOULDER, R_SHOULDER, 2), (L_HIP, R_HIP, 1)):
        if seen[left] and seen[right] and abs(x[left] - x[right]) > 0.02 * width:
            vote += weight if x[left] > x[right] else -weight
    front = vote > 0
    if (seen[L_HIP] or seen[R_HIP]) and any(seen[i] for i in PLAIN_LOWER):
        return (FULL_BODY_FRONT if front else FULL_BODY_BACK), None
    return (HEAD_AND_SHOULDER_FRONT if front else HEAD_AND_SHOULDER_BACK), None


def reason_costs(cases: list[dict], predictions: list[tuple[str, str | None]]) -> dict:
    """Per rejection reason: the labelled views it rejects (by class) and the true rejects it catches."""
    costs: dict[str, dict] = {}
    for case, (label, reason) in zip(cases, predictions, strict=True):
        if label != REJECTED:
            continue
        row = costs.setdefault(reason, {"true_rejects": 0, "views_lost": 0, "by_class": Counter()})
        if case["label"] == REJECTED:
            row["true_rejects"] += 1
        else:
            row["views_lost"] += 1
            row["by_class"][case["label"]] += 1
    return {r: {**c, "by_class": dict(c["by_class"])} for r, c in sorted(costs.items())}


def score(cases: list[dict], predictions: list[tuple[str, str | None]]) -> dict:
    """Recall/precision per label, balanced accuracy, confusion (true -> predicted -> count), swaps, losses."""
    confusion = {t: dict.fromkeys(LABELS, 0) for t in LABELS}
    losses: Counter[str] = Counter()
    for case, (label, reason) in zip(cases, predictions, strict=True):
        confusion[case["label"]][label] += 1
        if case["label"] != REJECTED and label == REJECTED:
            losses[f"{case['label']} -> {reason}"] += 1
    per_class = {}
    for label in LABELS:
        support = sum(confusion[label].values())
        predicted = sum(confusion[t][label] for t in LABELS)
        hit = confusion[label][label]
        per_class[label] = {"support": support, "correct": hit, "predicted": predicted,
                            "recall": hit / support if support else None,
                            "precision": hit / predicted if predicted else None}
    recalls = [c["recall"] for c in per_class.values() if c["recall"] is not None]
    kept = sum(confusion[t][p] for t in LABELS for p in LABELS if p != REJECTED)
    swaps = sum(confusion[t][p] for t in LABELS for p in LABELS
                if p != REJECTED and t != REJECTED and orientation(t) != orientation(p))
    wrong_extent = sum(confusion[t][p] for t in LABELS for p in LABELS if p != REJECTED and t != REJECTED
                       and orientation(t) == orientation(p) and t != p)
    false_keeps = sum(confusion[REJECTED][p] for p in LABELS if p != REJECTED)
    return {"cases": len(cases), "balanced_accuracy": sum(recalls) / len(recalls) if recalls else None,
            "accuracy": sum(confusion[t][t] for t in LABELS) / len(cases) if cases else None,
            "per_class": per_class, "confusion": confusion, "kept": kept,
            "front_back_swaps": swaps, "swap_rate_of_kept": swaps / kept if kept else None,
            "wrong_extent": wrong_extent, "rejections_kept": false_keeps,
            "losses_by_reason": dict(losses.most_common())}


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(name: str, result: dict) -> None:
    print(f"\n== {name}: {result['cases']} cases, balanced accuracy {fmt(result['balanced_accuracy'])}, "
          f"front/back swaps {result['front_back_swaps']} of {result['kept']} kept "
          f"({fmt(result['swap_rate_of_kept'] and 100 * result['swap_rate_of_kept'], 2)} %)")
    print(f"{'label':<26}{'support':>8}{'correct':>8}{'recall':>8}{'precision':>10}")
    for label, c in result["per_class"].items():
        print(f"{label:<26}{c['support']:>8}{c['correct']:>8}{fmt(c['recall']):>8}{fmt(c['precision']):>10}")
    short = {label: "".join(w[0] for w in label.split("-")) for label in LABELS}
    print("confusion (rows true, columns predicted):")
    print("  " + " " * 6 + "".join(f"{short[p]:>6}" for p in LABELS))
    for t in LABELS:
        print(f"  {short[t]:<6}" + "".join(f"{result['confusion'][t][p]:>6}" for p in LABELS))
    if result["losses_by_reason"]:
        print("views lost to rejection: " + ", ".join(f"{k} {v}" for k, v in result["losses_by_reason"].items()))


def print_against_plain(report: dict) -> None:
    """Balanced accuracy and per-class recall, plain rules against the project's, per keypoint source; then what
    each rejection reason costs."""
    short = {label: "".join(w[0] for w in label.split("-")) for label in LABELS}
    print("\n== against the plain rules (plain / project): balanced accuracy, recall per class, swaps % of kept")
    print(f"{'source':<12}{'BA':>14}" + "".join(f"{short[k]:>14}" for k in LABELS) + f"{'swaps':>12}")
    for source, ours in report["by_keypoint_source"].items():
        plain = report["plain_by_keypoint_source"][source]
        cells = [f"{fmt(plain['balanced_accuracy'])}/{fmt(ours['balanced_accuracy'])}"]
        cells += [f"{fmt(plain['per_class'][k]['recall'])}/{fmt(ours['per_class'][k]['recall'])}" for k in LABELS]
        cells.append(f"{fmt(100 * plain['swap_rate_of_kept'], 1)}/{fmt(100 * ours['swap_rate_of_kept'], 1)}")
        print(f"{source:<12}" + "".join(f"{c:>14}" for c in cells[:-1]) + f"{cells[-1]:>12}")
    print("\n== what each rejection reason costs: labelled views it rejects / true rejects it catches")
    reasons = sorted({r for costs in report["reason_costs"].values() for r in costs})
    print(f"{'reason':<26}" + "".join(f"{s:>14}" for s in report["reason_costs"]))
    for reason in reasons:
        row = [report["reason_costs"][s].get(reason, {"views_lost": 0, "true_rejects": 0})
               for s in report["reason_costs"]]
        print(f"{reason:<26}" + "".join(f"{c['views_lost']:>7}/{c['true_rejects']:<6}" for c in row))


def dev_set_parser(doc: str, result: str) -> argparse.ArgumentParser:
    """The arguments every script scoring the view dev set takes: the cases and where its JSON goes."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, default=ROOT / "tests/data/views/cases.json")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results" / result)
    return ap


def write_report(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = dev_set_parser(__doc__, "views.json")
    ap.add_argument("--min-confidence", type=float, default=ClassifySettings().min_keypoint_confidence)
    args = ap.parse_args(argv)
    cases = json.loads(args.cases.read_text())["cases"]
    predictions = [predict(c, args.min_confidence) for c in cases]
    report = {"cases_file": str(args.cases.relative_to(ROOT) if args.cases.is_relative_to(ROOT) else args.cases),
              "min_confidence": args.min_confidence, "all": score(cases, predictions), "by_keypoint_source": {}}
    print_report("all", report["all"])
    # The rules can only judge patches where the keypoint model found somebody; its misses are its own.
    found = [i for i, c in enumerate(cases) if c["keypoints"] is not None]
    report["with_keypoints"] = score([cases[i] for i in found], [predictions[i] for i in found])
    print_report("patches where the keypoint model found a person", report["with_keypoints"])
    plain = [plain_rules(c, args.min_confidence) for c in cases]
    report["plain_by_keypoint_source"], report["reason_costs"] = {}, {}
    for source in sorted({c["keypoints_from"] for c in cases}):
        idx = [i for i, c in enumerate(cases) if c["keypoints_from"] == source]
        result = score([cases[i] for i in idx], [predictions[i] for i in idx])
        report["by_keypoint_source"][source] = result
        print_report(f"keypoints from {source}", result)
        report["plain_by_keypoint_source"][source] = score([cases[i] for i in idx], [plain[i] for i in idx])
        report["reason_costs"][source] = reason_costs([cases[i] for i in idx], [predictions[i] for i in idx])
    print_against_plain(report)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
