"""etcd v3 lease for litefs-py (``lease.type: etcd``), beyond what LiteFS offers.

Status: the configuration section is registered and validated; the backend (lease grant,
create-if-absent transaction, keepalive, watch, revoke through etcd's JSON gateway) is not built
yet, so a node configured with it refuses to start with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from litefs.hookspecs import hookimpl
from litefs.lease import LeaseContext, LeaseError


@dataclass
class EtcdConfig:
    """``lease.etcd`` in litefs.yml."""

    endpoints: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    key: str = ""
    ttl: float = field(default=10.0, metadata={"duration": True})
    username: str = ""
    password: str = field(default="", metadata={"secret": True})


def _not_built(context: LeaseContext):  # noqa: ANN202
    raise LeaseError("the etcd lease backend is not implemented yet in this build of litefs-py")


@hookimpl
def litefs_register_lease_types(register: Callable[..., None]) -> None:
    register("etcd", _not_built, EtcdConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return config.lease.type == "etcd"
