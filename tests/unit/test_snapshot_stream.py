"""Snapshot streaming: the primary's piecewise encoder, the replica's build-while-receiving and install."""

from __future__ import annotations

import fcntl
import io
import os
import random
import sqlite3

import pytest

from litefs.ltx import CHECKSUM_FLAG, Decoder, Encoder, LTXError, Pos, page_checksum
from litefs.replication.primary import SEND_SIZE, SnapshotEncoder, SnapshotError
from litefs.replication.protocol import encode_chunk
from litefs.replication.replica import _ChunkWorker
from litefs.store import FileKind
from litefs.store.database import BuiltSnapshot, Database, RecoveryError, StoreError, build_snapshot_file


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


def feed(data: bytes, seed: int, shadow: str) -> tuple[_ChunkWorker, list[BuiltSnapshot]]:
    """Hand ``data`` in random chunk sizes to a builder thread writing the pages to ``shadow``."""
    built: list[BuiltSnapshot] = []
    w = _ChunkWorker("test-build", lambda reader: built.append(build_snapshot_file(Decoder(reader), shadow)))
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 100, 4096, 65535])
        w.feed(data[pos : pos + n])
        pos += n
    w.close()
    w.join()
    return w, built


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_builder_writes_the_database_in_any_chunking(tmp_path, seed: int) -> None:
    db = make_db(tmp_path, rows=400)
    data, _ = encode_all(db)
    shadow = str(tmp_path / "shadow.tmp")
    w, built = feed(data, seed, shadow)
    assert w.error is None
    assert built[0].header.is_snapshot and built[0].post_apply_checksum == db.pos.post_apply_checksum
    assert built[0].tracker.checksum == db.pos.post_apply_checksum
    with open(shadow, "rb") as a, open(db.db_path, "rb") as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("where", ["middle", "end", "truncated"])
