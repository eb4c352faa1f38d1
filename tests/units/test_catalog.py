"""The catalog's promises, each run against both backends: SQLite (the default) and PostgreSQL (catalog.url, on the
throwaway server .ci/services.sh starts). Idempotent writes, what readers see, watermarks, transactions, the
versioned schema and its upgrade from a catalog of the first release."""

from __future__ import annotations

import numpy as np
import pytest

from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.catalog_sql import LATEST, MIGRATIONS, CatalogError, connect, migrate
from tests import catalog_rows

VIEW = "FULL-BODY-FRONT"


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a catalog lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "catalog.sqlite"
    return request.getfixturevalue("postgres_url")


def patch_fields(video_id: int, frame: int, person: int = 0, domain: str = "movie", view: str = VIEW) -> dict:
    return catalog_rows.patch_fields(video_id, domain, frame, view, window_index=frame // 4, person_index=person,
                                     timestamp=frame / 24, box=[1, 2, 3, 4], square=[0, 0, 5, 5], score=0.875)


def test_videos_are_keyed_by_fingerprint_and_every_path_is_remembered(target):
    cat = Catalog(target)
    big = 5 * 2**31  # a video over 4 GiB: sizes are 64-bit on both backends
    video, created = cat.add_video("fp1", "/w/movie/a.mp4", "movie", big, 1700000000.123456)
    assert created and video.status == "queued" and video.attempt == 0
    again, created = cat.add_video("fp1", "/w/movie/copy.mp4", "movie", big, 1700000001.5)
    assert not created and again.id == video.id and again.path == "/w/movie/a.mp4"
    assert cat.known_file("/w/movie/a.mp4", big, 1700000000.123456)  # doubles keep every digit
    assert cat.known_file("/w/movie/copy.mp4", big, 1700000001.5)
    assert not cat.known_file("/w/movie/a.mp4", big, 1700000000.0)
    cat.add_video("fp1", "/w/movie/a.mp4", "movie", big, 1700000002.0)  # the same path, touched: updated in place
    assert cat.known_file("/w/movie/a.mp4", big, 1700000002.0)
    failed, _ = cat.add_video("fp2", "/w/game/x.txt", "game", 3, 0.0, status="failed", reason="not_a_video")
    cat.set_video_status(video.id, "processing", attempt=1)
    assert [v.id for v in cat.videos_with_status("processing")] == [video.id]
    cat.set_video_status(video.id, "done", windows=7, frames_read=170)
    assert cat.video(video.id).status == "done" and cat.video(video.id).attempt == 1  # attempt kept
    assert cat.video(failed.id).reason == "not_a_video" and cat.video(999) is None
    assert sorted(cat.counts()["videos"]) == [("game", "failed", 1), ("movie", "done", 1)]
    cat.close()


def test_patches_and_pairs_are_written_once_and_read_back(target):
    cat = Catalog(target)
    video, _ = cat.add_video("fp", "/v.mp4", "movie", 1, 0.0)
    keypoints = np.arange(51, dtype=np.float32).reshape(17, 3) / 7
    first, indexed = cat.add_patch(patch_fields(video.id, 3), keypoints, "patches/movie/a.png")
    assert not indexed
    assert cat.add_patch(patch_fields(video.id, 3), keypoints, "patches/movie/other.png") == (first, False)
    second, _ = cat.add_patch(patch_fields(video.id, 3, person=1, domain="game"), keypoints, "patches/game/b.png")
    rejected, _ = cat.add_patch(patch_fields(video.id, 4, view="REJECTED"), None, "")
    assert cat.patch_id(video.id, 3, 1) == second and cat.patch_id(video.id, 9, 0) is None
    assert [r["id"] for r in cat.unindexed_patches()] == [first, second]  # rejected ones are never indexed
    cat.mark_indexed([first])
    assert cat.add_patch(patch_fields(video.id, 3), keypoints, "x") == (first, True)
    rows = list(cat.indexed_keypoints())
    assert [(r["id"], r["domain"]) for r in rows] == [(first, "movie")]
    assert np.array_equal(np.frombuffer(rows[0]["keypoints"], np.float32).reshape(17, 3), keypoints)
    assert cat.patch_paths() == [(first, "patches/movie/a.png", VIEW), (second, "patches/game/b.png", VIEW)]
    assert cat.patch_paths("game") == [(second, "patches/game/b.png", VIEW)]

    with cat.transaction():
        assert cat.add_pair(first, second, VIEW, 0.9912345678901234, mirrored=True)
        assert not cat.add_pair(first, second, VIEW, 0.5)  # known: unchanged
    (pair,) = cat.pairs()
    assert (pair["a_patch_id"], pair["b_patch_id"], pair["mirrored"], pair["a_path"], pair["b_path"]) == (
        first, second, 1, "patches/movie/a.png", "patches/game/b.png")
    assert pair["similarity"] == 0.9912345678901234  # a double, not PostgreSQL's 4-byte REAL
    assert tuple(pair)[0] == pair["id"] and cat.pair_count() == 1
    assert [r["id"] for r in cat.latest_pairs(1)] == [pair["id"]]
    counts = cat.counts()
    assert sorted(counts["patches"]) == [("game", VIEW, 1), ("movie", VIEW, 1), ("movie", "REJECTED", 1)]
    assert counts["pairs"] == [(VIEW, 1)] and counts["rejections"] == [("movie", "", 1)]
    assert rejected not in [p for p, _, _ in cat.patch_paths()]
    cat.close()


