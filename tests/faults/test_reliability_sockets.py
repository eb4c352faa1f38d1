"""Malformed, oversized and fuzzed messages sent straight to every socket a stage receives on, in a running daemon.

The index binds its three inboxes (discovered, classified, control): the test connects a PUSH to each. The other
receivers (decode on jobs, detect on windows.0, classify on patches.0) connect to a socket their upstream binds;
the test kills that upstream, binds its own PUSH at the same ipc path while the supervisor's restart back-off
runs, lets the receiver reconnect to it, sends, and leaves: the restarted upstream binds again and the pipeline
carries on. Each receiver must stay up (no restart of its own) and count every refused message in
humanstyle_messages_rejected_total; at the end a clip still goes through the whole pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from humanstyle.daemon.runtime import wire
from humanstyle.stages.records import Classified, Discovered, Job, Patch, Record, StageRestarted, Window
from tests.reliability_helpers import (
    all_finished,
    drop,
    running_daemon,
    snapshot,
    stage_pid,
    staged_clip,
    tcp_listeners,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

MAX_MB = 1.0  # queues.max_message_mb for this daemon: small, so "oversized" is cheap to send
LIMIT = int(MAX_MB * 1024 * 1024)
FUZZ_EXAMPLES = 60


# --- valid messages of each type, to mutate -------------------------------------------------------------------
def valid(type_: str) -> Record:
    img, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    common = {"video_id": 1, "attempt": 1, "domain": "movie"}
    patch_fields = {**common, "window_index": 0, "frame_index": 3, "person_index": 0, "kind": "anchor",
                    "timestamp": 0.1, "box": [0, 0, 4, 4], "square": [0, 0, 8, 8], "score": 0.5}
    return {
        "discovered": lambda: Discovered(path="/nowhere/x.mp4", domain="movie", size=1, mtime=1.0,
                                         fingerprint="f" * 64, rejected=""),
        "job": lambda: Job(**common, path="/nowhere/x.mp4", source="", start_window=0, end_window=0),
        "window": lambda: Window(frames=np.zeros((1, 8, 8, 3), np.uint8), **common, window_index=0, anchor_index=3,
                                 frame_indices=[3], timestamps=[0.1]),
        "patch": lambda: Patch(image=img, mask=mask, **patch_fields),
        "classified": lambda: Classified(image=img, mask=mask, keypoints=np.zeros((17, 3), np.float32),
                                         **patch_fields, view="REJECTED", reason="no_person", keypoint_score=0.0),
        "stage_restarted": lambda: StageRestarted(stage="decode"),
    }[type_]()


def frames_of(msg: Record) -> list[bytes]:
    return [bytes(f) for f in wire.encode(msg)]


def raw_frames(type_: str, fields: dict, arrays: dict[str, np.ndarray]) -> list[bytes]:
    """The frames a sender that skips validation would send (wire.encode refuses to build invalid messages)."""
    specs = [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()]
    head = {"type": type_, "v": wire.VERSION, "fields": fields, "arrays": specs}
    return [json.dumps(head).encode(), *(np.ascontiguousarray(v).tobytes() for v in arrays.values())]


def with_header(msg: Record, change) -> list[bytes]:
    frames = frames_of(msg)
    head = json.loads(frames[0])
    change(head)
    return [json.dumps(head).encode(), *frames[1:]]


def with_array(msg: Record, name: str, arr: np.ndarray, **field_changes) -> list[bytes]:
    """A message whose array `name` is replaced (declared consistently, so only its meaning is wrong)."""
    return raw_frames(msg.TYPE, {**msg.fields(), **field_changes}, {**msg.arrays(), name: arr})


def with_fields(msg: Record, **changes) -> list[bytes]:
    return raw_frames(msg.TYPE, {**msg.fields(), **changes}, msg.arrays())


def structural_garbage(type_: str) -> list[list[bytes]]:
    """Messages wire.decode refuses, one per reason (each reason must be counted)."""
    msg = valid(type_)
    out = [
        [b"not json at all"],
        [b"\x80\x04\x95pickle"],
        [b"[1, 2, 3]"],
        with_header(msg, lambda h: h.update(v=99)),
        with_header(msg, lambda h: h.update(type="exec")),
        with_header(msg, lambda h: h["fields"].pop(next(iter(h["fields"])))),
        with_header(msg, lambda h: h["fields"].update(video_id="1; rm -rf /", stage=["x"], path=7)),
        with_header(msg, lambda h: h["fields"].update(__class__="os.system")),
        [b"{" + b" " * (wire.MAX_HEADER_BYTES + 10) + b"}"],
        [b"{}", b"x" * (LIMIT + 1000)],  # over queues.max_message_mb, under ZeroMQ's hard cap
    ]
    if msg.arrays():
        out.append(with_header(msg, lambda h: h["arrays"][0].update(dtype="object")))
        out.append(with_header(msg, lambda h: h["arrays"][0].update(shape=[1 << 30])))
        out.append(frames_of(msg)[:1])  # arrays declared, buffers missing
    else:
        out.append(frames_of(msg) + [b"an undeclared buffer"])
    for frames in out:
        try:
            wire.decode(frames, LIMIT)
        except wire.WireError:
            continue
        raise AssertionError(f"{frames[0][:60]!r} was supposed to be invalid")
    return out


def semantic_garbage(type_: str) -> list[list[bytes]]:
    """Well-formed messages that still cannot be processed by the receiver: wrong array shapes, a message type
    that does not belong on this queue, a path-like domain or view, a negative start window."""
    other = {"discovered": "job", "stage_restarted": "discovered", "job": "window", "window": "patch",
             "patch": "job", "classified": "job"}[type_]
    out = [frames_of(valid(other))]
    msg = valid(type_)
    if type_ == "window":
        out += [with_array(msg, "frames", np.zeros((6,), np.uint8)),
                with_array(msg, "frames", np.zeros((1, 8, 8), np.uint8)),
                with_array(msg, "frames", np.zeros((1, 0, 8, 3), np.uint8)),
                with_array(msg, "frames", np.zeros((2, 8, 8, 3), np.uint8)),  # 2 frames, 1 index
                with_fields(msg, frame_indices=["a"], timestamps=["b"])]
    elif type_ == "patch":
        out += [with_array(msg, "image", np.zeros((8, 8), np.uint8)),
                with_array(msg, "image", np.zeros((0, 0, 3), np.uint8), ),
                with_array(msg, "mask", np.zeros((3, 5), np.uint8))]
    elif type_ == "classified":
        out += [with_array(msg, "keypoints", np.zeros((5,), np.float32), view="FULL-BODY-FRONT", reason=""),
                with_array(msg, "image", np.zeros((0, 4, 3), np.uint8)),
                with_fields(msg, domain="../../../../tmp"),
                with_fields(msg, view="../../../../tmp/evil"),
                with_fields(msg, video_id=987654)]  # no such video
    elif type_ == "job":
        out += [with_fields(msg, start_window=-5)]
    return out


@st.composite
def fuzzed(draw, type_: str) -> list[bytes]:
    """A message of `type_` with random damage: header fields retyped/removed/added, array specs altered, buffers
    cut or lengthened, or bytes of the header flipped. Only damage that wire.decode refuses is kept."""
    msg = valid(type_)
    frames = frames_of(msg)
    head = json.loads(frames[0])
    buffers = frames[1:]
    json_values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                            st.text(max_size=20), st.lists(st.integers(), max_size=4),
                            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["retype", "drop", "add", "spec", "cut", "grow", "flip", "version"]))
        if action == "retype" and head["fields"]:
            head["fields"][draw(st.sampled_from(sorted(head["fields"])))] = draw(json_values)
        elif action == "drop" and head["fields"]:
            head["fields"].pop(draw(st.sampled_from(sorted(head["fields"]))))
        elif action == "add":
            head["fields"][draw(st.text(min_size=1, max_size=10))] = draw(json_values)
        elif action == "spec" and head["arrays"]:
            spec = head["arrays"][draw(st.integers(0, len(head["arrays"]) - 1))]
            key = draw(st.sampled_from(["name", "dtype", "shape"]))
            spec[key] = draw(st.one_of(json_values, st.lists(st.integers(-3, 1 << 21), max_size=6)))
        elif action == "cut" and buffers:
            i = draw(st.integers(0, len(buffers) - 1))
            buffers[i] = buffers[i][: draw(st.integers(0, max(0, len(buffers[i]) - 1)))]
        elif action == "grow":
            buffers.append(draw(st.binary(max_size=64)))
        elif action == "version":
            head["v"] = draw(json_values)
    raw = json.dumps(head).encode()
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + bytes([raw[pos] ^ draw(st.integers(1, 255))]) + raw[pos + 1:]
    out = [raw, *buffers]
    try:
        wire.decode(out, LIMIT)
    except wire.WireError:
        return out
    from hypothesis import reject

    reject()


# --- plumbing -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sockets")
    # A 3 s restart back-off leaves time to take over a killed upstream's endpoint.
    with running_daemon(tmp, supervisor={"restart_backoff_s": 3.0, "max_backoff_s": 3.0, "crash_loop_restarts": 20},
                        queues={"max_message_mb": MAX_MB}) as d:
        yield d, tmp


def rejected(d, stage: str) -> float:
    return d.value("humanstyle_messages_rejected_total", stage=stage)


def send_all(sock: zmq.Socket, messages: list[list[bytes]], timeout_s: float = 30) -> None:
    for frames in messages:
        if not sock.poll(int(timeout_s * 1000), zmq.POLLOUT):
            raise AssertionError("the receiver never connected / took the message")
        sock.send_multipart(frames)


def connect_push(path: Path) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(f"ipc://{path}")
    return ctx, sock


def fuzz_messages(type_: str, n: int) -> list[list[bytes]]:
    found: list[list[bytes]] = []

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(fuzzed(type_))
    def collect(frames):
        found.append(frames)

    collect()
    return found


def expect_rejections(d, stage: str, before: float, count: int) -> None:
    d.wait_for(lambda: rejected(d, stage) >= before + count, 60, f"{count} rejections counted by {stage}")
    time.sleep(0.5)
    assert rejected(d, stage) == before + count, "more rejections than bad messages sent"


# --- the index's own inboxes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("queue, type_", [("discovered", "discovered"), ("classified", "classified"),
                                          ("control", "stage_restarted")])
def test_the_index_survives_and_counts_bad_messages_on(live, queue, type_):
    d, tmp = live
    pid = stage_pid(d, "index")
    restarts = d.value("humanstyle_stage_restarts_total", stage="index")
    before = rejected(d, "index")
    messages = structural_garbage(type_) + semantic_garbage(type_) + fuzz_messages(type_, FUZZ_EXAMPLES)
    ctx, sock = connect_push(tmp / "run" / f"{queue}.sock")
    try:
        send_all(sock, messages)
        # One message far over ZeroMQ's cap (2 x max_message_mb): the connection is dropped, nothing counted.
        sock.send_multipart([b"{}", b"\0" * (3 * LIMIT)])
    finally:
        sock.close()
        ctx.term()
    expect_rejections(d, "index", before, len(messages))
    assert stage_pid(d, "index") == pid, "the index was restarted: a message crashed it"
    assert d.value("humanstyle_stage_restarts_total", stage="index") == restarts
    snap = snapshot(tmp / "data")
    assert snap.counts["patches_of_unknown_videos"] == 0
    assert not list(Path("/tmp").glob("evil*")), "a message wrote outside the data folder"


# --- receivers behind a bound upstream ------------------------------------------------------------------------
TAKEOVER = [("decode", "index", "jobs.sock", "job"), ("detect", "decode", "windows.0.sock", "window"),
            ("classify", "detect", "patches.0.sock", "patch")]


@pytest.mark.parametrize("stage, upstream, endpoint, type_", TAKEOVER)
def test_a_worker_survives_and_counts_bad_messages_from_its_upstream(live, stage, upstream, endpoint, type_):
    d, tmp = live
    d.wait_for(lambda: d.health()["status"] == "ok", 90, "a healthy daemon")
    pid = stage_pid(d, stage)
    before = rejected(d, stage)
    up_restarts = d.value("humanstyle_stage_restarts_total", stage=upstream)
    messages = structural_garbage(type_) + semantic_garbage(type_) + fuzz_messages(type_, FUZZ_EXAMPLES)

    os.kill(stage_pid(d, upstream), signal.SIGKILL)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    try:
        sock.bind(f"ipc://{tmp / 'run' / endpoint}")  # in place of the dead upstream
        send_all(sock, messages)
        expect_rejections(d, stage, before, len(messages))
    finally:
        sock.close(linger=0)
        ctx.term()
    d.wait_for(lambda: d.value("humanstyle_stage_restarts_total", stage=upstream) == up_restarts + 1, 60,
               f"{upstream} restart")
    d.wait_for(lambda: d.health()["status"] == "ok", 90, "a healthy daemon")
    assert stage_pid(d, stage) == pid, f"{stage} was restarted: a message crashed it"


def test_the_pipeline_still_works_after_all_that(live):
    d, tmp = live
    clip = staged_clip(tmp, "after-fuzz.mp4", seconds=1.0)
    drop(tmp, clip, "movie")
    d.wait_for(lambda: d.value("humanstyle_videos_total", status="done") >= 1, 180, "a video after the fuzzing")
    d.wait_for(lambda: all_finished(tmp / "data", len(snapshot(tmp / "data").videos)), 60, "every video finished")
    for stage in ("index", "decode", "detect", "classify"):
        assert d.value("humanstyle_messages_rejected_total", stage=stage) > 0


def test_sigusr1_prints_a_stages_stacks_to_the_log_and_the_stage_goes_on(live):
    d, _ = live
    pid = stage_pid(d, "index")
    before = d.log_text().count("Current thread")
    os.kill(pid, signal.SIGUSR1)
    d.wait_for(lambda: d.log_text().count("Current thread") > before, 10, "the index's stacks in the log")
    assert 'stage_loop.py", line' in d.log_text().split("Current thread")[-1]  # its loop, where it waits
    assert stage_pid(d, "index") == pid and d.health()["status"] == "ok"


def test_sockets_and_metrics_are_private_and_on_loopback(live):
    d, tmp = live
    run = tmp / "run"
    assert run.stat().st_mode & 0o777 == 0o700 and run.stat().st_uid == os.getuid()
    socks = sorted(p.name for p in run.glob("*.sock"))
    assert {"discovered.sock", "classified.sock", "control.sock", "jobs.sock", "windows.0.sock",
            "patches.0.sock"} <= set(socks)
    # Every TCP socket the daemon's processes listen on is the metrics endpoint, on 127.0.0.1.
    health = d.health()
    pids = [d.proc.pid] + [pid for s in health["stages"].values() for pid in s["pids"]]
    listening = [f"{address}:{port:04X}" for address, port in tcp_listeners(pids)]
    port = int(d.listen.rsplit(":", 1)[1])
    assert listening == [f"0100007F:{port:04X}"], f"daemon listens on {listening}"
