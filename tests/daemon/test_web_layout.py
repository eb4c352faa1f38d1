"""The web page's layout in a real browser (Debian's Chromium via Playwright), at a desktop's 1400 x 1000 and a
phone's 390 x 844, against the web application serving a catalog written here (no daemon: layout only):

- a pair card's two patches fill its width (they filled three quarters of it at fixed 160 px);
- every card's verdict button sits on the row of its badges, at the same place in every card, whatever the length
  of the view's name (it wrapped onto a line of its own for HEAD-AND-SHOULDER-FRONT);
- no view is wider than the window (a phone scrolls down, never sideways);
- the status view lists the videos in progress with a progress bar; the training curve has labelled axes.

Screenshots of each view at both sizes go to the test's output folder (`screenshots/` under its tmp_path, or
$HUMANSTYLE_SCREENSHOTS). Skips without Chromium or Playwright, which CI turns into a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanstyle.daemon import config
from humanstyle.daemon.web.app import create_app
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.segments import Segments
from humanstyle.stages.train.state import append_validation, write_state
from humanstyle.stages.vocabulary import VIEWS
from tests.catalog_rows import add_patch
from tests.conftest import fast_sections, write_config
from tests.daemon.test_web import Browser, browser_or_skip
from tests.units.test_web_app import RecordingCurator

pytestmark = pytest.mark.timeout(240)
SIZES = {"desktop": (1400, 1000), "phone": (390, 844)}
HEALTH = {"status": "ok", "uptime_s": 1.0, "stages": {s: {"processes": 1, "alive": 1, "ready": 1, "restarting": 0,
                                                          "pids": [1], "last_work_s_ago": 1.0}
                                                      for s in ("watch", "index", "pairing", "decode")}}


def fill(tmp_path: Path) -> config.Settings:
    """A catalog with pairs of every view (long names included), a rejection, a video in progress and a curve."""
    free = _free_port()
    settings = config.load(write_config(tmp_path, fast_sections(tmp_path, metrics={"listen": f"127.0.0.1:{free}"})))
    data = settings.paths.data_dir
    data.mkdir(parents=True)
    cat = Catalog(settings.paths.catalog)
    movie, _ = cat.add_video("fp-m", "/w/movie/a street scene at night, one long take.mp4", "movie", 1, 0.0)
    game, _ = cat.add_video("fp-g", "/w/game/level 1.mp4", "game", 1, 0.0)
    busy, _ = cat.add_video("fp-b", "/w/movie/in progress.mp4", "movie", 1, 0.0)
    rng = np.random.default_rng(0)
    for i in range(8):
        view = VIEWS[i % len(VIEWS)]
        ids = []
        for domain, video in (("movie", movie.id), ("game", game.id)):
            rel = f"patches/{domain}/{view}/{i}.png"
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(data / rel), rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
            ids.append(add_patch(cat, video, domain, i, view, path=rel, timestamp=i + 0.5))
        cat.add_pair(ids[0], ids[1], view, 0.99 - i / 100, mirrored=i % 2 == 0)
    rel = "patches/movie/REJECTED/99.png"
    (data / rel).parent.mkdir(parents=True)
    cv2.imwrite(str(data / rel), rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    add_patch(cat, movie.id, "movie", 99, "REJECTED", reason="side_view", path=rel)
    segments = Segments(cat)
    segments.register(busy.id, 60, 60)
    held = segments.claim("m1", 1, 30.0)[0]
    segments.renew("m1", {held.key: 12}, 30.0)
    cat.close()
    root = data / "train"
    for step, score in ((0, 0.43), (500, 0.3), (1000, 0.2), (1500, 0.16)):
        append_validation(root, "pix2pix-movie2game", step, score)
    write_state(root, {"models": {"pix2pix-movie2game": {"step": 1500, "validation": {"step": 1500, "score": 0.16},
                                                         "best": {"step": 1500, "score": 0.16}}}})
    previews = root / "previews" / "pix2pix-movie2game"  # two preview videos (a real clip stands in for them)
    previews.mkdir(parents=True)
    for step in (1000, 1500):
        shutil.copy(Path(__file__).resolve().parents[1] / "data" / "video" / "bikes.mp4",
                    previews / f"step-{step:08d}-movie.mp4")
    return settings


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    from waitress.server import create_server

    settings = fill(tmp_path)
    app = create_app(settings, lambda: HEALTH, RecordingCurator())
    host, port = settings.metrics.listen.rsplit(":", 1)
    server = create_server(app, host=host, port=int(port), threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://{settings.metrics.listen}"
    server.close()
    thread.join(timeout=5)


def boxes(page, selector: str) -> list[dict]:
    return page.evaluate("s => [...document.querySelectorAll(s)].map(e => { const r = e.getBoundingClientRect(); "
                         "return {x: r.x, y: r.y, w: r.width, h: r.height}; })", selector)


def test_pairs_fill_their_cards_buttons_keep_their_row_and_no_view_overflows(served, tmp_path):
    shots = Path(os.environ.get("HUMANSTYLE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with browser_or_skip()() as playwright:
        b = Browser(playwright, shots)
        try:
            for size, (width, height) in SIZES.items():
                b.page.set_viewport_size({"width": width, "height": height})
                for view in ("", "pairs", "rejections", "training"):
                    b.visit(f"{served}/{view}")
                    b.shot(f"layout-{view or 'status'}-{size}")
                    overflow = b.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"/{view} is {overflow} px wider than a {width} px window"
                b.visit(f"{served}/pairs")
                cards = boxes(b.page, "li.pair")
                images = boxes(b.page, "li.pair .sides img")
                assert len(cards) == 8 and len(images) == 16
                for i, card in enumerate(cards):
                    both = images[2 * i]["w"] + images[2 * i + 1]["w"]
                    assert both >= 0.85 * card["w"], f"{size}: card {i}'s images fill {both / card['w']:.0%} of it"
                buttons = boxes(b.page, "li.pair button.judge.bad")
                badges = boxes(b.page, "li.pair .badge.verdict")
                offsets = {round(btn["y"] - card["y"]) for btn, card in zip(buttons, cards, strict=True)}
                assert len(offsets) == 1, f"{size}: the Bad pair button sits at {sorted(offsets)} px in its card"
                for btn, badge in zip(buttons, badges, strict=True):
                    assert abs((btn["y"] + btn["h"] / 2) - (badge["y"] + badge["h"] / 2)) < 4, \
                        f"{size}: a Bad pair button wrapped off its badges' row"
                b.visit(served)
                assert b.page.locator("#in-progress progress").count() == 1
                assert "12 of 60" in b.page.locator("#in-progress").inner_text()
                b.visit(f"{served}/training")
                labels = b.page.locator("#model-pix2pix-movie2game svg.curve text").all_text_contents()
                assert "training step" in labels and "0.2" in labels
            assert b.problems == []
        finally:
            b.close()
