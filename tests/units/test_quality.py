"""The translators' quality metrics (models.quality): PSNR and SSIM from torchmetrics on images in [-1, 1], capped
PSNR for identical images, and the signed brightness gap."""

from __future__ import annotations

import pytest
import torch

from humanstyle.models.quality import MAX_PSNR_DB, image_quality


def images(seed: int, n: int = 4, side: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, side // 8, side // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=side, mode="bilinear", align_corners=False) * 2 - 1


def test_identical_images_score_perfectly_and_noise_lowers_both():
    x = images(0)
    same = image_quality(x, x)
    assert same["psnr"] == MAX_PSNR_DB and same["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert same["brightness_gap"] == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    slight = image_quality((x + 0.02 * torch.randn(x.shape, generator=g)).clamp(-1, 1), x)
    heavy = image_quality((x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1), x)
    assert MAX_PSNR_DB > slight["psnr"] > heavy["psnr"] and 1.0 > slight["ssim"] > heavy["ssim"]
    # Data range 2 (images in [-1, 1]): noise of standard deviation s gives about 20 log10(2 / s) dB.
    assert slight["psnr"] == pytest.approx(20 * torch.log10(torch.tensor(2 / 0.02)).item(), abs=1.0)


def test_the_brightness_gap_is_signed_generated_minus_target():
    x = images(2) * 0.5
    brighter = image_quality((x + 0.4).clamp(-1, 1), x)
    assert brighter["brightness_gap"] > 0.15 and brighter["brightness_fake"] > brighter["brightness_real"]
    assert image_quality(x - 0.4, x)["brightness_gap"] < -0.15
