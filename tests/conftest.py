"""Shared fixtures. Tests run on the CPU with one torch thread: the machine has two cores and the daemon's own
processes need the other.

Skips. A test may skip when its environment lacks something (root, `mount`, `chattr`, promtool). With
HUMANSTYLE_REQUIRE_ALL=1 (set by .ci/run, which provides all of that) every skip is turned into a failure that
quotes the skip's reason, so a fault test can never pass CI by not running. The only exception is a test marked
`skip_ok("why")`, for a skip that is correct in CI too (chmod 000 cannot stop root).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from tests.services import postgres_ctl, postgres_url, s3_bucket  # noqa: E402, F401 - fixtures of the server tests

REQUIRE_ALL = "HUMANSTYLE_REQUIRE_ALL"


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)
    config.addinivalue_line("markers", "skip_ok(reason): this test's skip is expected even where "
                            f"{REQUIRE_ALL}=1 turns skips into failures")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and require_all()) or hasattr(report, "wasxfail"):
        return
    if item.get_closest_marker("skip_ok") is not None:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"{REQUIRE_ALL}=1: a required test was skipped ({reason}); provide what it needs "
                       "(.ci/run does as root) or mark it skip_ok with the reason it may skip")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, sections: dict[str, dict]) -> Path:
    """Write a config.toml with only the given keys (everything else takes its default)."""
    import json

    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value)
            else:
                text = json.dumps(value)
            lines.append(f"{key} = {text}")
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fast_sections(tmp: Path, **overrides: dict) -> dict[str, dict]:
    """A small, fast configuration for daemon tests: random-init models at small input sizes, short timers,
    private runtime folder and a free metrics port."""
    sections: dict[str, dict] = {
        "paths": {"watch_dir": "watch", "data_dir": "data", "runtime_dir": str(tmp / "run")},
        "watch": {"stable_s": 0.3, "poll_interval_s": 0.2}, "index": {"stall_timeout_s": 60.0},
        "detect": {"weights": "none", "score_threshold": 0.0, "min_size": 160, "max_size": 256, "max_persons": 2,
                   "min_box_side": 4, "patch_size": 96, "threads": 1},
        "classify": {"weights": "none", "threads": 1, "min_person_overlap": 0.0},
        "train": {"enabled": False},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "supervisor": {"restart_backoff_s": 0.2, "shutdown_timeout_s": 10.0},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return sections
