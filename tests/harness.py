"""Run the real daemon as a subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]


def daemon_env() -> dict[str, str]:
    """The environment of a test daemon: tests/seams gives the random-init keypoint model plausible poses in every
    daemon process (see there); one OpenMP thread per process."""
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'seams'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
            "HUMANSTYLE_TEST_POSES": "1"}


class Daemon:
    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        import tomllib

        self.listen = tomllib.loads(config_path.read_text())["metrics"]["listen"]
        self.proc: subprocess.Popen | None = None
        self.pids: set[int] = set()

    def start(self, timeout: float = 90) -> Daemon:
        env = daemon_env()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "humanstyle.daemon.cli", "run", "--config",
                                      str(self.config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.wait_for(lambda: (h := self.health()) is not None and h["status"] == "ok", timeout, "healthy daemon")
        return self

    def url(self, path: str) -> str:
        return f"http://{self.listen}{path}"

    def health(self) -> dict | None:
        """The /healthz JSON (None while nothing answers). Its HTTP code must agree with its status: 200 with
        "ok", 503 with "degraded"; anything else fails the calling test at once."""
        try:
            with urllib.request.urlopen(self.url("/healthz"), timeout=5) as resp:
                code, data = resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            code, body = exc.code, exc.read()
            try:
                data = json.loads(body)
            except ValueError:
                data = {"status": None, "error": body[:200]}
        except OSError:
            return None
        expected = {"ok": 200, "degraded": 503}.get(data.get("status"))
        if code != expected:  # e.g. an exception in the handler: its traceback is in the daemon's log
            raise AssertionError(f"/healthz answered HTTP {code} with status {data.get('status')!r} "
                                 f"({data.get('error', '')!r})\n" + self.log_text()[-6000:])
        for stage in data["stages"].values():
            self.pids.update(stage.get("pids", []))
        return data

    def metrics(self) -> dict[tuple[str, tuple], float]:
        return scrape_metrics(self.url("/metrics"))

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum_samples(self.metrics(), name, **labels)

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode} while waiting for {what}:\n"
                                     + self.log_text()[-4000:])
            try:
                if predicate():
                    return
            except (OSError, KeyError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}:\n" + self.log_text()[-4000:])

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        assert self.proc is not None
        self.health()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive_children(self) -> list[int]:
        return [pid for pid in self.pids if _alive(pid)]


def scrape_metrics(url: str) -> dict[tuple[str, tuple], float]:
    """A /metrics page as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sum_samples(metrics: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, lbls), v in metrics.items()
               if n == name and all(dict(lbls).get(k) == val for k, val in labels.items()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def run_stage(stage: str, settings, index: int, stop) -> None:
    """Run one stage process's loop in this process (its stage from daemon.pipeline), as stage_main does."""
    from humanstyle.daemon.runtime.stage_loop import run_stage

    run_stage(stage, settings, index, stop)
