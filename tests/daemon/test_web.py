"""The web page in a real browser (Debian's Chromium driven by Playwright) against a real daemon that mined a clip
in both domains with the trainer on:

- every view loads with no console error, no failed request and every image decoded; a screenshot of each goes to
  the test's output folder (`screenshots/` under its tmp_path, or $HUMANSTYLE_SCREENSHOTS when set);
- the pairs view shows the catalog's pairs (mirrored ones flipped), pages by keyset, and filters by view;
- the rejections view shows example patches of the reasons the catalog holds;
- the training view shows the latest sample grid and the validation curve;
- marking a pair bad on the page stores it through the index: the catalog, `status`, /metrics
  (humanstyle_pairs_curated_total), pairs.csv, the trainer's datasets and the next pix2pix export all lose it;
  marking it good again brings it back.

.ci/run installs Chromium (apt) and Playwright (PyPI); no browser is downloaded. Without them the test skips, which
HUMANSTYLE_REQUIRE_ALL=1 (CI) turns into a failure.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from tests.faults.test_reliability_trainer import TINY_TRAINING
from tests.reliability_helpers import all_finished, catalog_value, drop_in_both_domains, running_daemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CHROMIUM = Path(os.environ.get("HUMANSTYLE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--disable-default-apps", "--disable-extensions", "--mute-audio"]
# Half of the patches held out for validation (by a hash of their ids): with ~8 kept patches per domain, both
# domains have some in the validation split, so every model validates and draws a curve.
TRAINING = {**TINY_TRAINING, "sample_every": 20, "validate_every": 20, "val_fraction": 0.5, "checkpoint_every": 200,
            "min_pairs": 2, "min_patches": 2}
CLIP_SECONDS = 4.0


def browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -c constraints.txt -e '.[dev]')")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium as root)")
    return sync_playwright


class Browser:
    """One page; records console errors, uncaught exceptions and failed requests for the whole test."""

    def __init__(self, playwright, shots: Path) -> None:
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS,
                                                  headless=True)
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", self.request_failed)
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.shots = shots

    def request_failed(self, request) -> None:
        # A <video preload="metadata"> cancels its own download once it has what it needs: not an error.
        if "/video/" in request.url and "ERR_ABORTED" in str(request.failure):
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def visit(self, url: str) -> None:
        self.page.goto(url, wait_until="networkidle")
        self.images_decoded()

    def images_decoded(self) -> None:
        broken = self.page.evaluate(
            "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert broken == [], f"images that did not load: {broken}"

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.browser.close()


def pairs_in_csv(data: Path) -> set[int]:
    with open(data / "pairs.csv", newline="") as fh:
        return {int(row["pair_id"]) for row in csv.DictReader(fh)}


def pix2pix_export(config_path: Path, out: Path) -> set[tuple[int, int]]:
    from humanstyle.daemon.cli.main import main

    shutil.rmtree(out, ignore_errors=True)
    assert main(["export", "--format", "pix2pix", "--size", "32", str(out), "--config", str(config_path)]) == 0
    with open(out / "manifest.csv", newline="") as fh:
        return {(int(float(r["movie_id"])), int(float(r["game_id"]))) for r in csv.DictReader(fh)}


def trainer_pairs(d) -> float:
    return sum(d.value("humanstyle_train_dataset_items", model="pix2pix", split=s) for s in ("train", "val", "test"))


def test_the_page_in_a_browser_shows_what_was_mined_and_curation_reaches_training_and_export(tmp_path, capsys):
    sync_playwright = browser_or_skip()
    from playwright.sync_api import expect

    shots = Path(os.environ.get("HUMANSTYLE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    with running_daemon(tmp_path, train=TRAINING, decode={"burst_frames": 1}, detect={"patch_size": 64}) as d, \
            sync_playwright() as playwright:
        drop_in_both_domains(tmp_path, "walk.mp4", seconds=CLIP_SECONDS)
        d.wait_for(lambda: all_finished(data, 2), 180, "both videos")
        (pairs,), = catalog_value(data, "SELECT COUNT(*) FROM pairs")
        rejected = dict(catalog_value(data, "SELECT reason, COUNT(*) FROM patches WHERE view = 'REJECTED' "
                                            "AND path != '' GROUP BY 1"))
        assert pairs >= 3 and rejected, (pairs, rejected)
        d.wait_for(lambda: trainer_pairs(d) == pairs, 120, "the trainer to load every pair")
        d.wait_for(lambda: (data / "train" / "validation.jsonl").is_file() and any(
            (data / "train" / "samples").glob("*/step-*.png")), 180, "a validation pass and a sample grid")

        b = Browser(playwright, shots)
        try:
            # Status.
            b.visit(d.url("/"))
            assert b.page.locator("#table-pairs").count() == 1
            assert b.page.locator("#table-videos").inner_text().count("done") == 1
            b.shot("status")

            # Pairs: every pair over pages of 2, mirrored ones flipped, a view filter.
            b.visit(d.url("/pairs?limit=2&order=similarity"))
            seen = []
            while True:
                cards = b.page.locator("li.pair")
                seen += [int(x) for x in cards.evaluate_all("els => els.map(e => e.dataset.pair)")]
                nxt = b.page.locator("#next-page")
                if not nxt.count():
                    break
                nxt.click()
                b.page.wait_for_load_state("networkidle")
                b.images_decoded()
            assert sorted(seen) == [r[0] for r in catalog_value(data, "SELECT id FROM pairs ORDER BY id")]
            sims = [r[0] for r in catalog_value(data, "SELECT similarity FROM pairs ORDER BY similarity DESC, id DESC")]
            assert [r[0] for r in catalog_value(data, "SELECT id FROM pairs ORDER BY similarity DESC, id DESC")] \
                == seen, "pages out of order"
            assert sims
            mirrored = {r[0] for r in catalog_value(data, "SELECT id FROM pairs WHERE mirrored = 1")}
            b.visit(d.url("/pairs?limit=200"))
            for pid in mirrored:
                assert b.page.locator(f"#pair-{pid} img.flipped").count() == 1
            view = catalog_value(data, "SELECT view FROM pairs ORDER BY id LIMIT 1")[0][0]
            b.visit(d.url(f"/pairs?limit=200&view={view}"))
            in_view = {r[0] for r in catalog_value(data, "SELECT id FROM pairs WHERE view = ?", (view,))}
            assert {int(x) for x in b.page.locator("li.pair").evaluate_all("els => els.map(e => e.dataset.pair)")} \
                == in_view
            b.visit(d.url("/pairs"))
            b.shot("pairs")

            # Rejections: examples of every reason the catalog holds.
            b.visit(d.url("/rejections"))
            for reason, n in rejected.items():
                assert b.page.locator(f"#reason-{reason} .examples img").count() == min(n, 8), reason
            b.shot("rejections")

            # Training: a sample grid and a validation curve.
            b.visit(d.url("/training"))
            assert b.page.locator("img.sample").count() >= 1
            assert b.page.locator("svg.curve polyline").count() >= 1
            b.shot("training")

            # Curation: mark the newest pair bad on the page.
            victim, a_id, b_id = catalog_value(data, "SELECT id, a_patch_id, b_patch_id FROM pairs ORDER BY id DESC "
                                                     "LIMIT 1")[0]
            before = pix2pix_export(d.config_path, tmp_path / "export-before")
            assert (a_id, b_id) in before and len(before) == pairs
            b.visit(d.url("/pairs"))
            b.page.locator(f"#pair-{victim} button.judge.bad").click()
            expect(b.page.locator(f"#pair-{victim} .badge.verdict")).to_have_text("bad", timeout=15_000)
            assert catalog_value(data, "SELECT verdict FROM pairs WHERE id = ?", (victim,)) == [("bad",)]
            assert d.value("humanstyle_pairs_curated_total", verdict="bad") == 1
            d.wait_for(lambda: victim not in pairs_in_csv(data), 30, "pairs.csv without the bad pair")
            d.wait_for(lambda: trainer_pairs(d) == pairs - 1, 60, "the trainer to drop the bad pair")
            after = pix2pix_export(d.config_path, tmp_path / "export-after")
            assert after == before - {(a_id, b_id)}
            from humanstyle.daemon.cli.main import main

            assert main(["status", "--config", str(d.config_path)]) == 0
            assert "curated: 1\n  verdict=bad  count=1\n" in capsys.readouterr().out
            b.page.wait_for_timeout(300)
            b.shot("pairs-curated")

            # ... and good again: back in training and export.
            b.page.locator(f"#pair-{victim} button.judge.good").click()
            expect(b.page.locator(f"#pair-{victim} .badge.verdict")).to_have_text("good", timeout=15_000)
            d.wait_for(lambda: trainer_pairs(d) == pairs, 60, "the trainer to take the pair back")
            assert pix2pix_export(d.config_path, tmp_path / "export-again") == before
            assert d.value("humanstyle_pairs_curated_total", verdict="good") == 1
            assert b.problems == [], b.problems
        finally:
            b.close()
    for name in ("status", "pairs", "rejections", "training"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
