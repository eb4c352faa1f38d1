"""Serving the web application (the page, /metrics, /healthz) with waitress in a background thread of the
supervisor. waitress is a pure-Python, production WSGI server with a small thread pool: a page is a few catalog
queries and a template, and Prometheus scrapes every few seconds, so threads serve this better than an event loop
would (SQLite calls block anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from waitress import wasyncore
from waitress.server import create_server

from humanstyle.daemon.config import Settings, parse_listen

log = logging.getLogger("humanstyle.web")
THREADS = 4


class WebServer:
    def __init__(self, settings: Settings, health: Callable[[], dict]) -> None:
        from humanstyle.daemon.web.app import create_app
        from humanstyle.daemon.web.context import WEB_KEY
        from humanstyle.daemon.web.curation import Curator

        self.curator = Curator(settings) if settings.metrics.web else None
        self.app = create_app(settings, health, self.curator)
        host, port = parse_listen(settings.metrics.listen)
        # Binds now, so a port in use fails the start (OSError) before any stage runs.
        self.server = create_server(self.app, host=host, port=port, threads=THREADS, ident="humanstyle",
                                    clear_untrusted_proxy_headers=True)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        if not self.app.extensions[WEB_KEY].guard.writes_enabled:
            log.warning("the web page listens beyond loopback (%s) without metrics.write_token: pair curation is off",
                        settings.metrics.listen)

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.task_dispatcher.shutdown(timeout=2)
        wasyncore.close_all(getattr(self.server, "map", None) or self.server._map)
        self.thread.join(5)
        if self.curator is not None:
            self.curator.close()
