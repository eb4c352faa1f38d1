"""The trainer stage on a small synthetic catalog: data refresh, steps, samples, checkpoints, exact resume,
events while running, and the train/translate commands."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import zmq

from humanstyle.daemon import config
from humanstyle.daemon.cli.main import main
from humanstyle.daemon.runtime import fabric, wire
from humanstyle.daemon.runtime.paths import prepare_runtime_dir
from humanstyle.models.checkpoint import load_checkpoint
from humanstyle.models.data import SPLITS, PairedDataset
from humanstyle.stages import counters
from humanstyle.stages.records import PairsAppended
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.storage import Storage
from humanstyle.stages.train.data import data_digest, load_training_data
from humanstyle.stages.train.lock import TrainerLock
from humanstyle.stages.train.stage import TrainHandler
from humanstyle.stages.train.trainer import Trainer
from tests.catalog_rows import add_patch
from tests.conftest import fast_sections, write_config
from tests.harness import run_stage

TINY = {"pix2pix_image_size": 32, "pix2pix_batch_size": 4, "pix2pix_ngf": 8, "pix2pix_ndf": 8,
        "cyclegan_image_size": 32, "cyclegan_batch_size": 2, "cyclegan_ngf": 8, "cyclegan_ndf": 8,
        "cyclegan_blocks": 1, "min_pairs": 4, "min_patches": 4, "sample_every": 5, "validate_every": 5,
        "checkpoint_every": 5, "val_fraction": 0.25, "threads": 1, "nice": 0, "refresh_every_s": 60.0}


def make_settings(tmp_path, **train) -> config.Settings:
    sections = fast_sections(tmp_path, train={**TINY, "enabled": True, **train})
    return config.load(write_config(tmp_path, sections))


def add_patches(settings: config.Settings, domain: str, n: int, start: int, seed: int) -> list[int]:
    """Write n small patch images and their rows; returns their ids."""
    rng = np.random.default_rng(seed)
    cat = Catalog(settings.paths.catalog)
    video, _ = cat.add_video(f"fp-{domain}", f"/videos/{domain}.mp4", domain, 1, 0.0)
    ids = []
    for i in range(start, start + n):
        rel = f"patches/{domain}/FULL-BODY-FRONT/{i}.png"
        image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        (settings.paths.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(settings.paths.data_dir / rel), image)
        ids.append(add_patch(cat, video.id, domain, i, path=rel, keypoint_score=0.9))
    cat.mark_indexed(ids)  # as the pairing stage does: the trainer reads patches in the order they were paired
    cat.close()
    return ids


def add_pairs(settings: config.Settings, n: int, start: int, mirrored: bool = False) -> None:
    a = add_patches(settings, "movie", n, start, seed=start)
    b = add_patches(settings, "game", n, start, seed=start + 1000)
    cat = Catalog(settings.paths.catalog)
    for x, y in zip(a, b, strict=True):
        cat.add_pair(x, y, "FULL-BODY-FRONT", 0.95, mirrored)
    cat.close()


def params(trainer: Trainer) -> list[torch.Tensor]:
    """Every weight of every net (generators and discriminators) of the three models."""
    nets = [m.G for m in trainer.pix2pix.values()] + [m.D for m in trainer.pix2pix.values()]
    nets += [trainer.cyclegan.G_AB, trainer.cyclegan.G_BA, trainer.cyclegan.D_A, trainer.cyclegan.D_B]
    return [p.detach().clone() for net in nets for p in net.parameters()]


def steps(trainer: Trainer, n: int) -> None:
    for _ in range(n):
        for name in trainer.ready():
            trainer.train_step(name)


def test_refresh_train_sample_checkpoint(tmp_path):
    s = make_settings(tmp_path)
    add_pairs(s, 12, 0)
    trainer = Trainer(s, "cpu")
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    d = trainer.data
    assert len(d.pairs["train"]) + len(d.pairs["val"]) == 12
    assert set(trainer.ready()) == {"pix2pix-movie2game", "pix2pix-game2movie", "cyclegan"}
    steps(trainer, 5)
    assert all(trainer.model(n).step == 5 for n in trainer.names)
    for name in trainer.names:
        grids = list((s.paths.data_dir / "train" / "samples" / name).glob("step-*.png"))
        assert grids and cv2.imread(str(grids[0])) is not None
    assert list((s.paths.data_dir / "train" / "tensorboard").glob("events.out.tfevents.*"))
    assert trainer.save().exists()
    if d.pairs["val"]:
        assert (s.paths.data_dir / "train" / "checkpoints" / "best-pix2pix-movie2game.pt").exists()


def test_each_validation_pass_records_the_translators_quality(tmp_path):
    """Issue 27, item 2: pix2pix's PSNR, SSIM and brightness gap on its held-out pairs, CycleGAN's cycle L1, in
    validation.jsonl, in the gauges and on the training view."""
    from humanstyle.daemon.web.app import create_app
    from humanstyle.stages import counters
    from humanstyle.stages.train.state import read_validation

    s = make_settings(tmp_path, val_fraction=0.5)
    add_pairs(s, 12, 0)
    trainer = Trainer(s, "cpu")
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    for name in ("pix2pix-movie2game", "cyclegan"):
        assert trainer.validate(name) is not None
    quality = read_validation(s.paths.data_dir / "train").quality
    p2p = quality["pix2pix-movie2game"]
    assert set(p2p) == {"l1", "psnr", "ssim", "brightness_gap"} and 0 < p2p["psnr"] < 100 and -1 < p2p["ssim"] < 1
    assert set(quality["cyclegan"]) == {"cycle_l1", "brightness_gap"}
    assert counters.TRAIN_QUALITY.labels("pix2pix-movie2game", "psnr")._value.get() == pytest.approx(p2p["psnr"],
                                                                                                     abs=1e-4)
    page = create_app(s, lambda: {"status": "ok", "uptime_s": 0, "stages": {}}).test_client().get(
        "/training", headers={"Host": s.metrics.listen}).get_data(as_text=True)
    table = page[page.index('id="quality-pix2pix-movie2game"'):]
    assert "PSNR" in table and f"{p2p['psnr']:.2f}" in table and f"{p2p['ssim']:.3f}" in table
    assert 'id="quality-cyclegan"' in page and "cycle L1" in page


def test_a_save_deletes_what_an_interrupted_save_left_but_not_a_save_under_way(tmp_path):
    s = make_settings(tmp_path)
    folder = s.paths.data_dir / "train" / "checkpoints"
    folder.mkdir(parents=True)
    abandoned, live = folder / ".latest.pt.k1lled00.tmp", folder / ".latest.pt.wr1t1ng0.tmp"
    for path in (abandoned, live):
        path.write_bytes(b"half a checkpoint")
    an_hour_ago = time.time() - 3600
    os.utime(abandoned, (an_hour_ago, an_hour_ago))
    trainer = Trainer(s, "cpu")
    trainer.save()
    trainer.close()
    assert sorted(p.name for p in folder.iterdir()) == [live.name, "latest.pt"]


def test_mirrored_pairs_train_on_the_flipped_game_image(tmp_path):
    s = make_settings(tmp_path, val_fraction=0.0, test_fraction=0.0)
    add_pairs(s, 3, 0)
    add_pairs(s, 2, 100, mirrored=True)
    trainer = Trainer(s, "cpu")
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    flags = [(p.flip_a, p.flip_b) for p in trainer.data.pairs["train"]]
    assert flags == [(False, False)] * 3 + [(False, True)] * 2
    movie2game, game2movie = trainer.datasets["pix2pix-movie2game"], trainer.datasets["pix2pix-game2movie"]
    game = trainer.data.pairs["train"][4].b
    assert game2movie.pairs is movie2game.pairs and game2movie.reverse and not movie2game.reverse
    # Without augmentation, the game image a mirrored pair trains on is the stored patch flipped.
    movie2game, game2movie = (PairedDataset(d.pairs, 32, train=False, reverse=d.reverse)
                              for d in (movie2game, game2movie))
    image = cv2.cvtColor(cv2.resize(cv2.imread(str(game)), (32, 32), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB)
    expected = torch.from_numpy(np.fliplr(image).copy()).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.allclose(movie2game[4][1], expected, atol=1e-6)
    assert torch.allclose(game2movie[4][0], expected, atol=1e-6)


def test_splits_are_stable_as_data_grows(tmp_path):
    s = make_settings(tmp_path)
    add_pairs(s, 10, 0)
    trainer = Trainer(s, "cpu")
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    before = {split: set(p) for split, p in trainer.data.pairs.items()}
    add_pairs(s, 10, 100)
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    for split, pairs in before.items():
        assert pairs <= set(trainer.data.pairs[split])


def test_a_remote_storage_fetches_what_training_reads_and_not_the_test_split(tmp_path):
    """With storage.url set, the trainer works from local copies of the objects; the test split is counted, never
    opened, so its images are not downloaded on every refresh."""
    s = make_settings(tmp_path, val_fraction=0.2, test_fraction=0.3)
    add_pairs(s, 20, 0)
    storage = Storage(f"memory://hs-{uuid.uuid4().hex[:8]}/data", tmp_path / "elsewhere", tmp_path / "cache")
    for path in (s.paths.data_dir / "patches").rglob("*.png"):
        storage.write_bytes(str(path.relative_to(s.paths.data_dir)), path.read_bytes())
    data = load_training_data(Catalog(s.paths.catalog, readonly=True), storage, ("movie", "game"), 0.2, 0.3)
    splits = {split: len(data.pairs[split]) for split in SPLITS}
    assert sum(splits.values()) == 20 and min(splits.values()) > 0, splits
    fetched = {p for p in (tmp_path / "cache").rglob("*.png")}
    trained = {p for split in ("train", "val") for pair in data.pairs[split] for p in (pair.a, pair.b)}
    trained |= {p for split in ("train", "val") for p in data.side_a[split] + data.side_b[split]}
    assert trained and fetched == trained
    # A test pair's second image can still be a training patch of its own domain (patches split by their own id).
    test_only = {p for pair in data.pairs["test"] for p in (pair.a, pair.b)} - trained
    assert test_only and not any(p.exists() for p in test_only)
    assert all(p.is_relative_to(tmp_path / "cache") for p in test_only)


def test_waits_without_enough_data(tmp_path):
    s = make_settings(tmp_path)
    add_pairs(s, 2, 0)
    trainer = Trainer(s, "cpu")
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    assert trainer.ready() == []


def test_resume_continues_bit_for_bit(tmp_path):
    s = make_settings(tmp_path, sample_every=1000, validate_every=1000)
    add_pairs(s, 12, 0)
    cat = Catalog(s.paths.catalog, readonly=True)

    torch.manual_seed(123)
    first = Trainer(s, "cpu")
    first.refresh(cat)
    steps(first, 3)
    first.save()
    steps(first, 3)
    uninterrupted = params(first)

    torch.manual_seed(999)  # whatever the global RNG is now, resume restores it
    second = Trainer(s, "cpu")
    assert second.resume()
    second.refresh(cat)
    steps(second, 3)
    for x, y in zip(uninterrupted, params(second), strict=True):
        assert torch.equal(x, y)


def test_daemon_trainer_picks_up_new_data_and_checkpoints_on_stop(tmp_path):
    s = make_settings(tmp_path)
    add_pairs(s, 2, 0)  # too little to train
    prepare_runtime_dir(s)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(fabric.endpoint(s, "events"))
    stop = fabric.StopFlag()
    thread = threading.Thread(target=run_stage, args=("train", s, 0, stop), daemon=True)
    thread.start()
    steps_metric = counters.TRAIN_STEPS.labels("pix2pix-movie2game")
    base = steps_metric._value.get()
    time.sleep(2.0)
    assert steps_metric._value.get() == base, "must not train on 2 pairs"

    add_pairs(s, 12, 100)
    deadline = time.monotonic() + 60
    while steps_metric._value.get() < base + 2 and time.monotonic() < deadline:
        pub.send_multipart(wire.encode(PairsAppended(count=12, total=14)))
        time.sleep(0.5)
    assert steps_metric._value.get() >= base + 2
    stop.event.set()
    thread.join(60)
    assert not thread.is_alive()
    pub.close()
    ctx.term()
    latest = s.paths.data_dir / "train" / "checkpoints" / "latest.pt"
    assert latest.exists()

    out = tmp_path / "translated"
    inputs = sorted((s.paths.data_dir / "patches" / "movie" / "FULL-BODY-FRONT").glob("*.png"))[:2]
    cfg = str(s.source)
    assert main(["translate", "--checkpoint", str(latest), "--direction", "movie2game", "--out", str(out),
                 "--config", cfg, *map(str, inputs)]) == 0
    images = sorted(out.glob("*.png"))
    # The generator works at 32 px (pix2pix_image_size); what comes back has the input's size (48 px) by default.
    assert len(images) == 2 and cv2.imread(str(images[0])).shape == (48, 48, 3)
    sized = tmp_path / "sized"
    assert main(["translate", "--checkpoint", str(latest), "--direction", "movie2game", "--out", str(sized),
                 "--size", "100", "--config", cfg, str(inputs[0])]) == 0
    assert cv2.imread(str(next(sized.glob("*.png")))).shape == (100, 100, 3)
    assert main(["translate", "--checkpoint", str(latest), "--direction", "up2down", "--out", str(out),
                 "--config", cfg, str(inputs[0])]) == 1
    assert main(["translate", "--checkpoint", str(latest), "--direction", "movie2game", "--out", str(out),
                 "--size", "0", "--config", cfg, str(inputs[0])]) == 1


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_trainer_refreshes_on_its_timer_alone_and_checkpoints_on_shutdown(tmp_path):
    """No index and no event socket: only train.refresh_every_s can bring new pairs in. checkpoint_every is out of
    reach, so the one checkpoint is the one written on shutdown, holding every step taken. Then `translate`
    uses the generator --model names (CycleGAN trains at another size than pix2pix here, so they tell apart)."""
    s = make_settings(tmp_path, refresh_every_s=1.0, checkpoint_every=1_000_000, cyclegan_image_size=48)
    add_pairs(s, 2, 0)  # too few to train
    prepare_runtime_dir(s)
    dataset = [counters.TRAIN_DATASET.labels("pix2pix", split) for split in ("train", "val", "test")]
    for gauge in dataset:
        gauge.set(-1)  # another test's value must not pass for this trainer's
    steps_metric = {n: counters.TRAIN_STEPS.labels(n) for n in counters.train_model_names(s.domains)}
    base = {n: m._value.get() for n, m in steps_metric.items()}
    stop = fabric.StopFlag()
    thread = threading.Thread(target=run_stage, args=("train", s, 0, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: sum(g._value.get() for g in dataset) == 2, 60, "the first refresh")
        add_pairs(s, 12, 100)
        wait_until(lambda: sum(g._value.get() for g in dataset) == 14, 60, "a refresh on the timer")
        wait_until(lambda: all(m._value.get() >= base[n] + 2 for n, m in steps_metric.items()), 120,
                   "every model to train")
        latest = s.paths.data_dir / "train" / "checkpoints" / "latest.pt"
        assert not latest.exists(), "a checkpoint before shutdown: the test cannot tell shutdown's apart"
    finally:
        stop.event.set()
        thread.join(60)
    assert not thread.is_alive()
    state = load_checkpoint(latest)
    assert {n: state["models"][n]["step"] for n in steps_metric} == {
        n: m._value.get() - base[n] for n, m in steps_metric.items()}

    inputs = sorted((s.paths.data_dir / "patches" / "movie" / "FULL-BODY-FRONT").glob("*.png"))[:2]
    cfg = ["--config", str(s.source)]
    out = {}
    for model, direction in (("pix2pix", "movie2game"), ("cyclegan", "movie2game"), ("cyclegan", "game2movie")):
        folder = tmp_path / f"{model}-{direction}"
        assert main(["translate", "--checkpoint", str(latest), "--model", model, "--direction", direction,
                     "--out", str(folder), *cfg, *map(str, inputs)]) == 0
        images = sorted(folder.glob("*.png"))
        assert len(images) == 2
        out[model, direction] = cv2.imread(str(images[0]))
    # Every output at its input's size (48 px patches), whatever size the model trained at.
    assert out["pix2pix", "movie2game"].shape == (48, 48, 3)
    assert out["cyclegan", "movie2game"].shape == out["cyclegan", "game2movie"].shape == (48, 48, 3)
    assert not np.array_equal(out["cyclegan", "movie2game"], out["cyclegan", "game2movie"]), \
        "both directions gave the same image: one generator used for both"


def test_train_command(tmp_path, capsys):
    s = make_settings(tmp_path)
    cfg = str(s.source)
    assert main(["train", "--steps", "1", "--config", cfg]) == 1  # no catalog yet
    add_pairs(s, 2, 0)
    assert main(["train", "--steps", "1", "--config", cfg]) == 1
    assert "not enough data" in capsys.readouterr().err
    add_pairs(s, 10, 100)
    assert main(["train", "--steps", "2", "--config", cfg]) == 0
    assert "for 2 steps each" in capsys.readouterr().out


def test_one_trainer_per_data_folder(tmp_path, capsys, monkeypatch):
    """`humanstyle train` beside a daemon that trains would overwrite each other's latest.pt. The daemon's trainer
    waits while another holds the data folder's trainer lock and then resumes from that one's checkpoint; the
    command refuses while the daemon's trainer holds it."""
    monkeypatch.setattr(TrainHandler, "LOCK_RETRY_S", 0.2)
    lines: list[str] = []
    said = logging.Handler()
    said.emit = lambda record: lines.append(record.getMessage())
    monkeypatch.setattr(logging.getLogger("humanstyle.train"), "handlers", [said])
    s = make_settings(tmp_path, refresh_every_s=1.0, checkpoint_every=1_000_000)
    add_pairs(s, 12, 0)
    cfg = str(s.source)
    assert main(["train", "--steps", "2", "--config", cfg]) == 0
    other = TrainerLock(s.paths.data_dir / "train", "another trainer")
    assert other.acquire()
    prepare_runtime_dir(s)
    steps_metric = counters.TRAIN_STEPS.labels("pix2pix-movie2game")
    base = steps_metric._value.get()
    stop = fabric.StopFlag()
    thread = threading.Thread(target=run_stage, args=("train", s, 0, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: any("waiting: another trainer is training" in line and "another trainer, pid" in line
                               for line in lines), 60, "the trainer saying who holds the data folder")
        time.sleep(1.5)  # several lock retries
        assert steps_metric._value.get() == base, "trained while another trainer held the data folder"
        other.release()
        wait_until(lambda: steps_metric._value.get() >= base + 2, 60, "training once the lock was free")
        capsys.readouterr()
        assert main(["train", "--steps", "1", "--config", cfg]) == 1
        assert "the daemon's trainer, pid" in capsys.readouterr().err
    finally:
        stop.event.set()
        thread.join(60)
    assert not thread.is_alive()
    trained = steps_metric._value.get() - base
    step = load_checkpoint(s.paths.data_dir / "train" / "checkpoints" / "latest.pt")["models"]["pix2pix-movie2game"]
    assert step["step"] == 2 + trained  # resumed from the command's checkpoint, not from scratch


@pytest.mark.parametrize("bad", ["missing.pt", "garbage.pt"])
def test_translate_rejects_unusable_checkpoints(tmp_path, bad):
    s = make_settings(tmp_path)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert main(["translate", "--checkpoint", str(tmp_path / bad), "--direction", "movie2game", "--out",
                 str(tmp_path / "o"), "--config", str(s.source), str(img)]) == 1


def test_an_incremental_refresh_reads_what_a_full_reload_reads(tmp_path):
    """After each step of a sequence of additions and verdicts (bad, restored, good), the trainer's data refreshed
    from its watermark equals the data read in full: the same lists in the same order, the same digest; and a
    refresh reads only the rows above the watermark."""
    s = make_settings(tmp_path, val_fraction=0.25, test_fraction=0.25)
    trainer = Trainer(s, "cpu")
    reader = Catalog(s.paths.catalog, readonly=True) if s.paths.catalog.exists() else None
    writer_steps = [
        lambda w: add_pairs(s, 12, 0),
        lambda w: (w.set_verdict(2, "bad"), w.set_verdict(5, "bad"), w.set_verdict(7, "good")),
        lambda w: add_pairs(s, 6, 100),
        lambda w: (w.set_verdict(2, ""), w.set_verdict(13, "bad")),  # one restored, one of the new ones dropped
        lambda w: add_patches(s, "movie", 3, 500, seed=9),  # unpaired patches only
        lambda w: tuple(w.set_verdict(i, "bad") for i in range(1, 19)),  # every pair bad
        lambda w: (w.set_verdict(4, "good"),) + tuple(w.set_verdict(i, "") for i in range(10, 19)),
    ]
    for step in writer_steps:
        writer = Catalog(s.paths.catalog)
        step(writer)
        writer.close()
        reader = reader or Catalog(s.paths.catalog, readonly=True)
        trainer.refresh(reader)
        full = load_training_data(reader, trainer.storage, ("movie", "game"), 0.25, 0.25, trainer.data.upto)
        for part in ("pairs", "side_a", "side_b", "pair_ids"):
            assert getattr(trainer.data, part) == getattr(full, part), part
        assert trainer.data.digest == full.digest == data_digest(full)
        for split in SPLITS:  # the datasets read the data's own lists
            if trainer.data.pairs[split] and split in ("train", "val"):
                target = trainer.datasets if split == "train" else trainer.val_sets
                assert target["pix2pix-movie2game"].pairs is trainer.data.pairs[split]
    assert sum(len(v) for v in trainer.data.pairs.values()) == 10  # 18 pairs, 8 still bad
    assert trainer.read_delta(reader, reader.watermark()).__bool__() is False  # nothing new: nothing read
    reader.close()
    trainer.close()


def test_a_new_best_renders_a_preview_that_the_training_view_plays(tmp_path):
    """Issue 27, item 3: after a validation pass that improves the best checkpoint, a few seconds of a watched video
    of the model's domain, translated by it (translate-video's path), newest first on the training view."""
    import sqlite3

    import av

    from humanstyle.daemon.web.app import create_app
    from humanstyle.stages.train.preview import PREVIEW_KEEP, Previewer, list_previews

    clip = Path(__file__).resolve().parents[1] / "data" / "video" / "flipping_a_pancake.mkv"
    s = make_settings(tmp_path, val_fraction=0.5, preview_s=0.5, preview_on_cpu=True)
    add_pairs(s, 12, 0)
    with sqlite3.connect(s.paths.catalog) as db:  # the movie rows' video becomes a real, finished clip
        db.execute("UPDATE videos SET path = ?, status = 'done' WHERE domain = 'movie'", (str(clip),))
    trainer = Trainer(s, "cpu")
    assert trainer.previewer is not None
    trainer.refresh(Catalog(s.paths.catalog, readonly=True))
    assert trainer.validate("pix2pix-movie2game") is not None  # the first pass is a new best
    root = s.paths.data_dir / "train"
    [preview] = list_previews(root, "pix2pix-movie2game")
    assert preview.domain == "movie" and preview.step == 0
    with av.open(str(preview.path)) as c:
        frames = list(c.decode(video=0))
    assert 14 <= len(frames) <= 16 and frames[0].time == 0  # 0.5 s at 30 fps, from the preview's own start
    assert not list_previews(root, "pix2pix-game2movie"), "no game video is finished: nothing to render"

    client = create_app(s, lambda: {"status": "ok", "uptime_s": 0, "stages": {}}).test_client()
    host = {"Host": s.metrics.listen}
    page = client.get("/training", headers=host).get_data(as_text=True)
    assert 'id="previews-pix2pix-movie2game"' in page and "step 0: movie footage → game" in page
    video = client.get(f"/video/preview/pix2pix-movie2game/{preview.path.name}", headers=host)
    assert video.status_code == 200 and video.mimetype == "video/mp4" and video.data == preview.path.read_bytes()
    for bad in ("..%2F..%2Fconfig.toml", "step-00000000-movie.mkv", "step-1-movie.mp4"):
        assert client.get(f"/video/preview/pix2pix-movie2game/{bad}", headers=host).status_code == 404
    assert client.get(f"/video/preview/other/{preview.path.name}", headers=host).status_code == 404

    # Only the newest PREVIEW_KEEP stay.
    for step in range(1, PREVIEW_KEEP + 3):
        (root / "previews" / "pix2pix-movie2game" / f"step-{step:08d}-movie.mp4").write_bytes(b"x")
    Previewer(s, trainer.storage, "cpu").prune("pix2pix-movie2game")
    assert [p.step for p in list_previews(root, "pix2pix-movie2game")] == list(range(PREVIEW_KEEP + 2, 2, -1))
