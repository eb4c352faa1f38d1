"""The trainer stage: the Handler the daemon's train process runs around the Trainer (stages/train/trainer.py).

Pair events in (each asks for a refresh of the datasets); each tick trains one step of every model that has enough
data; with `train.gpus` > 1 it leads a data-parallel group (stages/train/rank_loop.py, ranks.py). The trainer's
data, determinism and files are described in trainer.py.
"""

from __future__ import annotations

import logging
import math
import os
import time

import torch

from humanstyle.stages.handler import Handler, Outbox, Route
from humanstyle.stages.records import PairsAppended
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.train.distributed import Plan
from humanstyle.stages.train.lock import TrainerLock
from humanstyle.stages.train.rank_loop import RankLoop
from humanstyle.stages.train.trainer import Trainer, training_device

log = logging.getLogger("humanstyle.train")


class TrainHandler(Handler):
    """Pair events in (each refreshes the datasets); each tick trains one step of every model that has enough data,
    refreshes on the timer too, and checkpoints every train.checkpoint_every steps and on close.

    With `train.gpus` > 1 this process is process 0 of a data-parallel group: it starts the others on this machine
    (stages/train/ranks.py) and turns each tick into a plan they all follow; events then ask for a reload in the
    next plan instead of reloading at once.

    Nothing is built while another trainer holds the data folder's trainer lock (stages/train/lock.py): ticks
    retry it, and training then starts from that trainer's checkpoint."""

    passes = ()
    LOCK_RETRY_S = 5.0

    def __init__(self, settings: PipelineSettings) -> None:
        self.train = settings.train
        self.settings = settings
        self.followers: list = []
        self.trainer: Trainer | None = None  # built once this process holds the trainer lock
        self.lock = TrainerLock(settings.paths.data_dir / "train", "the daemon's trainer")
        self.lock_tried = -math.inf
        self.routes = {PairsAppended: Route(lambda events, out: self.on_pairs(), batch=64)}
        if not self.take_lock():
            log.warning("train: waiting: another trainer is training on this data folder (%s); training starts "
                        "from its checkpoint when it stops", self.lock.holder() or self.lock.path)

    def take_lock(self) -> bool:
        """Start training if the trainer lock is free (tried at most every LOCK_RETRY_S)."""
        if self.trainer is not None:
            return True
        if time.monotonic() - self.lock_tried < self.LOCK_RETRY_S:
            return False
        waited = self.lock_tried != -math.inf
        self.lock_tried = time.monotonic()
        if not self.lock.acquire():
            return False
        try:
            self.start_training()
        except BaseException:
            self.lock.release()
            raise
        if waited:
            log.info("train: the other trainer stopped; training from its checkpoint")
        return True

    def start_training(self) -> None:
        settings, t = self.settings, self.train
        group = None
        if t.gpus > 1:
            from humanstyle.stages.train.ranks import start_local_group

            self.followers, group = start_local_group(settings)
        device = group.device if group is not None else training_device(t.device)
        if device == "cpu":
            torch.set_num_threads(t.threads)
            os.nice(t.nice)  # ingestion has priority on a shared CPU
        self.trainer = Trainer(settings, device, group=group)
        self.trainer.resume()
        self.loop = RankLoop(self.trainer, settings)
        self.reload_wanted = False
        # -inf, not 0: time.monotonic() may be smaller than refresh_every_s on a freshly booted machine, which made
        # the first refresh wait for an event or the timer.
        self.last_refresh = -math.inf
        self.last_save = self.steps()

    @property
    def parallel(self) -> bool:
        return self.trainer.group.parallel

    def steps(self) -> dict[str, int]:
        return {n: self.trainer.model(n).step for n in self.trainer.names}

    def on_pairs(self) -> None:
        if self.trainer is None:
            return  # not training yet: the first refresh reads everything
        if self.parallel:
            self.reload_wanted = True
        else:
            self.refresh()

    def refresh(self) -> None:
        try:
            catalog = self.loop.open()  # the loop's connection, closed with it
            if catalog is not None:
                self.trainer.refresh(catalog)
                self.last_refresh = time.monotonic()
        except self.loop.errors as exc:  # a catalog server restarting: train on what there is, read again later
            log.warning("train: cannot read the catalog (%s); keeping the current data", str(exc).strip())

    def wait_ms(self) -> int:
        """With a model ready to step, only glance at the event socket; without, sleep on it."""
        return 0 if self.trainer is not None and self.trainer.ready() else 1000

    def tick(self, out: Outbox) -> int:
        if not self.take_lock():
            return 0
        if self.parallel:
            return self.tick_parallel(out)
        if time.monotonic() - self.last_refresh > self.train.refresh_every_s:
            self.refresh()
            return 0
        ready = self.trainer.ready()
        for name in ready:
            if out.stopping:
                break
            started = time.monotonic()
            self.trainer.train_step(name)
            out.unit_done(started)
        self.maybe_save()
        return 0  # each step was a unit of its own (Trainer.train_step)

    def tick_parallel(self, out: Outbox) -> int:
        self.check_followers()
        reload = self.reload_wanted or time.monotonic() - self.last_refresh > self.train.refresh_every_s
        if reload:
            self.reload_wanted = False
            self.last_refresh = time.monotonic()
        started = time.monotonic()
        for _ in self.loop.turn(reload):
            out.unit_done(started)
        self.maybe_save()
        return 0

    def maybe_save(self) -> None:
        steps = self.steps()
        if any(steps[n] - self.last_save[n] >= self.train.checkpoint_every for n in self.trainer.names):
            self.trainer.save()
            self.last_save = steps

    def check_followers(self) -> None:
        dead = [p for p in self.followers if not p.is_alive()]
        if dead:
            raise RuntimeError(f"training process(es) {', '.join(str(p.pid) for p in dead)} died; restarting the "
                               "trainer group from its last checkpoint")

    def close(self) -> None:
        if self.trainer is None:
            return
        try:
            if self.parallel and all(p.is_alive() for p in self.followers):
                self.trainer.group.broadcast_plan(Plan(stop=True))
            self.trainer.save()
        finally:
            self.trainer.close()
            self.loop.close()
            if self.followers:
                from humanstyle.stages.train.ranks import stop_followers

                stop_followers(self.followers)
            group = self.trainer.group
            self.trainer = self.loop = None  # their data-parallel nets hold the group, which close frees
            group.close()
            self.lock.release()
