"""The head's bookkeeping of remote work (daemon.scheduler), driven without sockets: credit limits what a worker holds,
work held by a worker that vanished or whose messages were lost is handed to another, the first result wins, and
work goes only to workers that run the stage it needs; windows are taken from the decoders in turn."""

from __future__ import annotations

from humanstyle.daemon.fabric import take_turns
from humanstyle.daemon.scheduler import Item, Scheduler

TIMEOUT = 5.0


def item(s: Scheduler, window: int, kind: str = "window", video: int = 1, attempt: int = 1) -> Item:
    it = Item(s.new_id(), kind, (video, attempt, window), [[b"x"]], 1)
    s.add(it)
    return it


def join(s: Scheduler, name: str, capacity: int = 2, stages=("detect", "classify"), now: float = 0.0) -> bytes:
    identity = name.encode()
    s.hello(identity, name, "host", list(stages), capacity, now)
    return identity


def held(s: Scheduler, identity: bytes) -> set[str]:
    return set(s.workers[identity].in_flight)


def test_a_slow_worker_holds_no_more_than_its_credit_while_a_fast_one_does_the_rest():
    s = Scheduler(TIMEOUT)
    slow, fast = join(s, "slow"), join(s, "fast")
    items = [item(s, w) for w in range(10)]
    done_by_fast = []
    now = 0.0
    for _ in range(20):
        now += 0.1
        for worker, it, _seq in s.assign(now):
            if worker.identity == fast:  # the fast worker returns each item at once; the slow one never does
                assert s.result(fast, it.id, now) is it
                s.complete(it.id)
                done_by_fast.append(it)
        assert len(held(s, slow)) <= 2
    assert len(held(s, slow)) == 2 and len(done_by_fast) == 8
    assert {i.id for i in done_by_fast} | held(s, slow) == {i.id for i in items}


def test_a_vanished_worker_s_items_go_to_another_first_and_its_late_result_is_a_duplicate():
    s = Scheduler(TIMEOUT)
    a = join(s, "a", capacity=2)
    first = [item(s, w) for w in range(3)]
    sent = s.assign(0.0)
    assert [i.id for _w, i, _s in sent] == [first[0].id, first[1].id]  # the third waits: no credit left
    b = join(s, "b", capacity=1, now=1.0)
    s.heard(b, 4.0)
    assert s.expire(4.0) == []  # a was heard at 0.0 and may be silent up to TIMEOUT
    gone = s.expire(TIMEOUT + 0.5)
    assert [w.name for w in gone] == ["a"] and a not in s.workers
    s.heard(b, TIMEOUT + 0.5)
    # a's two items are first in line again, before the item that never left the queue.
    (worker, redo, _seq), = s.assign(TIMEOUT + 0.6)
    assert worker.identity == b and redo is first[0] and redo.dispatches == 2
    assert s.result(b, redo.id, TIMEOUT + 1) is redo and s.complete(redo.id) is redo
    # a comes back (a cut link healed) with its result for the same item: dropped, nothing counted twice.
    assert s.result(a, redo.id, TIMEOUT + 2) is None
    assert s.complete(redo.id) is None


def test_a_lost_result_and_a_lost_work_message_are_caught_by_the_pings():
    s = Scheduler(TIMEOUT)
    w = join(s, "w", capacity=3)
    lost_result, in_transit, lost_work = (item(s, i) for i in range(3))
    sent = {i.id: seq for _w, i, seq in s.assign(0.0)}
    # The worker got seq 1 and finished it, but the result never arrived; seq 2 and 3 are still on their way.
    s.ping(w, free=3, seen_seq=sent[lost_result.id], holding=[], now=1.0)
    assert held(s, w) == {in_transit.id, lost_work.id}
    assert s.queues["window"][0] is lost_result
    assert s.workers[w].credit == 1  # 3 free minus the 2 messages still on their way
    # seq 2 arrives and is held; seq 3 never comes: after the timeout it is queued again.
    s.ping(w, free=2, seen_seq=sent[in_transit.id], holding=[in_transit.id], now=TIMEOUT + 0.5)
    assert held(s, w) == {in_transit.id}
    assert list(s.queues["window"])[:2] == [lost_work, lost_result]


