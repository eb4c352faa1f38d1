"""`translate-video` on real clips: real people (MediaPipe masks replayed by a scripted detector), a small trained
pix2pix checkpoint, the real containers of tests/data/video. What a user checks with a player — frames, rate,
duration, rotation, audio — and what they cannot see: the pixels outside the people are IN's, exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from humanstyle.daemon.cli.main import main
from humanstyle.models.checkpoint import save_checkpoint
from humanstyle.models.detection import PersonDetection
from humanstyle.models.pix2pix import Pix2Pix, Pix2PixSettings
from humanstyle.stages.translate.images import load_generator
from humanstyle.stages.translate.video import translate_video
from humanstyle.stages.translate.video_settings import VideoTranslateSettings
from tests.conftest import fast_sections, write_config
from tests.video_people import ScriptedDetector, load_people

VIDEO = Path(__file__).resolve().parents[1] / "data" / "video"
# The MediaPipe people score 0.5 on average (mean landmark visibility, not a detector's confidence).
SETTINGS = VideoTranslateSettings(score_threshold=0.3, track_threshold=0.1)
LOSSLESS = dataclasses.replace(SETTINGS, codec="ffv1")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """pix2pix at 32 px trained for 30 steps to turn real person patches into their colour-swapped selves."""
    torch.manual_seed(0)
    net = Pix2Pix(Pix2PixSettings(image_size=32, ngf=8, ndf=8, seed=0))
    frames = read_frames(VIDEO / "flipping_a_pancake.mkv", limit=60)
    patches = [cv2.resize(f[:, 100:340], (32, 32), interpolation=cv2.INTER_AREA) for f in frames[::6]]
    a = torch.stack([torch.from_numpy(p).permute(2, 0, 1).float() / 127.5 - 1 for p in patches])
    for _ in range(30):
        net.train_step(a, a.flip(1))
    path = tmp_path_factory.mktemp("ckpt") / "best-pix2pix.pt"
    save_checkpoint(path, {"state": net.state_dict()})
    return path


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if limit and len(frames) >= limit:
                break
    return frames


def describe(path: Path) -> dict:
    """What a player shows: frames, rate, first-to-last time, rotation, stored size, audio codecs."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        times, rotation = [], 0
        for packet in c.demux(v):
            try:
                for frame in packet.decode():
                    times.append(float(frame.time) if frame.time is not None else float("nan"))
                    rotation = frame.rotation
            except av.error.InvalidDataError:
                continue
        return {"frames": len(times), "rate": float(v.average_rate), "span": round(times[-1] - times[0], 2),
                "rotation": rotation, "size": (v.width, v.height),
                "audio": [a.codec_context.name for a in c.streams.audio]}


def generator(path: Path):
    return load_generator(path, "pix2pix", "movie2game", ("movie", "game"))


def test_real_people_are_translated_and_everything_else_is_in_s_pixels(tmp_path, checkpoint):
    clip = VIDEO / "eye_makeup.avi"
    people = load_people("eye_makeup")
    out = tmp_path / "out.mkv"
    gen, size = generator(checkpoint)
    report = translate_video(clip, out, gen, size, ScriptedDetector(people), LOSSLESS, progress=False)

    before, after = describe(clip), describe(out)
    assert abs(after["frames"] - before["frames"]) <= 1
    assert after["rate"] == before["rate"] and after["size"] == before["size"]
    assert abs(after["span"] - before["span"]) <= 0.05  # one frame of 40 ms at most (the AVI's pts/dts switch)
    assert after["audio"] and before["audio"], "IN's audio must be copied"
    assert report.persons == sum(len(d) for d in people) and report.tracks >= 1

    changed_inside = 0
    for k, (a, b) in enumerate(zip(read_frames(clip), read_frames(out), strict=True)):
        outside = np.ones(a.shape[:2], dtype=bool)
        for det in people[k]:
            outside &= ~det.mask
        assert np.array_equal(a[outside], b[outside]), f"frame {k}: a pixel outside the person changed"
        changed_inside += int((a[~outside] != b[~outside]).any())
    assert changed_inside > 0.9 * sum(1 for d in people if d)


def test_the_same_run_twice_gives_the_same_frames(tmp_path, checkpoint):
    clip = VIDEO / "flipping_a_pancake.mkv"
    gen, size = generator(checkpoint)
    outs = []
    for name in ("one.mkv", "two.mkv"):
        translate_video(clip, tmp_path / name, gen, size, ScriptedDetector(load_people("flipping_a_pancake")),
                        LOSSLESS, progress=False, max_seconds=3.0)
        outs.append(read_frames(tmp_path / name))
    assert len(outs[0]) == len(outs[1]) == 90
    assert all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))


class Nobody:
    def detect(self, frames):
        return [[] for _ in frames]