def test_a_failed_transaction_leaves_nothing(target):
    cat = Catalog(target)
    video, _ = cat.add_video("fp", "/v.mp4", "movie", 1, 0.0)
    a, _ = cat.add_patch(patch_fields(video.id, 1), None, "a.png")
    b, _ = cat.add_patch(patch_fields(video.id, 2, domain="game"), None, "b.png")
    with pytest.raises(RuntimeError), cat.transaction():
        cat.add_pair(a, b, VIEW, 0.9)
        raise RuntimeError("the pose store refused the batch")
    assert cat.pair_count() == 0
    cat.rollback()  # nothing left open: a no-op
    assert cat.add_pair(a, b, VIEW, 0.9) and cat.pair_count() == 1
    cat.close()


def test_a_watermark_gives_every_reader_the_same_rows(target):
    """Patches follow the pairing stage's order (paired_seq), not their ids: with several machines writing, a patch
    with a lower id can commit after a higher one, and a watermark of ids would skip it for good."""
    writer = Catalog(target)
    reader = Catalog(target, readonly=True)
    assert reader.watermark() == (0, 0, 0)
    video, _ = writer.add_video("fp", "/v.mp4", "movie", 1, 0.0)
    ids = [writer.add_patch(patch_fields(video.id, f, domain=d), None, f"{d}{f}.png")[0]
           for f, d in ((1, "movie"), (2, "game"), (3, "movie"), (4, "game"))]
    writer.mark_indexed([ids[1], ids[0], ids[3]])  # paired in this order; ids[2] (a late commit) not yet
    writer.add_pair(ids[0], ids[1], VIEW, 0.9)
    mark = reader.watermark()
    assert mark == (1, 3, 0)
    assert [p for p, _, _ in reader.training_patches("movie", mark[1])] == [ids[0]]
    writer.mark_indexed([ids[2]])  # paired after the mark was read...
    writer.add_pair(ids[2], ids[3], VIEW, 0.9)
    assert len(reader.pairs(upto=mark[0])) == 1  # ...and is not read below it
    assert [p for p, _, _ in reader.training_patches("movie", mark[1])] == [ids[0]]
    later = reader.watermark()
    assert later == (2, 4, 0)
    assert [p for p, _, _ in reader.training_patches("movie", later[1], after=mark[1])] == [ids[2]]
    assert [p for p, _, _ in reader.training_patches("game", later[1])] == [ids[1], ids[3]]
    assert [r["id"] for r in reader.pairs(after=1)] == [2]
    assert [p for p, _, _ in reader.patch_paths("movie")] == [ids[0], ids[2]]  # every kept patch, by id
    reader.close()
    writer.close()


