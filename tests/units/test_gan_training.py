"""pix2pix and CycleGAN learn a tiny synthetic mapping, and a checkpointed run resumes bit-for-bit on CPU."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from humanstyle.models.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from humanstyle.models.cyclegan import CycleGAN, CycleGANSettings, ImagePool
from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings

torch.set_num_threads(1)
SIZE = 32


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Blurry random colour fields in [-1, 1]: easy to learn, unlike white noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def batches(x: torch.Tensor, step: int, batch: int) -> torch.Tensor:
    idx = (torch.arange(batch) + step * batch) % len(x)
    return x[idx]


def tiny_pix2pix(**kw: Any) -> Pix2Pix:
    return Pix2Pix(Pix2PixSettings(image_size=SIZE, ngf=8, ndf=8, **kw))


def tiny_cyclegan(**kw: Any) -> CycleGAN:
    return CycleGAN(CycleGANSettings(image_size=SIZE, ngf=8, ndf=8, n_blocks=1, **kw))


def test_pix2pix_learns_colour_inversion() -> None:
    torch.manual_seed(0)
    a, va = smooth_images(32, 1), smooth_images(8, 2)
    model = tiny_pix2pix()
    before = model.validate(va, -va)
    l1 = [model.train_step(batches(a, i, 4), -batches(a, i, 4))["G_l1"] for i in range(150)]
    after = model.validate(va, -va)
    assert after["score"] == after["l1"] < 0.6 * before["score"], (before, after)
    # The quality metrics follow: closer to the targets in PSNR and SSIM (models.quality).
    assert after["psnr"] > before["psnr"] + 2 and after["ssim"] > before["ssim"], (before, after)
    assert np.mean(l1[-20:]) < 0.7 * np.mean(l1[:20])
    assert model.step == 150


def test_pix2pix_step_reports_every_term() -> None:
    model = tiny_pix2pix(lambda_luminance=1.0, gan_mode="lsgan")
    a = smooth_images(2, 3)
    out = model.train_step(a, -a)
    expected = {"G_gan", "G_l1", "G_luminance", "G_total", "D_real", "D_fake", "D_total"}
    assert expected | {"brightness_fake", "brightness_real", "brightness_gap"} == set(out)
    assert all(isinstance(v, float) and np.isfinite(v) for v in out.values())
    assert out["G_luminance"] > 0
    assert out["brightness_gap"] == pytest.approx(out["brightness_fake"] - out["brightness_real"])
    assert out["G_total"] == pytest.approx(out["G_gan"] + 100 * out["G_l1"] + out["G_luminance"], rel=1e-5)
    y = model.translate(a)
    assert y.shape == a.shape and y.dtype == torch.float32 and y.abs().max() <= 1
    assert torch.equal(y, model.translate(a)), "translate must be deterministic (dropout off)"


def test_cyclegan_cycle_loss_falls() -> None:
    torch.manual_seed(0)
    a, b = smooth_images(32, 4), -smooth_images(32, 5)  # unpaired: b is not -a
    model = tiny_cyclegan()
    va, vb = smooth_images(8, 6), -smooth_images(8, 7)
    before = model.validate(va, vb)["score"]
    logs = [model.train_step(batches(a, i, 2), batches(b, i + 5, 2)) for i in range(200)]
    cycle = [d["cycle_a"] + d["cycle_b"] for d in logs]
    total = [d["G_total"] for d in logs]
    assert np.mean(cycle[-15:]) < 0.8 * np.mean(cycle[:15])
    assert np.mean(total[-15:]) < np.mean(total[:15])
    assert model.validate(va, vb)["score"] < 0.8 * before
    out = logs[-1]
    assert out["brightness_gap"] in (out["brightness_gap_a2b"], out["brightness_gap_b2a"])
    assert out["brightness_gap_a2b"] == pytest.approx(out["brightness_fake_b"] - out["brightness_real_b"])
    assert model.translate(va, "b2a").shape == va.shape
    with pytest.raises(ValueError):
        model.translate(va, "sideways")


@pytest.mark.parametrize("make", [tiny_pix2pix, tiny_cyclegan])
def test_both_models_keep_one_contract(make) -> None:
    """What the trainer, translate and the previews rely on, so none of them asks which model it holds."""
    model = make()
    a = smooth_images(2, 3)
    assert isinstance(model.paired, bool) and model.directions[0] == "a2b"
    for direction in model.directions:
        assert model.translate(a, direction).shape == a.shape
    with pytest.raises(ValueError):
        model.translate(a, "sideways")
    result = model.validate(a, -a)
    assert isinstance(result, dict) and np.isfinite(result["score"])


def test_image_pool_returns_history_once_full() -> None:
    pool = ImagePool(pool_size=3, seed=0)
    first = torch.zeros(3, 1, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling: the new images come straight back
    seen_old = False
    for k in range(1, 20):
        out = pool.query(torch.full((1, 1, 2, 2), float(k)))
        seen_old |= bool(out.max() < k)
        assert len(pool.images) == 3
    assert seen_old, "a full pool must sometimes answer with an older image"


def _run(make, steps: range, data: tuple[torch.Tensor, torch.Tensor], model=None):  # noqa: ANN001, ANN202
    model = model or make()
    a, b = data
    return model, [model.train_step(batches(a, i, 2), batches(b, i + 3, 2)) for i in steps]


def _assert_same(x: Any, y: Any, where: str = "state") -> None:
    if isinstance(x, torch.Tensor):
        assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), where
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _assert_same(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list | tuple):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    else:
        assert x == y, where


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_resume_from_checkpoint_is_bit_identical(kind: str, tmp_path: Path) -> None:
    make = tiny_pix2pix if kind == "pix2pix" else (lambda: tiny_cyclegan(pool_size=3))
    data = (smooth_images(8, 8), -smooth_images(8, 9))
    k, m = 4, 4

    torch.manual_seed(42)
    straight, logs_straight = _run(make, range(k + m), data)

    torch.manual_seed(42)
    first, logs_first = _run(make, range(k), data)
    save_checkpoint(tmp_path / "ckpt.pt", {"model": first.state_dict(), "rng": capture_rng_state()})
    del first
    torch.manual_seed(999)  # disturb everything the checkpoint must put back
    np.random.seed(999)
    random.seed(999)
    state = load_checkpoint(tmp_path / "ckpt.pt")
    resumed = make()
    resumed.load_state_dict(state["model"])
    restore_rng_state(state["rng"])
    assert resumed.step == k
    resumed, logs_second = _run(make, range(k, k + m), data, model=resumed)

    assert logs_first + logs_second == logs_straight
    _assert_same(resumed.state_dict(), straight.state_dict())
    if kind == "cyclegan":
        assert len(resumed.pool_A.images) == 3


def test_checkpoint_rejects_other_architecture(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "p.pt", tiny_pix2pix().state_dict())
    state = load_checkpoint(tmp_path / "p.pt")
    with pytest.raises(ValueError, match="ngf"):
        Pix2Pix(Pix2PixSettings(image_size=SIZE, ngf=16, ndf=8)).load_state_dict(state)
    with pytest.raises(ValueError, match="pix2pix"):
        tiny_cyclegan().load_state_dict(state)


def test_load_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"array": np.arange(3)}, path)  # numpy objects need full unpickling
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_save_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for an unpicklable value
        save_checkpoint(path, {"step": 2, "bad": lambda: None})
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"], "temp file left behind"


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    drawn = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1])
    assert drawn[2:] == again[2:]
