"""Consul lease for litefs-py (``lease.type: consul``).

Status: the configuration section is registered and validated; the backend itself (session with
TTL, KV acquire with LiteFS's JSON value, renew every TTL/2, release) is not built yet, so a node
configured with it refuses to start with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from litefs.hookspecs import hookimpl
from litefs.lease import LeaseContext, LeaseError


@dataclass
class ConsulConfig:
    """``lease.consul`` in litefs.yml, with LiteFS v0.5.14's defaults."""

    url: str = field(default="", metadata={"secret": True})
    """Consul base URL; its password is the ACL token and its path a key prefix."""
    key: str = ""
    ttl: float = field(default=10.0, metadata={"duration": True})
    lock_delay: float = field(default=1.0, metadata={"duration": True})


def _not_built(context: LeaseContext):  # noqa: ANN202
    raise LeaseError("the consul lease backend is not implemented yet in this build of litefs-py")


@hookimpl
def litefs_register_lease_types(register: Callable[..., None]) -> None:
    register("consul", _not_built, ConsulConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return config.lease.type == "consul"
