"""pytest fixtures for the S3 lab (tests/s3lab.py): one moto server + proxy per session.

Loaded by tests/conftest.py (`pytest_plugins`).
Tests share one moto server: each test gets fresh buckets (`s3_bucket`) and a lab whose
records, fault rules and latency are cleared before and after it. Do not call
`lab.moto.reset()` on the shared lab: session fixtures (`demo_cohort_s3`) keep data there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.s3lab import DUMMY_CREDENTIALS, S3Lab, create_bucket, s3_filesystem, upload_tree

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def s3lab_session() -> Iterator[S3Lab]:
    """The session's lab: moto server process and recording proxy, started once."""
    with S3Lab() as lab:
        yield lab


@pytest.fixture
def s3lab(s3lab_session: S3Lab) -> Iterator[S3Lab]:
    """The shared lab with no records, no faults, no latency (before and after the test)."""
    proxy = s3lab_session.proxy
    proxy.clear_faults()
    proxy.reset()
    yield s3lab_session
    proxy.clear_faults()
    proxy.reset()


@pytest.fixture
def s3_bucket(s3lab: S3Lab) -> str:
    """A new empty bucket's name (created behind the proxy: not recorded)."""
    bucket = f"lab-bucket-{next(_bucket_numbers)}"
    create_bucket(s3lab.moto_url, bucket)
    return bucket


@pytest.fixture
def s3_fs_factory(s3lab: S3Lab) -> Callable[..., Any]:
    """Make s3fs filesystems reaching the lab through its proxy: `factory(**S3FileSystem kw)`.

    `retries=N` sets s3fs's own retry count (an attribute, not a constructor argument).
    """

    def factory(retries: int | None = None, **kwargs: Any) -> Any:
        fs = s3_filesystem(s3lab.endpoint_url, **kwargs)
        if retries is not None:
            fs.retries = retries
        return fs

    return factory


@pytest.fixture
def s3_env(s3lab: S3Lab) -> dict[str, str]:
    """Environment variables pointing AWS clients (s3fs, boto3, a subprocess) at the proxy."""
    return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": s3lab.endpoint_url}


@dataclass(frozen=True)
class S3Cohort:
    """A local folder uploaded to the lab: s3://bucket/prefix/<relative path>."""

    local: Path
    bucket: str
    prefix: str
    keys: tuple[str, ...]

    @property
    def root(self) -> str:
        """The s3:// URL of the uploaded folder."""
        return f"s3://{self.bucket}/{self.prefix}"


@pytest.fixture(scope="session")
def demo_cohort_s3(s3lab_session: S3Lab, demo_cohort: Path) -> S3Cohort:
    """The demo cohort's images/ and tables/ at s3://embed-demo/cohort/ in the session lab."""
    bucket, prefix = "embed-demo", "cohort"
    create_bucket(s3lab_session.moto_url, bucket)
    keys: list[str] = []
    for folder in ("images", "tables"):
        keys += upload_tree(
            s3lab_session.moto_url, demo_cohort / folder, bucket, f"{prefix}/{folder}"
        )
    return S3Cohort(local=demo_cohort, bucket=bucket, prefix=prefix, keys=tuple(keys))
