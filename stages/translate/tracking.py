"""People followed across the frames of a video, for `translate-video`: Roboflow's `trackers` ByteTrack, and a
smoothing filter over each track's box so that a person's square patch glides instead of jittering.

ByteTrack is the library's; what is ours is only how it is set up for this detector:
- timestamps, not frame counts: the decoder hands out presentation times, and a phone's variable frame rate (a
  200 ms hole in `two_persons_vfr.mp4`) would otherwise age the tracks by one frame where six passed;
- two thresholds, as ByteTrack means them: the daemon's detect.score_threshold (0.7) decides who is a person and
  where a track may start (its first association stage), and detections down to a low score (0.1, the paper's)
  reach its second stage, which keeps a half-hidden person on their track. Fed only detections above 0.7, the
  second stage never sees one, and a person coming out from behind another got a new track in 15 of 20 runs of
  bench/tracking.py, against none with every detection;
- a track is reported from its first frame (`minimum_consecutive_frames = 1`): a person is translated from the
  frame they appear on either way; the track only decides how their box is smoothed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LOST_TRACK_S = 1.0  # how long a person may go unseen (occluded, missed) and keep their track


def make_tracker(fps: float, score_threshold: float):
    """ByteTrack for a video of `fps` frames per second; `score_threshold`: who is a person (feed it detections
    down to a low score; see the module docstring)."""
    try:
        from trackers import ByteTrackTracker
    except ImportError as exc:
        raise ImportError(f"translate-video needs Roboflow's trackers ({exc}): pip install --no-deps -c "
                          "constraints.txt trackers (without its dependencies: see pyproject.toml)") from None

    rate = fps if math.isfinite(fps) and fps > 0 else 30.0
    return ByteTrackTracker(lost_track_buffer=round(LOST_TRACK_S * 30), frame_rate=rate,
                            track_activation_threshold=score_threshold, minimum_consecutive_frames=1,
                            high_conf_det_threshold=score_threshold)


def track(tracker, boxes: np.ndarray, scores: np.ndarray, timestamp: float) -> np.ndarray:
    """The track id of each detection (-1: not tracked yet), in the detections' own order."""
    import supervision as sv

    n = len(boxes)
    ids = np.full(n, -1, dtype=np.int64)
    detections = sv.Detections(xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                               confidence=np.asarray(scores, dtype=np.float32).reshape(-1),
                               data={"order": np.arange(n)})
    result = tracker.update(detections, timestamp=timestamp)
    if len(result):
        ids[np.asarray(result.data["order"], dtype=np.int64)] = np.asarray(result.tracker_id, dtype=np.int64)
    return ids


@dataclass
class OneEuro:
    """The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) on a vector: a low-pass whose cut-off rises with
    speed, so a still box stops shaking and a moving one follows without lag. Times in seconds."""

    min_cutoff: float = 1.0  # Hz: smoothing at rest
    beta: float = 0.5  # how fast the cut-off rises with speed (per unit of the value per second)
    d_cutoff: float = 1.0  # Hz: smoothing of the speed estimate itself
    _value: np.ndarray | None = field(default=None, repr=False)
    _speed: np.ndarray | None = field(default=None, repr=False)
    _time: float = 0.0

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value: np.ndarray, time: float) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None or time <= self._time:
            self._value, self._speed, self._time = value, np.zeros_like(value), time
            return value
        dt = time - self._time
        speed = (value - self._value) / dt
        self._speed = self._speed + self._alpha(self.d_cutoff, dt) * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        self._value = self._value + self._alpha(cutoff, dt) * (value - self._value)
        self._time = time
        return self._value


class BoxSmoother:
    """One filter per track over (centre x, centre y, long side), measured in the track's first long side, so one
    setting fits a person 50 px and 500 px tall; a track not seen for LOST_TRACK_S is forgotten."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5) -> None:
        self.min_cutoff, self.beta = min_cutoff, beta
        self.filters: dict[int, tuple[OneEuro, float]] = {}
        self.seen: dict[int, float] = {}

    def __call__(self, track_id: int, box, time: float) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        if track_id < 0:
            return x1, y1, x2, y2
        for stale in [t for t, last in self.seen.items() if time - last > LOST_TRACK_S]:
            del self.filters[stale], self.seen[stale]
        side = max(x2 - x1, y2 - y1)
        f, unit = self.filters.setdefault(track_id, (OneEuro(self.min_cutoff, self.beta), side))
        cx, cy, s = f(np.array([(x1 + x2) / 2, (y1 + y2) / 2, side]) / unit, time) * unit
        self.seen[track_id] = time
        # The person's own aspect kept, the long side smoothed: the square cut around it then has a steady size.
        ratio = s / side
        half_w, half_h = (x2 - x1) / 2 * ratio, (y2 - y1) / 2 * ratio
        return cx - half_w, cy - half_h, cx + half_w, cy + half_h
