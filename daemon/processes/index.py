"""The index process, the writer of videos and patches: discovered files, classified patches, restart notices and pair
verdicts in; jobs out to the decoders. After a stop request it keeps taking results until they stop coming, so the
units the other stages finish while draining are written."""

from __future__ import annotations

from humanstyle.daemon.worker import Input, Output, ProcessSpec
from humanstyle.stages.index import IndexHandler
from humanstyle.stages.records import (
    Classified,
    Discovered,
    Job,
    PairVerdict,
    StageRestarted,
    VideoEnd,
    WindowDone,
)

SPEC = ProcessSpec(
    "index",
    build=lambda settings, index: IndexHandler(settings),
    inputs=(Input("discovered", lambda s, i: ["discovered"], bind=True, accepts=(Discovered,)),
            Input("classified", lambda s, i: ["classified"], bind=True, accepts=(Classified, WindowDone, VideoEnd)),
            Input("control", lambda s, i: ["control"], bind=True,
                  accepts=(StageRestarted, PairVerdict))),
    outputs=(Output("jobs", lambda s, i: ["jobs"], bind=True, carries=(Job,)),),
    drain_s=1.0,
)
