"""One trainer per data folder (stages/train/lock.py): the lock itself, and that a killed holder frees it."""

from __future__ import annotations

import signal
import subprocess
import sys

from humanstyle.stages.train.lock import TrainerLock

HOLD = """
import sys, time
from humanstyle.stages.train.lock import TrainerLock
lock = TrainerLock(sys.argv[1], "a trainer that gets killed")
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_trainer_is_refused_and_told_who_trains_until_the_first_releases(tmp_path):
    first, second = TrainerLock(tmp_path, "humanstyle train"), TrainerLock(tmp_path, "the daemon's trainer")
    assert first.acquire() and first.held
    assert first.acquire()  # holding already
    assert not second.acquire() and not second.held
    assert second.holder().startswith("humanstyle train, pid ")
    first.release()
    assert second.acquire()
    assert first.holder().startswith("the daemon's trainer, pid ")
    assert not first.acquire()
    second.release()


def test_a_killed_trainer_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = TrainerLock(tmp_path, "the next trainer")
        assert not lock.acquire()
        assert "a trainer that gets killed" in lock.holder()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert lock.acquire()
        lock.release()
    finally:
        holder.kill()
        holder.wait()
