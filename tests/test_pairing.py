from pathlib import Path

import numpy as np
import pytest

from humanstyle.stages.pair import (
    FEATURE_DIM,
    VIEWS,
    KeypointIndex,
    Pair,
    PairingIndex,
    brute_force_pairs,
    keypoint_feature,
    pose_similarity,
)

FB, HS = VIEWS[0], VIEWS[1]
BASE = {0: (50, 10), 1: (48, 8), 2: (52, 8), 3: (45, 9), 4: (55, 9), 5: (40, 25), 6: (60, 25), 11: (43, 60),
        12: (57, 60), 13: (43, 80), 14: (57, 80), 15: (43, 100), 16: (57, 100)}
ARMS_DOWN = {7: (35, 42), 8: (65, 42), 9: (35, 58), 10: (65, 58)}
ARMS_UP = {7: (35, 10), 8: (65, 10), 9: (35, -5), 10: (65, -5)}


def pose(arms: dict = ARMS_DOWN, dx: float = 0, dy: float = 0, scale: float = 1.0) -> np.ndarray:
    kp = np.zeros((17, 3))
    for i, (x, y) in {**BASE, **arms}.items():
        kp[i] = (x * scale + dx, y * scale + dy, 0.9)
    return kp


def random_events(seed: int, n: int = 150) -> list[tuple[int, str, str, np.ndarray]]:
    """Runs of 1-5 patches sharing (domain, view), noisy poses near a few prototypes, some low-confidence."""
    rng = np.random.default_rng(seed)
    protos = [pose(ARMS_DOWN), pose(ARMS_UP)]
    events, next_id = [], 1000
    while len(events) < n:
        domain, view = rng.choice(["movie", "game"]), rng.choice([FB, HS])
        for _ in range(rng.integers(1, 6)):
            kp = protos[rng.integers(2)].copy()
            kp[:, :2] = kp[:, :2] * rng.uniform(0.5, 2) + rng.uniform(0, 100, 2) + rng.normal(0, 6, (17, 2))
            kp[:, 2] = rng.uniform(0.1, 1.0, 17)
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


def assert_same(got: list[Pair], want: list[Pair]) -> None:
    assert [(p.movie_id, p.game_id, p.view) for p in got] == [(p.movie_id, p.game_id, p.view) for p in want]
    np.testing.assert_allclose([p.similarity for p in got], [p.similarity for p in want], atol=1e-5)


@pytest.mark.parametrize("seed,top_k,mutual,batched", [
    (0, 1, False, False), (1, 3, False, True), (2, 1, True, False), (3, 1, True, True), (4, 5, False, True),
])
def test_matches_brute_force(tmp_path: Path, seed: int, top_k: int, mutual: bool, batched: bool) -> None:
    events = random_events(seed)
    params = dict(min_similarity=0.85, top_k=top_k, mutual_best=mutual)
    want = brute_force_pairs(events, **params)
    got: list[Pair] = []
    with PairingIndex(tmp_path, chunk_rows=7, durable=False, **params) as index:
        if batched:
            for batch in runs(events):
                got += index.add_batch([e[0] for e in batch], batch[0][1], batch[0][2],
                                       np.stack([e[3] for e in batch]))
        else:
            for e in events:
                got += index.add(*e)
    assert len(want) > 5  # the data must actually exercise the rule
    assert_same(got, want)


def test_same_view_only(tmp_path: Path) -> None:
    with PairingIndex(tmp_path, min_similarity=0.5, durable=False) as index:
        assert index.add(1, "movie", FB, pose()) == []
        assert index.add(2, "game", HS, pose()) == []
        pairs = index.add(3, "game", FB, pose(dx=5))
    assert [(p.movie_id, p.game_id, p.view) for p in pairs] == [(1, 3, FB)]


def test_pose_similarity_ranks_same_pose_first(tmp_path: Path) -> None:
    down = pose(ARMS_DOWN)
    assert pose_similarity(down, pose(ARMS_DOWN, dx=37, dy=-12, scale=2.5)) > 0.999
    assert pose_similarity(down, pose(ARMS_UP)) < 0.9
    with PairingIndex(tmp_path, min_similarity=0.0, top_k=2, durable=False) as index:
        index.add(10, "game", FB, pose(ARMS_UP))
        index.add(11, "game", FB, pose(ARMS_DOWN, dx=20, scale=0.6))
        pairs = index.add(1, "movie", FB, down)
    assert [p.game_id for p in pairs] == [11, 10]
    assert pairs[0].similarity > 0.999 > pairs[1].similarity


def test_missing_keypoints_lower_similarity_and_unusable_never_pairs(tmp_path: Path) -> None:
    head_only = pose()
    head_only[11:, 2] = 0.05  # legs and hips below min_confidence
    assert pose_similarity(pose(), head_only) < 0.9
    empty = np.zeros((17, 3))
    assert not keypoint_feature(empty).any()
    with PairingIndex(tmp_path, min_similarity=-1.0, durable=False) as index:
        index.add(1, "game", FB, pose())
        assert index.add(2, "movie", FB, empty) == []
        assert len(index.index("movie", FB)) == 1


