"""A stage whose supervisor died stops, and if it is stuck it exits anyway after its grace (daemon/runtime/stage_main.py
`watch_parent`, the backstop to PR_SET_PDEATHSIG): a stage left behind holds the data folder against the next
daemon. Real processes: a parent that is SIGKILLed, and its child stuck in a loop that ignores the stop flag."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import _alive

PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stderr=open(sys.argv[2], "wb"))
print(child.pid, flush=True)
time.sleep(600)
"""

STUCK_CHILD = """
import os, sys, time
from humanstyle.daemon.runtime.fabric import StopFlag
from humanstyle.daemon.runtime.stage_main import watch_parent
stop = StopFlag()
watch_parent(os.getppid(), stop, grace_s=1.0, name="stuck-0", poll_s=0.05)
print("watching", file=sys.stderr, flush=True)
said = False
while True:  # stuck: never looks at the stop flag in a way that ends the loop
    if stop.event.is_set() and not said:
        print("stop requested", file=sys.stderr, flush=True)
        said = True
    time.sleep(0.02)
"""


def test_a_stuck_stage_exits_after_its_grace_once_its_supervisor_is_killed(tmp_path: Path):
    err = tmp_path / "child.err"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, STUCK_CHILD, str(err)], stdout=subprocess.PIPE,
                              text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while "watching" not in err.read_text():
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        time.sleep(0.3)
        assert _alive(child)  # its parent lives: nothing happens
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        killed = time.monotonic()
        while _alive(child):
            assert time.monotonic() - killed < 15, "the orphaned stage is still running"
            time.sleep(0.05)
        took = time.monotonic() - killed
        text = err.read_text()
        assert "stop requested" in text, text  # first the polite stop, as on SIGTERM
        assert "still running 1 s after its supervisor died" in text, text
        assert 'File "<string>", line' in text, text  # its stacks: where it was stuck
        assert took >= 1.0  # not before its grace
    finally:
        parent.kill()
        if _alive(child):
            subprocess.run(["kill", "-9", str(child)], check=False)
