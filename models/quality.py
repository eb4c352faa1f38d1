"""How good a translator's outputs are against their targets, on held-out pairs: PSNR and SSIM (torchmetrics, a
well-kept implementation of both, Gaussian-window SSIM as in Wang et al. 2004) and the brightness gap.

Images are RGB batches in [-1, 1], so the data range is 2. PSNR of identical images is infinite; it is capped at
MAX_PSNR_DB so that it stays a number in JSON and Prometheus.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from humanstyle.models.losses import brightness

DATA_RANGE = 2.0  # images in [-1, 1]
MAX_PSNR_DB = 100.0


@torch.no_grad()
def image_quality(generated: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """PSNR (dB, higher is better), SSIM (at most 1, higher is better), and the signed brightness gap (generated
    minus target mean luminance in [0, 1]) of a batch against its targets."""
    generated, target = generated.float(), target.float().to(generated.device)
    psnr = peak_signal_noise_ratio(generated, target, data_range=DATA_RANGE).item()
    ssim = structural_similarity_index_measure(generated, target, data_range=DATA_RANGE).item()
    fake, real = brightness(generated).mean().item(), brightness(target).mean().item()
    return {"psnr": min(psnr, MAX_PSNR_DB), "ssim": ssim, "brightness_fake": fake, "brightness_real": real,
            "brightness_gap": fake - real}
