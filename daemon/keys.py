"""CURVE keys between the head and its workers: making key pairs (`humanstyle keys`), the config rules for tcp
addresses, and the socket options and authenticator that use them.

Every tcp connection between machines is encrypted and authenticated with ZeroMQ's CURVE mechanism: the head holds a
secret key and accepts only workers whose public key file is in `head.authorized_keys`; a worker holds its own secret
key and the head's public key, so it only ever talks to the real head. Key files are ZeroMQ's certificate files
(`NAME.key` public, `NAME.key_secret` secret), read as text. A tcp socket on a non-loopback address without keys is a
config error that names the key to set; on loopback (one machine) keys are optional.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from humanstyle.daemon.config import ConfigError, Settings, parse_listen

log = logging.getLogger("humanstyle.keys")
MODEL_STAGES = ("detect", "classify")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach. Host names other than localhost count as reachable."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_settings(s: Settings) -> None:
    """The rules for tcp addresses and keys (part of the config's cross checks)."""
    q = s.queues
    if q.transport == "tcp" and not is_loopback(q.tcp_host):
        raise ConfigError(f"queues.tcp_host = {q.tcp_host!r} is not a loopback address: the queues join the processes "
                          "of one machine and are not encrypted; keep them on 127.0.0.1 and let other machines join as "
                          "workers (set head.listen and head.secret_key, see humanstyle keys)")
    h = s.head
    if h.listen:
        host, _ = parse_listen(h.listen, key="head.listen")
        if not h.secret_key and not is_loopback(host):
            raise ConfigError(f"head.listen = {h.listen!r} is not a loopback address and head.secret_key is not set: "
                              "workers join over CURVE; make keys with `humanstyle keys head WORKER` and set "
                              "head.secret_key and head.authorized_keys")
        if h.secret_key and not h.authorized_keys:
            raise ConfigError("head.secret_key is set but head.authorized_keys is not: set it to the folder of the "
                              "workers' public key files (*.key)")
    w = s.worker
    if not w.stages or len(set(w.stages)) != len(w.stages) or not set(w.stages) <= set(MODEL_STAGES):
        raise ConfigError(f"worker.stages = {w.stages!r}: expected detect, classify or both, each once")
    if w.head:
        host, _ = parse_listen(w.head, key="worker.head")
        if not is_loopback(host) and not (w.secret_key and w.head_key):
            missing = "worker.secret_key" if not w.secret_key else "worker.head_key"
            raise ConfigError(f"worker.head = {w.head!r} is not a loopback address and {missing} is not set: the "
                              "connection must be encrypted (humanstyle keys makes the key files)")
    if bool(w.secret_key) != bool(w.head_key):
        missing = "worker.head_key" if w.secret_key else "worker.secret_key"
        raise ConfigError(f"{missing} is not set: a worker needs both its own secret key and the head's public key")


# --- key files --------------------------------------------------------------------------------------------------
def make_keypair(folder: Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (secret, mode 0600) into `folder`; returns their paths."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a plain file name")
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    existing = [p for p in (public, secret) if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists (use --force to replace it)")
    for p in existing:
        p.unlink()
    old = os.umask(0o077)  # the secret file is never readable by others, not even for a moment
    try:
        made_public, made_secret = zmq.auth.create_certificates(str(folder), name)
    finally:
        os.umask(old)
    os.chmod(made_secret, 0o600)
    os.chmod(made_public, 0o644)
    return Path(made_public), Path(made_secret)


def load_secret(path: str, key: str) -> tuple[bytes, bytes]:
    """(public, secret) from a .key_secret file; `key` names the setting in errors."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key} = {path!r}: cannot read a key pair ({exc})") from None
    if not secret:
        raise ConfigError(f"{key} = {path!r} holds no secret key: give the .key_secret file")
    return public, secret


def load_public(path: str, key: str) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key} = {path!r}: cannot read a public key ({exc})") from None
    return public


def make_server(sock: zmq.Socket, secret_path: str, key: str) -> None:
    public, secret = load_secret(secret_path, key)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def make_client(sock: zmq.Socket, secret_path: str, server_public_path: str) -> bytes:
    """CURVE client options; returns this side's public key (to name it in logs)."""
    public, secret = load_secret(secret_path, "worker.secret_key")
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = load_public(server_public_path, "worker.head_key")
    return public


class AuthorizedKeys:
    """The public keys in a folder of *.key files, re-read whenever the folder's listing or a file changes, so a
    worker is admitted (or removed) without restarting the head."""

    def __init__(self, folder: str, on_refused: Callable[[bytes], None]) -> None:
        self.folder = Path(folder)
        self.on_refused = on_refused
        self._stamp: tuple = ()
        self._keys: set[bytes] = set()
        self._lock = threading.Lock()

    def _current_stamp(self) -> tuple:
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in self.folder.glob("*.key")))
        except OSError:
            return ()

    def keys(self) -> set[bytes]:
        with self._lock:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                keys = set()
                for path in sorted(self.folder.glob("*.key")):
                    try:
                        public, _ = zmq.auth.load_certificate(str(path))
                        keys.add(public)
                    except (OSError, ValueError) as exc:
                        log.warning("ignoring %s: not a public key file (%s)", path, exc)
                self._stamp, self._keys = stamp, keys
                log.info("%d worker key(s) authorized from %s", len(keys), self.folder)
            return self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's CURVE credentials callback: `key` is the client's public key in Z85."""
        if key in self.keys():
            return True
        self.on_refused(key)
        return False


def start_authenticator(ctx: zmq.Context, authorized: AuthorizedKeys) -> ThreadAuthenticator:
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("humanstyle.zap"))
    auth.start()
    auth.configure_curve_callback("*", authorized)
    return auth