def test_snapshot_builder_rejects_a_damaged_snapshot_and_leaves_no_file(tmp_path, where: str) -> None:
    db = make_db(tmp_path, rows=400)
    data, _ = encode_all(db)
    damaged = bytearray(data)
    if where == "truncated":
        damaged = damaged[: len(damaged) // 2]
    else:
        damaged[len(damaged) // 2 if where == "middle" else -12] ^= 0x40
    shadow = tmp_path / "shadow.tmp"
    w, built = feed(bytes(damaged), 1, str(shadow))
    assert isinstance(w.error, LTXError) and not built
    assert not shadow.exists()


def test_install_snapshot_points_open_descriptors_at_the_new_file(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = make_db(tmp_path / "a", rows=300)
    data, _ = encode_all(source)
    target = make_db(tmp_path / "b", rows=20)  # an older, smaller database under the same name
    reader = target.open_file(FileKind.DATABASE, os.O_RDONLY)
    writer = target.open_file(FileKind.DATABASE, os.O_RDWR)
    try:
        shadow = os.path.join(target.ltx_dir, ".incoming-x.db.tmp")
        w, built = feed(data, 1, shadow)
        assert w.error is None
        result = target.install_snapshot(built[0], notify=False)
        assert result.kind == "snapshot" and target.pos == source.pos and result.ltx_path == ""
        assert target.page_count == source.page_count and not os.path.exists(shadow)
        # No LTX file is kept for the snapshot (the older ones went): a record of its position is.
        assert target.ltx_files() == []
        assert sorted(os.listdir(target.ltx_dir)) == ["snapshot.pos"]
        with open(source.db_path, "rb") as f:
            want = f.read()
        size = len(want)
        assert os.pread(reader, size + 1, 0) == want  # the descriptor opened before now reads the new file
        assert os.fstat(writer).st_size == size
        assert fcntl.fcntl(reader, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY  # access mode kept
        assert fcntl.fcntl(writer, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        target.verify()  # position matches the content on disk
    finally:
        target.close_file(reader)
        target.close_file(writer)
    assert not target._file_fds


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


def _records(view, first: int, count: int) -> bytes:
    out = memoryview(bytearray(count * (view.page_size + 4)))
    view.read_records_into(first, count, out)
    return bytes(out)


def _as_records(first: int, pages: bytes, size: int) -> bytes:
    return b"".join(
        (first + i).to_bytes(4, "big") + pages[i * size : (i + 1) * size] for i in range(len(pages) // size)
    )


def test_snapshot_view_read_records_into_matches_read_pages(tmp_path) -> None:
    db = make_db(tmp_path, rows=50)
    view = db.snapshot_view()
    size = view.page_size
    n = min(6, view.page_count)
    assert _records(view, 1, n) == _as_records(1, view.read_pages(1, n), size)
    with pytest.raises(ValueError, match="do not hold"):
        view.read_records_into(1, 2, memoryview(bytearray(size)))
    # WAL pages laid over the file's, and pages only the WAL has past the file's end.
    wal = tmp_path / "fake-wal"
    wal.write_bytes(b"x" * 100 + b"\xab" * size)
    fd = os.open(wal, os.O_RDONLY)
    try:
        view.wal_pages, view.wal_fd = {2: 100}, fd
        assert _records(view, 1, n) == _as_records(1, view.read_pages(1, n), size)
        end = view.page_count
        with pytest.raises(StoreError, match=f"page {end + 1} missing"):
            _records(view, end, 2)
        view.wal_pages = {end + 1: 100}
        assert _records(view, end, 2) == _as_records(end, view.read_page(end) + b"\xab" * size, size)
    finally:
        os.close(fd)


def test_the_snapshot_encoder_gives_the_same_bytes_piece_by_piece_and_on_the_wire(tmp_path) -> None:
    db = make_db(tmp_path, rows=3000)
    whole, _ = encode_all(db)
    snap = SnapshotEncoder(db, node_id=7, compress=True)
    snap.start()
    wire = []
    while piece := snap.next_wire_chunks():
        wire.append(piece)
    assert b"".join(wire) == encode_chunk(whole) or _decoded_equal(b"".join(wire), whole)


def _decoded_equal(wire: bytes, whole: bytes) -> bool:
    """The wire bytes carry the same LTX pages (timestamps differ between two encodings)."""
    parsed, pos = [], 0
    while pos < len(wire):
        n = int.from_bytes(wire[pos : pos + 2], "big")
        parsed.append(wire[pos + 2 : pos + 2 + n])
        pos += 2 + n
    a, b = Decoder(io.BytesIO(b"".join(parsed))), Decoder(io.BytesIO(whole))
    return list(a.pages()) == list(b.pages()) and a.post_apply_pos == b.post_apply_pos


def _installing(tmp_path) -> tuple[Database, Database, BuiltSnapshot]:
    """A replica's database (20 rows, three LTX files) and a built snapshot of another (300 rows)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = make_db(tmp_path / "a", rows=300)
    data, _ = encode_all(source)
    target = make_db(tmp_path / "b", rows=20)
    for _ in range(2):
        target.apply_ltx_file(_next_ltx(target))
    shadow = os.path.join(target.ltx_dir, ".incoming-x.db.tmp")
    w, built = feed(data, 1, shadow)
    assert w.error is None
    return source, target, built[0]


def _next_ltx(db: Database, pgno: int = 1, *, change: bool = False) -> str:
    """The next TXID's LTX file for ``db``: page ``pgno`` rewritten, with one byte flipped if
    ``change`` (the file is written, not applied)."""
    page = bytearray(db.read_logical_page(pgno))
    if change:
        page[-pgno] ^= 0xFF  # a different byte per page: equal changes would cancel out in the XOR
    pre = db.pos.post_apply_checksum
    post = CHECKSUM_FLAG | (
        (pre ^ page_checksum(pgno, db.read_logical_page(pgno)) ^ page_checksum(pgno, page)) & ~CHECKSUM_FLAG
    )
    header = db.next_tx_header(db.page_size, db.page_count, txid=db.pos.txid + 1)
    path = db.ltx_path(header.min_txid, header.max_txid)
    with open(path, "wb") as f:
        enc = Encoder(f, header)
        enc.encode_page(pgno, bytes(page))
        enc.finish(post)
    return path


@pytest.mark.parametrize(
    "crash", ["pending record", "database rename", "history removal", "record rename", None]
)
def test_a_snapshot_install_interrupted_anywhere_recovers_the_old_or_the_new_state(
    tmp_path, monkeypatch, crash: str | None
) -> None:
    source, target, built = _installing(tmp_path)
    old_pos, old_files = target.pos, target.ltx_files()
    assert len(old_files) == 3
    renames, unlinks = [], []
    real_rename, real_unlink = os.rename, os.unlink

    def rename(src, dst) -> None:  # noqa: ANN001
        step = {0: "pending record", 1: "database rename", 2: "record rename"}[len(renames)]
        renames.append(step)
        if step == crash:
            raise OSError(5, f"simulated crash at {step}")
        real_rename(src, dst)

    def unlink(path) -> None:  # noqa: ANN001
        if str(path).endswith(".ltx") and crash == "history removal" and not unlinks:
            unlinks.append(path)
            raise OSError(5, "simulated crash at history removal")
        real_unlink(path)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    if crash is None:
        target.install_snapshot(built, notify=False)
    else:
        with pytest.raises(OSError, match="simulated crash"):
            target.install_snapshot(built, notify=False)
    monkeypatch.undo()
    target.close()

    restarted = Database("db", target.path)
    restarted.recover()
    restarted.verify()  # the position is the content's checksum, whichever state it is
    names = sorted(os.listdir(restarted.ltx_dir))
    assert not [n for n in names if n.endswith(".tmp") or n == "snapshot.pending"]
    if crash in ("pending record", "database rename"):
        assert restarted.pos == old_pos  # the old state, its history intact
        assert restarted.ltx_files() == old_files and "snapshot.pos" not in names
    else:
        assert restarted.pos == source.pos  # the snapshot, installed
        assert names == ["snapshot.pos"]
        with open(source.db_path, "rb") as a, open(restarted.db_path, "rb") as b:
            assert a.read() == b.read()


def test_a_restarted_replica_resumes_from_its_snapshot_record_and_the_files_after_it(tmp_path) -> None:
    source, target, built = _installing(tmp_path)
    target.install_snapshot(built, notify=False)
    target.close()
    restarted = Database("db", target.path)
    restarted.recover()
    assert restarted.pos == source.pos and restarted.page_count == source.page_count
    # Transactions applied after the snapshot: their newest LTX file decides from then on.
    restarted.apply_ltx_file(_next_ltx(restarted))
    restarted.apply_ltx_file(_next_ltx(restarted))
    after = restarted.pos
    assert after.txid == source.pos.txid + 2
    restarted.close()
    again = Database("db", target.path)
    again.recover()
    assert again.pos == after
    again.verify()


def test_an_ltx_file_older_than_the_snapshot_record_is_removed_at_startup(tmp_path) -> None:
    # Left over from the replaced history (say, written late by a background writer): it must not
    # be taken for the newest state.
    source, target, built = _installing(tmp_path)
    first_old = target.ltx_files()[0][2]
    with open(first_old, "rb") as f:
        leftover = f.read()
    target.install_snapshot(built, notify=False)
    with open(first_old, "wb") as f:
        f.write(leftover)
    target.close()
    restarted = Database("db", target.path)
    restarted.recover()
    assert restarted.pos == source.pos and restarted.ltx_files() == []
    restarted.verify()


def test_transactions_after_a_snapshot_are_reapplied_when_the_content_fell_back_to_it(tmp_path) -> None:
    # A power cut may lose the writes of applied transactions while their LTX files survive: the
    # content is then the snapshot's state, and every file after it is applied again.
    source, target, built = _installing(tmp_path)
    target.install_snapshot(built, notify=False)
    with open(target.db_path, "rb") as f:
        snapshot_content = f.read()
    target.apply_ltx_file(_next_ltx(target, 2, change=True))
    target.apply_ltx_file(_next_ltx(target, 3, change=True))
    after = target.pos
    target.close()
    with open(target.db_path, "wb") as f:
        f.write(snapshot_content)
    restarted = Database("db", target.path)
    restarted.recover()
    restarted.verify()
    assert restarted.pos == after and after.txid == source.pos.txid + 2


def _installed_then_changed(tmp_path, which: str, offset: int, data: bytes) -> tuple[Database, str]:
    """A replica database after a snapshot install, with ``data`` written at ``offset`` into its
    ``which`` file ("database" or "record") while the node was down; and that file's path."""
    _, target, built = _installing(tmp_path)
    target.install_snapshot(built, notify=False)
    target.close()
    path = target.db_path if which == "database" else target.snapshot_record_path
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return Database("db", target.path), path


def test_a_snapshot_record_that_does_not_match_the_database_file_stops_recovery(tmp_path) -> None:
    restarted, _ = _installed_then_changed(tmp_path, "database", 5000, b"changed behind litefs")
    with pytest.raises(RecoveryError, match=r"is not the snapshot at TXID .* recorded in .*snapshot\.pos"):
        restarted.recover()


def test_an_unreadable_snapshot_record_is_dropped_with_a_warning(tmp_path, caplog) -> None:
    restarted, record = _installed_then_changed(tmp_path, "record", 110, b"\xff")
    restarted.recover()  # the position is unknown now: a replica gets a new snapshot
    assert restarted.pos == Pos(0, 0)
    assert "checksum mismatch (torn or foreign file)" in caplog.text
    assert not os.path.exists(record)


def _db_of(tmp_path, value_sql: str, rows: int = 400) -> Database:
    src = str(tmp_path / "src.db")
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.executemany(f"INSERT INTO t VALUES ({value_sql})", [()] * rows)
    conn.commit()
    conn.close()
    db = Database("db", str(tmp_path / "dbs" / "db"))
    db.import_database(src)
    return db


@pytest.mark.parametrize(
    ("value_sql", "compressed"),
    [("randomblob(3800)", False), ("printf('%.3800c', 'x')", True)],  # random pages, text pages
)
def test_snapshot_is_compressed_only_when_its_pages_shrink(
    tmp_path, value_sql: str, compressed: bool
) -> None:
    db = _db_of(tmp_path, value_sql)
    data, _ = encode_all(db)  # asks for LZ4
    dec = Decoder(io.BytesIO(data))
    assert dec.header.compressed is compressed
    pages = dict(dec.pages())
    assert dec.post_apply_pos == db.pos and len(pages) == db.page_count


class _GapDecoder:
    """A unit-test double for Decoder.snapshot_runs: a snapshot whose runs skip one page, as real
    snapshots skip SQLite's lock page (which only databases past 1 GiB reach; the real thing is
    tests/fuse/test_large_db.py)."""

    def __init__(self, page_size: int, runs: list[tuple[int, list[bytes]]], commit: int) -> None:
        from litefs.ltx import Header, Trailer
        from litefs.ltx.checksum import page_checksum

        self.header = Header(
            flags=0,
            page_size=page_size,
            commit=commit,
            min_txid=1,
            max_txid=1,
            timestamp=0,
            pre_apply_checksum=0,
            node_id=1,
        )
        self._runs = [
            (first, pages, [page_checksum(first + i, p) for i, p in enumerate(pages)])
            for first, pages in runs
        ]
        post = 0
        for _, _, sums in self._runs:
            for c in sums:
                post ^= c
        self.trailer = Trailer(post_apply_checksum=post | (1 << 63), file_checksum=0)

    def snapshot_runs(self, batch: int = 256):
        for first, pages, sums in self._runs:
            yield first, [memoryview(p) for p in pages], sums


def test_a_page_skipped_by_the_snapshot_is_written_as_zeros_and_the_size_is_exact(
    tmp_path, monkeypatch
) -> None:
    from litefs.ltx import tracker

    monkeypatch.setattr(tracker, "lock_pgno", lambda page_size: 3)  # page 3 plays the lock page
    size = 4096
    pages = {p: bytes([p]) * size for p in (1, 2, 4, 5)}
    dec = _GapDecoder(size, [(1, [pages[1], pages[2]]), (4, [pages[4], pages[5]])], commit=5)
    path = str(tmp_path / "shadow")
    built = build_snapshot_file(dec, path)  # type: ignore[arg-type]
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == 5 * size
    assert data == pages[1] + pages[2] + bytes(size) + pages[4] + pages[5]
    assert built.path == path
