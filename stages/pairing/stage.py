"""The pairing stage: follows the catalog and pairs the kept patches the index wrote, a batch at a time.

The index stage writes patch rows and moves on; it never waits for pairing. This stage reads the oldest kept
patches not paired yet (`indexed = 0`, by id: the flag is the watermark, so a row that commits late is still
read) up to `pair.batch` at a time, splits them into runs of one view and one domain in id order, and for each
run makes one batched pose search (`stages.pairing.rule.PairingRule`: exact, or FAISS candidates scored exactly). It is
the only writer of pairs and of pairs.csv. A slow pairing stage builds a backlog (`humanstyle_pairing_backlog_
patches`, on /healthz and the status page), never back-pressure on the stages that feed the index.

Order per run, so that a crash at any point replays cleanly: pairs proposed (changes nothing) -> inserted in one
transaction (unique on the two patches) -> appended to pairs.csv -> the poses committed to the pose store
(fsynced) -> the rows marked paired in one transaction. A run cut short is read again: its pairs are not inserted
twice, and patches the pose store already holds propose nothing again. pairs.csv is rewritten from the catalog at
start, and whenever a person's verdicts changed (the catalog numbers verdict changes: it lists the pairs not
marked bad).

A pose store of an older on-disk format is deleted at start and rebuilt from the catalog's keypoints: the patches
already paired are re-added without proposing pairs again (their pairs are in the catalog already).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from itertools import groupby
from pathlib import Path

import numpy as np

from humanstyle.models.files import atomic_write_bytes
from humanstyle.stages.counters import (
    ERRORS,
    INDEX_SIZE,
    PAIRING_BACKLOG,
    PAIRING_DELAY,
    PAIRING_SEARCHES,
    PAIRS,
)
from humanstyle.stages.handler import Handler, Outbox
from humanstyle.stages.pairing.ann import SearchSettings
from humanstyle.stages.pairing.pose import NUM_KEYPOINTS
from humanstyle.stages.pairing.rule import PairingRule, PoseStoreFormatError
from humanstyle.stages.records import PairsAppended
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.catalog import keypoints_of, open_catalog
from humanstyle.stages.vocabulary import VIEWS

log = logging.getLogger("humanstyle.pairing")
IDLE_WAIT_S = 0.25  # how often an idle stage looks for new patches
BACKLOG_EVERY_S = 2.0
WRITE_RETRY_MAX_S = 10.0


class PairsCsv:
    """pairs.csv: every pair not marked bad, one row each, in pair id order."""

    def __init__(self, path: Path, domains: tuple[str, str]) -> None:
        self.path = path
        a, b = domains
        self.header = ["pair_id", f"{a}_patch", f"{b}_patch", "view", "similarity", f"{a}_patch_id",
                       f"{b}_patch_id", "mirrored"]

    @staticmethod
    def _rows(rows: list) -> list[list]:
        return [[r["id"], r["a_path"], r["b_path"], r["view"], f"{r['similarity']:.6f}", r["a_patch_id"],
                 r["b_patch_id"], int(r["mirrored"])] for r in rows]

    def append(self, rows: list) -> None:
        new_file = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new_file:
                writer.writerow(self.header)
            writer.writerows(self._rows(rows))

    def rewrite(self, rows: list) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.header)
        writer.writerows(self._rows(rows))
        atomic_write_bytes(self.path, buf.getvalue().encode())


def runs(rows: list) -> list[list]:
    """Rows (in id order) as runs of one view and one domain: per view, the maximal stretches of one domain. Views
    are independent; within a view, a run sees the other domain as it stood when the run began, as if its patches
    had been added one by one."""
    by_view: dict[str, list] = {}
    for row in rows:
        by_view.setdefault(row["view"], []).append(row)
    return [list(run) for view_rows in by_view.values() for _, run in groupby(view_rows, key=lambda r: r["domain"])]


class PairingHandler(Handler):
    """No input socket: each tick pairs the next batch of unpaired patches from the catalog; pair events out."""

    routes: dict = {}
    passes = ()

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.domains = settings.domains
        self.catalog = open_catalog(settings, role="pairing")
        self.csv = PairsCsv(settings.paths.data_dir / "pairs.csv", self.domains)
        self.rule: PairingRule | None = None
        self.verdicts_seen = -1
        self.pairs_total = 0
        self.out: Outbox | None = None
        self._backlog_at = -BACKLOG_EVERY_S

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, out: Outbox) -> None:
        self.out = out
        self.guarded(self.open_rule)

    def close(self) -> None:
        if self.rule is not None:
            self.rule.close()
        self.catalog.close()

    def wait_ms(self) -> int:
        return 0  # no input to wait on: tick() waits when there is nothing to pair

    def open_rule(self) -> None:
        if self.rule is not None:
            self.rule.close()
            self.rule = None
        try:
            self.rule = self._open()
        except PoseStoreFormatError as exc:
            log.warning("pose store: %s; rebuilding it from the catalog", exc)
            PairingRule.reset(self.store_dir, self.domains, VIEWS)
            self.rule = self._open()
            self._rebuild()
        self.verdicts_seen = self.catalog.watermark()[2]
        # Counted once: this stage is the only writer of pairs, so it keeps the total for its events itself rather
        # than counting a table that grows with the catalog after every batch.
        self.pairs_total = self.catalog.pair_count()
        self.csv.rewrite(self.catalog.pairs())
        for domain in self.domains:
            for view in VIEWS:
                INDEX_SIZE.labels(domain, view).set(len(self.rule.store(domain, view)))

    @property
    def store_dir(self) -> Path:
        return self.settings.paths.data_dir / "index"

    def _open(self) -> PairingRule:
        pair = self.settings.pair
        return PairingRule(self.store_dir, self.domains, VIEWS,
                            min_confidence=self.settings.classify.min_keypoint_confidence,
                            min_similarity=pair.min_similarity, top_k=pair.top_k, mutual_best=pair.mutual_best,
                            search=SearchSettings.of(pair))

    def _rebuild(self, batch: int = 4096) -> None:
        """Re-add every paired patch of the catalog to a fresh pose store, in id order, proposing nothing."""
        pending: dict[tuple[str, str], list] = {}

        def flush(key: tuple[str, str]) -> None:
            rows = pending.pop(key, [])
            if rows:
                self.rule.commit_batch([r["id"] for r in rows], key[0], key[1], _keypoints(rows))

        total = 0
        for row in self.catalog.indexed_keypoints():
            key = (row["domain"], row["view"])
            if row["view"] not in VIEWS or row["domain"] not in self.domains:
                continue
            pending.setdefault(key, []).append(row)
            total += 1
            if len(pending[key]) >= batch:
                flush(key)
        for key in list(pending):
            flush(key)
        log.info("pose store: rebuilt with %d patches", total)

    # --- work ----------------------------------------------------------------------------------------------------
    def tick(self, out: Outbox) -> int:
        self.guarded(self.step, out)
        return 0  # each batch is reported as a unit of its own

    def step(self, out: Outbox) -> None:
        if self.rule is None:
            self.open_rule()
        started = time.monotonic()
        rows, added = self.pair_batch()
        read = len(rows)
        self.pairs_total += added
        if added:
            out.send(PairsAppended(count=added, total=self.pairs_total))
        if read:
            out.unit_done(started)
        self.follow_verdicts()
        self.publish_backlog()
        if read < self.settings.pair.batch:
            out.pause(IDLE_WAIT_S)

    def pair_batch(self) -> tuple[list, int]:
        """Pair the next batch of unpaired patches; returns (the rows read, pairs added)."""
        rows = self.catalog.unindexed_patches(limit=self.settings.pair.batch)
        added = sum(self.pair_run(run) for run in runs(rows))
        now = time.time()
        for row in rows:
            PAIRING_DELAY.observe(max(0.0, now - float(row["created_at"])))
        return rows, added

    def pair_all(self) -> int:
        """Pair every unpaired patch (one-shot tools); returns how many pairs were new."""
        total = 0
        while True:
            rows, added = self.pair_batch()
            total += added
            if not rows:
                return total

    def pair_run(self, run: list) -> int:
        """Pair one run (one domain and view, in id order); returns how many pairs were new."""
        domain, view = run[0]["domain"], run[0]["view"]
        ids = [r["id"] for r in run]
        if domain not in self.domains or view not in VIEWS:  # a catalog shared with another configuration
            log.warning("pairing: %d patch(es) of unknown domain/view %s/%s left unpaired", len(ids), domain, view)
            self.catalog.mark_indexed(ids)
            return 0
        keypoints = _keypoints(run)
        PAIRING_SEARCHES.labels(self.rule.search_method(domain, view)).inc()
        proposed = self.rule.propose_batch(ids, domain, view, keypoints)
        added = []
        if proposed:
            with self.catalog.transaction():
                added = [p for p in proposed if self.catalog.add_pair(p.a_id, p.b_id, p.view, p.similarity,
                                                                      p.mirrored)]
        if added:
            self.csv.append(self.catalog.latest_pairs(len(added)))
            for p in added:
                PAIRS.labels(p.view).inc()
        self.rule.commit_batch(ids, domain, view, keypoints)
        self.catalog.mark_indexed(ids)
        INDEX_SIZE.labels(domain, view).set(len(self.rule.store(domain, view)))
        return len(added)

    def follow_verdicts(self) -> None:
        """pairs.csv leaves out the pairs people marked bad: rewritten once per burst of verdicts."""
        seen = self.catalog.watermark()[2]
        if seen != self.verdicts_seen:
            self.csv.rewrite(self.catalog.pairs())
            self.verdicts_seen = seen

    def publish_backlog(self) -> None:
        """The backlog gauge, on a timer: counting the backlog costs what the backlog holds, not for every batch."""
        now = time.monotonic()
        if now - self._backlog_at >= BACKLOG_EVERY_S:
            self._backlog_at = now
            PAIRING_BACKLOG.set(self.catalog.unindexed_count())

    def guarded(self, work, *args) -> bool:
        """Run one unit of work. When the data folder or the catalog refuses a write (full, read-only, a server
        restarting), back off and retry with the pose store reopened from disk (a unit that failed halfway is then
        completed exactly once); False when a stop request ends the wait."""
        delay = 0.5
        while True:
            try:
                work(*args)
                return True
            except (OSError, *self.catalog.errors) as exc:
                self.catalog.rollback()
                ERRORS.labels("pairing", "write_failed").inc()
                log.error("pairing: cannot write to %s or the catalog (%s); retrying in %.1f s",
                          self.settings.paths.data_dir, str(exc).strip(), delay)
                if self.rule is not None:
                    self.rule.close()
                    self.rule = None
                if self.out is not None and self.out.pause(delay):
                    return False
                delay = min(2 * delay, WRITE_RETRY_MAX_S)


def _keypoints(rows: list) -> np.ndarray:
    """(n, 17, 3) keypoints of catalog rows; a row without any (never for a kept view) cannot pair."""
    out = np.zeros((len(rows), NUM_KEYPOINTS, 3), np.float32)
    for i, row in enumerate(rows):
        kp = keypoints_of(row["keypoints"])
        if kp is not None:
            out[i] = kp
    return out
