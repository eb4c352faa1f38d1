"""Windowed decoding: plans, real generated clips, broken files. Clips are small (320x240) and shared per module."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanstyle.stages import decode
from humanstyle.stages.decode import (
    NotAVideo,
    decode_windows,
    plan_window,
    probe_video,
    resolve_fps,
)
from tests.media import faststart, make_clip, make_corrupt, make_non_video, read_frame_index, truncate


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip10(media: Path) -> Path:
    return make_clip(media / "ten seconds.mp4", 10)


def windows_of(path: Path, **kw):
    dec = decode_windows(path, **kw)
    return list(dec), dec.summary


def assert_frames_match(windows) -> None:
    for w in windows:
        assert [read_frame_index(f) for f in w.frames] == list(w.frame_indices)


class CountingCapture:
    """Wraps a cv2.VideoCapture to count retrieves and optionally lie about the frame count, the rate and the
    frames' times (`pos_ms` maps the real position in ms to the reported one)."""

    def __init__(self, cap, frame_count=None, log=None, fps=None, pos_ms=None):
        self.cap, self.frame_count, self.log, self.fps, self.pos_ms = cap, frame_count, log, fps, pos_ms

    def retrieve(self):
        self.log.append(1)
        return self.cap.retrieve()

    def get(self, prop):
        if prop == cv2.CAP_PROP_FRAME_COUNT and self.frame_count is not None:
            return self.frame_count
        if prop == cv2.CAP_PROP_FPS and self.fps is not None:
            return self.fps
        if prop == cv2.CAP_PROP_POS_MSEC and self.pos_ms is not None:
            return self.pos_ms(self.cap.get(prop))
        return self.cap.get(prop)

    def __getattr__(self, name):
        return getattr(self.cap, name)


@pytest.fixture
def fake_capture(monkeypatch: pytest.MonkeyPatch):
    def install(frame_count=None, fps=None, pos_ms=None):
        log: list[int] = []
        real = decode._open
        monkeypatch.setattr(decode, "_open",
                            lambda p, c: CountingCapture(real(p, c), frame_count, log, fps, pos_ms))
        return log

    return install


# --- pure planning ---------------------------------------------------------------------------------


def test_plan_for_a_whole_second_at_24fps() -> None:
    assert plan_window(0, 24) == decode.WindowPlan(23, (4, 9, 13, 18))
    assert plan_window(216, 24).frame_indices == (220, 225, 229, 234, 239)


@settings(deadline=None)  # timing belongs to bench/; a busy machine must not fail a pure-logic property
@given(st.integers(0, 100000), st.integers(1, 300), st.integers(0, 10))
def test_plan_invariants(first: int, n: int, burst: int) -> None:
    plan = plan_window(first, n, burst)
    assert plan.anchor_index == first + n - 1
    assert len(plan.burst_indices) == min(burst, n - 1)
    assert list(plan.burst_indices) == sorted(set(plan.burst_indices))
    assert all(first <= i < plan.anchor_index for i in plan.burst_indices)
    if n - 1 >= burst:  # evenly spread: steps from the previous anchor differ by at most one frame
        points = [first - 1, *plan.frame_indices]
        steps = [b - a for a, b in zip(points, points[1:], strict=False)]
        assert max(steps) - min(steps) <= 1


def test_plan_rejects_nonsense() -> None:
    for args in [(-1, 24, 4), (0, 0, 4), (0, 24, -1)]:
        with pytest.raises(ValueError):
            plan_window(*args)


def test_resolve_fps_falls_back_to_timestamps_then_default() -> None:
    assert resolve_fps(29.97, []) == (29.97, "container")
    assert resolve_fps(0.0, [0, 40, 80, 120]) == (25.0, "timestamps")
    fps, source = resolve_fps(90000.0, [0, 33.3, 66.7, 100, 100])  # a timebase, not a rate; one duplicate
    assert (fps, source) == (pytest.approx(30.0, rel=0.01), "timestamps")
    assert resolve_fps(math.nan, []) == (decode.DEFAULT_FPS, "default")


def test_resolve_fps_distrusts_a_container_rate_the_timestamps_contradict() -> None:
    fields = [40.0 * i for i in range(25)]  # frames 40 ms apart (25 fps) in a header that says 50 fps
    assert resolve_fps(50.0, fields) == (25.0, "timestamps")
    jitter = [0, 34, 66, 101, 133, 166, 200]  # a phone's 30 fps: within RATE_TOLERANCE of its container average
    assert resolve_fps(29.5, jitter) == (29.5, "container")


# --- real clips ------------------------------------------------------------------------------------


