"""Run numpy's BLAS on one thread for a while (the pose store's products are matrix-vector products of a few
hundred kilobytes: OpenBLAS's worker threads cost more to wake than they save, and on a busy machine they stall).

Works with the OpenBLAS that numpy wheels bundle (scipy-openblas, found next to numpy); anything else is left
alone (`single_blas_thread` then does nothing).
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np

_NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
          ("openblas_get_num_threads", "openblas_set_num_threads"))


@cache
def _openblas() -> tuple[object, object] | None:
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _NAMES:
            if hasattr(lib, get) and hasattr(lib, set_):
                getter, setter = getattr(lib, get), getattr(lib, set_)
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


@contextmanager
def single_blas_thread() -> Iterator[None]:
    funcs = _openblas()
    if funcs is None:
        yield
        return
    getter, setter = funcs
    before = getter()  # type: ignore[operator]
    if before == 1:
        yield
        return
    setter(1)  # type: ignore[operator]
    try:
        yield
    finally:
        setter(before)  # type: ignore[operator]
