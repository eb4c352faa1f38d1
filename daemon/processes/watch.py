"""The watch process: no input; stable new files in the watch folder out to the index."""

from __future__ import annotations

from humanstyle.daemon.worker import Output, ProcessSpec
from humanstyle.stages.records import Discovered
from humanstyle.stages.watch import WatchHandler

SPEC = ProcessSpec(
    "watch",
    build=lambda settings, index: WatchHandler(settings),
    outputs=(Output("discovered", lambda s, i: ["discovered"], bind=False, carries=(Discovered,),
                    receiver_drains=True),),
)
