"""Which worker gets which piece of work: the head's bookkeeping, free of sockets so tests can drive it directly.

Work is handed out by credit. A worker says how many items it can hold (its capacity) when it joins; each item sent
uses one credit and each result returned gives it back, so a worker never holds more than it asked for and a slow
one cannot hoard queued windows. Among the workers with credit that run the stage an item needs, the one with the
most credit left gets it (the least busy).

Items are never lost: an item stays the head's until its result arrives. When a worker goes silent for
`timeout_s`, says bye or cannot be reached, the items it held go back to the front of the queue for another worker.
Messages lost on a cut link are caught by the pings: a worker's ping lists the items it holds and the last work
sequence number it received; an item sent before that number and not held any more, whose result never came, is
queued again, and so is one whose message has been on its way for longer than `timeout_s`. Redoing is harmless:
the index's writes are keyed, and the first result of an item wins (a late one is dropped as a duplicate).
An item handed out `max_dispatches` times without a result is abandoned (the caller reports it failed), so a window
that kills every worker it reaches cannot go round forever.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

KIND_STAGE = {"window": "detect", "patches": "classify"}


@dataclass
class Item:
    """A unit of remote work: a window to detect (and classify), or a window's patches to classify."""

    id: str
    kind: str
    key: tuple[int, int, int]  # video id, attempt, window index
    frames: list[Any]  # the packed records, ready to send
    nbytes: int
    domain: str = ""
    dispatches: int = 0
    done: bool = False


@dataclass
class RemoteWorker:
    identity: bytes
    name: str
    host: str
    stages: frozenset[str]
    capacity: int
    credit: int
    last_seen: float
    joined_at: float = field(default_factory=time.time)
    last_seen_wall: float = field(default_factory=time.time)
    in_flight: dict[str, tuple[Item, int, float]] = field(default_factory=dict)  # id -> (item, seq, sent at)
    seq: int = 0
    seen_seq: int = 0
    done: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def can_take(self, item: Item) -> bool:
        return self.credit > 0 and KIND_STAGE[item.kind] in self.stages


