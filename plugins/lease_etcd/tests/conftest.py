"""Real etcd members for the etcd lease tests: one shared single node, and a 3-member cluster."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from litefs.testing_services import EtcdCluster, ServiceUnavailable


def _start(size: int) -> EtcdCluster:
    try:
        return EtcdCluster(size).start()
    except ServiceUnavailable as exc:
        pytest.skip(f"!!! ETCD UNAVAILABLE -- etcd lease tests SKIPPED: {exc}")


@pytest.fixture(scope="session")
def etcd_endpoints() -> Iterator[list[str]]:
    """Client URLs of one etcd: ``LITEFS_TEST_ETCD_ENDPOINTS`` (comma-separated) if set, else started here."""
    external = os.environ.get("LITEFS_TEST_ETCD_ENDPOINTS")
    if external:
        yield [e.strip() for e in external.split(",") if e.strip()]
        return
    cluster = _start(1)
    try:
        yield cluster.endpoints
    finally:
        cluster.stop()


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdCluster]:
    """A fresh three-member cluster on loopback (tests may kill and restart members)."""
    cluster = _start(3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def lease_key() -> str:
    """A key no other test uses."""
    return f"/litefs-test/{uuid.uuid4().hex[:12]}"
