"""The etcd lease against real etcd 3.4 members on loopback."""

from __future__ import annotations

import base64
import gc
import json
import time

import httpx
import pytest
import trio

from litefs.lease import LeaseError, LeaseExpiredError, NoPrimaryError, PrimaryExistsError, PrimaryInfo
from litefs.testing_services import EtcdCluster, free_port
from litefs_lease_etcd import EtcdClient, EtcdLeaser, EtcdUnavailableError

pytestmark = pytest.mark.services


def leaser(endpoints: list[str], key: str, host: str, **kwargs) -> EtcdLeaser:  # noqa: ANN003
    return EtcdLeaser(endpoints, key, hostname=host, advertise_url=f"http://{host}:20202", **kwargs)


def raw_get(endpoint: str, key: str) -> dict | None:
    """The key as etcd's gateway returns it, without our client."""
    kvs = httpx.post(f"{endpoint}/v3/kv/range", json={"key": base64.b64encode(key.encode()).decode()}).json()
    return (kvs.get("kvs") or [None])[0]


async def acquire_when_free(node: EtcdLeaser, within: float):  # noqa: ANN201
    """Poll ``acquire`` until it succeeds; None if it never did within ``within`` seconds."""
    with trio.move_on_after(within):
        while True:
            try:
                return await node.acquire()
            except PrimaryExistsError:
                await trio.sleep(0.05)
    return None


async def test_one_of_two_acquires_and_the_other_sees_it(etcd_endpoints: list[str], lease_key: str) -> None:
    a = leaser(etcd_endpoints, lease_key, "node-a", extra={"proxy-url": "http://node-a:8080"})
    b = leaser(etcd_endpoints, lease_key, "node-b")
    with pytest.raises(NoPrimaryError):
        await b.primary_info()
    lease = await a.acquire()
    with pytest.raises(PrimaryExistsError, match="held by node-a"):
        await b.acquire()
    assert await b.primary_info() == PrimaryInfo(
        "node-a", "http://node-a:20202", {"proxy-url": "http://node-a:8080"}
    )
    before = lease.renewed_at
    await lease.renew()
    assert lease.renewed_at > before and lease.ttl == 10

    await lease.close()
    started = time.monotonic()
    lease_b = await b.acquire()
    assert time.monotonic() - started < 1.0
    assert (await a.primary_info()).hostname == "node-b"
    with pytest.raises(LeaseExpiredError):
        await lease.renew()
    await lease_b.close()
    with pytest.raises(NoPrimaryError):
        await a.primary_info()
    await a.close()
    await b.close()


async def test_value_is_litefs_json_bound_to_the_lease(etcd_endpoints: list[str], lease_key: str) -> None:
    a = leaser(etcd_endpoints, lease_key, "node-a")
    lease = await a.acquire()
    kv = raw_get(etcd_endpoints[0], lease_key)
    assert kv is not None
    assert base64.b64decode(kv["value"]) == b'{"hostname":"node-a","advertise-url":"http://node-a:20202"}'
    assert json.loads(base64.b64decode(kv["value"]))["advertise-url"] == "http://node-a:20202"
    assert kv["lease"] == lease.id
    await lease.close()
    assert raw_get(etcd_endpoints[0], lease_key) is None  # revoke deleted it
    await a.close()


async def test_renew_keeps_the_lease_past_its_ttl(etcd_endpoints: list[str], lease_key: str) -> None:
    a = leaser(etcd_endpoints, lease_key, "node-a", ttl=2)
    b = leaser(etcd_endpoints, lease_key, "node-b", ttl=2)
    lease = await a.acquire()
    assert lease.ttl == 2
    deadline = time.monotonic() + 2 * lease.ttl
    while time.monotonic() < deadline:
        await lease.renew()
        with pytest.raises(PrimaryExistsError):
            await b.acquire()
        await trio.sleep(lease.ttl / 4)
    assert (await b.primary_info()).hostname == "node-a"
    await lease.close()
    await a.close()
    await b.close()


