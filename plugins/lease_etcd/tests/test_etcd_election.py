"""The core's election loop driving the real etcd backend: failover and the no-two-primaries rule."""

from __future__ import annotations

import time

import pytest
import trio

from litefs.election import Election, ElectionSettings
from litefs.lease import PrimaryInfo
from litefs_lease_etcd import EtcdLeaser

pytestmark = pytest.mark.services

TTL = 2.0


class Host:
    def __init__(self) -> None:
        self.cluster_id = ""
        self.primary_since: float | None = None
        self.followed: list[str] = []

    def local_cluster_id(self) -> str:
        return self.cluster_id

    def adopt_cluster_id(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id

    def new_cluster_id(self) -> str:
        return "LFSC00000000000000E7"

    def on_primary(self, info: PrimaryInfo) -> None:
        self.primary_since = time.monotonic()

    def on_not_primary(self, info: PrimaryInfo | None) -> None:
        self.primary_since = None

    async def follow(self, info: PrimaryInfo) -> str | None:
        self.followed.append(info.hostname)
        self.cluster_id = self.cluster_id or "LFSC00000000000000E7"
        await trio.sleep(0.2)
        return None


class PausableLeaser(EtcdLeaser):
    """The etcd leaser of a process we can freeze: its requests hang while paused (like SIGSTOP)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.running = trio.Event()
        self.running.set()

    async def acquire(self):  # noqa: ANN201
        await self.running.wait()
        lease = await super().acquire()
        original_renew = lease.renew

        async def renew() -> None:
            await self.running.wait()
            await original_renew()

        lease.renew = renew
        return lease


def make(endpoints: list[str], key: str, name: str) -> tuple[Election, Host]:
    host = Host()
    leaser = PausableLeaser(endpoints, key, hostname=name, advertise_url=f"http://{name}:20202", ttl=TTL)
    settings = ElectionSettings(candidate=True, reconnect_delay=0.1, demote_delay=1.0)
    return Election(leaser, host, settings), host


async def wait_for(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_failover_never_has_two_writable_primaries(etcd_endpoints: list[str], lease_key: str) -> None:
    a, host_a = make(etcd_endpoints, lease_key, "a")
    b, host_b = make(etcd_endpoints, lease_key, "b")
    overlaps: list[float] = []

    async def watch_overlap() -> None:
        while True:
            if a.writable() and b.writable():
                overlaps.append(time.monotonic())
            await trio.sleep(0.005)

    try:
        await _run_failover(a, host_a, b, host_b, watch_overlap)
    finally:
        await a.leaser.close()
        await b.leaser.close()
    assert overlaps == []


async def _run_failover(a: Election, host_a: Host, b: Election, host_b: Host, watch_overlap) -> None:  # noqa: ANN001
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_overlap)
        nursery.start_soon(a.run)
        await wait_for(a.writable)
        nursery.start_soon(b.run)
        await wait_for(lambda: "a" in host_b.followed)
        assert not b.writable()

        # Freeze a (renewals hang): b takes over only after a's own deadline has passed.
        paused_at = time.monotonic()
        a.leaser.running = trio.Event()
        await wait_for(b.writable, timeout=TTL * 3)
        failover = time.monotonic() - paused_at
        assert not a.writable()
        assert TTL * 0.5 <= failover <= TTL + 2.0

        # a comes back: it must not write, and rejoins as b's replica.
        a.leaser.running.set()
        await wait_for(lambda: "b" in host_a.followed)
        assert not a.writable()

        # A clean demotion of b hands the cluster back to a quickly.
        b.demote()
        await wait_for(a.writable, timeout=5.0)
        nursery.cancel_scope.cancel()
