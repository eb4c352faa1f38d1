"""The catalog between machines: PostgreSQL with TLS and a password, verified against a CA of our own.

A PostgreSQL server of the test's own (.ci/services.sh with HS_PG_SETUP) accepts TCP connections only over TLS
(`hostssl ... scram-sha-256`, no plain `host` line) with a server certificate for 127.0.0.1 signed by a CA made
here. The catalog connects with `sslmode=verify-full` in catalog.url and the password and CA from libpq's standard
variables (PGPASSWORD, PGSSLROOTCERT), as the README and the Kubernetes manifests say; and it is refused with
another CA, with a host name the certificate does not name, without the password, and without TLS. A config whose
catalog.url names another machine without saying sslmode stops at the start.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from humanstyle.daemon import config
from humanstyle.stages.store.catalog import Catalog
from tests.conftest import fast_sections, write_config
from tests.harness import ROOT

PASSWORD = "tls-test-secret"


def make_ca(folder: Path, name: str):
    """A self-signed CA: (certificate path, key, certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(folder: Path, ca_key, ca_cert) -> tuple[Path, Path]:
    """A server certificate for IP 127.0.0.1 only, signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "catalog")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem = folder / "server.crt", folder / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    return crt, pem


@pytest.fixture
def tls_server(tmp_path):
    """(port, CA path, another CA's path, pg_ctl wrapper) of a TLS-only PostgreSQL server with a password."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, ca_key, ca_cert = make_ca(certs, "humanstyle-test-ca")
    other, _, _ = make_ca(certs, "some-other-ca")
    crt, pem = make_server_cert(certs, ca_key, ca_cert)
    setup = tmp_path / "setup.sh"
    setup.write_text(f"""#!/bin/sh
set -e
cp {crt} {pem} "$1/"
chown "$2" "$1/server.crt" "$1/server.key"
chmod 600 "$1/server.key"
printf "ssl = on\\nssl_cert_file = 'server.crt'\\nssl_key_file = 'server.key'\\n" >> "$1/postgresql.conf"
printf "password_encryption = scram-sha-256\\n" >> "$1/postgresql.conf"
printf "local all all trust\\nhostssl all all 127.0.0.1/32 scram-sha-256\\n" > "$1/pg_hba.conf"
""")
    setup.chmod(setup.stat().st_mode | stat.S_IXUSR)
    script = ('source .ci/services.sh && start_postgres "$VENV" >&2 && echo "URL=$HUMANSTYLE_TEST_POSTGRES_URL" '
              '&& echo "CTL=$HUMANSTYLE_TEST_POSTGRES_CTL" && echo "DIR=$HS_PG_DIR"')
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent), "HS_PG_SETUP": str(setup)}
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    info = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0 or "CTL" not in info:
        if "no PostgreSQL server binaries" in out.stdout + out.stderr:
            pytest.skip("no PostgreSQL server binaries (.ci/run installs them as root)")
        raise RuntimeError(f"the TLS server did not start: {out.stdout[-1500:]} {out.stderr[-1500:]}")
    port = int(info["URL"].rsplit(":", 1)[1].split("/")[0])
    try:
        with psycopg.connect(host=info["DIR"], port=port, user="humanstyle", dbname="postgres",
                             autocommit=True) as db:  # the local socket: trust, to set the password
            db.execute(f"ALTER USER humanstyle PASSWORD '{PASSWORD}'")
        yield port, ca, other
    finally:
        subprocess.run([info["CTL"], "stop", "-m", "immediate"], capture_output=True)
        subprocess.run(["rm", "-rf", info["DIR"]], capture_output=True)


def url(port: int, host: str = "127.0.0.1", sslmode: str = "verify-full") -> str:
    return f"postgresql://humanstyle@{host}:{port}/postgres?sslmode={sslmode}"


def test_the_catalog_speaks_tls_verified_against_its_ca_with_a_password(tls_server, monkeypatch):
    port, ca, other = tls_server
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    monkeypatch.setenv("PGSSLROOTCERT", str(ca))
    cat = Catalog(url(port), role="tls-test")  # creates the schema over TLS
    video, created = cat.add_video("fp", "/w/movie/a.mp4", "movie", 1, 0.0)
    assert created
    assert cat.dialect.db.info.pgconn.ssl_in_use
    cat.close()

    def refused(target: str, why: str) -> None:
        with pytest.raises(psycopg.OperationalError, match=why):
            Catalog(target)

    monkeypatch.setenv("PGSSLROOTCERT", str(other))
    refused(url(port), "certificate verify failed")  # a server whose certificate another CA signed
    monkeypatch.setenv("PGSSLROOTCERT", str(ca))
    refused(url(port, host="localhost"), "(?i)does not match|server certificate")  # not the name it was issued for
    refused(url(port, sslmode="disable"), "no pg_hba.conf entry")  # TLS or nothing
    monkeypatch.setenv("PGPASSWORD", "wrong")
    refused(url(port), "password authentication failed")


def test_a_catalog_on_another_machine_needs_its_sslmode_said(tmp_path, monkeypatch):
    monkeypatch.delenv("PGSSLMODE", raising=False)
    remote = "postgresql://humanstyle@db.example:5432/humanstyle"
    with pytest.raises(config.ConfigError, match="sslmode=verify-full"):
        config.load(write_config(tmp_path, fast_sections(tmp_path, catalog={"url": remote})))
    for fine in (remote + "?sslmode=verify-full", "postgresql://humanstyle@127.0.0.1/humanstyle",
                 remote + "?sslmode=disable"):  # said explicitly: the operator's choice (a test network)
        config.load(write_config(tmp_path, fast_sections(tmp_path, catalog={"url": fine})))
    monkeypatch.setenv("PGSSLMODE", "verify-full")  # libpq's own variable says it
    config.load(write_config(tmp_path, fast_sections(tmp_path, catalog={"url": remote})))
