"""Security properties that can be checked from the source and the config, without a daemon (the live checks of
the runtime folder, socket files and listening ports are in test_reliability_sockets.py):

- every torch.load passes weights_only=True (checkpoints and weights are data, not code);
- nothing received or read is unpickled or evaluated: no pickle / marshal / shelve / dill, no eval / exec,
  no numpy allow_pickle=True, no yaml.load, no shell=True, no os.system in daemon/, stages/, models/;
- the defaults listen on loopback and the runtime folder is private (0700) even if it existed with another mode.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from humanstyle.daemon import config
from humanstyle.daemon.runtime.paths import prepare_runtime_dir

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("daemon", "stages", "models")
SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


@pytest.fixture(scope="module")
def trees():
    assert SOURCES, "no sources found"
    return {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(), str(p)) for p in SOURCES}


def test_every_torch_load_is_weights_only(trees):
    loads, bad = 0, []
    for name, tree in trees.items():
        for call in calls(tree):
            if dotted(call.func) == "torch.load":
                loads += 1
                if not is_true(keyword(call, "weights_only")):
                    bad.append(f"{name}:{call.lineno}")
    assert loads >= 1, "expected the weights and checkpoint loaders to call torch.load"
    assert bad == [], f"torch.load without weights_only=True: {bad}"


def test_nothing_is_unpickled_or_evaluated(trees):
    found = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{name}:{node.lineno} import {a.name}" for a in node.names
                          if a.name.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{name}:{node.lineno} from {node.module}")
        for call in calls(tree):
            func = dotted(call.func)
            if func in ("eval", "exec", "os.system", "yaml.load", "compile"):
                found.append(f"{name}:{call.lineno} {func}()")
            if func.endswith(("np.load", "numpy.load")) and is_true(keyword(call, "allow_pickle")):
                found.append(f"{name}:{call.lineno} np.load(allow_pickle=True)")
            if is_true(keyword(call, "shell")):
                found.append(f"{name}:{call.lineno} shell=True")
    assert found == []


def test_the_wire_format_is_json_and_raw_buffers():
    from humanstyle.daemon.runtime import wire

    source = (ROOT / "daemon" / "runtime" / "wire.py").read_text()
    assert "json.loads" in source and "np.frombuffer" in source
    assert wire.ALLOWED_DTYPES <= {"uint8", "bool", "float32", "int64"}  # no object arrays


def test_defaults_listen_on_loopback_only():
    defaults = config.load(None)
    assert defaults.metrics.listen.startswith("127.0.0.1:")
    assert defaults.queues.transport == "ipc" and defaults.queues.tcp_host == "127.0.0.1"


def test_the_runtime_folder_is_made_private_even_if_it_existed_open(tmp_path):
    from tests.conftest import fast_sections, write_config

    run = tmp_path / "run"
    run.mkdir(mode=0o777)
    os.chmod(run, 0o777)
    settings = config.load(write_config(tmp_path, fast_sections(tmp_path)))
    assert prepare_runtime_dir(settings) == run
    assert run.stat().st_mode & 0o777 == 0o700
