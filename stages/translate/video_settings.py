"""What `translate-video` (and the trainer's preview) can be told; light to import, so the command line's help
shows the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class VideoTranslateSettings:
    margin: float = 0.15  # the daemon's detect.margin: patches framed as the trainer saw them
    smoothing: float = 0.6  # weight of the warped previous output where the flow holds; 0 turns smoothing off
    feather: float = 0.04  # edge blur as a fraction of the person's square side
    box_min_cutoff: float = 1.0  # One Euro filter of the boxes: Hz at rest ...
    box_beta: float = 0.5  # ... and how fast the cut-off rises with speed (long sides per second)
    batch_size: int = 5  # frames per detector call
    codec: str | None = None  # None: by OUT's suffix
    crf: int = 18  # quality of libx264 / libvpx-vp9 (visually lossless at 18)
    score_threshold: float = 0.7  # the daemon's detect.score_threshold: who is a person, where tracks start
    # Detections down to this score reach the tracker, which keeps a half-hidden person on their track (ByteTrack's
    # second association stage, the paper's 0.1); only those above score_threshold or on a track are translated.
    track_threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.track_threshold <= self.score_threshold:
            raise ValueError("track_threshold must be in [0, score_threshold]")


VIDEO_DEFAULTS = VideoTranslateSettings()


def for_detector(detect, **changes) -> VideoTranslateSettings:
    """translate-video's settings for the daemon's `[detect]` section (a DetectSettings): its margin, batch size and
    person threshold, tracking down to track_threshold or the daemon's threshold when that is lower."""
    return replace(VIDEO_DEFAULTS, margin=detect.margin, batch_size=detect.batch_size,
                   score_threshold=detect.score_threshold,
                   track_threshold=min(VIDEO_DEFAULTS.track_threshold, detect.score_threshold), **changes)