def test_query_tie_break_and_chunking(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(50, FEATURE_DIM)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    feats[[10, 20, 30]] = feats[0]
    ids = np.arange(50, dtype=np.int64)[::-1].copy()  # ids descend with row, so tie-break is not row order
    with KeypointIndex(tmp_path / "a", FEATURE_DIM, chunk_rows=4, durable=False) as small, \
            KeypointIndex(tmp_path / "b", FEATURE_DIM, chunk_rows=1000, durable=False) as big:
        small.append(ids, feats)
        big.append(ids, feats)
        q = feats[[0, 1, 2]]
        got, want = small.query(q, 3, -1.0), big.query(q, 3, -1.0)
        assert [g[:2] for g in got] == [w[:2] for w in want]
        np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], atol=1e-6)
        top = small.query(feats[:1], 4, 0.5)
    assert [i for _, i, _ in top] == [19, 29, 39, 49]  # the four identical rows, lowest id first


def test_persistence_across_reopen(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    feats = rng.normal(size=(23, FEATURE_DIM)).astype(np.float32)
    with KeypointIndex(tmp_path, FEATURE_DIM, chunk_rows=5) as index:
        assert index.append(np.arange(10), feats[:10]) == 10
        assert index.append(np.arange(5, 23), feats[5:]) == 13  # 5..9 already present
        before = index.query(feats[:3], 4, -1.0)
    with pytest.raises(ValueError):
        KeypointIndex(tmp_path, FEATURE_DIM + 1)
    with KeypointIndex(tmp_path, FEATURE_DIM) as again:
        assert len(again) == 23
        np.testing.assert_array_equal(again.ids(), np.arange(23))
        np.testing.assert_array_equal(again.features_at(np.arange(23)), feats)
        assert again.query(feats[:3], 4, -1.0) == before
        with pytest.raises(RuntimeError):
            KeypointIndex(tmp_path, FEATURE_DIM)  # single writer


def test_crash_before_commit_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feats = np.eye(FEATURE_DIM, dtype=np.float32)
    with KeypointIndex(tmp_path, FEATURE_DIM, chunk_rows=4) as index:
        index.append(np.arange(6), feats[:6])

        def crash(rows: int) -> None:
            raise OSError("power cut")

        monkeypatch.setattr(index, "_commit", crash)
        with pytest.raises(OSError):
            index.append(np.arange(6, 11), feats[6:11])  # data written and fsynced, count never committed
        assert len(index) == 6
    assert (tmp_path / "chunk-000002.rec").exists()
    with open(tmp_path / "chunk-000001.rec", "ab") as f:
        f.write(b"\x01" * 13)  # plus a torn partial record
    with KeypointIndex(tmp_path, FEATURE_DIM) as index:
        assert len(index) == 6
        assert not (tmp_path / "chunk-000002.rec").exists()
        assert index.append(np.arange(12), feats[:12]) == 6
        np.testing.assert_array_equal(index.ids(), np.arange(12))
    with KeypointIndex(tmp_path, FEATURE_DIM) as index:
        np.testing.assert_array_equal(index.ids(), np.arange(12))
        np.testing.assert_array_equal(index.features_at(np.arange(12)), feats[:12])


def test_truncated_chunk_keeps_intact_prefix(tmp_path: Path) -> None:
    feats = np.eye(FEATURE_DIM, dtype=np.float32)
    with KeypointIndex(tmp_path, FEATURE_DIM, chunk_rows=4) as index:
        index.append(np.arange(10), feats[:10])
        record = (tmp_path / "chunk-000000.rec").stat().st_size // 4
    with open(tmp_path / "chunk-000001.rec", "r+b") as f:
        f.truncate(record * 2 + 5)  # lose committed rows 6, 7 (and with them 8, 9 after the gap)
    with KeypointIndex(tmp_path, FEATURE_DIM) as index:
        assert len(index) == 6
        missing = np.setdiff1d(np.arange(10), index.ids())
        assert index.append(np.arange(10), feats[:10]) == len(missing) == 4  # replay re-adds only those
        assert sorted(index.ids().tolist()) == list(range(10))
    assert (tmp_path / "committed").read_text().strip() == "10"


def test_replay_gives_no_duplicate_pairs(tmp_path: Path) -> None:
    events = random_events(7, n=60)
    with PairingIndex(tmp_path, min_similarity=0.85) as index:
        first = [p for e in events for p in index.add(*e)]
        assert first and index.add(*events[-1]) == []
    with PairingIndex(tmp_path, min_similarity=0.85) as index:
        assert [p for e in events for p in index.add(*e)] == []


def test_propose_then_crash_replays_same_pairs(tmp_path: Path) -> None:
    with PairingIndex(tmp_path, min_similarity=0.5) as index:
        index.add(1, "movie", FB, pose())
        proposed = index.propose_batch([2], "game", FB, pose(dx=3)[None])
        assert len(index.index("game", FB)) == 0
    with PairingIndex(tmp_path, min_similarity=0.5) as index:  # "crash" before commit_batch
        assert index.propose_batch([2], "game", FB, pose(dx=3)[None]) == proposed
        assert index.commit_batch([2], "game", FB, pose(dx=3)[None]) == 1
        assert index.propose_batch([2], "game", FB, pose(dx=3)[None]) == []
    assert [(p.movie_id, p.game_id) for p in proposed] == [(1, 2)]
