"""The kept patches as a COCO keypoints dataset, in the layout CVAT imports and FiftyOne and pycocotools read:

    <out>/annotations/person_keypoints_<split>.json    one file per split (train, val, test: the trainer's splits)
    <out>/images/<split>/<domain>_<patch id>.png       the patch image itself

Each patch is one image with one `person` annotation: the detector's box mapped into the patch (`bbox`, x y w h),
the person's mask as compressed RLE (`segmentation`, `area` its pixel count), the 17 keypoints in COCO's order and
visibility convention (v = 2: labelled and visible, at or above classify.min_keypoint_confidence; v = 0: not
labelled, x = y = 0 — the keypoint model gives no "labelled but hidden" state), `num_keypoints`, the detector's
`score`, and the view and the domain as `attributes` (CVAT's convention; the image entries carry them too, with the
source video and time). Rejected patches are not exported; pair verdicts do not concern patches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from humanstyle.models.data import SPLITS, split_of
from humanstyle.models.files import atomic_write_bytes
from humanstyle.stages.detect import box_in_patch
from humanstyle.stages.store.catalog import keypoints_of
from humanstyle.stages.vocabulary import KEYPOINT_NAMES

# COCO's person skeleton, by keypoint name (the format stores 1-based keypoint numbers).
SKELETON_NAMES = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
    ("right_eye", "right_ear"), ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
)  # fmt: skip
CATEGORY = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(KEYPOINT_NAMES),
            "skeleton": [[KEYPOINT_NAMES.index(a) + 1, KEYPOINT_NAMES.index(b) + 1] for a, b in SKELETON_NAMES]}


def rle_encode(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a binary H x W mask: run lengths in column-major order, starting with a run of
    zeros, each written as 5-bit groups (6th bit: more follow) offset by 48, and from the third on as the
    difference to the run two before."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    chars = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def coco_keypoints(keypoints: np.ndarray | None, width: int, height: int, min_confidence: float
                   ) -> tuple[list[float], int]:
    """(the flat [x, y, v] * 17 list, how many are labelled)."""
    out: list[float] = []
    labelled = 0
    kp = np.zeros((len(KEYPOINT_NAMES), 3), np.float32) if keypoints is None else keypoints
    for x, y, conf in kp:
        if conf >= min_confidence and 0 <= x < width and 0 <= y < height:
            out += [round(float(x), 2), round(float(y), 2), 2]
            labelled += 1
        else:
            out += [0, 0, 0]
    return out, labelled


def export_coco(patches: Iterable, data_dir: Path, out_dir: Path, *, fractions: tuple[float, float],
                min_confidence: float) -> dict[str, int]:
    """Write the dataset from catalog rows (stages.store.catalog.Catalog.kept_patches); returns images per split.
    A patch whose image or mask cannot be read is skipped and counted as "unreadable"."""
    out_dir = Path(out_dir)
    docs = {s: {"info": {"description": "humanstyle person patches", "version": "1"}, "licenses": [],
                "categories": [CATEGORY], "images": [], "annotations": []} for s in SPLITS}
    written = {s: 0 for s in SPLITS} | {"unreadable": 0}
    for row in patches:
        image_path = data_dir / row["path"]
        try:  # read once: the bytes decoded are the bytes copied
            encoded = image_path.read_bytes()
        except OSError:
            encoded = b""
        image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR) if encoded else None
        mask = cv2.imread(str(image_path.with_suffix(".mask.png")), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None or mask.shape != image.shape[:2]:
            written["unreadable"] += 1
            continue
        height, width = image.shape[:2]
        split = split_of(f"{row['domain']}:{row['id']}", *fractions)
        name = f"{row['domain']}_{row['id']}.png"
        atomic_write_bytes(out_dir / "images" / split / name, encoded, durable=False)
        attributes = {"view": row["view"], "domain": row["domain"]}
        docs[split]["images"].append({
            "id": row["id"], "file_name": name, "width": width, "height": height, **attributes,
            "video": row["video"], "frame_index": row["frame_index"], "timestamp": row["timestamp"]})
        x1, y1, x2, y2 = box_in_patch(json.loads(row["box"]), json.loads(row["square"]), width)
        x1, y1 = max(0.0, x1), max(0.0, y1)
        x2, y2 = min(float(width), x2), min(float(height), y2)
        keypoints = keypoints_of(row["keypoints"])
        flat, labelled = coco_keypoints(keypoints, width, height, min_confidence)
        person = mask >= 128
        docs[split]["annotations"].append({
            "id": row["id"], "image_id": row["id"], "category_id": 1, "iscrowd": 0,
            "bbox": [round(x1, 2), round(y1, 2), round(max(0.0, x2 - x1), 2), round(max(0.0, y2 - y1), 2)],
            "area": int(person.sum()), "segmentation": rle_encode(person),
            "keypoints": flat, "num_keypoints": labelled, "score": row["score"], "attributes": attributes})
        written[split] += 1
    for split, doc in docs.items():
        atomic_write_bytes(out_dir / "annotations" / f"person_keypoints_{split}.json",
                           json.dumps(doc, separators=(",", ":")).encode(), durable=False)
    return written
