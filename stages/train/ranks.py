"""The trainer stage's own data-parallel group (`train.gpus = N`): the stage process is process 0 and starts the
other N - 1 here, on this machine, with the environment torchrun would give them (loopback rendezvous on a free
port).

The others only follow process 0's plans (stages/train.RankLoop): they read no events, write no files and export no
metrics (the multiprocess metrics folder is taken out of their environment before anything is imported). Each dies
with the stage process (PR_SET_PDEATHSIG), so none outlives a killed trainer; a dead one makes process 0 raise, and
the supervisor restarts the whole group from the last checkpoint.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys

from humanstyle.stages.process.parent import die_with_parent
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.train.distributed import Group, init_group

log = logging.getLogger("humanstyle.train")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(rank: int, world: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def start_local_group(settings: PipelineSettings) -> tuple[list[mp.Process], Group]:
    """Start processes 1..N-1 and join the group as process 0."""
    world, port = settings.train.gpus, _free_port()
    ctx = mp.get_context("spawn")
    followers = []
    for rank in range(1, world):
        proc = ctx.Process(target=follower_main, args=(settings, rank, world, port, os.getpid()),
                           name=f"humanstyle-train-rank{rank}", daemon=False)
        proc.start()
        followers.append(proc)
    os.environ.update(_environment(0, world, port))
    try:
        group = init_group(settings.train.device, settings.train.ddp_timeout_s)
    except BaseException:
        stop_followers(followers)
        raise
    return followers, group


def stop_followers(followers: list[mp.Process], timeout_s: float = 5.0) -> None:
    for proc in followers:
        proc.join(timeout_s)
        if proc.is_alive():
            log.warning("training process %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.join(5)


def follower_main(settings: PipelineSettings, rank: int, world: int, port: int, parent_pid: int) -> None:
    """Process `rank` of the stage's group: follow process 0's plans until it says stop."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # metrics are process 0's alone
    os.environ.update(_environment(rank, world, port))
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: process 0 decides
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format=f"%(asctime)s %(levelname)-7s [train-rank{rank}] %(name)s: %(message)s")
    import torch

    t = settings.train
    group = init_group(t.device, t.ddp_timeout_s)
    if group.device == "cpu":
        torch.set_num_threads(t.threads)
        os.nice(t.nice)
    try:
        _follow(settings, group)  # its trainer, and with it every net holding the group, is gone on return
    finally:
        group.close()


def _follow(settings: PipelineSettings, group: Group) -> None:
    from humanstyle.stages.train.rank_loop import RankLoop
    from humanstyle.stages.train.trainer import Trainer

    trainer = Trainer(settings, group.device, group=group)
    trainer.resume()
    loop = RankLoop(trainer, settings)
    try:
        loop.follow()
    finally:
        loop.close()
