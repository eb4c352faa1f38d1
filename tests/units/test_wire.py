import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humanstyle.daemon.runtime import wire
from humanstyle.stages.records import RECORD_TYPES, Job, Patch, Window

LIMIT = 1 << 20


def window_msg(frames=None):
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3) if frames is None else frames
    return Window(frames=frames, video_id=3, attempt=1, domain="movie", window_index=7, anchor_index=191,
                  frame_indices=[180, 191], timestamps=[7.5, 7.96])


def frames_of(msg):
    return [bytes(f) for f in wire.encode(msg)]


def test_round_trip_keeps_fields_and_arrays():
    msg = window_msg()
    back = wire.decode(frames_of(msg), LIMIT)
    assert type(back) is Window and back.fields() == msg.fields()
    np.testing.assert_array_equal(back.frames, msg.frames)


def test_non_contiguous_arrays_are_sent_correctly():
    big = np.arange(4 * 8 * 6 * 3, dtype=np.uint8).reshape(4, 8, 6, 3)
    view = big[::2, ::2]
    back = wire.decode(frames_of(window_msg(view)), LIMIT)
    np.testing.assert_array_equal(back.frames, view)


def test_the_header_is_json_not_pickle():
    head = json.loads(frames_of(window_msg())[0])
    assert head["type"] == "window" and head["v"] == wire.VERSION


def test_sender_side_validation_catches_bugs():
    with pytest.raises(wire.WireError, match="bad_field"):
        wire.encode(Job(video_id=1, attempt=1, path="/v.mp4", source="", domain="movie", start_window="0",
                        end_window=0))
    with pytest.raises(wire.WireError, match="bad_field"):
        wire.encode(Job(video_id=1, attempt=1, path="/v.mp4", source="", domain="movie", start_window=-1,
                        end_window=0))


def test_schemas_follow_the_records():
    fields, arrays = wire.SCHEMAS["classified"]
    assert {f.name for f in dataclasses.fields(Patch)} < set(fields) | set(arrays)  # a classified patch is more
    assert arrays == {"image": "uint8", "mask": "uint8", "keypoints": "float32"}
    assert set(wire.SCHEMAS) == set(RECORD_TYPES)


def tamper(header_change=None, buffers=None):
    frames = frames_of(window_msg())
    head = json.loads(frames[0])
    if header_change:
        header_change(head)
    return [json.dumps(head).encode(), *(frames[1:] if buffers is None else buffers)]


@pytest.mark.parametrize("frames, reason", [
    ([], "empty_message"),
    ([b"\x80\x04pickle"], "malformed_header"),
    ([b"[1, 2]"], "malformed_header"),
    (tamper(lambda h: h.update(v=99)), "bad_version"),
    (tamper(lambda h: h.update(type="exec")), "unknown_type"),
    (tamper(lambda h: h["fields"].pop("video_id")), "missing_field"),
    (tamper(lambda h: h["fields"].update(video_id="1; rm -rf /")), "bad_field"),
    (tamper(lambda h: h["fields"].update(extra=1)), "bad_field"),
    (tamper(lambda h: h["arrays"][0].update(dtype="object")), "bad_array"),
    (tamper(lambda h: h["arrays"][0].update(shape=[2, 4, 6, 4])), "bad_array"),
    (tamper(buffers=[]), "bad_array"),
    (tamper(buffers=[b"\0" * 10]), "bad_array"),
    ([b"{}" + b" " * (2 * LIMIT)], "oversized"),
])
def test_bad_frames_are_rejected_with_a_reason(frames, reason):
    with pytest.raises(wire.WireError) as err:
        wire.decode(frames, LIMIT)
    assert err.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_random_bytes_never_crash_the_decoder(frames):
    try:
        wire.decode(frames, LIMIT)
    except wire.WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.one_of(st.integers(), st.text(max_size=20), st.none(),
                                                       st.lists(st.integers(), max_size=3)), max_size=6),
       st.sampled_from(sorted(wire.SCHEMAS)))
def test_random_headers_of_every_type_are_rejected_cleanly(fields, type_):
    head = json.dumps({"type": type_, "v": wire.VERSION, "fields": fields, "arrays": []}).encode()
    try:
        msg = wire.decode([head], LIMIT)
    except wire.WireError:
        return
    required, _ = wire.SCHEMAS[type_]
    assert set(msg.fields()) == set(required)


@pytest.mark.parametrize("box, square", [([0, 0, 4], [0, 0, 8, 8]), ([0, 0, 4, 4], [0, 0, 0, 8]),
                                         ([0, 0, 4, float("nan")], [0, 0, 8, 8]), ([0, 0, 4, 4], [0, 0, 8, "8"])])
def test_patches_need_a_box_and_a_square_the_classifier_can_map(box, square):
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(wire.WireError, match="bad_field"):
        wire.encode(Patch(image=image, mask=image[..., 0], video_id=1, attempt=1, domain="movie", window_index=0,
                          frame_index=0, person_index=0, kind="anchor", timestamp=0.0, box=box, square=square,
                          score=0.5))


def test_every_record_type_declares_its_own_fields():
    """A record class without its own @dataclass inherits Record's (no) fields: it would build from nothing and
    refuse every real message."""
    for name, cls in RECORD_TYPES.items():
        assert "__dataclass_fields__" in cls.__dict__, f"{name}: {cls.__name__} is not a dataclass of its own"
        fields, arrays = wire.SCHEMAS[name]
        assert fields or arrays, name
