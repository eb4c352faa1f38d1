"""The messages between a head and its workers, and how images travel in them.

A message is a ZeroMQ multipart: frame 0 is a small JSON object `{"op": ..., "v": VERSION, ..., "records": [n, ...]}`
and the frames after it are records, record i taking n_i frames. A record is framed as daemon.wire frames it (a
JSON header and one buffer per array), except that an image array may travel compressed: its spec in the header
gains `"codec": "png" | "jpeg"` and `"sizes"` (the byte length of each image, several for a stack of frames), and
its buffer holds the compressed images one after the other. Unpacking checks the declared shape and the size it
would take against the limit, reads each image's dimensions from its own header before decoding it (a small file
cannot make the receiver allocate more than its declared shape), decodes, checks the result's shape and type, and
hands the raw frames to daemon.wire.decode, which validates the record as it would any other. Nothing is unpickled.

Which arrays: uint8 masks (H x W) always as PNG (binary, a few kB); 3-channel images (patches) and stacks of them
(a window's frames) with the head's `head.frame_codec`: PNG is lossless, so the patch sets equal those of the
single-machine daemon exactly; JPEG costs about a fifth of the bytes and changes pixels by a few levels (the patches
then differ as the detections on slightly different pixels do); raw sends them as they are. Sizes per codec on the
benchmark clip: bench/README.md ("Scale out").

Ops, worker -> head: hello (name, host, stages, capacity, the settings that shape its results), result (work id,
its records), ping (free slots, the last work sequence number seen, the work ids held), bye. Head -> worker: welcome
(codec, heartbeat, timeout), refuse (why: its settings differ), work (id, seq, kind, records), ping, who (the head
does not know this worker: say hello again).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from humanstyle.daemon import wire
from humanstyle.stages.records import Record, is_int

VERSION = 1
CODECS = ("png", "jpeg", "raw")
MAX_CONTROL_BYTES = 256 * 1024
OPS = {"hello", "result", "ping", "bye", "welcome", "work", "who", "refuse"}
# PNG at its fastest setting with the "up" filter and run-length matching: on the benchmark clip as small as the
# default level with adaptive filters, in less than half the time (bench/README.md, "Scale out").
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The settings that decide what a worker's detector and classifier produce. A worker sends its values with its hello;
# the head refuses one whose values differ from its own (its patches would differ from the rest), naming each key.
# Weights are compared by their choice only when both are "DEFAULT" or "none" (a path is a path on each machine).
RESULT_KEYS = {"detect": ("score_threshold", "patch_size", "margin", "max_persons", "min_box_side", "min_size",
                          "max_size", "proposals"),
               "classify": ("min_keypoint_confidence", "person_threshold", "min_person_overlap", "proposals",
                            "input_size")}
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class RemoteError(wire.WireError):
    """A message from the other side that cannot be used (reason: a metric label)."""


# --- messages ---------------------------------------------------------------------------------------------------
def message(op: str, records: Sequence[list[Any]] = (), **fields: Any) -> list[Any]:
    """Frames of a message: `records` are already framed records (pack_record)."""
    control = {"op": op, "v": VERSION, **fields, "records": [len(r) for r in records]}
    return [json.dumps(control, separators=(",", ":")).encode(), *(f for r in records for f in r)]


def parse(frames: Sequence[Any]) -> tuple[dict[str, Any], list[list[Any]]]:
    """(control object, the frames of each record); raises RemoteError."""
    if not frames:
        raise RemoteError("empty_message")
    control = wire.json_frame(frames[0], MAX_CONTROL_BYTES, "control frame", RemoteError)
    if not isinstance(control, dict) or control.get("op") not in OPS:
        raise RemoteError("unknown_type", repr(control.get("op") if isinstance(control, dict) else control)[:40])
    if control.get("v") != VERSION:
        raise RemoteError("bad_version", f"version {control.get('v')!r}, this build speaks {VERSION}")
    counts = control.get("records", [])
    if not isinstance(counts, list) or not all(is_int(n) and n >= 1
                                                for n in counts):
        raise RemoteError("malformed_header", "records must be a list of frame counts")
    if sum(counts) != len(frames) - 1:
        raise RemoteError("bad_array", f"{sum(counts)} record frames declared, {len(frames) - 1} sent")
    out, at = [], 1
    for n in counts:
        out.append(list(frames[at:at + n]))
        at += n
    return control, out


def result_settings(settings: Any) -> dict[str, Any]:
    """The settings of RESULT_KEYS, as "section.key" -> value."""
    out = {f"{section}.{key}": getattr(getattr(settings, section), key)
           for section, keys in RESULT_KEYS.items() for key in keys}
    for section in RESULT_KEYS:
        weights = getattr(settings, section).weights
        if weights in ("DEFAULT", "none"):
            out[f"{section}.weights"] = weights
    return out


def settings_differences(mine: dict[str, Any], theirs: Any) -> list[str]:
    """What differs between this worker's result settings and the head's, one phrase per key."""
    if not isinstance(theirs, dict):
        return []
    return [f"{key} = {mine[key]!r} here, {theirs[key]!r} on the head" for key in sorted(mine)
            if key in theirs and theirs[key] != mine[key]]


# --- records with compressed images ------------------------------------------------------------------------------
def pack_record(record: Record, codec: str = "png", jpeg_quality: int = 95) -> list[Any]:
    """The frames of one record, its images compressed with `codec` (masks always PNG)."""
    frames = wire.encode(record)  # validates the record
    header = json.loads(frames[0])
    if codec == "raw":
        return frames
    out = [None]
    for spec, buf, arr in zip(header["arrays"], frames[1:], record.arrays().values(), strict=True):
        image_codec = _codec_for(arr, codec)
        if image_codec is None:
            out.append(buf)
            continue
        images = arr if arr.ndim == 4 else [arr]
        parts = [_encode(np.ascontiguousarray(img), image_codec, jpeg_quality) for img in images]
        spec["codec"], spec["sizes"] = image_codec, [len(p) for p in parts]
        out.append(b"".join(parts))
    out[0] = json.dumps(header, separators=(",", ":")).encode()
    return out


def unpack_record(frames: Sequence[Any], max_bytes: int) -> Record:
    """A record from its frames, images decoded and everything validated; raises RemoteError."""
    if not frames:
        raise RemoteError("empty_message")
    header = wire.json_frame(frames[0], wire.MAX_HEADER_BYTES, "header", RemoteError)
    specs = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        raise RemoteError("bad_array", "array specs do not match the buffers sent")
    raw, declared = [], 0
    for spec, frame in zip(specs, frames[1:], strict=True):
        buf = wire.frame_buffer(frame)
        if not isinstance(spec, dict) or "codec" not in spec:
            raw.append(buf)
            declared += len(buf)
            continue
        shape = _declared_shape(spec)
        declared += int(np.prod(shape, dtype=np.int64))
        if declared > max_bytes:
            raise RemoteError("oversized", f"images would take {declared} bytes > limit {max_bytes}")
        raw.append(_decode_images(spec, buf, shape))
        del spec["codec"], spec["sizes"]
    if declared > max_bytes:
        raise RemoteError("oversized", f"{declared} bytes > limit {max_bytes}")
    try:
        return wire.decode([json.dumps(header).encode(), *raw], max_bytes)
    except wire.WireError as exc:
        raise RemoteError(exc.reason, str(exc)) from None


def framed_bytes(frames: Sequence[Any]) -> int:
    return sum(len(wire.frame_buffer(f)) for f in frames)


def _codec_for(arr: np.ndarray, codec: str) -> str | None:
    if arr.dtype != np.uint8 or not arr.size:
        return None
    if arr.ndim == 2:
        return "png"  # a mask: lossless, whatever the frames use
    if arr.ndim in (3, 4) and arr.shape[-1] == 3:
        return codec
    return None


def _encode(img: np.ndarray, codec: str, jpeg_quality: int) -> bytes:
    if codec == "png":
        ok, buf = cv2.imencode(".png", img, PNG_PARAMS)
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"cv2 could not encode a {img.shape} image as {codec}")
    return buf.tobytes()


def _declared_shape(spec: dict) -> tuple[int, ...]:
    shape, codec, sizes = spec.get("shape"), spec.get("codec"), spec.get("sizes")
    if spec.get("dtype") != "uint8" or codec not in ("png", "jpeg"):
        raise RemoteError("bad_array", f"codec {codec!r} for dtype {spec.get('dtype')!r}")
    if not isinstance(shape, list) or not all(is_int(d) and 0 < d < 1 << 16
                                              for d in shape):
        raise RemoteError("bad_array", f"shape {shape!r}")
    images = shape[0] if len(shape) == 4 else 1
    if not (len(shape) == 2 and codec == "png" or len(shape) in (3, 4) and shape[-1] == 3):
        raise RemoteError("bad_array", f"{codec} for shape {shape}")
    if not isinstance(sizes, list) or len(sizes) != images or not all(
            is_int(n) and n > 0 for n in sizes):
        raise RemoteError("bad_array", "sizes must give one positive length per image")
    return tuple(shape)


def _decode_images(spec: dict, buf: memoryview, shape: tuple[int, ...]) -> bytes:
    sizes, codec = spec["sizes"], spec["codec"]
    if sum(sizes) != len(buf):
        raise RemoteError("bad_array", f"{len(buf)} bytes for images of {sum(sizes)}")
    height, width = shape[-3:-1] if len(shape) >= 3 else shape
    channels = shape[-1] if len(shape) >= 3 else 1
    out, at = [], 0
    for size in sizes:
        part = buf[at:at + size]
        at += size
        if _dimensions(part, codec) != (width, height):
            raise RemoteError("bad_array", f"a {codec} image's own size differs from the declared {width}x{height}")
        img = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = (height, width, channels) if channels > 1 else (height, width)
        if img is None or img.dtype != np.uint8 or img.shape != expected:
            raise RemoteError("bad_array", f"a {codec} image did not decode to {list(expected)} uint8")
        out.append(img)
    return np.ascontiguousarray(np.stack(out) if len(shape) == 4 else out[0]).tobytes()


def _dimensions(data: memoryview, codec: str) -> tuple[int, int] | None:
    """(width, height) from an image's own header, without decoding it."""
    b = bytes(data[:64 * 1024]) if codec == "jpeg" else bytes(data[:24])
    if codec == "png":
        if len(b) < 24 or not b.startswith(PNG_MAGIC) or b[12:16] != b"IHDR":
            return None
        return struct.unpack(">II", b[16:24])
    i = 2
    if not b.startswith(b"\xff\xd8"):
        return None
    while i + 9 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", b[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None
