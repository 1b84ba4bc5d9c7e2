"""etcd v3 lease for litefs-py (``lease.type: etcd``), beyond what LiteFS offers.

A lease (TTL) bound to a key created only if absent, through etcd's JSON gateway with httpx; the
key's value is LiteFS's JSON ``{"hostname", "advertise-url"}``. See :mod:`litefs_lease_etcd.leaser`.

Example ``litefs.yml``::

    lease:
      type: etcd
      etcd:
        endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]
        key: "/litefs/my-app"
        ttl: 10s
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from litefs.hookspecs import hookimpl
from litefs.lease import LeaseContext
from litefs_lease_etcd.leaser import (
    EtcdClient,
    EtcdConfigError,
    EtcdLease,
    EtcdLeaser,
    EtcdRequestError,
    EtcdUnavailableError,
)


@dataclass
class EtcdConfig:
    """``lease.etcd`` in litefs.yml."""

    endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    """Client URLs of the etcd members; a request that cannot reach one tries the next."""
    key: str = ""
    """The lease key (the cluster ID lives at ``<key>/clusterid``)."""
    ttl: float = field(default=10.0, metadata={"duration": True})
    """Lease TTL, whole seconds (etcd may raise very small TTLs to its minimum)."""
    username: str = ""
    password: str = field(default="", metadata={"secret": True})
    timeout: float = field(default=3.0, metadata={"duration": True})
    """Timeout of one HTTP request to one endpoint."""


def create_leaser(context: LeaseContext) -> EtcdLeaser:
    """The lease factory registered for ``lease.type: etcd``."""
    section = context.section if context.section is not None else EtcdConfig()
    return EtcdLeaser(
        list(section.endpoints),
        section.key,
        hostname=context.hostname,
        advertise_url=context.advertise_url,
        ttl=section.ttl,
        timeout=section.timeout,
        username=section.username,
        password=section.password,
        extra=context.extra,
    )


@hookimpl
def litefs_register_lease_types(register: Callable[..., None]) -> None:
    register("etcd", create_leaser, EtcdConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001 - Config, kept import-free
    return config.lease.type == "etcd"


__all__ = [
    "EtcdClient",
    "EtcdConfig",
    "EtcdConfigError",
    "EtcdLease",
    "EtcdLeaser",
    "EtcdRequestError",
    "EtcdUnavailableError",
    "create_leaser",
]
