"""WAL mode on the node: commits read from the write-ahead log, checkpoints, and startup recovery.

LiteFS sees a WAL commit when SQLite releases the WAL write lock. pyfuse3 never sees locks, so here the
commit is read from the log itself. ``-wal`` is opened direct_io, so every write arrives exactly as
SQLite issued it: a frame is a 24-byte header write followed by a page write. When a write ends a frame
whose header has a non-zero commit field (the database size after the transaction), the frames from
the last committed offset up to it are checked and accepted only if their salts and cumulative
checksums validate (:func:`~litefs.sqlite.wal.scan_wal_transactions`, the same rule SQLite's own WAL
recovery applies). Each accepted transaction becomes ``ltx/<txid>-<txid>.ltx`` -- last version of each
page, pages above the commit dropped, the WAL offset, size and salts in the header -- *before* the
write that completes it is answered, so no checkpoint can copy a transaction into the database file
before its LTX file exists.

What SQLite does that this relies on:

* Frames of the transaction being written may be overwritten in place (a page changed again after a
  cache spill), and ``walRewriteChecksums`` then rewrites the later frame headers; both happen before
  the commit frame is appended, and the commit frame is always a new frame at the end. So the first
  write that ends a frame with a commit field set finishes the transaction, and the scan sees the
  final bytes.
* A checkpoint copies committed frames into the database file (pages identical to what the LTX files
  already hold, so the position does not move), then the WAL restarts: a new 32-byte header with new
  salts at offset 0, or a truncation to 0 (``wal_checkpoint(TRUNCATE)``, ``journal_size_limit``). SQLite
  restarts only once every frame has been copied, so the overlay of committed WAL pages can be dropped
  at that point.
* Between two commits SQLite only appends frames or overwrites frames of the open transaction, so
  the node keeps a copy of the bytes written past the committed end (:attr:`WALState.tail`, at most
  ``TAIL_LIMIT`` bytes) and checks the transaction from memory instead of reading it back. The copy is
  only a cache: a transaction that does not validate from it is read again from the file.
* ``locking_mode=EXCLUSIVE`` keeps the WAL index in heap memory instead of ``-shm``. Nothing here reads
  ``-shm``: commits are taken from the WAL file, so exclusive mode works unchanged.

The logical database is the database file overlaid with the committed WAL pages; the page-checksum
tracker and the position always describe it (:meth:`WALState.read_page`).

Durability. The LTX file of a WAL commit is encoded on the commit path but written (temp file +
rename) by a child process (:mod:`litefs.store.ltxwriter`) and **not fsynced**; until it is on
disk the replication stream serves it from memory. This is safe because the WAL is SQLite's durable
log of the same transaction:

* a crash of the node process (SIGKILL) can lose only LTX files that were not written yet, and
  never their transactions: those are still in the WAL (see the next point);
* after a crash or a power loss, startup recovery (:func:`recover_wal`) rebuilds an LTX file for
  every complete, checksum-valid transaction found in the WAL past the newest LTX file -- under
  ``synchronous=FULL`` SQLite fsyncs the WAL before it reports a commit, so every acknowledged
  transaction is either in an LTX file or in the WAL;
* the only step that moves WAL content elsewhere is a checkpoint, and before the first write of a
  checkpoint reaches the database file the background writer is drained and the LTX files written
  so far are made durable (one ``syncfs``), so a transaction can never be in the database file
  without its LTX file.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from typing import TYPE_CHECKING

from litefs.libc import libc_function
from litefs.ltx import (
    ChecksumTracker,
    Header,
    LTXError,
    Pos,
    encode_ltx,
    lock_pgno,
    page_checksum,
)
from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.wal import (
    WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE,
    WALHeader,
    WALTransaction,
    scan_wal_transactions,
)
from litefs.store.fsutil import fsync_dir, write_file_atomically

if TYPE_CHECKING:
    from litefs.store.database import CommitResult, Database

log = logging.getLogger("litefs.store.wal")

#: Largest in-memory copy of uncommitted WAL frames; a bigger transaction is read back from the file.
TAIL_LIMIT = 4 << 20


class _FdFile:
    """The minimal ``BinaryIO`` the WAL scanner needs (seek + read), over a descriptor with pread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset
        return offset

    def read(self, n: int) -> bytes:
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data


class _TailFile(_FdFile):
    """``_FdFile`` that serves ``[base, base + len(tail))`` from the in-memory copy of those bytes."""

    def __init__(self, fd: int, base: int, tail: bytearray) -> None:
        super().__init__(fd)
        self._base = base
        self._tail = tail

    def read(self, n: int) -> bytes:
        rel = self._pos - self._base
        if rel >= 0 and rel + n <= len(self._tail):
            self._pos += n
            return bytes(self._tail[rel : rel + n])
        return super().read(n)


