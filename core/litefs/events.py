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


#: What made a transaction part of a database (:attr:`TxEvent.kind`).
TX_KINDS = ("commit", "drop", "import", "apply", "snapshot")
#: The kinds that happen on this node (the rest arrive from the primary).
LOCAL_TX_KINDS = frozenset({"commit", "drop", "import"})


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
    """Path of the LTX file that holds the transaction (it may later be removed by retention); empty
    for a snapshot installed on a replica, which keeps no LTX file of it (litefs.store.snaprecord)."""
    local: bool | None = None
    """True for a transaction made on this node, False for one applied from the primary. Derived
    from :attr:`kind` when not given (always a bool once the event exists)."""
    kind: str = ""
    """``commit`` (a journal or WAL commit through the mount), ``drop`` (the database was deleted),
    ``import`` (``litefs import``), ``apply`` (an LTX file from the primary) or ``snapshot`` (a
    snapshot from the primary). When only ``local`` is given: ``commit`` if true, else ``apply``.
    LiteFS counts ``commit`` and ``drop`` in ``litefs_db_commit_count``."""

    def __post_init__(self) -> None:
        kind = self.kind or ("apply" if self.local is False else "commit")
        if kind not in TX_KINDS:
            raise ValueError(f"TxEvent kind must be one of {TX_KINDS}, got {kind!r}")
        local = kind in LOCAL_TX_KINDS
        if self.local is not None and bool(self.local) != local:
            raise ValueError(
                f"TxEvent kind {kind!r} is {'' if local else 'not '}local, got local={self.local!r}"
            )
        # Frozen dataclass: fill the derived fields in place.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "local", local)

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


@dataclass(frozen=True)
class LTXSentEvent:
    """The primary sent one LTX frame to a replica on its ``/stream``."""

    db: str
    replica_id: str
    """The replica's node ID (``%016X``, from ``Litefs-Id``; "" if it sent none)."""
    replica_hostname: str
    """The replica's ``lease.hostname`` (``Litefs-Hostname``; "" for replicas that do not send it)."""
    min_txid: int
    max_txid: int
    nbytes: int
    """Size of the LTX file sent (the frame's payload, without the wire framing)."""
    snapshot: bool
    """True for a snapshot (the whole database), False for one incremental LTX file."""

    @property
    def replica(self) -> str:
        """A name for the replica: its hostname, else its node ID."""
        return self.replica_hostname or self.replica_id


@dataclass(frozen=True)
class LTXReceivedEvent:
    """A replica received, verified and applied one LTX frame from the primary."""

    db: str
    min_txid: int
    max_txid: int
    nbytes: int
    """Size of the LTX file received."""
    snapshot: bool
    primary_hostname: str


@dataclass(frozen=True)
class StreamEvent:
    """A replica opened its ``/stream`` to the primary (the primary answered 200)."""

    primary_hostname: str
    primary_url: str
    reconnect: bool
    """False for the first stream this process opened, True for every later one (after an error,
    an end of stream, or a change of primary)."""


@dataclass(frozen=True)
class LeaseRenewEvent:
    """The election loop tried to renew the held lease (every backend, the static one included)."""

    seconds: float
    """How long the attempt took (monotonic clock)."""
    ok: bool
    error: str = ""
    """Why it failed (empty when ``ok``); the lease being gone counts as a failure too."""


@dataclass(frozen=True)
class LTXReapEvent:
    """Retention (``data.retention``) removed LTX files of one database."""

    db: str
    files: int


@dataclass(frozen=True)
class ReplicaPosition:
    """What the primary knows of one connected replica for one database (positions as last *sent*:
    the stream has no acknowledgements)."""

    node_id: str
    """The replica's node ID (``%016X``)."""
    hostname: str
    """Its ``lease.hostname`` ("" if it did not send one)."""
    txid: int
    post_apply_checksum: int
    lag_txids: int
    """Primary TXID minus the replica's (0 when in sync)."""
    lag_seconds: float
    """0 when in sync; else seconds since the oldest transaction the replica lacks was committed
    (or since the stream opened, for transactions older than the stream)."""

    @property
    def name(self) -> str:
        """A name for the replica: its hostname, else its node ID."""
        return self.hostname or self.node_id
