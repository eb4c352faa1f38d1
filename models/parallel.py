"""Data-parallel training of the GAN nets across processes (torch.distributed), as plain functions of nets.

`data_parallel()` gives the model classes a `wrap` for each trainable net: DistributedDataParallel when a process
group is running with more than one process, the net itself otherwise (so a single process trains exactly as
before). Gradients are averaged across processes during `backward()`, so every process applies the same update to
the same weights.

Three traps of GAN training under DDP, and what is done about them:

- A discriminator is called several times per step (real, fake, then again for the generator's loss). The
  discriminator's call inside the generator step goes to the bare net: its weights are frozen there, and a DDP
  wrapper whose parameters get no gradient would wait forever for their reduction.
- Buffers (BatchNorm running statistics) are not broadcast on every forward: a
  broadcast in the middle of a step would overwrite what the earlier calls of the same step accumulated, and the
  bare-net call of the generator step never broadcasts anyway. Instead `sync_buffers()` averages every floating
  buffer across processes once per step, so they are identical everywhere afterwards. (The default instance norm
  has no buffers.)
- The initial weights are broadcast from process 0 when the wrapper is built, so processes that were seeded or
  resumed differently still start identical.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

Wrap = Callable[[nn.Module], nn.Module]


def distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def data_parallel(device: torch.device | str) -> Wrap:
    """How to wrap a trainable net: DDP across the process group when there is one, else the net itself."""
    if not distributed():
        return lambda net: net
    device = torch.device(device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
        else None

    # Newer torch names the per-forward buffer broadcast `forward_sync_buffers` (the weights and buffers are still
    # broadcast once at construction either way).
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    no_forward_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params \
        else {"broadcast_buffers": False}

    def wrap(net: nn.Module) -> nn.Module:
        return nn.parallel.DistributedDataParallel(net, device_ids=ids, **no_forward_sync)

    return wrap


def sync_buffers(nets: Iterable[nn.Module]) -> None:
    """Average every floating-point buffer (running statistics) across the process group; integer buffers (batch
    counters) are equal everywhere already. A no-op for a single process or nets without buffers."""
    if not distributed():
        return
    buffers = [b for net in nets for b in net.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    with torch.no_grad():
        for b in buffers:
            n = b.numel()
            b.copy_(flat[offset:offset + n].view_as(b).to(b.dtype))
            offset += n
