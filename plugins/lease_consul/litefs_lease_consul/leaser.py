"""The Consul lease: a session with a TTL holding a KV lock, as LiteFS v0.5.14 does it.

Compatibility with LiteFS nodes sharing the same Consul:

* the lock key is ``<prefix>/<key>`` where the prefix is the path of ``lease.consul.url``;
* its value is compact JSON ``{"hostname": ..., "advertise-url": ...}`` (plus our extensions,
  which LiteFS ignores);
* sessions are named ``litefs`` with behavior ``delete``, so a crashed primary's key vanishes once
  Consul invalidates its session (Consul may wait up to 2 x TTL), and the lock-delay keeps others
  out for ``lock-delay`` afterwards;
* a clean release empties the value (KV release with no body) and then destroys the session;
* the cluster ID is the plain KV entry ``<prefix>/<key>/clusterid``.

The Consul client is python-consul2 (synchronous, on ``requests``). Every call runs in a worker
thread through :func:`trio.to_thread.run_sync`, one at a time per leaser (the ``requests`` session
is not meant to be shared between threads), and every request has a short timeout, so a cancelled
caller waits at most that long.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

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

T = TypeVar("T")

#: Seconds one HTTP request to Consul may take (connect, and again for the answer).
REQUEST_TIMEOUT = 2.0
#: Longest a clean release may take during shutdown, even inside a cancelled scope.
RELEASE_TIMEOUT = 5.0
SESSION_NAME = "litefs"


class ConsulConfigError(LeaseError, ValueError):
    """``lease.consul`` (or the node's hostname / advertise URL) is not usable."""


class ConsulUnavailableError(LeaseError):
    """Consul did not answer, or answered with an error; the caller should retry later."""


def _seconds(value: float) -> str:
    """A Go duration string, as Consul wants it ("10s", "1.5s")."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


def parse_consul_url(url: str) -> tuple[str, str, int, str, str]:
    """Split ``lease.consul.url`` into (scheme, host, port, ACL token, key prefix).

    The token is the URL's password (``https://:TOKEN@host/``); the prefix is its path without
    the surrounding slashes. A URL without a port uses the scheme's (80 or 443), like LiteFS.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConsulConfigError(
            f"invalid consul url {_redact(url)!r}: expected http(s)://[:token@]host[:port][/prefix]"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConsulConfigError(f"invalid consul url {_redact(url)!r}: {exc}") from None
    token = urllib.parse.unquote(parts.password or "")
    prefix = urllib.parse.unquote(parts.path).strip("/")
    return parts.scheme, parts.hostname, port, token, prefix


def _redact(url: str) -> str:
    """The URL with its password (the ACL token) masked, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class ConsulLease(RenewableLease):
    """A held Consul lease: the session that owns the KV lock."""

    backend = "consul"
    release_timeout = RELEASE_TIMEOUT

    def __init__(self, leaser: ConsulLeaser, session_id: str, renewed_at: float) -> None:
        super().__init__(session_id, leaser.ttl, renewed_at)
        self._leaser = leaser

    async def _renew(self) -> None:
        await self._leaser._renew_session(self._id)

    async def _release(self) -> None:
        """Release the lock (emptying the value) and destroy the session."""
        await self._leaser._release(self._id)


class ConsulLeaser:
    """The Consul lease backend of one node (``lease.type: consul``)."""

    type = "consul"

    def __init__(
        self,
        url: str,
        key: str,
        *,
        hostname: str,
        advertise_url: str,
        ttl: float = 10.0,
        lock_delay: float = 1.0,
        extra: dict[str, Any] | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not url:
            raise ConsulConfigError("must specify a consul url (lease.consul.url)")
        if not key:
            raise ConsulConfigError("must specify a consul key")
        if not hostname:
            raise ConsulConfigError("must specify a hostname for this node")
        if not advertise_url:
            raise ConsulConfigError("must specify an advertise URL for this node")
        if not 10 <= ttl <= 86400:
            raise ConsulConfigError(f"consul ttl must be between 10s and 24h (a Consul limit), got: {ttl}s")
        if lock_delay < 0:
            raise ConsulConfigError(f"consul lock-delay cannot be negative, got: {lock_delay}s")
        self.url = _redact(url)
        scheme, host, port, token, prefix = parse_consul_url(url)
        self.prefix = prefix
        self.key = f"{prefix}/{key.strip('/')}" if prefix else key.strip("/")
        self.cluster_id_key = f"{self.key}/clusterid"
        #: Catalog node the sessions belong to; empty means the agent's own node (LiteFS does the same).
        self.node_name = f"{prefix}/litefs" if prefix else ""
        self.ttl = float(ttl)
        self.lock_delay = float(lock_delay)
        self._info = PrimaryInfo(hostname, advertise_url, dict(extra or {}))
        self._value = json.dumps(self._info.to_json(), separators=(",", ":"))
        self._client = _make_client(scheme, host, port, token, request_timeout)
        self._lock = trio.Lock()
        self._node_registered = False

    @property
    def hostname(self) -> str:
        return self._info.hostname

    @property
    def advertise_url(self) -> str:
        return self._info.advertise_url

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one blocking client call in a worker thread; map client errors to LeaseErrors."""
        import consul
        import requests

        def run() -> T:
            try:
                return fn()
            except (consul.ConsulException, requests.RequestException) as exc:
                raise ConsulUnavailableError(f"consul {what} at {self.url} failed: {exc}") from exc

        async with self._lock:
            return await trio.to_thread.run_sync(run)

    async def _register_node(self) -> None:
        # LiteFS registers a catalog node for its sessions when a key prefix is in use, so that
        # several clusters sharing one Consul do not share the agent's node.
        if self._node_registered or not self.node_name:
            return
        await self._call(
            "catalog register", lambda: self._client.catalog.register(self.node_name, "localhost")
        )
        self._node_registered = True

    async def _create_session(self) -> str:
        await self._register_node()
        return await self._call(
            "session create",
            lambda: self._client.session.create(
                name=SESSION_NAME,
                node=self.node_name or None,
                checks=[],
                lock_delay=_Duration(self.lock_delay),
                behavior="delete",
                ttl=_Duration(self.ttl),
            ),
        )

    async def _destroy_session(self, session_id: str) -> None:
        await self._call("session destroy", lambda: self._client.session.destroy(session_id))

    async def _renew_session(self, session_id: str) -> None:
        import consul

        def renew() -> Any:
            try:
                return self._client.session.renew(session_id)
            except consul.NotFound:
                return None

        if await self._call("session renew", renew) is None:
            raise LeaseExpiredError(f"consul session {session_id} expired or was destroyed (key {self.key})")

    async def _acquire_key(self, session_id: str) -> bool:
        return bool(
            await self._call(
                "kv acquire", lambda: self._client.kv.put(self.key, self._value, acquire=session_id)
            )
        )

    async def _release(self, session_id: str) -> None:
        # A release with no body leaves the key with an empty value: that is how LiteFS nodes
        # tell "released" from "held" when they read the key.
        await self._call("kv release", lambda: self._client.kv.put(self.key, None, release=session_id))
        await self._destroy_session(session_id)

    # -- Leaser ------------------------------------------------------------------------------

    async def acquire(self) -> ConsulLease:
        """Create a session and lock the key with it; :class:`PrimaryExistsError` if held."""
        started = time.monotonic()
        session_id = await self._create_session()
        try:
            acquired = await self._acquire_key(session_id)
        except BaseException:
            with trio.move_on_after(RELEASE_TIMEOUT, shield=True):
                try:
                    await self._destroy_session(session_id)
                except LeaseError:
                    pass
            raise
        if not acquired:
            await self._destroy_session(session_id)
            raise PrimaryExistsError(f"consul key {self.key} is held by another node (or in its lock-delay)")
        return ConsulLease(self, session_id, started)

    async def acquire_existing(self, lease_id: str) -> ConsulLease:
        """Adopt the session the old primary handed over: renew it and lock the key with our value."""
        started = time.monotonic()
        await self._renew_session(lease_id)
        if not await self._acquire_key(lease_id):
            raise PrimaryExistsError(f"consul key {self.key} is held by a session other than {lease_id}")
        return ConsulLease(self, lease_id, started)

    async def primary_info(self) -> PrimaryInfo:
        """The holder's value; :class:`NoPrimaryError` when the key is missing, empty or unlocked."""
        _index, entry = await self._call("kv get", lambda: self._client.kv.get(self.key))
        if not entry or not entry.get("Value") or not entry.get("Session"):
            raise NoPrimaryError(f"no primary holds consul key {self.key}")
        try:
            value = json.loads(entry["Value"])
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise LeaseError(f"consul key {self.key} holds an unreadable primary value: {exc}") from exc
        return PrimaryInfo.from_json(value)

    async def cluster_id(self) -> str:
        _index, entry = await self._call("kv get", lambda: self._client.kv.get(self.cluster_id_key))
        if not entry or not entry.get("Value"):
            return ""
        return entry["Value"].decode()

    async def set_cluster_id(self, cluster_id: str) -> None:
        """Store the cluster ID once. Setting the same ID again is a no-op; a different one fails."""
        if not cluster_id:
            raise LeaseError("cluster ID must not be empty")
        # Create-only (cas=0), so two primaries racing cannot overwrite each other.
        created = await self._call(
            "kv put", lambda: self._client.kv.put(self.cluster_id_key, cluster_id, cas=0)
        )
        if created:
            return
        current = await self.cluster_id()
        if current != cluster_id:
            raise LeaseError(
                f"lease already initialized with different ID: {current!r} at {self.cluster_id_key}, not {cluster_id!r}"
            )

    async def close(self) -> None:
        """Drop the HTTP connections (held leases are released by their own close())."""
        self._client.http.session.close()


class _Duration(float):
    """A float that python-consul2 formats as ``"%ss"``: print it as a Go duration number."""

    def __str__(self) -> str:  # "%s" formatting
        return _seconds(float(self))[:-1]

    # python-consul2 compares lock_delay with 15 to decide whether to send it at all; the value
    # 15 then means "Consul's default", which is also 15 s, so that shortcut is harmless.


def _make_client(scheme: str, host: str, port: int, token: str, timeout: float) -> Any:
    """A python-consul2 client bound to exactly this URL and token.

    The library lets ``CONSUL_HTTP_ADDR`` / ``CONSUL_HTTP_TOKEN`` / ``CONSUL_HTTP_SSL*`` in the
    environment override its arguments; litefs.yml must win, so the connection is rebuilt here.
    Its constructor also warns (DeprecationWarning) about APIs we do not use; those are silenced.
    """
    import consul

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = consul.Consul(host=host, port=port, scheme=scheme, token=token or None)
    client.http = client.http_connect(host, port, scheme, verify=True, cert=None, timeout=timeout)
    client.token = token or None
    client.scheme = scheme
    return client
