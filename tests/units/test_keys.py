"""CURVE keys (daemon.keys, `humanstyle keys`): key files as a user gets them, the config rules for tcp addresses
(a non-loopback socket without keys stops the start with the key to set), and the head's authenticator: a listed
key gets through, an unknown one is refused and counted, and a key added to the folder later is admitted without
a restart."""

from __future__ import annotations

import shutil
import stat
import time

import pytest
import zmq

from humanstyle.daemon import config
from humanstyle.daemon import remote_metrics as rm
from humanstyle.daemon.cli import main
from humanstyle.daemon.keys import AuthorizedKeys, make_client, make_server, start_authenticator
from tests.conftest import fast_sections, free_port, write_config


def test_keys_command_writes_a_private_secret_and_never_overwrites(tmp_path, capsys):
    assert main(["keys", "head", "gpu", "--dir", str(tmp_path)]) == 0
    for name in ("head", "gpu"):
        assert stat.S_IMODE((tmp_path / f"{name}.key_secret").stat().st_mode) == 0o600
        assert "secret-key" not in (tmp_path / f"{name}.key").read_text()
    assert "gpu: public" in capsys.readouterr().out
    before = (tmp_path / "gpu.key").read_text()
    assert main(["keys", "gpu", "--dir", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err and (tmp_path / "gpu.key").read_text() == before


def load(tmp_path, **sections):
    return config.load(write_config(tmp_path, fast_sections(tmp_path, **sections)))


@pytest.mark.parametrize(("sections", "named"), [
    ({"head": {"listen": "0.0.0.0:5560"}}, "head.secret_key"),
    ({"head": {"listen": "10.1.2.3:5560", "secret_key": "k/head.key_secret"}}, "head.authorized_keys"),
    ({"worker": {"head": "head.example:5560"}}, "worker.secret_key"),
    ({"worker": {"head": "10.0.0.1:5560", "secret_key": "k/w.key_secret"}}, "worker.head_key"),
    ({"worker": {"head_key": "k/head.key"}}, "worker.secret_key"),
    ({"queues": {"transport": "tcp", "tcp_host": "0.0.0.0"}}, "head.secret_key"),
    ({"worker": {"stages": ["detect", "pair"]}}, "worker.stages"),
])
def test_a_socket_between_machines_without_keys_is_refused_naming_the_key(tmp_path, sections, named):
    with pytest.raises(config.ConfigError, match=named.replace(".", r"\.")):
        load(tmp_path, **sections)


def test_loopback_needs_no_keys_and_key_paths_resolve_against_the_config(tmp_path):
    s = load(tmp_path, head={"listen": "127.0.0.1:5560"}, worker={"head": "localhost:5560"})
    assert s.head.listen and s.worker.head
    s = load(tmp_path, head={"listen": "0.0.0.0:5560", "secret_key": "keys/head.key_secret",
                             "authorized_keys": "keys/workers"})
    assert s.head.secret_key == str(tmp_path / "keys" / "head.key_secret")


def refused(reason: str) -> float:
    return rm.REFUSED.labels(reason)._value.get()


def test_the_head_admits_listed_keys_refuses_and_counts_others_and_rereads_its_folder(tmp_path):
    keys, workers = tmp_path / "keys", tmp_path / "keys" / "workers"
    assert main(["keys", "head", "good", "late", "--dir", str(keys)]) == 0
    workers.mkdir()
    shutil.copy(keys / "good.key", workers / "good.key")
    ctx = zmq.Context()
    calls = []
    authorized = AuthorizedKeys(str(workers), lambda key: (calls.append(key), rm.REFUSED.labels("unknown_key").inc()))
    auth = start_authenticator(ctx, authorized)
    router = ctx.socket(zmq.ROUTER)
    make_server(router, str(keys / "head.key_secret"), "head.secret_key")
    port = free_port()
    router.bind(f"tcp://127.0.0.1:{port}")

    def hello(name: str) -> bytes | None:
        dealer = ctx.socket(zmq.DEALER)
        make_client(dealer, str(keys / f"{name}.key_secret"), str(keys / "head.key"))
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(name.encode())
        got = router.recv_multipart()[1] if router.poll(1500) else None
        dealer.close(0)
        return got

    try:
        before = refused("unknown_key")
        assert hello("good") == b"good"
        assert hello("late") is None  # not listed: refused at the handshake, nothing delivered
        assert refused("unknown_key") == before + 1 and len(calls) == 1
        time.sleep(0.01)  # a later mtime for the folder's new file
        shutil.copy(keys / "late.key", workers / "late.key")
        assert hello("late") == b"late"  # admitted with the head running
        assert refused("unknown_key") == before + 1
    finally:
        auth.stop()
        router.close(0)
        ctx.term()
