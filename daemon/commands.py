"""Subcommands beyond the daemon itself: one-shot extraction, exports, training and translation."""

from __future__ import annotations

import argparse
from collections.abc import Callable

HANDLERS: dict[str, Callable] = {}


def add_subcommands(sub: argparse._SubParsersAction, add_config: Callable) -> None:
    """Register the extra subcommands on the CLI parser."""
