"""The election loop against an in-memory lease service (a fast double; the same loop runs against
real etcd in test_election_etcd.py). Time is trio's mock clock, so TTLs cost nothing."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from litefs.election import MAX_RENEW_INTERVAL, Election, ElectionSettings
from litefs.lease import LeaseExpiredError, NoPrimaryError, PrimaryExistsError, PrimaryInfo

TTL = 10.0


class FakeLeaseService:
    """One lease key with TTL semantics, shared by several fake leasers."""

    def __init__(self) -> None:
        self.holder: FakeLeaser | None = None
        self.lease_id = ""
        self.expires = 0.0
        self.cluster_id = ""
        self.ids = itertools.count(1)
        self.acquired: list[tuple[str, float]] = []

    def live_holder(self) -> FakeLeaser | None:
        if self.holder is not None and trio.current_time() < self.expires:
            return self.holder
        return None


class FakeLease:
    def __init__(self, service: FakeLeaseService, owner: FakeLeaser, lease_id: str) -> None:
        self.service, self.owner, self.id = service, owner, lease_id
        self.ttl = TTL
        self.renewed_at = trio.current_time()
        self.renews = 0

    async def renew(self) -> None:
        await trio.sleep(0)
        await self.owner.running.wait()
        if self.service.live_holder() is not self.owner or self.service.lease_id != self.id:
            raise LeaseExpiredError("lease gone")
        self.service.expires = trio.current_time() + TTL
        self.renews += 1

    async def handoff(self, node_id: int) -> None:
        pass

    async def close(self) -> None:
        if self.service.holder is self.owner and self.service.lease_id == self.id:
            self.service.holder = None


class FakeLeaser:
    type = "fake"

    def __init__(self, service: FakeLeaseService, name: str) -> None:
        self.service, self.hostname, self.advertise_url = service, name, f"http://{name}"
        self.running = trio.Event()
        self.running.set()

    def pause(self) -> None:
        """Make renewals hang, like a SIGSTOPped or partitioned process."""
        self.running = trio.Event()

    async def acquire(self) -> FakeLease:
        await self.running.wait()
        if self.service.live_holder() is not None:
            raise PrimaryExistsError("taken")
        lease_id = str(next(self.service.ids))
        self.service.holder, self.service.lease_id = self, lease_id
        self.service.expires = trio.current_time() + TTL
        self.service.acquired.append((self.hostname, trio.current_time()))
        return FakeLease(self.service, self, lease_id)

    async def acquire_existing(self, lease_id: str) -> FakeLease:
        assert lease_id == self.service.lease_id
        self.service.holder = self
        self.service.acquired.append((self.hostname, trio.current_time()))
        return FakeLease(self.service, self, lease_id)

    async def primary_info(self) -> PrimaryInfo:
        await trio.sleep(0)
        holder = self.service.live_holder()
        if holder is None:
            raise NoPrimaryError("none")
        return PrimaryInfo(holder.hostname, holder.advertise_url)

    async def cluster_id(self) -> str:
        return self.service.cluster_id

    async def set_cluster_id(self, cluster_id: str) -> None:
        self.service.cluster_id = cluster_id

    async def close(self) -> None:
        pass


class Host:
    def __init__(self, cluster_id: str = "") -> None:
        self.cluster_id = cluster_id
        self.roles: list[tuple[str, str]] = []
        #: on_primary / on_not_primary / recover calls, in order.
        self.events: list[str] = []
        self.followed: list[str] = []
        self.handoff: str | None = None
        self.follow_for = 5.0

    def local_cluster_id(self) -> str:
        return self.cluster_id

    def adopt_cluster_id(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id

    def new_cluster_id(self) -> str:
        return "LFSC0000000000000001"

    def on_primary(self, info: PrimaryInfo) -> None:
        self.roles.append(("primary", info.hostname))
        self.events.append("primary")

    async def recover(self, why: str) -> None:
        self.events.append(f"recover: {why}")

    def on_not_primary(self, info: PrimaryInfo | None) -> None:
        self.roles.append(("replica", info.hostname if info else ""))
        self.events.append("replica")

    async def follow(self, info: PrimaryInfo) -> str | None:
        self.followed.append(info.hostname)
        # A real replica adopts the primary's cluster ID from the stream's response header.
        self.cluster_id = self.cluster_id or self.new_cluster_id()
        await trio.sleep(self.follow_for)
        handoff, self.handoff = self.handoff, None
        return handoff


def election(service: FakeLeaseService, name: str, host: Host, **settings: object) -> Election:
    opts = {"candidate": True, "reconnect_delay": 1.0, "demote_delay": 10.0, **settings}
    return Election(FakeLeaser(service, name), host, ElectionSettings(**opts), clock=trio.current_time)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_candidate_becomes_primary_and_renews_every_half_ttl(autojump_clock, nursery) -> None:
    service, host = FakeLeaseService(), Host()
    a = election(service, "a", host)
    nursery.start_soon(a.run)
    await trio.sleep(60)
    assert host.roles[0] == ("primary", "a")
    assert a.writable()
    assert a.lease is not None
    # Renewals at 5, 10, ... 55 (the one due at t=60 has not run yet when the test wakes).
    assert a.lease.renews == 11
    assert service.cluster_id == "LFSC0000000000000001" == host.cluster_id


async def test_non_candidate_never_acquires(autojump_clock, nursery) -> None:
    service, host = FakeLeaseService(), Host()
    b = election(service, "b", host, candidate=False)
    nursery.start_soon(b.run)
    await trio.sleep(30)
    assert service.acquired == []
    assert not b.writable()
    assert all(role == "replica" for role, _ in host.roles)


async def test_replica_follows_the_primary(autojump_clock, nursery) -> None:
    service, host_a, host_b = FakeLeaseService(), Host(), Host()
    nursery.start_soon(election(service, "a", host_a).run)
    await trio.sleep(1)
    b = election(service, "b", host_b)
    nursery.start_soon(b.run)
    await trio.sleep(20)
    assert set(host_b.followed) == {"a"} and len(host_b.followed) >= 2  # reconnects after each stream end
    assert not b.writable()
    assert [h for h, _ in service.acquired] == ["a"]


async def test_lost_lease_stops_writes_before_anyone_can_acquire(autojump_clock, nursery) -> None:
    service, host_a, host_b = FakeLeaseService(), Host(), Host()
    a = election(service, "a", host_a)
    nursery.start_soon(a.run)
    await trio.sleep(1)
    assert a.writable()
    a.leaser.pause()
    b = election(service, "b", host_b)
    writable_when_b_acquired: list[bool] = []
    original_acquire = b.leaser.acquire

    async def watched_acquire():
        lease = await original_acquire()
        writable_when_b_acquired.append(a.writable())
        return lease

    b.leaser.acquire = watched_acquire
    nursery.start_soon(b.run)
    await trio.sleep(40)
    assert writable_when_b_acquired == [False]
    assert ("primary", "b") in host_b.roles
    assert host_a.roles[-1] == ("replica", "")


async def test_expired_lease_on_renew_demotes_at_once(autojump_clock, nursery) -> None:
    service, host = FakeLeaseService(), Host()
    a = election(service, "a", host)
    nursery.start_soon(a.run)
    await trio.sleep(1)
    service.holder = FakeLeaser(service, "thief")  # the lease was lost server-side
    await trio.sleep(TTL / 2 + 0.1)
    assert not a.writable()
    assert host.roles[:2] == [("primary", "a"), ("replica", "")]
    assert host.followed == ["thief"]


async def test_recovery_runs_on_every_role_change_while_writes_are_refused(autojump_clock, nursery) -> None:
    """LiteFS Store.Recover: before accepting writes as primary, and after leaving the role."""
    service, host = FakeLeaseService(), Host()
    a = election(service, "a", host)
    writable_during_recovery: list[bool] = []
    original = host.recover

    async def recover(why: str) -> None:
        writable_during_recovery.append(a.writable() and host.events[-1:] == ["primary"])
        await original(why)

    host.recover = recover
    nursery.start_soon(a.run)
    await trio.sleep(1)
    service.holder = FakeLeaser(service, "thief")  # the lease was lost server-side
    await trio.sleep(TTL / 2 + 0.1)
    assert host.events[:4] == [
        "recover: becoming primary",
        "primary",
        "replica",
        "recover: leaving the primary role",
    ]
    assert writable_during_recovery[:2] == [False, False]


async def test_demote_releases_and_waits_demote_delay(autojump_clock, nursery) -> None:
    service, host_a, host_b = FakeLeaseService(), Host(), Host()
    a = election(service, "a", host_a, demote_delay=30.0)
    nursery.start_soon(a.run)
    await trio.sleep(1)
    b = election(service, "b", host_b)
    host_b.follow_for = 0.5
    nursery.start_soon(b.run)
    await trio.sleep(2)
    a.demote()
    await trio.sleep(5)
    assert not a.writable()
    assert [h for h, _ in service.acquired] == ["a", "b"]  # released at once: b took over
    # a stays out for demote-delay, then rejoins as a replica of b.
    assert host_a.followed == []
    await trio.sleep(40)
    assert "b" in host_a.followed


async def test_cluster_id_mismatch_never_joins(autojump_clock, nursery) -> None:
    service, host = FakeLeaseService(), Host(cluster_id="LFSCAAAAAAAAAAAAAAAA")
    service.cluster_id = "LFSCBBBBBBBBBBBBBBBB"
    c = election(service, "c", host)
    nursery.start_soon(c.run)
    await trio.sleep(30)
    assert service.acquired == [] and host.followed == [] and host.roles == []


async def test_handoff_lease_id_from_stream_takes_over(autojump_clock, nursery) -> None:
    service, host_a, host_b = FakeLeaseService(), Host(), Host()
    a = election(service, "a", host_a)
    nursery.start_soon(a.run)
    await trio.sleep(1)
    b = election(service, "b", host_b)
    host_b.handoff = service.lease_id
    nursery.start_soon(b.run)
    await trio.sleep(6)
    assert ("primary", "b") in host_b.roles
    assert b.writable()


async def test_shutdown_releases_the_lease(autojump_clock) -> None:
    service, host = FakeLeaseService(), Host()
    a = election(service, "a", host)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run)
        await trio.sleep(3)
        assert service.live_holder() is a.leaser
        nursery.cancel_scope.cancel()
    assert service.holder is None
    assert not a.writable()


async def test_every_renewal_attempt_is_reported(autojump_clock, nursery) -> None:
    service, host = FakeLeaseService(), Host()
    reports: list[tuple[float, bool, str]] = []
    a = Election(
        FakeLeaser(service, "a"),
        host,
        ElectionSettings(),
        clock=trio.current_time,
        on_renew=lambda seconds, ok, error: reports.append((seconds, ok, error)),
    )
    nursery.start_soon(a.run)
    await trio.sleep(TTL / 2 * 3 + 0.1)
    assert [ok for _, ok, _ in reports] == [True, True, True]
    assert all(seconds >= 0 for seconds, _, _ in reports)
    service.holder = FakeLeaser(service, "thief")  # lost server-side: the next renewal fails
    await trio.sleep(TTL / 2)
    assert reports[-1][1:] == (False, "lease gone")
    assert not a.writable()


async def test_a_huge_ttl_is_still_renewed_every_few_seconds(autojump_clock, nursery) -> None:
    service, host = FakeLeaseService(), Host()
    reports: list[bool] = []
    a = Election(
        FakeLeaser(service, "a"),
        host,
        ElectionSettings(),
        clock=trio.current_time,
        on_renew=lambda seconds, ok, error: reports.append(ok),
    )
    nursery.start_soon(a.run)
    await trio.sleep(1)
    assert a.lease is not None
    a.lease.ttl = 1e11  # the static lease's "forever"
    await trio.sleep(MAX_RENEW_INTERVAL * 3)
    assert len(reports) >= 2
