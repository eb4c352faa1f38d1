"""Fixtures for the servers of the scale-out tests: a PostgreSQL database and an S3 bucket of their own per test, on
the throwaway servers `.ci/services.sh` starts (loopback only) and names in HUMANSTYLE_TEST_POSTGRES_URL and
HUMANSTYLE_TEST_S3_ENDPOINT. Without them these tests skip, which HUMANSTYLE_REQUIRE_ALL=1 (CI) turns into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

PG_ENV, PG_CTL_ENV = "HUMANSTYLE_TEST_POSTGRES_URL", "HUMANSTYLE_TEST_POSTGRES_CTL"
S3_ENV = "HUMANSTYLE_TEST_S3_ENDPOINT"
# moto accepts any credentials; real ones must never reach a test.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "humanstyle-test", "AWS_SECRET_ACCESS_KEY": "humanstyle-test",
                  "AWS_DEFAULT_REGION": "us-east-1"}


def _admin_url() -> str:
    url = os.environ.get(PG_ENV, "")
    if not url:
        pytest.skip(f"no PostgreSQL test server ({PG_ENV} unset: source .ci/services.sh and start_services)")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty database on the test server; dropped afterwards."""
    import psycopg

    admin = _admin_url()
    name = f"hs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_ctl() -> str:
    """A pg_ctl wrapper for the test server (`[ctl, "restart", "-m", "immediate"]`)."""
    _admin_url()
    ctl = os.environ.get(PG_CTL_ENV, "")
    if not ctl:
        pytest.skip(f"{PG_CTL_ENV} unset: cannot restart the PostgreSQL test server")
    return ctl


@dataclass(frozen=True)
class S3Bucket:
    url: str  # s3://bucket/prefix
    endpoint: str
    bucket: str

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                 secret=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], skip_instance_cache=True)

    def names(self) -> set[str]:
        """Every object under the prefix, as names relative to it."""
        prefix = self.url[len("s3://"):]
        fs = self.fs()
        return {p[len(prefix) + 1:] for p in fs.find(prefix)}


@pytest.fixture
def s3_bucket(monkeypatch) -> S3Bucket:
    """An empty bucket of its own on the test S3 server; the AWS_* variables point at dummy credentials."""
    endpoint = os.environ.get(S3_ENV, "")
    if not endpoint:
        pytest.skip(f"no S3 test server ({S3_ENV} unset: source .ci/services.sh and start_services)")
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    bucket = f"hs-{uuid.uuid4().hex[:12]}"
    store = S3Bucket(f"s3://{bucket}/shared", endpoint, bucket)
    store.fs().mkdir(bucket)
    return store
