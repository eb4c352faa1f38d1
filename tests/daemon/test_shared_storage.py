"""The head and a trainer on another machine share state through PostgreSQL (catalog.url) and S3 (storage.url, a
loopback moto server): the daemon writes patches and masks to the bucket and rows to PostgreSQL, never to its data
folder; a trainer in another process, with its own empty data folder and the head's out of reach, trains from those
two alone and writes its checkpoints and samples to the bucket; `export`, `translate` and `status` read from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from humanstyle.daemon.cli.main import main
from tests.conftest import write_config
from tests.reliability_helpers import (
    all_finished,
    drop_in_both_domains,
    reliability_sections,
    running_daemon,
    snapshot,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"enabled": True, "threads": 1, "nice": 0, "min_pairs": 1, "min_patches": 1, "sample_every": 2,
         "validate_every": 2, "checkpoint_every": 1000, "val_fraction": 0.0, "test_fraction": 0.0,
         "pix2pix_image_size": 32, "pix2pix_batch_size": 2, "pix2pix_ngf": 4, "pix2pix_ndf": 4,
         "cyclegan_image_size": 32, "cyclegan_batch_size": 1, "cyclegan_ngf": 4, "cyclegan_ndf": 4,
         "cyclegan_blocks": 1}


def test_a_trainer_on_another_machine_trains_from_postgresql_and_s3_alone(tmp_path, postgres_url, s3_bucket,
                                                                          capsys):
    shared = {"catalog": {"url": postgres_url},
              "storage": {"url": s3_bucket.url, "endpoint_url": s3_bucket.endpoint}}
    head = tmp_path / "head"
    head.mkdir()
    with running_daemon(head, **shared, decode={"burst_frames": 0}, detect={"patch_size": 64}) as d:
        drop_in_both_domains(head, "clip.mp4", seconds=2.0)
        d.wait_for(lambda: all_finished(head / "data", 2, postgres_url), 240, "both videos")
    snap = snapshot(head / "data", postgres_url)
    # The invariants of tests/RELIABILITY.md, files aside (none are local: the bucket is checked below).
    assert {s for s, _ in snap.videos.values()} == {"done"}
    assert all(n == 0 for n in snap.duplicates.values()) and snap.csv_mismatches == []
    assert snap.counts["patches"] > 0 and snap.counts["pairs"] > 0
    assert not (head / "data" / "patches").exists() and not (head / "data" / "catalog.sqlite").exists()
    # The bucket holds exactly each row's image and mask, nothing else.
    import psycopg

    with psycopg.connect(postgres_url) as db:
        rows = [p for (p,) in db.execute("SELECT path FROM patches WHERE path != ''")]
    expected = {p for r in rows for p in (r, str(Path(r).with_suffix(".mask.png")))}
    assert {n for n in s3_bucket.names() if n.startswith("patches/")} == expected
    os.rename(head / "data", head / "data-out-of-reach")  # the other machine cannot see the head's folder

    other = tmp_path / "other"
    other.mkdir()
    sections = reliability_sections(other, **shared, train=TRAIN)
    cfg = write_config(other, sections)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "humanstyle.daemon.cli", "train", "--steps", "3", "--config",
                          str(cfg)], capture_output=True, text=True, env=env, cwd=other, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"checkpoint: {s3_bucket.url}/train/checkpoints/latest.pt" in run.stdout
    names = s3_bucket.names()
    assert "train/checkpoints/latest.pt" in names
    assert any(n.startswith("train/samples/pix2pix-movie2game/") for n in names)
    assert any(n.startswith("train/samples/cyclegan/") for n in names)
    cached = list((other / "data" / "cache" / "patches").rglob("*.png"))
    assert len(cached) == snap.counts["patches"] - sum(v == "REJECTED" for *_, v in snap.patches)

    # export and translate on the other machine read the catalog and the bucket too.
    capsys.readouterr()
    assert main(["export", "--format", "pix2pix", str(other / "export"), "--size", "32", "--config", str(cfg)]) == 0
    assert f"exported {snap.counts['pairs']} of {snap.counts['pairs']} items" in capsys.readouterr().out
    image = next((other / "export" / "train").glob("*.jpg"))
    assert cv2.imread(str(image)).shape == (32, 64, 3)
    for checkpoint in ([], ["--checkpoint", f"{s3_bucket.url}/train/checkpoints/latest.pt"]):
        out = other / f"translated{len(checkpoint)}"
        assert main(["translate", *checkpoint, "--direction", "movie2game", "--out", str(out), "--config", str(cfg),
                     str(cached[0])]) == 0
        # translated at the training size, returned at the input's (the patch as the daemon cut it)
        assert cv2.imread(str(next(out.glob("*.png")))).shape == cv2.imread(str(cached[0])).shape
    assert main(["status", "--config", str(cfg)]) == 0
    assert f"pairs: {snap.counts['pairs']}" in capsys.readouterr().out
