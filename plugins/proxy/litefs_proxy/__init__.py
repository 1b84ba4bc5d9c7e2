"""HTTP proxy for litefs-py, enabled by ``proxy.target``: writes reach the primary, reads see your
own writes, without changes to the app.

Every ``proxy.*`` key of LiteFS v0.5.14 works with LiteFS's defaults, and requests are handled in
LiteFS's order (see :mod:`litefs_proxy.app`): ``passthrough`` paths, ``GET /litefs/health``,
reads that wait for the ``__txid`` cookie's transaction (5 s, then ``504 Proxy timeout``), writes
that go to the app on the primary and get ``Set-Cookie: __txid=<16 hex>; Path=/; Expires=...;
HttpOnly``.

Writes on a replica:

* with ``FLY_APP_NAME`` set: ``200`` with ``fly-replay: instance=<primary hostname>`` and an empty
  body, exactly like LiteFS (Fly's edge replays the request on the primary);
* elsewhere the proxy forwards the request itself (method, path, query, headers, streamed body,
  ``X-Forwarded-For/-Proto/-Host``) to the primary node's proxy and streams the answer back with
  the primary's cookie, so the client's next read on this replica waits for its write.

Where the primary's proxy listens, first match wins:

1. ``proxy-url`` in the primary's lease value (a compatible extension of LiteFS's
   ``{"hostname", "advertise-url"}``; LiteFS ignores unknown keys). :func:`advertised_proxy_url`
   gives the value a node should publish;
2. ``proxy.forward-url`` (extension key, not in LiteFS), a pattern such as
   ``http://{hostname}:8080``: ``{hostname}`` is the primary's ``lease.hostname`` and
   ``{advertise-host}`` the host of its ``lease.advertise-url``;
3. the host of the primary's ``advertise-url`` with this node's own proxy port.

Forwarded requests carry ``Litefs-Proxy-Forwarded: <node ID>``; a node receiving one that is not
the primary answers ``508 Proxy error: ...`` rather than forwarding again, so loops are impossible.

Timeouts: ``read-header-timeout``, ``read-timeout``, ``write-timeout`` and ``idle-timeout`` are
enforced with the semantics of Go's ``http.Server`` fields of the same names (see
:mod:`litefs_proxy.server`): a connection that misses a deadline is closed without an answer, as Go
does, and costs nobody else anything.

Start-up: as in LiteFS the proxy listens only once the node is ready, or at once with ``skip-sync``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from litefs.hookspecs import hookimpl

log = logging.getLogger("litefs.plugin.proxy")


@dataclass
class ProxyConfig:
    """``proxy`` in litefs.yml, with LiteFS v0.5.14's defaults (plus the ``forward-url`` extension)."""

    addr: str = ""
    target: str = ""
    db: str = ""
    max_lag: float = field(default=10.0, metadata={"duration": True})
    debug: bool = False
    passthrough: list[str] = field(default_factory=list)
    always_forward: list[str] = field(default_factory=list)
    primary_redirect_timeout: float = field(default=5.0, metadata={"duration": True})
    read_timeout: float = field(default=0.0, metadata={"duration": True})
    read_header_timeout: float = field(default=10.0, metadata={"duration": True})
    write_timeout: float = field(default=0.0, metadata={"duration": True})
    idle_timeout: float = field(default=30.0, metadata={"duration": True})
    forward_url: str = ""
    """Extension: URL pattern of the primary's proxy, e.g. ``http://{hostname}:8080``."""

    def __post_init__(self) -> None:
        if self.target:
            check_config(self)


class ProxyConfigError(ValueError):
    """The ``proxy`` section is enabled but incomplete (LiteFS's messages)."""


def check_config(config: ProxyConfig) -> None:
    """LiteFS's start-up checks, in its order."""
    if not config.target:
        raise ProxyConfigError("proxy target required")
    if not config.db:
        raise ProxyConfigError("proxy database name required")
    if not config.addr:
        raise ProxyConfigError("proxy bind address required")


def advertised_proxy_url(config: Any) -> str:
    """The ``proxy-url`` a node should put into its lease value ("" when the proxy is off).

    The host is ``lease.hostname`` (or the host of ``lease.advertise-url``), the port that of
    ``proxy.addr``.
    """
    from urllib.parse import urlsplit

    section = config.section("proxy")
    if not section.target:
        return ""
    port = section.addr.rsplit(":", 1)[-1]
    host = config.lease.hostname or urlsplit(config.lease.advertise_url or "").hostname or ""
    return f"http://{host}:{port}" if host and port else ""


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("proxy", ProxyConfig)


@hookimpl
def litefs_plugin_enabled(config: Any) -> bool:
    return bool(config.section("proxy").target)


@hookimpl
def litefs_node_services(node: Any, register: Callable[..., None]) -> None:
    section = node.config.section("proxy")
    if section.target:
        from .service import ProxyService

        register("proxy", ProxyService(node, section).run)


__all__ = ["ProxyConfig", "ProxyConfigError", "advertised_proxy_url", "check_config"]


@hookimpl
def litefs_lease_value_extras(config: Any) -> dict[str, str] | None:
    """Publish this node's proxy address in the lease, so replicas know where to forward writes."""
    url = advertised_proxy_url(config)
    return {"proxy-url": url} if url else None
