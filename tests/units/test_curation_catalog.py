"""Pair verdicts in the catalog and the web page's keyset pages:

- a catalog of the previous release (no verdict column) gains it at open, keeping every pair; a reader opened
  before that upgrade sees the column once the writer adds it (a long-lived trainer needs no restart);
- a bad pair leaves `pairs()` (what training, pairs.csv and the exports read) and comes back when marked good;
  verdicts survive closing and reopening;
- the index applies a PairVerdict record: counted, unknown pairs refused; the pairing stage then rewrites
  pairs.csv without bad pairs;
- pair_page walks every pair exactly once in the requested order, by keyset, with view and verdict filters.
"""

from __future__ import annotations

import csv
import random

import pytest

from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.vocabulary import VIEWS
from tests import catalog_rows
from tests.units.test_catalog_upgrade import old_catalog


def add_patch(cat: Catalog, video_id: int, domain: str, frame: int, view: str) -> int:
    return catalog_rows.add_patch(cat, video_id, domain, frame, view, timestamp=frame / 10)


@pytest.fixture
def filled(tmp_path):
    """A catalog with 60 pairs over the four views, similarities with ties."""
    cat = Catalog(tmp_path / "catalog.sqlite")
    movie, _ = cat.add_video("fp-m", "/w/movie/m.mp4", "movie", 1, 0.0)
    game, _ = cat.add_video("fp-g", "/w/game/g.mp4", "game", 1, 0.0)
    rng = random.Random(3)
    for i in range(60):
        view = VIEWS[i % 4]
        a = add_patch(cat, movie.id, "movie", i, view)
        b = add_patch(cat, game.id, "game", i, view)
        assert cat.add_pair(a, b, view, rng.choice((0.99, 0.995, 0.999, 1.0)), mirrored=i % 3 == 0)
    yield cat
    cat.close()


def test_an_old_catalog_gains_the_verdict_column_and_a_waiting_reader_sees_it(tmp_path):
    path = tmp_path / "catalog.sqlite"
    old_catalog(path)
    reader = Catalog(path, readonly=True)  # opened before the writer upgraded it
    assert [(r["id"], r["verdict"]) for r in reader.pair_page()] == [(1, "")]
    writer = Catalog(path)
    assert writer.set_verdict(1, "bad")
    assert reader.pairs() == []  # the reader looked again and found the column
    assert reader.verdict_counts() == {"bad": 1}
    writer.close()
    reader.close()


def test_a_bad_pair_leaves_pairs_and_comes_back_when_good(filled, tmp_path):
    every = [r["id"] for r in filled.pairs()]
    assert filled.set_verdict(every[5], "bad") and filled.set_verdict(every[7], "good")
    assert not filled.set_verdict(every[5], "bad")  # no change
    assert not filled.set_verdict(10_000, "bad")  # no such pair
    assert [r["id"] for r in filled.pairs()] == every[:5] + every[6:]
    assert len(filled.pairs(include_bad=True)) == len(every)
    filled.close()
    again = Catalog(tmp_path / "catalog.sqlite", readonly=True)  # survives a restart
    assert again.verdict_counts() == {"": 58, "bad": 1, "good": 1}
    assert [r["id"] for r in again.pairs()] == every[:5] + every[6:]
    again.close()
    writer = Catalog(tmp_path / "catalog.sqlite")
    assert writer.set_verdict(every[5], "good")
    assert [r["id"] for r in writer.pairs()] == every
    writer.close()


@pytest.mark.parametrize("order", ["recent", "similarity", "similarity_asc"])
@pytest.mark.parametrize("view", [None, VIEWS[1]])
def test_keyset_pages_walk_every_pair_once_in_order(filled, order, view):
    rows = filled.pair_page(view=view, order=order, limit=1000)
    key = {"recent": lambda r: -r["id"], "similarity": lambda r: (-r["similarity"], -r["id"]),
           "similarity_asc": lambda r: (r["similarity"], r["id"])}[order]
    assert [r["id"] for r in rows] == [r["id"] for r in sorted(rows, key=key)]
    assert len(rows) == (60 if view is None else 15) and all(view in (None, r["view"]) for r in rows)
    walked, after = [], None
    while True:
        page = filled.pair_page(view=view, order=order, limit=7, after=after)
        if not page:
            break
        walked += [r["id"] for r in page]
        after = (page[-1]["similarity"], page[-1]["id"])
    assert walked == [r["id"] for r in rows]


def test_the_verdict_filter_and_what_a_page_row_carries(filled):
    first = filled.pair_page(limit=1)[0]
    assert filled.set_verdict(first["id"], "bad")
    assert [r["id"] for r in filled.pair_page(verdict="bad")] == [first["id"]]
    assert len(filled.pair_page(verdict="")) == 59
    row = filled.pair(first["id"])
    assert row["verdict"] == "bad" and row["a_video"] == "/w/movie/m.mp4" and row["b_video"] == "/w/game/g.mp4"
    assert row["a_timestamp"] == pytest.approx(5.9) and row["mirrored"] in (0, 1)
    with pytest.raises(ValueError):
        filled.pair_page(order="random")


def test_the_index_applies_verdicts_and_the_pairing_stage_rewrites_pairs_csv(tmp_path):
    from humanstyle.daemon import config
    from humanstyle.stages import counters
    from humanstyle.stages.handler import ListOutbox
    from humanstyle.stages.index.stage import IndexHandler
    from humanstyle.stages.pairing.stage import PairingHandler
    from humanstyle.stages.records import PairVerdict
    from tests.conftest import fast_sections, write_config

    settings = config.load(write_config(tmp_path, fast_sections(tmp_path)))
    settings.paths.data_dir.mkdir(parents=True)
    cat = Catalog(settings.paths.catalog)
    movie, _ = cat.add_video("fp-m", "/w/movie/m.mp4", "movie", 1, 0.0)
    game, _ = cat.add_video("fp-g", "/w/game/g.mp4", "game", 1, 0.0)
    for i in range(3):
        a, b = add_patch(cat, movie.id, "movie", i, VIEWS[0]), add_patch(cat, game.id, "game", i, VIEWS[0])
        cat.add_pair(a, b, VIEWS[0], 0.99)
    cat.close()
    index = IndexHandler(settings)
    index.start(out=None)
    pairing = PairingHandler(settings)
    pairing.start(ListOutbox())
    with open(settings.paths.data_dir / "pairs.csv", newline="") as fh:
        assert [int(r["pair_id"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    bad_before = counters.PAIRS_CURATED.labels("bad")._value.get()
    rejected_before = counters.MESSAGES_REJECTED.labels("index", "unknown_pair")._value.get()
    index.on_verdict(PairVerdict(pair_id=2, verdict="bad"))
    index.on_verdict(PairVerdict(pair_id=2, verdict="bad"))  # the same again: not counted twice
    index.on_verdict(PairVerdict(pair_id=99, verdict="bad"))
    assert counters.PAIRS_CURATED.labels("bad")._value.get() == bad_before + 1
    assert counters.MESSAGES_REJECTED.labels("index", "unknown_pair")._value.get() == rejected_before + 1
    pairing.follow_verdicts()  # what its next tick does: the catalog numbered the change
    with open(settings.paths.data_dir / "pairs.csv", newline="") as fh:
        assert [int(r["pair_id"]) for r in csv.DictReader(fh)] == [1, 3]
    pairing.close()
    index.close()