def test_credit_comes_back_with_a_result_even_for_an_item_finished_elsewhere():
    s = Scheduler(TIMEOUT)
    a = join(s, "a", capacity=1)
    it = item(s, 0)
    s.assign(0.0)
    s.leave(a)  # its connection broke: the item goes back to the queue
    a = join(s, "a", capacity=1, now=0.1)
    b = join(s, "b", capacity=1, now=0.1)
    (worker, again, _), = s.assign(0.2)
    assert again is it
    other = b if worker.identity == a else a
    assert s.result(worker.identity, it.id, 0.3) is it and s.complete(it.id) is it
    assert s.workers[worker.identity].credit == 1 and s.workers[other].credit == 1


def test_work_goes_only_to_workers_that_run_its_stage_and_patches_go_first():
    s = Scheduler(TIMEOUT)
    detector = join(s, "det", stages=("detect",))
    window = item(s, 0)
    patches = item(s, 1, kind="patches")
    sent = s.assign(0.0)
    assert [(w.identity, i) for w, i, _ in sent] == [(detector, window)]
    classifier = join(s, "cls", stages=("classify",))
    both = join(s, "both", capacity=1)
    later = item(s, 2)
    sent = s.assign(0.1)
    assert [i for _w, i, _ in sent] == [patches, later]  # the patches first, the window then
    assert dict((i.id, w.identity) for w, i, _ in sent)[later.id] == both
    assert sent[0][0].identity in (classifier, both)


def test_an_item_handed_out_too_often_is_abandoned():
    s = Scheduler(TIMEOUT, max_dispatches=2)
    it = item(s, 0)
    for t in range(2):
        w = join(s, f"w{t}", now=t * 10.0)
        assert [i for _w, i, _ in s.assign(t * 10.0)] == [it]
        s.leave(w)
    assert s.take_abandoned() == [it] and s.queued() == 0 and it.id not in s.items


def test_a_newer_attempt_at_a_video_drops_the_queued_windows_of_the_older_one():
    s = Scheduler(TIMEOUT)
    old = [item(s, w, attempt=1) for w in range(3)]
    other_video = item(s, 0, video=2)
    new = item(s, 0, attempt=2)
    assert list(s.queues["window"]) == [other_video, new]
    assert all(o.id not in s.items for o in old)


def test_a_worker_saying_hello_again_keeps_what_it_holds_and_gives_back_the_rest():
    s = Scheduler(TIMEOUT)
    w = join(s, "w", capacity=3)
    a, b = item(s, 0), item(s, 1)
    s.assign(0.0)
    s.hello(w, "w", "host", ["detect", "classify"], 3, 1.0, holding=[a.id])
    assert held(s, w) == {a.id} and list(s.queues["window"]) == [b]
    assert s.workers[w].credit == 2
    s.ping(w, free=2, seen_seq=0, holding=[], now=2.0)  # and then it lost a as well
    assert list(s.queues["window"]) == [a, b]


def test_an_abandoned_window_is_recorded_without_patches_so_its_video_still_ends():
    from humanstyle.daemon.head import failed_window_done

    s = Scheduler(TIMEOUT, max_dispatches=1)
    it = Item(s.new_id(), "window", (7, 2, 5), [[b"x"]], 1, "game")
    s.add(it)
    w = join(s, "w")
    s.assign(0.0)
    s.leave(w)
    (gone,) = s.take_abandoned()
    done = failed_window_done(gone)
    assert (done.video_id, done.attempt, done.window_index, done.domain, done.patches) == (7, 2, 5, "game", 0)


class QueuedReceiver:
    """A decoder's windows queue as the head reads it: recv() returns the next record, None once empty."""

    def __init__(self, records: list) -> None:
        self.records = list(records)

    def recv(self, timeout_ms: int = 200):
        return self.records.pop(0) if self.records else None


def test_the_head_takes_windows_from_its_decoders_in_turn_while_it_has_room():
    busy, quiet, bad = QueuedReceiver(["a1", "a2", "a3", "a4"]), QueuedReceiver(["b1"]), QueuedReceiver([None, "c2"])
    taken: list[str] = []
    for record in take_turns([busy, quiet, bad], lambda: len(taken) < 4):
        taken.append(record)
    # One from each while each has one: a busy first decoder does not take all the room.
    # An invalid message (None) ends that decoder's turn until the next poll; its next record waits there.
    assert taken == ["a1", "b1", "a2", "a3"]
    assert busy.records == ["a4"] and bad.records == ["c2"]
    rest = list(take_turns([busy, quiet, bad], lambda: True))
    assert rest == ["a4", "c2"]
