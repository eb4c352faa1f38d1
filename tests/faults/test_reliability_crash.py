"""Crash faults on the real daemon: `kill -9` of each stage process in the middle of a video, and of the whole
daemon (then a new daemon on the same data folder). After recovery every video is finished, and the SET of
patches and pairs equals that of an undisturbed run of the same inputs, with no duplicates and no orphans.

Inputs: one 3-second clip dropped as a movie video and, with 16 trailing bytes (another fingerprint, the same
frames), as a game video; so identical patches exist on both sides and every kept view yields pairs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.harness import Daemon
from tests.reliability_helpers import (
    all_finished,
    assert_complete_run,
    assert_same_results,
    catalog_value,
    drop_both,
    kill_daemon,
    running_daemon,
    snapshot,
    stage_pid,
    staged_clip,
    undisturbed_run,
    wait_children_gone,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Three windows per video; a high-water mark of 2 keeps the decoder genuinely mid-video (blocked on a full
# queue) while the models work, instead of having sent a whole clip in a few milliseconds.
FAULT_CONFIG = {"queues": {"high_water_mark": 2}, "decode": {"burst_frames": 0},
                "detect": {"patch_size": 64}}
SECONDS = 3.0
FINISH_TIMEOUT = 240


@pytest.fixture(scope="module")
def source_clip(tmp_path_factory) -> Path:
    """One clip shared by every run, so fingerprints are the same in the baseline and the faulted runs."""
    return staged_clip(tmp_path_factory.mktemp("media"), "clip.mp4", seconds=SECONDS)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, source_clip):
    """The undisturbed run."""
    return undisturbed_run(tmp_path_factory.mktemp("baseline"), source_clip, FINISH_TIMEOUT, **FAULT_CONFIG)


def mid_video(d: Daemon, data: Path, ready) -> None:
    """Wait until `ready(d)` says the stage holds work, then check that no video is finished yet."""
    d.wait_for(lambda: ready(d), FINISH_TIMEOUT, "work in progress")
    assert not all_finished(data, 2), "the fault came too late: the videos were already finished"


# When to pull the trigger: the victim stage has started on the videos and they are not finished.
TRIGGERS = {
    "decode": lambda d: d.value("humanstyle_windows_sent_total") >= 4,  # into the second video
    "detect": lambda d: d.value("humanstyle_frames_detected_total", kind="anchor") >= 2,
    "classify": lambda d: d.value("humanstyle_patches_total") >= 3,
    "index": lambda d: d.value("humanstyle_patches_total") >= 5,
    "pairing": lambda d: d.value("humanstyle_patches_total") >= 5,
}


def test_baseline_is_complete(baseline):
    # 3 windows (anchor only) x 2 persons per video; min_similarity -1 and top_k 100 (more than the 6 patches per
    # domain) in the reliability settings; the patches are deterministic (seeded models, one torch thread).
    assert_complete_run(baseline, patches_per_video=3 * 2)


@pytest.mark.parametrize("stage", ["decode", "detect", "classify", "index", "pairing"])
def test_kill_9_of_a_worker_or_the_index_mid_video_loses_and_duplicates_nothing(tmp_path, source_clip, baseline,
                                                                                 stage):
    with running_daemon(tmp_path, **FAULT_CONFIG) as d:
        drop_both(tmp_path, source_clip)
        mid_video(d, tmp_path / "data", TRIGGERS[stage])
        victim = stage_pid(d, stage)
        os.kill(victim, signal.SIGKILL)
        d.wait_for(lambda: d.value("humanstyle_stage_restarts_total", stage=stage) == 1, 60, f"{stage} restart")
        d.wait_for(lambda: all_finished(tmp_path / "data", 2), FINISH_TIMEOUT, "recovery")
        assert d.health()["status"] == "ok"
        assert victim not in d.health()["stages"][stage]["pids"]
        snap = snapshot(tmp_path / "data")
    assert_same_results(snap, baseline)


def recorded_files(data: Path) -> list[str]:
    return sorted(Path(p).parent.name for (p,) in catalog_value(data, "SELECT path FROM files"))


def test_kill_9_of_the_watcher_while_a_file_waits_to_be_stable(tmp_path, source_clip, baseline):
    """The watcher is frozen (SIGSTOP) before the game file arrives, so that file is certainly unreported when the
    watcher dies, whatever the machine's speed; only the restarted watcher's start-up scan can find it."""
    data = tmp_path / "data"
    with running_daemon(tmp_path, **FAULT_CONFIG) as d:
        drop_both(tmp_path, source_clip, domains=("movie",))
        mid_video(d, data, lambda d: d.value("humanstyle_videos_total", status="processing") >= 1)
        watcher = stage_pid(d, "watch")
        os.kill(watcher, signal.SIGSTOP)
        drop_both(tmp_path, source_clip, domains=("game",))
        assert recorded_files(data) == ["movie"]
        os.kill(watcher, signal.SIGKILL)
        d.wait_for(lambda: d.value("humanstyle_stage_restarts_total", stage="watch") == 1, 60, "watch restart")
        d.wait_for(lambda: recorded_files(data) == ["game", "movie"], 60, "the restarted watcher to find the file")
        d.wait_for(lambda: all_finished(data, 2), FINISH_TIMEOUT, "recovery")
        snap = snapshot(data)
    assert_same_results(snap, baseline)


def test_kill_9_of_the_whole_daemon_then_a_new_daemon_on_the_same_data(tmp_path, source_clip, baseline):
    with running_daemon(tmp_path, **FAULT_CONFIG) as d:
        drop_both(tmp_path, source_clip)
        mid_video(d, tmp_path / "data", lambda d: d.value("humanstyle_patches_total") >= 4)
        d.health()  # remember every child pid
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        wait_children_gone(d)  # PR_SET_PDEATHSIG: the stages go with the supervisor
    assert not all_finished(tmp_path / "data", 2)
    second = Daemon(d.config_path, tmp_path / "daemon-2.log")
    try:
        second.start()
        second.wait_for(lambda: all_finished(tmp_path / "data", 2), FINISH_TIMEOUT, "recovery after restart")
        snap = snapshot(tmp_path / "data")
        assert second.stop(signal.SIGTERM) == 0
        assert second.alive_children() == []
    finally:
        kill_daemon(second)
    assert_same_results(snap, baseline)