class Scheduler:
    def __init__(self, timeout_s: float, max_dispatches: int = 4) -> None:
        self.timeout_s = timeout_s
        self.max_dispatches = max_dispatches
        self.epoch = secrets.token_hex(4)  # work ids of an earlier head process never match this one's
        self._ids = itertools.count(1)
        self.queues: dict[str, deque[Item]] = {"patches": deque(), "window": deque()}  # patches first: nearer done
        self.items: dict[str, Item] = {}
        self.workers: dict[bytes, RemoteWorker] = {}
        self.abandoned: list[Item] = []  # handed out max_dispatches times without a result; the caller takes them

    # --- items --------------------------------------------------------------------------------------------------
    def new_id(self) -> str:
        return f"{self.epoch}.{next(self._ids)}"

    def add(self, item: Item) -> None:
        """Queue a new item. A window of a newer attempt at a video drops the queued windows of older attempts:
        the index asked for the video again, so their results would only be duplicates."""
        if item.kind == "window":
            video, attempt, _ = item.key
            stale = [i for i in self.queues["window"] if i.key[0] == video and i.key[1] < attempt]
            for old in stale:
                self.queues["window"].remove(old)
                self.items.pop(old.id, None)
        self.items[item.id] = item
        self.queues[item.kind].append(item)

    def queued(self, kind: str | None = None) -> int:
        return sum(len(q) for k, q in self.queues.items() if kind in (None, k))

    def in_flight(self) -> int:
        return sum(len(w.in_flight) for w in self.workers.values())

    def assign(self, now: float) -> list[tuple[RemoteWorker, Item, int]]:
        """Hand queued items to workers with credit: (worker, item, seq) to send, in order."""
        out = []
        for queue in self.queues.values():
            while queue:
                candidates = [w for w in self.workers.values() if w.can_take(queue[0])]
                if not candidates:
                    break
                worker = max(candidates, key=lambda w: (w.credit, -len(w.in_flight), -w.seq))
                item = queue.popleft()
                worker.credit -= 1
                worker.seq += 1
                item.dispatches += 1
                worker.in_flight[item.id] = (item, worker.seq, now)
                out.append((worker, item, worker.seq))
        return out

    def requeue(self, item: Item) -> None:
        """Put an item whose holder is gone back at the front of its queue (or abandon it)."""
        if item.done or item.id not in self.items:
            return
        if any(item in q for q in self.queues.values()):
            return
        if item.dispatches >= self.max_dispatches:
            self.items.pop(item.id, None)
            self.abandoned.append(item)
            return
        self.queues[item.kind].appendleft(item)

    def requeue_all(self, items) -> None:
        """Requeue several items at the front, in the order they had."""
        for item in reversed(list(items)):
            self.requeue(item)

    def complete(self, item_id: str) -> Item | None:
        """Mark an item done (its result was checked and forwarded); None if it was done already or unknown."""
        item = self.items.pop(item_id, None)
        if item is None:
            return None
        item.done = True
        for queue in self.queues.values():
            if item in queue:
                queue.remove(item)
        # Another worker may hold it too (handed out again): it stays in that worker's books until its result comes
        # back (a duplicate) or it leaves, so its credit is returned as usual.
        return item

    # --- workers ------------------------------------------------------------------------------------------------
    def hello(self, identity: bytes, name: str, host: str, stages: list[str], capacity: int, now: float,
              holding: list[str] = ()) -> RemoteWorker:
        """A worker joins (or joins again after the head lost track of it). Items the head had at it and it no
        longer holds are queued again; what it still holds stays its own."""
        old = self.workers.pop(identity, None)
        worker = RemoteWorker(identity, name, host, frozenset(stages), capacity, capacity, now)
        held = set(holding)
        if old is not None:
            for item_id, (item, _seq, sent) in old.in_flight.items():
                if item_id in held:
                    worker.in_flight[item_id] = (item, 0, sent)
            self.requeue_all(item for i, (item, _s, _t) in old.in_flight.items() if i not in held)
        worker.credit = max(0, capacity - len(worker.in_flight))
        self.workers[identity] = worker
        return worker

    def heard(self, identity: bytes, now: float) -> RemoteWorker | None:
        worker = self.workers.get(identity)
        if worker is not None:
            worker.last_seen = now
            worker.last_seen_wall = time.time()
        return worker

    def result(self, identity: bytes, item_id: str, now: float) -> Item | None:
        """A result arrived (before it is checked): the worker gets its credit back. Returns the item when it is
        still open (the caller checks and forwards the records, then calls complete), None for a duplicate."""
        worker = self.heard(identity, now)
        if worker is not None and worker.in_flight.pop(item_id, None) is not None:
            worker.credit = min(worker.capacity, worker.credit + 1)
            worker.done += 1
        item = self.items.get(item_id)
        if item is None or item.done:
            return None
        for queue in self.queues.values():  # requeued meanwhile: this result makes the redo unnecessary
            if item in queue:
                queue.remove(item)
        return item

    def ping(self, identity: bytes, free: int, seen_seq: int, holding: list[str], now: float) -> None:
        """Reconcile with what the worker says it holds (see the module docstring)."""
        worker = self.heard(identity, now)
        if worker is None:
            return
        worker.seen_seq = max(worker.seen_seq, seen_seq)
        held = set(holding)
        in_transit = 0
        for item_id, (item, seq, sent) in list(worker.in_flight.items()):
            if seq <= seen_seq and item_id not in held:  # seq 0: held when the worker said hello again
                del worker.in_flight[item_id]  # it arrived, and its result was lost on the way back
                self.requeue(item)
            elif seq > seen_seq:
                if now - sent > self.timeout_s:
                    del worker.in_flight[item_id]  # the work message itself was lost
                    self.requeue(item)
                else:
                    in_transit += 1
        worker.credit = max(0, min(worker.capacity, free - in_transit))

    def leave(self, identity: bytes) -> RemoteWorker | None:
        """A worker said bye or cannot be reached: its items go back to the queue."""
        worker = self.workers.pop(identity, None)
        if worker is not None:
            self.requeue_all(item for item, _seq, _sent in worker.in_flight.values())
            worker.in_flight.clear()
        return worker

    def expire(self, now: float) -> list[RemoteWorker]:
        """Workers not heard from for timeout_s are gone; their items are queued again."""
        gone = [w for w in self.workers.values() if now - w.last_seen > self.timeout_s]
        for worker in gone:
            self.leave(worker.identity)
        return gone

    def take_abandoned(self) -> list[Item]:
        out, self.abandoned = self.abandoned, []
        return out
