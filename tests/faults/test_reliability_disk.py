"""The data folder fills up, then becomes unwritable, while the daemon runs: writes fail cleanly (counted in
humanstyle_errors_total{stage="index"}, no crash loop, no stage restart, nothing half-written left behind) and
everything resumes once space, then permission, returns.

The data folder is a small tmpfs mounted for the test (needs root and mount permission; skipped otherwise, which
fails the run under HUMANSTYLE_REQUIRE_ALL=1, as .ci/run sets it).
"Unwritable" is `chattr +i` on every folder of the data folder: it refuses new files even to root, which chmod
does not."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability_helpers import (
    all_finished,
    assert_invariants,
    drop,
    running_daemon,
    snapshot,
    staged_clip,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def run(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True).returncode == 0
    except OSError:  # the tool is not installed: as unsupported as a refusal
        return False


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "data"
    mount.mkdir()
    if os.geteuid() != 0 or not run("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)):
        pytest.skip("cannot mount a tmpfs here (needs root in a sandbox that allows mount)")
    try:
        yield mount
    finally:
        for folder in [mount, *[p for p in mount.rglob("*") if p.is_dir()]]:
            run("chattr", "-i", str(folder))
        run("umount", "-l", str(mount))


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError):  # the last partial chunk
        with open(filler, "ab") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    return filler


def folders(root: Path) -> list[Path]:
    return [root, *[p for p in root.rglob("*") if p.is_dir()]]


def test_a_full_then_unwritable_data_folder_pauses_writes_and_resumes(tmp_path, small_fs):
    errors = ("humanstyle_errors_total",)
    with running_daemon(tmp_path, paths={"data_dir": str(small_fs)}, decode={"burst_frames": 0},
                        detect={"patch_size": 64}, supervisor={"crash_loop_restarts": 5}) as d:
        # Something processed first, so the catalog, its WAL and the patch folders exist.
        drop(tmp_path, staged_clip(tmp_path, "first.mp4", seconds=1.0), "movie")
        d.wait_for(lambda: all_finished(small_fs, 1), 180, "the first video")

        # 1. Disk full.
        filler = fill(small_fs)
        drop(tmp_path, staged_clip(tmp_path, "while-full.mp4", seconds=1.0, size=(176, 128)), "movie")
        d.wait_for(lambda: d.value(*errors, stage="index") >= 1, 180, "a failed write")
        time.sleep(3)
        assert d.value("humanstyle_stage_restarts_total") == 0, "a stage crashed on a full disk"
        assert not all_finished(small_fs, 2)
        filler.unlink()
        d.wait_for(lambda: all_finished(small_fs, 2), 180, "the video once space returned")
        failures_full = d.value(*errors, stage="index")

        # 2. Unwritable (immutable folders). Where chattr +i does not work the phase cannot run; the final checks
        # still do, and the test skips at the very end (a failure under HUMANSTYLE_REQUIRE_ALL=1, as in CI).
        locked = folders(small_fs)
        unwritable = all(run("chattr", "+i", str(f)) for f in locked)
        if unwritable:
            try:
                drop(tmp_path, staged_clip(tmp_path, "while-locked.mp4", seconds=1.0, size=(192, 144)), "game")
                d.wait_for(lambda: d.value(*errors, stage="index") > failures_full, 180, "a refused write")
                time.sleep(3)
                assert d.value("humanstyle_stage_restarts_total") == 0, "a stage crashed on an unwritable folder"
            finally:
                for f in locked:
                    run("chattr", "-i", str(f))
        else:
            for f in locked:
                run("chattr", "-i", str(f))
        videos = 3 if unwritable else 2
        d.wait_for(lambda: all_finished(small_fs, videos), 180, "the video once permission returned")
        assert d.health()["status"] == "ok"
        snap = snapshot(small_fs)
    assert_invariants(snap)
    assert {s for s, _ in snap.videos.values()} == {"done"}
    assert snap.counts["patches"] == videos * 2  # one-window videos, two persons each
    assert not list(small_fs.rglob("*.tmp")), "temporary files left behind"
    if not unwritable:
        pytest.skip("chattr +i is not supported on this tmpfs: the unwritable phase did not run")
