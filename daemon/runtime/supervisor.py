"""Starts every stage as its own process, restarts crashed ones with backoff, serves the web page, /metrics and
/healthz (daemon.web), and stops everything in order on SIGINT/SIGTERM.

Which processes run and the stop order come from daemon/pipeline.py: the stages that do not drain (watch, decode,
detect, classify, pairing, train) get SIGTERM first and finish the unit they hold; the index, the writer of patches,
keeps receiving until they are gone, then stops too. Anything
still alive after `supervisor.shutdown_timeout_s` is killed, so no child outlives the daemon.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from humanstyle.daemon import pipeline
from humanstyle.daemon.config import Settings

log = logging.getLogger("humanstyle.supervisor")

FATAL_EXIT = 78  # a child exits with this (StageFatal) when its config cannot work: restarting would not help


@dataclass
class Child:
    stage: str
    replica: int
    process: mp.Process | None = None
    started_at: float = 0.0
    crashes: deque = field(default_factory=deque)
    consecutive: int = 0
    restart_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.stage}-{self.replica}"


def plan_children(settings: Settings) -> list[Child]:
    """The processes of this machine's role (daemon.pipeline.plan): one machine runs every stage; a coordinator
    watches, registers and pairs (and trains when train.enabled); an ingest machine claims segments and runs the
    model stages."""
    return [Child(stage, replica) for stage, replica in pipeline.plan(settings)]


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        from humanstyle.daemon.runtime.paths import prepare_runtime_dir

        self.settings = settings
        self.runtime = prepare_runtime_dir(settings)
        self.children = plan_children(settings)
        self.stopping = threading.Event()
        self.exit_code = 0
        self.ctx = mp.get_context("spawn")
        self.started = time.time()
        self._control = None
        self._leases: tuple[float, dict] | None = None
        self._leases_lock = threading.Lock()
        from humanstyle.daemon.web.app import CatalogReader

        self._lease_reader = CatalogReader(settings)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def run(self) -> int:
        from humanstyle.daemon.runtime import metrics

        metrics.init_known_series(self.settings.domains)
        for child in self.children:
            metrics.STAGE_PROCESSES.labels(child.stage).inc()
        self.prepare_folders()
        server = self._serve_http()
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        for child in self.children:
            self._start(child)
        log.info("humanstyle running: %d processes, web page on http://%s/ (metrics: /metrics)", len(self.children),
                 self.settings.metrics.listen)
        try:
            while not self.stopping.wait(0.2):
                self._watch_children()
        finally:
            self._shutdown()
            server.stop()
        return self.exit_code

    def prepare_folders(self) -> None:
        self.settings.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings.paths.watch_dir.mkdir(parents=True, exist_ok=True)
        for domain in self.settings.domains:
            (self.settings.paths.watch_dir / domain).mkdir(exist_ok=True)

    def _start(self, child: Child) -> None:
        from humanstyle.daemon.runtime import metrics
        from humanstyle.daemon.runtime.stage_main import stage_main

        child.process = self.ctx.Process(target=stage_main, name=f"humanstyle-{child.name}", daemon=False,
                                         args=(child.stage, child.replica, self.settings, os.getpid()))
        child.process.start()
        child.started_at = time.monotonic()
        child.restart_at = None
        metrics.STAGE_UP.labels(child.stage).inc()
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def _watch_children(self) -> None:
        from humanstyle.daemon.runtime import metrics

        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                    metrics.STAGE_RESTARTS.labels(child.stage).inc()
                    # A restarted index redoes its in-flight videos by itself; telling it again would spend
                    # a second of each video's attempts.
                    if pipeline.STAGES[child.stage].restart_redoes_videos:
                        self._notify_restart(child.stage)
                continue
            if proc is None or proc.is_alive():
                if proc is not None and now - child.started_at > self.settings.supervisor.crash_loop_window_s:
                    child.consecutive = 0
                continue
            code = proc.exitcode
            self._reap(child)
            if code == FATAL_EXIT:
                log.error("%s cannot run with this configuration (see its error above); stopping", child.name)
                self.exit_code = 1
                self.stopping.set()
                return
            window = self.settings.supervisor.crash_loop_window_s
            child.crashes.append(now)
            while child.crashes and now - child.crashes[0] > window:
                child.crashes.popleft()
            if len(child.crashes) >= self.settings.supervisor.crash_loop_restarts:
                log.error("%s crashed %d times in %.0f s: crash loop, stopping the daemon", child.name,
                          len(child.crashes), window)
                self.exit_code = 1
                self.stopping.set()
                return
            delay = min(self.settings.supervisor.restart_backoff_s * (2 ** child.consecutive),
                        self.settings.supervisor.max_backoff_s)
            child.consecutive += 1
            child.restart_at = now + delay
            log.warning("%s exited with code %s; restarting in %.1f s", child.name, code, delay)

    def _reap(self, child: Child) -> None:
        from prometheus_client import multiprocess

        from humanstyle.daemon.runtime import metrics

        proc = child.process
        if proc is None:
            return
        proc.join(timeout=0)
        metrics.STAGE_UP.labels(child.stage).dec()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(proc.pid)
        child.process = None

    def _notify_restart(self, stage: str) -> None:
        """Tell the index that work held by a dead process is lost, so it redoes the videos in flight."""
        from humanstyle.daemon.runtime import fabric
        from humanstyle.stages.records import StageRestarted

        if self._control is None:
            self._fabric = fabric.Fabric(self.settings, "supervisor")
            self._control = self._fabric.sender_to("control")
        try:
            self._control.send(StageRestarted(stage=stage), grace_s=1.0)
        except fabric.Stopping:
            log.warning("could not notify the index of the %s restart", stage)

    def _shutdown(self) -> None:
        timeout = self.settings.supervisor.shutdown_timeout_s
        log.info("stopping: draining stages (up to %.0f s)", timeout)
        # The stages that stop last keep receiving what the others finish (daemon.pipeline, Stage.drain_s).
        first = [c for c in self.children if not pipeline.STAGES[c.stage].stops_last]
        last = [c for c in self.children if pipeline.STAGES[c.stage].stops_last]
        for group in (first, last):
            for child in group:
                child.restart_at = None
                if child.process is not None and child.process.is_alive():
                    child.process.terminate()
            deadline = time.monotonic() + timeout
            for child in group:
                if child.process is None:
                    continue
                child.process.join(max(0.0, deadline - time.monotonic()))
                if child.process.is_alive():
                    log.warning("%s did not stop in time; killing it", child.name)
                    child.process.kill()
                    child.process.join(5)
                self._reap(child)
        if self._control is not None:
            self._fabric.close()
        log.info("stopped")

    # --- HTTP --------------------------------------------------------------------------------------------------
    def health(self, samples: list | None = None) -> dict:
        """/healthz's answer; `samples`: the merged metric samples when the caller has collected them already."""
        from humanstyle.daemon.web.metrics_server import gauge_value, process_samples, stage_gauges

        samples = process_samples() if samples is None else samples
        last, ready = stage_gauges(samples)
        stages: dict[str, dict] = {}
        for child in self.children:
            process = child.process  # once: the main thread sets it to None when it reaps the process
            alive = process is not None and process.is_alive()
            info = stages.setdefault(child.stage, {"processes": 0, "alive": 0, "ready": ready.get(child.stage, 0),
                                                   "restarting": 0, "pids": []})
            info["processes"] += 1
            if alive:
                info["pids"].append(process.pid)
            info["alive"] += int(alive)
            info["restarting"] += int(child.restart_at is not None)
            if child.stage in last:
                info["last_work_s_ago"] = round(time.time() - last[child.stage], 3)
        # Healthy: every process is alive and has finished starting (sockets bound, models loaded).
        healthy = all(s["alive"] == s["ready"] == s["processes"] for s in stages.values())
        healthy = healthy and not self.stopping.is_set()
        backlog = gauge_value(samples, "humanstyle_pairing_backlog_patches")
        answer = {"status": "ok" if healthy else "degraded", "uptime_s": round(time.time() - self.started, 1),
                  "role": self.settings.ingest.role, "stages": stages,
                  "pairing": {"backlog_patches": None if backlog is None else int(backlog)}}
        if self.settings.ingest.role != "ingest":
            # The backlog is the registering index's gauge (it already counts it); the leases are read here.
            backlog = gauge_value(samples, "humanstyle_backlog_video_seconds")
            answer["ingest"] = {**self.leases(), "backlog_video_s": backlog}
        return answer

    def leases(self) -> dict:
        """The machines ingesting (from the catalog's leases) and the leases taken over: read at most every 2 s, on
        read-only connections of its own."""
        now = time.monotonic()
        if self._leases is not None and now - self._leases[0] < 2.0:
            return self._leases[1]
        from humanstyle.stages.store.segments import Segments

        with self._leases_lock:
            for attempt in (1, 2):  # a connection the server dropped (a restart) fails once, then reconnects
                reader = None
                try:
                    reader = self._lease_reader()  # one read-only connection per server thread
                    if reader is None:
                        return {"machines": [], "leases_expired": 0}
                    segs = Segments(reader)
                    view = {"machines": segs.machines(), "leases_expired": segs.expired_total()}
                    break
                except Exception as exc:  # the catalog is away (a restarting server): say so, keep serving
                    if reader is not None:
                        reader.rollback()
                    if attempt == 2:
                        return {"machines": [], "leases_expired": None, "error": str(exc)[:200]}
            self._leases = (now, view)
            return view

    def _serve_http(self):
        """The web page, /metrics and /healthz on metrics.listen (daemon.web)."""
        from humanstyle.daemon.web.server import WebServer

        return WebServer(self.settings, self.health).start()


