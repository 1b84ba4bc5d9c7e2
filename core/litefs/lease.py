"""The lease interface: who is primary.

A lease backend is a plugin that registers a factory under a type name (``lease.type`` in
litefs.yml) through :func:`litefs.hookspecs.litefs_register_lease_types`. The factory gets a
:class:`LeaseContext` and returns a :class:`Leaser`. The election loop in the core drives every
backend the same way, so a backend only has to answer the questions below.

All methods are ``async`` and run on the node's trio loop: a backend with a blocking client must
hop to a worker thread itself (``trio.to_thread.run_sync``) and keep each blocking call short so
shutdown stays prompt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from litefs.config import Config


class LeaseError(Exception):
    """Base class of lease errors."""


class NoPrimaryError(LeaseError):
    """No node holds the lease right now."""


class PrimaryExistsError(LeaseError):
    """Another node holds the lease."""


class LeaseExpiredError(LeaseError):
    """The lease is gone (expired or taken over); this node must stop writing at once."""


class HandoffNotSupportedError(LeaseError):
    """The backend cannot hand its lease to another node (for example the static lease)."""


@dataclass(frozen=True)
class PrimaryInfo:
    """What other nodes learn about the primary from the lease."""

    hostname: str
    advertise_url: str
    extra: dict[str, Any] = field(default_factory=dict)
    """Backend-independent extensions stored next to LiteFS's two keys (for example the primary's
    proxy address). LiteFS nodes ignore unknown keys, so adding keys stays compatible."""

    def to_json(self) -> dict[str, Any]:
        """The lease value as LiteFS stores it: ``{"hostname", "advertise-url"}`` plus extensions."""
        return {"hostname": self.hostname, "advertise-url": self.advertise_url, **self.extra}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PrimaryInfo:
        extra = {k: v for k, v in value.items() if k not in ("hostname", "advertise-url")}
        return cls(str(value.get("hostname", "")), str(value.get("advertise-url", "")), extra)


@runtime_checkable
class Lease(Protocol):
    """A held lease. Only the primary has one."""

    @property
    def id(self) -> str: ...

    @property
    def ttl(self) -> float:
        """Seconds the lease stays valid after a renewal."""
        ...

    @property
    def renewed_at(self) -> float:
        """``time.monotonic()`` of the last successful renewal."""
        ...

    async def renew(self) -> None:
        """Extend the lease; raise :class:`LeaseExpiredError` when it is gone."""
        ...

    async def handoff(self, node_id: int) -> None:
        """Prepare to pass this lease to ``node_id`` (raise HandoffNotSupportedError if impossible)."""
        ...

    async def close(self) -> None:
        """Release the lease so another node can take it at once."""
        ...


@runtime_checkable
class Leaser(Protocol):
    """A lease backend bound to one node."""

    type: str

    @property
    def hostname(self) -> str: ...

    @property
    def advertise_url(self) -> str: ...

    async def acquire(self) -> Lease:
        """Try to become primary; raise :class:`PrimaryExistsError` if another node is."""
        ...

    async def acquire_existing(self, lease_id: str) -> Lease:
        """Take over a lease handed to this node by the old primary."""
        ...

    async def primary_info(self) -> PrimaryInfo:
        """Who is primary; raise :class:`NoPrimaryError` if nobody is."""
        ...

    async def cluster_id(self) -> str:
        """The cluster ID stored with the lease ("" when unset or unsupported)."""
        ...

    async def set_cluster_id(self, cluster_id: str) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class WatchableLeaser(Protocol):
    """Optional: a backend that can push lease changes (etcd's watch) instead of being polled.

    When the leaser has this method the node runs it as a task for its whole life and, on every
    change, stops following a primary the lease no longer names and ends the election loop's
    retry pause at once. Polling stays in place as the fallback, so a watch that breaks only costs
    latency.
    """

    async def watch_primary(self, on_change: Callable[[PrimaryInfo | None], None]) -> None:
        """Run until cancelled: call ``on_change`` with the primary (None: nobody) now and on every
        change of the lease value. Must handle its own errors and reconnect."""
        ...


log = logging.getLogger("litefs.lease")


class RenewableLease:
    """Bookkeeping shared by backends whose lease is renewed by a request and released on close.

    A subclass implements :meth:`_renew` (one renewal request; it may return a new TTL) and
    :meth:`_release` (give the lease up). This class times renewals from the moment the request is
    *sent* -- the server starts its clock later, so the holder never believes in the lease longer
    than the server does -- and makes :meth:`close` a no-op after :meth:`handoff`, since the lease
    then belongs to the node it was handed to.
    """

    backend = "lease"
    release_timeout = 5.0

    def __init__(self, lease_id: str, ttl: float, renewed_at: float) -> None:
        self._id = lease_id
        self._ttl = ttl
        self._renewed_at = renewed_at
        self._handed_off = False
        self._closed = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def renewed_at(self) -> float:
        return self._renewed_at

    async def _renew(self) -> float | None:
        raise NotImplementedError

    async def _release(self) -> None:
        raise NotImplementedError

    async def renew(self) -> None:
        """Extend the lease; :class:`LeaseExpiredError` once the server has dropped it."""
        if self._closed:
            raise LeaseExpiredError(f"{self.backend} lease {self._id} was released")
        started = time.monotonic()
        ttl = await self._renew()
        if ttl is not None:
            self._ttl = ttl
        self._renewed_at = started

    async def handoff(self, node_id: int) -> None:
        """Renew once more; from now on :meth:`close` leaves the lease to the new primary."""
        await self.renew()
        self._handed_off = True

    async def close(self) -> None:
        """Release the lease unless handed off; runs even while the caller is being cancelled
        (shutdown), for at most ``release_timeout`` seconds."""
        if self._closed:
            return
        self._closed = True
        if self._handed_off:
            return
        with trio.move_on_after(self.release_timeout, shield=True):
            try:
                await self._release()
            except LeaseError as exc:
                log.warning("%s: could not release lease %s cleanly: %s", self.backend, self._id, exc)


@dataclass(frozen=True)
class LeaseContext:
    """Everything a lease factory may use to build its :class:`Leaser`."""

    config: Config
    """The whole effective configuration (read ``config.lease`` for the common lease keys)."""
    section: Any
    """The backend's own section (``lease.<type>``) converted to the dataclass it registered,
    or ``None`` if it registered none."""
    hostname: str
    """``lease.hostname``, or the OS hostname when unset."""
    advertise_url: str
    """``lease.advertise-url``, or ``http://<hostname>:<http port>`` when unset."""
    node_id: int
    extra: dict[str, Any] = field(default_factory=dict)
    """Extension keys for the lease value (from :func:`litefs.hookspecs.litefs_lease_value_extras`);
    backends that store a value should store them next to LiteFS's keys."""
