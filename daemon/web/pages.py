"""The web page's views: status (/), pairs (/pairs), rejections (/rejections) and training (/training), each a
Jinja2 template filled from the catalog and the trainer's files; and what the templates show (count tables, the
validation curve, videos in progress)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, render_template, request

from humanstyle.daemon.web.context import web
from humanstyle.stages.store.catalog import PAIR_ORDERS
from humanstyle.stages.train.preview import list_previews
from humanstyle.stages.train.state import latest_sample, read_state, read_validation
from humanstyle.stages.vocabulary import PATCH_REASONS, VIEWS

PAGE_SIZE = 100
MAX_PAGE_SIZE = 200
EXAMPLES_PER_REASON = 8
VERDICT_FILTERS = {"all": None, "unjudged": "", "good": "good", "bad": "bad"}

pages = Blueprint("pages", __name__)


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


def page(template: str, **context) -> str:
    """A view's template with what every page shows; ?partial=1 gives the content alone (static/app.js refreshes)."""
    w = web()
    return render_template(template, partial=request.args.get("partial") == "1", domains=w.settings.domains,
                           guard=w.guard, curation=w.curator is not None, now=time.time(), **context)


# --- the views ------------------------------------------------------------------------------------------------
@pages.get("/")
def status():
    w = web()
    db = w.catalog()
    counts = db.counts() if db else {}
    return page("status.html", tables=status_tables(counts), problems=(
        db.videos_needing_attention() if db else []), trainer=trainer_summary(w.train_root, w.models),
        health=w.health(), curated=dict(counts.get("curated", [])), copies=db.copies(limit=50) if db else [],
        copy_count=db.copy_count() if db else 0, train_enabled=w.settings.train.enabled,
        in_progress=video_progress(db.videos_in_progress() if db else [], time.time()))

@pages.get("/pairs")
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
    db = web().catalog()
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

@pages.get("/rejections")
def rejections():
    w = web()
    db = w.catalog()
    counts = count_table(db.counts()["rejections"] if db else [], 2, {r: {} for r in PATCH_REASONS})
    examples = db.rejection_examples(tuple(counts), EXAMPLES_PER_REASON) if db else {}
    return page("rejections.html", counts=counts, examples=examples,
                save_rejected=w.settings.index.save_rejected)

@pages.get("/training")
def training():
    w = web()
    train_root, settings = w.train_root, w.settings
    validation = read_validation(train_root)
    state = read_state(train_root)
    panels = []
    for model in w.models:
        sample = latest_sample(train_root, model)
        panels.append({"model": model, "state": state.get("models", {}).get(model, {}),
                       "sample_step": int(sample.stem.split("-")[1]) if sample else None,
                       "curve": curve(validation.curves.get(model, [])),
                       "quality": validation.quality.get(model, {}),
                       "previews": list_previews(train_root, model)})
    return page("training.html", panels=panels, checkpoint=state.get("checkpoint"),
                enabled=settings.train.enabled, updated=state.get("updated"),
                preview_s=settings.train.preview_s, preview_on_cpu=settings.train.preview_on_cpu)


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


pages.add_app_template_filter(clock, "clock")
pages.add_app_template_filter(duration, "duration")
