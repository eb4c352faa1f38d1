"""Every GAN building block: U-Net and ResNet generators, PatchGAN discriminator, initialisation.

Sizes. Both generators accept any H x W. A U-Net halves the image `depth` times, so it reflect-pads the input
to a multiple of 2**depth and crops the output back; `unet_depth_for(size)` picks the depth from the image
size (8 at 256 as in pix2pix, 6 at 64, 7 at 200 where 200 is padded to 256). The ResNet generator halves
twice, so it pads to a multiple of 4 (200 and 256 need none). The discriminator is fully convolutional and
needs no padding; its patch map grows with the image (6x6 at 64, 23x23 at 200, 30x30 at 256 for n_layers=3).

Norm. "instance" (default) keeps no running statistics, so a network behaves the same in train() and eval(),
the outputs of `translate` match what training saw at any batch size, and a checkpoint carries no norm
buffers. "batch" is the pix2pix paper's choice and works with the larger pix2pix batches; "none" is for
experiments.

Construction never touches the global RNG: layers are built under `fork_rng` and initialised from a generator
seeded with `seed`, so the same arguments give the same weights and building a model mid-run does not change
the random stream of training that follows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "batch", "none")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """A constructor `channels -> norm module` for "instance", "batch" or "none"."""
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "none":
        return lambda _channels: nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def init_weights(net: nn.Module, std: float = 0.02, seed: int = 0) -> nn.Module:
    """pix2pix/CycleGAN init: conv weights ~ N(0, std), norm scales ~ N(1, std), biases 0."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d) and module.affine:
            with torch.no_grad():
                module.weight.copy_(1.0 + torch.randn(module.weight.shape, generator=gen) * std)
                module.bias.zero_()
    return net


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    # Reflection needs the pad to be smaller than the side; tiny inputs fall back to replication.
    mode = "reflect" if max(pad[:2]) < w and max(pad[2:]) < h else "replicate"
    return F.pad(x, pad, mode=mode), pad


