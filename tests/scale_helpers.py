"""Machines of a cluster for tests and bench/scale.py: daemon processes on "other hosts", the servers they share
(PostgreSQL and S3), and the network between them.

Two networks: `Namespaces` gives each ingest host its own network namespace joined to the root namespace (where the
coordinator and the servers run) by a veth pair with its own addresses, so a machine really connects over an
interface that can be cut (`ip link set ... down`); it needs root and iproute2. `Loopback` runs the same machines
over 127.0.0.1 where namespaces cannot be made; there a cut link is played by stopping the machine's processes
(SIGSTOP): from the catalog's side both are a machine that stops renewing its leases.
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
from tests.harness import ROOT, daemon_env, scrape_metrics, sum_samples


class Machine:
    """`humanstyle run` on another "machine": its own folder, config and metrics address, a process group of its own
    (so a kill takes all of its processes), started under `prefix` (`ip netns exec NS` for a host of its own)."""

    def __init__(self, folder: Path, sections: dict[str, dict], prefix: list[str] = (),
                 env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.folder = folder
        self.config = write_config(folder, sections)
        self.listen = sections["metrics"]["listen"]
        self.prefix = list(prefix)
        self.proc: subprocess.Popen | None = None
        self.log_path = folder / "daemon.log"

    def start(self) -> Machine:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "humanstyle.daemon.cli", "run", "--config",
                                      str(self.config)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env or daemon_env(), cwd=ROOT, start_new_session=True)
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9 of every process of the machine: a machine that vanishes."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum_samples(scrape_metrics(f"http://{self.listen}/metrics"), name, **labels)

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://{self.listen}/healthz", timeout=5) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:  # 503: degraded, with its JSON
            return json.loads(exc.read())
        except OSError:
            return None


class Services:
    """A PostgreSQL and an S3 (moto) server of the test's own, started by .ci/services.sh bound to `listen` and
    letting PostgreSQL clients from `clients` (a CIDR) in: the shared catalog and storage of machines on other
    hosts. `restart_postgres()` crashes and restarts the server (pg_ctl restart -m immediate)."""

    def __init__(self, listen: str, clients: str) -> None:
        self.listen, self.clients = listen, clients
        self.info: dict[str, str] = {}

    def __enter__(self) -> Services:
        script = ('source .ci/services.sh && start_services "$VENV" >&2 && echo "PG_URL=$HUMANSTYLE_TEST_POSTGRES_URL" '
                  '&& echo "PG_CTL=$HUMANSTYLE_TEST_POSTGRES_CTL" && echo "PG_DIR=$HS_PG_DIR" '
                  '&& echo "S3=$HUMANSTYLE_TEST_S3_ENDPOINT" && echo "S3_PID=$HS_S3_PID" && echo "S3_LOG=$HS_S3_LOG"')
        env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent), "HS_LISTEN": self.listen,
               "HS_PG_HBA": self.clients}
        out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        self.info = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        if out.returncode != 0 or not self.info.get("PG_URL", "").startswith("postgresql://") or \
                not self.info.get("S3", "").startswith("http"):
            self.__exit__()
            raise RuntimeError(f"could not start the services: {out.stderr[-2000:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.info.get("PG_CTL"):
            subprocess.run([self.info["PG_CTL"], "stop", "-m", "immediate"], capture_output=True)
            shutil.rmtree(self.info["PG_DIR"], ignore_errors=True)
        if self.info.get("S3_PID"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(self.info["S3_PID"]), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.unlink(self.info["S3_LOG"])

    def postgres_url(self, host: str, database: str) -> str:
        """The URL of `database` as seen from `host` (the address the server is reached at). The test network's
        server has no TLS, and says so (a catalog on another host needs its sslmode said: daemon.config)."""
        port = self.info["PG_URL"].rsplit(":", 1)[1].split("/")[0]
        return f"postgresql://humanstyle@{host}:{port}/{database}?sslmode=disable"

    def s3_endpoint(self, host: str) -> str:
        return f"http://{host}:{self.info['S3'].rsplit(':', 1)[1]}"

    def restart_postgres(self) -> None:
        subprocess.run([self.info["PG_CTL"], "restart", "-m", "immediate"], check=True, capture_output=True,
                       timeout=120)


# --- networks -------------------------------------------------------------------------------------------------------
class Loopback:
    """Hosts on this machine's loopback; a link cut is SIGSTOP of the machine's processes."""

    services_listen, clients = "127.0.0.1", "127.0.0.1/32"

    def __init__(self, hosts: int) -> None:
        self.hosts = hosts

    def __enter__(self) -> Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def root_address(self, host: int) -> str:
        """Where host `host` reaches the root host (the coordinator's and the servers')."""
        return "127.0.0.1"

    def metrics_listen(self, host: int) -> str:
        return f"127.0.0.1:{free_port()}"

    def prefix(self, host: int) -> list[str]:
        return []

    def cut(self, host: int, machine: Machine) -> None:
        machine.signal(signal.SIGSTOP)

    def restore(self, host: int, machine: Machine) -> None:
        machine.signal(signal.SIGCONT)


class Namespaces:
    """Hosts 1..n, each a network namespace with address 10.R.i.2, joined by a veth pair to the root namespace
    (10.R.i.1), where the coordinator and the servers run. Removed on exit."""

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

    services_listen = "0.0.0.0"  # the servers answer on every veth's root side

    @property
    def clients(self) -> str:
        return f"10.{self.subnet}.0.0/16"

    def root_address(self, host: int) -> str:
        return f"10.{self.subnet}.{host}.1"

    def metrics_listen(self, host: int) -> str:
        return f"10.{self.subnet}.{host}.2:{free_port()}"  # reachable from the root namespace over the veth

    def prefix(self, host: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def cut(self, host: int, machine: Machine) -> None:
        _ip("link", "set", self.veth(host), "down")

    def restore(self, host: int, machine: Machine) -> None:
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
