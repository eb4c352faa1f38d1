"""The real clips under tests/data/video/ and what decoding each must give, transcribed from the ffprobe
measurements in tests/data/video/SOURCES.md (never from running the decoder).

Per clip: the frames' timestamps, counted from the first frame, run from 0 to `last_s`; the median gap between
them is `gap_s`, so the real duration is last_s + gap_s. Every second from 0 to floor(last_s) holds frames, so a
complete clip gives floor(last_s) + 1 windows. A clip whose frames stop early gives one window per whole second
before the stop (`windows`); `at_most_windows` bounds it where OpenCV's reader stops before ffprobe's does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

VIDEO_DIR = Path(__file__).resolve().parent / "data" / "video"


@dataclass(frozen=True)
class RealClip:
    name: str
    upright: tuple[int, int]  # (width, height) of the frames as displayed
    rotation: int  # display rotation to apply, degrees clockwise
    last_s: float  # last frame's time since the first frame
    gap_s: float  # median gap between frames
    status: str = "done"
    reason: str | None = None
    windows: int | None = None  # None: floor(last_s) + 1
    at_most_windows: int | None = None  # for a clip whose reader may stop earlier than ffprobe's

    @property
    def path(self) -> Path:
        return VIDEO_DIR / self.name

    @property
    def real_duration_s(self) -> float:
        return self.last_s + self.gap_s

    @property
    def expected_windows(self) -> int:
        return self.windows if self.windows is not None else math.floor(self.last_s + 1e-4) + 1


CLIPS = [
    RealClip("eye_makeup.avi", (320, 240), 0, last_s=6.52, gap_s=0.04),
    RealClip("bikes.mp4", (640, 272), 0, last_s=9.96, gap_s=0.04),
    RealClip("flipping_a_pancake.mkv", (426, 240), 0, last_s=10.30, gap_s=0.033),
    RealClip("no_duration.webm", (1280, 720), 0, last_s=4.872, gap_s=0.067),
    RealClip("iphone_rotated.mov", (320, 568), 90, last_s=2.168333, gap_s=0.033333),
    RealClip("two_persons_vfr.mp4", (1920, 1080), 0, last_s=2.533333, gap_s=0.033333),
    RealClip("pancake_header_60fps.mkv", (426, 240), 0, last_s=10.30, gap_s=0.033),
    # Cut at half its bytes: frames stop at 3.04 s of the 6.56 s the header promises. Seconds 0-2 are whole;
    # second 3 holds two frames and was cut, so it is dropped.
    RealClip("eye_makeup_cut.avi", (320, 240), 0, last_s=3.04, gap_s=0.04, status="partial",
             reason="truncated", windows=3),
    # A broken packet at 3.0 s of 5.0 s: ffprobe conceals it and goes on, OpenCV's reader stops before it.
    # Seconds 0 and 1 decode whole either way; at most seconds 0-2 come before the broken packet.
    RealClip("corrupted_packet.mp4", (1280, 720), 0, last_s=2.9, gap_s=0.1, status="partial", reason="truncated",
             windows=2, at_most_windows=3),
]