def test_ten_seconds_give_ten_windows(clip10: Path, fake_capture) -> None:
    retrieves = fake_capture()
    windows, summary = windows_of(clip10)
    assert [w.window_index for w in windows] == list(range(10))
    assert [w.anchor_index for w in windows] == [24 * k + 23 for k in range(10)]
    for w in windows:
        burst = w.frame_indices[:-1]
        assert len(burst) == 4 and all(w.anchor_index - 23 <= i < w.anchor_index for i in burst)
        assert w.frames[0].shape == (240, 320, 3) and w.frames[0].dtype == "uint8"
        assert w.timestamps_s == pytest.approx([i / 24 for i in w.frame_indices])
    assert_frames_match(windows)
    assert summary == decode.DecodeSummary("done", None, 240, 10, 24.0, 0, 240)
    # 5 planned frames per window are converted, plus every frame of the last second (the end-of-file
    # safety net): 9 * 5 + 24; the rest are grab()-only.
    assert len(retrieves) - 1 == 9 * 5 + 24  # - 1: probe_video's first frame


def test_probe(clip10: Path) -> None:
    info = probe_video(clip10)
    assert info == decode.VideoInfo(24.0, 240, 320, 240, 0, 10.0, "container", "mp4")


@pytest.mark.parametrize(("seconds", "expected"), [
    (1.5, [(4, 9, 13, 18, 23), (25, 28, 30, 33, 35)]),  # 36 frames: a short tail window of 12
    (0.4, [(1, 3, 5, 7, 9)]),  # 10 frames: one short window
    (1 / 24, [(0,)]),  # a single frame: anchor only
])
def test_short_tails_form_one_short_window(media: Path, seconds: float, expected) -> None:
    windows, summary = windows_of(make_clip(media / f"short{seconds:.3f}.mp4", seconds))
    assert [w.frame_indices for w in windows] == expected
    assert_frames_match(windows)
    assert summary.status == "done"


@pytest.mark.parametrize(("fps", "anchors"), [(25, [24, 49]), (30, [29, 59])])
def test_other_frame_rates(media: Path, fps: int, anchors: list[int]) -> None:
    windows, summary = windows_of(make_clip(media / f"fps{fps}.mp4", 2, fps=fps))
    assert [w.anchor_index for w in windows] == anchors
    assert all(len(w.frames) == 5 for w in windows)
    assert_frames_match(windows)
    assert summary.fps_used == fps


def test_odd_size_and_max_side(media: Path) -> None:
    path = make_clip(media / "odd.avi", 1, size=(317, 241), codec="pyavi")
    windows, _ = windows_of(path)
    assert windows[0].anchor.shape == (241, 317, 3)
    assert_frames_match(windows)
    small, _ = windows_of(path, max_side=200)
    assert small[0].anchor.shape == (152, 200, 3)
    assert_frames_match(small)
    same, _ = windows_of(path, max_side=4000)  # never upscales
    assert same[0].anchor.shape == (241, 317, 3)


def test_max_side_downsizes(clip10: Path) -> None:
    windows, _ = windows_of(clip10, max_side=160, start_window=9)
    assert windows[0].anchor.shape == (120, 160, 3)
    assert_frames_match(windows)


def test_rotation_metadata_is_applied(media: Path) -> None:
    path = make_clip(media / "portrait.mp4", 1, rotation=90)
    assert probe_video(path).rotation == 90
    windows, _ = windows_of(path)
    assert windows[0].anchor.shape == (320, 240, 3)  # delivered upright: 90 degrees clockwise
    for w in windows:
        upright = [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in w.frames]
        assert [read_frame_index(f) for f in upright] == list(w.frame_indices)


def test_start_window_skips_done_windows(clip10: Path) -> None:
    windows, summary = windows_of(clip10, start_window=7)
    assert [w.anchor_index for w in windows] == [191, 215, 239]
    assert_frames_match(windows)
    assert (summary.frames_read, summary.windows, summary.status) == (240, 3, "done")
    assert windows_of(clip10, start_window=50)[0] == []


def test_closing_early_reports_stopped(clip10: Path) -> None:
    with decode_windows(clip10) as dec:
        first = next(iter(dec))
    assert first.anchor_index == 23
    assert (dec.summary.status, dec.summary.reason, dec.summary.windows) == ("partial", "stopped", 1)


def test_without_a_frame_count_the_last_frame_still_anchors(media: Path, fake_capture) -> None:
    fake_capture(frame_count=0)
    windows, summary = windows_of(make_clip(media / "nocount.mp4", 1.5))
    # No hint: the tail keeps the full-window burst frames it reached, anchored on the last frame.
    assert [w.frame_indices for w in windows] == [(4, 9, 13, 18, 23), (28, 33, 35)]
    assert_frames_match(windows)
    assert summary.status == "done"


