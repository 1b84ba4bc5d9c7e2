"""The core's election loop driving the real Consul backend: failover and the no-two-primaries rule."""

from __future__ import annotations

import pytest

from litefs.testing_election import failover_scenario
from litefs_lease_consul import ConsulLeaser

pytestmark = [pytest.mark.services, pytest.mark.slow]

TTL = 10.0  # Consul's minimum session TTL
LOCK_DELAY = 1.0


async def test_failover_never_has_two_writable_primaries(consul_url: str, lease_key: str) -> None:
    def make(name: str) -> ConsulLeaser:
        return ConsulLeaser(
            consul_url,
            lease_key,
            hostname=name,
            advertise_url=f"http://{name}:20202",
            ttl=TTL,
            lock_delay=LOCK_DELAY,
        )

    result = await failover_scenario(make, ttl=TTL)
    assert result.overlaps == 0
    # Consul invalidates a session between TTL and 2 x TTL after its last renewal, then holds the
    # lock for lock-delay; our own node stops writing at TTL after the last renewal was sent.
    assert TTL * 0.5 <= result.failover_seconds <= 2 * TTL + LOCK_DELAY + 2.0
    assert result.release_seconds < 3.0
    print(
        f"consul failover after freeze: {result.failover_seconds:.1f}s, release: {result.release_seconds:.2f}s"
    )
