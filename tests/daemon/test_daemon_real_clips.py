"""The real daemon on the real clips (tests/data/video/), all dropped at once: each ends done with one window
per second of its real duration, the cut and the broken one partial/truncated (expectations: tests/real_clips.py,
from ffprobe's facts in SOURCES.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import fast_sections, write_config
from tests.harness import Daemon
from tests.real_clips import CLIPS
from tests.reliability_helpers import all_finished, catalog_value, kill_daemon


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_clips_dropped_at_once(tmp_path: Path) -> None:
    # Threshold 1.0: no anchor hits, so no burst runs; the windows are what is checked here.
    sections = fast_sections(tmp_path, detect={"score_threshold": 1.0}, decode={"max_side": 320})
    d = Daemon(write_config(tmp_path, sections), tmp_path / "daemon.log")
    try:
        d.start()
        staging = tmp_path / "staging"
        staging.mkdir()
        for i, clip in enumerate(CLIPS):
            domain = ("movie", "game")[i % 2]
            shutil.copyfile(clip.path, staging / clip.name)
            (tmp_path / "watch" / domain).mkdir(parents=True, exist_ok=True)
            os.replace(staging / clip.name, tmp_path / "watch" / domain / clip.name)
        data = tmp_path / "data"
        d.wait_for(lambda: all_finished(data, len(CLIPS)), 240, "every clip to finish")
        rows = catalog_value(data, "SELECT f.path, v.status, v.reason, v.windows FROM files f JOIN videos v "
                                   "ON v.id = f.video_id")
        assert d.value("humanstyle_stage_restarts_total") == 0
    finally:
        kill_daemon(d)
    got = {Path(path).name: (status, reason or None, windows) for path, status, reason, windows in rows}
    for clip in CLIPS:
        status, reason, windows = got[clip.name]
        assert (status, reason) == (clip.status, clip.reason), clip.name
        top = clip.at_most_windows or clip.expected_windows
        assert clip.expected_windows <= windows <= top, f"{clip.name}: {windows} windows"