def test_a_clip_with_nobody_comes_out_as_it_went_in(tmp_path, checkpoint):
    clip = VIDEO / "flipping_a_pancake.mkv"
    gen, size = generator(checkpoint)
    translate_video(clip, tmp_path / "out.mkv", gen, size, Nobody(), LOSSLESS, progress=False)
    a, b = read_frames(clip), read_frames(tmp_path / "out.mkv")
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert describe(tmp_path / "out.mkv")["audio"] == ["opus"]


class Centre:
    """A person-shaped ellipse in the middle of every (upright) frame."""

    def __init__(self) -> None:
        self.shapes = []

    def detect(self, frames):
        out = []
        for f in frames:
            h, w = f.shape[:2]
            self.shapes.append((h, w))
            mask = np.zeros((h, w), np.uint8)
            cv2.ellipse(mask, (w // 2, h // 2), (w // 6, h // 3), 0, 0, 360, 1, -1)
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            out.append([PersonDetection(box, 0.9, mask.astype(bool), 1)])
        return out


def test_a_phone_clip_keeps_its_rotation_size_and_audio(tmp_path, checkpoint):
    clip = VIDEO / "iphone_rotated.mov"
    gen, size = generator(checkpoint)
    detector = Centre()
    translate_video(clip, tmp_path / "out.mov", gen, size, detector, SETTINGS, progress=False)
    before, after = describe(clip), describe(tmp_path / "out.mov")
    assert detector.shapes[0] == (568, 320), "people are found in upright frames"
    assert after["rotation"] == before["rotation"] == -90 and after["size"] == before["size"] == (568, 320)
    assert after["frames"] == before["frames"] and after["span"] == before["span"]
    assert after["audio"] == ["aac"]


def test_a_variable_frame_rate_keeps_its_timestamps(tmp_path, checkpoint):
    clip = VIDEO / "two_persons_vfr.mp4"
    gen, size = generator(checkpoint)
    translate_video(clip, tmp_path / "out.mp4", gen, size, Nobody(), SETTINGS, progress=False)

    def times(path):
        with av.open(str(path)) as c:
            return [round(float(f.time), 3) for f in c.decode(video=0)]

    assert times(tmp_path / "out.mp4") == times(clip)  # the 200 ms hole included


# --- the command: bad inputs are one line and exit code 2, and leave no OUT ----------------------------------

def command(tmp_path, checkpoint, *args, clip=VIDEO / "eye_makeup.avi", out=None):
    cfg = write_config(tmp_path, fast_sections(tmp_path))
    out = out or tmp_path / "out.mp4"
    return main(["translate-video", str(clip), str(out), "--direction", "movie2game", "--checkpoint",
                 str(checkpoint), "--no-progress", "--config", str(cfg), *args]), out


def test_the_command_writes_the_video_with_the_real_detector(tmp_path, checkpoint, capsys):
    code, out = command(tmp_path, checkpoint, "--seconds", "0.5")
    assert code == 0, capsys.readouterr().err
    assert describe(out)["frames"] in (12, 13) and describe(out)["audio"] == ["mp3float"]
    assert "frames" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def tampered(checkpoint: Path, tmp_path: Path) -> Path:
    """The checkpoint's weights under settings of another image size (a UNet of another depth)."""
    state = torch.load(checkpoint, weights_only=True)
    state["state"]["settings"]["image_size"] = 128
    path = tmp_path / "other-size.pt"
    save_checkpoint(path, state)
    return path


BAD = {
    "not a video": lambda tmp, ck: {"clip": (tmp / "notes.mp4", (tmp / "notes.mp4").write_text("hello"))[0]},
    "truncated": lambda tmp, ck: {"clip": VIDEO / "eye_makeup_cut.avi"},
    "no checkpoint": lambda tmp, ck: {"checkpoint": tmp / "missing.pt"},
    "another image size": lambda tmp, ck: {"checkpoint": tampered(ck, tmp)},
    "another model": lambda tmp, ck: {"args": ("--model", "cyclegan")},
    "unwritable OUT": lambda tmp, ck: {"out": tmp / "no" / "such" / "folder" / "out.mp4"},
    "OUT in a file": lambda tmp, ck: {"out": (tmp / "f", (tmp / "f").write_text(""))[0] / "out.mp4"},
    "unknown container": lambda tmp, ck: {"out": tmp / "out.xyz"},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_are_one_line_and_exit_2(tmp_path, checkpoint, capsys, case):
    spec = BAD[case](tmp_path, checkpoint)
    before = set(tmp_path.rglob("*"))
    code, out = command(tmp_path, spec.get("checkpoint", checkpoint), *spec.get("args", ()),
                        clip=spec.get("clip", VIDEO / "eye_makeup.avi"), out=spec.get("out"))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("humanstyle: ") and "\n" not in err and "Traceback" not in err, err
    assert not out.exists()
    left = {p for p in set(tmp_path.rglob("*")) - before if p.name != "config.toml" and "data" not in p.parts}
    assert not [p for p in left if p.is_file()], f"left behind: {left}"
