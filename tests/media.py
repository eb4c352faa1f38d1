"""Generated test media: clips whose frames carry their own index, plus broken and non-video files.

Every frame has its index drawn in the top half as 16 black/white blocks (bit 15 first), with the
complement of those bits in the band below, so `read_frame_index` can read it back after lossy
compression, downscaling and (once rotated back) orientation metadata, and can tell a misread from a
read.

Writers, chosen by `codec`:
- "mp4v" (.mp4) and "MJPG" (.avi): cv2.VideoWriter. Both round odd sizes down to even, so they refuse
  odd sizes instead of silently writing another size.
- "pyavi": a minimal MJPEG AVI written here, frame by frame with cv2.imencode; exact (odd) sizes and full
  control of the header (e.g. a zero frame rate with `header_fps=0`).

`faststart` moves an mp4's index (moov) before its data, as web-ready files have it; `set_rotation` writes
display-matrix rotation metadata into an mp4 the way phones do.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

BITS = 16
_CV2_CODECS = {"mp4v": ".mp4", "MJPG": ".avi"}


def draw_frame(index: int, size: tuple[int, int], moving: bool = True) -> np.ndarray:
    """A BGR frame of `size` (w, h) with `index` encoded as blocks in its top half."""
    w, h = size
    if not 0 <= index < 2**BITS:
        raise ValueError(f"frame index {index} does not fit in {BITS} bits")
    frame = np.empty((h, w, 3), np.uint8)
    if moving:
        # A diagonal gradient that slides with the index and a square that walks across: gives the
        # encoder real motion to code, as footage would.
        yy, xx = np.mgrid[0:h, 0:w]
        frame[...] = ((xx + yy + 5 * index) % 256).astype(np.uint8)[..., None]
        frame[..., 1] = 255 - frame[..., 1]
        side = max(4, h // 6)
        x0 = (7 * index) % max(1, w - side)
        frame[h - side - 1 : h - 1, x0 : x0 + side] = (0, 0, 255)
    else:
        frame[...] = 96
    bits = [(index >> (BITS - 1 - j)) & 1 for j in range(BITS)]
    for j, bit in enumerate(bits):
        x0, x1 = j * w // BITS, (j + 1) * w // BITS
        frame[0 : h // 4, x0:x1] = 255 if bit else 0
        frame[h // 4 : h // 2, x0:x1] = 0 if bit else 255
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Read back the index drawn by `draw_frame`; raises ValueError if the two bands disagree."""
    h, w = frame.shape[:2]
    gray = frame.mean(axis=2) if frame.ndim == 3 else frame.astype(float)
    ry, rx = max(1, h // 32), max(1, w // (BITS * 6))
    value = 0
    for j in range(BITS):
        cx = int((j + 0.5) * w / BITS)
        top = gray[h // 8 - ry : h // 8 + ry + 1, cx - rx : cx + rx + 1].mean() > 128
        low = gray[3 * h // 8 - ry : 3 * h // 8 + ry + 1, cx - rx : cx + rx + 1].mean() > 128
        if top == low:
            raise ValueError(f"bit {j} unreadable: both bands {'light' if top else 'dark'}")
        value = (value << 1) | int(top)
    return value


def make_clip(
    path: str | os.PathLike[str],
    seconds: float,
    fps: float = 24,
    size: tuple[int, int] = (320, 240),
    codec: str = "mp4v",
    moving: bool = True,
    *,
    rotation: int = 0,
    header_fps: float | None = None,
) -> Path:
    """Write `round(seconds * fps)` frames (at least 1) numbered 0.. and return the path.

    `rotation` (mp4 only) adds display-matrix metadata; `header_fps` ("pyavi" only) overrides the frame
    rate written in the header, e.g. 0 for a file without one.
    """
    path = Path(path)
    n = max(1, round(seconds * fps))
    frames = (draw_frame(i, size, moving) for i in range(n))
    if codec == "pyavi":
        write_mjpeg_avi(path, frames, size, fps if header_fps is None else header_fps)
    elif codec in _CV2_CODECS:
        if size[0] % 2 or size[1] % 2:
            raise ValueError(f"cv2.VideoWriter rounds {size} down to even; use codec='pyavi' for odd sizes")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps), size)
        if not writer.isOpened():
            raise RuntimeError(f"this OpenCV build cannot write {codec} to {path.name}")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
    else:
        raise ValueError(f"unknown codec {codec!r}; use one of {[*_CV2_CODECS, 'pyavi']}")
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"writer produced nothing at {path}")
    if rotation:
        set_rotation(path, rotation)
    return path


