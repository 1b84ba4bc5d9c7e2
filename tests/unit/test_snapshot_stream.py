"""Snapshot streaming: the primary's piecewise encoder and the replica's verify-while-receiving."""

from __future__ import annotations

import io
import os
import random
import sqlite3

import pytest

from litefs.ltx import Decoder, LTXError, Pos
from litefs.replication.primary import SEND_SIZE, SnapshotEncoder, SnapshotError
from litefs.replication.replica import _StreamVerifier
from litefs.store.database import Database, StoreError


def make_db(tmp_path, rows: int = 3000) -> Database:
    src = str(tmp_path / "src.db")
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.executemany("INSERT INTO t VALUES (randomblob(900))", [()] * rows)
    conn.commit()
    conn.close()
    db = Database("db", str(tmp_path / "dbs" / "db"))
    db.import_database(src)
    return db


def encode_all(db: Database) -> tuple[bytes, list[int]]:
    snap = SnapshotEncoder(db, node_id=7, compress=True)
    snap.start()
    chunks = []
    while chunk := snap.next_chunk():
        chunks.append(chunk)
    return b"".join(chunks), [len(c) for c in chunks]


def test_snapshot_encoder_pieces_decode_to_the_database(tmp_path) -> None:
    db = make_db(tmp_path)
    data, sizes = encode_all(db)
    assert len(sizes) > 1 and max(sizes) < SEND_SIZE + (1 << 17)  # about one batch in memory at a time
    dec = Decoder(io.BytesIO(data))
    pages = dict(dec.pages())
    assert dec.post_apply_pos == db.pos
    assert dec.header.min_txid == 1 and dec.header.max_txid == db.pos.txid and dec.header.node_id == 7
    assert len(pages) == db.page_count
    assert all(pages[p] == db.read_logical_page(p) for p in (1, 2, db.page_count))


def test_snapshot_encoder_refuses_to_finish_on_a_checksum_mismatch(tmp_path) -> None:
    db = make_db(tmp_path, rows=50)
    db.pos = Pos(db.pos.txid, db.pos.post_apply_checksum ^ 1)  # the pages no longer match the position
    snap = SnapshotEncoder(db, node_id=1, compress=False)
    snap.start()
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        while snap.next_chunk():
            pass


def feed(data: bytes, seed: int) -> _StreamVerifier:
    v = _StreamVerifier()
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 100, 4096, 65535])
        v.feed(data[pos : pos + n])
        pos += n
    v.close()
    v.join()
    return v


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stream_verifier_accepts_a_snapshot_in_any_chunking(tmp_path, seed: int) -> None:
    db = make_db(tmp_path, rows=400)
    data, _ = encode_all(db)
    v = feed(data, seed)
    assert v.error is None
    assert v.header is not None and v.header.is_snapshot


@pytest.mark.parametrize("where", ["middle", "end", "truncated"])
def test_stream_verifier_rejects_a_damaged_snapshot(tmp_path, where: str) -> None:
    db = make_db(tmp_path, rows=400)
    data, _ = encode_all(db)
    damaged = bytearray(data)
    if where == "truncated":
        damaged = damaged[: len(damaged) // 2]
    else:
        damaged[len(damaged) // 2 if where == "middle" else -12] ^= 0x40
    v = feed(bytes(damaged), 1)
    assert isinstance(v.error, LTXError)


def test_snapshot_view_read_pages_lays_wal_pages_over_the_file(tmp_path) -> None:
    db = make_db(tmp_path, rows=50)
    view = db.snapshot_view()
    size = view.page_size
    n = min(6, view.page_count)
    assert view.read_pages(1, n) == b"".join(view.read_page(p) for p in range(1, n + 1))
    # Page 2 from a (fake) WAL frame: read_pages must take it from there, like read_page.
    wal = tmp_path / "fake-wal"
    wal.write_bytes(b"x" * 100 + b"\xab" * size)
    fd = os.open(wal, os.O_RDONLY)
    try:
        view.wal_pages, view.wal_fd = {2: 100}, fd
        got = view.read_pages(1, n)
        assert got[size : 2 * size] == b"\xab" * size
        assert got == b"".join(view.read_page(p) for p in range(1, n + 1))
        # WAL mode: pages past the end of the database file that exist only as WAL frames.
        end = view.page_count
        with pytest.raises(StoreError, match=f"page {end + 1} missing"):
            view.read_pages(end, 2)
        view.wal_pages = {end + 1: 100}
        assert view.read_pages(end, 2) == view.read_page(end) + b"\xab" * size
    finally:
        os.close(fd)
