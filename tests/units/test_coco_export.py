"""`humanstyle export --format coco`: the kept patches as a COCO keypoints dataset that pycocotools opens, with
exact counts per split, the keypoints back as written (visibility 2 at or above the confidence cut, 0 and no
position below it or outside the patch), the mask back from its RLE pixel for pixel, the box in patch pixels,
and the view and domain as attributes. Our RLE encoder agrees with pycocotools' on awkward masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils  # the dev extra's: the reference reader
from pycocotools.coco import COCO

from humanstyle.daemon import config
from humanstyle.daemon.cli.main import main
from humanstyle.models.data import split_of
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.tools.coco import export_coco, rle_encode
from humanstyle.stages.vocabulary import KEYPOINT_NAMES, VIEWS
from tests.catalog_rows import add_patch
from tests.conftest import fast_sections, write_config

SIZE = 64


def keypoints_for(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = rng.uniform(0, SIZE - 1, (17, 2)).round(2)
    kp[:, 2] = rng.uniform(0, 1, 17)
    kp[0, :2] = (SIZE + 5, 10)  # outside the patch: not labelled whatever its confidence
    kp[0, 2] = 0.99
    return kp


def test_the_coco_export_opens_in_pycocotools_and_round_trips(tmp_path, capsys):
    settings = config.load(write_config(tmp_path, fast_sections(tmp_path, train={"val_fraction": 0.3,
                                                                                 "test_fraction": 0.2})))
    data = settings.paths.data_dir
    cat = Catalog(settings.paths.catalog)
    movie, _ = cat.add_video("fp-m", "/w/movie/m.mp4", "movie", 1, 0.0)
    game, _ = cat.add_video("fp-g", "/w/game/g.mp4", "game", 1, 0.0)
    written = {}
    for i in range(24):
        domain, video = ("movie", movie.id) if i % 2 else ("game", game.id)
        view = "REJECTED" if i % 6 == 5 else VIEWS[i % 4]
        rel = f"patches/{domain}/{view}/v{i}.png"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        image = np.full((SIZE, SIZE, 3), 10 * i, np.uint8)
        person = np.zeros((SIZE, SIZE), np.uint8)
        person[5 + i % 7:50, 10:30 + i] = 255
        cv2.imwrite(str(data / rel), image)
        cv2.imwrite(str(data / rel.replace(".png", ".mask.png")), person)
        # The square is 128 frame pixels from (100, 50): the patch is half the frame's scale.
        pid = add_patch(cat, video, domain, i, view, path=rel, keypoints=keypoints_for(i), timestamp=i / 4,
                        box=[120.0, 60.0, 180.0, 170.0], square=[100, 50, 228, 178], score=0.8,
                        reason="side_view" if view == "REJECTED" else "")
        if view != "REJECTED":
            written[pid] = (domain, view, keypoints_for(i), person > 127)
    cat.close()

    out = tmp_path / "coco"
    assert main(["export", "--format", "coco", str(out), "--config", str(settings.source)]) == 0
    assert f"exported {len(written)} patches as coco" in capsys.readouterr().out
    cut = settings.classify.min_keypoint_confidence
    seen = set()
    for split in ("train", "val", "test"):
        coco = COCO(str(out / "annotations" / f"person_keypoints_{split}.json"))
        expected = {pid for pid, (domain, *_rest) in written.items()
                    if split_of(f"{domain}:{pid}", 0.3, 0.2) == split}
        assert set(coco.getImgIds()) == expected and len(coco.getAnnIds()) == len(expected)
        assert coco.loadCats(1)[0]["keypoints"] == list(KEYPOINT_NAMES)
        assert len(coco.loadCats(1)[0]["skeleton"]) == 19
        for pid in expected:
            domain, view, kp, person = written[pid]
            img = coco.loadImgs(pid)[0]
            assert (out / "images" / split / img["file_name"]).is_file() and img["width"] == SIZE
            (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=pid))
            assert ann["attributes"] == {"view": view, "domain": domain}
            assert ann["bbox"] == pytest.approx([10.0, 5.0, 30.0, 55.0])
            assert (coco.annToMask(ann).astype(bool) == person).all() and ann["area"] == int(person.sum())
            flat = np.array(ann["keypoints"], np.float32).reshape(17, 3)
            visible = (kp[:, 2] >= cut) & (kp[:, 0] < SIZE) & (kp[:, 1] < SIZE)
            assert (flat[:, 2] == np.where(visible, 2, 0)).all() and ann["num_keypoints"] == int(visible.sum())
            assert np.allclose(flat[visible, :2], kp[visible, :2], atol=0.006)
            assert (flat[~visible, :2] == 0).all()
            seen.add(pid)
    assert seen == set(written)
    doc = json.loads((out / "annotations" / "person_keypoints_train.json").read_text())
    assert {"images", "annotations", "categories", "info"} <= set(doc)


def test_patches_whose_files_cannot_be_read_are_counted_not_exported(tmp_path):
    data = tmp_path / "data"
    rows = []
    for i, damage in enumerate(["", "no image", "not an image", "no mask"]):
        rel = f"patches/movie/FULL-BODY-FRONT/v{i}.png"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data / rel), np.full((SIZE, SIZE, 3), 40 * i, np.uint8))
        cv2.imwrite(str(data / rel.replace(".png", ".mask.png")), np.full((SIZE, SIZE), 255, np.uint8))
        if damage == "no image":
            (data / rel).unlink()
        elif damage == "not an image":
            (data / rel).write_bytes(b"\x89PNG but not really")
        elif damage == "no mask":
            (data / rel.replace(".png", ".mask.png")).unlink()
        rows.append({"id": i + 1, "path": rel, "domain": "movie", "view": "FULL-BODY-FRONT", "video": "m.mp4",
                     "frame_index": i, "timestamp": 0.0, "box": "[0, 0, 64, 64]", "square": "[0, 0, 64, 64]",
                     "score": 0.9, "keypoints": keypoints_for(i).tobytes()})
    written = export_coco(rows, data, tmp_path / "coco", fractions=(0.0, 0.0), min_confidence=0.5)
    assert written == {"train": 1, "val": 0, "test": 0, "unreadable": 3}
    (image,) = (tmp_path / "coco" / "images" / "train").iterdir()
    assert image.read_bytes() == (data / rows[0]["path"]).read_bytes()  # the patch file as stored


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 48)])
def test_rle_matches_pycocotools(shape):
    rng = np.random.default_rng(shape[0])
    masks = [np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) > 0.5, rng.random(shape) > 0.95]
    for m in masks:
        ours = rle_encode(m)
        theirs = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode() and ours["size"] == list(shape)
