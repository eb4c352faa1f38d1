"""FAISS candidates for the pose store: the embedding's invariances, and a candidate search that scores exactly."""

from pathlib import Path

import numpy as np
import pytest

from bench.pairing import random_keypoints
from humanstyle.stages.pairing import ann as pose_ann
from humanstyle.stages.pairing.ann import SearchSettings, embed, fit_template
from humanstyle.stages.pairing.pose import prepare
from humanstyle.stages.pairing.pose_store import PoseStore
from tests.units.test_pairing import mirror

pytestmark = pytest.mark.skipif(not pose_ann.available(), reason="faiss-cpu is not installed")


def poses(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return prepare(random_keypoints(np.random.default_rng(seed), n))


def test_the_embedding_ignores_where_how_large_and_how_turned_a_pose_is() -> None:
    kp = random_keypoints(np.random.default_rng(1), 50)
    kp[..., 2] = 0.9  # every keypoint shown: the embedding is then exact up to the alignment
    masks, z = prepare(kp)
    template = fit_template(masks, z)
    angle = np.deg2rad(25)
    turned = kp.copy()
    x, y = kp[..., 0] - 50, kp[..., 1] - 50
    turned[..., 0] = 1.7 * (np.cos(angle) * x - np.sin(angle) * y) + 300
    turned[..., 1] = 1.7 * (np.sin(angle) * x + np.cos(angle) * y) - 20
    a, b = embed(masks, z, template), embed(*prepare(turned), template)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_an_unusable_pose_embeds_as_nan_and_is_never_a_candidate(tmp_path: Path) -> None:
    masks, z = poses(2, 400)
    masks[:5], z[:5] = 0, 0
    assert np.isnan(embed(masks[:5], z[:5], fit_template(masks[5:], z[5:]))).all()
    with PoseStore(tmp_path, durable=False, search=SearchSettings("faiss", 0, 64, 4096)) as index:
        index.append(np.arange(len(z)), masks, z)
        index.search(masks[5:6], z[5:6], 1, 0.0)
        assert len(index._ann) == len(z) and index._ann.index.ntotal == len(z) - 5


def test_with_every_row_a_candidate_faiss_finds_what_the_exact_scan_finds(tmp_path: Path) -> None:
    """Candidates covering the whole index: the gathered float32 pass, the tables of the candidates' masks only and
    the float64 re-score must then give exactly the exact scan's answer (rows, similarities, mirror flags)."""
    masks, z = poses(3, 3000)
    queries = random_keypoints(np.random.default_rng(4), 60)
    queries[:10] = np.stack([mirror(k) for k in queries[:10]])
    q_masks, q_z = prepare(queries)
    with PoseStore(tmp_path / "exact", durable=False, search=SearchSettings("exact")) as exact, \
            PoseStore(tmp_path / "faiss", durable=False, search=SearchSettings("faiss", 0, 4096, 4096)) as faiss:
        for index in (exact, faiss):
            index.append(np.arange(len(z)), masks, z)
        assert exact.method == "exact" and faiss.method == "faiss"
        want = exact.search(q_masks, q_z, 3, 0.9)
        got = faiss.search(q_masks, q_z, 3, 0.9)
    assert len(want[0]) > 20
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def test_rows_appended_after_training_are_found_and_growth_retrains(tmp_path: Path) -> None:
    masks, z = poses(5, 2000)
    with PoseStore(tmp_path, durable=False, search=SearchSettings("faiss", 0, 16, 64)) as index:
        index.append(np.arange(1000), masks[:1000], z[:1000])
        index.search(masks[:1], z[:1], 1, 0.99)
        trained = index._ann
        assert trained.trained_rows == 1000
        index.append(np.arange(1000, 2000), masks[1000:], z[1000:])
        assert index._ann is trained and len(trained) == 2000
        found = index.search(masks[1500:1510], z[1500:1510], 1, 0.999)
        usable = np.flatnonzero(masks[1500:1510] != 0)
        np.testing.assert_array_equal(found[0], usable)  # each finds itself, appended after training
        np.testing.assert_array_equal(found[2], 1500 + usable)
        more, more_z = poses(6, 2000)
        index.append(np.arange(2000, 4000), more, more_z)
        index.search(masks[:1], z[:1], 1, 0.99)
        assert index._ann is not trained and index._ann.trained_rows == 4000


def test_auto_scans_exactly_below_its_row_count(tmp_path: Path) -> None:
    masks, z = poses(7, 500)
    with PoseStore(tmp_path, durable=False, search=SearchSettings("auto", 400)) as index:
        index.append(np.arange(300), masks[:300], z[:300])
        assert index.method == "exact"
        index.append(np.arange(300, 500), masks[300:], z[300:])
        assert index.method == "faiss"
    with pytest.raises(ValueError, match="pose search"):
        SearchSettings("annoy")
