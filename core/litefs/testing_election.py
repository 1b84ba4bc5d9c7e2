"""Test helpers for lease backends: drive :class:`litefs.election.Election` over a real backend.

A backend author checks the one property that matters most -- never two writable primaries -- with::

    from litefs.testing_election import failover_scenario

    async def test_failover(my_service):
        result = await failover_scenario(lambda name: MyLeaser(..., hostname=name), ttl=2.0)
        assert result.overlaps == 0

The scenario elects node ``a``, lets ``b`` follow it, freezes ``a`` (its lease requests hang, as in
a SIGSTOPped process), waits for ``b`` to take over, resumes ``a`` (it must rejoin as a replica
without writing), then demotes ``b`` and waits for ``a`` to win again after the clean release.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from litefs.election import Election, ElectionSettings
from litefs.lease import Lease, Leaser, PrimaryInfo

CLUSTER_ID = "LFSC00000000000000E7"


class ProbeHost:
    """An :class:`~litefs.election.ElectionHost` that records roles instead of running a node."""

    def __init__(self) -> None:
        self.cluster_id = ""
        self.followed: list[str] = []

    def local_cluster_id(self) -> str:
        return self.cluster_id

    def adopt_cluster_id(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id

    def new_cluster_id(self) -> str:
        return CLUSTER_ID

    def on_primary(self, info: PrimaryInfo) -> None:
        pass

    async def recover(self, why: str) -> None:
        pass

    def on_not_primary(self, info: PrimaryInfo | None) -> None:
        pass

    async def follow(self, info: PrimaryInfo) -> str | None:
        self.followed.append(info.hostname)
        self.cluster_id = self.cluster_id or CLUSTER_ID  # as a replica adopts it from the stream
        await trio.sleep(0.2)
        return None


class FreezableLeaser:
    """Wraps a leaser so that its requests can be made to hang, like those of a frozen process."""

    def __init__(self, inner: Leaser) -> None:
        self.inner = inner
        self.type = inner.type
        self.running = trio.Event()
        self.running.set()

    def freeze(self) -> None:
        self.running = trio.Event()

    def thaw(self) -> None:
        self.running.set()

    @property
    def hostname(self) -> str:
        return self.inner.hostname

    @property
    def advertise_url(self) -> str:
        return self.inner.advertise_url

    def _wrap(self, lease: Lease) -> Lease:
        renew = lease.renew

        async def frozen_renew() -> None:
            await self.running.wait()
            await renew()

        lease.renew = frozen_renew  # type: ignore[method-assign]
        return lease

    async def acquire(self) -> Lease:
        await self.running.wait()
        return self._wrap(await self.inner.acquire())

    async def acquire_existing(self, lease_id: str) -> Lease:
        await self.running.wait()
        return self._wrap(await self.inner.acquire_existing(lease_id))

    async def primary_info(self) -> PrimaryInfo:
        await self.running.wait()
        return await self.inner.primary_info()

    async def cluster_id(self) -> str:
        await self.running.wait()
        return await self.inner.cluster_id()

    async def set_cluster_id(self, cluster_id: str) -> None:
        await self.inner.set_cluster_id(cluster_id)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class FailoverResult:
    overlaps: int
    """Moments (sampled every 5 ms) when both nodes were writable: must be 0."""
    failover_seconds: float
    """From freezing the primary to the other node becoming writable."""
    release_seconds: float
    """From demoting the new primary to the old one becoming writable again."""


async def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def failover_scenario(
    make_leaser: Callable[[str], Leaser], *, ttl: float, **settings: Any
) -> FailoverResult:
    """Run the freeze / takeover / resume / demote scenario with two nodes ``a`` and ``b``."""
    opts = {"candidate": True, "reconnect_delay": 0.1, "demote_delay": 1.0, **settings}
    leasers = {name: FreezableLeaser(make_leaser(name)) for name in ("a", "b")}
    hosts = {name: ProbeHost() for name in leasers}
    elections = {name: Election(leasers[name], hosts[name], ElectionSettings(**opts)) for name in leasers}
    a, b = elections["a"], elections["b"]
    overlaps = 0

    async def watch_overlap() -> None:
        nonlocal overlaps
        while True:
            overlaps += a.writable() and b.writable()
            await trio.sleep(0.005)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_overlap)
            nursery.start_soon(a.run)
            await _wait_for(a.writable, 10 + ttl)
            nursery.start_soon(b.run)
            await _wait_for(lambda: "a" in hosts["b"].followed, 10)

            frozen_at = time.monotonic()
            leasers["a"].freeze()
            await _wait_for(b.writable, 3 * ttl + 10)
            failover = time.monotonic() - frozen_at
            if a.writable():
                raise AssertionError("the frozen primary was still writable when the other node took over")

            leasers["a"].thaw()
            await _wait_for(lambda: "b" in hosts["a"].followed, 10 + ttl)
            if a.writable():
                raise AssertionError("the old primary became writable again while the new one held the lease")

            demoted_at = time.monotonic()
            b.demote()
            await _wait_for(a.writable, 10 + ttl)
            released = time.monotonic() - demoted_at
            nursery.cancel_scope.cancel()
    finally:
        for leaser in leasers.values():
            await leaser.close()
    return FailoverResult(overlaps, failover, released)