def _pread_exact(fd: int, size: int, offset: int, what: str) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise SQLiteFormatError(f"{what}: short read at offset {offset}: {len(data)} of {size} bytes")
        data += more
    return data


def read_wal_page(fd: int, page_size: int, offset: int, pgno: int) -> bytes:
    """The page data of the WAL frame at ``offset`` (see :attr:`WALState.pages`)."""
    return _pread_exact(fd, page_size, offset, f"WAL page {pgno}")


_syncfs = libc_function("syncfs", [ctypes.c_int])


class WALState:
    """What the node knows about one database's WAL: its header, the committed end and page overlay.

    ``committed_offset`` is the offset just past the last committed frame (where the next transaction
    starts) and ``committed_checksum`` the running checksum there; ``pages`` maps each page number to
    the WAL offset of the page data of its newest committed frame.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.header: WALHeader | None = None
        self.committed_offset = WAL_HEADER_SIZE
        self.committed_checksum: tuple[int, int] = (0, 0)
        self.pages: dict[int, int] = {}
        #: The bytes SQLite wrote from ``committed_offset`` on (frames of the open transaction), or
        #: None when they are not all known (then commits are read back from the file).
        self.tail: bytearray | None = bytearray()
        #: True while the ``-wal`` file exists: database writes are then checkpoints, not transactions.
        self.exists = False
        #: LTX files written since the last sync (see the module docstring).
        self.unsynced: list[str] = []
        self._read_fd: int | None = None
        #: True while SQLite fsyncs the WAL after each commit (synchronous=FULL); see store/syncproc.py.
        self.expect_sync = False
        self._commits_since_sync = 0
        self._sync_token: int | None = None
        self.commits = 0
        #: Counts WAL restarts and removals: WAL offsets in ``pages`` are only valid within one.
        self.generation = 0

    # -- state ----------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return os.path.join(self.db.path, "wal")

    def reset(self, header: WALHeader | None = None) -> None:
        """Forget the WAL content (restart, truncation, unlink): every frame is in the database file."""
        self.generation += 1
        self.header = header
        self.committed_offset = WAL_HEADER_SIZE
        self.committed_checksum = header.checksum if header is not None else (0, 0)
        self.pages.clear()
        self.tail = bytearray()
        self.db.file_generation += 1  # frames may now be overwritten (see Database.snapshot_view)

    def close(self) -> None:
        self._drop_sync()
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    def removed(self) -> None:
        """The ``-wal`` file was unlinked."""
        self.reset()
        self.close()
        self.exists = False

    def _reader_fd(self) -> int:
        if self._read_fd is None:
            self._read_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return self._read_fd

    def read_page(self, pgno: int) -> bytes | None:
        """The committed WAL version of a page, or None if the database file holds the current one."""
        off = self.pages.get(pgno)
        if off is None or self.header is None:
            return None
        return _pread_exact(self._reader_fd(), self.header.page_size, off, f"WAL page {pgno}")

    # -- writes from SQLite ---------------------------------------------------------------------

    def write(self, fd: int, offset: int, data: bytes) -> int:
        """Pass a write to ``-wal`` through; if it completes a commit frame, commit the transaction."""
        if self._sync_token is not None:
            self._drop_sync()  # it would not cover this write
        n = os.pwrite(fd, data, offset)
        self.exists = True
        if offset < WAL_HEADER_SIZE:
            self._header_written(fd)
            return n
        hdr = self.header
        if hdr is None:
            self._header_written(fd)
            hdr = self.header
            if hdr is None:
                return n
        end = offset + n
        tail = self.tail
        if tail is not None:
            rel = offset - self.committed_offset
            if 0 <= rel <= len(tail) and end - self.committed_offset <= TAIL_LIMIT:
                tail[rel : rel + n] = data if n == len(data) else data[:n]
            else:  # a gap, or a transaction too big to keep: read it back from the file
                self.tail = None
        frame_size = hdr.frame_size
        if (end - WAL_HEADER_SIZE) % frame_size:
            return n  # a frame header, or a write that does not end a frame
        frame = end - frame_size
        if frame < self.committed_offset:
            return n
        if offset <= frame and offset + 8 <= end:
            commit_field = data[frame - offset + 4 : frame - offset + 8]
        elif self.tail is not None:
            # The frame header came in an earlier write (SQLite writes it apart from the page).
            rel = frame + 4 - self.committed_offset
            commit_field = bytes(self.tail[rel : rel + 4])
        else:
            commit_field = os.pread(fd, 4, frame + 4)
        if commit_field == b"\0\0\0\0" or len(commit_field) < 4:
            return n
        if self.expect_sync and self.db.forward_ltx is None:
            self._sync_token = self.db.early_sync.submit(fd)  # SQLite's fsync follows: start it now
        self._commit_through(fd, end)
        self._commits_since_sync += 1
        if self._commits_since_sync > 1:
            self.expect_sync = False  # a commit went by without an fsync: synchronous is not FULL
        return n

    def sync(self, datasync: bool, fd: int) -> None:
        """SQLite fsyncs the WAL through ``fd``: collect the early fdatasync started at the commit
        frame if it covers the request (nothing written since), else sync now.

        A failure is fatal (CommitError: the node exits 99). The commits since the last sync are
        already LTX files, while SQLite, told the sync failed, does not publish them and writes its
        next transaction over their frames: going on would let the LTX files and the database
        diverge. A write-back error is also reported only once per open file, so a retry would
        wrongly succeed. At the restart, recovery reconciles the WAL with the LTX files.
        """
        if self._commits_since_sync:
            self.expect_sync = True
        self._commits_since_sync = 0
        token, self._sync_token = self._sync_token, None
        early = self.db.early_sync
        result = None
        if token is not None:
            if datasync:
                result = early.wait(token)
            else:
                early.forget(token)  # a full fsync also wants the metadata: do it the plain way
        failed = -result if result is not None and result < 0 else early.take_failure(fd)
        if not failed and result != 0:
            try:
                (os.fdatasync if datasync else os.fsync)(fd)
            except OSError as exc:
                failed = exc.errno or errno.EIO
        if failed:
            from litefs.store.database import CommitError

            raise CommitError(
                f"{self.db.name}: syncing the WAL failed: {os.strerror(failed)}; stopping so that "
                "recovery at the restart reconciles the WAL with the LTX files"
            )

    def _drop_sync(self) -> None:
        token, self._sync_token = self._sync_token, None
        if token is not None:
            self.db.early_sync.forget(token)

    def _header_written(self, fd: int) -> None:
        """A write touched the WAL header: a new WAL generation starts (or the header is torn)."""
        raw = os.pread(fd, WAL_HEADER_SIZE, 0)
        try:
            hdr = WALHeader.parse(raw) if len(raw) == WAL_HEADER_SIZE else None
        except SQLiteFormatError:
            hdr = None
        if hdr is None:
            self.reset()
            return
        if self.pages:
            log.debug("%s: WAL restart (salts %08x/%08x)", self.db.name, hdr.salt1, hdr.salt2)
        self.reset(hdr)

    def truncated(self, size: int) -> None:
        """``-wal`` truncated: to 0 after a TRUNCATE checkpoint, or trimmed to ``journal_size_limit``."""
        self._drop_sync()
        if size < self.committed_offset:
            self.reset()  # SQLite truncates only a WAL whose frames are all in the database file
        elif self.tail is not None:
            del self.tail[size - self.committed_offset :]

    def _commit_through(self, fd: int, end: int) -> None:
        hdr = self.header
        assert hdr is not None
        base = self.committed_offset
        source: _FdFile = _FdFile(fd)
        txns: list[WALTransaction] = []
        if self.tail is not None and len(self.tail) == end - base:
            source = _TailFile(fd, base, self.tail)
            txns = self._scan(source, hdr, end)
            if not txns or txns[-1].end_offset != end:
                source = _FdFile(fd)  # the copy may be stale: the file decides
                txns = []
        if not txns:
            txns = self._scan(source, hdr, end)
        if not txns or txns[-1].end_offset != end:
            # SQLite's recovery would not accept this frame either: it is not a commit.
            log.warning(
                "%s: WAL commit frame ending at offset %d does not validate from offset %d: no LTX",
                self.db.name,
                end,
                base,
            )
            return
        from litefs.store.database import CommitError, HaltForwardError

        try:
            for txn in txns:
                commit_wal_transaction(self.db, fd, hdr, txn, durable=False, source=source)
            if self.tail is None:
                self.tail = bytearray()  # SQLite's next write starts at the committed end (``end``)
        except (CommitError, HaltForwardError):
            # A refused forward (remote HALT lock gone) is not fatal, but the transaction must not
            # be revived either: SQLite sees the I/O error and never counts it as committed.
            # The node exits (99) and SQLite sees an I/O error: make sure recovery does not revive the
            # transaction from the WAL by breaking its commit frame's checksum.
            os.pwrite(fd, bytes(WAL_FRAME_HEADER_SIZE), end - hdr.frame_size)
            self._drop_sync()
            self.tail = None
            raise

    def _scan(self, source: _FdFile, hdr: WALHeader, end: int) -> list[WALTransaction]:
        return scan_wal_transactions(
            source,
            header=hdr,
            start_offset=self.committed_offset,
            start_checksum=self.committed_checksum,
            end_offset=end,
        )

    def accept(self, txn: WALTransaction) -> None:
        """Advance the committed end past a transaction whose LTX file exists."""
        if self.tail is not None:
            del self.tail[: txn.end_offset - self.committed_offset]
        self.committed_offset = txn.end_offset
        self.committed_checksum = txn.end_checksum
        self.pages.update(txn.pages)

    # -- checkpoints ----------------------------------------------------------------------------

    def before_checkpoint_write(self) -> None:
        """The database file is about to receive WAL pages: make every LTX file written so far durable."""
        if not self.unsynced:
            return
        self.db.flush_ltx()
        if self.db._fsync:
            sync_paths(self.db.ltx_dir, self.unsynced)
        self.unsynced.clear()


def sync_paths(directory: str, paths: list[str]) -> None:
    """Make files in ``directory`` durable: one ``syncfs`` where available, else fsync each and the dir."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs is not None and _syncfs(dfd) == 0:
            return
        for p in paths:
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # compacted or removed by retention since
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _write_ltx(
    db: Database, header: Header, pages: list[tuple[int, bytes]], post: int, durable: bool
) -> tuple[str, int]:
    """Write ``ltx/<txid>-<txid>.ltx`` via a temp file and rename; fsync only when ``durable``.

    A non-durable file goes to the background writer when the database has one. Under a remote HALT
    lock the encoded file goes to the primary first (``db.forward_ltx``) and is written here.
    """
    path = db.ltx_path(header.min_txid, header.max_txid)
    data = encode_ltx(header, pages, post)
    size = len(data)
    if db.forward_ltx is not None:
        db.forward_ltx(data)
    elif not durable and db.ltx_writer is not None:
        db.ltx_writer.submit(path, data)
        return path, size
    # One write from memory: the file is small, and a Python file object costs more than it saves.
    write_file_atomically(path, data, datasync=durable and db._fsync)
    return path, size


