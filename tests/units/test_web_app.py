"""The web application without a daemon (Flask's test client on a catalog written here):

- each view renders what the catalog holds: counts, pairs with their mirrored flag (the second image flipped),
  rejection examples, training state, the validation curve and the sample grid;
- pages follow the keyset cursor, reject unknown filters, and ?partial=1 returns the content alone;
- images are served by patch id (thumbnails cached as files under data/thumbs), never from a path in the request;
- who may write: POST only, with the CSRF token, same origin, a loopback Host on a loopback listener, and the
  configured write token beyond loopback (off without one); refused writes never reach the index;
- metrics.web = false leaves /metrics and /healthz only.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from humanstyle.daemon import config
from humanstyle.daemon.web.app import create_app
from humanstyle.daemon.web.images import THUMB_SIDE
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.segments import Segments
from humanstyle.stages.train.state import append_validation, write_state
from tests.catalog_rows import add_patch
from tests.conftest import fast_sections, write_config

HOST = {"Host": "127.0.0.1:9108"}
HEALTH = {"status": "ok", "uptime_s": 1.0, "stages": {"index": {"processes": 1, "alive": 1, "ready": 1,
                                                                 "restarting": 0, "pids": [1]}}}


class RecordingCurator:
    """Stands in for the index's side of curation: records what reached it (the real path runs in the browser
    test through a real daemon)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def judge(self, pair_id: int, verdict: str, catalog) -> bool:
        self.calls.append((pair_id, verdict))
        return True


def settings_for(tmp_path, **metrics):
    sections = fast_sections(tmp_path, metrics={"listen": "127.0.0.1:9108", **metrics})
    return config.load(write_config(tmp_path, sections))


def write_patch(data, rel: str, value: int) -> str:
    (data / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(data / rel), np.full((96, 96, 3), value, np.uint8))
    return rel


@pytest.fixture
def site(tmp_path):
    settings = settings_for(tmp_path)
    data = settings.paths.data_dir
    data.mkdir(parents=True)
    cat = Catalog(settings.paths.catalog)
    movie, _ = cat.add_video("fp-m", "/w/movie/street scene.mp4", "movie", 1, 0.0)
    game, _ = cat.add_video("fp-g", "/w/game/level<1>.mp4", "game", 1, 0.0)
    cat.add_video("fp-x", "/w/game/notes.txt", "game", 1, 0.0, status="failed", reason="not_a_video")
    ids = []
    for i, (video, domain, view, reason) in enumerate([
            (movie.id, "movie", "FULL-BODY-FRONT", ""), (game.id, "game", "FULL-BODY-FRONT", ""),
            (movie.id, "movie", "FULL-BODY-FRONT", ""), (movie.id, "movie", "REJECTED", "side_view")]):
        rel = write_patch(data, f"patches/{domain}/{view}/p{i}.png", 40 * i)
        ids.append(add_patch(cat, video, domain, i, view, path=rel, reason=reason, timestamp=61.25))
    cat.add_pair(ids[0], ids[1], "FULL-BODY-FRONT", 0.9912, mirrored=True)
    cat.add_pair(ids[2], ids[1], "FULL-BODY-FRONT", 0.9934, mirrored=False)
    cat.close()
    curator = RecordingCurator()
    app = create_app(settings, lambda: HEALTH, curator)
    return app.test_client(), curator, ids, settings


def get(client, url: str, **headers) -> str:
    resp = client.get(url, headers={**HOST, **headers})
    assert resp.status_code == 200, (url, resp.status_code, resp.data[:200])
    return resp.get_data(as_text=True)


