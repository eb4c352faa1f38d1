"""Segments: the unit of ingest work, claimed from the catalog with a lease.

A video is split when it is registered into segments of `ingest.segment_s` seconds of video: whole windows, so no
window straddles two segments, and the last segment runs to the end of the file (a container's duration is only a
hint of where frames end), so the windows of a video are exactly those one decoder makes from start to end.

A machine's index claims pending segments, or those whose lease ran out, and holds each with a lease it renews
while it works (`ingest.lease_s`). On PostgreSQL the claim reads with FOR UPDATE SKIP LOCKED, so machines claiming
at once take different rows and none waits for another; on SQLite there is one writer. A machine that stops
renewing (killed, cut off) loses its segments to the next claim; what it wrote stays, and the machine that takes
over writes nothing twice (patch rows are keyed by video, frame and person). A segment is finished with its
decoder's status by the machine holding it, and a video is finished by the registering machine (the coordinator,
or the one machine) once none of its segments is pending or leased.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from humanstyle.stages.store.catalog import Catalog


@dataclass(frozen=True)
class Segment:
    video_id: int
    seq: int
    start_window: int
    end_window: int  # exclusive; 0 = to the end of the file
    attempt: int
    taken_over: bool  # the lease of another machine ran out
    starts_video: bool  # the first claim of its video: the video went from queued to processing
    path: str
    source: str
    domain: str

    @property
    def key(self) -> tuple[int, int]:
        return self.video_id, self.seq

    def holds(self, window_index: int) -> bool:
        return self.start_window <= window_index and (not self.end_window or window_index < self.end_window)


@dataclass(frozen=True)
class FinishedVideo:
    id: int
    domain: str
    status: str
    reason: str
    windows: int
    seconds: float


def plan(windows_expected: int, segment_windows: int) -> list[tuple[int, int]]:
    """(start, end) windows of each segment; the last one open-ended (end 0). Unknown length: one segment."""
    if windows_expected <= segment_windows:
        return [(0, 0)]
    count = math.ceil(windows_expected / segment_windows)
    return [(i * segment_windows, (i + 1) * segment_windows if i < count - 1 else 0) for i in range(count)]


class Segments:
    """The segment rows of a catalog; `owner` names the machine (ingest.name) in leases."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._q = catalog._q

    # --- the registering machine -------------------------------------------------------------------------------
    def register(self, video_id: int, windows_expected: int, segment_windows: int, source: str = "") -> int:
        """Split a video into segments (once: a repeated call adds nothing); returns how many it has."""
        parts = plan(windows_expected, segment_windows)
        with self.catalog.transaction():
            for seq, (start, end) in enumerate(parts):
                self._q("INSERT INTO segments (video_id, seq, start_window, end_window, status) "
                        "VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (video_id, seq) DO NOTHING",
                        (video_id, seq, start, end))
            self._q("UPDATE videos SET windows_expected = ?, source = ? WHERE id = ?",
                    (windows_expected, source, video_id))
        return len(parts)

    def unsegmented(self) -> list[int]:
        """Unfinished videos without segments (queued before segments existed)."""
        return [r[0] for r in self._q(
            "SELECT id FROM videos v WHERE status IN ('queued', 'processing') AND NOT EXISTS "
            "(SELECT 1 FROM segments s WHERE s.video_id = v.id) ORDER BY id").fetchall()]

    def finish_videos(self) -> list[FinishedVideo]:
        """Finish every unfinished video none of whose segments is open: done when all are done, failed when all
        failed, partial otherwise (with the first segment's reason that is not done)."""
        rows = self._q(
            "SELECT v.id, v.domain, s.status, s.reason, s.windows, s.seconds, s.frames FROM videos v "
            "JOIN segments s ON s.video_id = v.id WHERE v.status IN ('queued', 'processing') AND NOT EXISTS "
            "(SELECT 1 FROM segments o WHERE o.video_id = v.id AND o.status IN ('pending', 'leased')) "
            "ORDER BY v.id, s.seq").fetchall()
        by_video: dict[int, list] = {}
        for r in rows:
            by_video.setdefault(r["id"], []).append(r)
        finished = []
        with self.catalog.transaction():
            for video_id, segs in by_video.items():
                statuses = {s["status"] for s in segs}
                status = "done" if statuses == {"done"} else "failed" if statuses == {"failed"} else "partial"
                reason = next((s["reason"] for s in segs if s["status"] != "done" and s["reason"]), "")
                windows = sum(s["windows"] for s in segs)
                seconds = sum(s["seconds"] for s in segs)
                frames = sum(s["frames"] for s in segs)
                self._q("UPDATE videos SET status = ?, reason = ?, windows = ?, frames_read = ?, updated_at = ? "
                        "WHERE id = ?", (status, reason, windows, frames, time.time(), video_id))
                finished.append(FinishedVideo(video_id, segs[0]["domain"], status, reason, windows,
                                              seconds))
        return finished

    # --- an ingesting machine ----------------------------------------------------------------------------------
    def claim(self, owner: str, count: int, lease_s: float) -> list[Segment]:
        """Lease up to `count` segments, oldest video first: pending ones, and those whose lease ran out."""
        if count <= 0:
            return []
        now = time.time()
        with self.catalog.transaction():
            keys = self._q("SELECT video_id, seq, status FROM segments WHERE status = 'pending' OR "
                           "(status = 'leased' AND lease_until < ?) ORDER BY video_id, seq LIMIT ?"
                           + self.catalog.dialect.skip_locked, (now, count)).fetchall()
            claimed = []
            for video_id, seq, status in keys:
                taken = status == "leased"
                self._q("UPDATE segments SET status = 'leased', owner = ?, lease_until = ?, renewed_at = ?, "
                        "attempt = attempt + 1, expired = expired + ?, windows = 0 WHERE video_id = ? AND seq = ?",
                        (owner, now + lease_s, now, int(taken), video_id, seq))
                starts = self._q("UPDATE videos SET status = 'processing', started_at = ?, updated_at = ? "
                                 "WHERE id = ? AND status = 'queued'", (now, now, video_id)).rowcount == 1
                row = self._q(
                    "SELECT s.video_id, s.seq, s.start_window, s.end_window, s.attempt, v.path, v.source, v.domain "
                    "FROM segments s JOIN videos v ON v.id = s.video_id WHERE s.video_id = ? AND s.seq = ?",
                    (video_id, seq)).fetchone()
                claimed.append(Segment(row["video_id"], row["seq"], row["start_window"], row["end_window"],
                                       row["attempt"], taken, starts, row["path"], row["source"], row["domain"]))
        return claimed

    def renew(self, owner: str, progress: dict[tuple[int, int], int], lease_s: float) -> list[tuple[int, int]]:
        """Extend the leases of the segments this machine holds (with their windows done so far); returns those
        it no longer holds (its lease ran out and another machine took them over)."""
        now = time.time()
        lost = []
        with self.catalog.transaction():
            for (video_id, seq), windows in progress.items():
                cur = self._q("UPDATE segments SET lease_until = ?, renewed_at = ?, windows = ? WHERE video_id = ? "
                              "AND seq = ? AND owner = ? AND status = 'leased'",
                              (now + lease_s, now, windows, video_id, seq, owner))
                if cur.rowcount == 0:
                    lost.append((video_id, seq))
        return lost

    def release(self, owner: str, key: tuple[int, int] | None = None, unused: bool = False) -> int:
        """Give leased segments back (one, or all this machine holds: at its start) for the next claim. `unused`:
        the claim was never worked on (no decoder could take it), so it does not count as an attempt."""
        where, args = ("AND video_id = ? AND seq = ?", key) if key else ("", ())
        attempt = "attempt - 1" if unused else "attempt"
        return self._q(f"UPDATE segments SET status = 'pending', lease_until = 0, attempt = {attempt} WHERE owner = ? "
                       f"AND status = 'leased' {where}", (owner, *args)).rowcount

    def finish(self, owner: str, key: tuple[int, int], status: str, reason: str, windows: int,
               seconds: float, frames: int = 0) -> bool:
        """Record a segment's end; False when this machine no longer held it (another finishes it)."""
        return self._q("UPDATE segments SET status = ?, reason = ?, windows = ?, seconds = ?, frames = ?, "
                       "lease_until = 0, renewed_at = ? WHERE video_id = ? AND seq = ? AND owner = ? "
                       "AND status = 'leased'",
                       (status, reason, windows, seconds, frames, time.time(), *key, owner)).rowcount == 1

    # --- what the coordinator shows ----------------------------------------------------------------------------
    def machines(self, recent_s: float = 3600.0) -> list[dict]:
        """Per machine named in a lease: segments held now (which), last renewal, segments finished, leases of
        others it took over. Machines silent for `recent_s` with nothing held are left out."""
        now = time.time()
        out: dict[str, dict] = {}
        for r in self._q("SELECT owner, video_id, seq, status, renewed_at, expired FROM segments "
                         "WHERE owner != '' AND renewed_at > ?", (now - recent_s,)).fetchall():
            m = out.setdefault(r["owner"], {"name": r["owner"], "holding": [], "last_renewal_s_ago": None,
                                            "segments_done": 0})
            if r["status"] == "leased":
                m["holding"].append(f"{r['video_id']}:{r['seq']}")
            else:
                m["segments_done"] += 1
            ago = round(now - r["renewed_at"], 1)
            if m["last_renewal_s_ago"] is None or ago < m["last_renewal_s_ago"]:
                m["last_renewal_s_ago"] = ago
        return sorted(out.values(), key=lambda m: m["name"])

    def backlog_windows(self) -> int:
        """Windows of video not ingested yet (pending and leased segments; an open-ended one by the length its
        container gave, else 1)."""
        row = self._q(
            "SELECT COALESCE(SUM(CASE WHEN s.end_window > 0 THEN s.end_window - s.start_window "
            "WHEN v.windows_expected > s.start_window THEN v.windows_expected - s.start_window ELSE 1 END), 0) "
            "FROM segments s JOIN videos v ON v.id = s.video_id WHERE s.status IN ('pending', 'leased')").fetchone()
        return int(row[0])

    def expired_total(self) -> int:
        return int(self._q("SELECT COALESCE(SUM(expired), 0) FROM segments").fetchone()[0])
