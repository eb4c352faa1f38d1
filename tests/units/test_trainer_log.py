"""What the trainer tells a person: the data each model waits for, when it starts, the missing validation split,
validation passes, checkpoints and the data growing in the log; the same in state.json and validation.jsonl for
the web page; and a pair marked bad leaves its datasets at the next refresh."""

from __future__ import annotations

import logging

from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.train.state import read_state, read_validation
from humanstyle.stages.train.trainer import Trainer
from tests.units.test_trainer import add_pairs, make_settings


def test_the_log_says_what_each_model_waits_for_then_that_it_starts(tmp_path, caplog):
    settings = make_settings(tmp_path, min_pairs=6, min_patches=6, val_fraction=0.0, test_fraction=0.0)
    add_pairs(settings, 3, 0)
    trainer = Trainer(settings, "cpu")
    cat = Catalog(settings.paths.catalog, readonly=True)
    with caplog.at_level(logging.INFO, logger="humanstyle.train"):
        trainer.refresh(cat)
    text = caplog.text
    assert "pix2pix-movie2game needs 6 training pairs, has 3" in text
    assert "cyclegan needs 6 training patches per domain, has movie 3, game 3" in text
    state = read_state(settings.paths.data_dir / "train")["models"]
    assert state["pix2pix-game2movie"]["waiting"] == "pix2pix-game2movie needs 6 training pairs, has 3"
    assert not state["cyclegan"]["ready"]

    caplog.clear()
    add_pairs(settings, 4, 100)
    with caplog.at_level(logging.INFO, logger="humanstyle.train"):
        trainer.refresh(cat)
    assert "pix2pix-movie2game: training from step 0 on 7 pairs" in caplog.text
    assert "pix2pix-movie2game, pix2pix-game2movie: 7 training pairs (+4)" in caplog.text  # the data grew
    assert "cyclegan: 7 movie and 7 game training patches (+4, +4)" in caplog.text
    # val_fraction 0: nothing to validate on, and it says so instead of never choosing a best checkpoint.
    assert "pix2pix-movie2game has no validation pairs yet (train.val_fraction = 0.0)" in caplog.text
    assert "no best checkpoint" in read_state(settings.paths.data_dir / "train")["models"]["cyclegan"][
        "no_validation"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="humanstyle.train"):
        trainer.refresh(cat)  # nothing changed: nothing said again
    assert caplog.text == ""
    cat.close()


def test_validation_and_checkpoints_are_logged_and_recorded(tmp_path, caplog):
    settings = make_settings(tmp_path, val_fraction=0.5, test_fraction=0.0, validate_every=2)
    add_pairs(settings, 10, 0)
    trainer = Trainer(settings, "cpu")
    cat = Catalog(settings.paths.catalog, readonly=True)
    trainer.refresh(cat)
    name = "pix2pix-movie2game"
    assert name in trainer.val_sets
    with caplog.at_level(logging.INFO, logger="humanstyle.train"):
        for _ in range(4):
            trainer.train_step(name)
        trainer.save()
    assert f"{name}: validation" in caplog.text and "a new best" in caplog.text
    assert "checkpoint written" in caplog.text
    root = settings.paths.data_dir / "train"
    assert [step for step, _ in read_validation(root).curves[name]] == [2, 4]
    state = read_state(root)
    assert state["models"][name]["best"]["step"] in (2, 4) and state["checkpoint"]["steps"][name] == 4

    # A pair marked bad leaves the datasets at the next refresh.
    before = sum(len(v) for v in trainer.data.pairs.values())
    writer = Catalog(settings.paths.catalog)
    assert writer.set_verdict(1, "bad")
    writer.close()
    trainer.refresh(cat)
    assert sum(len(v) for v in trainer.data.pairs.values()) == before - 1
    cat.close()
