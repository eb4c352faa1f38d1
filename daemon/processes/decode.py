"""The decode process: jobs from the index in, windows (then each video's video_end) out to every detector."""

from __future__ import annotations

from humanstyle.daemon.config import Settings
from humanstyle.daemon.worker import Input, Output, ProcessSpec
from humanstyle.stages.decode import DecodeHandler
from humanstyle.stages.records import Job, VideoEnd, Window
from humanstyle.stages.storage import open_storage


def setup(settings: Settings, index: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the decoders share the machine with the models


SPEC = ProcessSpec(
    "decode",
    build=lambda settings, index: DecodeHandler(settings.decode, open_storage(settings)),
    inputs=(Input("jobs", lambda s, i: ["jobs"], bind=False, accepts=(Job,)),),
    outputs=(Output("windows", lambda s, i: [f"windows.{i}"], bind=True, carries=(Window, VideoEnd)),),
    setup=setup,
)