def commit_wal_transaction(
    db: Database,
    fd: int,
    hdr: WALHeader,
    txn: WALTransaction,
    *,
    durable: bool,
    source: _FdFile | None = None,
) -> CommitResult:
    """Turn one validated WAL transaction into the next LTX file and move the position.

    ``fd`` reads the WAL (``source``, if given, is what the transaction was validated from). Raises CommitError (fatal: SQLite already considers the transaction
    committed) if the LTX file cannot be written.
    """
    from litefs.store.database import CommitError, CommitResult, HaltForwardError

    started = time.perf_counter()
    page_size = hdr.page_size
    commit = txn.commit
    src = source if source is not None else _FdFile(fd)

    def wal_page(pgno: int) -> bytes:
        src.seek(new[pgno])
        data = src.read(page_size)
        if len(data) != page_size:
            data = _pread_exact(fd, page_size, new[pgno], f"WAL page {pgno}")
        return data

    wal = db.wal
    # A forward refused under a HALT lock leaves the tracker as it was (see Database._commit).
    saved = db.tracker.copy() if db.forward_ltx is not None and db.tracker is not None else None
    try:
        if db.tracker is None or db.tracker.page_size != page_size:
            db.tracker = ChecksumTracker(page_size)
            db.page_count = 0
        db.page_size = page_size
        tracker = db.tracker
        txid = db.pos.txid + 1
        lock = lock_pgno(page_size)
        new = {p: off for p, off in txn.pages.items() if p <= commit and p != lock}
        pages: list[tuple[int, bytes]] = []
        if txid == 1 or db.pos.txid == 0:
            # The first LTX file must hold the whole database (a snapshot).
            for pgno in range(1, commit + 1):
                if pgno == lock:
                    continue
                if pgno in new:
                    data = wal_page(pgno)
                else:
                    data = db.read_logical_page(pgno)
                pages.append((pgno, data))
        else:
            pages = [(pgno, wal_page(pgno)) for pgno in sorted(new)]
        for pgno, data in pages:
            tracker.set_page_checksum(pgno, page_checksum(pgno, data))
        # Pages cut off by a shrink: the tracker drops them; pages between the old end and the commit
        # that the transaction did not write cannot exist (SQLite writes every new page).
        tracker.truncate(commit)
        post = tracker.checksum
        header = db.next_tx_header(
            page_size,
            commit,
            wal_offset=txn.start_offset,
            wal_size=txn.end_offset - txn.start_offset,
            wal_salt1=hdr.salt1,
            wal_salt2=hdr.salt2,
        )
        timestamp_ms = header.timestamp
        path, size = _write_ltx(db, header, pages, post, durable)
    except (OSError, LTXError, SQLiteFormatError) as exc:
        raise CommitError(f"commit wal: {db.name}: {exc}") from exc
    except HaltForwardError:
        if saved is not None:
            db.tracker = saved
        raise
    if not durable:
        wal.unsynced.append(path)
    wal.accept(txn)
    wal.commits += 1
    db.pos = Pos(txid, post)
    db.page_size = page_size
    db.page_count = commit
    db.timestamp_ms = timestamp_ms
    db.stats.commits += 1
    db.stats.ltx_bytes += size
    db.stats.pages_written += len(pages)
    db.stats.commit_seconds += time.perf_counter() - started
    if db.strict_verify:
        db.verify()
    result = CommitResult(txid, post, page_size, commit, timestamp_ms, path)
    if db._on_commit is not None:
        db._on_commit(db, result)
    return result


