"""Workers that run one model stage each: a head (loopback, no keys: allowed on one machine) with a worker that only
detects and one that only classifies. The head turns each window's patches from the first into work for the second;
every video ends done with every patch once. Frames travel as JPEG here (the lossy codec end to end). Before any
worker joins, the head's backlog shows the videos' seconds, and waiting for workers past the index's stall timeout
does not make the index redo them. A third worker with another patch size stops with an error naming the key: its
patches would not be the head's."""

from __future__ import annotations

import time

import pytest

from tests.conftest import free_port, write_config
from tests.harness import Daemon
from tests.reliability_helpers import (
    all_finished,
    assert_invariants,
    catalog_value,
    drop_in_both_domains,
    every_cross_domain_pair,
    kill_daemon,
    reliability_sections,
    snapshot,
)
from tests.scale_helpers import Worker, head_sections, head_workers, wait, worker_sections

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
STALL_S = 10.0  # watch.stall_timeout_s: its smallest value


def test_a_detect_only_and_a_classify_only_worker_share_the_work(tmp_path):
    sections = reliability_sections(tmp_path / "head", decode={"burst_frames": 0}, detect={"patch_size": 64},
                                    watch={"stall_timeout_s": STALL_S})
    port = free_port()
    (tmp_path / "head").mkdir()
    head = Daemon(write_config(tmp_path / "head", head_sections(sections, f"127.0.0.1:{port}", None,
                                                               frame_codec="jpeg")), tmp_path / "head" / "daemon.log")
    workers = [Worker(tmp_path / name, worker_sections(sections, tmp_path / name, f"127.0.0.1:{port}", name,
                                                       f"127.0.0.1:{free_port()}", None, stages=[stage]))
               for name, stage in (("detector", "detect"), ("classifier", "classify"))]
    logs = [tmp_path / "head" / "daemon.log", *(w.folder / "worker.log" for w in workers)]
    data = tmp_path / "head" / "data"
    try:
        head.start()
        # No worker yet: the windows wait at the head, the backlog says how much, and waiting past the index's stall
        # timeout is not a stall (no second attempt at either video).
        drop_in_both_domains(tmp_path / "head", "clip.mp4")
        wait(lambda: (head.health()["backlog_video_s"] or 0) >= 3.5 and head.health()["queued"]["window"] >= 1, 60,
             "the backlog", logs)
        time.sleep(STALL_S + 4)
        assert catalog_value(data, "SELECT attempt, status FROM videos") == [(1, "processing")] * 2
        for w in workers:
            w.start()
        wait(lambda: set(head_workers(head)) == {"detector", "classifier"}, 180, "both workers", logs)
        assert head_workers(head)["detector"]["stages"] == ["detect"]
        wait(lambda: all_finished(tmp_path / "head" / "data", 2), 240, "every video", logs)
        assert head.value("humanstyle_remote_items_total", kind="patches", outcome="done") >= 1
        assert workers[0].value("humanstyle_worker_items_total", kind="window") >= 1
        assert workers[1].value("humanstyle_worker_items_total", kind="patches") >= 1
        assert workers[1].value("humanstyle_frames_detected_total") == 0  # it never ran a detector
        snap = snapshot(tmp_path / "head" / "data")
        # A worker whose model settings would give other patches stops at once and says which key differs.
        odd = dict(sections, detect={**sections["detect"], "patch_size": 96})
        stray = Worker(tmp_path / "odd", worker_sections(odd, tmp_path / "odd", f"127.0.0.1:{port}", "odd",
                                                         f"127.0.0.1:{free_port()}", None)).start()
        workers.append(stray)
        assert stray.proc.wait(120) == 1
        assert "detect.patch_size = 96 here, 64 on the head" in stray.log_text()
        assert "odd" not in head_workers(head) and head.value("humanstyle_remote_refused_total", reason="settings") == 1
    finally:
        for w in workers:
            w.kill()
        kill_daemon(head)
    assert_invariants(snap)
    assert {s for s, _ in snap.videos.values()} == {"done"}
    assert snap.counts["patches"] == 2 * 2 * 2  # videos x windows x persons
    assert snap.pairs == every_cross_domain_pair(snap)
