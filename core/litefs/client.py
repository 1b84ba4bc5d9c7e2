"""A small client for apps and scripts running next to a litefs-py node.

Everything here is synchronous and dependency-light, so it works inside any app::

    from litefs import client

    if client.is_primary("/litefs"):
        ...
    for event in client.events():          # the node's /events stream, one dict per event
        print(event["type"], event.get("db"))

``primary()`` and ``is_primary()`` read the mount's ``.primary`` file (present only on replicas,
holding the primary's hostname), exactly as LiteFS documents for apps.

``halt(db_path)`` lets a replica write to one database for a while (migrations, cron jobs)::

    with client.halt("/litefs/my.db"):
        conn = sqlite3.connect("/litefs/my.db")
        conn.execute("INSERT ...")          # forwarded to the primary before it commits here
        conn.commit()
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

DEFAULT_URL = "http://localhost:20202"

#: The byte of ``<db>-lock`` that LiteFS clients lock to take the HALT lock.
HALT_BYTE = 72

_FLOCK = struct.Struct("hhqqixxxx")  # struct flock: l_type, l_whence, l_start, l_len, l_pid


class ClientError(Exception):
    """The node answered with an error, or could not be reached."""


def primary(mount_dir: str) -> str | None:
    """Hostname of the primary, or ``None`` when this node is the primary.

    Raises :class:`ClientError` if ``mount_dir`` is not a LiteFS mount.
    """
    if not os.path.exists(os.path.join(mount_dir, ".lag")):
        raise ClientError(f"{mount_dir!r} is not a LiteFS mount (no .lag file)")
    try:
        with open(os.path.join(mount_dir, ".primary")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def is_primary(mount_dir: str) -> bool:
    """True when the node that serves ``mount_dir`` is the primary."""
    return primary(mount_dir) is None


def info(url: str = DEFAULT_URL, *, timeout: float = 10.0) -> dict[str, Any]:
    """The node's ``GET /info`` document (``isPrimary``, ``candidate``, ``primary.hostname`` ...)."""
    try:
        resp = httpx.get(url.rstrip("/") + "/info", timeout=timeout)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach node at {url}: {exc}") from exc
    if resp.status_code != 200:
        raise ClientError(f"GET {url}/info: {resp.status_code} {resp.text.strip()}")
    return resp.json()


def promote(url: str = DEFAULT_URL, *, timeout: float = 30.0) -> None:
    """Ask the node at ``url`` to become primary (``POST /promote``)."""
    try:
        resp = httpx.post(url.rstrip("/") + "/promote", timeout=timeout)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach node at {url}: {exc}") from exc
    if resp.status_code != 200:
        raise ClientError(f"promote: {resp.status_code} {resp.text.strip()}")


def events(url: str = DEFAULT_URL) -> Iterator[dict[str, Any]]:
    """Follow the node's ``/events`` stream; yields one dict per event, ``init`` first."""
    try:
        with httpx.stream("GET", url.rstrip("/") + "/events", timeout=httpx.Timeout(10.0, read=None)) as resp:
            if resp.status_code != 200:
                raise ClientError(f"GET {url}/events: {resp.status_code}")
            for line in resp.iter_lines():
                if line.strip():
                    yield json.loads(line)
    except httpx.HTTPError as exc:
        raise ClientError(f"event stream from {url}: {exc}") from exc


def lock_file_path(db_path: str) -> str:
    """``<db>-lock`` next to a database in a LiteFS mount."""
    return db_path + "-lock"


def open_halt_lock(db_path: str) -> int:
    """Take the HALT lock of the database at ``db_path``; return the descriptor that holds it.

    Opening ``<db>-lock`` for writing takes the lock (on the primary it is a no-op); the lock is
    held until the last descriptor of that open file is closed, also when the process dies. The
    byte-72 lock LiteFS's own clients take is taken too (litefs-py does not need it; a LiteFS node
    does). Raises :class:`ClientError` with LiteFS's messages.
    """
    if not os.path.exists(db_path):
        raise ClientError(f"database does not exist: {db_path}")
    path = lock_file_path(db_path)
    if not os.path.exists(path):
        raise ClientError(
            f"lock file not available, are you sure {os.path.dirname(os.path.abspath(db_path))!r} "
            "is a LiteFS mount?"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise ClientError(f"cannot acquire halt lock on {db_path}: {exc.strerror or exc}") from exc
    try:
        while True:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, HALT_BYTE, 1, 0))
                break
            except InterruptedError:
                continue
    except OSError as exc:
        os.close(fd)
        raise ClientError(f"cannot acquire halt lock on {db_path}: {exc}") from exc
    return fd


def close_halt_lock(fd: int) -> None:
    """Release a HALT lock taken with :func:`open_halt_lock`."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, HALT_BYTE, 1, 0))
    except OSError:
        pass
    os.close(fd)


@contextmanager
def halt(db_path: str) -> Iterator[int]:
    """Hold the HALT lock of a database for the block: on a replica the database is writable and
    every commit goes to the primary first. Yields the lock file's descriptor."""
    fd = open_halt_lock(db_path)
    try:
        yield fd
    finally:
        close_halt_lock(fd)
