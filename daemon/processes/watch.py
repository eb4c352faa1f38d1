"""The watch process: no input; stable new files in the watch folder out to the index."""

from __future__ import annotations

from daemon.worker import Output, ProcessSpec
from stages.records import Discovered
from stages.watch import WatchHandler

SPEC = ProcessSpec(
    "watch",
    build=lambda settings, index: WatchHandler(settings),
    outputs=(Output("discovered", lambda s, i: ["discovered"], bind=False, carries=(Discovered,)),),
)
