"""The trainer process: pair events from the pairing stage in; it keeps pix2pix and CycleGAN learning (stages.train)."""

from __future__ import annotations

from humanstyle.daemon.worker import Input, ProcessSpec
from humanstyle.stages.records import PairsAppended
from humanstyle.stages.train import TrainHandler

SPEC = ProcessSpec(
    "train",
    build=lambda settings, index: TrainHandler(settings),
    inputs=(Input("events", lambda s, i: ["events"], bind=False, accepts=(PairsAppended,), subscribe=True),),
)
