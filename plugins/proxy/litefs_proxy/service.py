"""The proxy as a node service: hypercorn serving :class:`ProxyApp` on the node's trio loop."""

from __future__ import annotations

import logging
from typing import Any

import trio

from litefs.http.server import port_of

from . import check_config
from .app import ProxyApp
from .server import hypercorn_config, serve
from .upstream import new_client

log = logging.getLogger("litefs.plugin.proxy")

__all__ = ["ProxyService", "hypercorn_config"]


class ProxyService:
    """Runs one node's proxy until the node stops."""

    def __init__(self, node: Any, config: Any) -> None:
        check_config(config)
        self.node = node
        self.config = config
        self.url = ""
        """``http://host:port`` the proxy listens on, once it does."""
        self.app: ProxyApp | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # LiteFS opens the proxy only once the node is ready (unless skip-sync). The core starts
        # services before it marks the node ready, so waiting here before ``started()`` would
        # deadlock; in that case the service reports itself started and listens once ready.
        if not self.node.config.skip_sync and not self.node.is_ready:
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await self.node.wait_ready()
        if not self.config.debug:
            # httpx logs every request at INFO: one line per proxied request is debug output.
            logging.getLogger("httpx").setLevel(logging.WARNING)
        async with new_client() as client:
            self.app = ProxyApp(self.node, self.config, client)
            status = task_status

            class _Bound:
                """hypercorn reports its binds here: record the address, then report started."""

                def started(inner, binds: list[str]) -> None:  # noqa: N805
                    self.url = binds[0].replace("0.0.0.0", "127.0.0.1").replace("[::]", "127.0.0.1")
                    assert self.app is not None
                    self.app.own_port = port_of(self.url)
                    log.info("proxy listening on %s, target %s", self.url, self.config.target)
                    status.started()

            await serve(self.app, self.config, task_status=_Bound())
