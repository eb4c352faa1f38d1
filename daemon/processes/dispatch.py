"""The head's dispatch process (daemon/head.py): windows from every decoder in, compressed and handed to the workers
that joined over the network; their results out to the index."""

from __future__ import annotations

from humanstyle.daemon.head import run_dispatch
from humanstyle.daemon.worker import ProcessSpec

SPEC = ProcessSpec("dispatch", build=lambda settings, index: None, main=run_dispatch)
