"""Every message that crosses a socket, and how it is framed.

A message is a ZeroMQ multipart: frame 0 is a small UTF-8 JSON header
`{"type": ..., "v": VERSION, "fields": {...}, "arrays": [{"name", "dtype", "shape"}, ...]}`, followed by one raw
buffer per declared array, sent without copying. Nothing is ever unpickled. Receivers call `decode()`, which checks
the version, the type, every field's type, array dtypes, shapes and byte counts, and the total size; anything wrong
raises `WireError` with a short reason code (a metric label) and never takes the receiver down.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
ALLOWED_DTYPES = {"uint8", "bool", "float32", "int64"}


class WireError(ValueError):
    """A message that cannot be accepted; `reason` is a stable snake_case code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


NUM = (int, float)
# type name -> (required fields and their JSON types, allowed arrays and dtypes)
SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    # watcher -> indexer: a file that stopped growing
    "discovered": ({"path": str, "domain": str, "size": int, "mtime": NUM, "fingerprint": str, "rejected": str},
                   {}),
    # indexer -> decoder: decode this video
    "job": ({"video_id": int, "attempt": int, "path": str, "domain": str, "start_window": int}, {}),
    # decoder -> detector: one second of video (burst frames first, anchor last)
    "window": ({"video_id": int, "attempt": int, "domain": str, "window_index": int, "anchor_index": int,
                "frame_indices": list, "timestamps": list}, {"frames": "uint8"}),
    # decoder -> detector -> classifier -> indexer: the decoder is finished with a video
    "video_end": ({"video_id": int, "attempt": int, "domain": str, "windows": int, "frames_read": int,
                   "status": str, "reason": str, "duration_s": NUM}, {}),
    # detector -> classifier: one person patch
    "patch": ({"video_id": int, "attempt": int, "domain": str, "window_index": int, "frame_index": int,
               "person_index": int, "kind": str, "timestamp": NUM, "box": list, "square": list, "score": NUM},
              {"image": "uint8", "mask": "uint8"}),
    # detector -> classifier -> indexer: a window is fully detected; says how many patches to expect
    "window_done": ({"video_id": int, "attempt": int, "domain": str, "window_index": int, "patches": int,
                     "anchor_hit": bool, "frames": int}, {}),
    # classifier -> indexer: a patch with its keypoints and view (or rejection reason)
    "classified": ({"video_id": int, "attempt": int, "domain": str, "window_index": int, "frame_index": int,
                    "person_index": int, "kind": str, "timestamp": NUM, "box": list, "square": list,
                    "score": NUM, "view": str, "reason": str, "keypoint_score": NUM},
                   {"image": "uint8", "mask": "uint8", "keypoints": "float32"}),
    # indexer -> trainer (PUB): new pairs exist
    "pairs_appended": ({"count": int, "total": int}, {}),
    # supervisor -> indexer: a stage process was restarted, so work it held is lost
    "stage_restarted": ({"stage": str}, {}),
}


@dataclass
class Message:
    type: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


def make(type_: str, arrays: dict[str, np.ndarray] | None = None, **fields: Any) -> Message:
    """Build a message and check it against its schema now, so a bug fails at the sender."""
    msg = Message(type_, fields, arrays or {})
    _validate(msg.type, msg.fields, {k: (str(v.dtype), v.shape) for k, v in msg.arrays.items()})
    return msg


def encode(msg: Message) -> list[Any]:
    """Multipart frames: JSON header + one contiguous buffer per array (zero-copy where already contiguous)."""
    specs, buffers = [], []
    for name, arr in msg.arrays.items():
        arr = np.ascontiguousarray(arr)
        specs.append({"name": name, "dtype": str(arr.dtype), "shape": list(arr.shape)})
        buffers.append(memoryview(arr).cast("B") if arr.size else b"")
    header = {"type": msg.type, "v": VERSION, "fields": msg.fields, "arrays": specs}
    return [json.dumps(header, separators=(",", ":")).encode(), *buffers]


def decode(frames: list[Any], max_bytes: int) -> Message:
    """Parse and validate received frames (bytes, memoryviews or zmq.Frame); raises WireError."""
    if not frames:
        raise WireError("empty_message")
    total = sum(len(_buf(f)) for f in frames)
    if total > max_bytes:
        raise WireError("oversized", f"{total} bytes > limit {max_bytes}")
    head = bytes(_buf(frames[0]))
    if len(head) > MAX_HEADER_BYTES:
        raise WireError("oversized", "header too large")
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError("malformed_header", str(exc)[:80]) from None
    if not isinstance(header, dict) or not isinstance(header.get("fields"), dict) or not isinstance(
            header.get("arrays", []), list):
        raise WireError("malformed_header", "header must be an object with fields and arrays")
    if header.get("v") != VERSION:
        raise WireError("bad_version", f"version {header.get('v')!r}, this build speaks {VERSION}")
    type_ = header.get("type")
    if type_ not in SCHEMAS:
        raise WireError("unknown_type", repr(type_)[:40])
    specs = header.get("arrays", [])
    if len(specs) != len(frames) - 1:
        raise WireError("bad_array", f"{len(specs)} arrays declared, {len(frames) - 1} buffers sent")
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:], strict=True):
        name, arr = _array(spec, _buf(frame))
        arrays[name] = arr
    _validate(type_, header["fields"], {k: (str(v.dtype), v.shape) for k, v in arrays.items()})
    return Message(type_, header["fields"], arrays)


