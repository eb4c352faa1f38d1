"""Shapes, value ranges, initialisation and sizes of the GAN building blocks (models/networks.py, losses.py)."""

from __future__ import annotations

import pytest
import torch

from humanstyle.models import losses
from humanstyle.models.networks import (
    Precision,
    ResnetBlock,
    build_discriminator,
    build_resnet_generator,
    build_unet,
    unet_depth_for,
)

torch.set_num_threads(1)

SIZES = (64, 200, 256)


@pytest.mark.parametrize("size", SIZES)
def test_unet_keeps_size_and_range(size: int) -> None:
    net = build_unet(size, ngf=4).eval()
    x = 5 * torch.randn(2, 3, size, size)  # far outside [-1, 1]: tanh must still bound the output
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, size, size)
    assert y.min() >= -1 and y.max() <= 1
    assert y.std() > 0


@pytest.mark.parametrize("size", SIZES)
def test_resnet_generator_keeps_size_and_range(size: int) -> None:
    net = build_resnet_generator(ngf=4, n_blocks=9).eval()
    with torch.no_grad():
        y = net(5 * torch.randn(1, 3, size, size))
    assert y.shape == (1, 3, size, size)
    assert y.min() >= -1 and y.max() <= 1


@pytest.mark.parametrize(("size", "patches"), [(64, 6), (200, 23), (256, 30)])
def test_patchgan_output_grid(size: int, patches: int) -> None:
    net = build_discriminator(in_channels=6, ndf=4)
    with torch.no_grad():
        y = net(torch.randn(2, 6, size, size))
    assert y.shape == (2, 1, patches, patches)


def test_unet_depth_follows_size() -> None:
    assert [unet_depth_for(s) for s in (32, 64, 200, 256, 512)] == [5, 6, 7, 8, 8]
    assert build_unet(200, ngf=4).depth == 7


@pytest.mark.parametrize("size", [5, 37, 70])
def test_odd_sizes_are_padded_and_cropped_back(size: int) -> None:
    x = torch.randn(1, 3, size, size + 3)
    with torch.no_grad():
        assert build_unet(max(size, 4), ngf=4, depth=3).eval()(x).shape == x.shape
        assert build_resnet_generator(ngf=4, n_blocks=1)(x).shape == x.shape


def test_published_parameter_counts() -> None:
    """Same layer layout as the reference pix2pix unet_256 and basic D (batch norm, as there; 54.414 M and
    2.769 M) and CycleGAN's resnet_9blocks (instance norm; 11.378 M)."""

    def count(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    assert count(build_resnet_generator()) == 11_378_179
    assert count(build_unet(256, norm="batch")) == 54_413_955
    assert count(build_discriminator(in_channels=6, norm="batch")) == 2_768_705


def test_resnet_blocks_configurable() -> None:
    for n in (6, 9):
        net = build_resnet_generator(ngf=4, n_blocks=n)
        assert sum(isinstance(m, ResnetBlock) for m in net.modules()) == n


def test_init_is_normal_002_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    net = build_resnet_generator(ngf=16, n_blocks=2, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    weights = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, torch.nn.Conv2d)])
    assert weights.mean().abs() < 0.002
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(m.bias.abs().max() == 0 for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    again = build_resnet_generator(ngf=16, n_blocks=2, seed=7)
    other = build_resnet_generator(ngf=16, n_blocks=2, seed=8)
    a, b, c = (list(n.parameters())[0] for n in (net, again, other))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batch_norm_variant_builds_and_runs() -> None:
    net = build_unet(64, ngf=4, norm="batch")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="norm"):
        build_unet(64, norm="group")


def test_losses() -> None:
    logits = torch.zeros(1, 1, 4, 4)
    assert losses.gan_loss(logits, True, "lsgan").item() == pytest.approx(1.0)
    assert losses.gan_loss(logits, False, "lsgan").item() == pytest.approx(0.0)
    assert losses.gan_loss(logits, True, "vanilla").item() == pytest.approx(0.6931, abs=1e-4)
    assert losses.gan_loss(torch.full((1, 1, 2, 2), 20.0), True, "vanilla").item() < 1e-6
    with pytest.raises(ValueError):
        losses.gan_loss(logits, True, "wgan")
    x = torch.zeros(1, 3, 2, 2)
    assert losses.l1_loss(x, x + 0.5).item() == pytest.approx(0.5)


def test_brightness_is_mean_luma_in_unit_range() -> None:
    images = torch.stack([torch.full((3, 4, 4), -1.0), torch.full((3, 4, 4), 1.0), torch.zeros(3, 4, 4)])
    assert losses.brightness(images).tolist() == pytest.approx([0.0, 1.0, 0.5])
    green = -torch.ones(1, 3, 2, 2)
    green[:, 1] = 1.0
    assert losses.brightness(green).item() == pytest.approx(0.587)
    dark, bright = torch.full((2, 3, 4, 4), -0.8), torch.full((2, 3, 4, 4), 0.2)
    assert losses.luminance_loss(dark, bright).item() == pytest.approx(0.25)


def test_precision_is_plain_fp32_on_cpu() -> None:
    prec = Precision(torch.device("cpu"), amp=True)
    assert not prec.enabled and not prec.scaler.is_enabled()
    with prec.autocast():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.float32
