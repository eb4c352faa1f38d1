"""How records cross a socket: framing and validation. The records themselves are declared in stages.records.

A message is a ZeroMQ multipart: frame 0 is a small UTF-8 JSON header
`{"type": ..., "v": VERSION, "fields": {...}, "arrays": [{"name", "dtype", "shape"}, ...]}`, followed by one raw
buffer per declared array, sent without copying. Nothing is ever unpickled. The schema of each type (field names
and JSON types, array names and dtypes) is derived from its record class. Receivers call `decode()`, which checks
the version, the type, every field's type, array dtypes, shapes and byte counts, the total size and the record's
own `check()`; anything wrong raises `WireError` with a short reason code (a metric label) and never takes the
receiver down.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any, get_type_hints

import numpy as np

from humanstyle.stages.records import RECORD_TYPES, Record, RecordError, is_int

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
ALLOWED_DTYPES = {"uint8", "bool", "float32", "int64"}
NUM = (int, float)
JSON_TYPES = {"int": int, "float": NUM, "str": str, "bool": bool, "list": list}


class WireError(ValueError):
    """A message that cannot be accepted; `reason` is a stable snake_case code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@cache
def schema(cls: type[Record]) -> tuple[dict[str, Any], dict[str, str]]:
    """(plain fields -> accepted JSON types, array fields -> dtype) of a record class."""
    hints = get_type_hints(cls)
    plain, arrays = {}, {}
    for f in dataclasses.fields(cls):
        if "array" in f.metadata:
            arrays[f.name] = f.metadata["array"]
        else:
            plain[f.name] = JSON_TYPES[getattr(hints[f.name], "__name__", str(hints[f.name]))]
    return plain, arrays


SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {name: schema(cls) for name, cls in RECORD_TYPES.items()}


def validate(record: Record) -> None:
    """Check a record against its schema and meaning; raises WireError. Senders call it so a bug fails there."""
    _validate(record.TYPE, record.fields(), {k: (str(v.dtype), v.shape) for k, v in record.arrays().items()})
    try:
        record.check()
    except RecordError as exc:
        raise WireError(exc.reason, str(exc)) from None


def encode(record: Record) -> list[Any]:
    """Multipart frames: JSON header + one contiguous buffer per array (zero-copy where already contiguous)."""
    validate(record)
    specs, buffers = [], []
    for name, arr in record.arrays().items():
        arr = np.ascontiguousarray(arr)
        specs.append({"name": name, "dtype": str(arr.dtype), "shape": list(arr.shape)})
        buffers.append(memoryview(arr).cast("B") if arr.size else b"")
    header = {"type": record.TYPE, "v": VERSION, "fields": record.fields(), "arrays": specs}
    return [json.dumps(header, separators=(",", ":")).encode(), *buffers]


def decode(frames: list[Any], max_bytes: int) -> Record:
    """Parse and validate received frames (bytes, memoryviews or zmq.Frame) into a record; raises WireError."""
    if not frames:
        raise WireError("empty_message")
    total = sum(len(frame_buffer(f)) for f in frames)
    if total > max_bytes:
        raise WireError("oversized", f"{total} bytes > limit {max_bytes}")
    header = json_frame(frames[0], MAX_HEADER_BYTES, "header")
    if not isinstance(header, dict) or not isinstance(header.get("fields"), dict) or not isinstance(
            header.get("arrays", []), list):
        raise WireError("malformed_header", "header must be an object with fields and arrays")
    if header.get("v") != VERSION:
        raise WireError("bad_version", f"version {header.get('v')!r}, this build speaks {VERSION}")
    type_ = header.get("type")
    if type_ not in RECORD_TYPES:
        raise WireError("unknown_type", repr(type_)[:40])
    specs = header.get("arrays", [])
    if len(specs) != len(frames) - 1:
        raise WireError("bad_array", f"{len(specs)} arrays declared, {len(frames) - 1} buffers sent")
    arrays: dict[str, np.ndarray] = {}
    for spec, frame in zip(specs, frames[1:], strict=True):
        name, arr = _array(spec, frame_buffer(frame))
        arrays[name] = arr
    fields = header["fields"]
    _validate(type_, fields, {k: (str(v.dtype), v.shape) for k, v in arrays.items()})
    record = RECORD_TYPES[type_](**fields, **arrays)
    try:
        record.check()
    except RecordError as exc:
        raise WireError(exc.reason, str(exc)) from None
    return record


def json_frame(frame: Any, max_bytes: int, what: str, error: type[WireError] = WireError) -> Any:
    """The JSON value in a message's first frame (a record header, a remote control object); raises `error`."""
    head = bytes(frame_buffer(frame))
    if len(head) > max_bytes:
        raise error("oversized", f"{what} too large")
    try:
        return json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error("malformed_header", str(exc)[:80]) from None


def frame_buffer(frame: Any) -> memoryview:
    """The bytes of a received frame (bytes, memoryview or zmq.Frame) without a copy."""
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
            is_int(d) and 0 <= d < 1 << 20 for d in shape):
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
