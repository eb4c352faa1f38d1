"""The pairing process: no input queue (it follows the catalog's unpaired patches, stages/pairing.py); pair events
out to the trainer."""

from __future__ import annotations

from humanstyle.daemon.worker import Output, ProcessSpec
from humanstyle.stages.pairing import PairingHandler
from humanstyle.stages.records import PairsAppended

SPEC = ProcessSpec(
    "pairing",
    build=lambda settings, index: PairingHandler(settings),
    outputs=(Output("events", lambda s, i: ["events"], bind=True, carries=(PairsAppended,), publish=True),),
)
