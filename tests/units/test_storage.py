"""stages.store.storage against an fsspec URL (`memory://`, the same code path as s3:// without a server) and the data
folder: where names land, what is cached and when it is fetched again, names that try to leave the storage."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from humanstyle.daemon import config
from humanstyle.stages.index.results import ResultWriter
from humanstyle.stages.store.catalog import Catalog
from humanstyle.stages.store.storage import Storage, StorageError
from tests.conftest import fast_sections, write_config


@pytest.fixture
def remote(tmp_path):
    url = f"memory://hs-{uuid.uuid4().hex[:8]}/prefix"
    return Storage(url, tmp_path / "data", tmp_path / "cache"), fsspec.filesystem("memory")


def test_the_data_folder_is_the_default(tmp_path):
    s = Storage("", tmp_path / "data")
    assert s.is_local and s.local_path("patches/a.png") == tmp_path / "data" / "patches" / "a.png"
    s.write_bytes("patches/a.png", b"png")
    assert (tmp_path / "data" / "patches" / "a.png").read_bytes() == b"png" and s.exists("patches/a.png")
    assert s.fetch(["patches/a.png"]) == [tmp_path / "data" / "patches" / "a.png"]
    assert s.uri("patches/a.png") == str(tmp_path / "data" / "patches" / "a.png")
    s.publish("patches/a.png")  # nothing to do
    assert not (tmp_path / "data" / "cache").exists()


def test_objects_are_written_remotely_and_fetched_once_into_the_cache(remote, tmp_path):
    s, fs = remote
    s.write_bytes("patches/movie/a.png", b"first")
    assert fs.cat_file(f"{s.root}/patches/movie/a.png") == b"first"
    assert not (tmp_path / "data").exists(), "a remote storage writes nothing to the data folder"
    (path,) = s.fetch(["patches/movie/a.png"])
    assert path == tmp_path / "cache" / "patches" / "movie" / "a.png" and path.read_bytes() == b"first"
    fs.pipe_file(f"{s.root}/patches/movie/a.png", b"changed")  # patches never change: the copy is trusted
    assert s.fetch(["patches/movie/a.png"])[0].read_bytes() == b"first"
    assert s.fetch_fresh("patches/movie/a.png").read_bytes() == b"changed"  # latest.pt does change
    with pytest.raises(StorageError, match="missing.png"):
        s.fetch(["patches/movie/missing.png"])
    assert s.uri("x/y.pt") == f"{s.url}/x/y.pt"


def test_local_files_are_published(remote):
    s, fs = remote
    path = s.local_path("train/checkpoints/latest.pt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"state")
    assert not s.exists("train/checkpoints/latest.pt")
    s.publish("train/checkpoints/latest.pt")
    assert s.exists("train/checkpoints/latest.pt")
    assert s.read_url(f"{s.url}/train/checkpoints/latest.pt") == b"state"


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "patches/../../x", ""])
def test_names_cannot_leave_the_storage(remote, name):
    s, _ = remote
    with pytest.raises(StorageError):
        s.local_path(name)
    with pytest.raises(StorageError):
        s.write_bytes(name, b"x")


def killed_mid_write(target: Path) -> Path:
    """Kill (SIGKILL) a process in the middle of an atomic write of `target`; the temporary file it leaves."""
    code = ("import sys, time\nfrom humanstyle.models.files import atomic_write\n"
            "atomic_write(sys.argv[1], lambda fh: (fh.write(b'half a png'), fh.flush(), time.sleep(120)))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)])
    try:
        deadline = time.monotonic() + 60
        while not (left := list(target.parent.glob(f".{target.name}.*"))):
            assert proc.poll() is None and time.monotonic() < deadline, "the write never started"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    return left[0]


def test_the_index_start_deletes_what_a_killed_write_left_and_nothing_else(tmp_path):
    settings = config.load(write_config(tmp_path, fast_sections(tmp_path)))
    folder = settings.paths.data_dir / "patches" / "movie" / "FULL-BODY-FRONT"
    storage = Storage("", settings.paths.data_dir)
    storage.write_bytes("patches/movie/FULL-BODY-FRONT/v000001_f0000001_p00.png", b"png")
    left = killed_mid_write(folder / "v000001_f0000002_p00.png")
    catalog = Catalog(settings.paths.catalog)
    writer = ResultWriter(settings, catalog)
    writer.recover()
    catalog.close()
    assert not left.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["v000001_f0000001_p00.png"]
    assert storage.remove_interrupted_writes("patches") == 0


def test_a_remote_storage_has_no_interrupted_writes_to_delete(remote, tmp_path):
    s, _ = remote
    left = killed_mid_write(tmp_path / "cache" / "patches" / "a.png")  # the cache is the fetcher's, not the writer's
    assert s.remove_interrupted_writes("patches") == 0 and left.exists()