async def test_unrenewed_lease_expires_within_ttl(etcd_endpoints: list[str], lease_key: str) -> None:
    a = leaser(etcd_endpoints, lease_key, "node-a", ttl=2)
    b = leaser(etcd_endpoints, lease_key, "node-b", ttl=2)
    lease = await a.acquire()
    taken = await acquire_when_free(b, within=lease.ttl + 2)
    waited = time.monotonic() - lease.renewed_at
    assert taken is not None, f"not taken over within TTL + 2 s ({waited:.2f} s)"
    # etcd expires leases from a 500 ms loop: TTL <= wait <= TTL + ~0.5 s (+ our polling).
    assert lease.ttl <= waited <= lease.ttl + 1.0, waited
    with pytest.raises(LeaseExpiredError, match="expired or was revoked"):
        await lease.renew()
    with pytest.raises(LeaseExpiredError):
        await a.acquire_existing(lease.id)
    assert (await a.primary_info()).hostname == "node-b"
    await taken.close()
    await a.close()
    await b.close()


async def test_cluster_id_is_set_once(etcd_endpoints: list[str], lease_key: str) -> None:
    a = leaser(etcd_endpoints, lease_key, "node-a")
    b = leaser(etcd_endpoints, lease_key, "node-b")
    assert await a.cluster_id() == ""
    lease = await a.acquire()
    await a.set_cluster_id("LFSC1111111111111111")
    await a.set_cluster_id("LFSC1111111111111111")
    kv = raw_get(etcd_endpoints[0], f"{lease_key}/clusterid")
    assert kv is not None and base64.b64decode(kv["value"]) == b"LFSC1111111111111111"
    assert "lease" not in kv  # not bound to the primary's lease
    with pytest.raises(LeaseError, match="already initialized with different ID"):
        await b.set_cluster_id("LFSC2222222222222222")
    await lease.close()
    assert await b.cluster_id() == "LFSC1111111111111111"
    await a.close()
    await b.close()


async def test_handoff_passes_the_lease_without_a_gap(etcd_endpoints: list[str], lease_key: str) -> None:
    old = leaser(etcd_endpoints, lease_key, "node-old")
    new = leaser(etcd_endpoints, lease_key, "node-new")
    other = leaser(etcd_endpoints, lease_key, "node-other")
    lease = await old.acquire()
    await lease.handoff(node_id=7)
    started = time.monotonic()
    taken = await new.acquire_existing(lease.id)
    assert time.monotonic() - started < 0.5
    assert taken.id == lease.id
    assert (await other.primary_info()).hostname == "node-new"
    await lease.close()  # the old primary steps down without revoking
    assert (await other.primary_info()).hostname == "node-new"
    await taken.renew()
    # A lease ID that does not hold the key cannot take it over.
    stranger = leaser(etcd_endpoints, lease_key + "-x", "node-x")
    stray = await stranger.acquire()
    with pytest.raises(PrimaryExistsError, match="held by node-new"):
        await other.acquire_existing(stray.id)
    await stray.close()
    await stranger.close()
    await taken.close()
    with pytest.raises(NoPrimaryError):
        await other.primary_info()
    for node in (old, new, other):
        await node.close()


async def test_close_releases_even_while_cancelled(etcd_endpoints: list[str], lease_key: str) -> None:
    a = leaser(etcd_endpoints, lease_key, "node-a")
    b = leaser(etcd_endpoints, lease_key, "node-b")
    lease = await a.acquire()
    with trio.CancelScope() as scope:
        scope.cancel()
        await lease.close()
    lease_b = await b.acquire()
    await lease_b.close()
    await a.close()
    await b.close()


