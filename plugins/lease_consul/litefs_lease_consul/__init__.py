"""Consul lease for litefs-py (``lease.type: consul``), compatible with LiteFS v0.5.14.

A session with a TTL, lock-delay and behavior ``delete`` holds a KV lock on ``<prefix>/<key>``
whose value is LiteFS's JSON ``{"hostname", "advertise-url"}``, so litefs-py and LiteFS nodes can
share one Consul key and read each other's lease. See :mod:`litefs_lease_consul.leaser`.

Example ``litefs.yml``::

    lease:
      type: consul
      consul:
        url: "${FLY_CONSUL_URL}"   # https://:TOKEN@host/prefix/ : password = ACL token, path = key prefix
        key: "litefs/${FLY_APP_NAME}"
        ttl: 10s                   # Consul's minimum; Consul may take up to 2 x TTL to expire it
        lock-delay: 1s
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from litefs.hookspecs import hookimpl
from litefs.lease import LeaseContext
from litefs_lease_consul.leaser import (
    ConsulConfigError,
    ConsulLease,
    ConsulLeaser,
    ConsulUnavailableError,
    parse_consul_url,
)


@dataclass
class ConsulConfig:
    """``lease.consul`` in litefs.yml, with LiteFS v0.5.14's defaults."""

    url: str = field(default="", metadata={"secret": True})
    """Consul base URL; its password is the ACL token and its path a key prefix."""
    key: str = ""
    ttl: float = field(default=10.0, metadata={"duration": True})
    lock_delay: float = field(default=1.0, metadata={"duration": True})


def create_leaser(context: LeaseContext) -> ConsulLeaser:
    """The lease factory registered for ``lease.type: consul``."""
    section = context.section if context.section is not None else ConsulConfig()
    return ConsulLeaser(
        section.url,
        section.key,
        hostname=context.hostname,
        advertise_url=context.advertise_url,
        ttl=section.ttl,
        lock_delay=section.lock_delay,
        extra=context.extra,
    )


@hookimpl
def litefs_register_lease_types(register: Callable[..., None]) -> None:
    register("consul", create_leaser, ConsulConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001 - Config, kept import-free
    return config.lease.type == "consul"


__all__ = [
    "ConsulConfig",
    "ConsulConfigError",
    "ConsulLease",
    "ConsulLeaser",
    "ConsulUnavailableError",
    "create_leaser",
    "parse_consul_url",
]
