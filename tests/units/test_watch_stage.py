"""The watch stage's messages: what the index is told about each kind of file."""

from __future__ import annotations

import os

from humanstyle.daemon.runtime import wire
from humanstyle.stages.records import Discovered
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.watch import Candidate, discovered_message
from tests.media import make_clip, make_non_video

EXTS = [".mp4", ".avi"]


def candidate(path, domain="movie") -> Candidate:
    st = os.stat(path)
    return Candidate(path, domain, st.st_size, st.st_mtime)


def round_trip(msg: Discovered) -> Discovered:
    return wire.decode([bytes(f) for f in wire.encode(msg)], 1 << 20)


def test_videos_get_a_content_fingerprint(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", 0.5)
    copy = tmp_path / "renamed copy.mp4"
    copy.write_bytes(clip.read_bytes())
    one, two = discovered_message(candidate(clip), EXTS), discovered_message(candidate(copy), EXTS)
    assert one.rejected == "" and one.fingerprint == two.fingerprint


def test_files_that_cannot_be_videos_are_rejected_once_with_a_reason(tmp_path):
    text = make_non_video(tmp_path / "notes.txt")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert discovered_message(candidate(text), EXTS).rejected == "not_a_video"
    msg = discovered_message(candidate(empty), EXTS)
    assert msg.rejected == "empty_file" and msg.fingerprint.startswith("path:")


def test_a_name_that_is_not_utf8_is_recorded_as_failed(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.mp4")
    with open(raw, "wb") as fh:
        fh.write(b"\0" * 100)
    path = os.fsdecode(raw)
    msg = round_trip(discovered_message(candidate(path), EXTS))
    assert msg.rejected == "bad_file_name"
    assert "\\xe9" in msg.path and "\\xff" in msg.path
    catalog = Catalog(tmp_path / "catalog.sqlite")  # the index can store it: no crash loop on a strange name
    video, created = catalog.add_video(msg.fingerprint, msg.path, "movie", msg.size, msg.mtime,
                                       status="failed", reason=msg.rejected)
    assert created and video.status == "failed"
