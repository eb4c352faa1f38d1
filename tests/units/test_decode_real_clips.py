"""The decoder on real files (tests/data/video/): one window per second of real time, anchors inside the real
duration, the right status; expectations come from ffprobe's facts (tests/real_clips.py, SOURCES.md)."""

from __future__ import annotations

import pytest

from humanstyle.stages.decode import decode_windows, probe_video
from tests.real_clips import CLIPS, RealClip

SLACK_S = 0.002  # timestamps are milliseconds; Matroska rounds them to whole ones


def decode(clip: RealClip, **kw):
    dec = decode_windows(clip.path, **kw)
    windows = list(dec)
    return windows, dec.summary


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.name)
def test_one_window_per_second_of_real_time(clip: RealClip) -> None:
    windows, summary = decode(clip)
    assert (summary.status, summary.reason) == (clip.status, clip.reason)
    if clip.at_most_windows is None:
        assert len(windows) == clip.expected_windows
    else:
        assert clip.expected_windows <= len(windows) <= clip.at_most_windows
    assert [w.window_index for w in windows] == list(range(len(windows)))
    for w in windows:
        anchor_t = w.timestamps_s[-1]
        # The anchor lies in its own second and inside the real duration...
        assert w.window_index - SLACK_S <= anchor_t < w.window_index + 1
        assert anchor_t <= clip.last_s + SLACK_S
        # ...burst frames come before it, in the same second, in order.
        assert list(w.frame_indices) == sorted(set(w.frame_indices)) and w.anchor_index == w.frame_indices[-1]
        assert all(w.window_index - SLACK_S <= t <= anchor_t for t in w.timestamps_s)
        assert all(f.shape == (clip.upright[1], clip.upright[0], 3) for f in w.frames)
    complete = windows if clip.status == "done" else []
    for w in complete[:-1]:  # the anchor is the second's last frame: the next frame falls in the next second
        assert w.timestamps_s[-1] + clip.gap_s >= w.window_index + 1 - SLACK_S
    if complete:  # the last, partial second is looked at: its anchor is the clip's last frame
        assert complete[-1].timestamps_s[-1] == pytest.approx(clip.last_s, abs=SLACK_S)


@pytest.mark.parametrize("clip", [c for c in CLIPS if c.status == "done"], ids=lambda c: c.name)
def test_burst_frames_are_spread_over_their_second(clip: RealClip) -> None:
    windows, _ = decode(clip)
    frames_per_second = round(1 / clip.gap_s)
    for w in windows[:-1]:
        if frames_per_second > 5:  # room for 4 burst frames
            assert len(w.frame_indices) == 5
            assert w.timestamps_s[0] - w.window_index < 0.4  # the first burst frame in the second's first 40 %


def test_rotation_is_reported_and_applied() -> None:
    clip = next(c for c in CLIPS if c.rotation)
    info = probe_video(clip.path)
    assert info.rotation == clip.rotation
    assert (info.width, info.height) == clip.upright


def test_a_header_that_doubles_rate_and_count_is_not_believed() -> None:
    clip = next(c for c in CLIPS if c.name == "pancake_header_60fps.mkv")
    info = probe_video(clip.path)
    assert info.fps_source == "timestamps" and abs(info.fps - 1 / clip.gap_s) < 1.0
    # The container's own duration is still right: its count and rate lie together.
    assert info.duration_s == pytest.approx(clip.real_duration_s, abs=0.1)


@pytest.mark.parametrize("name", ["two_persons_vfr.mp4", "eye_makeup.avi", "no_duration.webm"])
def test_a_restart_redoes_exactly_the_same_windows(name: str) -> None:
    clip = next(c for c in CLIPS if c.name == name)
    full, _ = decode(clip)
    for start in range(1, len(full)):
        tail, summary = decode(clip, start_window=start)
        assert [(w.window_index, w.frame_indices, w.timestamps_s) for w in tail] == \
               [(w.window_index, w.frame_indices, w.timestamps_s) for w in full[start:]]
        assert summary.status == "done"


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.name)
@pytest.mark.parametrize("size", [1, 2, 3])
def test_segments_together_are_the_whole_video(clip: RealClip, size: int) -> None:
    """Segments of `size` windows (the last one to the end of the file, as stages/store/segments.py plans them) give
    exactly the windows, frames and pixels of one decode from start to end, and the whole video's status."""
    import numpy as np

    from humanstyle.stages.store.segments import plan

    full, whole = decode(clip)
    expected = decode_windows(clip.path).expected_windows or 0
    parts = [decode(clip, start_window=a, end_window=b) for a, b in plan(expected, size)]
    joined = [w for windows, _ in parts for w in windows]
    assert [(w.window_index, w.frame_indices, w.timestamps_s) for w in joined] == \
           [(w.window_index, w.frame_indices, w.timestamps_s) for w in full]
    assert all(np.array_equal(a, b) for x, y in zip(joined, full, strict=True)
               for a, b in zip(x.frames, y.frames, strict=True))
    statuses = {s.status for _, s in parts}
    assert ("partial" if "partial" in statuses else "done") == whole.status
    assert sum(s.frames_own for _, s in parts) == whole.frames_own
