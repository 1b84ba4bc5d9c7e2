"""Extra pyfuse3 workers while a FUSE request waits for something slow (a HALT lock).

The mount runs one pyfuse3 worker (``max_tasks=1``): handlers never await, and a second worker costs
10-35 % on every request (fuse-perf.md). Opening ``<db>-lock`` is the exception: it waits until the
primary grants the HALT lock and this node has applied everything before it, and applying needs the
mount (SQLite's locks are taken through it). While such a request waits, :meth:`ExtraWorkers.waiting`
runs one more pyfuse3 session loop that serves the other requests; a few seconds after the last
waiting request is done the extra loop is cancelled, so the steady state is one worker again.

An extra loop is started with ``max_tasks=0`` (it never spawns more) and a huge ``min_tasks`` (it never
ends by itself, which would upset pyfuse3's own worker count); it is cancelled instead. Cancellation
only lands where a loop waits for the FUSE device (handlers never await, and the waiting ones shield
themselves), so no request is lost. pyfuse3 does not free the receive buffer of a cancelled loop:
one buffer (about 132 KiB) per loop, rarely.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pyfuse3
import trio

log = logging.getLogger("litefs.fuse")

#: Seconds an extra worker stays after the last waiting request (a burst of HALTs reuses it).
LINGER = 5.0
_NEVER_IDLE_EXIT = 1 << 30


class ExtraWorkers:
    """Keeps one free pyfuse3 worker for every FUSE request that waits."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None
        self._scopes: list[trio.CancelScope] = []
        self._waiting = 0
        self._idle_since = 0.0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(1.0)
                if (
                    self._scopes
                    and self._waiting < len(self._scopes)
                    and trio.current_time() - self._idle_since >= LINGER
                ):
                    self._scopes.pop().cancel()

    async def _loop(self, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await pyfuse3._session_loop(self._nursery, _NEVER_IDLE_EXIT, 0)  # type: ignore[attr-defined]
            except (trio.ClosedResourceError, OSError) as exc:
                log.debug("extra fuse worker ended: %s", exc)

    @asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Wrap the slow part of a handler (shielded: it always finishes and answers)."""
        self._waiting += 1
        try:
            if self._nursery is not None and len(self._scopes) < self._waiting:
                self._scopes.append(await self._nursery.start(self._loop))
            with trio.CancelScope(shield=True):
                yield
        finally:
            self._waiting -= 1
            self._idle_since = trio.current_time()


__all__ = ["ExtraWorkers"]
