"""`humanstyle status` on a catalog whose every count is known: each section (videos, patches, rejections, pairs,
pairs a person judged on the web page) with its total and one line per group, exactly."""

from __future__ import annotations

from humanstyle.daemon import config
from humanstyle.daemon.cli.main import main
from humanstyle.stages.store.catalog import Catalog
from tests.catalog_rows import add_patch
from tests.conftest import fast_sections, write_config

EXPECTED = """\
videos: 3
  domain=game  status=failed  count=1
  domain=game  status=partial  count=1
  domain=movie  status=done  count=1
patches: 9
  domain=game  view=FULL-BODY-FRONT  count=1
  domain=game  view=HEAD-AND-SHOULDER-BACK  count=1
  domain=game  view=REJECTED  count=1
  domain=movie  view=FULL-BODY-FRONT  count=2
  domain=movie  view=HEAD-AND-SHOULDER-BACK  count=1
  domain=movie  view=REJECTED  count=3
rejections: 4
  domain=game  reason=no_head  count=1
  domain=movie  reason=no_head  count=1
  domain=movie  reason=side_view  count=2
pairs: 3
  view=FULL-BODY-FRONT  count=2
  view=HEAD-AND-SHOULDER-BACK  count=1
curated: 2
  verdict=bad  count=1
  verdict=good  count=1
patches waiting to be paired: 5
videos in progress: 0
copies not processed: 0
"""


def test_status_prints_every_section_with_exact_counts(tmp_path, capsys):
    settings = config.load(write_config(tmp_path, fast_sections(tmp_path)))
    settings.paths.data_dir.mkdir(parents=True)
    cat = Catalog(settings.paths.catalog)
    movie, _ = cat.add_video("fp-movie", "/w/movie/a.mp4", "movie", 10, 0.0)
    game, _ = cat.add_video("fp-game", "/w/game/b.mp4", "game", 10, 0.0)
    cat.add_video("fp-text", "/w/game/notes.txt", "game", 5, 0.0, status="failed", reason="not_a_video")
    cat.set_video_status(movie.id, "done")
    cat.set_video_status(game.id, "partial", "truncated")
    m1, m2 = (add_patch(cat, movie.id, "movie", f, "FULL-BODY-FRONT") for f in (1, 2))
    add_patch(cat, movie.id, "movie", 3, "REJECTED", reason="no_head")
    add_patch(cat, movie.id, "movie", 4, "REJECTED", reason="side_view")
    add_patch(cat, movie.id, "movie", 5, "REJECTED", reason="side_view")
    g1 = add_patch(cat, game.id, "game", 1, "FULL-BODY-FRONT")
    g2 = add_patch(cat, game.id, "game", 2, "HEAD-AND-SHOULDER-BACK")
    add_patch(cat, game.id, "game", 3, "REJECTED", reason="no_head")
    m3 = add_patch(cat, movie.id, "movie", 6, "HEAD-AND-SHOULDER-BACK")
    for a, b, view in ((m1, g1, "FULL-BODY-FRONT"), (m2, g1, "FULL-BODY-FRONT"), (m3, g2, "HEAD-AND-SHOULDER-BACK")):
        assert cat.add_pair(a, b, view, 0.5)
    assert cat.set_verdict(1, "bad") and cat.set_verdict(2, "bad") and cat.set_verdict(2, "good")
    assert not cat.set_verdict(2, "good")  # unchanged
    cat.close()
    assert main(["status", "--config", str(settings.source)]) == 0
    assert capsys.readouterr().out == EXPECTED


def test_health_asks_where_the_daemon_listens_on_loopback_when_it_listens_everywhere():
    from humanstyle.daemon.cli.main import health_url

    assert health_url("127.0.0.1:9108") == "http://127.0.0.1:9108/healthz"
    assert health_url("0.0.0.0:9200") == "http://127.0.0.1:9200/healthz"
    assert health_url("[::]:9108") == "http://[::1]:9108/healthz"
    assert health_url("[::1]:9300") == "http://[::1]:9300/healthz"
    assert health_url("myhost:80") == "http://myhost:80/healthz"


