import json
from pathlib import Path

import numpy as np
import pytest

from humanstyle.stages.pairing import pose_store
from humanstyle.stages.pairing.pose import MIN_SHARED, MIRROR, prepare, score_prepared
from humanstyle.stages.pairing.pose_store import PoseStore
from humanstyle.stages.pairing.rule import (
    VIEWS,
    Pair,
    PairingRule,
    PoseStoreFormatError,
    pose_match,
    pose_similarity,
)
from tests.pairing_reference import brute_force_pairs

DOMAINS = ("movie", "game")
FB, HS = VIEWS[0], VIEWS[1]
BASE = {0: (50, 10), 1: (48, 8), 2: (52, 8), 3: (45, 9), 4: (55, 9), 5: (40, 25), 6: (60, 25), 11: (43, 60),
        12: (57, 60), 13: (43, 80), 14: (57, 80), 15: (43, 100), 16: (57, 100)}
ARMS_DOWN = {7: (35, 42), 8: (65, 42), 9: (35, 58), 10: (65, 58)}
ARMS_UP = {7: (35, 10), 8: (65, 10), 9: (35, -5), 10: (65, -5)}
# Asymmetric: left arm raised, right arm down; its mirror image raises the right arm.
LEFT_UP = {7: (65, 10), 8: (35, 42), 9: (68, -5), 10: (35, 58)}
# Both feet to the person's left (image right): a pose whose mirror image is clearly different too.
STEP_LEFT = {**ARMS_DOWN, 13: (52, 80), 14: (66, 80), 15: (58, 100), 16: (74, 98)}


def pose(arms: dict = ARMS_DOWN, dx: float = 0, dy: float = 0, scale: float = 1.0, angle: float = 0.0) -> np.ndarray:
    kp = np.zeros((17, 3))
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    for i, (x, y) in {**BASE, **arms}.items():
        x, y = x - 50, y - 50
        kp[i] = ((c * x - s * y) * scale + 50 + dx, (s * x + c * y) * scale + 50 + dy, 0.9)
    return kp


def mirror(kp: np.ndarray, width: float = 100.0) -> np.ndarray:
    """What a detector reports on the horizontally flipped image: x -> width - x, left and right swapped."""
    out = kp[MIRROR].copy()
    out[:, 0] = width - out[:, 0]
    return out


def random_events(seed: int, n: int = 150) -> list[tuple[int, str, str, np.ndarray]]:
    """Runs of 1-5 patches sharing (domain, view): noisy, sometimes mirrored poses near a few prototypes, random
    confidences (so keypoints go missing), some with few keypoints left."""
    rng = np.random.default_rng(seed)
    protos = [pose(ARMS_DOWN), pose(ARMS_UP), pose(LEFT_UP), pose(STEP_LEFT)]
    events, next_id = [], 1000
    while len(events) < n:
        domain, view = rng.choice(["movie", "game"]), rng.choice([FB, HS])
        for _ in range(rng.integers(1, 6)):
            kp = protos[rng.integers(len(protos))].copy()
            if rng.random() < 0.4:
                kp = mirror(kp)
            kp[:, :2] = kp[:, :2] * rng.uniform(0.5, 2) + rng.uniform(0, 100, 2) + rng.normal(0, 3, (17, 2))
            kp[:, 2] = rng.uniform(0.1, 1.0, 17)
            if rng.random() < 0.1:
                kp[rng.choice(17, 12, replace=False), 2] = 0.0
            events.append((next_id, str(domain), str(view), kp))
            next_id += int(rng.integers(1, 4))
    return events


def runs(events):
    batch = [events[0]]
    for e in events[1:]:
        if e[1:3] == batch[-1][1:3]:
            batch.append(e)
        else:
            yield batch
            batch = [e]
    yield batch


def key(pairs: list[Pair]) -> list[tuple]:
    return [(p.a_id, p.b_id, p.view, p.mirrored) for p in pairs]


