"""Crash faults with the catalog in PostgreSQL (catalog.url, the throwaway server of .ci/services.sh): `kill -9` of
the index mid-video, and the PostgreSQL server itself crashing and restarting mid-video (`pg_ctl restart -m
immediate`: no shutdown checkpoint, crash recovery at start). Afterwards every video is finished and the catalog
holds exactly the patches and pairs an undisturbed run of these inputs holds (see test_reliability_crash.py's
baseline: 2 videos x 3 windows x 2 persons = 12 patches, the same view for a (frame, person) in both domains, and
every same-view movie x game pair), with no duplicates and no orphans.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.reliability_helpers import (
    all_finished,
    assert_complete_run,
    drop_in_both_domains,
    running_daemon,
    snapshot,
    stage_pid,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FAULT_CONFIG = {"queues": {"high_water_mark": 2}, "decode": {"burst_frames": 0}, "detect": {"patch_size": 64}}
FINISH_TIMEOUT = 240


def drop_both(tmp: Path) -> None:
    drop_in_both_domains(tmp, "clip.mp4", seconds=3.0)


def assert_complete(data: Path, url: str) -> None:
    assert_complete_run(snapshot(data, url), patches_per_video=6)


def test_kill_9_of_the_index_on_postgresql_mid_video_loses_and_duplicates_nothing(tmp_path, postgres_url):
    data = tmp_path / "data"
    with running_daemon(tmp_path, catalog={"url": postgres_url}, **FAULT_CONFIG) as d:
        drop_both(tmp_path)
        d.wait_for(lambda: d.value("humanstyle_patches_total") >= 5, FINISH_TIMEOUT, "patches in the catalog")
        assert not all_finished(data, 2, postgres_url), "the fault came too late"
        os.kill(stage_pid(d, "index"), signal.SIGKILL)
        d.wait_for(lambda: d.value("humanstyle_stage_restarts_total", stage="index") == 1, 60, "index restart")
        d.wait_for(lambda: all_finished(data, 2, postgres_url), FINISH_TIMEOUT, "recovery")
        assert d.health()["status"] == "ok"
    assert not (data / "catalog.sqlite").exists(), "the catalog went to SQLite, not PostgreSQL"
    assert_complete(data, postgres_url)


def test_a_postgresql_crash_and_restart_mid_video_loses_and_duplicates_nothing(tmp_path, postgres_url,
                                                                               postgres_ctl):
    data = tmp_path / "data"
    with running_daemon(tmp_path, catalog={"url": postgres_url}, **FAULT_CONFIG) as d:
        drop_both(tmp_path)
        d.wait_for(lambda: d.value("humanstyle_patches_total") >= 3, FINISH_TIMEOUT, "patches in the catalog")
        assert not all_finished(data, 2, postgres_url), "the fault came too late"
        subprocess.run([postgres_ctl, "restart", "-m", "immediate"], check=True, capture_output=True, timeout=90)
        d.wait_for(lambda: all_finished(data, 2, postgres_url), FINISH_TIMEOUT, "recovery")
        # The index met the dead server, waited and went on, without being restarted.
        assert d.value("humanstyle_errors_total", stage="index", kind="write_failed") >= 1
        assert d.value("humanstyle_stage_restarts_total") == 0
        assert d.health()["status"] == "ok"
        assert "cannot write to" in d.log_text()
    assert_complete(data, postgres_url)
