"""The records that travel between stages, each defined once.

A record is a frozen dataclass: its plain fields (int, float, str, bool, lists of numbers) travel as JSON and its
arrays (fields declared with `array(dtype)`) as raw buffers; `daemon.runtime.wire` derives every message schema
from these declarations, so a field added here is framed, validated and documented in one place. `check()` states
what a record must mean beyond its types (frames that match their indices, a square with a side): a well-typed
message that breaks it would otherwise crash the stage that computes with it, and crash it again when replayed.

Stage logic consumes and produces these records and never sees a socket; the daemon's stage loop carries them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from humanstyle.stages.vocabulary import VERDICTS


class RecordError(ValueError):
    """A record whose values cannot be what they claim; `reason` is a stable snake_case code (a metric label)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def array(dtype: str) -> Any:
    """Declare an array field of the given numpy dtype: it travels as a raw buffer, never as JSON."""
    return field(metadata={"array": dtype})


@dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every record; TYPE names it on the wire."""

    TYPE: ClassVar[str] = ""

    def check(self) -> None:
        """Raise RecordError when the values cannot be what they claim."""

    def fields(self) -> dict[str, Any]:
        """The plain (JSON) fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if "array" not in f.metadata}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if "array" in f.metadata}


@dataclass(frozen=True, kw_only=True)
class Discovered(Record):
    """watcher -> indexer: a file that stopped growing (`rejected` names why it cannot be a video, else "")."""

    TYPE: ClassVar[str] = "discovered"
    path: str
    domain: str
    size: int
    mtime: float
    fingerprint: str
    rejected: str


@dataclass(frozen=True, kw_only=True)
class Job(Record):
    """indexer -> decoder: decode one segment of a video, windows `start_window` up to `end_window` (exclusive; 0 =
    to the end of the file). The file is `path`, or the storage's object `source` when that is set."""

    TYPE: ClassVar[str] = "job"
    video_id: int
    attempt: int
    path: str
    source: str
    domain: str
    start_window: int
    end_window: int

    def check(self) -> None:
        if self.start_window < 0 or self.end_window < 0:
            raise RecordError("bad_field", "job.start_window and job.end_window must be >= 0")
        if self.end_window and self.end_window <= self.start_window:
            raise RecordError("bad_field", "job.end_window must be past job.start_window (or 0)")


@dataclass(frozen=True, kw_only=True)
class VideoWork(Record):
    """A unit of work of one video, in one attempt at it (results of an abandoned attempt still count: they are
    the same, because everything downstream is deterministic)."""

    video_id: int
    attempt: int
    domain: str


@dataclass(frozen=True, kw_only=True)
class Window(VideoWork):
    """decoder -> detector: one second of video, burst frames first, the anchor last."""

    TYPE: ClassVar[str] = "window"
    window_index: int
    anchor_index: int
    frame_indices: list
    timestamps: list
    frames: np.ndarray = array("uint8")

    def check(self) -> None:
        shape = self.frames.shape
        if len(shape) != 4 or not shape[0]:
            raise RecordError("bad_array", f"frames must be N x H x W x 3, not {list(shape)}")
        image_shape("frames", shape[1:])
        if not len(self.frame_indices) == len(self.timestamps) == shape[0]:
            raise RecordError("bad_field", f"{shape[0]} frames, {len(self.frame_indices)} indices, "
                                           f"{len(self.timestamps)} timestamps")
        if not all(is_int(i) for i in self.frame_indices) or not all(is_number(t) for t in self.timestamps):
            raise RecordError("bad_field", "frame_indices must be integers and timestamps numbers")


@dataclass(frozen=True, kw_only=True)
class VideoEnd(VideoWork):
    """decoder -> detector -> classifier -> indexer: the decoder is finished with a segment of a video (the one
    starting at `start_window`)."""

    TYPE: ClassVar[str] = "video_end"
    start_window: int
    windows: int
    frames_read: int  # frames of its own segment the decoder read
    status: str
    reason: str
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class WindowDone(VideoWork):
    """detector -> classifier -> indexer: a window is fully detected; says how many patches to expect."""

    TYPE: ClassVar[str] = "window_done"
    window_index: int
    patches: int
    anchor_hit: bool
    frames: int


@dataclass(frozen=True, kw_only=True)
class Patch(VideoWork):
    """detector -> classifier: one person's square patch (`box` and `square` in frame pixels, see stages.detect)."""

    TYPE: ClassVar[str] = "patch"
    window_index: int
    frame_index: int
    person_index: int
    kind: str
    timestamp: float
    box: list
    square: list
    score: float
    image: np.ndarray = array("uint8")
    mask: np.ndarray = array("uint8")

    def check(self) -> None:
        if self.mask.shape != image_shape("image", self.image.shape):
            raise RecordError("bad_array", f"mask {list(self.mask.shape)} does not match image "
                                           f"{list(self.image.shape)}")
        box, square = self.box, self.square
        if not (len(box) == len(square) == 4 and all(is_number(v) and math.isfinite(v) for v in (*box, *square))):
            raise RecordError("bad_field", "box and square must be 4 finite numbers each")
        if not (square[2] - square[0] > 0 and square[3] - square[1] > 0):
            raise RecordError("bad_field", "square must have a positive side")


@dataclass(frozen=True, kw_only=True)
class Classified(Patch):
    """classifier -> indexer: a patch with its person's keypoints and view (or the reason it was rejected)."""

    TYPE: ClassVar[str] = "classified"
    view: str
    reason: str
    keypoint_score: float
    keypoints: np.ndarray = array("float32")

    def check(self) -> None:
        super().check()
        if self.keypoints.shape != (17, 3):
            raise RecordError("bad_array", f"keypoints must be 17 x 3, not {list(self.keypoints.shape)}")

    @classmethod
    def of(cls, patch: Patch, **values: Any) -> Classified:
        """The classified form of `patch`: its fields and arrays plus `values`."""
        return cls(**patch.fields(), **patch.arrays(), **values)


@dataclass(frozen=True, kw_only=True)
class PairsAppended(Record):
    """indexer -> trainer (published): new pairs exist."""

    TYPE: ClassVar[str] = "pairs_appended"
    count: int
    total: int


@dataclass(frozen=True, kw_only=True)
class StageRestarted(Record):
    """supervisor -> indexer: a stage process was restarted, so the work it held is lost and must be redone."""

    TYPE: ClassVar[str] = "stage_restarted"
    stage: str


@dataclass(frozen=True, kw_only=True)
class PairVerdict(Record):
    """supervisor (the web page) -> indexer: a person judged a pair good or bad; the index, the catalog's only
    writer, records it."""

    TYPE: ClassVar[str] = "pair_verdict"
    pair_id: int
    verdict: str

    def check(self) -> None:
        if self.verdict not in VERDICTS:
            raise RecordError("bad_field", f"pair_verdict.verdict must be one of {', '.join(VERDICTS)}")
        if self.pair_id < 1:
            raise RecordError("bad_field", "pair_verdict.pair_id < 1")


RECORD_TYPES: dict[str, type[Record]] = {cls.TYPE: cls for cls in (
    Discovered, Job, Window, VideoEnd, WindowDone, Patch, Classified, PairsAppended, StageRestarted, PairVerdict)}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def image_shape(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3 or shape[2] != 3 or not shape[0] or not shape[1]:
        raise RecordError("bad_array", f"{name} must be a non-empty H x W x 3 image, not {list(shape)}")
    return shape[0], shape[1]
