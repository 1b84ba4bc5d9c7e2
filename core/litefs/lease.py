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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
