"""What the primary reports of a connected replica: position as last sent, lag in TXIDs and seconds."""

from __future__ import annotations

from types import SimpleNamespace

from litefs.events import TxEvent
from litefs.ltx import Pos
from litefs.replication.primary import ReplicaStream


def stream(hostname: str = "") -> ReplicaStream:
    node = SimpleNamespace(store=SimpleNamespace(commit_listeners=[]), streams={})
    rs = ReplicaStream(node, "00000000000000ab")  # type: ignore[arg-type]
    rs.hostname = hostname
    return rs


def commit(txid: int, ts_ms: int) -> TxEvent:
    return TxEvent("db", txid, 0x1234, 4096, 2, ts_ms, f"/{txid}.ltx")


def test_in_sync_replica_has_no_lag() -> None:
    rs = stream("r1")
    assert rs.position("db", Pos(3, 7), now_ms=10_000) is None  # nothing sent for this db yet
    rs.positions["db"] = Pos(3, 7)
    pos = rs.position("db", Pos(3, 7), now_ms=10_000)
    assert pos is not None
    assert (pos.node_id, pos.name, pos.txid, pos.post_apply_checksum) == ("00000000000000AB", "r1", 3, 7)
    assert (pos.lag_txids, pos.lag_seconds) == (0, 0.0)


def test_lag_is_the_age_of_the_oldest_unsent_commit() -> None:
    rs = stream()
    rs.positions["db"] = Pos(3, 7)
    rs._on_commit(commit(4, 5_000))
    rs._on_commit(commit(5, 6_000))  # the oldest unsent one counts, not the newest
    pos = rs.position("db", Pos(5, 9), now_ms=8_500)
    assert pos is not None
    assert (pos.name, pos.lag_txids, pos.lag_seconds) == ("00000000000000AB", 2, 3.5)


def test_transactions_older_than_the_stream_count_from_its_start() -> None:
    rs = stream()
    rs.connected_ms = 1_000
    rs.positions["db"] = Pos(1, 7)
    pos = rs.position("db", Pos(4, 9), now_ms=3_000)
    assert pos is not None and (pos.lag_txids, pos.lag_seconds) == (3, 2.0)
