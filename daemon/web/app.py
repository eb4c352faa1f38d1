"""The web page: what the daemon mined and how training goes, and pair curation. A Flask application (Jinja2
templates under templates/, our own CSS and JS under static/), served with /metrics and /healthz by waitress on
`metrics.listen` (daemon.web.server).

Views: status (/), pairs (/pairs), rejections (/rejections), training (/training). Each page refreshes its content
by itself (static/app.js asks for the same URL with ?partial=1 and swaps the content in). Images are served by
patch id or model name only. Reads open the catalog read-only; verdicts go through the index (daemon.web.curation).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, abort, jsonify, render_template, request, send_file

from humanstyle.daemon.config import Settings, parse_listen
from humanstyle.daemon.web import images
from humanstyle.daemon.web.curation import Curator, IndexBusy
from humanstyle.daemon.web.security import Guard
from humanstyle.stages.catalog import PAIR_ORDERS, Catalog, catalog_exists, open_catalog
from humanstyle.stages.counters import train_model_names
from humanstyle.stages.train_preview import list_previews
from humanstyle.stages.train_state import latest_sample, read_state, read_validation
from humanstyle.stages.vocabulary import PATCH_REASONS, VERDICTS, VIEWS

PAGE_SIZE = 100
MAX_PAGE_SIZE = 200
EXAMPLES_PER_REASON = 8
VERDICT_FILTERS = {"all": None, "unjudged": "", "good": "good", "bad": "bad"}
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


@dataclass(frozen=True)
class Cursor:
    """Where a page of pairs starts: after the row with this similarity and id."""

    similarity: float
    id: int

    def text(self) -> str:
        return f"{self.similarity!r}_{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        if not text:
            return None
        sim, _, pid = text.rpartition("_")
        try:
            return cls(float(sim), int(pid))
        except ValueError:
            abort(400, "bad cursor")


def create_app(settings: Settings, health, curator: Curator | None = None) -> Flask:
    """The web application. `health` returns /healthz's JSON; `curator` sends verdicts to the index (None: a
    page without curation, e.g. for benchmarks)."""
    from humanstyle.daemon.metrics_server import register_metrics_routes

    here = str(Path(__file__).parent)  # explicit: an editable install hides the package folder from Flask
    app = Flask("humanstyle.daemon.web", root_path=here, instance_path=here)
    app.json.sort_keys = False
    data_dir = settings.paths.data_dir
    train_root = data_dir / "train"
    domains = settings.domains
    models = train_model_names(domains)
    host, _port = parse_listen(settings.metrics.listen)
    guard = Guard(host, settings.metrics.write_token)
    catalog = CatalogReader(settings)
    app.config["guard"] = guard
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

    def page(template: str, **context) -> str:
        partial = request.args.get("partial") == "1"
        return render_template(template, partial=partial, domains=domains, guard=guard, curation=curator is not None,
                               now=time.time(), **context)

    # --- views ------------------------------------------------------------------------------------------------
    @app.get("/")
    def status():
        db = catalog()
        counts = db.counts() if db else {}
        return page("status.html", tables=status_tables(counts), problems=(
            db.videos_needing_attention() if db else []), trainer=trainer_summary(train_root, models),
            health=health(), curated=dict(counts.get("curated", [])), copies=db.copies(limit=50) if db else [],
            copy_count=db.copy_count() if db else 0, train_enabled=settings.train.enabled,
            in_progress=video_progress(db.videos_in_progress() if db else [], time.time()))

    @app.get("/pairs")
    def pairs():
        view = request.args.get("view", "")
        order = request.args.get("order", "recent")
        verdict = request.args.get("verdict", "all")
        if view and view not in VIEWS or order not in PAIR_ORDERS or verdict not in VERDICT_FILTERS:
            abort(400, "unknown view, order or verdict filter")
        try:
            limit = min(max(int(request.args.get("limit", PAGE_SIZE)), 1), MAX_PAGE_SIZE)
        except ValueError:
            abort(400, "limit must be a number")
        after = Cursor.parse(request.args.get("after", ""))
        db = catalog()
        rows = []
        if db is not None:
            rows = db.pair_page(view=view or None, order=order, limit=limit + 1, verdict=VERDICT_FILTERS[verdict],
                                after=(after.similarity, after.id) if after else None)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = Cursor(rows[-1]["similarity"], rows[-1]["id"]).text() if more else ""
        return page("pairs.html", rows=rows, views=VIEWS, orders=PAIR_ORDERS, verdicts=list(VERDICT_FILTERS),
                    view=view, order=order, verdict=verdict, limit=limit, next_cursor=cursor, paged=after is not None,
                    total=db.pair_count() if db else 0)

    @app.get("/rejections")
    def rejections():
        db = catalog()
        counts = count_table(db.counts()["rejections"] if db else [], 2, {r: {} for r in PATCH_REASONS})
        examples = db.rejection_examples(tuple(counts), EXAMPLES_PER_REASON) if db else {}
        return page("rejections.html", counts=counts, examples=examples,
                    save_rejected=settings.pair.save_rejected)

    @app.get("/training")
    def training():
        validation = read_validation(train_root)
        state = read_state(train_root)
        panels = []
        for model in models:
            sample = latest_sample(train_root, model)
            panels.append({"model": model, "state": state.get("models", {}).get(model, {}),
                           "sample_step": int(sample.stem.split("-")[1]) if sample else None,
                           "curve": curve(validation.curves.get(model, [])),
                           "quality": validation.quality.get(model, {}),
                           "previews": list_previews(train_root, model)})
        return page("training.html", panels=panels, checkpoint=state.get("checkpoint"),
                    enabled=settings.train.enabled, updated=state.get("updated"),
                    preview_s=settings.train.preview_s, preview_on_cpu=settings.train.preview_on_cpu)

    # --- images -----------------------------------------------------------------------------------------------
    @app.get("/img/patch/<int:patch_id>/<any(thumb, full):size>")
    def patch_image(patch_id: int, size: str):
        db = catalog()
        row = db.patch_file(patch_id) if db else None
        source = images.patch_file(data_dir, row["path"]) if row else None
        if source is None:
            abort(404)
        if size == "full":
            return send_file(source, mimetype="image/png", max_age=3600)
        thumb = images.thumbnail(data_dir, patch_id, source)
        if thumb is None:
            abort(404)
        return send_file(thumb, mimetype="image/jpeg", max_age=3600)

    @app.get("/img/sample/<model>")
    def sample_image(model: str):
        if model not in models:
            abort(404)
        sample = latest_sample(train_root, model)
        if sample is None:
            abort(404)
        return send_file(sample, mimetype="image/png", max_age=0)

    @app.get("/video/preview/<model>/<name>")
    def preview_video(model: str, name: str):
        if model not in models:
            abort(404)
        found = [p for p in list_previews(train_root, model) if p.path.name == name]  # names from disk only
        if not found:
            abort(404)
        return send_file(found[0].path, mimetype="video/mp4", max_age=3600, conditional=True)

    # --- curation ---------------------------------------------------------------------------------------------
    @app.post("/api/pairs/<int:pair_id>/verdict")
    def set_verdict(pair_id: int):
        refusal = guard.write_refusal(request.headers, request.host)
        if refusal:
            return jsonify(error=refusal), 403
        if curator is None:
            return jsonify(error="curation is not available here"), 503
        body = request.get_json(silent=True) or {}
        verdict = body.get("verdict")
        if verdict not in VERDICTS:
            return jsonify(error=f"verdict must be one of {', '.join(VERDICTS)}"), 400
        db = catalog()
        if db is None or db.pair(pair_id) is None:
            return jsonify(error=f"no pair {pair_id}"), 404
        try:
            stored = curator.judge(pair_id, verdict, catalog)
        except IndexBusy as exc:
            return jsonify(error=str(exc)), 503
        return jsonify(pair_id=pair_id, verdict=verdict, stored=stored), 200 if stored else 202

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def error(exc):
        return Response(f"{exc.code} {exc.name}: {exc.description}\n", exc.code, mimetype="text/plain")

    app.jinja_env.filters["basename"] = lambda p: os.path.basename(p or "")
    app.jinja_env.filters["clock"] = clock
    app.jinja_env.filters["duration"] = duration
    return app


# --- what the templates show ----------------------------------------------------------------------------------
def count_table(rows, key_cols: int, out: dict | None = None) -> dict[str, dict[str, int]]:
    """Count rows ((domain, label, n) or (label, n)) as {label: {domain or "all": n}}, added to `out`."""
    out = {} if out is None else out
    for row in rows:
        *keys, n = row
        if key_cols == 2:
            domain, label = keys
            out.setdefault(label, {})[domain] = n
        else:
            out.setdefault(keys[0], {})["all"] = n
    return out


def status_tables(counts: dict) -> dict[str, dict]:
    """Each count table as {row label: {column: n}}, for the status view."""
    return {
        "videos": count_table(counts.get("videos", []), 2),
        "patches": count_table(counts.get("patches", []), 2),
        "rejections": count_table(counts.get("rejections", []), 2),
        "pairs": count_table(counts.get("pairs", []), 1),
    }


def trainer_summary(root: Path, models: tuple[str, ...]) -> list[dict]:
    state = read_state(root).get("models", {})
    return [{"model": m, **state.get(m, {})} for m in models]


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    span = (high - low) or abs(high) or 1.0
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [first + i * step for i in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]
    return ticks if len(ticks) > 1 else [first, first + step]


def curve(points: list[tuple[int, float]], width: int = 480, height: int = 170) -> dict | None:
    """A validation curve (lower is better) as SVG parts: the polyline, and ticks with labels on both axes (step
    below, score at the left), the axes spanning round values around the data."""
    if not points:
        return None
    left, right, top, bottom = 56, 26, 10, 38  # room for the score labels at the left, the step labels below
    steps = [p[0] for p in points]
    scores = [p[1] for p in points]
    yticks = nice_ticks(min(scores), max(scores), 5)
    xticks = nice_ticks(min(steps), max(steps))
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]
    sx = (width - left - right) / ((x1 - x0) or 1)
    sy = (height - top - bottom) / ((y1 - y0) or 1)

    def x(step: float) -> float:
        return round(left + (step - x0) * sx, 1)

    def y(score: float) -> float:
        return round(height - bottom - (score - y0) * sy, 1)

    digits = max(0, -math.floor(math.log10((yticks[1] - yticks[0]) or 1)))
    return {"points": " ".join(f"{x(s)},{y(v)}" for s, v in points), "width": width, "height": height,
            "left": left, "right": width - right, "top": top, "bottom": height - bottom,
            "xticks": [{"at": x(t), "label": f"{t:,.0f}"} for t in xticks],
            "yticks": [{"at": y(t), "label": f"{t:.{digits}f}"} for t in yticks],
            "first_step": steps[0], "last_step": steps[-1], "low": min(scores), "last": scores[-1], "n": len(points)}


def video_progress(rows, now: float) -> list[dict]:
    """Videos in progress with their share done and time left (at the pace of the attempt so far; None until a
    window is done or when the container gives no length)."""
    out = []
    for r in rows:
        done, expected, started = r["windows"], r["windows_expected"], r["started_at"]
        left = None
        if done and expected > done and started and now > started:
            left = (expected - done) * (now - started) / done
        out.append({"id": r["id"], "path": r["path"], "domain": r["domain"], "attempt": r["attempt"],
                    "done": done, "expected": expected, "left_s": left})
    return out


def duration(seconds: float | None) -> str:
    """A span of time as a person reads it: 45 s, 3 min 20 s, 1 h 05 min."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def clock(seconds: float | None) -> str:
    """A time in the video as m:ss.s."""
    if seconds is None:
        return ""
    m, s = divmod(float(seconds), 60)
    return f"{int(m)}:{s:04.1f}"