def csrf(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', get(client, "/")).group(1)


def test_status_shows_counts_problems_and_processes(site):
    client, *_ = site
    html = get(client, "/")
    assert "notes.txt" in html and "not_a_video" in html
    assert re.search(r"<td>FULL-BODY-FRONT</td><td class=\"num\">2</td>", html)  # pairs per view
    assert "index</td><td>1/1" in html and 'class="badge ok"' in html


def test_pairs_view_flips_the_second_image_of_a_mirrored_pair_and_escapes_names(site):
    client, _, ids, _ = site
    html = get(client, "/pairs")
    cards = re.findall(r'<li class="pair verdict-none" id="pair-(\d+)"', html)
    assert cards == ["2", "1"]  # newest first
    pair1 = html[html.index('id="pair-1"'):]
    assert f'/img/patch/{ids[1]}/thumb" alt="game patch {ids[1]}" class="flipped"' in pair1
    assert f'/img/patch/{ids[0]}/thumb" alt="movie patch {ids[0]}" class=""' in pair1
    assert "level&lt;1&gt;.mp4" in html and "level<1>" not in html
    assert "1:01.2" in html  # 61.25 s into the video
    by_sim = re.findall(r'id="pair-(\d+)"', get(client, "/pairs?order=similarity_asc"))
    assert by_sim == ["1", "2"]


def test_pairs_pages_by_cursor_and_refuses_bad_parameters(site):
    client, *_ = site
    first = get(client, "/pairs?limit=1&order=similarity")
    assert re.findall(r'id="pair-(\d+)"', first) == ["2"]
    nxt = re.search(r'id="next-page" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = get(client, nxt)
    assert re.findall(r'id="pair-(\d+)"', second) == ["1"] and 'id="next-page"' not in second
    assert 'data-refresh="off"' in second  # an older page does not refresh under the reader
    for bad in ("/pairs?view=SIDEWAYS", "/pairs?order=random", "/pairs?after=x_y", "/pairs?limit=ten",
                "/pairs?verdict=maybe"):
        assert client.get(bad, headers=HOST).status_code == 400, bad
    partial = get(client, "/pairs?partial=1")
    assert partial.lstrip().startswith("<h1>") and "<html" not in partial


def test_rejections_and_training_views(site):
    client, _, ids, settings = site
    html = get(client, "/rejections")
    section = html[html.index('id="reason-side_view"'):html.index('id="reasons-none"')]
    assert f"/img/patch/{ids[3]}/thumb" in section and "movie 1, game 0" in section
    root = settings.paths.data_dir / "train"
    assert "no sample grid yet" in get(client, "/training")
    for step, score in ((100, 0.5), (200, 0.4), (300, 0.45)):
        append_validation(root, "cyclegan", step, score)
    write_state(root, {"models": {"cyclegan": {"step": 300, "best": {"step": 200, "score": 0.4}, "waiting": ""}}})
    write_patch(root, "samples/cyclegan/step-00000300.png", 200)
    html = get(client, "/training")
    panel = html[html.index('id="model-cyclegan"'):]
    assert "step 300" in panel and "best validation 0.4000 at step 200" in panel
    assert re.search(r'<polyline points="([\d.]+,[\d.]+ ){2}[\d.]+,[\d.]+"', panel)
    assert "/img/sample/cyclegan?step=300" in panel
    assert client.get("/img/sample/cyclegan", headers=HOST).status_code == 200
    assert client.get("/img/sample/..%2Fcheckpoints", headers=HOST).status_code == 404


def test_zero_count_reasons_share_one_line_and_the_curve_has_labelled_axes(site):
    client, _, _, settings = site
    html = get(client, "/rejections")
    assert 'id="reason-side_view"' in html and 'id="reason-no_person"' not in html
    assert re.search(r'id="reasons-none">No patch rejected yet for: no_person, [a-z_, ]*classify_error\.', html)
    root = settings.paths.data_dir / "train"
    for step, score in ((0, 0.43), (1500, 0.2), (3000, 0.11)):
        append_validation(root, "pix2pix-movie2game", step, score)
    panel = get(client, "/training")
    panel = panel[panel.index('id="model-pix2pix-movie2game"'):panel.index('id="model-pix2pix-game2movie"')]
    labels = re.findall(r'<text [^>]*>([^<]+)</text>', panel)
    assert labels[:5] == ["0.1", "0.2", "0.3", "0.4", "0.5"], labels  # round values around the data, low to high
    assert {"0", "1,000", "2,000", "3,000", "training step", "L1"} <= set(labels)


def test_nice_ticks_cover_the_data_with_round_steps():
    from humanstyle.daemon.web.pages import nice_ticks
    assert nice_ticks(0.108, 0.43, 5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert nice_ticks(0, 3000) == [0, 1000, 2000, 3000]
    one = nice_ticks(0.25, 0.25)  # one point still spans an axis
    assert len(one) >= 2 and one[0] <= 0.25 <= one[-1]


def test_status_lists_videos_in_progress_with_the_time_left(site):
    client, _, _, settings = site
    cat = Catalog(settings.paths.catalog)
    video, _ = cat.add_video("fp-long", "/w/movie/long take.mp4", "movie", 1, 0.0)
    segments = Segments(cat)
    segments.register(video.id, 120, 60)
    first = segments.claim("m1", 1, 30.0)[0]
    segments.release("m1", first.key)  # redone: its second attempt
    segments.claim("m1", 1, 30.0)
    segments.renew("m1", {first.key: 30}, 30.0)
    cat._q("UPDATE videos SET started_at = started_at - 60 WHERE id = ?", (video.id,))
    cat.close()
    html = get(client, "/")
    section = html[html.index('id="in-progress"'):]
    assert "long take.mp4" in section and "attempt 2" in section
    assert '<progress value="30" max="120"></progress>' in section and "30 of 120" in section
    assert re.search(r"3 min 0\d s", section)  # 90 windows left at 2 s a window


def test_the_trainer_card_says_training_is_off_instead_of_dashes(tmp_path):
    settings = config.load(write_config(tmp_path, fast_sections(
        tmp_path, metrics={"listen": "127.0.0.1:9108"}, train={"enabled": False})))
    html = get(create_app(settings, lambda: HEALTH).test_client(), "/")
    card = html[html.index('id="trainer"'):]
    card = card[:card.index("</div>")]
    assert "train.enabled is off" in card and "—" not in card


def test_images_by_id_with_cached_thumbnails(site):
    client, _, ids, settings = site
    resp = client.get(f"/img/patch/{ids[0]}/thumb", headers=HOST)
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    cached = settings.paths.data_dir / "thumbs" / str(THUMB_SIDE) / "0000" / f"{ids[0]}.jpg"
    assert cached.is_file() and cv2.imread(str(cached)).shape == (96, 96, 3)
    assert client.get(f"/img/patch/{ids[0]}/full", headers=HOST).mimetype == "image/png"
    for url in ("/img/patch/999/thumb", f"/img/patch/{ids[0]}/huge", "/img/patch/..%2Fcatalog.sqlite/full",
                "/img/patch/-1/full"):
        assert client.get(url, headers=HOST).status_code == 404, url


def test_writes_need_the_csrf_token_the_same_origin_and_a_loopback_host(site):
    client, curator, *_ = site
    token = csrf(client)
    url = "/api/pairs/1/verdict"
    refused = [
        client.post(url, json={"verdict": "bad"}, headers=HOST),  # no token
        client.post(url, json={"verdict": "bad"}, headers={**HOST, "X-CSRF-Token": "guess"}),
        client.post(url, json={"verdict": "bad"}, headers={**HOST, "X-CSRF-Token": token,
                                                           "Origin": "http://evil.example"}),
        client.post(url, json={"verdict": "bad"}, headers={"Host": "evil.example:9108", "X-CSRF-Token": token}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert client.get(url, headers=HOST).status_code == 405
    assert client.get("/", headers={"Host": "rebound.example:9108"}).status_code == 403
    assert client.get("/metrics", headers={"Host": "prometheus.example"}).status_code == 200  # scrapes by any name
    assert curator.calls == []
    ok = {**HOST, "X-CSRF-Token": token, "Origin": "http://127.0.0.1:9108"}
    assert client.post(url, json={"verdict": "maybe"}, headers=ok).status_code == 400
    assert client.post("/api/pairs/77/verdict", json={"verdict": "bad"}, headers=ok).status_code == 404
    resp = client.post(url, json={"verdict": "bad"}, headers=ok)
    assert resp.status_code == 200 and resp.json == {"pair_id": 1, "verdict": "bad", "stored": True}
    assert curator.calls == [(1, "bad")]
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_beyond_loopback_writes_need_the_configured_token(tmp_path):
    settings = settings_for(tmp_path, listen="0.0.0.0:9108", write_token="s3cret")
    settings.paths.data_dir.mkdir(parents=True)
    Catalog(settings.paths.catalog).close()
    curator = RecordingCurator()
    client = create_app(settings, lambda: HEALTH, curator).test_client()
    host = {"Host": "203.0.113.5:9108"}
    page = client.get("/", headers=host).get_data(as_text=True)
    assert '<meta name="writes" content="token">' in page
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    headers = {**host, "X-CSRF-Token": token}
    assert client.post("/api/pairs/1/verdict", json={"verdict": "bad"}, headers=headers).status_code == 403
    wrong = {**headers, "X-Humanstyle-Token": "guess"}
    assert client.post("/api/pairs/1/verdict", json={"verdict": "bad"}, headers=wrong).status_code == 403
    right = {**headers, "X-Humanstyle-Token": "s3cret"}
    assert client.post("/api/pairs/1/verdict", json={"verdict": "bad"}, headers=right).status_code == 404  # no pair
    assert curator.calls == []

    (tmp_path / "off").mkdir()
    off = settings_for(tmp_path / "off", listen="0.0.0.0:9108")
    client = create_app(off, lambda: HEALTH, curator).test_client()
    page = client.get("/", headers=host).get_data(as_text=True)
    assert '<meta name="writes" content="off">' in page
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    resp = client.post("/api/pairs/1/verdict", json={"verdict": "bad"}, headers={**host, "X-CSRF-Token": token})
    assert resp.status_code == 403 and "write_token" in resp.json["error"]


def test_web_off_leaves_metrics_and_healthz(tmp_path):
    client = create_app(settings_for(tmp_path, web=False), lambda: HEALTH).test_client()
    assert client.get("/", headers=HOST).status_code == 404
    assert client.get("/healthz", headers=HOST).json["status"] == "ok"
    assert b"humanstyle_" in client.get("/metrics", headers=HOST).data


def test_templates_and_static_files_are_package_data():
    """What pyproject ships (the packaging test builds the wheel and finds them there)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "humanstyle.daemon.web"]
    web = root / "daemon" / "web"
    files = {p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and p.suffix != ".py"}
    shipped = {f for f in files if any(Path(f).match(pattern) for pattern in patterns)}
    assert files and shipped == files, files - shipped


def test_the_status_page_lists_the_ingest_machines_from_the_leases(tmp_path):
    settings = settings_for(tmp_path)
    health = {**HEALTH, "ingest": {"machines": [{"name": "gpu-a", "holding": ["3:1", "3:2"], "last_renewal_s_ago": 1.5,
                                                 "segments_done": 12}],
                                   "backlog_video_s": 5400.0, "leases_expired": 2}}
    html = get(create_app(settings, lambda: health).test_client(), "/")
    card = html[html.index('id="machines"'):]
    assert "gpu-a" in card and "3:1, 3:2" in card and "1 h 30 min of video waiting" in card
    assert "2 segments taken over" in card
