"""The detect process: windows from every decoder in, person patches (and the records passing through) out."""

from __future__ import annotations

from humanstyle.daemon.processes import torch_threads_for
from humanstyle.daemon.worker import Input, Output, ProcessSpec
from humanstyle.stages.detect import DetectHandler, build_detector
from humanstyle.stages.records import Patch, VideoEnd, Window, WindowDone

SPEC = ProcessSpec(
    "detect",
    build=lambda settings, index: DetectHandler(build_detector(settings.detect), settings.detect),
    inputs=(Input("windows", lambda s, i: [f"windows.{k}" for k in range(s.decode.workers)], bind=False,
                  accepts=(Window, VideoEnd)),),
    outputs=(Output("patches", lambda s, i: [f"patches.{i}"], bind=True, carries=(Patch, WindowDone, VideoEnd)),),
    setup=torch_threads_for("detect"),
)
