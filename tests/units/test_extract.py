"""One-shot extraction over real random-init models: the anchor/burst rule, the catalog and the CLI's exit codes."""

from __future__ import annotations

import sqlite3

import pytest

from humanstyle.daemon import config
from humanstyle.daemon.cli.main import main
from humanstyle.stages.tools.extract import extract_video
from tests.conftest import fast_sections, write_config
from tests.media import make_clip, make_non_video


def settings_for(tmp_path, **detect) -> config.Settings:
    return config.load(write_config(tmp_path, fast_sections(tmp_path, detect=detect)))


@pytest.fixture(scope="module")
def clip3(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("media") / "three.mp4", 3, fps=24, size=(320, 240))


def test_every_anchor_hit_runs_its_burst(tmp_path, clip3):
    s = settings_for(tmp_path, score_threshold=0.0)
    summary = extract_video(s, clip3, "movie")
    assert summary.status == "done" and summary.windows == 3
    assert summary.frames == {"anchor": 3, "burst": 12}
    db = sqlite3.connect(s.paths.data_dir / "catalog.sqlite")
    rows = db.execute("SELECT kind, view, reason, frame_index, person_index FROM patches").fetchall()
    assert rows, "threshold 0.0 must yield patches"
    assert {r[0] for r in rows} == {"anchor", "burst"}
    assert {r[3] for r in rows if r[0] == "anchor"} <= {23, 47, 71}
    assert len(rows) <= 15 * 2  # max_persons = 2 per frame
    for _kind, view, reason, _f, _p in rows:
        assert view in ("FULL-BODY-FRONT", "HEAD-AND-SHOULDER-FRONT", "FULL-BODY-BACK", "HEAD-AND-SHOULDER-BACK",
                        "REJECTED")
        assert (view == "REJECTED") == bool(reason)
    assert db.execute("SELECT status FROM videos").fetchone()[0] == "done"


def test_no_anchor_hit_means_no_burst(tmp_path, clip3):
    summary = extract_video(settings_for(tmp_path, score_threshold=1.0), clip3, "movie")
    assert summary.frames == {"anchor": 3, "burst": 0}
    assert sum(summary.views.values()) == 0


def test_the_same_video_is_not_processed_twice(tmp_path, clip3):
    s = settings_for(tmp_path, score_threshold=1.0)
    assert extract_video(s, clip3, "movie").status == "done"
    again = extract_video(s, clip3, "movie")
    assert again.status == "duplicate"


def test_cli_exit_codes(tmp_path, clip3, capsys):
    cfg = write_config(tmp_path, fast_sections(tmp_path, detect={"score_threshold": 1.0}))
    assert main(["extract", str(clip3), "--domain", "movie", "--config", str(cfg)]) == 0
    assert "anchor=3 burst=0" in capsys.readouterr().out
    junk = make_non_video(tmp_path / "notes.mp4")
    assert main(["extract", str(junk), "--domain", "game", "--config", str(cfg)]) == 1
    assert "failed (not_a_video)" in capsys.readouterr().out
    assert main(["extract", str(clip3), "--domain", "tv", "--config", str(cfg)]) == 2
    assert main(["extract", str(tmp_path / "missing.mp4"), "--domain", "game", "--config", str(cfg)]) == 1
