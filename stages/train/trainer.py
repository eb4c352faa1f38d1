"""The Trainer: keeps pix2pix (both directions, on pairs) and CycleGAN (on unpaired patches) learning as data
arrives.

Data comes from the catalog (read-only) and is refreshed on every `pairs_appended` event and every
`train.refresh_every_s`, reading only what is new since the last refresh (stages/train/data.py). Splits are by
patch id and never change as data grows (`models.data.split_of`). Each
model steps only once it has enough data; with too little it waits on the event socket instead of spinning.

Determinism: a batch is a pure function of (model, step): indices come from a generator seeded by the step and the
augmentation draws from `set_epoch(step)`. Together with the checkpointed nets, optimisers, scaler, image pools
and global RNG state, a resumed run continues bit-for-bit on the CPU.

Files under `train/` of the storage (the data folder, or `storage.url`): `checkpoints/latest.pt` (everything,
atomic, every `checkpoint_every` steps and on shutdown), `checkpoints/best-<model>.pt` (the best validation score so
far), `samples/<model>/step-N.png` (input | output | target); in the local data folder `tensorboard/`, and for the
web page `state.json` and `validation.jsonl` (stages.train.state).

The log says what a person needs to follow it: when a model starts or what data it waits for ("pix2pix-movie2game
needs 8 training pairs, has 6"), progress at most once a minute per model (step, losses, steps/s, latest and best
validation), each validation pass, each checkpoint, and when there is nothing to validate on.

Several processes (stages/train/distributed.py): every process builds the same models and the same datasets; a batch
size is per process and the global batch of a step is the configured one times the number of processes, drawn as
one (the same indices a single process with that batch would draw) and split among them in order. Gradients are
averaged across processes (models.parallel), so every process holds the same weights after every step. Process 0
alone writes checkpoints, samples, TensorBoard, metrics and the web page's state. A checkpoint holds the bare nets,
so it resumes with any number of processes.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from humanstyle.models.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from humanstyle.models.cyclegan import CycleGAN, CycleGANSettings
from humanstyle.models.data import SPLITS, PairedDataset, UnpairedDataset, write_sample_grid
from humanstyle.models.files import remove_interrupted_writes
from humanstyle.models.parallel import data_parallel
from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings
from humanstyle.stages import counters
from humanstyle.stages.settings import PipelineSettings, StageFatal
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.storage import Storage, open_storage
from humanstyle.stages.train.data import DataDelta, TrainingData, Watermark, read_delta
from humanstyle.stages.train.distributed import Group
from humanstyle.stages.train.preview import Previewer, preview_enabled
from humanstyle.stages.train.state import QUALITY_METRICS, append_validation, write_state

log = logging.getLogger("humanstyle.train")
VAL_BATCH = 16
PROGRESS_EVERY_S = 60.0  # at most one progress line per model per minute
STATE_EVERY_S = 5.0  # state.json for the web page
ABANDONED_WRITE_S = 600.0  # a checkpoint being saved is written to many times a second, for seconds


def stack_batch(dataset, step: int, batch_size: int, seed: int, rank: int = 0, world: int = 1
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's share of the batch for `step`: the global batch (batch_size per process) draws its indices
    from a generator seeded by the step, augmentation is seeded the same way, and process `rank` takes its slice."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    indices = torch.randint(len(dataset), (batch_size * world,), generator=gen).tolist()
    indices = indices[rank * batch_size:(rank + 1) * batch_size]
    dataset.set_epoch(step)
    items = [dataset[i] for i in indices]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


class Trainer:
    def __init__(self, settings: PipelineSettings, device: str, seed: int = 0, group: Group | None = None,
                 storage: Storage | None = None) -> None:
        t = settings.train
        self.settings, self.seed = settings, seed
        self.group = group or Group(device=device)
        self.main = self.group.is_main  # process 0 alone writes files and metrics
        self.storage = storage or open_storage(settings)
        self.domains = settings.domains
        self.root = settings.paths.data_dir / "train"  # TensorBoard's folder is always local
        self.names = counters.train_model_names(self.domains)
        wrap = data_parallel(device)
        p2p = dict(image_size=t.pix2pix_image_size, ngf=t.pix2pix_ngf, ndf=t.pix2pix_ndf, device=device, amp=t.amp,
                   lambda_luminance=t.lambda_luminance)
        self.pix2pix = {self.names[0]: Pix2Pix(Pix2PixSettings(**p2p, seed=seed), wrap),
                        self.names[1]: Pix2Pix(Pix2PixSettings(**p2p, seed=seed + 10), wrap)}
        self.cyclegan = CycleGAN(CycleGANSettings(
            image_size=t.cyclegan_image_size, ngf=t.cyclegan_ngf, ndf=t.cyclegan_ndf, n_blocks=t.cyclegan_blocks,
            device=device, amp=t.amp, lambda_luminance=t.lambda_luminance, seed=seed), wrap)
        self.best: dict[str, float] = {}
        self.best_step: dict[str, int] = {}
        self.last_validation: dict[str, tuple[int, float]] = {}
        self.losses: dict[str, dict[str, float]] = {}
        self.speed: dict[str, float] = {}
        self.notes: dict[str, dict[str, str]] = {n: {} for n in self.names}  # what the log last said, by topic
        self._progress: dict[str, tuple[float, int]] = {}  # model -> (time, step) of its last progress line
        self._said_at: dict[tuple[str, str], float] = {}
        self._state_at = -math.inf
        self._checkpoint: dict | None = None
        self.data = TrainingData()
        self.previewer = Previewer(settings, self.storage, str(self.group.device)) if self.main and \
            preview_enabled(settings, str(self.group.device)) else None
        self.datasets: dict[str, object] = {}
        self.val_sets: dict[str, object] = {}
        self._tb = None

    # --- data --------------------------------------------------------------------------------------------------
    def refresh(self, catalog: Catalog) -> None:
        self.apply(self.read_delta(catalog, catalog.watermark()))

    def read_delta(self, catalog: Catalog, watermark: Watermark) -> DataDelta:
        """What the catalog holds up to `watermark` beyond the current data (stages/train/data.py)."""
        t = self.settings.train
        return read_delta(self.data, catalog, self.storage, self.domains, t.val_fraction, t.test_fraction, watermark)

    def apply(self, delta: DataDelta) -> None:
        """Grow the data by `delta` (every process the same); the datasets read the data's lists in place, so they
        are built once and again only when a split gains its first items."""
        before = self.train_sizes()
        self.data.apply(delta)
        self.log_growth(before)
        if delta or not (self.datasets or self.val_sets):
            self.build_datasets()
        data = self.data
        for split in SPLITS if self.main else ():
            counters.TRAIN_DATASET.labels("pix2pix", split).set(len(data.pairs[split]))
            counters.TRAIN_DATASET.labels(f"cyclegan-{self.domains[0]}", split).set(len(data.side_a[split]))
            counters.TRAIN_DATASET.labels(f"cyclegan-{self.domains[1]}", split).set(len(data.side_b[split]))
        self.report_data()

    def train_sizes(self) -> tuple[int, int, int]:
        """Training pairs, and training patches of each domain."""
        data = self.data
        return len(data.pairs["train"]), len(data.side_a["train"]), len(data.side_b["train"])

    def log_growth(self, before: tuple[int, int, int]) -> None:
        """Say when the data a model trains on grew or shrank: "pix2pix-movie2game: 120 training pairs (+20)"."""
        after = self.train_sizes()
        if not self.main or after == before:
            return
        a2b, b2a, cyc = self.names
        if after[0] != before[0]:
            change = f"{after[0] - before[0]:+d}"
            log.info("%s, %s: %d training pairs (%s)", a2b, b2a, after[0], change)
        if after[1:] != before[1:]:
            log.info("%s: %d %s and %d %s training patches (%+d, %+d)", cyc, after[1], self.domains[0], after[2],
                     self.domains[1], after[1] - before[1], after[2] - before[2])

    def build_datasets(self) -> None:
        t, data = self.settings.train, self.data
        a2b, b2a, cyc = self.names
        for split, target in (("train", self.datasets), ("val", self.val_sets)):
            train = split == "train"
            if data.pairs[split] and a2b not in target:
                target[a2b] = PairedDataset(data.pairs[split], t.pix2pix_image_size, train, seed=self.seed)
                # The reverse direction keeps flipping the second domain's image, now the input.
                target[b2a] = PairedDataset(data.pairs[split], t.pix2pix_image_size, train, seed=self.seed + 1,
                                            reverse=True)
            if data.side_a[split] and data.side_b[split] and cyc not in target:
                target[cyc] = UnpairedDataset(data.side_a[split], data.side_b[split], t.cyclegan_image_size, train,
                                              seed=self.seed)
            if not data.pairs[split]:  # every pair of a split marked bad
                target.pop(a2b, None), target.pop(b2a, None)

    # --- telling people ----------------------------------------------------------------------------------------
    def waiting_for(self, name: str) -> str:
        """What `name` lacks to start stepping, or "" when it has enough data."""
        t, data = self.settings.train, self.data
        if not self.model(name).paired:
            a, b = len(data.side_a["train"]), len(data.side_b["train"])
            if min(a, b) >= t.min_patches:
                return ""
            return (f"{name} needs {t.min_patches} training patches per domain, has {self.domains[0]} {a}, "
                    f"{self.domains[1]} {b}")
        n = len(data.pairs["train"])
        if n >= t.min_pairs:
            return ""
        held = len(data.pairs["val"]) + len(data.pairs["test"])
        return (f"{name} needs {t.min_pairs} training pairs, has {n}"
                + (f" ({held} more held out for validation and test)" if held else ""))

    def no_validation(self, name: str) -> str:
        """Why `name` cannot be validated (so no best checkpoint is chosen), or ""."""
        if name in self.val_sets:
            return ""
        t = self.settings.train
        what = "pairs" if self.model(name).paired else "patches of each domain"
        return (f"{name} has no validation {what} yet (train.val_fraction = {t.val_fraction}): it trains, but "
                "chooses no best checkpoint until some fall in the validation split")

    def _say(self, name: str, topic: str, message: str, every_s: float = PROGRESS_EVERY_S) -> None:
        """Log `message` when it differs from what was last said on this topic: at once when the topic turns on
        or off, otherwise at most every `every_s` (counts that change with each new pair)."""
        said = self.notes[name].get(topic, "")
        if message == said:
            return
        now = time.monotonic()
        if said and message and now - self._said_at.get((name, topic), -math.inf) < every_s:
            return
        self.notes[name][topic] = message
        self._said_at[(name, topic)] = now
        if message:
            log.info("%s", message)

    def report_data(self) -> None:
        for name in self.names:
            waiting = self.waiting_for(name)
            was_waiting = bool(self.notes[name].get("waiting"))
            self._say(name, "waiting", waiting)
            if not waiting and (was_waiting or "started" not in self.notes[name]):
                paired = self.model(name).paired
                size = (len(self.data.pairs["train"]) if paired
                        else min(len(self.data.side_a["train"]), len(self.data.side_b["train"])))
                what = "pairs" if paired else "patches per domain"
                self.notes[name]["started"] = "yes"
                log.info("%s: training from step %d on %d %s", name, self.model(name).step, size, what)
            self._say(name, "no_validation", self.no_validation(name) if not waiting else "")
        self.write_state(force=True)

    def progress(self, name: str) -> None:
        """One line per model at most every PROGRESS_EVERY_S: step, losses, speed, validation."""
        now, step = time.monotonic(), self.model(name).step
        last = self._progress.get(name)
        if last is None:
            self._progress[name] = (now, step)
            return
        if now - last[0] < PROGRESS_EVERY_S:
            return
        self.speed[name] = (step - last[1]) / (now - last[0])
        self._progress[name] = (now, step)
        losses = " ".join(f"{k} {v:.4g}" for k, v in self.losses.get(name, {}).items())
        val = self.last_validation.get(name)
        log.info("%s: step %d, %s, %.2f steps/s, validation %s, best %s", name, step, losses, self.speed[name],
                 f"{val[1]:.4f}" if val else "none yet",
                 f"{self.best[name]:.4f} at step {self.best_step.get(name, 0)}" if name in self.best else "none yet")

    def state(self) -> dict:
        models = {}
        for name in self.names:
            val = self.last_validation.get(name)
            models[name] = {
                "step": self.model(name).step, "ready": not self.waiting_for(name),
                "waiting": self.waiting_for(name), "no_validation": self.no_validation(name),
                "losses": self.losses.get(name, {}), "steps_per_s": self.speed.get(name),
                "validation": {"step": val[0], "score": val[1]} if val else None,
                "best": ({"step": self.best_step.get(name), "score": self.best[name]} if name in self.best else None),
            }
        return {"models": models, "checkpoint": self._checkpoint}

    def write_state(self, force: bool = False) -> None:
        if not self.main:  # process 0 alone writes files
            return
        now = time.monotonic()
        if not force and now - self._state_at < STATE_EVERY_S:
            return
        self._state_at = now
        try:
            write_state(self.root, self.state())
        except OSError as exc:  # the page's view of training must never stop training
            log.warning("cannot write %s: %s", self.root / "state.json", exc)

    def ready(self) -> list[str]:
        """The models that have enough training data to step."""
        out = [n for n in self.names if n in self.datasets and not self.waiting_for(n)]
        for name in self.names if self.main else ():
            counters.TRAIN_READY.labels(name).set(int(name in out))
        return out

    # --- training ----------------------------------------------------------------------------------------------
    def model(self, name: str) -> Pix2Pix | CycleGAN:
        return self.cyclegan if name == "cyclegan" else self.pix2pix[name]

    def train_step(self, name: str) -> dict[str, float]:
        t = self.settings.train
        model = self.model(name)
        batch = t.pix2pix_batch_size if model.paired else t.cyclegan_batch_size
        a, b = stack_batch(self.datasets[name], model.step, batch, self.seed, self.group.rank, self.group.world)
        terms = model.train_step(a, b)
        if not self.main:
            return terms
        counters.TRAIN_STEPS.labels(name).inc()
        counters.TRAIN_IMAGES.labels(name).inc(batch * self.group.world)
        self._record(name, model.step, terms)
        self.losses[name] = {k: v for k, v in terms.items() if not k.startswith("brightness")}
        if model.step % t.sample_every == 0:
            self.write_samples(name)
        if model.step % t.validate_every == 0:
            self.validate(name)
        self.progress(name)
        self.write_state()
        return terms

    def _record(self, name: str, step: int, terms: dict[str, float]) -> None:
        for term, value in terms.items():
            if term.startswith("brightness_fake"):
                counters.TRAIN_BRIGHTNESS.labels(name, "generated").set(value)
            elif term.startswith("brightness_real"):
                counters.TRAIN_BRIGHTNESS.labels(name, "target").set(value)
            elif term == "brightness_gap":
                counters.TRAIN_BRIGHTNESS.labels(name, "gap").set(value)
            elif not term.startswith("brightness"):
                counters.TRAIN_LOSS.labels(name, term).set(value)
        if step % 10 == 0 and (tb := self.tensorboard()) is not None:
            for term, value in terms.items():
                tb.add_scalar(f"{name}/{term}", value, step)

    def validate(self, name: str) -> float | None:
        dataset = self.val_sets.get(name)
        if dataset is None or len(dataset) == 0:
            return None
        n = min(len(dataset), VAL_BATCH)
        a = torch.stack([dataset[i][0] for i in range(n)])
        b = torch.stack([dataset[i][1] for i in range(n)])
        model = self.model(name)
        with torch.no_grad():
            result = model.validate(a, b)
        score = result["score"]
        quality = {k: result[k] for k in QUALITY_METRICS if k in result}
        if model.paired:
            counters.TRAIN_VAL_L1.labels(name).set(score)
        else:
            quality["cycle_l1"] = score
        for metric, value in quality.items():
            counters.TRAIN_QUALITY.labels(name, metric).set(value)
        if (tb := self.tensorboard()) is not None:
            tb.add_scalar(f"{name}/validation", score, model.step)
            for metric, value in quality.items():
                tb.add_scalar(f"{name}/validation_{metric}", value, model.step)
        self.last_validation[name] = (model.step, score)
        try:
            append_validation(self.root, name, model.step, score, quality)
        except OSError as exc:
            log.warning("cannot record the validation score: %s", exc)
        if score < self.best.get(name, float("inf")):
            self.best[name] = score
            self.best_step[name] = model.step
            file = f"train/checkpoints/best-{name}.pt"
            save_checkpoint(self.storage.local_path(file),
                            {"model": name, "score": score, "step": model.step, "state": model.state_dict()})
            self.storage.publish(file)
            log.info("%s: validation %.4f at step %d, a new best (checkpoints/best-%s.pt)", name, score, model.step,
                     name)
            if self.previewer is not None:
                self.previewer.render(name, model, model.step)
        else:
            log.info("%s: validation %.4f at step %d (best %.4f at step %d)", name, score, model.step,
                     self.best[name], self.best_step.get(name, 0))
        self.write_state(force=True)
        return score

    def write_samples(self, name: str) -> Path:
        dataset = self.val_sets.get(name) or self.datasets[name]
        n = min(len(dataset), 4)
        a = torch.stack([dataset[i][0] for i in range(n)])
        b = torch.stack([dataset[i][1] for i in range(n)])
        model = self.model(name)
        with torch.no_grad():
            out = model.translate(a, "a2b")
        file = f"train/samples/{name}/step-{model.step:08d}.png"
        path = self.storage.local_path(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        # CycleGAN has no target: its third column is an unpaired image of the other domain, for reference.
        grid = write_sample_grid(path, a, out, b)
        self.storage.publish(file)
        if (tb := self.tensorboard()) is not None:
            tb.add_image(f"{name}/samples", grid, model.step, dataformats="HWC")
        return path

    def tensorboard(self):
        if not self.main:
            return None
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a declared dependency, but training must not die for logs
                return None
            self._tb = SummaryWriter(str(self.root / "tensorboard"))
        return self._tb

    # --- checkpoints -------------------------------------------------------------------------------------------
    LATEST = "train/checkpoints/latest.pt"

    @property
    def latest(self) -> Path:
        """The local file of latest.pt (the file itself in the data folder; the copy uploaded to storage.url)."""
        return self.storage.local_path(self.LATEST)

    def state_dict(self) -> dict:
        return {"models": {n: self.model(n).state_dict() for n in self.names}, "best": dict(self.best),
                "best_step": dict(self.best_step), "rng": capture_rng_state(), "domains": list(self.domains)}

    def save(self) -> Path:
        """Write latest.pt (process 0 only; the others hold the same state)."""
        if not self.main:
            return self.latest
        save_checkpoint(self.latest, self.state_dict())
        self.storage.publish(self.LATEST)
        # A trainer killed while saving leaves a checkpoint-sized temporary file. Only files nobody wrote to for a
        # while go: the trainer lock keeps other trainers of this machine out, not one that shares the folder.
        removed = remove_interrupted_writes(self.latest.parent, unchanged_for_s=ABANDONED_WRITE_S)
        if removed:
            log.warning("removed %d checkpoint file(s) left half-written by an interrupted save", removed)
        for name in self.names:
            counters.CHECKPOINTS.labels(name).inc()
        if self._tb is not None:
            self._tb.flush()
        steps = {n: self.model(n).step for n in self.names}
        self._checkpoint = {"path": self.LATEST.removeprefix("train/"), "steps": steps, "time": time.time()}
        log.info("checkpoint written: %s at steps %s", self.latest, steps)
        self.write_state(force=True)
        return self.latest

    def resume(self) -> bool:
        """Load latest.pt when it exists; a checkpoint that does not fit the configured models is a fatal error
        (silently starting over would throw the training away)."""
        if not self.storage.exists(self.LATEST):
            self._seed_process()
            return False
        state = load_checkpoint(self.storage.fetch_fresh(self.LATEST))
        try:
            for name in self.names:
                self.model(name).load_state_dict(state["models"][name])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise StageFatal(f"{self.latest} does not fit the configured models ({exc}); restore the [train] "
                             "settings it was made with, or move it away to start over") from None
        self.best = {k: float(v) for k, v in state["best"].items()}
        self.best_step = {k: int(v) for k, v in state.get("best_step", {}).items()}
        restore_rng_state(state["rng"])
        self._seed_process()
        log.info("resumed from %s at steps %s", self.storage.uri(self.LATEST),
                 {n: self.model(n).step for n in self.names})
        return True

    def _seed_process(self) -> None:
        """With several processes, each draws its own dropout masks and image-pool choices: a stream of its own,
        from the seed, its rank and the steps done (a single process keeps the checkpoint's stream)."""
        if self.group.parallel:
            steps = sum(self.model(n).step for n in self.names)
            torch.manual_seed(self.seed * 1_000_003 + 7919 * self.group.rank + steps)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def training_device(configured: str) -> str:
    if configured == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return configured
