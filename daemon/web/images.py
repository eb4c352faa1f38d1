"""Patch images for the web page, found by patch id only (never by a path from the request), and their thumbnails.

A thumbnail is made on first request and cached as `data_dir/thumbs/<side>/<id // 1000>/<id>.jpg`, written
atomically: a patch's image never changes once written (its name comes from its key), so neither does its
thumbnail. The side is in the path so that a new side never serves an old, smaller thumbnail.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from humanstyle.models.files import atomic_write_bytes

THUMB_SIDE = 256  # a pair card's image is up to ~270 CSS pixels wide (style.css: ol.pairs)


def patch_file(data_dir: Path, rel: str) -> Path | None:
    """The patch image a catalog row points to, if it exists inside the data folder."""
    if not rel:
        return None
    root = data_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def thumbnail(data_dir: Path, patch_id: int, source: Path, side: int = THUMB_SIDE) -> Path | None:
    """The cached thumbnail of a patch, made now when missing; None when the source cannot be read."""
    cached = data_dir / "thumbs" / str(side) / f"{patch_id // 1000:04d}" / f"{patch_id}.jpg"
    if cached.is_file():
        return cached
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return None
    atomic_write_bytes(cached, buf.tobytes(), durable=False)
    return cached
