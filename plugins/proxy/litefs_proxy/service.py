"""The proxy as a node service: hypercorn serving :class:`ProxyApp` on the node's trio loop."""

from __future__ import annotations

import logging
import math
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from litefs.http.server import bind_address, port_of

from . import check_config
from .app import ProxyApp
from .upstream import new_client

log = logging.getLogger("litefs.plugin.proxy")


def hypercorn_config(config: Any) -> HypercornConfig:
    """LiteFS's server timeouts mapped onto hypercorn's knobs (see the package docs for the gaps)."""
    hc = HypercornConfig()
    hc.bind = [bind_address(config.addr)]
    hc.errorlog = logging.getLogger("litefs.plugin.proxy.http")
    hc.accesslog = None
    # The upstream's own Date/Server headers are passed through instead.
    hc.include_date_header = False
    hc.include_server_header = False
    hc.keep_alive_timeout = config.idle_timeout if config.idle_timeout > 0 else 3600 * 24
    if config.read_timeout > 0:
        hc.read_timeout = max(1, math.ceil(config.read_timeout))
    hc.graceful_timeout = 1.0
    # Bodies of any size stream through; the app decides what it accepts.
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


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

            await serve(self.app, hypercorn_config(self.config), task_status=_Bound())
