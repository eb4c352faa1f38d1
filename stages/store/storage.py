"""Where patches, masks, checkpoints and samples live: the data folder (the default), or an fsspec URL
(`storage.url`, e.g. "s3://bucket/prefix" through s3fs) that machines without access to the data folder share.

Names are relative ("patches/movie/FULL-BODY-FRONT/v000001_f0000023_p00.png", "train/checkpoints/latest.pt"),
exactly the `path` column of the catalog. Programs read and write local files; this module maps a name to one:

- `write_bytes(name, data)`: the index's patch files. Local: atomic rename. Remote: one PUT, which readers see
  whole or not at all.
- `local_path(name)` then `publish(name)`: a file produced locally (a checkpoint, a sample grid) and then made
  visible in the storage (a no-op for the data folder, an upload otherwise).
- `fetch(names)`: local copies to read. Remote objects are downloaded once into the cache folder: a patch never
  changes once written (its name comes from its catalog key), so a cached copy stays valid. `fetch_fresh(name)`
  downloads again, for files that do change (latest.pt).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from humanstyle.models.files import atomic_write_bytes, remove_interrupted_writes
from humanstyle.stages.settings import PipelineSettings

log = logging.getLogger("humanstyle.storage")
FETCH_CHUNK = 256  # objects downloaded concurrently (and held in memory) at once


class StorageError(OSError):
    """The storage cannot be used: a missing driver, an object that is not there, a name escaping the root."""


def _check_name(name: str) -> str:
    path = PurePosixPath(name)  # parsed once: every local path of a training refresh comes through here
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise StorageError(f"{name!r} is not a relative name inside the storage")
    return str(path)


class Storage:
    def __init__(self, url: str, data_dir: Path, cache_dir: Path | None = None, endpoint_url: str = "") -> None:
        self.url = url.rstrip("/")
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"
        self.fs = None
        self.root = ""
        if self.url:
            options = {"endpoint_url": endpoint_url} if endpoint_url and self.url.startswith("s3") else {}
            try:
                from fsspec.core import url_to_fs

                self.fs, self.root = url_to_fs(self.url, **options)
            except ImportError as exc:
                raise StorageError(f"storage.url = {self.url!r} needs a driver that is not installed ({exc}): "
                                   "pip install 'humanstyle[scale]'") from None
            self.root = self.root.rstrip("/")

    @property
    def is_local(self) -> bool:
        return self.fs is None

    def uri(self, name: str) -> str:
        """Where `name` lives, for messages and logs."""
        name = _check_name(name)
        return str(self.data_dir / name) if self.is_local else f"{self.url}/{name}"

    def _remote(self, name: str) -> str:
        return f"{self.root}/{_check_name(name)}"

    @property
    def local_root(self) -> Path:
        """The folder local files live in, laid out as in the storage: the data folder itself, or the cache."""
        return self.data_dir if self.is_local else self.cache_dir

    def local_path(self, name: str) -> Path:
        """The local file for `name`: the file itself for the data folder, its cached copy otherwise."""
        return self.local_root / _check_name(name)

    # --- writing ---------------------------------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes, durable: bool = True) -> None:
        if self.is_local:
            atomic_write_bytes(self.local_path(name), data, durable)
        else:
            self.fs.pipe_file(self._remote(name), data)

    def remove_interrupted_writes(self, folder: str) -> int:
        """Delete what `write_bytes` calls under `folder` left half-written when their process was killed (local
        files; a remote PUT leaves nothing); returns how many. For the folder's one writer, at its start."""
        return remove_interrupted_writes(self.local_path(folder)) if self.is_local else 0

    def upload(self, local: Path, name: str) -> None:
        """Copy a local file (a watched video) into the storage as `name`; readers see the object whole or not at
        all. Only for a remote storage: the data folder's files are read where they are."""
        if self.is_local:
            raise StorageError(f"upload({name!r}): the storage is the data folder, nothing to upload to")
        self.fs.put_file(str(local), self._remote(name))

    def publish(self, name: str) -> None:
        """Make the local file of `name` (written at `local_path(name)`) visible in the storage."""
        if not self.is_local:
            self.fs.put_file(str(self.local_path(name)), self._remote(name))

    # --- reading ---------------------------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        if self.is_local:
            return self.local_path(name).exists()
        self.fs.invalidate_cache(self._remote(name))
        return self.fs.exists(self._remote(name))

    def fetch(self, names: Sequence[str]) -> list[Path]:
        """Local files for `names`, in order; remote objects not cached yet are downloaded (concurrently)."""
        paths = [self.local_path(n) for n in names]
        if self.is_local:
            return paths
        missing = [(n, p) for n, p in zip(names, paths, strict=True) if not p.exists()]
        for start in range(0, len(missing), FETCH_CHUNK):
            self._download(missing[start:start + FETCH_CHUNK])
        if missing:
            log.info("storage: fetched %d new objects from %s", len(missing), self.url)
        return paths

    def fetch_fresh(self, name: str) -> Path:
        """A local copy of the object as it is now (for files that change, such as latest.pt)."""
        path = self.local_path(name)
        if not self.is_local:
            self.fs.invalidate_cache(self._remote(name))
            self._download([(name, path)])
        return path

    def _download(self, batch: Iterable[tuple[str, Path]]) -> None:
        batch = list(batch)
        remote = [self._remote(n) for n, _ in batch]
        got = self.fs.cat(remote, on_error="return")
        for (name, path), key in zip(batch, remote, strict=True):
            data = got.get(key, got.get(self.fs._strip_protocol(key)))
            if not isinstance(data, bytes):
                raise StorageError(f"cannot read {self.url}/{name}: {data!r}")
            atomic_write_bytes(path, data, durable=False)

    def read_url(self, url: str) -> bytes:
        """The bytes of an object named by a full URL of this storage's kind (e.g. a checkpoint given as s3://...),
        with this storage's options (endpoint)."""
        if "://" not in url:
            return Path(url).read_bytes()
        if not self.is_local and url.split("://")[0] == self.url.split("://")[0]:
            return self.fs.cat_file(url)
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        return fs.cat_file(path)


def open_storage(settings: PipelineSettings) -> Storage:
    s = settings.storage
    cache = Path(os.path.expanduser(s.cache_dir)) if s.cache_dir else None
    return Storage(s.url, settings.paths.data_dir, cache, s.endpoint_url)
