"""A worker's agent process (daemon/agent.py): work from the head in, handed to this machine's detect and classify
processes; their results back to the head, one message per item."""

from __future__ import annotations

from humanstyle.daemon.agent import run_agent
from humanstyle.daemon.worker import ProcessSpec

SPEC = ProcessSpec("agent", build=lambda settings, index: None, main=run_agent)
