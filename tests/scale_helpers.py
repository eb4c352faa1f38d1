"""A head and workers on "other machines" for tests and bench/scale.py: key files, configs, worker processes, and the
network between them.

Two networks: `Namespaces` gives each worker host its own network namespace joined to the head (the root namespace)
by a veth pair with its own addresses, so a worker really connects over an interface that can be cut
(`ip link set ... down`); it needs root and iproute2. `Loopback` runs the same workers over 127.0.0.1 where namespaces
cannot be made; there a cut link is played by stopping the worker's processes (SIGSTOP): from the head's side both
are a worker that falls silent with its connection open.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port, write_config
from tests.harness import ROOT, Daemon, daemon_env

HEARTBEAT_S, WORKER_TIMEOUT_S = 0.5, 3.0


def make_keys(folder: Path, workers: tuple[str, ...] = ("workers",), others: tuple[str, ...] = ()) -> Path:
    """Key pairs for a head, its authorized workers and `others` (not authorized); returns the folder."""
    from humanstyle.daemon.keys import make_keypair

    (folder / "authorized").mkdir(parents=True, exist_ok=True)
    make_keypair(folder, "head")
    for name in (*workers, *others):
        make_keypair(folder, name)
    for name in workers:
        shutil.copy(folder / f"{name}.key", folder / "authorized" / f"{name}.key")
    return folder


def head_sections(sections: dict[str, dict], listen: str, keys: Path | None, **head: object) -> dict[str, dict]:
    out = {k: dict(v) for k, v in sections.items()}
    out["head"] = {"listen": listen, "heartbeat_s": HEARTBEAT_S, "worker_timeout_s": WORKER_TIMEOUT_S, **head}
    if keys is not None:
        out["head"].update(secret_key=str(keys / "head.key_secret"), authorized_keys=str(keys / "authorized"))
    return out


def worker_sections(sections: dict[str, dict], folder: Path, head: str, name: str, metrics: str,
                    keys: Path | None, key_name: str = "workers", **worker: object) -> dict[str, dict]:
    """A worker's config: the model sections of `sections` (so it computes what a single machine would), its own
    runtime folder and metrics address."""
    out = {k: dict(v) for k, v in sections.items() if k in ("detect", "classify", "queues", "supervisor", "watch")}
    out["paths"] = {"runtime_dir": str(folder / "run")}
    out["metrics"] = {"listen": metrics}
    out["worker"] = {"head": head, "name": name, **worker}
    if keys is not None:
        out["worker"].update(secret_key=str(keys / f"{key_name}.key_secret"), head_key=str(keys / "head.key"))
    return out


class Worker:
    """`humanstyle worker` as a process group of its own (so a kill takes the whole machine's processes)."""

    def __init__(self, folder: Path, sections: dict[str, dict], prefix: list[str] = (),
                 env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.folder = folder
        self.config = write_config(folder, sections)
        self.listen = sections["metrics"]["listen"]
        self.name = sections["worker"]["name"]
        self.prefix = list(prefix)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        self.log = open(self.folder / "worker.log", "ab")
        self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "humanstyle.daemon.cli", "worker", "--config",
                                      str(self.config)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env or daemon_env(),
                                     cwd=ROOT, start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9 of every process of the worker: a machine that vanishes."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def value(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://{self.listen}/healthz", timeout=5) as resp:
                return json.load(resp)
        except OSError:
            return None

    def log_text(self) -> str:
        return (self.folder / "worker.log").read_text(errors="replace")


def head_workers(head: Daemon) -> dict[str, dict]:
    """The head's /healthz worker table by worker name."""
    health = head.health() or {}
    return {w["name"]: w for w in health.get("workers", [])}


# --- networks -------------------------------------------------------------------------------------------------------
class Loopback:
    """Worker hosts on this machine's loopback; a link cut is SIGSTOP of the worker's processes."""

    def __init__(self, hosts: int) -> None:
        self.hosts = hosts

    def __enter__(self) -> Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def head_listen(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    def head_address(self, host: int, port: int) -> str:
        return f"127.0.0.1:{port}"

    def metrics_listen(self, host: int) -> str:
        return f"127.0.0.1:{free_port()}"

    def prefix(self, host: int) -> list[str]:
        return []

    def cut(self, host: int, worker: Worker) -> None:
        worker.signal(signal.SIGSTOP)

    def restore(self, host: int, worker: Worker) -> None:
        worker.signal(signal.SIGCONT)


class Namespaces:
    """Worker hosts 1..n, each a network namespace with address 10.R.i.2, joined by a veth pair to the root namespace
    (10.R.i.1), where the head runs. Removed on exit."""

    def __init__(self, hosts: int) -> None:
        self.hosts = hosts
        self.tag = secrets.token_hex(2)
        self.subnet = 200 + int(self.tag, 16) % 50
        self.made: list[tuple[str, str]] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be made here, or None."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        if shutil.which("ip") is None:
            return "iproute2's ip is not installed"
        probe = f"hs-probe-{secrets.token_hex(2)}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            return f"ip netns add failed: {made.stderr.strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None

    def ns(self, host: int) -> str:
        return f"hs-{self.tag}-w{host}"

    def veth(self, host: int) -> str:
        return f"hs{self.tag}h{host}"  # the root side; at most 15 characters

    def __enter__(self) -> Namespaces:
        try:
            for host in range(1, self.hosts + 1):
                ns, root_side, inner = self.ns(host), self.veth(host), f"hs{self.tag}w{host}"
                _ip("netns", "add", ns)
                self.made.append(("ns", ns))
                _ip("link", "add", root_side, "type", "veth", "peer", "name", inner)
                self.made.append(("link", root_side))
                _ip("link", "set", inner, "netns", ns)
                _ip("addr", "add", f"10.{self.subnet}.{host}.1/24", "dev", root_side)
                _ip("link", "set", root_side, "up")
                _ip("-n", ns, "addr", "add", f"10.{self.subnet}.{host}.2/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for kind, name in reversed(self.made):
            if kind == "link":
                subprocess.run(["ip", "link", "del", name], capture_output=True)
            else:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made.clear()

    def head_listen(self, port: int) -> str:
        return f"0.0.0.0:{port}"  # every interface: a non-loopback bind, so CURVE keys are required

    def head_address(self, host: int, port: int) -> str:
        return f"10.{self.subnet}.{host}.1:{port}"

    def metrics_listen(self, host: int) -> str:
        return f"10.{self.subnet}.{host}.2:{free_port()}"  # reachable from the root namespace over the veth

    def prefix(self, host: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def cut(self, host: int, worker: Worker) -> None:
        _ip("link", "set", self.veth(host), "down")

    def restore(self, host: int, worker: Worker) -> None:
        _ip("link", "set", self.veth(host), "up")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def wait(predicate, timeout: float, what: str, logs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if predicate():
                return
        time.sleep(0.25)
    tails = "\n".join(f"--- {p}:\n{Path(p).read_text(errors='replace')[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")