# -- startup recovery ---------------------------------------------------------------------------


class WALRecovery:
    """The two halves of WAL recovery at startup (LiteFS §4.10 steps 4-5, going further).

    :meth:`prepare` runs before the database header is read: it scans the WAL, splits its committed
    transactions into those the newest LTX file already covers and the new ones, and copies the covered
    pages into the database file, so the file holds exactly the newest LTX file's state. :meth:`finish`
    runs after the newest LTX file was re-applied and verified: it writes an LTX file for every new
    transaction (durably), copies their pages into the database file as well, and removes the WAL.
    Frames that do not validate are dropped with it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.header: WALHeader | None = None
        self.new: list[WALTransaction] = []
        self._fd: int | None = None

    def prepare(self, last: Header | None) -> None:
        db = self.db
        path = db.wal.path
        if not os.path.exists(path):
            return
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        f = _FdFile(self._fd)
        raw = os.pread(self._fd, WAL_HEADER_SIZE, 0)
        try:
            hdr = WALHeader.parse(raw) if len(raw) == WAL_HEADER_SIZE else None
        except SQLiteFormatError as exc:
            log.warning("%s: ignoring WAL with an invalid header: %s", db.name, exc)
            hdr = None
        if hdr is None:
            return
        txns = scan_wal_transactions(f, header=hdr)
        self.header = hdr
        covered: list[WALTransaction] = []
        if last is not None and last.wal_size and (last.wal_salt1, last.wal_salt2) == hdr.salts:
            ltx_end = last.wal_offset + last.wal_size
            covered = [t for t in txns if t.end_offset <= ltx_end]
            self.new = [t for t in txns if t.end_offset > ltx_end]
        else:
            self.new = txns
        if covered:
            self._copy_into_database(hdr, covered)
        if self.new:
            log.info(
                "%s: WAL holds %d committed transaction(s) past the newest LTX file: rebuilding them",
                db.name,
                len(self.new),
            )

    def _copy_into_database(self, hdr: WALHeader, txns: list[WALTransaction]) -> None:
        """Checkpoint: the newest version of every page of txns into the database file, then its size."""
        assert self._fd is not None
        pages: dict[int, int] = {}
        for t in txns:
            pages.update(t.pages)
        commit = txns[-1].commit
        ps = hdr.page_size
        with open(self.db.db_path, "r+b" if os.path.exists(self.db.db_path) else "w+b") as df:
            for pgno in sorted(pages):
                if pgno > commit:
                    continue
                df.seek((pgno - 1) * ps)
                df.write(_pread_exact(self._fd, ps, pages[pgno], f"WAL page {pgno}"))
            df.truncate(commit * ps)
            df.flush()
            os.fsync(df.fileno())

    def finish(self) -> None:
        db = self.db
        wal = db.wal
        try:
            if self.header is not None and self._fd is not None and self.new:
                # The overlay lets strict-verify and snapshots of the first LTX file read the new pages.
                wal.reset(self.header)
                for txn in self.new:
                    commit_wal_transaction(db, self._fd, self.header, txn, durable=True)
                self._copy_into_database(self.header, self.new)

                fsync_dir(db.ltx_dir)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        wal.removed()
        wal.unsynced.clear()
        if os.path.exists(wal.path):
            # Every committed frame is now in the database file and in an LTX file.
            os.unlink(wal.path)


__all__ = ["WALRecovery", "WALState", "commit_wal_transaction", "sync_paths"]
