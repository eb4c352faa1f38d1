"""One-shot mode: the daemon's stages over a single video, in this process, with a progress bar.

It calls the same handlers the stage processes run (the detector's and the classifier's, with a list for an outbox,
the index stage's ResultWriter and the pairing stage's handler), so its patches, catalog rows and pairs are the
ones the daemon would produce.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from humanstyle.stages.classify import ClassifyHandler, build_estimator
from humanstyle.stages.decode import NotAVideo, decode_windows, window_record
from humanstyle.stages.detect import DetectHandler, build_detector
from humanstyle.stages.handler import ListOutbox
from humanstyle.stages.index.results import ResultWriter
from humanstyle.stages.pairing.stage import PairingHandler
from humanstyle.stages.settings import ConfigError, PipelineSettings
from humanstyle.stages.store.catalog import Catalog, open_catalog
from humanstyle.stages.watch import fingerprint


@dataclass
class ExtractSummary:
    video_id: int
    status: str
    reason: str = ""
    windows: int = 0
    frames: Counter = field(default_factory=Counter)  # anchor / burst
    views: Counter = field(default_factory=Counter)
    rejections: Counter = field(default_factory=Counter)
    pairs: int = 0

    def text(self) -> str:
        lines = [f"video {self.video_id}: {self.status}" + (f" ({self.reason})" if self.reason else ""),
                 f"windows: {self.windows}",
                 f"detector frames: anchor={self.frames['anchor']} burst={self.frames['burst']}",
                 "patches: " + (", ".join(f"{v}={n}" for v, n in sorted(self.views.items())) or "none")]
        if self.rejections:
            lines.append("rejected: " + ", ".join(f"{r}={n}" for r, n in sorted(self.rejections.items())))
        lines.append(f"new pairs: {self.pairs}")
        return "\n".join(lines)


def extract_video(settings: PipelineSettings, path: Path, domain: str, progress: bool = False) -> ExtractSummary:
    catalog = open_catalog(settings, role="extract")
    pairing = PairingHandler(settings)
    try:
        pairing.start(ListOutbox())
    except RuntimeError as exc:  # the pose store is locked by its single writer
        pairing.close()
        catalog.close()
        raise ConfigError(f"{settings.paths.data_dir} is in use by a running daemon: {exc}") from None
    try:
        return _extract(settings, catalog, ResultWriter(settings, catalog), pairing, path, domain, progress)
    finally:
        pairing.close()
        catalog.close()


def _extract(settings: PipelineSettings, catalog: Catalog, writer: ResultWriter, pairing: PairingHandler, path: Path,
             domain: str, progress: bool) -> ExtractSummary:
    stat = path.stat()
    video, created = catalog.add_video(fingerprint(path), str(path.resolve()), domain, stat.st_size, stat.st_mtime)
    if not created and video.status in ("done", "partial", "failed"):
        return ExtractSummary(video.id, "duplicate", f"already {video.status} as video {video.id} ({video.path})")
    writer.recover()
    summary = ExtractSummary(video.id, "processing")
    catalog.set_video_status(video.id, "processing", attempt=video.attempt + 1)
    d = settings.decode
    try:
        decoder = decode_windows(path, d.anchor_every_s, d.burst_frames, d.max_side or None)
    except NotAVideo as exc:
        catalog.set_video_status(video.id, "failed", exc.reason)
        summary.status, summary.reason = "failed", exc.reason
        return summary
    detect = DetectHandler(build_detector(settings.detect), settings.detect)
    classify = ClassifyHandler(build_estimator(settings), settings.classify)
    out = ListOutbox()
    ids = {"video_id": video.id, "attempt": video.attempt + 1, "domain": domain}
    bar = _progress_bar(decoder, progress)
    with decoder:
        for window in decoder:
            detect.detect([window_record(window, ids)], out)
            *patches, done = out.take()
            summary.frames["anchor"] += 1
            summary.frames["burst"] += done.frames - 1
            if patches:
                classify.classify(patches, out)
            for item in out.take():
                writer.write_patch(item)
                writer.count_written()
                summary.views[item.view] += 1
                if item.reason:
                    summary.rejections[item.reason] += 1
            summary.pairs += pairing.pair_all()
            summary.windows += 1
            bar.update(1)
    bar.close()
    result = decoder.summary
    status, reason = result.status, result.reason or ""
    catalog.set_video_status(video.id, status, reason, windows=result.windows, frames_read=result.frames_read)
    summary.status, summary.reason = status, reason
    return summary


def _progress_bar(decoder, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=decoder.expected_windows, unit="s", desc="extract", disable=not enabled)
