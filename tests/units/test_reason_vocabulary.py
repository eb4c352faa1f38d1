"""Every reason code the code can produce is in the vocabulary that metrics initialise at zero (so a new reason
cannot appear as a series nobody initialised): file rejections (watcher, decoder, index) and message rejections
(wire, records, stage loop, index)."""

from __future__ import annotations

import re
from pathlib import Path

from humanstyle.stages.vocabulary import FILE_REASONS, MESSAGE_REASONS, NOT_A_VIDEO_REASONS

ROOT = Path(__file__).resolve().parents[2]


def literals(path: str, pattern: str) -> set[str]:
    found = set(re.findall(pattern, (ROOT / path).read_text()))
    assert found, f"{pattern} matched nothing in {path}: the scan is broken"
    return found


def test_file_reasons_cover_what_watch_decode_and_index_report():
    not_a_video = literals("stages/decode.py", r'NotAVideo\("([a-z_]+)"')
    assert not_a_video <= set(NOT_A_VIDEO_REASONS), not_a_video - set(NOT_A_VIDEO_REASONS)
    produced = not_a_video | {"decode_error"}
    produced |= literals("stages/watch.py", r'rejected = "([a-z_]+)"')
    produced |= literals("stages/index/stage.py",
                         r'self\.segments\.finish\(self\.owner, seg\.key, "failed", "([a-z_]+)"')
    assert produced <= set(FILE_REASONS), produced - set(FILE_REASONS)


def test_message_reasons_cover_every_wire_record_worker_and_index_refusal():
    produced = literals("daemon/runtime/wire.py", r'WireError\("([a-z_]+)"')
    produced |= literals("stages/records.py", r'RecordError\("([a-z_]+)"')
    produced |= literals("daemon/runtime/stage_loop.py", r'MESSAGES_REJECTED\.labels\([^,]+, "([a-z_]+)"\)')
    produced |= literals("stages/index/stage.py", r'self\.reject\("([a-z_]+)"')
    assert produced <= set(MESSAGE_REASONS), produced - set(MESSAGE_REASONS)


def test_every_stage_handler_keeps_the_handler_contract():
    """Every process's logic is a stages.handler.Handler: the stage loop calls each hook without asking whether
    it exists, so a stage writes only what it does (issue #29's handler base class). The handlers are those the
    pipeline declaration builds."""
    import ast
    import inspect

    from humanstyle.daemon import pipeline
    from humanstyle.stages.handler import Handler

    handlers = []
    for stage in pipeline.STAGES.values():
        tree = ast.parse(inspect.getsource(stage.handler))  # the factory imports its handler class, then builds it
        (imp,) = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                  and n.module.startswith("humanstyle.stages") and any(a.name.endswith("Handler") for a in n.names)]
        module = __import__(imp.module, fromlist=["_"])
        handlers += [getattr(module, a.name) for a in imp.names if a.name.endswith("Handler")]
    assert len(handlers) == len(pipeline.STAGES) == 7, handlers
    for cls in handlers:
        assert issubclass(cls, Handler), cls
        assert all(callable(getattr(cls, hook)) for hook in ("start", "tick", "wait_ms", "close"))
