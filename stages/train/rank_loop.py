"""The loop every process of a data-parallel group runs (stages/train/distributed.py): process 0 leads with plans,
the others follow them; a plan reloads the data up to a watermark, or steps some models."""

from __future__ import annotations

import logging

from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.catalog import Catalog, CatalogError, catalog_errors, catalog_exists, open_catalog
from humanstyle.stages.train.data import Watermark
from humanstyle.stages.train.distributed import Plan
from humanstyle.stages.train.trainer import Trainer

log = logging.getLogger("humanstyle.train")


class RankLoop:
    """What every training process does with a plan (stages/train/distributed.py): reload the data up to the plan's
    watermark, then step the plan's models. Process 0 makes the plans (`lead`), the others `follow`."""

    def __init__(self, trainer: Trainer, settings: PipelineSettings) -> None:
        self.trainer, self.settings, self.group = trainer, settings, trainer.group
        self.catalog: Catalog | None = None
        # A catalog server restarting or out of reach: train on what there is and read again later.
        self.errors = (CatalogError, *catalog_errors(settings))

    def open(self) -> Catalog | None:
        if self.catalog is None and catalog_exists(self.settings):
            self.catalog = open_catalog(self.settings, readonly=True, role=f"train-{self.group.rank}")
        return self.catalog

    def watermark(self) -> Watermark | None:
        """Process 0: how far the catalog goes now; None when it cannot be read (nothing to reload then)."""
        try:
            catalog = self.open()
            return catalog.watermark() if catalog is not None else None
        except self.errors as exc:
            log.warning("train: cannot read the catalog (%s); keeping the current data", str(exc).strip())
            return None

    def lead(self, plan: Plan) -> Plan:
        self.run(self.group.broadcast_plan(plan))
        return plan

    def turn(self, reload: bool) -> list[str]:
        """Process 0's turn, in the daemon's trainer and in `humanstyle train` alike: with `reload`, a plan that
        reloads the data up to the catalog's watermark (when the catalog answers); then a plan that steps every
        model with enough data, an empty one when none has (the others wait on every plan: it keeps them from
        timing out). Returns the models stepped."""
        if reload and (watermark := self.watermark()) is not None:
            self.lead(Plan(watermark=watermark))
        ready = self.trainer.ready()
        self.lead(Plan(models=tuple(self.trainer.names.index(n) for n in ready)))
        return ready

    def follow(self) -> None:
        while not (plan := self.group.broadcast_plan(None)).stop:
            self.run(plan)

    def run(self, plan: Plan) -> None:
        if plan.stop:
            return
        if plan.watermark is not None:
            self.reload(plan.watermark)
        for index in plan.models:
            self.trainer.train_step(self.trainer.names[index])

    def reload(self, watermark: Watermark) -> bool:
        """Every process reads what is new in the catalog up to `watermark`; it is applied only when every process
        read the same (else each keeps what it had, and a later plan tries again)."""
        delta, digest = None, 0
        if not self.trainer.storage.is_local and self.group.local_rank != 0:
            self.group.barrier()  # the first process on this machine fills the shared cache first
        try:
            catalog = self.open()
            if catalog is not None:
                delta = self.trainer.read_delta(catalog, watermark)
                digest = delta.digest
        except (*self.errors, OSError) as exc:
            log.warning("train process %d: cannot read the data up to %s (%s)", self.group.rank, watermark,
                        str(exc).strip())
        if not self.trainer.storage.is_local and self.group.local_rank == 0:
            self.group.barrier()
        if not self.group.agree(digest) or delta is None:
            log.warning("train process %d: the processes did not read the same data up to %s; keeping the current "
                        "data", self.group.rank, watermark)
            return False
        before = self.trainer.train_sizes()
        self.trainer.apply(delta)
        after = self.trainer.train_sizes()
        if after != before:
            log.info("train process %d/%d: data up to pair %d, patch %d: %d training pairs, %d/%d patches, at steps "
                     "%s", self.group.rank, self.group.world, watermark[0], watermark[1], *after,
                     {n: self.trainer.model(n).step for n in self.trainer.names})
        return True

    def close(self) -> None:
        if self.catalog is not None:
            self.catalog.close()
