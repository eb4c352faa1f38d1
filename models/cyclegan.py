"""CycleGAN: two ResNet generators (G_AB: a -> b, G_BA: b -> a) and two PatchGANs (D_A judges domain A, D_B
judges domain B), trained with LSGAN, cycle and identity terms; the discriminators see a history of fakes.

As in pix2pix.py the learning rate is constant (no scheduler). Brightness: CycleGAN's losses never tie the
mean luminance of an output to anything, and on dark footage outputs drift dark; `brightness_gap_*` in the
step's dict shows it and `lambda_luminance` (off by default) pulls each generator's mean luminance towards
that of the real images of its output domain.
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
    build_resnet_generator,
    set_requires_grad,
)
from humanstyle.models.parallel import Wrap, sync_buffers

DIRECTIONS = ("a2b", "b2a")
_ARCHITECTURE = ("ngf", "ndf", "n_blocks", "n_layers_d", "norm", "channels", "pool_size")


@dataclass
class CycleGANSettings:
    image_size: int = 256  # any size works (the generators pad to a multiple of 4); kept for the record
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9  # 9 for 256x256 in the paper, 6 for 128x128
    n_layers_d: int = 3
    norm: str = "instance"
    channels: int = 3
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # relative to lambda_cycle, as in the paper's code
    lambda_luminance: float = 0.0
    gan_mode: str = "lsgan"
    pool_size: int = 50
    device: str = "cpu"
    amp: bool = True  # only takes effect on CUDA
    amp_dtype: str = "float16"
    seed: int = 0  # weight initialisation and the image pools' draws

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        for name, allowed in (
            ("gan_mode", losses.GAN_MODES),
            ("norm", NORMS),
            ("amp_dtype", tuple(AMP_DTYPES)),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if min(self.image_size, self.ngf, self.ndf, self.n_layers_d, self.channels) < 1 or self.n_blocks < 0:
            raise ValueError("sizes and widths must be >= 1 and n_blocks >= 0")
        if self.pool_size < 0 or self.lr <= 0:
            raise ValueError("pool_size must be >= 0 and lr > 0")
        if min(self.lambda_cycle, self.lambda_identity, self.lambda_luminance) < 0:
            raise ValueError("the lambdas must be >= 0")


class ImagePool:
    """History of generated images (Shrivastava et al.): once full, each query returns, with probability 1/2,
    a stored image in place of the new one (which takes its slot). Draws come from the pool's own generator,
    so a resumed pool makes the same choices."""

    def __init__(self, pool_size: int = 50, seed: int = 0) -> None:
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            image = image.float().unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                idx = int(torch.randint(len(self.images), (), generator=self.generator).item())
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "images": list(self.images),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.pool_size = int(state["pool_size"])
        self.images = [image.to(device) for image in state["images"]]
        self.generator.set_state(state["generator"].cpu())


class CycleGAN:
    """Unpaired translation both ways. `train_step` takes (B, C, H, W) batches in [-1, 1], a of A, b of B. Shares
    Pix2Pix's contract (`paired`, `directions`, `translate(x, direction)`, `validate(a, b) -> dict`)."""

    paired = False
    directions = DIRECTIONS

    def __init__(self, settings: CycleGANSettings | None = None, wrap: Wrap | None = None) -> None:
        """`wrap` (models.parallel.data_parallel) makes the trainable nets data-parallel across processes."""
        s = self.settings = settings or CycleGANSettings()
        self.device = torch.device(s.device)
        ch = s.channels
        self.G_AB = build_resnet_generator(ch, ch, s.ngf, s.n_blocks, s.norm, seed=s.seed).to(self.device)
        self.G_BA = build_resnet_generator(ch, ch, s.ngf, s.n_blocks, s.norm, seed=s.seed + 1).to(self.device)
        self.D_A = build_discriminator(ch, s.ndf, s.n_layers_d, s.norm, seed=s.seed + 2).to(self.device)
        self.D_B = build_discriminator(ch, s.ndf, s.n_layers_d, s.norm, seed=s.seed + 3).to(self.device)
        g_params = list(self.G_AB.parameters()) + list(self.G_BA.parameters())
        d_params = list(self.D_A.parameters()) + list(self.D_B.parameters())
        self.opt_G = torch.optim.Adam(g_params, lr=s.lr, betas=s.betas)
        self.opt_D = torch.optim.Adam(d_params, lr=s.lr, betas=s.betas)
        self.pool_A = ImagePool(s.pool_size, seed=s.seed)  # fakes of domain A, for D_A
        self.pool_B = ImagePool(s.pool_size, seed=s.seed + 1)
        self.precision = Precision(self.device, s.amp, s.amp_dtype)
        # As the training step calls them (see Pix2Pix): the generator step calls the bare, frozen discriminators.
        wrap = wrap or (lambda net: net)
        self.G_AB_train, self.G_BA_train = wrap(self.G_AB), wrap(self.G_BA)
        self.D_A_train, self.D_B_train = wrap(self.D_A), wrap(self.D_B)
        self.step = 0

    def _nets(self) -> list[torch.nn.Module]:
        return [self.G_AB, self.G_BA, self.D_A, self.D_B]

    def train_step(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """One generator update (both directions) then one discriminator update; returns every term."""
        s, prec, scaler = self.settings, self.precision, self.precision.scaler
        a, b = a.to(self.device, non_blocking=True), b.to(self.device, non_blocking=True)
        for net in self._nets():
            net.train()
        lam_idt = s.lambda_cycle * s.lambda_identity
        zero = a.new_zeros((), dtype=torch.float32)

        set_requires_grad([self.D_A, self.D_B], False)
        self.opt_G.zero_grad(set_to_none=True)
        with prec.autocast():
            g_ab, g_ba = self.G_AB_train, self.G_BA_train
            fake_b, fake_a = g_ab(a), g_ba(b)
            rec_a, rec_b = g_ba(fake_b), g_ab(fake_a)
            gan_ab = losses.gan_loss(self.D_B(fake_b), True, s.gan_mode)
            gan_ba = losses.gan_loss(self.D_A(fake_a), True, s.gan_mode)
            idt_a = losses.identity_loss(g_ba(a), a) if lam_idt > 0 else zero
            idt_b = losses.identity_loss(g_ab(b), b) if lam_idt > 0 else zero
        cyc_a, cyc_b = losses.cycle_loss(rec_a, a), losses.cycle_loss(rec_b, b)
        lum = zero
        if s.lambda_luminance > 0:
            lum = losses.luminance_loss(fake_b, b) + losses.luminance_loss(fake_a, a)
        g_total = (
            gan_ab
            + gan_ba
            + s.lambda_cycle * (cyc_a + cyc_b)
            + lam_idt * (idt_a + idt_b)
            + s.lambda_luminance * lum
        )
        scaler.scale(g_total).backward()
        scaler.step(self.opt_G)

        set_requires_grad([self.D_A, self.D_B], True)
        self.opt_D.zero_grad(set_to_none=True)
        pooled_b, pooled_a = self.pool_B.query(fake_b), self.pool_A.query(fake_a)
        with prec.autocast():
            d_b = 0.5 * (
                losses.gan_loss(self.D_B_train(b), True, s.gan_mode)
                + losses.gan_loss(self.D_B_train(pooled_b), False, s.gan_mode)
            )
            d_a = 0.5 * (
                losses.gan_loss(self.D_A_train(a), True, s.gan_mode)
                + losses.gan_loss(self.D_A_train(pooled_a), False, s.gan_mode)
            )
        scaler.scale(d_a + d_b).backward()
        scaler.step(self.opt_D)
        scaler.update()
        sync_buffers(self._nets())
        self.step += 1

        with torch.no_grad():
            bright = [losses.brightness(x.detach()).mean() for x in (fake_b, b, fake_a, a)]
        names = ("G_gan_a2b", "G_gan_b2a", "cycle_a", "cycle_b", "identity_a", "identity_b", "G_luminance")
        names += ("G_total", "D_A", "D_B", "brightness_fake_b", "brightness_real_b")
        names += ("brightness_fake_a", "brightness_real_a")
        values = torch.stack([gan_ab, gan_ba, cyc_a, cyc_b, idt_a, idt_b, lum, g_total, d_a, d_b, *bright])
        out = dict(zip(names, values.detach().float().tolist(), strict=True))
        out.update(_gaps(out))
        return out

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        """G_AB(x) for "a2b", G_BA(x) for "b2a"; eval mode, float32 in [-1, 1] on the model's device."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        net = self.G_AB if direction == "a2b" else self.G_BA
        was_training = net.training
        net.eval()
        try:
            with self.precision.autocast():
                return net(x.to(self.device)).float()
        finally:
            net.train(was_training)

    def validate(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """Cycle L1 both ways and brightness gaps on held-out images; "score" (lower is better) is the cycle
        mean.

        Unpaired data has no target to compare against, so cycle consistency is the only reference-free
        score; read it together with the sample grids, since an identity mapping would also score well.
        """
        a, b = a.to(self.device), b.to(self.device)
        fake_b, fake_a = self.translate(a, "a2b"), self.translate(b, "b2a")
        cyc_a = losses.cycle_loss(self.translate(fake_b, "b2a"), a).item()
        cyc_b = losses.cycle_loss(self.translate(fake_a, "a2b"), b).item()
        out = {"cycle_a": cyc_a, "cycle_b": cyc_b, "score": 0.5 * (cyc_a + cyc_b)}
        for key, x in (("fake_b", fake_b), ("real_b", b), ("fake_a", fake_a), ("real_a", a)):
            out[f"brightness_{key}"] = losses.brightness(x).mean().item()
        out.update(_gaps(out))
        return out

    def state_dict(self) -> dict[str, Any]:
        """Settings, step, four nets, both optimizers, the AMP scaler and both image pools (with RNG)."""
        state: dict[str, Any] = {
            "kind": "cyclegan",
            "version": STATE_VERSION,
            "settings": dataclasses.asdict(self.settings),
            "step": self.step,
        }
        for name in ("G_AB", "G_BA", "D_A", "D_B", "opt_G", "opt_D", "pool_A", "pool_B"):
            state[name] = getattr(self, name).state_dict()
        state["scaler"] = self.precision.scaler_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the architecture must match, device and AMP may differ."""
        check_architecture("cyclegan", dataclasses.asdict(self.settings), state, _ARCHITECTURE)
        for name in ("G_AB", "G_BA", "D_A", "D_B", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        self.pool_A.load_state_dict(state["pool_A"], self.device)
        self.pool_B.load_state_dict(state["pool_B"], self.device)
        self.precision.load_scaler_state(state["scaler"])
        self.step = int(state["step"])


def _gaps(d: dict[str, float]) -> dict[str, float]:
    """Signed brightness gap per direction; "brightness_gap" is the one of larger magnitude (the worse)."""
    gap_ab = d["brightness_fake_b"] - d["brightness_real_b"]
    gap_ba = d["brightness_fake_a"] - d["brightness_real_a"]
    return {
        "brightness_gap_a2b": gap_ab,
        "brightness_gap_b2a": gap_ba,
        "brightness_gap": gap_ab if abs(gap_ab) >= abs(gap_ba) else gap_ba,
    }
