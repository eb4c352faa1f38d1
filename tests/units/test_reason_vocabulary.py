"""Every reason code the code can produce is in the vocabulary that metrics initialise at zero (so a new reason
cannot appear as a series nobody initialised): file rejections (watcher, decoder, index) and message rejections
(wire, records, worker, index)."""

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
    produced |= literals("stages/index.py", r'self\.segments\.finish\(self\.owner, seg\.key, "failed", "([a-z_]+)"')
    assert produced <= set(FILE_REASONS), produced - set(FILE_REASONS)


def test_message_reasons_cover_every_wire_record_worker_and_index_refusal():
    produced = literals("daemon/wire.py", r'WireError\("([a-z_]+)"')
    produced |= literals("stages/records.py", r'RecordError\("([a-z_]+)"')
    produced |= literals("daemon/worker.py", r'MESSAGES_REJECTED\.labels\([^,]+, "([a-z_]+)"\)')
    produced |= literals("stages/index.py", r'self\.reject\("([a-z_]+)"')
    assert produced <= set(MESSAGE_REASONS), produced - set(MESSAGE_REASONS)


def test_every_stage_handler_keeps_the_handler_contract():
    """Every process's logic is a stages.handler.Handler: the worker loop calls each hook without asking whether
    it exists, so a stage writes only what it does (issue #29's handler base class)."""
    import importlib
    import pkgutil

    import humanstyle.daemon.processes as processes
    from humanstyle.stages.handler import Handler

    specs = [importlib.import_module(f"{processes.__name__}.{m.name}")
             for m in pkgutil.iter_modules(processes.__path__)]
    handlers = {cls for mod in specs for name, cls in vars(mod).items() if name.endswith("Handler") and
                isinstance(cls, type)}
    assert len(handlers) >= 7, handlers
    for cls in handlers:
        assert issubclass(cls, Handler), cls
        assert all(callable(getattr(cls, hook)) for hook in ("start", "tick", "wait_ms", "close"))
