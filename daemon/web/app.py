"""The web page: what the daemon mined and how training goes, and pair curation. A Flask application (Jinja2
templates under templates/, our own CSS and JS under static/), served with /metrics and /healthz by waitress on
`metrics.listen` (daemon.web.server).

Views: status (/), pairs (/pairs), rejections (/rejections), training (/training) in daemon/web/pages.py; images
and videos in media.py; the verdict API in curation.py: three Flask blueprints sharing the `Web` context
(context.py). Each page refreshes its content by itself (static/app.js asks for the same URL with ?partial=1 and
swaps the content in). Images are served by patch id or model name only. Reads open the catalog read-only;
verdicts go through the index (daemon.web.curation).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from flask import Flask, Response, abort, request

from humanstyle.daemon.config import Settings, parse_listen
from humanstyle.daemon.web.context import WEB_KEY, Web
from humanstyle.daemon.web.curation import Curator, api
from humanstyle.daemon.web.media import media
from humanstyle.daemon.web.pages import pages
from humanstyle.daemon.web.security import Guard
from humanstyle.stages.counters import train_model_names
from humanstyle.stages.store.catalog import Catalog, catalog_exists, open_catalog

CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class CatalogReader:
    """One read-only catalog connection per server thread (SQLite connections stay in their thread), opened once
    the index has created the catalog (SQLite or PostgreSQL, as `catalog.url` says)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    def __call__(self) -> Catalog | None:
        db = getattr(self._local, "db", None)
        if db is None and catalog_exists(self.settings):
            db = self._local.db = open_catalog(self.settings, readonly=True, role="web")
        return db


def create_app(settings: Settings, health, curator: Curator | None = None) -> Flask:
    """The web application. `health` returns /healthz's JSON; `curator` sends verdicts to the index (None: a
    page without curation, e.g. for benchmarks)."""
    from humanstyle.daemon.web.metrics_server import register_metrics_routes

    here = str(Path(__file__).parent)  # explicit: an editable install hides the package folder from Flask
    app = Flask("humanstyle.daemon.web", root_path=here, instance_path=here)
    app.json.sort_keys = False
    host, _port = parse_listen(settings.metrics.listen)
    guard = Guard(host, settings.metrics.write_token)
    app.extensions[WEB_KEY] = Web(settings=settings, health=health, curator=curator, guard=guard,
                                  catalog=CatalogReader(settings), models=train_model_names(settings.domains))
    register_metrics_routes(app, health)
    if not settings.metrics.web:
        return app

    @app.before_request
    def check_host():
        if request.path not in ("/metrics", "/healthz") and not guard.host_allowed(request.host):
            abort(403, "this page answers to loopback host names only")

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def error(exc):
        return Response(f"{exc.code} {exc.name}: {exc.description}\n", exc.code, mimetype="text/plain")

    app.jinja_env.filters["basename"] = lambda p: os.path.basename(p or "")
    for blueprint in (pages, media, api):
        app.register_blueprint(blueprint)
    return app
