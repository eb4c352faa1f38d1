"""The installed package claims one top-level name, `humanstyle`: installing it beside projects that ship their own
`daemon`, `stages` or `models` module (python-daemon does) must break neither."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    return next(out.glob("humanstyle-*.whl"))


def test_the_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"humanstyle"}, tops
    assert "humanstyle/daemon/cli/main.py" in names and "humanstyle/stages/classify.py" in names
    # Every package folder of the checkout ships (pyproject lists them: a room left out would install without it).
    folders = {p.parent.relative_to(ROOT).as_posix() for layer in ("daemon", "stages", "models")
               for p in (ROOT / layer).rglob("__init__.py")}
    assert folders and all(f"humanstyle/{f}/__init__.py" in names for f in folders), sorted(folders)
    # The web page's templates and static files ship as package data.
    web = Path(ROOT, "daemon", "web")
    data = [p.relative_to(web).as_posix() for p in web.rglob("*") if p.suffix in (".html", ".css", ".js", ".svg")]
    assert data and all(f"humanstyle/daemon/web/{f}" in names for f in data), data
    # The pose store's C kernel is built into the wheel wherever it was built for this environment (a C compiler).
    from humanstyle.stages.pairing import pose_store

    kernel = [n for n in names if n.startswith("humanstyle/stages/pairing/_pose_kernel") and n.endswith(".so")]
    assert bool(kernel) == (pose_store._pose_kernel is not None), kernel


def test_installed_beside_python_daemon_both_import(wheel, tmp_path):
    """A fresh virtual environment sees this one's dependencies (torch and the rest, through a .pth line, which
    does not run this environment's own editable hook), gets the wheel, and has python-daemon's `daemon`."""
    from importlib.metadata import distribution

    distribution("python-daemon")  # a dev dependency (pyproject's [dev] extra): its `daemon` module is the clash
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(purelib, "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", purelib, str(wheel)],
                   check=True, capture_output=True)
    probe = ("import daemon, humanstyle.daemon.cli.main as cli, humanstyle.stages.classify as c; "
             "assert hasattr(daemon, 'DaemonContext'); assert callable(cli.main); "
             "print(c.classify_keypoints(None, (8, 8)))")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "REJECTED"
