"""The static lease (LiteFS §6.5): one fixed primary, no failover, no handoff."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from litefs.lease import (
    HandoffNotSupportedError,
    Lease,
    LeaseContext,
    Leaser,
    NoPrimaryError,
    PrimaryExistsError,
    PrimaryInfo,
)
from litefs.plugins import load_plugins
from litefs_lease_static import StaticLeaser, litefs_plugin_enabled


def config(candidate: bool, hostname: str = "cmd0", advertise_url: str = "") -> SimpleNamespace:
    """The parts of a Config the static lease reads (every node names the *primary* here)."""
    lease = SimpleNamespace(
        type="static", candidate=candidate, hostname=hostname, advertise_url=advertise_url
    )
    return SimpleNamespace(lease=lease, section=lambda path: None)


def static(candidate: bool) -> StaticLeaser:
    cfg = config(candidate)
    context = LeaseContext(
        config=cfg, section=None, hostname="cmd0", advertise_url="http://cmd0:20202", node_id=1
    )  # type: ignore[arg-type]
    return StaticLeaser(context)


async def test_the_candidate_is_always_primary() -> None:
    primary = static(candidate=True)
    assert isinstance(primary, Leaser)
    lease = await primary.acquire()
    assert isinstance(lease, Lease)
    assert lease.ttl > 100 * 365 * 86400  # "until the year 3000": it never runs out
    before = lease.renewed_at
    await lease.renew()
    assert lease.renewed_at >= before and lease.renewed_at <= time.monotonic()
    again = await primary.acquire()  # after a restart it simply takes it again
    assert again.id == lease.id == "static"
    # The primary learns its role from acquire(), not from primary_info().
    with pytest.raises(NoPrimaryError):
        await primary.primary_info()
    await lease.close()
    await primary.close()


async def test_other_nodes_never_become_primary_and_see_the_configured_one() -> None:
    replica = static(candidate=False)
    for _ in range(3):
        with pytest.raises(PrimaryExistsError, match="cmd0"):
            await replica.acquire()
    assert await replica.primary_info() == PrimaryInfo("cmd0", "http://cmd0:20202")
    assert replica.hostname == "cmd0"
    assert replica.advertise_url == "http://cmd0:20202"
    await replica.close()


async def test_no_handoff() -> None:
    primary = static(candidate=True)
    lease = await primary.acquire()
    with pytest.raises(HandoffNotSupportedError, match="static lease handoff not supported"):
        await lease.handoff(node_id=2)
    replica = static(candidate=False)
    with pytest.raises(HandoffNotSupportedError, match="static lease handoff not supported"):
        await replica.acquire_existing("static")
    # The primary is unchanged by the refused handoff.
    with pytest.raises(PrimaryExistsError):
        await replica.acquire()


async def test_no_cluster_id_on_the_lease() -> None:
    # With a static lease the lease-side cluster ID is always empty; replicas adopt the primary's.
    primary = static(candidate=True)
    assert await primary.cluster_id() == ""
    await primary.set_cluster_id("LFSC0123456789ABCDEF")
    assert await primary.cluster_id() == ""


def test_selected_by_lease_type_through_the_registry() -> None:
    registry = load_plugins(environ={"LITEFS_LOAD_PLUGINS": "lease_static"})
    leaser = registry.create_leaser(config(candidate=False), node_id=1, http_port=20202)  # type: ignore[arg-type]
    assert isinstance(leaser, StaticLeaser)
    assert leaser.type == "static"
    assert leaser.advertise_url == "http://cmd0:20202"  # default built from hostname and port
    assert litefs_plugin_enabled(config=config(candidate=True)) is True
    other = config(candidate=True)
    other.lease.type = "consul"
    assert litefs_plugin_enabled(config=other) is False
