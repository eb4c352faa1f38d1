"""translate-video: flicker with and without temporal smoothing, and frames per second at 720p.

    python bench/translate_video.py [--steps 300] [--speed-seconds 3] [--out bench/results/translate_video.json]
                                    [--still docs/translate-video.jpg]
    python bench/translate_video.py --smoke

Flicker. Real clips with real people: tests/data/video/eye_makeup.avi and flipping_a_pancake.mkv, their people
from MediaPipe's masks (tests/video_people.py replays them as the detector), translated by a small pix2pix trained
here for --steps steps (64 px, ngf 16) to map each person patch to a fixed restyling of itself (colours rotated,
contrast raised), so the generator is a trained network with a trained network's sensitivity to small input
changes, which is what flickers. Flicker is the warping error: per pair of consecutive frames, the mean
|OUT_t - warp(OUT_t-1)| over the pixels inside the person in both frames, weighted by how well the input's own
flow explains the input there (stages/translate/video.py's `warping_error`); flow from the INPUT frames (DIS), so
motion of the footage itself does not count. Run once with smoothing 0 and once with the default. The same
measure on IN itself (the input's own warping error, i.e. what flow cannot explain of real footage) is the floor.

Time. Each run's seconds per frame by part (tracking, generator, compositing, flow); the smoothing's extra time
is given against the run without it and against a whole frame with the real detector (speed below).

Speed. Frames per second of the whole command on a 1280x720 clip (tests/data/video/no_duration.webm, its first
--speed-seconds seconds), the real Mask R-CNN architecture at the daemon's detect settings (random weights: the
work per frame is the same as with COCO's, kept at up to detect.max_persons people per frame), on this machine's
cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings  # noqa: E402
from humanstyle.stages.detect import square_patch  # noqa: E402
from humanstyle.stages.settings import DetectSettings  # noqa: E402
from humanstyle.stages.translate.video import (  # noqa: E402
    Flow,
    Region,
    consistency,
    flow_maps,
    translate_video,
    warp,
    warping_error,
)
from humanstyle.stages.translate.video_settings import VIDEO_DEFAULTS, VideoTranslateSettings  # noqa: E402
from tests.video_people import ScriptedDetector, load_people  # noqa: E402

VIDEO = ROOT / "tests" / "data" / "video"
CLIPS = ("eye_makeup.avi", "flipping_a_pancake.mkv")
SPEED_CLIP = "no_duration.webm"
IMAGE_SIZE = 64


def restyle(patch_bgr: np.ndarray) -> np.ndarray:
    """The target style: channels rotated and contrast raised, a change a generator has to learn."""
    x = patch_bgr[..., [1, 2, 0]].astype(np.float32)
    return np.clip((x - 128) * 1.4 + 128, 0, 255).astype(np.uint8)


def person_patches(limit_per_clip: int) -> list[np.ndarray]:
    patches = []
    for name in CLIPS:
        people = load_people(Path(name).stem)
        with av.open(str(VIDEO / name)) as c:
            frames = [(k, f.to_ndarray(format="bgr24")) for k, f in enumerate(c.decode(video=0)) if people[k]]
        for k, frame in frames[::max(1, len(frames) // limit_per_clip)][:limit_per_clip]:
            patches.append(square_patch(frame, people[k][0].box, VIDEO_DEFAULTS.margin, IMAGE_SIZE).image)
    return patches


def train_generator(steps: int):
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = Pix2Pix(Pix2PixSettings(image_size=IMAGE_SIZE, ngf=16, ndf=16, seed=0, device=device))

    def tensor(images):
        rgb = np.stack([cv2.cvtColor(p, cv2.COLOR_BGR2RGB) for p in images])
        return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1

    patches = person_patches(60)
    a, b = tensor(patches), tensor([restyle(p) for p in patches])
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(patches), size=min(8, len(patches)), replace=False))
        losses = net.train_step(a[idx], b[idx])
    print(f"generator: {steps} steps on {len(patches)} real person patches in {time.perf_counter() - started:.0f} s"
          f" (last G L1 {losses['G_l1']:.3f})", flush=True)
    return net.translate


def input_floor(name: str, people) -> float:
    """The input's own warping error inside the people, weighted as the output's is: what flow cannot explain of
    the footage itself, so the least an output that follows the footage can show."""
    flow, errors, prev, prev_mask = Flow(), [], None, None
    with av.open(str(VIDEO / name)) as c:
        for k, frame in enumerate(c.decode(video=0)):
            image = frame.to_ndarray(format="bgr24")
            mask = np.zeros(image.shape[:2], np.float32)
            for det in people[k]:
                mask[det.mask] = 1.0
            if prev is not None and mask.any() and prev_mask.any():
                maps = flow_maps(flow(image, prev), Region(0, image.shape[0], 0, image.shape[1]))
                weight = mask * warp(prev_mask, maps) * consistency(image, warp(prev, maps))  # as the output's
                error = warping_error(image, prev, maps, weight)
                if np.isfinite(error):
                    errors.append(error)
            prev, prev_mask = image, mask
    return float(np.mean(errors)) if errors else float("nan")


def flicker_runs(generator, tmp: Path, max_seconds: float | None) -> list[dict]:
    """Per clip and smoothing: the warping error (a run measuring it), and the time per frame (a second run that
    does not, so the measurement's own flow does not count against the run without smoothing)."""
    rows = []
    for name in CLIPS:
        people = load_people(Path(name).stem)
        for smoothing in (0.0, VIDEO_DEFAULTS.smoothing):
            settings = VideoTranslateSettings(smoothing=smoothing, score_threshold=0.3, track_threshold=0.1,
                                              codec="ffv1")

            def run(measure: bool, name=name, people=people, settings=settings):
                return translate_video(VIDEO / name, tmp / f"{Path(name).stem}-{settings.smoothing}.mkv",
                                       generator, IMAGE_SIZE, ScriptedDetector(people), settings, progress=False,
                                       max_seconds=max_seconds, measure_flicker=measure)

            errors = [e for e in run(True).flicker if np.isfinite(e)]
            timed = run(False)
            rows.append({"clip": name, "smoothing": smoothing, "frames": timed.frames, "pairs": len(errors),
                         "warping_error": round(float(np.mean(errors)), 3) if errors else None,
                         "ms_per_frame": round(1000 * timed.seconds / max(timed.frames, 1), 2),
                         "ms_per_frame_by_part": {k: round(1000 * v / max(timed.frames, 1), 2)
                                                  for k, v in timed.stage_seconds.items()}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def speed_runs(generator, tmp: Path, seconds: float) -> list[dict]:
    from humanstyle.models.detection import set_torch_threads
    from humanstyle.stages.detect import build_detector

    set_torch_threads(os.cpu_count() or 1)
    detect = dataclasses.replace(DetectSettings(), weights="none", score_threshold=0.0)
    detector = build_detector(detect)
    calls = {"seconds": 0.0}

    class Timed:
        def detect(self, frames):
            t = time.perf_counter()
            try:
                return detector.detect(frames)
            finally:
                calls["seconds"] += time.perf_counter() - t

    rows = []
    for smoothing in (0.0, VIDEO_DEFAULTS.smoothing):
        settings = dataclasses.replace(VIDEO_DEFAULTS, smoothing=smoothing, score_threshold=0.0, track_threshold=0.0)
        calls["seconds"] = 0.0
        report = translate_video(VIDEO / SPEED_CLIP, tmp / "speed.mp4", generator, IMAGE_SIZE, Timed(), settings,
                                 progress=False, max_seconds=seconds)
        rows.append({"clip": SPEED_CLIP, "size": "1280x720", "smoothing": smoothing, "frames": report.frames,
                     "persons": report.persons, "cores": os.cpu_count(),
                     "device": "cuda" if torch.cuda.is_available() else "cpu", "fps": round(report.fps, 3),
                     "detector_ms_per_frame": round(1000 * calls["seconds"] / max(report.frames, 1), 1),
                     "ms_per_frame": round(1000 * report.seconds / max(report.frames, 1), 1),
                     "ms_per_frame_by_part": {k: round(1000 * v / max(report.frames, 1), 2)
                                              for k, v in report.stage_seconds.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_still(tmp: Path, path: Path, frame_index: int = 150) -> None:
    """IN | OUT (smoothing on) of one frame of the pancake clip, side by side, for the README."""
    name = "flipping_a_pancake.mkv"
    pair = []
    for source in (VIDEO / name, tmp / f"{Path(name).stem}-{VIDEO_DEFAULTS.smoothing}.mkv"):
        with av.open(str(source)) as c:
            for k, frame in enumerate(c.decode(video=0)):
                if k == frame_index:
                    pair.append(frame.to_ndarray(format="bgr24"))
                    break
    gap = np.full((pair[0].shape[0], 8, 3), 255, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.hstack([pair[0], gap, pair[1]]), [cv2.IMWRITE_JPEG_QUALITY, 90])


def table(report: dict) -> str:
    lines = ["| clip | frame pairs | IN itself | warping error, no smoothing | with smoothing | lower by |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in CLIPS:
        off, on = [r for r in report["flicker"] if r["clip"] == name]
        lower = 100 * (1 - on["warping_error"] / off["warping_error"]) if off["warping_error"] else float("nan")
        lines.append(f"| {name} | {on['pairs']} | {report['floor'][name]:.2f} | {off['warping_error']:.2f} | "
                     f"{on['warping_error']:.2f} | {lower:.0f} % |")
    lines += ["", "| 1280x720, device | smoothing | frames/s | ms/frame | detector | generator | composite | flow | "
              "track |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report["speed"]:
        part = s["ms_per_frame_by_part"]
        lines.append(f"| {s['cores']} cores, {s['device']} | {s['smoothing']} | {s['fps']:.2f} | "
                     f"{s['ms_per_frame']:.0f} | {s['detector_ms_per_frame']:.0f} | {part['generator']:.1f} | "
                     f"{part['composite']:.1f} | {part['flow']:.1f} | {part['track']:.1f} |")
    off, on = report["speed"]
    # The detector's time does not depend on smoothing and varies with the machine's load: left out of the difference.
    extra = (on["ms_per_frame"] - on["detector_ms_per_frame"]) - (off["ms_per_frame"] - off["detector_ms_per_frame"])
    lines.append(f"\nsmoothing costs {extra:.0f} ms per 720p frame, {100 * extra / off['ms_per_frame']:.1f} % of "
                 "a frame's time without it")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--speed-seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=None, help="only the first SECONDS of each flicker clip")
    parser.add_argument("--smoke", action="store_true", help="5 steps, 1 s of each clip, 0.3 s at 720p")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "translate_video.json")
    parser.add_argument("--still", type=Path, default=None, help="write IN | OUT of one frame here (the README's)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.seconds, args.speed_seconds = 5, 1.0, 0.3
    tmp = Path(os.environ.get("BENCH_TMP") or "/tmp") / f"translate-video-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    generator = train_generator(args.steps)
    report = {"steps": args.steps, "image_size": IMAGE_SIZE, "smoothing": VIDEO_DEFAULTS.smoothing,
              "floor": {name: round(input_floor(name, load_people(Path(name).stem)), 3) for name in CLIPS},
              "flicker": flicker_runs(generator, tmp, args.seconds),
              "speed": speed_runs(generator, tmp, args.speed_seconds)}
    print(table(report))
    if args.still:
        write_still(tmp, args.still)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
