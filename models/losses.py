"""Loss terms for pix2pix and CycleGAN, and the brightness measure used to watch for dark outputs.

Every loss is computed in float32 (inputs are cast), so the numbers are the same with or without autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("lsgan", "vanilla")

# ITU-R BT.601 luma weights for RGB channels (the images are RGB, see models.data).
_LUMA = (0.299, 0.587, 0.114)


def gan_loss(logits: torch.Tensor, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Discriminator-output loss against an all-real or all-fake target.

    "lsgan": mean squared error to 1/0 (CycleGAN's choice: steadier gradients, less mode collapse);
    "vanilla": binary cross-entropy on logits (the pix2pix paper's choice).
    """
    logits = logits.float()
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {mode!r}")


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (pix2pix reconstruction term)."""
    return F.l1_loss(output.float(), target.float())


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """CycleGAN cycle-consistency: G_BA(G_AB(a)) should give back a."""
    return l1_loss(reconstructed, original)


def identity_loss(mapped: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """CycleGAN identity term: G_AB(b) should leave an image already in B unchanged (preserves colour)."""
    return l1_loss(mapped, original)


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean luminance in [0, 1] of each image of an RGB batch in [-1, 1]; shape (B,)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected an RGB batch (B, 3, H, W), got {tuple(images.shape)}")
    weights = images.new_tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    luma = (images.float().add(1.0).mul(0.5) * weights).sum(1)
    return luma.mean(dim=(1, 2))


def luminance_loss(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Squared gap between the batch-mean luminance of generated and reference images.

    Only the mean is matched, so the term does not fight the content; squared (not absolute) so that with an
    unpaired reference drawn at random its gradient points, in expectation, at the reference domain's mean.
    """
    return (brightness(generated).mean() - brightness(reference).mean()).pow(2)
