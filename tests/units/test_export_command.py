"""`humanstyle export` over a catalog: both layouts open in pandas and as images."""

from __future__ import annotations

import cv2
import pandas as pd

from humanstyle.daemon.cli.main import main
from tests.units.test_trainer import add_pairs, make_settings


def test_export_both_layouts_from_the_catalog(tmp_path, capsys):
    s = make_settings(tmp_path)
    add_pairs(s, 6, 0)
    cfg = str(s.source)

    assert main(["export", "--format", "pix2pix", str(tmp_path / "p2p"), "--size", "64", "--config", cfg]) == 0
    manifest = pd.read_csv(tmp_path / "p2p" / "manifest.csv")
    assert len(manifest) == 6 and set(manifest["status"]) == {"written"}
    for file in manifest["file"]:
        assert cv2.imread(str(tmp_path / "p2p" / file)).shape == (64, 128, 3)  # A | B side by side

    assert main(["export", "--format", "cyclegan", str(tmp_path / "cyc"), "--size", "64", "--config", cfg]) == 0
    manifest = pd.read_csv(tmp_path / "cyc" / "manifest.csv")
    assert len(manifest) == 12 and set(manifest["domain"]) == {"movie", "game"}
    for file in manifest["file"]:
        folder = file.split("/")[0]
        assert folder[-1] in "AB" and folder[:-1] in ("train", "val", "test")
        assert cv2.imread(str(tmp_path / "cyc" / file)).shape == (64, 64, 3)
    assert "exported 12 of 12 items as cyclegan" in capsys.readouterr().out
