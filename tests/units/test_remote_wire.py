"""Messages between head and workers (daemon.remote): images travel compressed and come back exact (PNG) or close
(JPEG); whatever a peer sends is checked before an image is decoded and validated as any record is; the head
refuses a result that is not the one it asked for (daemon.head.check_result)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from humanstyle.daemon import remote, wire
from humanstyle.daemon.head import Dispatcher, check_result
from humanstyle.daemon.scheduler import Item
from humanstyle.stages.records import Classified, Patch, Window, WindowDone
from tests.media import draw_frame

LIMIT = 64 * 1024 * 1024
VIDEO = {"video_id": 3, "attempt": 1, "domain": "movie"}


def window(n: int = 3, size=(320, 240)) -> Window:
    frames = np.stack([draw_frame(i, size) for i in range(n)])
    return Window(**VIDEO, window_index=2, anchor_index=n - 1, frame_indices=list(range(n)),
                  timestamps=[i / 8 for i in range(n)], frames=frames, windows_expected=5)


def patch(frame: int, person: int, side: int = 64) -> Patch:
    rng = np.random.default_rng(frame * 10 + person)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    mask = np.where(rng.random((side, side)) > 0.5, 255, 0).astype(np.uint8)
    return Patch(**VIDEO, window_index=2, frame_index=frame, person_index=person, kind="anchor", timestamp=0.25,
                 box=[1.0, 2.0, 30.0, 60.0], square=[0.0, 0.0, 64.0, 64.0], score=0.9, image=image, mask=mask)


def classified(frame: int, person: int) -> Classified:
    return Classified.of(patch(frame, person), view="FULL-BODY-FRONT", reason="", keypoint_score=0.5,
                         keypoints=np.ones((17, 3), np.float32))


def done(patches: int) -> WindowDone:
    return WindowDone(**VIDEO, window_index=2, patches=patches, anchor_hit=True, frames=1, windows_expected=5)


def roundtrip(record, codec: str):
    frames = remote.pack_record(record, codec, 95)
    return remote.unpack_record(frames, LIMIT), remote.framed_bytes(frames)


def test_png_frames_come_back_exact_and_smaller_than_raw():
    w = window()
    back, size = roundtrip(w, "png")
    raw = remote.framed_bytes(wire.encode(w))
    assert np.array_equal(back.frames, w.frames) and back.fields() == w.fields()
    assert size < raw / 3, (size, raw)


def test_jpeg_frames_are_close_smaller_still_and_masks_stay_exact():
    w = window()
    back, jpeg_size = roundtrip(w, "jpeg")
    _, png_size = roundtrip(w, "png")
    assert back.frames.shape == w.frames.shape and jpeg_size < png_size
    assert np.abs(back.frames.astype(int) - w.frames).mean() < 3
    p = patch(1, 0)
    back_patch, _ = roundtrip(p, "jpeg")
    assert np.array_equal(back_patch.mask, p.mask)  # masks always travel as PNG


def test_raw_is_the_wire_format_unchanged():
    w = window(1)
    assert [bytes(f) for f in remote.pack_record(w, "raw")] == [bytes(f) for f in wire.encode(w)]
    back, _ = roundtrip(classified(0, 0), "raw")
    assert np.array_equal(back.keypoints, np.ones((17, 3), np.float32))


def test_a_message_carries_its_records_in_order():
    records = [classified(0, 1), classified(0, 0), done(2)]
    frames = remote.message("result", [remote.pack_record(r) for r in records], work="e.1")
    control, parts = remote.parse(frames)
    assert control["op"] == "result" and control["work"] == "e.1"
    assert [remote.unpack_record(p, LIMIT) for p in parts][2] == records[2]
    with pytest.raises(remote.RemoteError, match="record frames declared"):
        remote.parse(frames[:-1])
    with pytest.raises(remote.RemoteError) as exc:
        remote.parse([json.dumps({"op": "pickle", "v": 1}).encode()])
    assert exc.value.reason == "unknown_type"


def _with_header(frames, change):
    header = json.loads(bytes(frames[0]))
    change(header)
    return [json.dumps(header).encode(), *frames[1:]]


def test_an_image_larger_than_declared_is_refused_before_it_is_decoded():
    small = window(1, size=(64, 48))
    frames = remote.pack_record(window(1, size=(320, 240)), "png")
    lying = _with_header(frames, lambda h: h["arrays"][0].update(shape=list(small.frames.shape)))
    with pytest.raises(remote.RemoteError, match="own size differs"):
        remote.unpack_record(lying, LIMIT)


def test_a_declared_shape_beyond_the_limit_is_refused_before_anything_is_decoded():
    frames = remote.pack_record(window(1), "png")
    huge = _with_header(frames, lambda h: h["arrays"][0].update(shape=[1, 60000, 60000, 3]))
    with pytest.raises(remote.RemoteError) as exc:
        remote.unpack_record(huge, LIMIT)
    assert exc.value.reason == "oversized"


@pytest.mark.parametrize("change", [
    lambda h: h["arrays"][0].update(codec="gif"),
    lambda h: h["arrays"][0].update(dtype="float32"),
    lambda h: h["arrays"][0].update(sizes=[1]),
])
def test_malformed_image_specs_are_refused(change):
    frames = remote.pack_record(window(2), "png")
    with pytest.raises(remote.RemoteError) as exc:
        remote.unpack_record(_with_header(frames, change), LIMIT)
    assert exc.value.reason == "bad_array"


def test_garbage_in_place_of_an_image_is_refused():
    frames = remote.pack_record(window(1), "jpeg")
    header = json.loads(bytes(frames[0]))
    junk = b"\xff\xd8" + bytes(range(256)) * 4
    header["arrays"][0]["sizes"] = [len(junk)]
    with pytest.raises(remote.RemoteError):
        remote.unpack_record([json.dumps(header).encode(), junk], LIMIT)


def test_a_record_that_breaks_its_own_rules_is_refused_after_decoding():
    frames = remote.pack_record(window(2), "png")
    bad = _with_header(frames, lambda h: h["fields"].update(frame_indices=[0]))  # 2 frames, 1 index
    with pytest.raises(remote.RemoteError) as exc:
        remote.unpack_record(bad, LIMIT)
    assert exc.value.reason == "bad_field"


def test_the_head_takes_only_the_result_it_asked_for():
    item = Item("e.1", "window", (3, 1, 2), [], 0)
    good = [classified(0, 0), classified(0, 1), done(2)]
    assert check_result(item, good)[2] == good[2]
    patches_only = [patch(0, 0), done(1)]
    classified_, patches, _ = check_result(item, patches_only)
    assert not classified_ and len(patches) == 1  # a worker that only detects: the head has them classified
    other_window = Classified.of(patch(0, 0), view="REJECTED", reason="no_person", keypoint_score=0.0,
                                 keypoints=np.zeros((17, 3), np.float32))
    other_window = Classified(**{**other_window.fields(), "window_index": 9}, **other_window.arrays())
    for bad in ([classified(0, 0), done(2)],  # a patch missing
                [classified(0, 0), classified(0, 0), done(2)],  # the same patch twice
                [classified(0, 0), done(1), done(1)],
                [other_window, done(1)],
                [classified(0, 0), patch(0, 1), done(2)]):
        with pytest.raises(remote.RemoteError):
            check_result(item, bad)
    with pytest.raises(remote.RemoteError):
        check_result(Item("e.2", "patches", (3, 1, 2), [], 0), patches_only)  # classify work returned unclassified


def test_a_detect_only_workers_patches_travel_on_as_it_packed_them():
    """The head checks a detect-only result and hands its patches on without decoding and re-compressing them."""
    item = Item("e.1", "window", (3, 1, 2), [], 0)
    sent = [remote.pack_record(r, "jpeg", 90) for r in (patch(0, 0), patch(1, 0), done(2))]
    head = SimpleNamespace(max_bytes=LIMIT)
    classified_, frames, finished = Dispatcher._check(head, item, [list(r) for r in sent])
    assert not classified_ and finished == done(2)
    assert frames == [[bytes(f) for f in r] for r in sent]  # byte for byte: no second JPEG generation
    assert [type(remote.unpack_record(r, LIMIT)) for r in frames] == [Patch, Patch, WindowDone]
    result = [remote.pack_record(r) for r in (classified(0, 0), done(1))]
    assert Dispatcher._check(head, item, result)[1] == []  # classified results go to the index, not on
    with pytest.raises(remote.RemoteError):
        Dispatcher._check(head, item, sent[:1] + sent[2:])  # two patches announced, one sent
