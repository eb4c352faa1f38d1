"""Previews that follow training: after a validation pass that gives a model a new best checkpoint, a few seconds of
one watched video of each domain it translates, rendered with it by `translate-video`'s own path (detector, tracker,
paste, smoothing), for the web page's training view.

Decisions
- The same clip every time: per domain, the finished video with the most person patches among the first
  PREVIEW_CANDIDATES, from its first person on. Kept for the trainer's life, so successive previews differ only in
  the model, which is what a person comparing them wants to see.
- On by default where training runs on a GPU (`train.preview_s`), off on a CPU (`train.preview_on_cpu`): there one
  preview runs Mask R-CNN on every frame, minutes of the trainer's time for a few seconds of video.
- A preview that fails (the video gone, a decode error) is logged and counted, never raised: training goes on.
- The newest PREVIEW_KEEP per model stay in the data folder's train/previews/<model>/ (published to the storage as
  checkpoints are); older ones are deleted there.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from humanstyle.stages import counters
from humanstyle.stages.settings import PipelineSettings
from humanstyle.stages.store.storage import Storage
from humanstyle.stages.translate.video_settings import for_detector

log = logging.getLogger("humanstyle.train")

PREVIEW_KEEP = 4
PREVIEW_CANDIDATES = 50
PREVIEW_NAME = re.compile(r"^step-(\d{8})-([a-z0-9_]+)\.mp4$")


@dataclass(frozen=True)
class Clip:
    video_id: int
    domain: str
    file: Path
    start_s: float


@dataclass(frozen=True)
class Preview:
    model: str
    step: int
    domain: str
    path: Path


def list_previews(train_root: Path, model: str) -> list[Preview]:
    """The previews of `model` on disk, newest first."""
    folder = train_root / "previews" / model
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return []
    found = [(m, n) for n in names if (m := PREVIEW_NAME.match(n))]
    return sorted((Preview(model, int(m[1]), m[2], folder / n) for m, n in found),
                  key=lambda p: (p.step, p.domain), reverse=True)


def preview_enabled(settings: PipelineSettings, device: str) -> bool:
    t = settings.train
    return t.preview_s > 0 and (str(device).startswith("cuda") or t.preview_on_cpu)


class Previewer:
    def __init__(self, settings: PipelineSettings, storage: Storage, device: str) -> None:
        self.settings, self.storage, self.device = settings, storage, device
        self.clips: dict[str, Clip] = {}
        self.video = for_detector(settings.detect)
        self.detector = None

    def directions(self, model: str) -> list[tuple[str, str]]:
        """(domain of the footage, direction) pairs `model` renders: pix2pix one, CycleGAN both."""
        a, b = self.settings.domains
        if model == "cyclegan":
            return [(a, f"{a}2{b}"), (b, f"{b}2{a}")]
        direction = model.split("-", 1)[1]
        return [(direction.split("2")[0], direction)]

    def clip(self, domain: str) -> Clip | None:
        known = self.clips.get(domain)
        if known is not None and known.file.exists():
            return known
        from humanstyle.stages.store.catalog import catalog_exists, open_catalog

        if not catalog_exists(self.settings):
            return None
        catalog = open_catalog(self.settings, readonly=True, role="train-preview")
        try:
            rows = catalog.preview_candidates(domain, PREVIEW_CANDIDATES)
        finally:
            catalog.close()
        for row in rows:
            file = self.local_file(row["path"], row["source"])
            if file is not None:
                self.clips[domain] = Clip(row["id"], domain, file, max(0.0, float(row["first_person"]) - 0.5))
                return self.clips[domain]
        return None

    def local_file(self, path: str, source: str) -> Path | None:
        if source:
            try:
                return self.storage.fetch([source])[0]
            except OSError as exc:
                log.info("preview: cannot fetch %s: %s", source, exc)
                return None
        return Path(path) if path and Path(path).is_file() else None

    def build_detector(self):
        if self.detector is None:
            from humanstyle.stages.translate.video import build_tracking_detector

            self.detector = build_tracking_detector(replace(self.settings.detect, device=self.device), self.video)
        return self.detector

    def render(self, model_name: str, model, step: int) -> list[Path]:
        """Render `model_name`'s previews at `step`; never raises (see the module docstring)."""
        written = []
        for domain, direction in self.directions(model_name):
            started = time.perf_counter()
            try:
                path = self._render_one(model_name, model, step, domain, direction)
            except Exception as exc:  # noqa: BLE001 - a preview is a courtesy; training must go on
                counters.TRAIN_PREVIEWS.labels(model_name, "failed").inc()
                log.warning("preview of %s on %s footage failed: %s", model_name, domain, exc)
                continue
            if path is None:
                counters.TRAIN_PREVIEWS.labels(model_name, "no_video").inc()
                continue
            counters.TRAIN_PREVIEWS.labels(model_name, "written").inc()
            log.info("preview: %s at step %d on %s footage in %.1f s (train/previews/%s/%s)", model_name, step,
                     domain, time.perf_counter() - started, model_name, path.name)
            written.append(path)
        self.prune(model_name)
        return written

    def _render_one(self, model_name: str, model, step: int, domain: str, direction: str) -> Path | None:
        from humanstyle.stages.translate.video import translate_video

        clip = self.clip(domain)
        if clip is None:
            return None
        a, _ = self.settings.domains
        # A pix2pix model is its own one direction; CycleGAN's a is the first domain.
        way = "a2b" if model.paired or direction.startswith(f"{a}2") else "b2a"

        def generator(x):
            return model.translate(x, way)
        name = f"train/previews/{model_name}/step-{step:08d}-{domain}.mp4"
        out = self.storage.local_path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        translate_video(clip.file, out, generator, model.settings.image_size, self.build_detector(), self.video,
                        progress=False, start_s=clip.start_s, max_seconds=self.settings.train.preview_s)
        self.storage.publish(name)
        return out

    def prune(self, model_name: str) -> None:
        root = self.storage.local_path("train")
        for old in list_previews(root, model_name)[PREVIEW_KEEP * max(1, len(self.directions(model_name))):]:
            old.path.unlink(missing_ok=True)