@pytest.fixture(params=pose_store.KERNELS)
def kernel(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each float32 pass of the index: the compiled one (a skip where it was not built, which CI counts as a
    failure) and numpy's."""
    if request.param == "c" and pose_store._pose_kernel is None:
        pytest.skip("the C pose kernel was not built (no C compiler at install time)")
    monkeypatch.setenv("HUMANSTYLE_POSE_KERNEL", request.param)
    return request.param


@pytest.mark.parametrize("seed,top_k,mutual,batched,chunk_rows", [
    (0, 1, False, False, 7), (1, 3, False, True, 7), (2, 1, True, False, 5), (3, 1, True, True, 7),
    (4, 5, False, True, 1000), (5, 2, False, False, 3),
])
def test_matches_brute_force(tmp_path: Path, seed: int, top_k: int, mutual: bool, batched: bool,
                             chunk_rows: int, kernel: str) -> None:
    events = random_events(seed)
    params = dict(min_similarity=0.85, top_k=top_k, mutual_best=mutual)
    want = brute_force_pairs(events, **params)
    got: list[Pair] = []
    with PairingRule(tmp_path, DOMAINS, chunk_rows=chunk_rows, durable=False, **params) as index:
        if batched:
            for batch in runs(events):
                got += index.add_batch([e[0] for e in batch], batch[0][1], batch[0][2],
                                       np.stack([e[3] for e in batch]))
        else:
            for e in events:
                got += index.add(*e)
    assert len(want) > 5 and any(p.mirrored for p in want) and not all(p.mirrored for p in want)
    assert key(got) == key(want)
    # The index reports pose_match's own float64 value, not an approximation of it.
    assert [p.similarity for p in got] == [p.similarity for p in want]


def test_same_view_only(tmp_path: Path) -> None:
    with PairingRule(tmp_path, DOMAINS, min_similarity=0.5, durable=False, top_k=1) as index:
        assert index.add(1, "movie", FB, pose()) == []
        assert index.add(2, "game", HS, pose()) == []
        pairs = index.add(3, "game", FB, pose(dx=5))
    assert [(p.a_id, p.b_id, p.view, p.mirrored) for p in pairs] == [(1, 3, FB, False)]


def test_score_ignores_position_scale_rotation_and_is_symmetric() -> None:
    a = pose(LEFT_UP)
    for moved in (pose(LEFT_UP, dx=37, dy=-12, scale=2.5), pose(LEFT_UP, scale=0.4, angle=10),
                  pose(LEFT_UP, dx=-20, angle=-25)):
        assert pose_similarity(a, moved) > 0.9999
    other = pose(ARMS_UP)
    assert pose_similarity(a, other) < 0.95
    assert pose_match(a, other) == pose_match(other, a)


def test_mirrored_pose_is_found_and_flagged() -> None:
    a = pose(LEFT_UP)
    flipped = mirror(pose(LEFT_UP, dx=7, scale=1.3, angle=4))
    plain_only = score_prepared(*prepare(a[None]), *prepare(flipped[None]))
    score, mirrored = pose_match(a, flipped)
    assert score > 0.999 and mirrored
    assert pose_match(flipped, a) == (score, True)  # mirroring either pose is the same
    assert plain_only[1][0, 0]  # the plain orientation alone scores lower
    assert pose_match(a, pose(LEFT_UP, dx=3))[1] is False
    # A left-right symmetric pose scores the same both ways: a tie is not mirrored.
    assert pose_match(pose(ARMS_DOWN), pose(ARMS_DOWN, dx=4))[1] is False


def test_missing_keypoints_use_the_shared_set() -> None:
    full = pose(LEFT_UP)
    cut = pose(LEFT_UP, dx=11, scale=1.7)
    cut[[9, 15, 16], 2] = 0.05  # a wrist and both ankles below min_confidence in one domain only
    assert pose_similarity(full, cut) > 0.9999
    # ...whereas a different pose stays different on the same shared set.
    assert pose_similarity(pose(ARMS_UP), cut) < 0.95


def test_coverage_rule_never_pairs_different_body_parts(tmp_path: Path) -> None:
    head = pose()
    head[7:, 2] = 0.0  # head and shoulders only: 7 keypoints
    assert pose_similarity(pose(), head) == -np.inf  # 7 shared of 17 shown
    few = pose()
    few[MIN_SHARED - 1 :, 2] = 0.0
    assert pose_similarity(few, few) == -np.inf  # fewer than MIN_SHARED keypoints: never comparable
    assert pose_similarity(head, head) > 0.9999
    with PairingRule(tmp_path, DOMAINS, min_similarity=-1.0, top_k=10, durable=False) as index:
        index.add(1, "game", FB, pose())
        index.add(2, "game", FB, few)
        assert index.add(3, "movie", FB, head) == []
        assert index.add(4, "movie", FB, few) == []
        assert len(index.store("movie", FB)) == 2
        assert [p.b_id for p in index.add(5, "movie", FB, pose(ARMS_UP))] == [1]


def test_ranking_and_tie_break(tmp_path: Path) -> None:
    with PairingRule(tmp_path, DOMAINS, min_similarity=0.0, top_k=3, durable=False, chunk_rows=2) as index:
        index.add_batch([30, 20, 10], "game", FB, np.stack([pose(ARMS_UP), pose(dx=20), pose(dx=-20)]))
        pairs = index.add(1, "movie", FB, pose())
    # Equal scores: lower id first; the different pose last.
    assert [p.b_id for p in pairs] == [10, 20, 30]
    assert pairs[0].similarity == pairs[1].similarity > 0.9999 > pairs[2].similarity


def test_chunking_does_not_change_results(tmp_path: Path, kernel: str) -> None:
    rng = np.random.default_rng(5)
    events = random_events(6, n=80)
    masks, z = prepare(np.stack([e[3] for e in events]))
    ids = np.arange(len(events), dtype=np.int64)[::-1].copy()
    with PoseStore(tmp_path / "a", chunk_rows=4, durable=False) as small, \
            PoseStore(tmp_path / "b", chunk_rows=1000, durable=False) as big:
        small.append(ids, masks, z)
        big.append(ids, masks, z)
        q = rng.choice(len(events), 6, replace=False)
        got, want = small.search(masks[q], z[q], 3, 0.0), big.search(masks[q], z[q], 3, 0.0)
    assert len(got[0]) >= 12
    # Query rows, ids, similarities and mirrored flags agree; index rows are positions, the same here too.
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_batch_split_by_the_table_budget_gives_the_same_results(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    events = random_events(7, n=80)
    masks, z = prepare(np.stack([e[3] for e in events]))
    with PoseStore(tmp_path, chunk_rows=16, durable=False) as index:
        index.append(np.arange(len(events), dtype=np.int64), masks, z)
        want = index.search(masks[:20], z[:20], 3, 0.0)
        monkeypatch.setattr(pose_store, "TABLE_BUDGET", 1)  # one query per pass
        got = index.search(masks[:20], z[:20], 3, 0.0)
    assert len(set(want[0].tolist())) >= 10
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_the_compiled_pass_scores_as_numpys(tmp_path: Path) -> None:
    """The C float32 pass against the numpy one, row by row: the same rows not comparable (NaN: coverage rule,
    degenerate spread), the same squared scores within float32 rounding; queries lacking no keypoint included."""
    if pose_store._pose_kernel is None:
        pytest.skip("the C pose kernel was not built (no C compiler at install time)")
    rng = np.random.default_rng(11)
    events = random_events(8, n=300)
    kp = np.stack([e[3] for e in events])
    masks, z = prepare(kp)
    queries = kp[rng.choice(len(events), 24, replace=False)].copy()
    queries[:4, :, 2] = 0.9  # every keypoint shown: no missing-keypoint terms
    queries[4:8] = np.stack([mirror(k) for k in queries[4:8]])
    q_masks, q_z = prepare(queries)
    compared = 0
    with PoseStore(tmp_path, chunk_rows=128, durable=False, kernel="c") as index:
        index.append(np.arange(len(events), dtype=np.int64), masks, z)
        for q in np.flatnonzero(q_masks):
            query = pose_store._Query(int(q_masks[q]), q_z[q], index._distinct)
            buffers = index._buffers(query.missing.shape[1])
            for chunk in range(len(index._z)):
                stop = min(index.chunk_rows, len(index) - chunk * index.chunk_rows)
                for start in range(0, stop, index.block_rows):
                    end = min(stop, start + index.block_rows)
                    block, mask_ids = index._z[chunk][start // index.block_rows], index._mask_ids[chunk][start:end]
                    want = index._score_block_numpy(block[:, : end - start], mask_ids, query, buffers).copy()
                    got = index._score_block_c(block, mask_ids, query, buffers).copy()
                    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
                    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-4, atol=1e-6)
                    compared += int((~np.isnan(want)).sum())
    assert compared > 1000


def test_the_kernel_is_chosen_by_name_environment_or_what_was_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUMANSTYLE_POSE_KERNEL", raising=False)
    assert pose_store.choose_kernel() == ("c" if pose_store._pose_kernel is not None else "numpy")
    monkeypatch.setenv("HUMANSTYLE_POSE_KERNEL", "numpy")
    assert pose_store.choose_kernel() == "numpy" and pose_store.choose_kernel("numpy") == "numpy"
    with pytest.raises(ValueError, match="expected one of"):
        pose_store.choose_kernel("fortran")
    monkeypatch.setattr(pose_store, "_pose_kernel", None)  # installed where no C compiler was found
    monkeypatch.delenv("HUMANSTYLE_POSE_KERNEL")
    assert pose_store.choose_kernel() == "numpy"
    with pytest.raises(ValueError, match="not built"):
        pose_store.choose_kernel("c")


def test_persistence_across_reopen(tmp_path: Path) -> None:
    masks, z = prepare(np.stack([e[3] for e in random_events(7, n=23)[:23]]))
    with PoseStore(tmp_path, chunk_rows=5) as index:
        assert index.append(np.arange(10), masks[:10], z[:10]) == 10
        assert index.append(np.arange(5, 23), masks[5:], z[5:]) == 13  # 5..9 already present
        before = index.search(masks[:3], z[:3], 4, -1.0)
    with PoseStore(tmp_path) as again:
        assert len(again) == 23
        np.testing.assert_array_equal(again.ids(), np.arange(23))
        got_masks, got_z = again.poses_at(np.arange(23))
        np.testing.assert_array_equal(got_masks, masks)
        np.testing.assert_array_equal(got_z, z)
        after = again.search(masks[:3], z[:3], 4, -1.0)
        for b, a in zip(before, after, strict=True):
            np.testing.assert_array_equal(b, a)
        with pytest.raises(RuntimeError):
            PoseStore(tmp_path)  # single writer


def test_crash_before_commit_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    masks, z = prepare(np.stack([e[3] for e in random_events(8, n=12)[:12]]))
    with PoseStore(tmp_path, chunk_rows=4) as index:
        index.append(np.arange(6), masks[:6], z[:6])

        def crash(rows: int) -> None:
            raise OSError("power cut")

        monkeypatch.setattr(index, "_commit", crash)
        with pytest.raises(OSError):
            index.append(np.arange(6, 11), masks[6:11], z[6:11])  # data written and fsynced, count never committed
        assert len(index) == 6
    assert (tmp_path / "chunk-000002.rec").exists()
    with open(tmp_path / "chunk-000001.rec", "ab") as f:
        f.write(b"\x01" * 13)  # plus a torn partial record
    with PoseStore(tmp_path) as index:
        assert len(index) == 6
        assert not (tmp_path / "chunk-000002.rec").exists()
        assert index.append(np.arange(12), masks, z) == 6
        np.testing.assert_array_equal(index.ids(), np.arange(12))
    with PoseStore(tmp_path) as index:
        np.testing.assert_array_equal(index.ids(), np.arange(12))
        np.testing.assert_array_equal(index.poses_at(np.arange(12))[1], z)


def test_truncated_chunk_keeps_intact_prefix(tmp_path: Path) -> None:
    masks, z = prepare(np.stack([e[3] for e in random_events(9, n=10)[:10]]))
    with PoseStore(tmp_path, chunk_rows=4) as index:
        index.append(np.arange(10), masks, z)
        record = (tmp_path / "chunk-000000.rec").stat().st_size // 4
    with open(tmp_path / "chunk-000001.rec", "r+b") as f:
        f.truncate(record * 2 + 5)  # lose committed rows 6, 7 (and with them 8, 9 after the gap)
    with PoseStore(tmp_path) as index:
        assert len(index) == 6
        missing = np.setdiff1d(np.arange(10), index.ids())
        assert index.append(np.arange(10), masks, z) == len(missing) == 4  # replay re-adds only those
        assert sorted(index.ids().tolist()) == list(range(10))
    assert (tmp_path / "committed").read_text().strip() == "10"


def test_old_format_is_refused_and_reset(tmp_path: Path) -> None:
    old = tmp_path / "movie" / FB
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"format": 1, "dim": 34, "chunk_rows": 65536}))
    (old / "chunk-000000.rec").write_bytes(b"\0" * 144 * 3)
    (old / "committed").write_text("3\n")
    with pytest.raises(PoseStoreFormatError):
        PairingRule(tmp_path, DOMAINS, durable=False, top_k=1)
    PairingRule.reset(tmp_path, DOMAINS)
    with PairingRule(tmp_path, DOMAINS, durable=False, top_k=1) as index:
        assert len(index.store("movie", FB)) == 0
        index.add(1, "movie", FB, pose())
    assert json.loads((old / "meta.json").read_text())["format"] == 2


