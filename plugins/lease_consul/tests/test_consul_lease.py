"""The Consul lease against a real Consul 1.8.7 dev agent on loopback."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
import trio

from litefs.lease import LeaseError, LeaseExpiredError, NoPrimaryError, PrimaryExistsError, PrimaryInfo
from litefs.testing_services import consul_kv_raw, free_port
from litefs_lease_consul import ConsulLeaser, ConsulUnavailableError

pytestmark = pytest.mark.services


def leaser(url: str, key: str, host: str, **kwargs) -> ConsulLeaser:  # noqa: ANN003
    return ConsulLeaser(url, key, hostname=host, advertise_url=f"http://{host}:20202", **kwargs)


async def test_one_of_two_acquires_and_the_other_sees_it(consul_url: str, lease_key: str) -> None:
    a = leaser(consul_url, lease_key, "node-a", extra={"proxy-url": "http://node-a:8080"})
    b = leaser(consul_url, lease_key, "node-b")
    with pytest.raises(NoPrimaryError):
        await b.primary_info()

    lease = await a.acquire()
    with pytest.raises(PrimaryExistsError):
        await b.acquire()
    assert await b.primary_info() == PrimaryInfo(
        "node-a", "http://node-a:20202", {"proxy-url": "http://node-a:8080"}
    )
    # The loser's session was destroyed, not left behind.
    sessions = httpx.get(f"{consul_url}/v1/session/list").json()
    assert [s["ID"] for s in sessions if s["ID"] != lease.id and s["Name"] == "litefs"] == []

    before = lease.renewed_at
    await lease.renew()
    assert lease.renewed_at > before
    assert lease.ttl == 10.0
    assert (await b.primary_info()).hostname == "node-a"

    # A clean release lets the other node in at once: no TTL, no lock-delay.
    await lease.close()
    with pytest.raises(NoPrimaryError):
        await b.primary_info()
    started = time.monotonic()
    lease_b = await b.acquire()
    assert time.monotonic() - started < 1.0
    assert (await a.primary_info()).hostname == "node-b"
    with pytest.raises(LeaseExpiredError):
        await lease.renew()
    await lease_b.close()
    await a.close()
    await b.close()


async def test_value_and_session_are_what_litefs_writes(consul_url: str, lease_key: str) -> None:
    a = leaser(consul_url, lease_key, "node-a", lock_delay=2)
    lease = await a.acquire()
    try:
        entry = consul_kv_raw(consul_url, lease_key)
        assert entry is not None and entry["Session"] == lease.id
        # Go's json.Marshal of LiteFS's PrimaryInfo struct: compact, these two keys.
        assert (
            base64.b64decode(entry["Value"]) == b'{"hostname":"node-a","advertise-url":"http://node-a:20202"}'
        )
        session = httpx.get(f"{consul_url}/v1/session/info/{lease.id}").json()[0]
        assert session["Name"] == "litefs"
        assert session["Behavior"] == "delete"
        assert session["TTL"] == "10s"
        assert session["LockDelay"] == 2_000_000_000  # nanoseconds
        assert session["NodeChecks"] in ([], None)  # CreateNoChecks: only the TTL keeps it alive
    finally:
        await lease.close()
    # Released as LiteFS releases: the key stays, with an empty value and no session.
    entry = consul_kv_raw(consul_url, lease_key)
    assert entry is not None and entry.get("Session") is None and not entry.get("Value")
    assert httpx.get(f"{consul_url}/v1/session/info/{lease.id}").json() in ([], None)
    await a.close()


async def test_a_litefs_primary_is_seen_and_respected(consul_url: str, lease_key: str) -> None:
    """A lock taken the way LiteFS (Go) takes it, with plain HTTP and no client library."""
    go_value = b'{"hostname":"litefs-go","advertise-url":"http://litefs-go:20202"}'
    session = httpx.put(
        f"{consul_url}/v1/session/create",
        json={"Name": "litefs", "Behavior": "delete", "LockDelay": "1s", "TTL": "10s", "NodeChecks": []},
    ).json()["ID"]
    assert httpx.put(f"{consul_url}/v1/kv/{lease_key}", params={"acquire": session}, content=go_value).json()

    ours = leaser(consul_url, lease_key, "node-py")
    assert await ours.primary_info() == PrimaryInfo("litefs-go", "http://litefs-go:20202")
    with pytest.raises(PrimaryExistsError):
        await ours.acquire()

    # LiteFS releases with an empty body, then destroys the session.
    assert httpx.put(f"{consul_url}/v1/kv/{lease_key}", params={"release": session}).json()
    httpx.put(f"{consul_url}/v1/session/destroy/{session}")
    with pytest.raises(NoPrimaryError):
        await ours.primary_info()
    lease = await ours.acquire()
    await lease.close()
    await ours.close()


async def test_prefix_and_token_come_from_the_url(consul_acl: tuple[str, str], lease_key: str) -> None:
    consul_acl_url, acl_token = consul_acl
    url = consul_acl_url.replace("http://", f"http://:{acl_token}@") + "/team-a/"
    a = leaser(url, lease_key, "node-a")
    assert a.key == f"team-a/{lease_key}"
    assert acl_token not in a.url
    lease = await a.acquire()
    try:
        headers = {"X-Consul-Token": acl_token}
        entry = httpx.get(f"{consul_acl_url}/v1/kv/team-a/{lease_key}", headers=headers).json()[0]
        assert entry["Session"] == lease.id
        session = httpx.get(f"{consul_acl_url}/v1/session/info/{lease.id}", headers=headers).json()[0]
        assert session["Node"] == "team-a/litefs"
        nodes = httpx.get(f"{consul_acl_url}/v1/catalog/nodes", headers=headers).json()
        assert "team-a/litefs" in {n["Node"] for n in nodes}
        await lease.renew()
        await a.set_cluster_id("LFSC0123456789ABCDEF")
        assert await a.cluster_id() == "LFSC0123456789ABCDEF"
    finally:
        await lease.close()
        await a.close()

    # Without the token every request is refused, with a message naming Consul (and not the token).
    anonymous = leaser(consul_acl_url + "/team-a", lease_key, "node-b")
    with pytest.raises(ConsulUnavailableError, match="consul .* failed") as err:
        await anonymous.acquire()
    assert acl_token not in str(err.value)
    await anonymous.close()


async def test_cluster_id_is_set_once(consul_url: str, lease_key: str) -> None:
    a = leaser(consul_url, lease_key, "node-a")
    b = leaser(consul_url, lease_key, "node-b")
    assert await a.cluster_id() == ""
    lease = await a.acquire()
    await a.set_cluster_id("LFSC1111111111111111")
    await a.set_cluster_id("LFSC1111111111111111")  # same ID again: fine
    entry = consul_kv_raw(consul_url, f"{lease_key}/clusterid")
    assert entry is not None and base64.b64decode(entry["Value"]) == b"LFSC1111111111111111"
    with pytest.raises(LeaseError, match="already initialized with different ID"):
        await b.set_cluster_id("LFSC2222222222222222")
    # The ID outlives the lease (it is not locked by the session).
    await lease.close()
    assert await b.cluster_id() == "LFSC1111111111111111"
    await a.close()
    await b.close()


async def test_handoff_passes_the_session_without_a_gap(consul_url: str, lease_key: str) -> None:
    old = leaser(consul_url, lease_key, "node-old")
    new = leaser(consul_url, lease_key, "node-new")
    lease = await old.acquire()
    await lease.handoff(node_id=0x1234)
    started = time.monotonic()
    taken = await new.acquire_existing(lease.id)
    assert time.monotonic() - started < 1.0
    assert taken.id == lease.id
    assert (await old.primary_info()).hostname == "node-new"
    # The old primary steps down without releasing what it handed over.
    await lease.close()
    assert (await old.primary_info()).hostname == "node-new"
    await taken.renew()
    await taken.close()
    with pytest.raises(NoPrimaryError):
        await old.primary_info()
    with pytest.raises(LeaseExpiredError):
        await new.acquire_existing(lease.id)
    await old.close()
    await new.close()


async def test_close_releases_even_while_cancelled(consul_url: str, lease_key: str) -> None:
    a = leaser(consul_url, lease_key, "node-a")
    b = leaser(consul_url, lease_key, "node-b")
    lease = await a.acquire()
    with trio.CancelScope() as scope:
        scope.cancel()
        await lease.close()  # shutdown path: the node is being cancelled
    started = time.monotonic()
    lease_b = await b.acquire()  # at once, no TTL wait
    assert time.monotonic() - started < 1.0
    await lease_b.close()
    await a.close()
    await b.close()


async def test_unreachable_consul_fails_fast_with_a_clear_error(lease_key: str) -> None:
    dead = leaser(f"http://127.0.0.1:{free_port()}", lease_key, "node-a")
    started = time.monotonic()
    with pytest.raises(ConsulUnavailableError, match="consul session create at http://127.0.0.1:"):
        await dead.acquire()
    with pytest.raises(ConsulUnavailableError, match="kv get"):
        await dead.primary_info()
    assert time.monotonic() - started < 5
    await dead.close()


@pytest.mark.slow
async def test_unrenewed_lease_expires_and_cannot_be_renewed(consul_url: str, lease_key: str) -> None:
    """Measured here with Consul 1.8.7: a TTL=10s, lock-delay=1s lease that is never renewed is
    taken by another node 20-22 s after it was acquired. Consul invalidates a session only after
    up to 2 x TTL, then the lock-delay applies: the bound is 2 x TTL + lock-delay (+ polling)."""
    ttl, lock_delay = 10.0, 1.0
    a = leaser(consul_url, lease_key, "node-a", ttl=ttl, lock_delay=lock_delay)
    b = leaser(consul_url, lease_key, "node-b", ttl=ttl, lock_delay=lock_delay)
    lease = await a.acquire()
    acquired_at = time.monotonic()
    taken = None
    with trio.move_on_after(2 * ttl + lock_delay + 3):
        while taken is None:
            try:
                taken = await b.acquire()
            except PrimaryExistsError:
                await trio.sleep(0.2)
    waited = time.monotonic() - acquired_at
    print(f"consul: unrenewed TTL={ttl}s lock-delay={lock_delay}s lease taken over after {waited:.2f} s")
    assert taken is not None, f"lease not taken over within 2 x TTL + lock-delay ({waited:.1f} s)"
    assert ttl <= waited <= 2 * ttl + lock_delay + 2
    with pytest.raises(LeaseExpiredError):
        await lease.renew()
    assert (await a.primary_info()).hostname == "node-b"
    await taken.close()
    await a.close()
    await b.close()


async def test_value_readable_by_plain_json(consul_url: str, lease_key: str) -> None:
    """What a LiteFS node does with the value: base64 from the KV API, then a JSON object."""
    a = leaser(consul_url, lease_key, "node-a", extra={"proxy-url": "http://node-a:8080"})
    lease = await a.acquire()
    raw = consul_kv_raw(consul_url, lease_key)
    assert raw is not None
    value = json.loads(base64.b64decode(raw["Value"]))
    assert value["hostname"] == "node-a" and value["advertise-url"] == "http://node-a:20202"
    await lease.close()
    await a.close()
