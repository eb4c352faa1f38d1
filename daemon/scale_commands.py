"""`humanstyle worker` (join a head with this machine's models) and `humanstyle keys` (CURVE key pairs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from humanstyle.daemon.config import Settings


def add_subcommands(sub: argparse._SubParsersAction, add_config: Callable, handlers: dict) -> None:
    p = sub.add_parser("worker", help="run the model stages for the head named in worker.head (another machine)")
    add_config(p)
    handlers["worker"] = cmd_worker

    p = sub.add_parser("keys", help="make CURVE key pairs for a head and its workers (NAME.key, NAME.key_secret)")
    p.add_argument("names", nargs="+", help='one key pair per name, e.g. "head gpu-workers"')
    p.add_argument("--dir", type=Path, default=Path("keys"), help="folder for the key files (default ./keys)")
    p.add_argument("--force", action="store_true", help="replace key files that exist")
    handlers["keys"] = cmd_keys


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from humanstyle.daemon.cli import run_supervisor
    from humanstyle.daemon.config import ConfigError
    from humanstyle.daemon.preflight import check_weights_in_child

    if not settings.worker.head:
        raise ConfigError('worker.head is not set: give the "host:port" of the head to join (its head.listen)')
    check_weights_in_child(settings)
    return run_supervisor(settings, "worker")


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from humanstyle.daemon.keys import make_keypair

    for name in args.names:
        try:
            public, secret = make_keypair(args.dir, name, force=args.force)
        except (FileExistsError, ValueError) as exc:
            print(f"humanstyle: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: public {public}  secret {secret} (mode 0600: keep it on its machine only)")
    print("The head gets head.key_secret (head.secret_key) and a folder with each worker's .key "
          "(head.authorized_keys); a worker gets its own .key_secret (worker.secret_key) and head.key "
          "(worker.head_key).")
    return 0
