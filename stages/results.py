"""Writing results for the index stage: patch files, patch rows, the pairing index, pairs (catalog + CSV).

Order per patch, so that a crash at any point replays cleanly: image file (atomic) -> patch row (indexed = 0) ->
pairs proposed from the index and inserted (unique) -> patch committed to the pairing index -> row indexed = 1.
A patch found with indexed = 0 at start is replayed, and the temporary file of an image write that was cut short is
deleted; pairs.csv is rewritten from the catalog at start (and after a person marks pairs bad or good on the web
page: it lists the pairs not marked bad), then appended to as pairs are found.

A pose index of an older on-disk format is deleted at start and rebuilt from the catalog's keypoints: the patches
already indexed are re-added without proposing pairs again (their pairs are in the catalog already), then the
unindexed ones are replayed as usual.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import cv2
import numpy as np

from humanstyle.models.files import atomic_write_bytes
from humanstyle.stages.catalog import Catalog, keypoints_of
from humanstyle.stages.counters import INDEX_SIZE, PAIRS, PATCHES, REJECTIONS
from humanstyle.stages.pair import IndexFormatError, PairingIndex
from humanstyle.stages.records import Classified
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.storage import open_storage
from humanstyle.stages.vocabulary import REJECTED, VIEWS

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
        self.csv_path = self.data_dir / "pairs.csv"
        self._rebuild = False
        try:
            self.pairing = self._open_index()
        except IndexFormatError as exc:
            log.warning("pose index: %s; rebuilding it from the catalog", exc)
            PairingIndex.reset(self.data_dir / "index", self.domains, VIEWS)
            self.pairing = self._open_index()
            self._rebuild = True
        self._new_pairs = 0

    def _open_index(self) -> PairingIndex:
        return PairingIndex(
            self.data_dir / "index", self.domains, VIEWS,
            min_confidence=self.settings.classify.min_keypoint_confidence,
            min_similarity=self.settings.pair.min_similarity, top_k=self.settings.pair.top_k,
            mutual_best=self.settings.pair.mutual_best, search=self.settings.pair.search_settings)

    @property
    def csv_header(self) -> list[str]:
        a, b = self.domains
        return ["pair_id", f"{a}_patch", f"{b}_patch", "view", "similarity", f"{a}_patch_id", f"{b}_patch_id",
                "mirrored"]

    def recover(self) -> None:
        # A patch file whose write was cut short (a killed index) is written again under its own name when its
        # window is replayed; only the temporary file of the cut write would stay behind, owned by nobody.
        removed = self.storage.remove_interrupted_writes("patches")
        if removed:
            log.warning("index: removed %d patch file(s) left half-written by an interrupted run", removed)
        if self._rebuild:
            self._rebuild_index()
        for row in self.catalog.unindexed_patches():
            keypoints = keypoints_of(row["keypoints"])
            self._index(row["id"], row["domain"], row["view"], keypoints)
        self.rewrite_csv()
        self._new_pairs = 0
        for domain in self.domains:
            for view in VIEWS:
                INDEX_SIZE.labels(domain, view).set(len(self.pairing.index(domain, view)))

    def _rebuild_index(self, batch: int = 4096) -> None:
        """Re-add every indexed patch of the catalog to a fresh pose index, in id order, proposing nothing."""
        pending: dict[tuple[str, str], list] = {}

        def flush(key: tuple[str, str]) -> None:
            rows = pending.pop(key, [])
            if rows:
                keypoints = np.stack([keypoints_of(r["keypoints"]) for r in rows])
                self.pairing.commit_batch([r["id"] for r in rows], key[0], key[1], keypoints)

        total = 0
        for row in self.catalog.indexed_keypoints():
            key = (row["domain"], row["view"])
            if row["keypoints"] is None or row["view"] not in VIEWS or row["domain"] not in self.domains:
                continue
            pending.setdefault(key, []).append(row)
            total += 1
            if len(pending[key]) >= batch:
                flush(key)
        for key in list(pending):
            flush(key)
        self._rebuild = False
        log.info("pose index: rebuilt with %d patches", total)

    def write_patch(self, patch: Classified) -> int:
        """Store one classified patch (idempotent); returns its id."""
        f = patch.fields()
        existing = self.catalog.patch_id(patch.video_id, patch.frame_index, patch.person_index)
        if existing is None:
            rel = self._write_files(f, patch.image, patch.mask)
            patch_id, indexed = self.catalog.add_patch(f, patch.keypoints, rel)
            PATCHES.labels(patch.domain, patch.view).inc()
            if patch.view == REJECTED:
                REJECTIONS.labels(patch.domain, patch.reason).inc()
        else:
            patch_id, indexed = existing, True  # recover() already replayed unindexed rows at start
        if patch.view in VIEWS and not indexed:
            self._index(patch_id, patch.domain, patch.view, patch.keypoints)
        return patch_id

    def flush_pairs(self) -> int:
        n, self._new_pairs = self._new_pairs, 0
        return n

    def _write_files(self, f: dict, image: np.ndarray, mask: np.ndarray) -> str:
        if f["view"] == REJECTED and not self.settings.pair.save_rejected:
            return ""
        rel = Path("patches") / f["domain"] / f["view"] / (patch_name(f["video_id"], f["frame_index"],
                                                                       f["person_index"]) + ".png")
        # The mask first: the image is what the row points to, so it is written last.
        self.storage.write_bytes(str(rel.with_suffix(".mask.png")), encode_png(mask), durable=False)
        self.storage.write_bytes(str(rel), encode_png(image))
        return str(rel)

    def _index(self, patch_id: int, domain: str, view: str, keypoints: np.ndarray) -> None:
        kp = np.asarray(keypoints, np.float32)[None]
        pairs = self.pairing.propose_batch([patch_id], domain, view, kp)
        added = []
        with self.catalog.transaction():
            for p in pairs:
                if self.catalog.add_pair(p.a_id, p.b_id, p.view, p.similarity, p.mirrored):
                    added.append(p)
        self.pairing.commit_batch([patch_id], domain, view, kp)
        self.catalog.mark_indexed(patch_id)
        INDEX_SIZE.labels(domain, view).set(len(self.pairing.index(domain, view)))
        if added:
            for p in added:
                PAIRS.labels(p.view).inc()
            self._append_csv([r for r in self.catalog.pairs_since(len(added))])
            self._new_pairs += len(added)

    def _rows(self, rows: list) -> list[list]:
        return [[r["id"], r["a_path"], r["b_path"], r["view"], f"{r['similarity']:.6f}", r["a_patch_id"],
                 r["b_patch_id"], int(r["mirrored"])] for r in rows]

    def _append_csv(self, rows: list) -> None:
        new_file = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new_file:
                writer.writerow(self.csv_header)
            writer.writerows(self._rows(rows))

    def rewrite_csv(self) -> None:
        """pairs.csv from the catalog: every pair not marked bad."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.csv_header)
        writer.writerows(self._rows(self.catalog.pairs()))
        atomic_write_bytes(self.csv_path, buf.getvalue().encode())
