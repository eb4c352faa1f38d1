"""Logging set-up shared by the CLI and every stage process."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO", process: str = "main") -> None:
    fmt = f"%(asctime)s %(levelname)-7s [{process}] %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
