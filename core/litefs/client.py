"""A small client for apps and scripts running next to a litefs-py node.

Everything here is synchronous and dependency-light, so it works inside any app::

    from litefs import client

    if client.is_primary("/litefs"):
        ...
    for event in client.events():          # the node's /events stream, one dict per event
        print(event["type"], event.get("db"))

``primary()`` and ``is_primary()`` read the mount's ``.primary`` file (present only on replicas,
holding the primary's hostname), exactly as LiteFS documents for apps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_URL = "http://localhost:20202"


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
