"""The classify process: patches from every detector in, classified patches (and passing records) out to the index."""

from __future__ import annotations

from humanstyle.daemon.processes import torch_threads_for
from humanstyle.daemon.worker import Input, Output, ProcessSpec
from humanstyle.stages.classify import ClassifyHandler, build_estimator
from humanstyle.stages.records import Classified, Patch, VideoEnd, WindowDone

SPEC = ProcessSpec(
    "classify",
    build=lambda settings, index: ClassifyHandler(build_estimator(settings), settings.classify),
    inputs=(Input("patches", lambda s, i: [f"patches.{k}" for k in range(s.detect.workers)], bind=False,
                  accepts=(Patch, WindowDone, VideoEnd)),),
    outputs=(Output("classified", lambda s, i: ["classified"], bind=False,
                    carries=(Classified, WindowDone, VideoEnd), receiver_drains=True),),
    setup=torch_threads_for("classify"),
)
