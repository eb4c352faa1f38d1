"""What the web page's blueprints share: the settings, the catalog reader, the curator, the write guard, set once by
`create_app` on the Flask application."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

WEB_KEY = "humanstyle"


@dataclass(frozen=True)
class Web:
    settings: Any  # humanstyle.daemon.config.Settings
    health: Callable[[], dict]
    curator: Any  # daemon.web.curation.Curator, or None: a page without curation
    guard: Any  # daemon.web.security.Guard
    catalog: Callable[[], Any]  # a read-only Catalog per thread, or None before the index made one
    models: tuple[str, ...]

    @property
    def data_dir(self) -> Path:
        return self.settings.paths.data_dir

    @property
    def train_root(self) -> Path:
        return self.data_dir / "train"


def web() -> Web:
    """The running application's context (inside a request)."""
    return current_app.extensions[WEB_KEY]