def test_a_copy_is_counted_where_it_was_dropped_and_shown_with_its_original(tmp_path, capsys):
    """Issue 30, item 2: the same clip dropped into movie and game. The copy is not processed for game either (the
    same footage on both sides would pair each person with themselves); it is counted under game, where it was
    dropped, and `status` and the status page name it with its original."""
    from humanstyle.daemon import config
    from humanstyle.daemon.cli.main import main
    from humanstyle.daemon.web.app import create_app
    from humanstyle.stages import counters
    from humanstyle.stages.index.stage import IndexHandler
    from humanstyle.stages.records import Discovered
    from tests.conftest import fast_sections, write_config

    cfg = write_config(tmp_path, fast_sections(tmp_path))
    settings = config.load(cfg)
    index = IndexHandler(settings)
    game_before = counters.VIDEOS.labels("game", "duplicate")._value.get()
    movie_before = counters.VIDEOS.labels("movie", "duplicate")._value.get()
    for domain in ("movie", "game"):
        index.on_discovered(Discovered(path=f"/w/{domain}/clip.mp4", domain=domain, size=10, mtime=1.0,
                                       fingerprint="same-bytes", rejected=""))
    assert counters.VIDEOS.labels("game", "duplicate")._value.get() == game_before + 1
    assert counters.VIDEOS.labels("movie", "duplicate")._value.get() == movie_before
    assert [v.path for v in index.catalog.videos_with_status("queued")] == ["/w/movie/clip.mp4"]
    assert [tuple(r) for r in index.catalog.copies()] == [("/w/game/clip.mp4", "game", 1, "/w/movie/clip.mp4",
                                                          "movie")]
    index.close()

    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "copies not processed: 1" in out
    assert "/w/game/clip.mp4 (in game): a copy of video 1, /w/movie/clip.mp4 (in movie)" in out

    client = create_app(settings, lambda: {"status": "ok", "uptime_s": 0, "stages": {}}).test_client()
    page = client.get("/", headers={"Host": settings.metrics.listen}).get_data(as_text=True)
    assert "Copies not processed (1)" in page and "video 1: clip.mp4" in page


def test_progress_of_videos_in_progress_reaches_the_catalog_and_status(tmp_path, capsys):
    """Issue 30, item 6: a video is registered with the windows its container promises, and the index renews its
    segments' leases with their windows done, so `status` and the status page show videos in progress."""
    from humanstyle.daemon import config
    from humanstyle.daemon.cli.main import main
    from humanstyle.stages.index.stage import IndexHandler
    from humanstyle.stages.records import Discovered, Job, WindowDone
    from tests.conftest import fast_sections, write_config
    from tests.real_clips import CLIPS

    class Accepting:
        def __init__(self) -> None:
            self.sent: list = []

        def try_send(self, record) -> bool:
            self.sent.append(record)
            return True

    clip = next(c for c in CLIPS if c.name == "bikes.mp4")
    cfg = write_config(tmp_path, fast_sections(tmp_path, ingest={"segment_s": 2.0}))
    index = IndexHandler(config.load(cfg))
    index.out = Accepting()
    index.on_discovered(Discovered(path=str(clip.path), domain="movie", size=10, mtime=1.0, fingerprint="bikes",
                                   rejected=""))
    index.dispatch()
    jobs = [r for r in index.out.sent if isinstance(r, Job)]
    assert [(j.start_window, j.end_window) for j in jobs] == [(0, 2), (2, 4)]  # index.max_in_flight = 2
    for w in range(3):
        index.on_result(WindowDone(video_id=1, attempt=1, domain="movie", window_index=w, patches=0,
                                   anchor_hit=False, frames=1))
    index.renew()
    [row] = index.catalog.videos_in_progress()
    assert (row["windows"], row["windows_expected"], row["attempt"]) == (3, clip.expected_windows, 1)
    assert row["started_at"] > 0
    index.close()
    assert main(["status", "--config", str(cfg)]) == 0
    assert f"video 1 (movie, attempt 1): 3 of {clip.expected_windows} windows done" in capsys.readouterr().out
