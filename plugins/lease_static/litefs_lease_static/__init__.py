"""The static lease: one fixed primary, chosen in litefs.yml, with no failover and no handoff.

Configure it as LiteFS does: every node sets ``lease.hostname`` and ``lease.advertise-url`` to the
*primary's* values, and only the primary sets ``lease.candidate: true``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from litefs.hookspecs import hookimpl
from litefs.lease import (
    HandoffNotSupportedError,
    LeaseContext,
    NoPrimaryError,
    PrimaryExistsError,
    PrimaryInfo,
)

#: LiteFS gives the static lease a TTL that runs until the year 3000; any huge value will do.
_FOREVER = 1e11


class StaticLease:
    """The lease held by the static primary: never expires, cannot move."""

    id = "static"
    ttl = _FOREVER

    def __init__(self) -> None:
        self.renewed_at = time.monotonic()

    async def renew(self) -> None:
        self.renewed_at = time.monotonic()

    async def handoff(self, node_id: int) -> None:
        raise HandoffNotSupportedError("static lease handoff not supported")

    async def close(self) -> None:
        pass


class StaticLeaser:
    type = "static"

    def __init__(self, context: LeaseContext) -> None:
        self._hostname = context.hostname
        self._advertise_url = context.advertise_url
        self._is_primary = context.config.lease.candidate

    @property
    def hostname(self) -> str:
        return self._hostname

    @property
    def advertise_url(self) -> str:
        return self._advertise_url

    async def acquire(self) -> StaticLease:
        if not self._is_primary:
            raise PrimaryExistsError(f"primary is fixed by configuration: {self._hostname}")
        return StaticLease()

    async def acquire_existing(self, lease_id: str) -> StaticLease:
        raise HandoffNotSupportedError("static lease handoff not supported")

    async def primary_info(self) -> PrimaryInfo:
        # The primary itself answers "no primary", as LiteFS's static leaser does: it learns its
        # role from acquire() instead.
        if self._is_primary:
            raise NoPrimaryError("this node is the static primary")
        return PrimaryInfo(self._hostname, self._advertise_url)

    async def cluster_id(self) -> str:
        return ""

    async def set_cluster_id(self, cluster_id: str) -> None:
        pass

    async def close(self) -> None:
        pass


@hookimpl
def litefs_register_lease_types(register: Callable[..., None]) -> None:
    register("static", StaticLeaser)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001 - Config, kept import-free
    return config.lease.type == "static"
