"""`humanstyle` command line: parse, load the config, hand over to the rest. Exit codes: 0 ok, 1 runtime failure,
2 bad config or arguments (including missing model weights)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from humanstyle.daemon import config

log = logging.getLogger("humanstyle")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, default=None,
                   help="config file (default: ./config.toml when present, else built-in defaults)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humanstyle", description=(
        "Watch folders of footage, mine person patches, pair them across domains and train style-transfer GANs."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon in the foreground (Ctrl-C stops it cleanly)")
    p.add_argument("--role", choices=("all", "coordinator", "ingest"),
                   help="what this machine does, instead of ingest.role: all (one machine), coordinator (watch, "
                   "register, pair, train, serve the page) or ingest (claim segments and run the models)")
    _add_config(p)
    p = sub.add_parser("check-config", help="validate the config and print the effective settings")
    _add_config(p)
    p = sub.add_parser("status", help="counts of videos, patches and pairs from the catalog")
    _add_config(p)
    p = sub.add_parser("health", help="ask the running daemon's /healthz at the configured metrics.listen; exit 0 "
                       "only when it is healthy (for container and Kubernetes probes)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
    _add_config(p)
    from humanstyle.daemon.cli import data_commands as commands

    commands.add_subcommands(sub, _add_config)
    # `humanstyle COMMAND --help` opens with the line the command list shows, and says where the rest is written.
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, command in sub.choices.items():
        first = helps.get(name) or ""
        command.description = command.description or (first[:1].upper() + first[1:] + ".")
        command.epilog = command.epilog or EPILOG
    return parser


EPILOG = ("Settings: config.toml lists every key with its default and a one-line description (humanstyle check-config "
          "prints the effective ones). How it works, commands and operations: README.md.")


def resolve_config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    default = Path("config.toml")
    return default if default.exists() else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.load(resolve_config_path(getattr(args, "config", None)))
    except config.ConfigError as exc:
        print(f"humanstyle: config error: {exc}", file=sys.stderr)
        return 2
    from humanstyle.daemon.runtime.logs import setup_logging

    setup_logging(settings.log.level)
    handler = {"run": cmd_run, "check-config": cmd_check_config, "status": cmd_status,
               "health": cmd_health}.get(args.command)
    if handler is None:
        from humanstyle.daemon.cli import data_commands as commands

        handler = commands.HANDLERS[args.command]
    from humanstyle.stages.store.catalog_sql import CatalogError
    from humanstyle.stages.store.storage import StorageError

    try:
        return handler(settings, args)
    except config.ConfigError as exc:
        print(f"humanstyle: {exc}", file=sys.stderr)
        return 2
    except (CatalogError, StorageError) as exc:  # a catalog or storage that cannot be reached or used
        print(f"humanstyle: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def cmd_check_config(settings: config.Settings, args: argparse.Namespace) -> int:
    origin = settings.source or "built-in defaults"
    print(f"# effective configuration (from {origin})")
    print(config.to_toml(settings))
    return 0


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    from humanstyle.stages.store.catalog import catalog_exists, catalog_target, open_catalog
    from humanstyle.stages.store.catalog_sql import redact

    if not catalog_exists(settings):
        print(f"no catalog yet at {redact(str(catalog_target(settings)))}: nothing has been ingested")
        return 0
    catalog = open_catalog(settings, readonly=True, role="status")
    counts = catalog.counts()
    copies, copy_count = catalog.copies(limit=20), catalog.copy_count()
    unpaired = catalog.unindexed_count()
    in_progress = catalog.videos_in_progress()
    catalog.close()
    sections = [("videos", ("domain", "status")), ("patches", ("domain", "view")),
                ("rejections", ("domain", "reason")), ("pairs", ("view",)), ("curated", ("verdict",))]
    for name, cols in sections:
        rows = counts[name]
        total = sum(r[-1] for r in rows)
        print(f"{name}: {total}")
        for row in rows:
            print("  " + "  ".join(f"{c}={v}" for c, v in zip(cols, row[:-1], strict=True)) + f"  count={row[-1]}")
    print(f"patches waiting to be paired: {unpaired}")
    print(f"videos in progress: {len(in_progress)}")
    for row in in_progress:
        of = f" of {row['windows_expected']}" if row["windows_expected"] else ""
        print(f"  video {row['id']} ({row['domain']}, attempt {row['attempt']}): {row['windows']}{of} windows done, "
              f"{row['path']}")
    print(f"copies not processed: {copy_count}")
    for row in copies:
        print(f"  {row['path']} (in {row['domain'] or '?'}): a copy of video {row['video_id']}, {row['original']} "
              f"(in {row['original_domain']})")
    if copy_count > len(copies):
        print(f"  ... and {copy_count - len(copies)} more")
    return 0


def health_url(listen: str) -> str:
    """/healthz of a daemon listening on `listen` ("host:port"), asked on loopback when it listens everywhere."""
    host, port = listen.rsplit(":", 1)
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def cmd_health(settings: config.Settings, args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    url = health_url(settings.metrics.listen)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            code, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # 503: degraded, with its JSON
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        print(f"humanstyle: no daemon answers at {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    status = data.get("status", f"HTTP {code}")
    unwell = [name for name, s in data.get("stages", {}).items()
              if not s.get("alive") == s.get("ready") == s.get("processes")]
    print(f"{status}: {url}" + (f" (not ready: {', '.join(unwell)})" if unwell else ""))
    return 0 if code == 200 and status == "ok" else 1


def cmd_run(settings: config.Settings, args: argparse.Namespace) -> int:
    from humanstyle.daemon.runtime.preflight import check_folders, check_weights_in_child

    if args.role:
        settings = dataclasses.replace(settings, ingest=dataclasses.replace(settings.ingest, role=args.role))
        config.cross_check(settings)
    if settings.ingest.role != "coordinator":  # a coordinator runs no model: its ingest machines check their own
        check_weights_in_child(settings)  # raises ConfigError naming the missing file, before any video is touched
    check_folders(settings)
    return run_supervisor(settings, "daemon")


DAEMON_LOCK = "daemon.lock"  # in the data folder: held by the running daemon's supervisor

# The supervisor of each kind of process tree, imported only once the environment below is set.
SUPERVISORS = {"daemon": ("humanstyle.daemon.runtime.supervisor", "Supervisor")}


def run_supervisor(settings: config.Settings, kind: str) -> int:
    """Prepare the runtime folder and the environment the stage processes inherit, then run a supervisor of this
    kind (`SUPERVISORS`) until it stops; its exit status."""
    import importlib

    from humanstyle.daemon.runtime.paths import prepare_metrics_dir, prepare_runtime_dir
    from humanstyle.stages.store.folder_lock import FolderLock

    # One daemon per data folder, checked before anything of the running one (its sockets, metric files) is touched.
    lock = FolderLock(settings.paths.data_dir / DAEMON_LOCK,
                      f"humanstyle {kind} (config {settings.source or 'built-in defaults'})")
    if not lock.acquire():
        print(f"humanstyle: {settings.paths.data_dir} is in use by another daemon: {lock.holder() or 'unknown'}. "
              "Stop it first, or give this one its own paths.data_dir.", file=sys.stderr)
        return 2
    runtime = prepare_runtime_dir(settings)
    # prometheus_client reads this when first imported, so it must be set before any metric exists.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prepare_metrics_dir(runtime))
    # Stage processes inherit this: idle OpenMP threads sleep rather than spin, so model stages can share cores
    # (see daemon/pipeline.py, model_threads). Read by OpenMP when torch loads, which happens only in the stage
    # processes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module, name = SUPERVISORS[kind]
    supervisor = getattr(importlib.import_module(module), name)
    try:
        return supervisor(settings).run()
    except OSError as exc:
        print(f"humanstyle: cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