def test_replay_gives_no_duplicate_pairs(tmp_path: Path) -> None:
    events = random_events(7, n=60)
    with PairingRule(tmp_path, DOMAINS, min_similarity=0.85, top_k=1) as index:
        first = [p for e in events for p in index.add(*e)]
        assert first and index.add(*events[-1]) == []
    with PairingRule(tmp_path, DOMAINS, min_similarity=0.85, top_k=1) as index:
        assert [p for e in events for p in index.add(*e)] == []


def test_propose_then_crash_replays_same_pairs(tmp_path: Path) -> None:
    with PairingRule(tmp_path, DOMAINS, min_similarity=0.5, top_k=1) as index:
        index.add(1, "movie", FB, pose(LEFT_UP))
        proposed = index.propose_batch([2], "game", FB, mirror(pose(LEFT_UP, dx=3))[None])
        assert len(index.store("game", FB)) == 0
    with PairingRule(tmp_path, DOMAINS, min_similarity=0.5, top_k=1) as index:  # "crash" before commit_batch
        assert index.propose_batch([2], "game", FB, mirror(pose(LEFT_UP, dx=3))[None]) == proposed
        assert index.commit_batch([2], "game", FB, mirror(pose(LEFT_UP, dx=3))[None]) == 1
        assert index.propose_batch([2], "game", FB, mirror(pose(LEFT_UP, dx=3))[None]) == []
    assert [(p.a_id, p.b_id, p.mirrored) for p in proposed] == [(1, 2, True)]


def test_single_blas_thread_restores_the_setting() -> None:
    from humanstyle.stages.process.blas_threads import _openblas, single_blas_thread

    funcs = _openblas()
    if funcs is None:
        pytest.skip("numpy does not bundle OpenBLAS here")
    get, set_ = funcs
    before = get()
    set_(2)
    try:
        with single_blas_thread():
            assert get() == 1
        assert get() == 2
    finally:
        set_(before)
