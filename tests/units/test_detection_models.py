"""Detection adapters and weights resolution on the CPU with random-init models; never touches the network."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from humanstyle.models import weights as W
from humanstyle.models.detection import KeypointEstimator, PersonDetector, keypoint_confidence, set_torch_threads

MASK = "maskrcnn_resnet50_fpn"
KEYPOINT = "keypointrcnn_resnet50_fpn"


@pytest.fixture(autouse=True)
def one_thread():
    set_torch_threads(1)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def empty_hub(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.fixture(scope="module")
def mask_state_file(tmp_path_factory):
    torch.manual_seed(1)
    model = W.build_model(MASK, "none")
    path = tmp_path_factory.mktemp("weights") / "mask.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model.state_dict()["roi_heads.box_predictor.cls_score.weight"].clone()


def frames(n: int, h: int = 240, w: int = 320) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_detector_threshold_zero_finds_capped_people_in_every_frame():
    det = PersonDetector(
        "none", device="cpu", score_threshold=0.0, max_persons=2, min_box_side=8, batch_size=2
    )
    batch = frames(2) + frames(1, 200, 300)  # two shapes: batching must split them
    results = det.detect(batch)
    assert det.model.transform.min_size == (200,)  # never upscaled to torchvision's 800
    for frame, dets in zip(batch, results, strict=True):
        h, w = frame.shape[:2]
        assert 1 <= len(dets) <= 2
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        for d in dets:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert min(x2 - x1, y2 - y1) >= 8
            assert d.mask.shape == (h, w) and d.mask.dtype == bool
            assert 0.0 <= d.score <= 1.0


def test_detector_threshold_one_finds_nobody_and_empty_input():
    det = PersonDetector("none", device="cpu", score_threshold=1.0, max_persons=3, min_box_side=1)
    assert det.detect(frames(2)) == [[], []]
    assert det.detect([]) == []
    with pytest.raises(ValueError):
        det.detect([np.zeros((10, 10), np.uint8)])


def test_keypoint_estimator_shapes_and_ranges():
    est = KeypointEstimator("none", device="cpu", box_score_threshold=0.0, batch_size=2)
    patches = frames(3, 128, 128)
    results = est.estimate(patches)
    assert est.model.transform.min_size == (128,)
    assert len(results) == 3
    for r in results:
        if r is None:
            continue
        assert r.keypoints.shape == (17, 3) and r.keypoints.dtype == np.float32
        assert ((r.keypoints[:, 2] >= 0) & (r.keypoints[:, 2] <= 1)).all()
        assert ((r.keypoints[:, :2] >= 0) & (r.keypoints[:, :2] <= 128)).all()
    assert any(r is not None for r in results)
    nobody = KeypointEstimator("none", device="cpu", box_score_threshold=1.0)
    assert nobody.estimate(patches[:1]) == [None]


def test_keypoint_estimator_upscales_only_when_asked():
    """classify.input_size > patch size (benchmark parity with torchvision's default 800) enlarges the patch;
    keypoints still come back in patch pixels."""
    est = KeypointEstimator("none", device="cpu", min_size=192, max_size=192, box_score_threshold=0.0, upscale=True)
    results = est.estimate(frames(1, 96, 96))
    assert est.model.transform.min_size == (192,)
    assert results[0] is not None and ((results[0].keypoints[:, :2] >= 0) & (results[0].keypoints[:, :2] <= 96)).all()


def test_keypoint_confidence_mapping():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = keypoint_confidence(np.array([-1e30, -30.0, 0.0, 2.0, 5.0, 120.0, 1e30, np.nan]))
    assert c.dtype == np.float32 and ((c >= 0) & (c <= 1)).all()
    assert np.all(np.diff(c[:7]) >= 0)
    assert c[3] == pytest.approx(0.5) and c[4] == pytest.approx(0.9526, abs=1e-3) and c[7] == 0.0


def test_weights_path_round_trip(mask_state_file):
    path, cls_weight = mask_state_file
    assert "state dict" in W.check_weights_available(MASK, str(path))
    model = W.build_model(MASK, str(path))
    assert torch.equal(model.state_dict()["roi_heads.box_predictor.cls_score.weight"], cls_weight)
    assert not model.training


def test_wrong_architecture_file_is_named(mask_state_file):
    path, _ = mask_state_file
    with pytest.raises(W.WeightsError, match=rf"does not fit architecture {KEYPOINT}.*missing keys"):
        W.check_weights_available(KEYPOINT, str(path))


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(W.WeightsError, match="cannot read"):
        W.check_weights_available(MASK, str(junk))
    torch.save({"epoch": 3}, tmp_path / "nodict.pth")
    with pytest.raises(W.WeightsError, match="does not hold a state dict"):
        W.check_weights_available(MASK, str(tmp_path / "nodict.pth"))
    with pytest.raises(W.WeightsError, match="does not exist"):
        W.build_model(MASK, str(tmp_path / "absent.pth"))
    with pytest.raises(W.WeightsError, match="unknown architecture"):
        W.check_weights_available("resnet", "none")


@pytest.mark.parametrize("arch", [MASK, KEYPOINT])
def test_default_weights_offline_name_the_expected_file(empty_hub, arch):
    expected = empty_hub / "checkpoints" / W.default_checkpoint_path(arch).name
    assert W.default_checkpoint_path(arch) == expected
    with pytest.raises(W.WeightsError) as err:
        W.check_weights_available(arch, "DEFAULT", allow_download=False)
    message = str(err.value)
    assert str(expected) in message and "https://download.pytorch.org/models/" in message
    assert 'weights = "/path/file.pth"' in message
    assert "will be downloaded" in W.check_weights_available(arch, "default", allow_download=True)
    with pytest.raises(W.WeightsError, match="expected file"):
        (PersonDetector if arch == MASK else KeypointEstimator)("DEFAULT", device="cpu", allow_download=False)


def test_default_download_failure_becomes_weights_error(empty_hub, monkeypatch):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(W.WeightsError, match="(?s)download failed.*expected file"):
        W.download_default_weights(KEYPOINT, progress=False)


def test_the_adapters_defaults_are_the_configs():
    """A model built without arguments (a notebook, a benchmark) behaves as the daemon's default config does."""
    import inspect

    from humanstyle.stages.settings import ClassifySettings, DetectSettings

    d, c = DetectSettings(), ClassifySettings()
    detector = inspect.signature(PersonDetector).parameters
    expected = {"score_threshold": d.score_threshold, "max_persons": d.max_persons, "min_box_side": d.min_box_side,
                "min_size": d.min_size, "max_size": d.max_size, "batch_size": d.batch_size,
                "proposals": d.proposals, "device": d.device}
    assert {k: detector[k].default for k in expected} == expected
    estimator = inspect.signature(KeypointEstimator).parameters
    expected = {"min_size": d.patch_size, "max_size": d.patch_size, "batch_size": c.batch_size,
                "box_score_threshold": c.person_threshold, "proposals": c.proposals,
                "min_overlap": c.min_person_overlap, "device": c.device}
    assert {k: estimator[k].default for k in expected} == expected