def test_verdict_changes_are_numbered_for_readers_that_ask_only_for_the_new_ones(target):
    writer = Catalog(target)
    video, _ = writer.add_video("fp", "/v.mp4", "movie", 1, 0.0)
    ids = [writer.add_patch(patch_fields(video.id, f, domain=d), None, f"{d}{f}.png")[0]
           for f, d in ((1, "movie"), (2, "game"), (3, "movie"), (4, "game"))]
    writer.add_pair(ids[0], ids[1], VIEW, 0.9)
    writer.add_pair(ids[2], ids[3], VIEW, 0.9)
    assert writer.set_verdict(1, "bad") and not writer.set_verdict(1, "bad")  # the same verdict is no change
    mark = writer.watermark()
    assert mark == (2, 0, 1)  # no patch paired yet
    assert writer.set_verdict(2, "good") and writer.set_verdict(1, "")
    changes = writer.verdict_changes(mark[2], upto=2)
    assert [(r["id"], r["verdict"]) for r in changes] == [(1, ""), (2, "good")]
    assert [r["id"] for r in writer.verdict_changes(mark[2], upto=1)] == [1]
    assert writer.watermark()[2] == 3 and writer.verdict_changes(3, upto=2) == []
    writer.close()


def test_readers_never_write(target):
    Catalog(target).close()
    reader = Catalog(target, readonly=True)
    with pytest.raises(Exception, match="(?i)read.?only"):
        reader.add_video("fp", "/v.mp4", "movie", 1, 0.0)
    reader.close()


def test_the_schema_version_is_recorded_and_old_catalogs_are_upgraded(target):
    # A catalog of the first release: version 1's tables, no versions recorded, one pair.
    d = connect(target, readonly=False)
    with d.transaction():
        for statement in MIGRATIONS[0].statements:
            d.execute(d.render(statement))
        d.execute("INSERT INTO videos (fingerprint, path, domain, size, status, created_at, updated_at) "
                  "VALUES ('fp', '/v.mp4', 'movie', 1, 'done', 0, 0)")
        for frame, domain in ((0, "movie"), (1, "game")):
            d.execute("INSERT INTO patches (video_id, domain, window_index, frame_index, person_index, kind, "
                      "timestamp, box, square, score, view, keypoint_score, path, created_at) "
                      "VALUES (1, ?, 0, ?, 0, 'anchor', 0, '[]', '[]', 0.9, ?, 0.9, ?, 0)",
                      (domain, frame, VIEW, f"p{frame}.png"))
        d.execute("INSERT INTO pairs (a_patch_id, b_patch_id, view, similarity, created_at) VALUES (1, 2, ?, 0.95, 0)",
                  (VIEW,))
    d.close()

    reader = Catalog(target, readonly=True)  # before the writer upgraded it: the added column reads its default
    assert reader.version == 1 and [(r["id"], r["mirrored"]) for r in reader.pairs()] == [(1, 0)]
    reader.close()
    writer = Catalog(target)
    every = [m.version for m in MIGRATIONS]
    assert writer.version == LATEST == every[-1]
    assert [(r["id"], r["mirrored"], r["similarity"]) for r in writer.pairs()] == [(1, 0, 0.95)]
    versions = writer._q("SELECT version, description FROM schema_migrations ORDER BY version").fetchall()
    assert [v for v, _ in versions] == every
    assert versions[0][1].endswith("(found)") and not any(d.endswith("(found)") for _, d in versions[1:])
    assert writer.add_pair(2, 1, VIEW, 0.99, mirrored=True)
    writer.close()
    again = Catalog(target)  # a second start applies nothing
    assert migrate(again.dialect) == [] and again.version == LATEST
    assert again._q("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(every)
    again.close()


def test_a_new_catalog_records_every_version_and_a_newer_one_is_refused(target):
    cat = Catalog(target)
    assert [r[0] for r in cat._q("SELECT version FROM schema_migrations ORDER BY version")] == [
        m.version for m in MIGRATIONS]
    cat._q("INSERT INTO schema_migrations (version, description, applied_at) VALUES (99, 'from the future', 0)")
    cat.close()
    with pytest.raises(CatalogError, match="newer than this humanstyle"):
        Catalog(target)
    reader = Catalog(target, readonly=True)  # readers of a newer (additive) schema carry on
    assert reader.pairs() == []
    reader.close()
