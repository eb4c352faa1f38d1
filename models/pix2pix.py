"""pix2pix: a U-Net generator trained against a conditional PatchGAN with an L1 term, for one direction a ->
b.

The daemon trains two instances (movie2game and game2movie). The learning rate is constant: a streaming
trainer has no last epoch to decay towards, so there is no scheduler to checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from humanstyle.models import losses
from humanstyle.models.checkpoint import STATE_VERSION, check_architecture
from humanstyle.models.networks import (
    AMP_DTYPES,
    NORMS,
    Precision,
    build_discriminator,
    build_unet,
    set_requires_grad,
)
from humanstyle.models.parallel import Wrap, sync_buffers
from humanstyle.models.quality import image_quality

# Settings that change the shape of a network: a checkpoint only loads into a model that agrees on these.
_ARCHITECTURE = (
    "image_size",
    "ngf",
    "ndf",
    "norm",
    "unet_depth",
    "n_layers_d",
    "in_channels",
    "out_channels",
)


@dataclass
class Pix2PixSettings:
    image_size: int = 256
    ngf: int = 64
    ndf: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_l1: float = 100.0
    # Weight of the squared gap between mean luminance of outputs and targets; 0 turns it off (see losses).
    lambda_luminance: float = 0.0
    gan_mode: str = "vanilla"  # "vanilla" (BCE, as in the paper) or "lsgan"
    norm: str = "instance"
    unet_depth: int | None = None  # None: from image_size (networks.unet_depth_for)
    use_dropout: bool = True
    n_layers_d: int = 3
    in_channels: int = 3
    out_channels: int = 3
    device: str = "cpu"
    amp: bool = True  # only takes effect on CUDA
    amp_dtype: str = "float16"  # or "bfloat16"
    seed: int = 0  # weight initialisation

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        _check_choice("gan_mode", self.gan_mode, losses.GAN_MODES)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("amp_dtype", self.amp_dtype, tuple(AMP_DTYPES))
        for name in ("image_size", "ngf", "ndf", "n_layers_d"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.lambda_l1 < 0 or self.lambda_luminance < 0:
            raise ValueError("lr must be > 0 and the lambdas >= 0")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


class Pix2Pix:
    """One translation direction. `train_step` takes batches (B, C, H, W) in [-1, 1] on any device.

    The contract it shares with CycleGAN: `paired` (whether it trains on aligned pairs), `directions` (what
    `translate(x, direction)` accepts), `validate(a, b) -> dict` with a "score" (lower is better)."""

    paired = True
    directions = ("a2b",)

    def __init__(self, settings: Pix2PixSettings | None = None, wrap: Wrap | None = None) -> None:
        """`wrap` (models.parallel.data_parallel) makes the trainable nets data-parallel across processes; without
        it they are used as they are."""
        s = self.settings = settings or Pix2PixSettings()
        self.device = torch.device(s.device)
        self.G = build_unet(
            s.image_size, s.in_channels, s.out_channels, s.ngf, s.unet_depth, s.norm, s.use_dropout, s.seed
        ).to(self.device)
        # Conditional discriminator: it sees the input next to the (real or generated) output.
        self.D = build_discriminator(s.in_channels + s.out_channels, s.ndf, s.n_layers_d, s.norm, s.seed + 1)
        self.D.to(self.device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=s.lr, betas=s.betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=s.lr, betas=s.betas)
        self.precision = Precision(self.device, s.amp, s.amp_dtype)
        # The nets as the training step calls them: DDP wrappers across processes, the nets themselves otherwise.
        # The generator step calls the bare discriminator (frozen there; see models.parallel).
        wrap = wrap or (lambda net: net)
        self.G_train, self.D_train = wrap(self.G), wrap(self.D)
        self.step = 0

    def train_step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """One discriminator update then one generator update; returns every loss term and the brightness
        gap."""
        s, prec, scaler = self.settings, self.precision, self.precision.scaler
        a, b = a.to(self.device, non_blocking=True), b.to(self.device, non_blocking=True)
        self.G.train()
        self.D.train()
        with prec.autocast():
            fake = self.G_train(a)

        set_requires_grad(self.D, True)
        self.opt_D.zero_grad(set_to_none=True)
        with prec.autocast():
            d_fake = losses.gan_loss(self.D_train(torch.cat([a, fake.detach()], 1)), False, s.gan_mode)
            d_real = losses.gan_loss(self.D_train(torch.cat([a, b], 1)), True, s.gan_mode)
            d_total = 0.5 * (d_fake + d_real)
        scaler.scale(d_total).backward()
        scaler.step(self.opt_D)

        set_requires_grad(self.D, False)
        self.opt_G.zero_grad(set_to_none=True)
        with prec.autocast():
            g_gan = losses.gan_loss(self.D(torch.cat([a, fake], 1)), True, s.gan_mode)
        g_l1 = losses.l1_loss(fake, b)
        g_lum = losses.luminance_loss(fake, b) if s.lambda_luminance > 0 else g_l1.new_zeros(())
        g_total = g_gan + s.lambda_l1 * g_l1 + s.lambda_luminance * g_lum
        scaler.scale(g_total).backward()
        scaler.step(self.opt_G)
        scaler.update()
        sync_buffers([self.G, self.D])
        self.step += 1

        with torch.no_grad():
            bright_fake = losses.brightness(fake.detach()).mean()
            bright_real = losses.brightness(b).mean()
        names = ("G_gan", "G_l1", "G_luminance", "G_total", "D_real", "D_fake", "D_total")
        values = torch.stack([g_gan, g_l1, g_lum, g_total, d_real, d_fake, d_total, bright_fake, bright_real])
        out = dict(
            zip(names + ("brightness_fake", "brightness_real"), values.detach().float().tolist(), strict=True)
        )
        out["brightness_gap"] = out["brightness_fake"] - out["brightness_real"]
        return out

    @torch.no_grad()
    def translate(self, a: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """G(a) in eval mode (no dropout), float32 in [-1, 1], on the model's device; one direction, "a2b"."""
        if direction not in self.directions:
            raise ValueError(f"a pix2pix model translates one way ({self.directions}), got {direction!r}")
        was_training = self.G.training
        self.G.eval()
        try:
            with self.precision.autocast():
                return self.G(a.to(self.device)).float()
        finally:
            self.G.train(was_training)

    def validate(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """On held-out pairs: mean L1 between translate(a) and b ("score", lower is better: the score to keep the
        best checkpoint by), PSNR, SSIM and the brightness gap (models.quality)."""
        fake, target = self.translate(a), b.to(self.device)
        l1 = losses.l1_loss(fake, target).item()
        return {"score": l1, "l1": l1, **image_quality(fake, target)}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: settings, step, both nets, both optimizers, the AMP scaler."""
        return {
            "kind": "pix2pix",
            "version": STATE_VERSION,
            "settings": dataclasses.asdict(self.settings),
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "scaler": self.precision.scaler_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the architecture must match, device and AMP may differ."""
        check_architecture("pix2pix", dataclasses.asdict(self.settings), state, _ARCHITECTURE)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.precision.load_scaler_state(state["scaler"])
        self.step = int(state["step"])
