"""Events the core publishes to plugins and to the ``/events`` stream.

These are plain frozen dataclasses so plugins can keep them, compare them and serialise them without
touching core internals. ``to_json()`` gives LiteFS v0.5.14's event-stream body for each.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any


def _ms_timestamp(ms: int) -> str:
    """RFC 3339 UTC with millisecond precision, as LiteFS writes event timestamps."""
    when = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class TxEvent:
    """A transaction became part of a database: a local commit on the primary, or an LTX file
    applied on a replica (including imports, drops and snapshots)."""

    db: str
    txid: int
    post_apply_checksum: int
    page_size: int
    commit: int
    """Database size in pages after the transaction (0 when the database was dropped)."""
    timestamp_ms: int
    ltx_path: str
    """Path of the LTX file that holds the transaction (it may later be removed by retention)."""
    local: bool = True
    """True for a commit made on this node, False for one applied from the primary."""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "tx",
            "db": self.db,
            "data": {
                "txID": f"{self.txid:016x}",
                "postApplyChecksum": f"{self.post_apply_checksum:016x}",
                "pageSize": self.page_size,
                "commit": self.commit,
                "timestamp": _ms_timestamp(self.timestamp_ms),
            },
        }


@dataclass(frozen=True)
class PrimaryChangeEvent:
    """The lease or the known primary changed."""

    is_primary: bool
    hostname: str = ""
    """The primary's ``lease.hostname`` (empty when no primary is known)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"isPrimary": self.is_primary}
        if self.hostname:
            data["hostname"] = self.hostname
        return {"type": "primaryChange", "data": data}


@dataclass(frozen=True)
class HaltEvent:
    """A HALT lock was taken or released on this node.

    Fired on the primary when it grants or drops a replica's lock (``holder`` is that replica's
    node ID), and on the replica that holds it (``holder`` is its own node ID).
    """

    db: str
    held: bool
    lock_id: int
    holder: int
    """Node ID of the replica that holds (or held) the lock."""


def init_event_json(is_primary: bool, hostname: str) -> dict[str, Any]:
    """The first object of every ``/events`` stream."""
    data: dict[str, Any] = {"isPrimary": is_primary}
    if hostname:
        data["hostname"] = hostname
    return {"type": "init", "data": data}
