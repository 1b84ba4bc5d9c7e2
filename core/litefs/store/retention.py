"""LTX retention: remove old LTX files on every node (LiteFS §5.7, ``data.retention``).

Every ``data.retention-monitor-interval`` each database loses the LTX files in ``ltx/`` whose mtime is
older than ``now - data.retention``. The newest file is always kept: recovery re-applies it at start and
the primary needs it to tell a caught-up replica apart from one that is behind. A replica that falls
further behind than retention finds its next file gone and is sent a snapshot (replication/primary.py).

Retention uses the file's mtime, not the LTX header timestamp, like LiteFS. Unlike LiteFS, a database
whose files cannot be listed or removed is logged and the others are still pruned; nothing is swallowed.
There are no per-replica acknowledgements and no backup high-water mark here: the backup plugin keeps
its own position.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from litefs.config import Config
    from litefs.store.database import Database
    from litefs.store.store import Store

log = logging.getLogger("litefs.retention")


def enforce_retention(db: Database, *, retention: float, now: float) -> int:
    """Remove ``db``'s LTX files last modified before ``now - retention``; return how many went.

    The newest file (highest max TXID, which is also the last by name for the files a node writes) is
    always kept. ``retention <= 0`` disables enforcement. A file that disappears meanwhile (a concurrent
    drop or compaction) is not an error; any other ``OSError`` propagates with the file's path in it.
    """
    if retention <= 0:
        return 0
    files = db.ltx_files()
    cutoff = now - retention
    removed = 0
    for _, _, path in files[:-1]:
        try:
            if os.stat(path).st_mtime >= cutoff:
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed += 1
    if removed:
        log.debug("%s: retention removed %d ltx file(s)", db.name, removed)
    return removed


def enforce_all(dbs: Iterable[Database], *, retention: float, now: float | None = None) -> int:
    """Run :func:`enforce_retention` on each database; return the total removed.

    A failing database is logged with its name and the error, and the next one is still pruned.
    """
    return sum(enforce_each(dbs, retention=retention, now=now).values())


def enforce_each(dbs: Iterable[Database], *, retention: float, now: float | None = None) -> dict[str, int]:
    """Like :func:`enforce_all`, but return how many files went per database (only those that lost
    some), for the ``litefs_ltx_reaped`` hook."""
    now = time.time() if now is None else now
    removed: dict[str, int] = {}
    for db in dbs:
        try:
            n = enforce_retention(db, retention=retention, now=now)
        except OSError as exc:
            log.error("%s: retention failed: %s", db.name, exc)
            continue
        if n:
            removed[db.name] = n
    return removed


async def run_retention(
    store: Store, config: Config, on_reaped: Callable[[str, int], None] | None = None
) -> None:
    """Enforce ``config.data.retention`` every ``config.data.retention_monitor_interval`` seconds, forever.

    Returns at once when the interval or the retention is 0 (never run / disabled). The file work runs
    in a worker thread so a large ``ltx/`` directory does not stall FUSE requests or streams.
    ``on_reaped(db_name, files)`` is called on the trio thread for each database that lost files.
    """
    interval = config.data.retention_monitor_interval
    retention = config.data.retention
    if interval <= 0 or retention <= 0:
        return
    while True:
        await trio.sleep(interval)
        # The list is taken here, in the trio thread: the store's dict may change while the worker runs.
        dbs = store.dbs()
        try:
            removed = await trio.to_thread.run_sync(partial(enforce_each, dbs, retention=retention))
        except Exception:  # a bug here must not take the node down; the next round tries again
            log.exception("retention monitor failed")
            continue
        if on_reaped is not None:
            for name, files in removed.items():
                try:
                    on_reaped(name, files)
                except Exception:  # a plugin must not stop retention
                    log.exception("retention listener failed")
