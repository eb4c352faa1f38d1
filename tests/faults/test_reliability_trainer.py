"""kill -9 of the trainer: it is restarted and resumes from its last checkpoint (latest.pt), not from step 0."""

from __future__ import annotations

import ast
import os
import re
import signal

import pytest

from tests.reliability_helpers import all_finished, drop, running_daemon, stage_pid, staged_clip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

TINY_TRAINING = {
    "enabled": True, "threads": 1, "nice": 0, "min_pairs": 1, "min_patches": 1, "checkpoint_every": 4,
    "sample_every": 100000, "validate_every": 100000, "refresh_every_s": 1.0, "test_fraction": 0.0,
    "pix2pix_image_size": 64, "pix2pix_batch_size": 2, "pix2pix_ngf": 4, "pix2pix_ndf": 4,
    "cyclegan_image_size": 32, "cyclegan_batch_size": 1, "cyclegan_ngf": 4, "cyclegan_ndf": 4, "cyclegan_blocks": 1,
}


def test_kill_9_of_the_trainer_resumes_from_its_last_checkpoint(tmp_path):
    clip = staged_clip(tmp_path, "clip.mp4", seconds=1.0)
    with running_daemon(tmp_path, train=TINY_TRAINING, decode={"burst_frames": 0},
                        detect={"patch_size": 64}) as d:
        drop(tmp_path, clip, "movie")
        drop(tmp_path, clip, "game", trailer=b"\0" * 16)
        d.wait_for(lambda: all_finished(tmp_path / "data", 2), 180, "both videos")
        d.wait_for(lambda: d.value("humanstyle_checkpoints_written_total") >= 3, 240, "a checkpoint")
        assert d.value("humanstyle_stage_restarts_total", stage="train") == 0, "the trainer crashed on its own"
        latest = tmp_path / "data" / "train" / "checkpoints" / "latest.pt"
        assert latest.is_file()
        os.kill(stage_pid(d, "train"), signal.SIGKILL)
        d.wait_for(lambda: d.value("humanstyle_stage_restarts_total", stage="train") == 1, 60, "train restart")
        d.wait_for(lambda: "resumed from" in d.log_text(), 180, "the trainer to resume")
        line = [ln for ln in d.log_text().splitlines() if "resumed from" in ln][-1]
        steps = ast.literal_eval(re.search(r"at steps (\{.*\})", line).group(1))
        assert str(latest) in line
        assert max(steps.values()) >= TINY_TRAINING["checkpoint_every"], f"resumed at {steps}"
        before = d.value("humanstyle_train_steps_total")
        d.wait_for(lambda: d.value("humanstyle_train_steps_total") > before, 120, "training to go on")