def _buf(frame: Any) -> memoryview:
    if hasattr(frame, "buffer"):  # zmq.Frame
        return frame.buffer
    return memoryview(frame)


def _array(spec: Any, buf: memoryview) -> tuple[str, np.ndarray]:
    if not isinstance(spec, dict):
        raise WireError("bad_array", "array spec must be an object")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or dtype not in ALLOWED_DTYPES:
        raise WireError("bad_array", f"array {name!r} has dtype {dtype!r}")
    if not isinstance(shape, list) or len(shape) > 4 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 20 for d in shape):
        raise WireError("bad_array", f"array {name!r} has shape {shape!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if expected != len(buf):
        raise WireError("bad_array", f"array {name!r}: {len(buf)} bytes for shape {shape} {dtype}")
    return name, np.frombuffer(buf, dtype=dtype).reshape(shape)


def _validate(type_: str, fields: dict[str, Any], arrays: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    required, allowed = SCHEMAS[type_]
    for key, kind in required.items():
        if key not in fields:
            raise WireError("missing_field", f"{type_}.{key}")
        value = fields[key]
        ok = isinstance(value, kind) and not (kind in (int, NUM) and isinstance(value, bool))
        if not ok:
            raise WireError("bad_field", f"{type_}.{key} = {str(value)[:40]!r}")
    extra = set(fields) - set(required)
    if extra:
        raise WireError("bad_field", f"{type_} has unexpected field {sorted(extra)[0]!r}")
    for name, (dtype, _shape) in arrays.items():
        if allowed.get(name) != dtype:
            raise WireError("bad_array", f"{type_} does not carry array {name!r} of {dtype}")
    missing = set(allowed) - set(arrays)
    if missing:
        raise WireError("bad_array", f"{type_} lacks array {sorted(missing)[0]!r}")
    _check_meaning(type_, fields, {name: shape for name, (_dtype, shape) in arrays.items()})


def _is_num(value: Any) -> bool:
    return isinstance(value, NUM) and not isinstance(value, bool)


def _image_shape(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3 or shape[2] != 3 or not shape[0] or not shape[1]:
        raise WireError("bad_array", f"{name} must be a non-empty H x W x 3 image, not {list(shape)}")
    return shape[0], shape[1]


def _check_meaning(type_: str, fields: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """What receivers compute with beyond JSON types: arrays shaped as the images they stand for, one frame per
    frame index, a start window a decoder can seek to. A well-typed message that breaks these would otherwise
    crash the receiving stage (and, replayed, crash it again after every restart)."""
    if type_ == "window":
        frames = shapes["frames"]
        if len(frames) != 4 or not frames[0]:
            raise WireError("bad_array", f"frames must be N x H x W x 3, not {list(frames)}")
        _image_shape("frames", frames[1:])
        indices, stamps = fields["frame_indices"], fields["timestamps"]
        if not len(indices) == len(stamps) == frames[0]:
            raise WireError("bad_field", f"{frames[0]} frames, {len(indices)} indices, {len(stamps)} timestamps")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices) or not all(
                _is_num(t) for t in stamps):
            raise WireError("bad_field", "frame_indices must be integers and timestamps numbers")
    elif type_ in ("patch", "classified"):
        if shapes["mask"] != _image_shape("image", shapes["image"]):
            raise WireError("bad_array", f"mask {list(shapes['mask'])} does not match image {list(shapes['image'])}")
        box, square = fields["box"], fields["square"]
        if not (len(box) == len(square) == 4 and all(_is_num(v) and math.isfinite(v) for v in (*box, *square))):
            raise WireError("bad_field", "box and square must be 4 finite numbers each")
        if not (square[2] - square[0] > 0 and square[3] - square[1] > 0):
            raise WireError("bad_field", "square must have a positive side")
        if type_ == "classified" and shapes["keypoints"] != (17, 3):
            raise WireError("bad_array", f"keypoints must be 17 x 3, not {list(shapes['keypoints'])}")
    elif type_ == "job" and fields["start_window"] < 0:
        raise WireError("bad_field", "job.start_window < 0")