def _crop(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def unet_depth_for(image_size: int, max_depth: int = 8) -> int:
    """Number of down-samplings for a U-Net on `image_size` images: down to ~1 pixel, at most `max_depth`."""
    if image_size < 4:
        raise ValueError(f"image_size must be >= 4, got {image_size}")
    return max(2, min(max_depth, math.floor(math.log2(image_size))))


class _UNetLevel(nn.Module):
    """One level of the U-Net: down-sample, the inner levels, up-sample, concatenate the skip."""

    def __init__(
        self,
        outer: int,
        inner: int,
        sub: nn.Module | None,
        norm: Callable[[int], nn.Module],
        use_bias: bool,
        outermost: bool = False,
        in_channels: int | None = None,
        out_channels: int | None = None,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        in_ch = in_channels if in_channels is not None else outer
        down = nn.Conv2d(in_ch, inner, 4, stride=2, padding=1, bias=use_bias)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, out_channels or outer, 4, stride=2, padding=1)
            layers: list[nn.Module] = [down, sub, nn.ReLU(True), up, nn.Tanh()]
        elif sub is None:  # innermost: the 1x1 bottleneck is not normalised (instance norm of 1 pixel is 0)
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, norm(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=use_bias)
            layers = [nn.LeakyReLU(0.2, True), down, norm(inner), sub, nn.ReLU(True), up, norm(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UNetGenerator(nn.Module):
    """pix2pix U-Net: `depth` stride-2 levels with skip connections; widths ngf, 2ngf, 4ngf, then 8ngf.

    Dropout (pix2pix's noise source) sits on the up-path of the three levels just outside the bottleneck; it
    is off in eval(), so `translate` is deterministic.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        depth: int = 8,
        norm: str = "instance",
        use_dropout: bool = True,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        self.depth = depth
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        widths = [ngf * min(2**i, 8) for i in range(depth)]  # channels after each down-sampling
        block: nn.Module | None = None
        for i in range(depth - 1, 0, -1):
            block = _UNetLevel(
                widths[i - 1],
                widths[i],
                block,
                make_norm,
                use_bias,
                dropout=use_dropout and block is not None and i >= depth - 4,
            )
        self.model = _UNetLevel(
            ngf,
            widths[0],
            block,
            make_norm,
            use_bias,
            outermost=True,
            in_channels=in_channels,
            out_channels=out_channels,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = _pad_to_multiple(x, 2**self.depth)
        return _crop(self.model(x), pad)


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with a residual connection."""

    def __init__(self, dim: int, norm: Callable[[int], nn.Module], use_bias: bool, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim)]
        layers.append(nn.ReLU(True))
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN generator: c7s1-ngf, two stride-2 downs, `n_blocks` residual blocks, two ups, c7s1-out, tanh.

    The paper uses 9 blocks at 256x256 and 6 at 128x128; any n_blocks >= 0 is accepted.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=use_bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            ch = ngf * 2**i
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=use_bias), make_norm(ch * 2)]
            layers.append(nn.ReLU(True))
        layers += [ResnetBlock(ngf * 4, make_norm, use_bias, use_dropout) for _ in range(n_blocks)]
        for i in range(2, 0, -1):
            ch = ngf * 2**i
            layers.append(
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias)
            )
            layers += [make_norm(ch // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = _pad_to_multiple(x, 4)
        return _crop(self.model(x), pad)


class PatchDiscriminator(nn.Module):
    """PatchGAN: `n_layers` stride-2 4x4 convolutions then two stride-1 ones; n_layers=3 is the 70x70 variant.

    Returns raw logits (B, 1, h, w), one per overlapping patch; the loss decides how to read them.
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=use_bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _build(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        net = factory()
    return init_weights(net, seed=seed)


def build_unet(
    image_size: int,
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    depth: int | None = None,
    norm: str = "instance",
    use_dropout: bool = True,
    seed: int = 0,
) -> UNetGenerator:
    """An initialised U-Net for `image_size` images (depth from the size unless given)."""
    depth = depth if depth is not None else unet_depth_for(image_size)
    factory = functools.partial(UNetGenerator, in_channels, out_channels, ngf, depth, norm, use_dropout)
    return _build(factory, seed)


def build_resnet_generator(
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    n_blocks: int = 9,
    norm: str = "instance",
    use_dropout: bool = False,
    seed: int = 0,
) -> ResnetGenerator:
    """An initialised CycleGAN ResNet generator."""
    factory = functools.partial(ResnetGenerator, in_channels, out_channels, ngf, n_blocks, norm, use_dropout)
    return _build(factory, seed)


def build_discriminator(
    in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance", seed: int = 0
) -> PatchDiscriminator:
    """An initialised PatchGAN discriminator."""
    return _build(functools.partial(PatchDiscriminator, in_channels, ndf, n_layers, norm), seed)


# --- helpers shared by the training classes ---

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def set_requires_grad(nets: nn.Module | list[nn.Module], flag: bool) -> None:
    """Switch gradients of whole networks on or off (the discriminators are frozen during the generator
    step)."""
    for net in nets if isinstance(nets, list) else [nets]:
        for p in net.parameters():
            p.requires_grad_(flag)


class Precision:
    """Mixed precision on CUDA (autocast, plus a GradScaler for float16); plain float32 everywhere else.

    When disabled, `scaler.scale` returns the loss unchanged and `scaler.step` just calls `optimizer.step()`,
    so the training code has one path for every device.
    """

    def __init__(self, device: torch.device, amp: bool, dtype: str = "float16") -> None:
        if dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {tuple(AMP_DTYPES)}, got {dtype!r}")
        self.device = device
        self.enabled = amp and device.type == "cuda"
        self.dtype = AMP_DTYPES[dtype]
        # bfloat16 has float32's exponent range, so it needs no loss scaling.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.enabled)

    def scaler_state(self) -> dict:
        return self.scaler.state_dict()

    def load_scaler_state(self, state: dict) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