def write_mjpeg_avi(path: Path, frames, size: tuple[int, int], fps: float, quality: int = 90) -> None:
    """A minimal RIFF AVI with one MJPEG stream and an idx1 index; fps is stored as rate/1000."""
    w, h = size
    chunks: list[bytes] = []
    for frame in frames:
        ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        chunks.append(jpg.tobytes())
    rate, scale = (round(fps * 1000), 1000) if fps > 0 else (0, 0)
    usec = round(1e6 / fps) if fps > 0 else 0
    biggest = max(len(c) for c in chunks)
    avih = struct.pack("<14I", usec, 0, 0, 0x10, len(chunks), 0, 1, biggest, w, h, 0, 0, 0, 0)
    strh = struct.pack("<4s4sIHHIIIIIIIIhhhh", b"vids", b"MJPG", 0, 0, 0, 0, scale, rate, 0, len(chunks),
                       biggest, 0xFFFFFFFF, 0, 0, 0, w, h)
    strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
    strl = _riff_list(b"strl", _chunk(b"strh", strh) + _chunk(b"strf", strf))
    hdrl = _riff_list(b"hdrl", _chunk(b"avih", avih) + strl)
    movi_body, index, offset = bytearray(), bytearray(), 4  # idx1 offsets count from the 'movi' tag
    for data in chunks:
        index += struct.pack("<4sIII", b"00dc", 0x10, offset, len(data))
        piece = _chunk(b"00dc", data)
        movi_body += piece
        offset += len(piece)
    body = b"AVI " + hdrl + _riff_list(b"movi", bytes(movi_body)) + _chunk(b"idx1", bytes(index))
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, data: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", len(data) + 4) + kind + data


# --- mp4 surgery -----------------------------------------------------------------------------------

_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(buf: bytes | bytearray, start: int, end: int):
    """(type, offset, header_len, size) of each box in buf[start:end]."""
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[off : off + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", buf[off + 8 : off + 16])[0], 16
        elif size == 0:
            size = end - off
        if size < header:
            raise ValueError(f"bad box size at {off}")
        yield kind, off, header, size
        off += size


def _walk(buf: bytearray, start: int, end: int, want: bytes):
    for kind, off, header, size in _boxes(buf, start, end):
        if kind == want:
            yield off + header, off + size
        elif kind in _MP4_CONTAINERS:
            yield from _walk(buf, off + header, off + size, want)


def set_rotation(path: Path, degrees: int) -> None:
    """Write a rotation display matrix into every track header, as a phone filming upright does."""
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees % 360]
    matrix = struct.pack(">9i", cos << 16, sin << 16, 0, -sin << 16, cos << 16, 0, 0, 0, 1 << 30)
    buf = bytearray(Path(path).read_bytes())
    found = False
    for body, _ in _walk(buf, 0, len(buf), b"tkhd"):
        version = buf[body]
        # version/flags; times, track id, reserved, duration (32 or 20 bytes by version); then
        # reserved[8], layer, alternate group, volume, reserved (16 bytes); then the matrix
        at = body + 4 + (32 if version == 1 else 20) + 16
        buf[at : at + 36] = matrix
        found = True
    if not found:
        raise ValueError(f"{path} has no mp4 track header to rotate")
    Path(path).write_bytes(bytes(buf))


def faststart(path: Path) -> Path:
    """Move the moov box in front of mdat (patching chunk offsets), like `ffmpeg -movflags faststart`."""
    buf = bytearray(Path(path).read_bytes())
    top = list(_boxes(buf, 0, len(buf)))
    moov = next(b for b in top if b[0] == b"moov")
    first_data = next(b for b in top if b[0] in (b"mdat", b"free", b"wide"))
    if moov[1] < first_data[1]:
        return Path(path)
    moov_bytes = bytearray(buf[moov[1] : moov[1] + moov[3]])
    shift = len(moov_bytes)
    for body, _ in _walk(moov_bytes, 0, len(moov_bytes), b"stco"):
        (count,) = struct.unpack(">I", moov_bytes[body + 4 : body + 8])
        for i in range(count):
            at = body + 8 + 4 * i
            (v,) = struct.unpack(">I", moov_bytes[at : at + 4])
            moov_bytes[at : at + 4] = struct.pack(">I", v + shift)
    for body, _ in _walk(moov_bytes, 0, len(moov_bytes), b"co64"):
        (count,) = struct.unpack(">I", moov_bytes[body + 4 : body + 8])
        for i in range(count):
            at = body + 8 + 8 * i
            (v,) = struct.unpack(">Q", moov_bytes[at : at + 8])
            moov_bytes[at : at + 8] = struct.pack(">Q", v + shift)
    head = buf[: first_data[1]]
    rest = buf[first_data[1] : moov[1]] + buf[moov[1] + moov[3] :]
    Path(path).write_bytes(bytes(head + moov_bytes + rest))
    return Path(path)


# --- broken files ----------------------------------------------------------------------------------


def truncate(path: str | os.PathLike[str], fraction: float) -> Path:
    """Cut the file to its first `fraction` of bytes, as an interrupted copy leaves it."""
    path = Path(path)
    with path.open("r+b") as f:
        f.truncate(int(path.stat().st_size * fraction))
    return path


def make_corrupt(path: str | os.PathLike[str], seconds: float = 1.0) -> Path:
    """An mp4 that starts like one (intact ftyp box) but whose remaining bytes are noise (fixed seed)."""
    path = make_clip(path, seconds, codec="mp4v")
    data = path.read_bytes()
    keep = struct.unpack(">I", data[:4])[0]  # the ftyp box
    noise = np.random.default_rng(1234).integers(0, 256, len(data) - keep, dtype=np.uint8).tobytes()
    path.write_bytes(data[:keep] + noise)
    return path


def make_non_video(path: str | os.PathLike[str], kind: str = "text", size: int = 4096) -> Path:
    """A file that is not video: "text" (readable prose), "random" (noise, fixed seed) or "empty"."""
    path = Path(path)
    if kind == "text":
        line = b"These are notes, not footage. Frame 1, frame 2, action!\n"
        path.write_bytes((line * (size // len(line) + 1))[:size])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(99).integers(0, 256, size, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path
