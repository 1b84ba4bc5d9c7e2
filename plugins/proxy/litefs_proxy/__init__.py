"""HTTP proxy for litefs-py, enabled by ``proxy.target``.

Status: every ``proxy.*`` key of LiteFS v0.5.14 is registered and validated with LiteFS's
defaults; the proxy service itself is not built yet (the node logs that it is skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from litefs.hookspecs import hookimpl

log = logging.getLogger("litefs.plugin.proxy")


@dataclass
class ProxyConfig:
    """``proxy`` in litefs.yml, with LiteFS v0.5.14's defaults."""

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


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("proxy", ProxyConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return bool(config.section("proxy").target)


@hookimpl
def litefs_node_services(node, register) -> None:  # noqa: ANN001
    if node.config.section("proxy").target:
        log.warning("proxy.target is set but the proxy is not implemented yet in this build; skipping")
