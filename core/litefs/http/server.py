"""Serving the API with hypercorn on the node's trio loop."""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve


def bind_address(addr: str) -> str:
    """LiteFS's ``http.addr`` (Go style, ``:20202`` = every interface) as a hypercorn bind."""
    if addr.startswith(":"):
        return "0.0.0.0" + addr
    return addr


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def serve_http(
    app: Any, addr: str, shutdown: trio.Event, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` on ``addr`` until ``shutdown`` is set; ``task_status.started`` gets the base URL."""
    config = HypercornConfig()
    config.bind = [bind_address(addr)]
    # Real loggers so hypercorn does not add its own handlers (lines would print twice).
    config.errorlog = logging.getLogger("litefs.http")
    config.accesslog = None
    config.keep_alive_timeout = 3600
    config.graceful_timeout = 1.0

    class _Started:
        """hypercorn reports its binds here; pass on the first one as a connectable URL."""

        def started(self, binds: list[str]) -> None:
            url = binds[0].replace("0.0.0.0", "127.0.0.1").replace("[::]", "127.0.0.1")
            task_status.started(url)

    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=_Started())
