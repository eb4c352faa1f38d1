"""Pair verdicts from the web page reach the catalog through the index.

The page's POST becomes a `PairVerdict` record pushed on the index's control queue (the queue the supervisor
already uses to announce restarts); the index checks the pair, updates `pairs.verdict` (numbering the change),
counts it (`humanstyle_pairs_curated_total{verdict}`), and the pairing stage, seeing the change, rewrites pairs.csv.
The web thread then reads the catalog until the verdict shows (or a short wait passes), so the page reports what is
stored, not what was asked. The web page never writes the catalog itself, so the writers' crash recovery stays as
it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, jsonify, request

from humanstyle.daemon.config import Settings
from humanstyle.daemon.web.context import web
from humanstyle.stages.records import PairVerdict
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.vocabulary import VERDICTS

api = Blueprint("api", __name__)


class IndexBusy(RuntimeError):
    """The control queue is full (the index is stopped or far behind): the verdict was not sent."""


class Curator:
    def __init__(self, settings: Settings, wait_s: float = 5.0) -> None:
        self.settings = settings
        self.wait_s = wait_s
        self._lock = threading.Lock()  # a ZeroMQ socket belongs to one thread at a time
        self._fabric = None
        self._sender = None

    def _send(self, record: PairVerdict) -> bool:
        from humanstyle.daemon.runtime import fabric

        with self._lock:
            if self._sender is None:
                self._fabric = fabric.Fabric(self.settings, "web")
                self._sender = self._fabric.sender_to("control")
            return self._sender.try_send(record)

    def judge(self, pair_id: int, verdict: str, catalog: Callable[[], Catalog | None]) -> bool:
        """Send the verdict to the index and wait until the catalog shows it; True once stored. Raises IndexBusy
        when it could not be sent."""
        if not self._send(PairVerdict(pair_id=pair_id, verdict=verdict)):
            raise IndexBusy("the index is not taking verdicts right now")
        deadline = time.monotonic() + self.wait_s
        while True:
            db = catalog()
            row = db.pair(pair_id) if db is not None else None
            if row is not None and row["verdict"] == verdict:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            if self._fabric is not None:
                self._fabric.close()
                self._fabric = self._sender = None


# --- the verdict API ---------------------------------------------------------------------------------------------
@api.post("/api/pairs/<int:pair_id>/verdict")
def set_verdict(pair_id: int):
    w = web()
    guard, curator, catalog = w.guard, w.curator, w.catalog
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
