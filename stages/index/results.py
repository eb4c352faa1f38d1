"""Writing results for the index stage: patch files and patch rows.

Order per patch, so that a crash at any point replays cleanly: image file (atomic) -> patch row. The row is keyed
(video, frame, person), so a replayed window writes nothing twice; the temporary file of an image write that was
cut short is deleted at start. Pairing follows the catalog in its own stage (stages/pairing/stage.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from humanstyle.stages.counters import PATCHES, REJECTIONS
from humanstyle.stages.records import Classified
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.storage import open_storage
from humanstyle.stages.vocabulary import REJECTED

log = logging.getLogger("humanstyle.index")


def patch_name(video_id: int, frame_index: int, person_index: int) -> str:
    """File names come from ids only: names from the watch folder are untrusted."""
    return f"v{video_id:06d}_f{frame_index:07d}_p{person_index:02d}"


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("could not encode a patch as PNG")
    return buf.tobytes()


class ResultWriter:
    def __init__(self, settings: PipelineSettings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.data_dir = settings.paths.data_dir
        self.storage = open_storage(settings)  # patch files: the data folder, or storage.url
        self.domains = settings.domains
        self.written: list[tuple[str, str, str]] = []  # (domain, view, reason) of new rows not counted yet

    def recover(self) -> None:
        # A patch file whose write was cut short (a killed index) is written again under its own name when its
        # window is replayed; only the temporary file of the cut write would stay behind, owned by nobody.
        removed = self.storage.remove_interrupted_writes("patches")
        if removed:
            log.warning("index: removed %d patch file(s) left half-written by an interrupted run", removed)

    def write_patch(self, patch: Classified) -> int:
        """Store one classified patch (idempotent); returns its id."""
        f = patch.fields()
        existing = self.catalog.patch_id(patch.video_id, patch.frame_index, patch.person_index)
        if existing is None:
            rel = self._write_files(f, patch.image, patch.mask)
            patch_id, _ = self.catalog.add_patch(f, patch.keypoints, rel)
            self.written.append((patch.domain, patch.view, patch.reason))
        else:
            patch_id = existing
        return patch_id

    def count_written(self) -> None:
        """Count the rows written since the last call, once their transaction committed (a rolled-back batch is
        written again, and must not be counted twice: `written.clear()` after a failure)."""
        for domain, view, reason in self.written:
            PATCHES.labels(domain, view).inc()
            if view == REJECTED:
                REJECTIONS.labels(domain, reason).inc()
        self.written.clear()

    def _write_files(self, f: dict, image: np.ndarray, mask: np.ndarray) -> str:
        if f["view"] == REJECTED and not self.settings.index.save_rejected:
            return ""
        rel = Path("patches") / f["domain"] / f["view"] / (patch_name(f["video_id"], f["frame_index"],
                                                                       f["person_index"]) + ".png")
        # The mask first: the image is what the row points to, so it is written last.
        self.storage.write_bytes(str(rel.with_suffix(".mask.png")), encode_png(mask), durable=False)
        self.storage.write_bytes(str(rel), encode_png(image))
        return str(rel)
