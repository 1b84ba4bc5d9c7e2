"""The etcd lease: a v3 lease bound to a create-if-absent key, through etcd's JSON gateway.

* acquire: ``POST /v3/lease/grant`` (TTL), then one ``/v3/kv/txn`` that puts the key with that
  lease only if the key does not exist (``create_revision == 0``); on failure the same txn returns
  the current holder and the fresh lease is revoked;
* renew: ``/v3/lease/keepalive``; etcd answers an unknown (expired or revoked) lease with TTL 0,
  which becomes :class:`~litefs.lease.LeaseExpiredError`;
* release: ``/v3/lease/revoke``, which deletes the key at once;
* watch (:meth:`EtcdLeaser.watch_primary`): ``/v3/watch`` streamed with httpx, so replicas learn
  of a new primary or a lost lease as soon as etcd records it instead of at their next poll;
* the value is LiteFS's JSON ``{"hostname", "advertise-url"}``, the cluster ID is the plain key
  ``<key>/clusterid`` (no lease, so it outlives primaries).

In the JSON gateway keys and values are base64 and 64-bit integers are decimal strings. Several
endpoints may be given: a request that cannot reach one (connection error, timeout, 5xx such as
"no leader") moves to the next, and later requests keep using the one that answered.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio

from litefs.lease import (
    LeaseError,
    LeaseExpiredError,
    NoPrimaryError,
    PrimaryExistsError,
    PrimaryInfo,
    RenewableLease,
)

log = logging.getLogger(__name__)

#: Seconds one HTTP request to etcd may take (a member re-electing its leader can stall ~2 s).
REQUEST_TIMEOUT = 3.0
#: Longest a clean release may take during shutdown, even inside a cancelled scope.
RELEASE_TIMEOUT = 5.0
#: Pause before re-establishing a broken watch (doubling up to the maximum while it keeps failing).
WATCH_RETRY_MIN = 0.1
WATCH_RETRY_MAX = 2.0


class EtcdConfigError(LeaseError, ValueError):
    """``lease.etcd`` (or the node's hostname / advertise URL) is not usable."""


class EtcdUnavailableError(LeaseError):
    """No endpoint answered; the caller should retry later."""


class EtcdRequestError(LeaseError):
    """etcd answered with an error (``code`` is the gRPC status code)."""

    def __init__(self, message: str, code: int | None, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _first_json(text: str) -> dict[str, Any]:
    """The first JSON object of a (possibly streamed, newline-separated) gateway response."""
    obj, _end = json.JSONDecoder().raw_decode(text.lstrip())
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


class EtcdClient:
    """A minimal etcd v3 JSON-gateway client over several endpoints."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float = REQUEST_TIMEOUT,
        username: str = "",
        password: str = "",
    ) -> None:
        if not endpoints:
            raise EtcdConfigError("must specify at least one etcd endpoint (lease.etcd.endpoints)")
        self.endpoints = [_normalise_endpoint(e) for e in endpoints]
        self.current = 0
        """Index of the endpoint requests go to first (the last one that answered)."""
        self._timeout = timeout
        self._username = username
        self._password = password
        self._token = ""
        self._http = httpx.AsyncClient(timeout=timeout)

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers; return the JSON answer."""
        failures = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoints[self.current]
            try:
                resp = await self._post(endpoint, path, body)
            except httpx.TransportError as exc:
                failures.append(f"{endpoint}: {type(exc).__name__} {exc}".rstrip())
                self._rotate(endpoint)
                continue
            if resp.status_code >= 500:
                failures.append(f"{endpoint}: HTTP {resp.status_code} {resp.text.strip()[:200]}")
                self._rotate(endpoint)
                continue
            try:
                data = _first_json(resp.text)
            except ValueError as exc:
                raise EtcdRequestError(
                    f"etcd {path} at {endpoint}: unreadable answer ({exc}): {resp.text[:200]!r}",
                    None,
                    resp.status_code,
                ) from None
            error = data.get("error")
            if resp.status_code != 200 or error is not None:
                err = error if isinstance(error, dict) else data
                code = err.get("grpc_code", err.get("code"))
                message = err.get("message", resp.text.strip()[:200])
                raise EtcdRequestError(f"etcd {path} at {endpoint}: {message}", code, resp.status_code)
            return data
        raise EtcdUnavailableError(f"no etcd endpoint answered {path}: " + "; ".join(failures))

    async def _post(self, endpoint: str, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {}
        if self._username:
            if not self._token:
                resp = await self._http.post(
                    f"{endpoint}/v3/auth/authenticate",
                    json={"name": self._username, "password": self._password},
                )
                if resp.status_code != 200:
                    raise EtcdRequestError(
                        f"etcd authentication as {self._username!r} at {endpoint} failed: {resp.text.strip()[:200]}",
                        None,
                        resp.status_code,
                    )
                self._token = resp.json()["token"]
            headers["Authorization"] = self._token
        return await self._http.post(f"{endpoint}{path}", json=body, headers=headers)

    async def stream(
        self, path: str, body: dict[str, Any], on_message: Callable[[dict[str, Any]], None]
    ) -> str:
        """POST ``body`` to ``path`` on the current endpoint and call ``on_message`` with every JSON
        message of the streamed answer, until the stream ends (returns why) or breaks (raises).

        httpx reads a stream through a chain of async generators that do not close one another, so
        leaving the ``async for`` early (``break``, ``return``, an exception of our own) would leave
        inner generators suspended, and trio warns when they are garbage collected. The loop is
        therefore only ever left by the stream ending or by a cancellation raised inside the chain:
        to stop, the body cancels a scope of its own and skips what is still buffered; the next
        read raises Cancelled inside the innermost generator, which unwinds and finishes them all.
        """
        endpoint = self.endpoints[self.current]
        headers = {"Authorization": self._token} if self._token else {}
        timeout = httpx.Timeout(self._timeout, read=None)  # a watch is idle until something changes
        stopped: list[str] = []
        with trio.CancelScope() as scope:
            async with self._http.stream(
                "POST", f"{endpoint}{path}", json=body, headers=headers, timeout=timeout
            ) as resp:
                if resp.status_code != 200:
                    text = (await resp.aread()).decode(errors="replace").strip()[:200]
                    raise EtcdRequestError(f"etcd {path} at {endpoint}: {text}", None, resp.status_code)
                async for line in resp.aiter_lines():
                    if scope.cancel_called or not line.strip():
                        continue
                    try:
                        message = json.loads(line)
                        if not isinstance(message, dict):
                            raise ValueError("not a JSON object")
                        on_message(message)
                    except (ValueError, LeaseError) as exc:
                        stopped.append(str(exc))
                        scope.cancel()
        return stopped[0] if stopped else "stream ended"

    def _rotate(self, failed: str) -> None:
        if self.endpoints[self.current] == failed:
            self.current = (self.current + 1) % len(self.endpoints)
            log.info("etcd: %s failed, trying %s", failed, self.endpoints[self.current])

    async def aclose(self) -> None:
        await self._http.aclose()


def _normalise_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"  # etcdctl-style host:port
    return endpoint


class EtcdLease(RenewableLease):
    """A held etcd lease (its decimal ID) that keeps the lease key."""

    backend = "etcd"
    release_timeout = RELEASE_TIMEOUT

    def __init__(self, leaser: EtcdLeaser, lease_id: str, ttl: float, renewed_at: float) -> None:
        super().__init__(lease_id, ttl, renewed_at)
        self._leaser = leaser

    async def _renew(self) -> float:
        return await self._leaser._keepalive(self._id)

    async def _release(self) -> None:
        """Revoke the lease, which deletes the key."""
        await self._leaser._revoke(self._id)


class EtcdLeaser:
    """The etcd lease backend of one node (``lease.type: etcd``)."""

    type = "etcd"

    def __init__(
        self,
        endpoints: list[str],
        key: str,
        *,
        hostname: str,
        advertise_url: str,
        ttl: float = 10.0,
        extra: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT,
        username: str = "",
        password: str = "",
    ) -> None:
        if not key:
            raise EtcdConfigError("must specify an etcd key (lease.etcd.key)")
        if not hostname:
            raise EtcdConfigError("must specify a hostname for this node")
        if not advertise_url:
            raise EtcdConfigError("must specify an advertise URL for this node")
        if ttl < 1:
            raise EtcdConfigError(f"etcd ttl must be at least 1s, got: {ttl}s")
        self.key = key
        self.cluster_id_key = f"{key}/clusterid"
        self.requested_ttl = ttl
        self._info = PrimaryInfo(hostname, advertise_url, dict(extra or {}))
        self._value = json.dumps(self._info.to_json(), separators=(",", ":"))
        self.client = EtcdClient(endpoints, timeout=timeout, username=username, password=password)

    @property
    def hostname(self) -> str:
        return self._info.hostname

    @property
    def advertise_url(self) -> str:
        return self._info.advertise_url

    # -- lease primitives -------------------------------------------------------------------

    async def _grant(self) -> tuple[str, float]:
        # etcd grants TTLs as whole seconds and may raise a small one to its minimum.
        answer = await self.client.call("/v3/lease/grant", {"TTL": str(max(1, round(self.requested_ttl)))})
        return str(answer["ID"]), float(answer["TTL"])

    async def _keepalive(self, lease_id: str) -> float:
        answer = await self.client.call("/v3/lease/keepalive", {"ID": lease_id})
        ttl = float(answer.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseExpiredError(f"etcd lease {lease_id} expired or was revoked (key {self.key})")
        return ttl

    async def _revoke(self, lease_id: str) -> None:
        try:
            await self.client.call("/v3/lease/revoke", {"ID": lease_id})
        except EtcdRequestError as exc:
            if exc.status != 404:  # already gone is fine
                raise

    async def _range(self, key: str) -> dict[str, Any] | None:
        answer = await self.client.call("/v3/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        return kvs[0] if kvs else None

    def _put_if_absent(self, key: str, value: str, lease_id: str | None) -> dict[str, Any]:
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease_id is not None:
            put["lease"] = lease_id
        return {
            "compare": [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }

    @staticmethod
    def _txn_holder(answer: dict[str, Any]) -> dict[str, Any] | None:
        for response in answer.get("responses") or []:
            kvs = (response.get("response_range") or {}).get("kvs") or []
            if kvs:
                return kvs[0]
        return None

    def _describe(self, kv: dict[str, Any] | None) -> str:
        if kv is None:
            return "nobody"
        try:
            return PrimaryInfo.from_json(json.loads(_unb64(kv.get("value")))).hostname or "?"
        except ValueError:
            return "?"

    # -- Leaser ------------------------------------------------------------------------------

    async def acquire(self) -> EtcdLease:
        """Grant a lease and create the key with it; :class:`PrimaryExistsError` if the key exists."""
        started = time.monotonic()
        lease_id, ttl = await self._grant()
        try:
            answer = await self.client.call(
                "/v3/kv/txn", self._put_if_absent(self.key, self._value, lease_id)
            )
        except BaseException:
            with trio.move_on_after(RELEASE_TIMEOUT, shield=True):
                try:
                    await self._revoke(lease_id)
                except LeaseError:
                    pass
            raise
        if not answer.get("succeeded"):
            with trio.move_on_after(RELEASE_TIMEOUT, shield=True):
                try:
                    await self._revoke(lease_id)
                except LeaseError:
                    pass  # it expires by itself after its TTL
            holder = self._describe(self._txn_holder(answer))
            raise PrimaryExistsError(f"etcd key {self.key} is held by {holder}")
        return EtcdLease(self, lease_id, ttl, started)

    async def acquire_existing(self, lease_id: str) -> EtcdLease:
        """Adopt a lease handed over by the old primary: keep it alive and put our value under it."""
        started = time.monotonic()
        ttl = await self._keepalive(lease_id)
        key = _b64(self.key)
        put = {"request_put": {"key": key, "value": _b64(self._value), "lease": lease_id}}
        answer = await self.client.call(
            "/v3/kv/txn",
            {
                # The key must still be attached to this very lease (or be gone, then we create it).
                "compare": [{"key": key, "target": "LEASE", "lease": lease_id}],
                "success": [put],
                "failure": [{"request_range": {"key": key}}],
            },
        )
        if not answer.get("succeeded"):
            holder = self._txn_holder(answer)
            if holder is not None:
                raise PrimaryExistsError(
                    f"etcd key {self.key} is held by {self._describe(holder)}, not by lease {lease_id}"
                )
            answer = await self.client.call(
                "/v3/kv/txn", self._put_if_absent(self.key, self._value, lease_id)
            )
            if not answer.get("succeeded"):
                raise PrimaryExistsError(
                    f"etcd key {self.key} is held by {self._describe(self._txn_holder(answer))}"
                )
        return EtcdLease(self, lease_id, ttl, started)

    async def primary_info(self) -> PrimaryInfo:
        kv = await self._range(self.key)
        raw = _unb64(kv.get("value")) if kv else b""
        if not raw:
            raise NoPrimaryError(f"no primary holds etcd key {self.key}")
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise LeaseError(f"etcd key {self.key} holds an unreadable primary value: {exc}") from exc
        return PrimaryInfo.from_json(value)

    async def cluster_id(self) -> str:
        kv = await self._range(self.cluster_id_key)
        return _unb64(kv.get("value")).decode() if kv else ""

    async def set_cluster_id(self, cluster_id: str) -> None:
        """Store the cluster ID once (create-only). The same ID again is a no-op; another one fails."""
        if not cluster_id:
            raise LeaseError("cluster ID must not be empty")
        answer = await self.client.call(
            "/v3/kv/txn", self._put_if_absent(self.cluster_id_key, cluster_id, None)
        )
        if answer.get("succeeded"):
            return
        holder = self._txn_holder(answer)
        current = _unb64(holder.get("value")).decode() if holder else ""
        if current != cluster_id:
            raise LeaseError(
                f"lease already initialized with different ID: {current!r} at {self.cluster_id_key}, not {cluster_id!r}"
            )

    # -- watch -------------------------------------------------------------------------------

    def _info_of(self, kv: dict[str, Any] | None) -> PrimaryInfo | None:
        raw = _unb64(kv.get("value")) if kv else b""
        if not raw:
            return None
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            log.warning("etcd key %s holds an unreadable primary value: %s", self.key, exc)
            return None
        return PrimaryInfo.from_json(value)

    async def watch_primary(self, on_change: Callable[[PrimaryInfo | None], None]) -> None:
        """Run until cancelled: report who is primary (None: nobody) now and at every change.

        Reads the key and its revision, then follows ``/v3/watch`` from the next revision, so no
        change between the two is missed. When the watch breaks (member killed, no leader,
        compaction) the next endpoint is tried after a short pause, starting again with a read of
        the key, which doubles as polling while no watch can be established.
        """
        key = _b64(self.key)
        delay = WATCH_RETRY_MIN

        def message(msg: dict[str, Any]) -> None:
            nonlocal delay
            error = msg.get("error")
            if error is not None:
                raise LeaseError(
                    f"etcd watch error: {error.get('message', error) if isinstance(error, dict) else error}"
                )
            result = msg.get("result") or {}
            if result.get("canceled"):
                raise LeaseError(
                    f"etcd canceled the watch: {result.get('cancel_reason') or 'no reason given'}"
                )
            if result.get("created"):
                delay = WATCH_RETRY_MIN  # a working watch: the next failure retries quickly again
            for event in result.get("events") or []:
                on_change(None if event.get("type") == "DELETE" else self._info_of(event.get("kv")))

        while True:
            endpoint = self.client.endpoints[self.client.current]
            try:
                answer = await self.client.call("/v3/kv/range", {"key": key})
                revision = int(answer["header"]["revision"])
                kvs = answer.get("kvs") or []
                on_change(self._info_of(kvs[0] if kvs else None))
                body = {"create_request": {"key": key, "start_revision": str(revision + 1)}}
                reason = await self.client.stream("/v3/watch", body, message)
            except (LeaseError, httpx.HTTPError, KeyError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            log.info(
                "etcd: watch of %s at %s ended (%s); watching again in %.1fs",
                self.key,
                endpoint,
                reason,
                delay,
            )
            self.client._rotate(endpoint)
            await trio.sleep(delay)
            delay = min(delay * 2, WATCH_RETRY_MAX)

    async def close(self) -> None:
        await self.client.aclose()