async def test_dead_first_endpoint_is_skipped(etcd_endpoints: list[str], lease_key: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    a = leaser([dead, *etcd_endpoints], lease_key, "node-a")
    lease = await a.acquire()
    assert a.client.endpoints[a.client.current] == etcd_endpoints[0]  # moved on, and stays there
    await lease.renew()
    assert (await a.primary_info()).hostname == "node-a"
    await lease.close()
    await a.close()

    nobody = leaser([dead, f"http://127.0.0.1:{free_port()}"], lease_key, "node-b")
    started = time.monotonic()
    with pytest.raises(EtcdUnavailableError, match="no etcd endpoint answered /v3/lease/grant"):
        await nobody.acquire()
    assert time.monotonic() - started < 2
    await nobody.close()


@pytest.mark.slow
async def test_three_member_cluster_survives_a_killed_member(
    etcd_cluster: EtcdCluster, lease_key: str
) -> None:
    a = leaser(etcd_cluster.endpoints, lease_key, "node-a", ttl=5)
    lease = await a.acquire()
    victim = etcd_cluster.leader()
    etcd_cluster.kill(victim)
    # Clients that list the killed member first still get answers, from the other two.
    b = leaser(
        [victim.client_url, *(e for e in etcd_cluster.endpoints if e != victim.client_url)],
        lease_key,
        "node-b",
    )
    await lease.renew()  # may wait for the re-election (about a second here)
    assert time.monotonic() - lease.renewed_at < lease.ttl
    assert (await b.primary_info()).hostname == "node-a"
    with pytest.raises(PrimaryExistsError):
        await b.acquire()
    await lease.close()
    lease_b = await b.acquire()
    assert (await a.primary_info()).hostname == "node-b"

    # The killed member comes back with its data and catches up.
    etcd_cluster.restart(victim)
    deadline = time.monotonic() + 10
    while raw_get(victim.client_url, lease_key) is None:
        assert time.monotonic() < deadline, "restarted member never caught up"
        await trio.sleep(0.05)
    await lease_b.close()
    await a.close()
    await b.close()


class ChangeLog:
    """What ``watch_primary`` reported, as hostnames ("" for no primary), consecutive repeats dropped
    (a watch that is re-established reports the current value again)."""

    def __init__(self) -> None:
        self.send, self.recv = trio.open_memory_channel[str](100)
        self.last: str | None = None

    def __call__(self, info: PrimaryInfo | None) -> None:
        self.send.send_nowait(info.hostname if info is not None else "")

    async def next(self) -> str:
        with trio.fail_after(20):  # a hang guard only: the change is expected at once
            while True:
                value = await self.recv.receive()
                if value != self.last:
                    self.last = value
                    return value


def count_calls(node: EtcdLeaser) -> list[str]:
    """Record the paths of every unary request the leaser's client makes."""
    calls: list[str] = []
    original = node.client.call

    async def call(path: str, body: dict) -> dict:
        calls.append(path)
        return await original(path, body)

    node.client.call = call  # type: ignore[method-assign]
    return calls


async def test_watch_reports_acquire_handoff_and_release_without_polling(
    etcd_endpoints: list[str], lease_key: str
) -> None:
    watcher = leaser(etcd_endpoints, lease_key, "node-w")
    a = leaser(etcd_endpoints, lease_key, "node-a")
    b = leaser(etcd_endpoints, lease_key, "node-b")
    calls = count_calls(watcher)
    changes = ChangeLog()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher.watch_primary, changes)
        assert await changes.next() == ""
        lease = await a.acquire()
        assert await changes.next() == "node-a"
        await lease.handoff(node_id=7)
        taken = await b.acquire_existing(lease.id)
        assert await changes.next() == "node-b"
        await taken.close()
        assert await changes.next() == ""
        # Everything after the first read of the key came through the watch stream, not polling.
        assert calls == ["/v3/kv/range"]
        nursery.cancel_scope.cancel()
    for node in (watcher, a, b):
        await node.close()
    gc.collect()  # an unfinished httpx generator would warn (an error in this suite) now


async def test_stream_stopped_early_leaves_no_unfinished_generator(
    etcd_endpoints: list[str], lease_key: str
) -> None:
    client = EtcdClient(etcd_endpoints)
    key = base64.b64encode(lease_key.encode()).decode()

    def refuse(message: dict) -> None:
        raise LeaseError("stop here")

    reason = await client.stream("/v3/watch", {"create_request": {"key": key}}, refuse)
    assert reason == "stop here"
    await client.aclose()
    gc.collect()


@pytest.mark.slow
async def test_watch_survives_a_killed_member(etcd_cluster: EtcdCluster, lease_key: str) -> None:
    watcher = leaser(etcd_cluster.endpoints, lease_key, "node-w")
    a = leaser(etcd_cluster.endpoints, lease_key, "node-a", ttl=5)
    changes = ChangeLog()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher.watch_primary, changes)
        assert await changes.next() == ""
        lease = await a.acquire()
        assert await changes.next() == "node-a"
        # Kill the member the watch streams from (the leader when that is another one).
        victim = next(
            m
            for m in etcd_cluster.members
            if m.client_url == watcher.client.endpoints[watcher.client.current]
        )
        etcd_cluster.kill(victim)
        await lease.close()
        assert await changes.next() == ""
        b = leaser([e for e in etcd_cluster.endpoints if e != victim.client_url], lease_key, "node-b")
        lease_b = await b.acquire()
        assert await changes.next() == "node-b"
        assert watcher.client.endpoints[watcher.client.current] != victim.client_url
        nursery.cancel_scope.cancel()
    await lease_b.close()
    for node in (watcher, a, b):
        await node.close()
    gc.collect()
