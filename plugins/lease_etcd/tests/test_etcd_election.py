"""The core's election loop driving the real etcd backend: failover and the no-two-primaries rule."""

from __future__ import annotations

import pytest

from litefs.testing_election import failover_scenario
from litefs_lease_etcd import EtcdLeaser

pytestmark = pytest.mark.services

TTL = 2.0


async def test_failover_never_has_two_writable_primaries(etcd_endpoints: list[str], lease_key: str) -> None:
    def make(name: str) -> EtcdLeaser:
        return EtcdLeaser(
            etcd_endpoints, lease_key, hostname=name, advertise_url=f"http://{name}:20202", ttl=TTL
        )

    result = await failover_scenario(make, ttl=TTL)
    assert result.overlaps == 0
    assert TTL * 0.5 <= result.failover_seconds <= TTL + 2.0
    assert result.release_seconds < 2.0
