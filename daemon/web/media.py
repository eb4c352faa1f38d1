"""Images and videos for the web page, by patch id or model name only (no path from a request reaches the disk):
patch images and their thumbnails, the trainer's newest sample grid per model, its preview videos."""

from __future__ import annotations

from flask import Blueprint, abort, send_file

from humanstyle.daemon.web import images
from humanstyle.daemon.web.context import web
from humanstyle.stages.train.preview import list_previews
from humanstyle.stages.train.state import latest_sample

media = Blueprint("media", __name__)


# --- images -----------------------------------------------------------------------------------------------
@media.get("/img/patch/<int:patch_id>/<any(thumb, full):size>")
def patch_image(patch_id: int, size: str):
    data_dir = web().data_dir
    db = web().catalog()
    row = db.patch_file(patch_id) if db else None
    source = images.patch_file(data_dir, row["path"]) if row else None
    if source is None:
        abort(404)
    if size == "full":
        return send_file(source, mimetype="image/png", max_age=3600)
    thumb = images.thumbnail(data_dir, patch_id, source)
    if thumb is None:
        abort(404)
    return send_file(thumb, mimetype="image/jpeg", max_age=3600)


@media.get("/img/sample/<model>")
def sample_image(model: str):
    if model not in web().models:
        abort(404)
    sample = latest_sample(web().train_root, model)
    if sample is None:
        abort(404)
    return send_file(sample, mimetype="image/png", max_age=0)


@media.get("/video/preview/<model>/<name>")
def preview_video(model: str, name: str):
    if model not in web().models:
        abort(404)
    found = [p for p in list_previews(web().train_root, model) if p.path.name == name]  # names from disk only
    if not found:
        abort(404)
    return send_file(found[0].path, mimetype="video/mp4", max_age=3600, conditional=True)