def test_a_frame_count_that_undercounts_does_not_cut_a_second_short(media: Path, fake_capture) -> None:
    fake_capture(frame_count=30)  # the header says 1.25 s; 3 s decode
    windows, summary = windows_of(make_clip(media / "under.mp4", 3))
    # Windows follow the frames' time: second 1 still ends on its own last frame (47). Its burst was planned when
    # it began, over the 6 frames the header said were left; the next second is planned whole.
    assert [w.frame_indices for w in windows] == [(4, 9, 13, 18, 23), (24, 25, 27, 28, 47),
                                                  (52, 57, 61, 66, 71)]
    assert_frames_match(windows)
    assert summary.status == "done"


def test_a_header_that_doubles_rate_and_count_still_gives_one_window_per_second(media: Path,
                                                                                fake_capture) -> None:
    # Like an AVI storing each field as a chunk: 48 fps and 144 frames claimed for 3 s of 24 fps frames.
    fake_capture(frame_count=144, fps=48.0)
    windows, summary = windows_of(make_clip(media / "fields.mp4", 3))
    assert [w.frame_indices for w in windows] == [(4, 9, 13, 18, 23), (28, 33, 37, 42, 47),
                                                  (52, 57, 61, 66, 71)]
    assert_frames_match(windows)
    assert (summary.status, summary.fps_used) == ("done", 24.0)


def test_a_time_jump_past_a_seconds_end_anchors_on_its_last_converted_frame(media: Path, fake_capture) -> None:
    # Frames 20.. are stamped 300 ms late: frame 19 (0.79 s) was not expected to be the last of second 0.
    fake_capture(pos_ms=lambda ms: ms + 300 if ms > 19 * 1000 / 24 + 1 else ms)
    windows, summary = windows_of(make_clip(media / "hole.mp4", 3))
    assert windows[0].frame_indices == (4, 9, 13, 18)
    assert [w.anchor_index for w in windows[1:]] == [40, 64, 71]  # frame i at i/24 + 0.3 s
    assert_frames_match(windows)
    assert summary.status == "done"


def test_a_header_that_overcounts_is_truncated(media: Path, fake_capture) -> None:
    fake_capture(frame_count=120)  # 5 s promised at the container's own 24 fps, 3 s decode
    windows, summary = windows_of(make_clip(media / "over.mp4", 3))
    # The last second ends on a frame that was expected to be last of its second, so it is kept.
    assert [w.anchor_index for w in windows] == [23, 47, 71]
    assert (summary.status, summary.reason) == ("partial", "truncated")


# --- broken files ----------------------------------------------------------------------------------


def test_truncated_avi_yields_windows_up_to_the_cut(media: Path) -> None:
    path = truncate(make_clip(media / "cut.avi", 10, codec="MJPG"), 0.5)
    windows, summary = windows_of(path)
    assert (summary.status, summary.reason) == ("partial", "truncated")
    assert 100 < summary.frames_read < 140
    assert [w.anchor_index for w in windows] == [24 * k + 23 for k in range(summary.frames_read // 24)]
    assert_frames_match(windows)


def test_truncated_faststart_mp4_is_partial(media: Path) -> None:
    path = truncate(faststart(make_clip(media / "cut_fast.mp4", 10)), 0.5)
    windows, summary = windows_of(path)
    assert (summary.status, summary.reason) == ("partial", "truncated")
    assert 3 <= len(windows) < 10
    assert_frames_match(windows[:-1])  # the frame right at the cut may be concealed garbage


def test_mp4_cut_before_its_index_is_truncated(media: Path) -> None:
    path = truncate(make_clip(media / "cut_index.mp4", 2), 0.7)
    with pytest.raises(NotAVideo) as e:
        decode_windows(path)
    assert e.value.reason == "truncated"


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: make_non_video(p / "zero.mp4", "empty"), "empty_file"),
    (lambda p: make_non_video(p / "noise.mp4", "random"), "not_a_video"),
    (lambda p: make_non_video(p / "notes.txt", "text"), "not_a_video"),  # FFmpeg alone would "play" it
    (lambda p: make_non_video(p / "notes.avi", "text"), "not_a_video"),
    (lambda p: make_corrupt(p / "corrupt.mp4"), "unreadable"),
    (lambda p: p / "missing.mp4", "not_found"),
    (lambda p: p, "not_a_video"),  # a directory
])
def test_not_a_video(media: Path, make, reason: str) -> None:
    path = make(media)
    with pytest.raises(NotAVideo) as e:
        probe_video(path)
    assert e.value.reason == reason and reason in decode.NOT_A_VIDEO_REASONS
    with pytest.raises(NotAVideo):
        decode_windows(path)
