"""Training processes that work as one (torch.distributed): the process group, and the plan every process follows.

Processes come from torch's launcher (`torchrun --nproc_per_node=N -m humanstyle.daemon.cli train`, one or several
machines) or from the trainer stage itself (`train.gpus = N`: it starts N - 1 more processes on this machine, see
stages/train/ranks.py). NCCL joins processes that each own a GPU, gloo processes on CPUs.

Process 0 decides, every process does. Each turn process 0 broadcasts a `Plan`: whether to stop, whether to reload
the data and up to which catalog watermark, and which models take a step. Every process then does exactly that, so
no process ever enters a collective (a gradient reduction, a broadcast) that another skipped: the way ranks of a
trainer whose data grows while it runs end up waiting for each other forever. A plan is a tensor of integers,
never a pickled object.

`agree(digest)` checks that every process built the same dataset from the same watermark; when one could not read
it (a restarting catalog server) every process keeps the data it had.

Leaving the group frees it for real (`Group.close`): a gloo worker thread takes the GIL to drop the tensors of each
collective it finished, and when that happens while the interpreter is shutting down, Python ends the thread inside
a C++ destructor and the process aborts (SIGABRT, "terminate called without an active exception"), after a run
that otherwise succeeded. Freeing the group joins those threads first; it needs every DistributedDataParallel net
(each holds the group) dropped before `close`, and torch.distributed.nn imported before the group exists (its
functions take the default group as a default argument, which would hold it for the life of the process).
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import weakref
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401  imported before any group exists: see the docstring above

from humanstyle.stages.settings import StageFatal

log = logging.getLogger("humanstyle.train")


@dataclass(frozen=True)
class Plan:
    stop: bool = False
    watermark: tuple[int, int, int] | None = None  # reload the data up to (pair id, patch id, verdict change)
    models: tuple[int, ...] = ()  # indexes into Trainer.names: the models that take one step

    SIZE = 6

    def encode(self) -> torch.Tensor:
        mask = sum(1 << i for i in self.models)
        mark = self.watermark if self.watermark is not None else (-1, -1, -1)
        return torch.tensor([int(self.stop), int(self.watermark is not None), *mark, mask], dtype=torch.int64)

    @classmethod
    def decode(cls, t: torch.Tensor) -> Plan:
        stop, has_watermark, wp, wq, wv, mask = (int(x) for x in t.tolist())
        return cls(bool(stop), (wp, wq, wv) if has_watermark else None,
                   tuple(i for i in range(63) if mask >> i & 1))


@dataclass
class Group:
    """This process's place among the training processes; a single process (world 1) has no process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def _tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device) if self.backend == "nccl" else t

    def broadcast_plan(self, plan: Plan | None) -> Plan:
        """Process 0 passes its plan; every process gets it back."""
        if not self.parallel:
            assert plan is not None
            return plan
        t = self._tensor(plan.encode() if self.is_main else torch.zeros(Plan.SIZE, dtype=torch.int64))
        dist.broadcast(t, src=0)
        return Plan.decode(t.cpu())

    def agree(self, digest: int) -> bool:
        """True when every process passes the same non-zero digest (0 = "I could not")."""
        if not self.parallel:
            return digest != 0
        mine = self._tensor(torch.tensor([digest], dtype=torch.int64))
        everyone = [torch.zeros_like(mine) for _ in range(self.world)]
        dist.all_gather(everyone, mine)
        values = {int(t.item()) for t in everyone}
        return len(values) == 1 and 0 not in values

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def close(self) -> None:
        """Leave and free the process group (see the module's docstring); its holders must be dropped first."""
        if not (self.parallel and dist.is_initialized()):
            return
        gc.collect()  # dropped DDP wrappers may sit in reference cycles, still holding the group
        group = weakref.ref(dist.group.WORLD)
        dist.destroy_process_group()
        if group() is not None:
            log.warning("training process %d: the process group is still held after leaving it (a data-parallel "
                        "net not dropped?); its threads may abort this process at exit", self.rank)


def init_group(configured_device: str, timeout_s: float) -> Group:
    """Join the process group described by the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT); without one, a single process on the configured device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group(device=_single_device(configured_device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    cuda = configured_device != "cpu" and torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise StageFatal(f"training process {local_rank} on this machine has no GPU: "
                             f"{torch.cuda.device_count()} GPUs for more processes; lower train.gpus or "
                             "--nproc_per_node")
        torch.cuda.set_device(local_rank)
    device, backend = (f"cuda:{local_rank}", "nccl") if cuda else ("cpu", "gloo")
    kwargs = {"device_id": torch.device(device)} if cuda else {}
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    log.info("training process %d of %d (local %d) on %s, %s", rank, world, local_rank, device, backend)
    return Group(rank, world, local_rank, device, backend)


def _single_device(configured: str) -> str:
    if configured == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return configured
