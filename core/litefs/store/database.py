"""One database of the store: its files, its position, its LTX directory, commits and recovery.

Layout under ``<data.dir>/dbs/<name>/``: ``database``, ``journal``, ``wal``, ``shm`` and ``ltx/``.

Everything here is synchronous and runs on the node's trio thread (FUSE handlers, HTTP views): a
method either completes or raises, so no other request can observe a half-made commit.

Commit capture in the rollback-journal modes (LiteFS §4.6). Every write to the database file marks
the pages it touches dirty. SQLite invalidates the journal once its transaction is durable in the
database file -- by unlinking it (``delete``), truncating it to 0 (``truncate``) or overwriting its
first 28 bytes with zeros (``persist``) -- and that invalidation is the commit point. Before passing
it through, :meth:`Database.commit_journal` reads the dirty pages back from the backing file, writes
them as ``ltx/<txid>-<txid>.ltx`` (temp file, fsync, rename, fsync of the directory) and moves the
position. If the process dies anywhere in between, startup recovery rolls the still-valid journal
back and re-applies the newest LTX file, so the database always ends up at a position that matches
its content (see :meth:`Database.recover`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from litefs.events import LOCAL_TX_KINDS
from litefs.ltx import (
    EMPTY_DATABASE_CHECKSUM,
    FLAG_COMPRESS_LZ4,
    PAGE_HEADER_SIZE,
    TRAILER_SIZE,
    ChecksumTracker,
    Decoder,
    Encoder,
    Header,
    LTXError,
    Pos,
    Trailer,
    database_checksum,
    encode_ltx,
    format_filename,
    lock_pgno,
    page_checksum,
    parse_filename,
    peek_header,
)
from litefs.ltx.header import write_record_pgnos
from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.header import DATABASE_HEADER_SIZE, DatabaseHeader
from litefs.sqlite.journal import is_journal_header_valid, rollback_journal
from litefs.store.aiosync import ASYNC_SYNC
from litefs.store.directio import DirectAppender
from litefs.store.fsutil import TMP_SUFFIX, create_truncated, fsync_dir, remove_quietly
from litefs.store.ltxwriter import LTXWriteError, LTXWriter
from litefs.store.names import BACKING_NAMES, FileKind
from litefs.store.snaprecord import (
    PENDING_NAME,
    RECORD_NAME,
    SnapshotRecord,
    SnapshotRecordError,
    read_record,
    remove_records,
    write_record,
)
from litefs.store.spares import SparePool, is_spare
from litefs.store.syncproc import EarlySync
from litefs.store.wal import WALRecovery, WALState, read_wal_page

log = logging.getLogger("litefs.store")

PERSIST_ZERO_HEADER = bytes(28)
"""What SQLite writes at offset 0 of a persistent journal to invalidate it (``zeroJournalHdr``)."""

#: Write buffer of a large commit's LTX file.
_LTX_BUFFER = 64 * 1024
#: Most buffers one preadv/pwritev takes (Linux's IOV_MAX).
_IOV_MAX = 1024
#: Transactions up to this many pages are encoded in memory in one go (see _write_commit_ltx).
_ONE_SHOT_PAGES = 256


class StoreError(Exception):
    """A store operation failed for a reason the caller should report as-is."""


@dataclass
class SnapshotView:
    """A database's committed pages as captured by :meth:`Database.snapshot_view`."""

    db: Database
    pos: Pos
    page_size: int
    page_count: int
    wal_pages: dict[int, int]
    """Page number -> offset of its newest committed frame's data in ``-wal``."""
    wal_fd: int | None
    generation: int

    def read_page(self, pgno: int) -> bytes:
        off = self.wal_pages.get(pgno)
        if off is not None:
            assert self.wal_fd is not None
            return read_wal_page(self.wal_fd, self.page_size, off, pgno)
        data = _pread_full(self.db._db_fd_get(), self.page_size, (pgno - 1) * self.page_size)
        if len(data) < self.page_size:
            raise StoreError(f"{self.db.name}: page {pgno} missing from the database file")
        return data

    def read_pages(self, first: int, count: int) -> bytes | bytearray:
        """Pages ``first .. first + count - 1`` as one buffer: one read from the database file, with
        the pages the view takes from the WAL laid over it."""
        size = self.page_size
        data = _pread_full(self.db._db_fd_get(), size * count, (first - 1) * size)
        wal = self.wal_pages
        if len(data) < size * count:
            have = len(data) // size
            self._check_past_file_end(first + have, first + count)
            data = data[: have * size] + bytes(size * count - have * size)
        if not wal:
            return data
        out: bytes | bytearray = data
        for pgno in range(first, first + count):
            off = wal.get(pgno)
            if off is not None:
                if isinstance(out, bytes):
                    out = bytearray(out)
                assert self.wal_fd is not None
                i = (pgno - first) * size
                out[i : i + size] = read_wal_page(self.wal_fd, size, off, pgno)
        return out

    def _check_past_file_end(self, start: int, stop: int) -> None:
        """Pages ``start .. stop - 1`` are past the database file's end: in WAL mode that is fine for
        pages that so far exist only as WAL frames; any other is missing."""
        missing = next((p for p in range(start, stop) if p not in self.wal_pages), None)
        if missing is not None:
            raise StoreError(f"{self.db.name}: page {missing} missing from the database file")

    def read_records_into(self, first: int, count: int, out: memoryview) -> None:
        """Lay pages ``first .. first + count - 1`` out in ``out`` as LTX page records (u32 page
        number, page), as :meth:`read_pages` reads them, with no copy in Python: the database file
        is read straight into place (one ``preadv``) and the page numbers written with four strided
        assignments. ``out`` must hold exactly ``count`` records."""
        size = self.page_size
        rec = size + PAGE_HEADER_SIZE
        if len(out) != count * rec:
            raise ValueError(f"{len(out)} bytes do not hold {count} records of {rec}")
        slots = [out[o + PAGE_HEADER_SIZE : o + rec] for o in range(0, count * rec, rec)]
        fd = self.db._db_fd_get()
        base = (first - 1) * size
        done = 0  # whole pages read so far
        while done < count:
            n = os.preadv(fd, slots[done : done + _IOV_MAX], base + done * size)
            if n == 0:
                break
            full, part = divmod(n, size)
            done += full
            if part:  # a short read inside a page: the rest of that page on its own
                rest = _pread_full(fd, size - part, base + done * size + part)
                slots[done][part : part + len(rest)] = rest
                if len(rest) < size - part:
                    break  # the file ends inside this page: it is missing
                done += 1
        wal = self.wal_pages
        if done < count:
            self._check_past_file_end(first + done, first + count)
        if wal:
            for pgno in range(first, first + count):
                off = wal.get(pgno)
                if off is not None:
                    assert self.wal_fd is not None
                    slots[pgno - first][:] = read_wal_page(self.wal_fd, size, off, pgno)
        write_record_pgnos(out, rec, first, count)

    def still_valid(self) -> bool:
        """False when a checkpoint or WAL restart may have changed pages read through this view."""
        return self.db.file_generation == self.generation


class ReadOnlyError(StoreError):
    """A write on a node that is not primary (FUSE answers EACCES, as LiteFS does for the journal).

    ``loud`` asks the FUSE layer to log the refusal: SQLite reports a refused WAL write only as
    "disk I/O error", so the node's log is where the user learns why.
    """

    def __init__(self, message: str, *, loud: bool = False) -> None:
        super().__init__(message)
        self.loud = loud


class CommitError(StoreError):
    """A commit could not be made durable: LiteFS treats this as fatal (exit code 99)."""


class RecoveryError(StoreError):
    """Startup recovery found the database and its LTX files inconsistent; the node must not start."""


class HaltForwardError(StoreError):
    """A commit made under a remote HALT lock was refused by the primary (or could not reach it).

    Not fatal: nothing was made durable locally, SQLite sees an I/O error and the transaction is
    rolled back (by SQLite, or by the node when it releases the HALT lock).
    """


class VerifyError(CommitError):
    """``strict-verify`` found the database content disagreeing with its position (fatal, like a
    failed commit)."""


@dataclass
class CommitStats:
    """Counters of one database, for /debug/vars and the benchmark."""

    commits: int = 0
    ltx_bytes: int = 0
    pages_written: int = 0
    rollbacks_ignored: int = 0
    commit_seconds: float = 0.0


@dataclass
class WriteStats:
    """FUSE write requests to each file of a database (``litefs_db_*_write_count``)."""

    database_writes: int = 0
    journal_writes: int = 0
    wal_writes: int = 0
    shm_writes: int = 0


@dataclass
class CommitResult:
    """What a commit produced (passed to the store's commit listener)."""

    txid: int
    post_apply_checksum: int
    page_size: int
    commit: int
    timestamp_ms: int
    ltx_path: str
    kind: str = "commit"
    """How the transaction came (:data:`litefs.events.TX_KINDS`): commit, drop, import, apply, snapshot."""

    @property
    def local(self) -> bool:
        """True for a transaction made on this node (not applied from the primary)."""
        return self.kind in LOCAL_TX_KINDS


@dataclass
class RoleRecovery:
    """What :meth:`Database.recover_files` did (for the log) and found."""

    actions: list[str] = field(default_factory=list)
    wal_size: int = 0
    #: (actual checksum, page checksums) when the content does not match the position.
    mismatch: tuple[int, ChecksumTracker] | None = None


@dataclass
class _Dirty:
    """Pages written to the database file since the last commit."""

    pages: set[int] = field(default_factory=set)
    # Byte ranges written while the page size was unknown (a brand-new database).
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def clear(self) -> None:
        self.pages.clear()
        self.ranges.clear()

    def __bool__(self) -> bool:
        return bool(self.pages or self.ranges)


def _ltx_header_and_post(path: str) -> tuple[Header, int]:
    """Header and post-apply checksum of an LTX file, without decoding its pages."""
    with open(path, "rb") as f:
        header = peek_header(f)
        f.seek(-TRAILER_SIZE, os.SEEK_END)
        trailer = Trailer.from_bytes(f.read(TRAILER_SIZE))
    return header, trailer.post_apply_checksum


#: Pages gathered into one pwritev when applying (a snapshot is one long run of pages; < IOV_MAX).
_WRITE_BATCH = 256


def _pwrite_pages(fd: int, page_size: int, run: Sequence[bytes | memoryview], offset: int) -> None:
    """Write consecutive pages at ``offset`` with one pwritev (finishing a short write page by page)."""
    total = len(run) * page_size
    written = os.pwritev(fd, run, offset)
    if written < total:
        for i, data in enumerate(run):
            end = (i + 1) * page_size
            if end > written:
                start = max(written - i * page_size, 0)
                view = memoryview(data)[start:]
                pos = offset + i * page_size + start
                while view:
                    n = os.pwrite(fd, view, pos)
                    view, pos = view[n:], pos + n


def _write_pages(
    fd: int,
    page_size: int,
    pages: Iterable[tuple[int, bytes]],
    tracker: ChecksumTracker,
) -> None:
    """Write decoded pages at their offsets, consecutive ones with one pwritev per batch."""
    run: list[bytes] = []
    first = 0

    def flush() -> None:
        tracker.set_page_checksums(first, [page_checksum(first + i, data) for i, data in enumerate(run)])
        offset = (first - 1) * page_size
        _pwrite_pages(fd, page_size, run, offset)
        run.clear()

    for pgno, data in pages:
        if run and (pgno != first + len(run) or len(run) >= _WRITE_BATCH):
            flush()
        if not run:
            first = pgno
        if len(data) != page_size:
            raise LTXError(f"page {pgno}: {len(data)} bytes, page size is {page_size}")
        run.append(data)
    if run:
        flush()


@dataclass
class BuiltSnapshot:
    """A database file built from a snapshot LTX file beside the live one (see
    :func:`build_snapshot_file`), complete, verified and durable: :meth:`Database.install_snapshot`
    puts it in place."""

    path: str
    header: Header
    post_apply_checksum: int
    tracker: ChecksumTracker


def build_snapshot_file(dec: Decoder, path: str, *, fsync: bool = True) -> BuiltSnapshot:
    """Write every page of the snapshot ``dec`` is decoding into a new file at ``path``.

    The file is checked against the snapshot's post-apply checksum and fsynced. Readers of the live
    database never see it until it is renamed into place, so a snapshot can be written while it
    arrives, without any lock, and a bad or cut-off snapshot changes nothing. Blocking: run it in a
    thread. On any error the file is removed.
    """
    h = dec.header
    if not h.is_snapshot:
        raise StoreError(f"build snapshot file: LTX {h.min_txid:016x}-{h.max_txid:016x} is not a snapshot")
    # Written with O_DIRECT (litefs.store.directio): through the page cache, copying each page
    # into a newly allocated cache page was the largest single cost of receiving a snapshot (a
    # fifth of both nodes' CPU in `perf`), and the cache would hold a second copy of a database
    # that readers warm up as they need it anyway.
    out = DirectAppender(path)
    try:
        tracker = ChecksumTracker(h.page_size)
        for first, pages, sums in dec.snapshot_runs(_WRITE_BATCH):
            offset = (first - 1) * h.page_size
            if offset > out.length:  # the lock page, never part of a snapshot: zeros, as in SQLite
                out.write(bytes(offset - out.length))
            out.write_many(pages)
            tracker.set_page_checksums(first, sums)
        trailer = dec.trailer
        assert trailer is not None
        tracker.truncate(h.commit)
        if tracker.checksum != trailer.post_apply_checksum:
            raise StoreError(
                f"snapshot {h.min_txid:016x}-{h.max_txid:016x}: written pages give checksum "
                f"{tracker.checksum:016x}, LTX post-apply checksum is {trailer.post_apply_checksum:016x}"
            )
        out.close()
        os.truncate(path, h.commit * h.page_size)
        if fsync:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        out.abandon()
        remove_quietly(path)
        raise
    return BuiltSnapshot(path, h, trailer.post_apply_checksum, tracker)


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


class Database:
    """One SQLite database managed by the store."""

    def __init__(
        self,
        name: str,
        path: str,
        *,
        compress: bool = True,
        node_id: int = 0,
        writable: Callable[[], bool] = lambda: True,
        on_commit: Callable[[Database, CommitResult], None] | None = None,
        strict_verify: bool = False,
        fsync: bool = True,
    ) -> None:
        self.name = name
        self.path = path
        self.ltx_dir = os.path.join(path, "ltx")
        self._backing_paths = {kind: os.path.join(path, name) for kind, name in BACKING_NAMES.items()}
        self.compress = compress
        self.node_id = node_id
        self.strict_verify = strict_verify
        self._writable = writable
        self._on_commit = on_commit
        self._fsync = fsync
        self.page_size = 0
        self.page_count = 0
        self.pos = Pos(0, 0)
        self.timestamp_ms = 0
        #: Time of the last change made to the database file behind the kernel (recovery, import,
        #: apply); reported as its mtime so that SQLite's own writes do not flush the page cache.
        self.external_mtime_ns = time.time_ns()
        self.tracker: ChecksumTracker | None = None
        self._dirty = _Dirty()
        self._db_fd: int | None = None
        #: Descriptors of the database file opened for the mount (open_file): installing a snapshot
        #: points them at the new file (see install_snapshot).
        self._file_fds: set[int] = set()
        # True when the backing database file has been fsynced since its last write: SQLite does it
        # itself before invalidating a journal under synchronous=FULL/NORMAL, so the commit can skip it.
        self._db_synced = True
        self.stats = CommitStats()
        self.write_stats = WriteStats()
        #: WAL mode: commit capture from the -wal file, committed page overlay (store/wal.py).
        self.wal = WALState(self)
        #: At startup: the last snapshot's record when LTX files were applied after it (the content
        #: may still be the snapshot's state after a power cut; see _ltx_files_past_content).
        self._snapshot_base: SnapshotRecord | None = None
        #: Bumped whenever committed pages may move under a reader that works from a captured
        #: page map (a checkpoint writing or truncating the database file, a WAL restart): a
        #: snapshot built from a :class:`SnapshotView` taken before is retried.
        self.file_generation = 0
        #: On a replica: the remote HALT lock this node holds on the primary for this database (the
        #: database is writable while it is set); see litefs.replication.halt.
        self.remote_halt: object | None = None
        #: Set together with ``remote_halt``: sends a finished LTX file to the primary's ``/tx``
        #: before the commit completes locally. Raises HaltForwardError when the primary refuses it.
        #: Called from a worker thread (the FUSE handler moves halted commits off the trio thread).
        self.forward_ltx: Callable[[bytes], None] | None = None
        #: Writes the LTX files of WAL commits in the background (see litefs.store.ltxwriter);
        #: None writes them on the commit path.
        self.ltx_writer: LTXWriter | None = None
        #: Starts SQLite's WAL fdatasync when a commit frame arrives (see litefs.store.syncproc);
        #: the store sets its own, the default is Linux AIO.
        self.early_sync: EarlySync = ASYNC_SYNC
        #: persist and truncate mode: the journal's length as the mount shows it after a commit
        #: zeroed its header (the backing file is longer); None when the backing file's size is
        #: shown (see write_journal).
        self.journal_visible_size: int | None = None
        #: Durable empty files for the LTX files of rollback-journal commits (store/spares.py).
        self._spares: SparePool | None = SparePool(self.ltx_dir) if fsync else None

    @property
    def fsync_enabled(self) -> bool:
        """False only in tests and benchmarks that turn fsync off for the whole store."""
        return self._fsync

    # -- paths ---------------------------------------------------------------------------------

    def backing_path(self, kind: FileKind) -> str:
        """Path of the real file behind a database file of the given kind."""
        return self._backing_paths[kind]

    @property
    def db_path(self) -> str:
        return self.backing_path(FileKind.DATABASE)

    @property
    def journal_path(self) -> str:
        return self.backing_path(FileKind.JOURNAL)

    def exists(self) -> bool:
        """True once the database file exists (it may still have no pages)."""
        return os.path.exists(self.db_path)

    def file_exists(self, kind: FileKind) -> bool:
        return os.path.exists(self.backing_path(kind))

    def ltx_path(self, min_txid: int, max_txid: int) -> str:
        return os.path.join(self.ltx_dir, format_filename(min_txid, max_txid))

    @property
    def snapshot_record_path(self) -> str:
        """Where a replica records the last snapshot it installed (see litefs.store.snaprecord)."""
        return os.path.join(self.ltx_dir, RECORD_NAME)

    # -- files ---------------------------------------------------------------------------------

    def _ensure_dirs(self) -> None:
        os.makedirs(self.ltx_dir, exist_ok=True)

    def _db_fd_get(self) -> int:
        if self._db_fd is None:
            self._db_fd = os.open(self.db_path, os.O_RDWR | os.O_CLOEXEC)
        return self._db_fd

    def flush_ltx(self) -> None:
        """Wait until every LTX file submitted to the background writer is on disk."""
        if self.ltx_writer is not None:
            try:
                self.ltx_writer.drain()
            except LTXWriteError as exc:
                raise CommitError(f"{self.name}: {exc}") from exc

    def read_ltx_bytes(self, min_txid: int, max_txid: int) -> bytes:
        """The content of an LTX file, also while the background writer still holds it."""
        path = self.ltx_path(min_txid, max_txid)
        if self.ltx_writer is not None:
            data = self.ltx_writer.pending(path)
            if data is not None:
                return data
        with open(path, "rb") as f:
            return f.read()

    def close(self) -> None:
        if self.ltx_writer is not None:
            try:
                self.flush_ltx()
            except CommitError as exc:
                log.error("%s", exc)  # the WAL still holds the transactions: recovery rebuilds them
        if self._spares is not None:
            self._spares.close()
        if self._db_fd is not None:
            os.close(self._db_fd)
            self._db_fd = None
        self.wal.close()

    def open_file(self, kind: FileKind, flags: int, mode: int = 0o644) -> int:
        """Open (or with O_CREAT create) a backing file; return the OS file descriptor.

        O_CREAT of a journal needs write access (LiteFS answers EACCES on a replica).
        """
        if flags & os.O_CREAT:
            if kind is FileKind.JOURNAL and not self._writable():
                raise ReadOnlyError("read only replica")
            os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.backing_path(kind), flags | os.O_CLOEXEC, mode)
        if kind is FileKind.WAL:
            self.wal.exists = True  # WAL mode: database writes are checkpoints from now on
        elif kind is FileKind.DATABASE:
            self._file_fds.add(fd)
        return fd

    def close_file(self, fd: int) -> None:
        """Close a descriptor :meth:`open_file` returned."""
        self._file_fds.discard(fd)
        os.close(fd)

    # -- writes from SQLite --------------------------------------------------------------------

    def write_database(self, fd: int, offset: int, data: bytes) -> int:
        """Write to the database file and mark the pages it touches dirty."""
        if not self._writable():
            raise ReadOnlyError("read only replica")
        if self.wal.exists:
            # WAL mode: only checkpoints write the database file, with pages whose LTX files exist.
            self.wal.before_checkpoint_write()
            self._db_synced = False
            self.file_generation += 1
            return os.pwrite(fd, data, offset)
        n = os.pwrite(fd, data, offset)
        if n:
            self._db_synced = False
            ps = self.page_size
            if ps:
                first = offset // ps + 1
                last = (offset + n - 1) // ps + 1
                if first == last:
                    self._dirty.pages.add(first)
                else:
                    self._dirty.pages.update(range(first, last + 1))
            else:
                self._dirty.ranges.append((offset, n))
                if offset == 0 and n >= DATABASE_HEADER_SIZE:
                    self._learn_page_size(bytes(data[:DATABASE_HEADER_SIZE]))
        return n

    def _learn_page_size(self, header: bytes) -> None:
        try:
            self.page_size = DatabaseHeader.parse(header).page_size
        except SQLiteFormatError:
            return
        for off, n in self._dirty.ranges:
            self._dirty.pages.update(range(off // self.page_size + 1, (off + n - 1) // self.page_size + 2))
        self._dirty.ranges.clear()

    def truncate_database(self, size: int, fd: int | None = None) -> None:
        """Truncate the database file (VACUUM shrinking it); the commit reads the new size."""
        if not self._writable():
            raise ReadOnlyError("read only replica")
        if fd is not None:
            os.ftruncate(fd, size)
        else:
            os.truncate(self.db_path, size)
        self._db_synced = False
        self.file_generation += 1

    def sync_database(self, fd: int, datasync: bool) -> None:
        """fsync of the database file requested by SQLite."""
        (os.fdatasync if datasync else os.fsync)(fd)
        self._db_synced = True

    def write_journal(self, fd: int, offset: int, data: bytes) -> int:
        """Write to the journal; 28 zero bytes at offset 0 is the ``persist``-mode commit.

        The header is zeroed as SQLite asks (LiteFS does the same), and from then on the mount shows
        the journal as 0 bytes long until SQLite writes it again (``journal_visible_size``). Both
        mean "no hot journal" to SQLite, but a reader that finds an empty journal stops at stat(),
        whereas a non-empty one costs it open+read+close through FUSE on every read transaction
        (measured: point SELECTs at 0.06x of plain SQLite instead of 0.9x). The backing file keeps
        its blocks: truncating it instead cost a truncate and a metadata flush at the next journal
        sync, 200-300 us per transaction on the test host.
        """
        if not self._writable():
            raise ReadOnlyError("read only replica")
        if offset == 0 and len(data) == len(PERSIST_ZERO_HEADER) and data == PERSIST_ZERO_HEADER:
            self.commit_journal(fd)
            self._empty_journal(fd)
            return len(data)
        n = os.pwrite(fd, data, offset)
        if self.journal_visible_size is not None and offset + n > self.journal_visible_size:
            self.journal_visible_size = offset + n
        return n

    def _empty_journal(self, fd: int) -> None:
        """Show the journal as empty after a commit; zero its header so no hot journal is left.

        Bytes past what the last transaction wrote are cut off first: they are an older, longer
        transaction's, and a journal header among them could be taken for a further segment of
        this one by a rollback at startup (which reads the backing file).
        """
        if self.journal_visible_size == 0:
            return  # nothing written since the last commit
        if self.journal_visible_size is not None and os.fstat(fd).st_size > self.journal_visible_size:
            os.ftruncate(fd, self.journal_visible_size)
        os.pwrite(fd, PERSIST_ZERO_HEADER, 0)
        self.journal_visible_size = 0

    def journal_size(self, backing_size: int) -> int:
        """The journal's size as the mount shows it (see :meth:`write_journal`)."""
        visible = self.journal_visible_size
        return backing_size if visible is None else min(visible, backing_size)

    def truncate_journal(self, size: int, fd: int | None = None) -> None:
        """Truncate the journal; to 0 it is the ``truncate``-mode commit (the backing file is then
        zeroed at the header and shown empty rather than truncated, see :meth:`write_journal`).

        Other sizes pass through without a commit: SQLite trims a persistent journal to
        ``journal_size_limit`` right after zeroing its header (LiteFS refuses that with EINVAL).
        """
        if size == 0:
            self.commit_journal(fd)
            if fd is not None:
                # As after a persist-mode commit (see write_journal): shown empty, blocks kept.
                self._empty_journal(fd)
                return
        if fd is not None:
            os.ftruncate(fd, size)
        else:
            os.truncate(self.journal_path, size)
        if self.journal_visible_size is not None:
            self.journal_visible_size = min(self.journal_visible_size, size)

    def remove_journal(self) -> None:
        """Unlink of the journal: the ``delete``-mode commit."""
        self.commit_journal()
        os.unlink(self.journal_path)
        self.journal_visible_size = None

    def remove_file(self, kind: FileKind) -> None:
        """Unlink of ``-wal`` or ``-shm``."""
        os.unlink(self.backing_path(kind))
        if kind is FileKind.WAL:
            self.wal.removed()

    # -- WAL mode (the state machine lives in store/wal.py) --------------------------------------

    def write_wal(self, fd: int, offset: int, data: bytes) -> int:
        """Write to ``-wal``; a write that completes a valid commit frame becomes an LTX file first."""
        if not self._writable():
            raise ReadOnlyError(
                f"wal error: read only replica: {self.name} is written on the primary only", loud=True
            )
        return self.wal.write(fd, offset, data)

    def truncate_wal(self, size: int, fd: int | None = None) -> None:
        """Truncate ``-wal`` (TRUNCATE checkpoint, journal_size_limit)."""
        if fd is not None:
            os.ftruncate(fd, size)
        else:
            os.truncate(self.backing_path(FileKind.WAL), size)
        self.wal.truncated(size)

    def snapshot_view(self) -> SnapshotView:
        """The committed state as of now, readable page by page from another thread.

        Taken on the trio thread, between FUSE requests, so the position, page count and WAL page
        map belong to the same transaction. WAL commits that follow append frames elsewhere and do
        not disturb it; a checkpoint or WAL restart does (see ``file_generation``).
        """
        wal_pages = dict(self.wal.pages) if self.wal.header is not None else {}
        return SnapshotView(
            db=self,
            pos=self.pos,
            page_size=self.page_size,
            page_count=self.page_count,
            wal_pages=wal_pages,
            wal_fd=self.wal._reader_fd() if wal_pages else None,
            generation=self.file_generation,
        )

    def read_logical_page(self, pgno: int) -> bytes:
        """Committed content of one page: the newest committed WAL frame, else the database file."""
        data = self.wal.read_page(pgno)
        if data is not None:
            return data
        data = _pread_full(self._db_fd_get(), self.page_size, (pgno - 1) * self.page_size)
        if len(data) < self.page_size:
            raise StoreError(f"{self.name}: page {pgno} missing from the database file")
        return data

    # -- commit --------------------------------------------------------------------------------

    def next_tx_header(self, page_size: int, commit: int, *, txid: int = 0, **wal_fields: int) -> Header:
        """The LTX header of the next local transaction (one TXID, stamped now, from this node).

        ``txid`` defaults to the next one; an import with a new page size restarts at 1.
        """
        txid = txid or self.pos.txid + 1
        return Header(
            flags=FLAG_COMPRESS_LZ4 if self.compress else 0,
            page_size=page_size,
            commit=commit,
            min_txid=txid,
            max_txid=txid,
            timestamp=int(time.time() * 1000),
            pre_apply_checksum=0 if txid == 1 else self.pos.post_apply_checksum,
            node_id=self.node_id,
            **wal_fields,
        )

    def commit_journal(self, journal_fd: int | None = None) -> CommitResult | None:
        """Turn the transaction that SQLite is finishing into an LTX file (the journal is still valid).

        Returns None when there is nothing to commit: the journal has no valid header (SQLite never
        started changing the database), or the transaction wrote nothing to the database file and
        did not change its size (a rollback before any spill). Raises CommitError if the LTX file
        cannot be made durable; the journal must then be left alone.
        """
        if journal_fd is not None:
            head = os.pread(journal_fd, 8, 0)
        else:
            try:
                jfd = os.open(self.journal_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                head = b""
            else:
                try:
                    head = os.pread(jfd, 8, 0)
                finally:
                    os.close(jfd)
        if not is_journal_header_valid(head):
            return None
        if not self._writable():
            # The lease was lost while SQLite was writing: the transaction must not commit here.
            # The journal stays hot; the recovery that follows the role change rolls it back.
            raise ReadOnlyError("read only replica")
        db_fd = self._db_fd_get()
        try:
            hdr = DatabaseHeader.parse(_pread_full(db_fd, DATABASE_HEADER_SIZE, 0))
        except SQLiteFormatError:
            # An empty or half-written database file (first transaction rolled back): nothing to record.
            self._dirty.clear()
            return None
        if not self._dirty and hdr.page_count == self.page_count and self.pos.txid > 0:
            self.stats.rollbacks_ignored += 1
            return None
        try:
            return self._commit(db_fd, hdr)
        except (OSError, LTXError) as exc:
            raise CommitError(f"commit journal: {self.name}: {exc}") from exc

    def _commit(self, db_fd: int, hdr: DatabaseHeader) -> CommitResult:
        started = time.perf_counter()
        page_size = hdr.page_size
        commit = hdr.page_count
        self.page_size = page_size
        self._learn_page_size_ranges()
        if self.tracker is None or self.tracker.page_size != page_size:
            # First commit, a re-created database, or a new page size (VACUUM after PRAGMA page_size):
            # the TXID keeps counting and every page goes into the LTX file.
            self.tracker = ChecksumTracker(page_size)
            self.page_count = 0
        txid = self.pos.txid + 1
        if txid == 1:
            pages: Sequence[int] = range(1, commit + 1)
        else:
            dirty = self._dirty.pages
            # Pages past the old end of the database are all part of the transaction.
            dirty.update(range(self.page_count + 1, commit + 1))
            pages = sorted(p for p in dirty if p <= commit)
        header = self.next_tx_header(page_size, commit)
        timestamp_ms = header.timestamp
        tracker = self.tracker
        # The tracker moves while the file is encoded; if the commit then fails the node exits (99) and
        # recovery rebuilds it from disk, as in LiteFS. A commit forwarded under a HALT lock may be
        # refused without exiting: keep a copy to restore.
        forward = self.forward_ltx
        saved = tracker.copy() if forward is not None else None
        path = self.ltx_path(txid, txid)
        # A spare file's name is already durable, so its rename needs no directory fsync (a crash
        # before the rename reaches the disk leaves it for recovery; see store/spares.py).
        spare = self._spares.take() if forward is None and self._spares is not None else None
        tmp = spare[1] if spare is not None else path + TMP_SUFFIX
        fd = spare[0] if spare is not None else -1
        try:
            if fd < 0:
                fd = create_truncated(tmp)
            post, size, npages = self._write_commit_ltx(fd, db_fd, header, pages, tracker)
            if self._fsync:
                os.fdatasync(fd)
            if forward is not None:
                # Remote HALT: the primary must accept the transaction before it exists here.
                with open(tmp, "rb") as f:
                    forward(f.read())
            os.rename(tmp, path)
            if self._fsync:
                if spare is None:
                    fsync_dir(self.ltx_dir)
                if not self._db_synced:
                    os.fsync(db_fd)
                    self._db_synced = True
        except BaseException as exc:
            if spare is not None:
                # Empty the spare even if its name cannot be removed: recovery must not revive a
                # transaction SQLite was told failed.
                try:
                    os.ftruncate(fd, 0)
                    os.fdatasync(fd)
                except OSError:
                    pass
            remove_quietly(tmp)
            if saved is not None and isinstance(exc, HaltForwardError):
                self.tracker = saved
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        # The LTX file is durable: now the position moves.
        self.pos = Pos(txid, post)
        self.page_count = commit
        self.timestamp_ms = timestamp_ms
        self._dirty.clear()
        self.stats.commits += 1
        self.stats.ltx_bytes += size
        self.stats.pages_written += npages
        self.stats.commit_seconds += time.perf_counter() - started
        if self.strict_verify:
            self.verify()
        result = CommitResult(txid, post, page_size, commit, timestamp_ms, path)
        if self._on_commit is not None:
            self._on_commit(self, result)
        return result

    def _write_commit_ltx(
        self, fd: int, db_fd: int, header: Header, pages: Sequence[int], tracker: ChecksumTracker
    ) -> tuple[int, int, int]:
        """Write the LTX file of a journal commit to ``fd`` from the database file's pages and move
        the page checksums; return (post-apply checksum, file size, pages written).

        A small transaction (the usual case) is read into memory and encoded with one LZ4 call; a
        large one streams through :class:`Encoder` so memory stays bounded.
        """
        page_size = header.page_size
        commit = header.commit
        lock = lock_pgno(page_size)

        def read_page(pgno: int) -> bytes:
            data = _pread_full(db_fd, page_size, (pgno - 1) * page_size)
            if len(data) < page_size:
                raise CommitError(
                    f"commit journal: {self.name}: page {pgno} missing from database file "
                    f"(offset {(pgno - 1) * page_size}, commit {commit})"
                )
            tracker.set_page_checksum(pgno, page_checksum(pgno, data))
            return data

        if len(pages) <= _ONE_SHOT_PAGES:
            contents = [(pgno, read_page(pgno)) for pgno in pages if pgno != lock]
            tracker.truncate(commit)
            post = tracker.checksum
            blob = memoryview(encode_ltx(header, contents, post))
            size = len(blob)
            while blob:
                blob = blob[os.write(fd, blob) :]
            return post, size, len(contents)
        npages = 0
        # An explicit buffer size spares the isatty() probe of a default open().
        with open(fd, "wb", buffering=_LTX_BUFFER, closefd=False) as f:
            enc = Encoder(f, header)
            for pgno in pages:
                if pgno != lock:
                    enc.encode_page(pgno, read_page(pgno))
                    npages += 1
            tracker.truncate(commit)
            post = tracker.checksum
            enc.finish(post)
            f.flush()
            return post, f.tell(), npages

    def _learn_page_size_ranges(self) -> None:
        ps = self.page_size
        for off, n in self._dirty.ranges:
            self._dirty.pages.update(range(off // ps + 1, (off + n - 1) // ps + 2))
        self._dirty.ranges.clear()

    def verify(self) -> None:
        """Recompute the whole-database checksum from disk and compare with the position."""
        if self.pos.txid == 0 or self.page_size == 0:
            return
        if self.wal.pages:  # WAL mode: the database file overlaid with the committed WAL pages
            check = ChecksumTracker(self.page_size)
            lock = lock_pgno(self.page_size)
            for pgno in range(1, self.page_count + 1):
                if pgno != lock:
                    check.set_page(pgno, self.read_logical_page(pgno))
            check.truncate(self.page_count)
            actual = check.checksum
        else:
            actual = database_checksum(self.db_path, self.page_size, self.page_count)
        if actual != self.pos.post_apply_checksum:
            raise VerifyError(
                f"strict verify: {self.name}: database checksum {actual:016x} on TXID {self.pos.txid:016x} "
                f"does not match position checksum {self.pos.post_apply_checksum:016x}"
            )

    # -- LTX files -----------------------------------------------------------------------------

    def ltx_files(self) -> list[tuple[int, int, str]]:
        """(min TXID, max TXID, path) of every LTX file, sorted by max TXID."""
        out = []
        try:
            names = os.listdir(self.ltx_dir)
        except FileNotFoundError:
            return []
        for fname in names:
            try:
                lo, hi = parse_filename(fname)
            except LTXError:
                continue  # LiteFS ignores files that do not match the pattern
            out.append((lo, hi, os.path.join(self.ltx_dir, fname)))
        out.sort(key=lambda t: (t[1], t[0]))
        return out

    # -- apply (import; replicas later) --------------------------------------------------------

    def apply_ltx_file(self, path: str, *, kind: str = "apply", notify: bool = True) -> CommitResult:
        """Apply a complete LTX file whose pre-apply position is this database's position.

        The file must already be in its final place and durable. Pages are written straight into the
        backing database file (the caller holds SQLite's locks and invalidates kernel caches).
        ``kind`` is what the commit event reports (``apply`` or ``snapshot`` from the primary,
        ``import`` for ``litefs import``).
        ``notify=False`` skips the commit listeners, so a large apply can run in a worker thread while
        the caller calls :meth:`notify_commit` back on the trio thread (listeners use trio objects).
        """
        with open(path, "rb") as f:
            dec = Decoder(f)
            h = dec.header
            if not h.is_snapshot and h.pre_apply_checksum != self.pos.post_apply_checksum:
                raise StoreError(
                    f"apply {os.path.basename(path)}: pre-apply checksum {h.pre_apply_checksum:016x} "
                    f"does not match position {self.pos}"
                )
            self._ensure_dirs()
            if not os.path.exists(self.db_path):
                open(self.db_path, "ab").close()
            db_fd = self._db_fd_get()
            if self.tracker is None or self.tracker.page_size != h.page_size or h.is_snapshot:
                self.tracker = ChecksumTracker(h.page_size)
            _write_pages(db_fd, h.page_size, dec.pages(), self.tracker)
            trailer = dec.trailer
            assert trailer is not None
        os.ftruncate(db_fd, h.commit * h.page_size)
        self.tracker.truncate(h.commit)
        if self._fsync:
            os.fsync(db_fd)
        if self.tracker.checksum != trailer.post_apply_checksum:
            raise StoreError(
                f"apply {os.path.basename(path)}: database checksum {self.tracker.checksum:016x} does not "
                f"match LTX post-apply checksum {trailer.post_apply_checksum:016x}"
            )
        return self._adopt(h, trailer.post_apply_checksum, path, kind, notify)

    def install_snapshot(self, built: BuiltSnapshot, *, notify: bool = True) -> CommitResult:
        """Put a database file built from a snapshot in place of the live one; adopt its position.

        The snapshot's LTX file is not kept: a record of its header and checksum is
        (:mod:`litefs.store.snaprecord`, which also explains the order below: a crash at any step
        leaves the old state or the new one to startup recovery). The caller holds SQLite's locks
        (readers see the old database or the new one, never a mix) and drops the kernel's cached
        pages afterwards. Runs on the trio thread: the descriptors it re-points belong to the FUSE
        handlers, and none may be closed (and its number reused) meanwhile.
        """
        h = built.header
        self._ensure_dirs()
        self.flush_ltx()  # a file still queued (a forwarded HALT commit) must not land after the record
        pending = os.path.join(self.ltx_dir, PENDING_NAME)
        write_record(pending, SnapshotRecord(h, built.post_apply_checksum), fsync=self._fsync)
        os.rename(built.path, self.db_path)
        if self._fsync:
            fsync_dir(self.path)
        # The history the snapshot replaced (a diverged former primary's included) goes before the
        # record is put in place: a record is believed only when no LTX file is newer.
        for _, _, path in self.ltx_files():
            os.unlink(path)
        if self._fsync:
            fsync_dir(self.ltx_dir)
        os.rename(pending, self.snapshot_record_path)
        if self._fsync:
            fsync_dir(self.ltx_dir)
        # Descriptors opened on the old file would go on reading it: each is pointed at the new
        # file with its access mode kept (dup2 swaps it atomically under a concurrent pread).
        fds = set(self._file_fds)
        if self._db_fd is not None:
            fds.add(self._db_fd)
        for fd in fds:
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
            new = os.open(self.db_path, access | os.O_CLOEXEC)
            try:
                os.dup2(new, fd, inheritable=False)
            finally:
                os.close(new)
        self.file_generation += 1
        self.tracker = built.tracker
        return self._adopt(h, built.post_apply_checksum, "", "snapshot", notify)

    def _adopt(self, h: Header, post_apply_checksum: int, path: str, kind: str, notify: bool) -> CommitResult:
        """After the database file was changed behind the kernel to the state after LTX ``h``: take
        that state as this database's (size, position, timestamp) and report it."""
        self.external_mtime_ns = time.time_ns()
        self.page_size = h.page_size
        self.page_count = h.commit
        self.pos = Pos(h.max_txid, post_apply_checksum)
        self.timestamp_ms = h.timestamp
        self._dirty.clear()
        self._db_synced = True
        result = CommitResult(h.max_txid, post_apply_checksum, h.page_size, h.commit, h.timestamp, path, kind)
        if notify:
            self.notify_commit(result)
        return result

    def notify_commit(self, result: CommitResult) -> None:
        """Tell the commit listeners (events, plugins, replica streams) about ``result``."""
        if self._on_commit is not None:
            self._on_commit(self, result)

    def import_database(self, src_path: str, *, notify: bool = True) -> CommitResult:
        """Replace the database content with a complete SQLite file (``litefs import``).

        Writes one LTX file holding every page (a snapshot if the database is new) and applies it.
        Raises StoreError without changing anything when ``src_path`` is not a SQLite database.
        Blocking file I/O only: callers on the trio thread run it in a worker thread with
        ``notify=False`` and then call :meth:`notify_commit`.
        """
        self.flush_ltx()
        with open(src_path, "rb") as src:
            raw = src.read(DATABASE_HEADER_SIZE)
            try:
                hdr = DatabaseHeader.parse(raw)
            except SQLiteFormatError as exc:
                raise StoreError(f"import {self.name}: not a SQLite database: {exc}") from exc
            size = os.fstat(src.fileno()).st_size
            page_size = hdr.page_size
            if size % page_size:
                raise StoreError(
                    f"import {self.name}: file size {size} is not a multiple of the page size {page_size}"
                )
            commit = size // page_size
            if hdr.page_count and hdr.page_count != commit:
                raise StoreError(
                    f"import {self.name}: header says {hdr.page_count} pages but the file has {commit}"
                )
            same_size = self.tracker is not None and self.page_size == page_size
            txid = self.pos.txid + 1 if same_size else 1
            header = self.next_tx_header(page_size, commit, txid=txid)
            self._ensure_dirs()
            if txid == 1:
                self.remove_ltx_history()
            path = self.ltx_path(txid, txid)
            tmp = path + TMP_SUFFIX
            try:
                with open(tmp, "wb") as f:
                    enc = Encoder(f, header)
                    tracker = ChecksumTracker(page_size)
                    lock = lock_pgno(page_size)
                    for pgno in range(1, commit + 1):
                        if pgno == lock:
                            continue
                        src.seek((pgno - 1) * page_size)
                        data = src.read(page_size)
                        enc.encode_page(pgno, data)
                        tracker.set_page(pgno, data)
                    enc.finish(tracker.checksum)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(tmp, path)
                fsync_dir(self.ltx_dir)
            except BaseException:
                remove_quietly(tmp)
                raise
        if txid == 1:
            self.tracker = None
            self.pos = Pos(0, 0)
        for kind in (FileKind.JOURNAL, FileKind.WAL, FileKind.SHM):
            try:
                os.unlink(self.backing_path(kind))
            except FileNotFoundError:
                pass
        self.wal.removed()
        return self.apply_ltx_file(path, kind="import", notify=notify)

    def remove_ltx_history(self, keep: str = "") -> None:
        """Remove every LTX file but ``keep`` and any snapshot record: the history starts over."""
        for _, _, path in self.ltx_files():
            if path != keep:
                os.unlink(path)
        remove_records(self.ltx_dir)

    # -- export --------------------------------------------------------------------------------

    def export_state(self) -> tuple[Pos, int, int, int, dict[int, int]]:
        """What :meth:`read_database` needs to copy the committed database from another thread.

        (position, WAL generation, page size, page count, a copy of the committed WAL page overlay);
        take it on the trio thread, and compare position and generation after the copy: if either
        moved, the copy may mix transactions and must be redone.
        """
        return self.pos, self.wal.generation, self.page_size, self.page_count, dict(self.wal.pages)

    def read_database(
        self, state: tuple[Pos, int, int, int, dict[int, int]] | None = None
    ) -> Iterable[bytes]:
        """Yield the committed database content in chunks (pages 1..page count).

        With ``state`` from :meth:`export_state` only backing files are read, through descriptors
        of its own, so it can run in a worker thread.
        """
        if state is None:
            state = self.export_state()
        _, _, page_size, page_count, overlay = state
        if page_size == 0 or page_count == 0:
            return
        total = page_size * page_count
        if overlay:  # WAL mode: overlay the committed WAL pages
            lock = lock_pgno(page_size)
            with open(self.db_path, "rb") as df, open(self.wal.path, "rb") as wf:
                for pgno in range(1, page_count + 1):
                    off = overlay.get(pgno)
                    if off is not None and pgno != lock:
                        data = _pread_full(wf.fileno(), page_size, off)
                    else:
                        data = _pread_full(df.fileno(), page_size, (pgno - 1) * page_size)
                        if pgno == lock:
                            data = data.ljust(page_size, b"\0")
                    if len(data) < page_size:
                        raise StoreError(f"export {self.name}: page {pgno} is missing")
                    yield data
            return
        with open(self.db_path, "rb") as f:
            off = 0
            while off < total:
                chunk = f.read(min(1 << 20, total - off))
                if not chunk:
                    raise StoreError(f"export {self.name}: database file shorter than {total} bytes")
                off += len(chunk)
                yield chunk

    # -- drop ----------------------------------------------------------------------------------

    def drop(self) -> CommitResult | None:
        """Delete the database (unlink of ``<db>`` on the primary).

        Writes a deletion LTX file (commit 0, no pages, post-apply checksum = the empty checksum) so
        the TXID keeps counting and replicas can follow, then removes the database, journal, WAL and
        SHM files. The LTX directory stays.
        """
        if not self._writable():
            raise ReadOnlyError("read only replica")
        self.flush_ltx()
        result = None
        if self.pos.txid:
            txid = self.pos.txid + 1
            header = self.next_tx_header(self.page_size, 0)
            timestamp_ms = header.timestamp
            path = self._write_ltx(header, (), EMPTY_DATABASE_CHECKSUM)
            self.pos = Pos(txid, EMPTY_DATABASE_CHECKSUM)
            self.timestamp_ms = timestamp_ms
            result = CommitResult(
                txid, EMPTY_DATABASE_CHECKSUM, self.page_size, 0, timestamp_ms, path, "drop"
            )
        self.close()
        for kind in (FileKind.DATABASE, FileKind.JOURNAL, FileKind.WAL, FileKind.SHM):
            try:
                os.unlink(self.backing_path(kind))
            except FileNotFoundError:
                pass
        self.wal.removed()
        self.page_count = 0
        if self.page_size:
            self.tracker = ChecksumTracker(self.page_size)
        self._dirty.clear()
        if result is not None and self._on_commit is not None:
            self._on_commit(self, result)
        return result

    def _write_ltx(self, header: Header, pages: Iterable[tuple[int, bytes]], post: int) -> str:
        """Write a complete LTX file durably (temp file, fsync, rename, fsync directory)."""
        self._ensure_dirs()
        path = self.ltx_path(header.min_txid, header.max_txid)
        tmp = path + TMP_SUFFIX
        try:
            with open(tmp, "wb") as f:
                enc = Encoder(f, header)
                for pgno, data in pages:
                    enc.encode_page(pgno, data)
                enc.finish(post)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.rename(tmp, path)
            if self._fsync:
                fsync_dir(self.ltx_dir)
        except BaseException:
            remove_quietly(tmp)
            raise
        return path

    # -- recovery ------------------------------------------------------------------------------

    def _recover_spares(self) -> None:
        """Put committed LTX files left under a spare name back in place; delete the other spares.

        A commit renames its spare without syncing the directory (store/spares.py): after a crash
        the file may still carry the spare name. It is renamed into place only when it is a complete,
        valid LTX file for the TXIDs right after the newest LTX file; anything else is deleted.
        """
        spares = [f for f in os.listdir(self.ltx_dir) if is_spare(f)]
        if not spares:
            return
        files = self.ltx_files()
        newest = files[-1][1] if files else 0
        found: dict[int, tuple[int, str]] = {}
        for fname in spares:
            spare = os.path.join(self.ltx_dir, fname)
            try:
                if os.path.getsize(spare) > 0:
                    with open(spare, "rb") as f:
                        dec = Decoder(f)
                        dec.verify()
                    header = dec.header
                    if header.min_txid > newest and header.min_txid not in found:
                        found[header.min_txid] = (header.max_txid, spare)
                        continue
            except (LTXError, OSError) as exc:
                log.warning("%s: deleting damaged spare LTX file %s: %s", self.name, fname, exc)
            os.unlink(spare)
        while newest + 1 in found:
            max_txid, spare = found.pop(newest + 1)
            os.rename(spare, self.ltx_path(newest + 1, max_txid))
            log.info(
                "%s: recovered LTX file %s from a spare", self.name, format_filename(newest + 1, max_txid)
            )
            newest = max_txid
        for _, spare in found.values():
            log.warning(
                "%s: deleting spare LTX file %s: not the next TXID", self.name, os.path.basename(spare)
            )
            os.unlink(spare)
        fsync_dir(self.ltx_dir)

    def recover(self) -> None:
        """Bring the database to a consistent state at startup (LiteFS ``DB.Open``, §4.10).

        1. read the database header; 2. create ``ltx/``, remove ``shm`` and temp files; 3. verify the
        newest LTX file completely; 4. (WAL reconciliation: see the WAL issue); 5. roll back a hot
        journal; 6. build the page checksums; 7. re-apply the newest LTX file and require the database
        checksum to equal its post-apply checksum. Raises RecoveryError with LiteFS's messages. On a
        replica whose newest history is a snapshot, step 7 checks the content against the snapshot's
        record instead (litefs.store.snaprecord), after finishing or undoing an interrupted install.
        """
        self._ensure_dirs()
        for kind in (FileKind.SHM,):
            try:
                os.unlink(self.backing_path(kind))
            except FileNotFoundError:
                pass
        for fname in os.listdir(self.ltx_dir):
            if fname.endswith(TMP_SUFFIX):
                os.unlink(os.path.join(self.ltx_dir, fname))
        self._recover_spares()
        # A replica keeps a record of its last snapshot instead of the snapshot's LTX file.
        record = self._recover_snapshot_records()

        # 3. The newest LTX file must be intact.
        files = self.ltx_files()
        if record is not None and files and files[-1][1] <= record.txid:
            # Files that predate the snapshot (an install removes them; none can follow it with
            # a lower TXID): what is left of them is history the snapshot replaced.
            log.warning(
                "%s: removing %d LTX file(s) older than the snapshot at txid %016x",
                self.name,
                len(files),
                record.txid,
            )
            for _, _, path in files:
                os.unlink(path)
            fsync_dir(self.ltx_dir)
            files = []
        if files:
            self._snapshot_base = record  # LTX files continue from it (see _ltx_files_past_content)
            record = None
        last = files[-1] if files else None
        last_header: Header | None = None
        if last is not None:
            try:
                with open(last[2], "rb") as f:
                    dec = Decoder(f)
                    last_header = dec.header
                    dec.verify()
            except (LTXError, OSError) as exc:
                raise RecoveryError(
                    f"open database({self.name!r}): sync wal to ltx: validate ltx: close reader: {exc}"
                ) from exc

        # 5. A hot journal means SQLite was interrupted mid-transaction: undo it.
        if os.path.exists(self.journal_path):
            if os.path.exists(self.db_path):
                with open(self.journal_path, "rb") as jf, open(self.db_path, "r+b") as df:
                    if rollback_journal(jf, df):
                        log.info("%s: rolled back hot journal", self.name)
                        df.flush()
                        os.fsync(df.fileno())
            os.unlink(self.journal_path)
            fsync_dir(self.path)

        # 4. WAL: copy the frames the newest LTX file covers into the database file (store/wal.py).
        wal_recovery = WALRecovery(self)
        wal_recovery.prepare(last_header)

        # 1. The database header (after rollback: the file now holds committed content only).
        self.page_size = 0
        self.page_count = 0
        present = 0
        if os.path.exists(self.db_path):
            with open(self.db_path, "rb") as f:
                raw = f.read(DATABASE_HEADER_SIZE)
                size = os.fstat(f.fileno()).st_size
            if raw:
                try:
                    hdr = DatabaseHeader.parse(raw)
                except SQLiteFormatError:
                    hdr = None
                if hdr is None and last_header is None and record is None:
                    log.warning("%s: invalid database header and no LTX files: resetting", self.name)
                    os.truncate(self.db_path, 0)
                elif hdr is not None:
                    self.page_size = hdr.page_size
                    self.page_count = hdr.page_count
                    present = min(hdr.page_count, size // hdr.page_size)
        newest = last_header or (record.header if record is not None else None)
        if newest is not None:
            if self.page_size and self.page_size != newest.page_size:
                raise RecoveryError(
                    f"open database({self.name!r}): page size {self.page_size} does not match "
                    f"LTX page size {newest.page_size}"
                )
            self.page_size = newest.page_size

        # 6. Page checksums of what is on disk (a short file is tolerated: the LTX may fill it).
        if self.page_size:
            self.tracker = ChecksumTracker(self.page_size)
            if present:
                with open(self.db_path, "rb") as f:
                    self.tracker.load_from_file(f, present)
        else:
            self.tracker = None

        # 7. Re-apply the newest LTX file and check the result. When the content is an older LTX
        # file's state instead (un-fsynced WAL frames lost to a power cut while their LTX files
        # survived), every LTX file past that state is re-applied in order.
        self.pos = Pos(0, 0)
        if last is not None and last_header is not None:
            chain = self._ltx_files_past_content(files)
            for path, header in chain or [(last[2], last_header)]:
                self._reapply(path, header)
        elif record is not None:
            self._adopt_snapshot_record(record)
        elif self.tracker is not None and self.page_count:
            log.warning("%s: database has no LTX files; the next commit will be a snapshot", self.name)
        # 4b. WAL transactions past the newest LTX file get their LTX files; the WAL is then removed.
        wal_recovery.finish()
        self._dirty.clear()
        self._db_synced = True

    def _recover_snapshot_records(self) -> SnapshotRecord | None:
        """Finish or undo a snapshot install a crash interrupted; return the snapshot record, if any.

        A pending record is the install's first step: when the database file already is its state
        (the rename happened), the install is finished (older LTX files removed, the record put in
        place); otherwise the pending record is dropped and the old state stands. An unreadable
        record is dropped with a warning: the position is then the newest LTX file's, or unknown.
        """
        pending_path = os.path.join(self.ltx_dir, PENDING_NAME)
        pending = self._read_snapshot_record(pending_path)
        if pending is not None:
            if self._file_is_state_of(pending):
                log.warning(
                    "%s: finishing the install of the snapshot at txid %016x interrupted by a restart",
                    self.name,
                    pending.txid,
                )
                for _, _, path in self.ltx_files():
                    os.unlink(path)
                os.rename(pending_path, self.snapshot_record_path)
                fsync_dir(self.ltx_dir)
            else:
                log.info("%s: dropping an unfinished snapshot install (txid %016x)", self.name, pending.txid)
                os.unlink(pending_path)
        return self._read_snapshot_record(self.snapshot_record_path)

    def _read_snapshot_record(self, path: str) -> SnapshotRecord | None:
        try:
            return read_record(path)
        except (SnapshotRecordError, OSError) as exc:
            log.warning("%s: ignoring %s", self.name, exc)
            remove_quietly(path)
            return None

    def _file_is_state_of(self, record: SnapshotRecord) -> bool:
        """True when the database file holds exactly the pages a snapshot record describes."""
        h = record.header
        try:
            with open(self.db_path, "rb") as f:
                if os.fstat(f.fileno()).st_size != h.commit * h.page_size:
                    return False
                return (
                    ChecksumTracker.from_file(f, h.page_size, h.commit).checksum == record.post_apply_checksum
                )
        except (OSError, LTXError):
            return False

    def _adopt_snapshot_record(self, record: SnapshotRecord) -> None:
        """Step 7 when the last snapshot's record is the newest history: the content must be its state."""
        h = record.header
        size = os.path.getsize(self.db_path) if os.path.exists(self.db_path) else 0
        actual = 0
        if size == h.commit * h.page_size:
            if self.tracker is None or self.page_count != h.commit:
                self.tracker = ChecksumTracker.from_file(self.db_path, h.page_size, h.commit)
            self.page_count = h.commit
            actual = self.tracker.checksum
        if actual != record.post_apply_checksum:
            raise RecoveryError(
                f"open database({self.name!r}): recover snapshot: database file ({size} bytes, checksum "
                f"{actual:016x}) is not the snapshot at TXID {h.max_txid:016x} ({h.commit} pages, "
                f"checksum {record.post_apply_checksum:016x}) recorded in {self.snapshot_record_path}"
            )
        self.pos = Pos(h.max_txid, record.post_apply_checksum)
        self.timestamp_ms = h.timestamp

    def _ltx_files_past_content(self, files: list[tuple[int, int, str]]) -> list[tuple[str, Header]] | None:
        """The LTX files that lead from the database content to the newest file, oldest first.

        None when the content already is the newest file's state (or its pre-apply state, the usual
        case after a hot journal was rolled back), or when no LTX file's post-apply checksum matches
        the content: then only the newest file is re-applied, which fails with LiteFS's message if
        the content is inconsistent. Every file of the chain is verified completely before any page
        of it is written.
        """
        if self.tracker is None or len(files) < 2:
            return None
        try:
            content = self.tracker.checksum
        except LTXError:
            return None  # pages missing from the file: not any LTX file's state
        chain: list[tuple[str, Header]] = []
        for _, _, path in reversed(files):
            try:
                header, post = _ltx_header_and_post(path)
            except (LTXError, OSError):
                return None
            if header.page_size != self.page_size or header.commit == 0:
                return None
            if post == content:
                break
            chain.append((path, header))
        else:
            # The content may be the state of the last snapshot (its record), which every LTX file
            # continues; anything else matches no state.
            base = self._snapshot_base
            if base is None or base.post_apply_checksum != content or files[0][0] != base.txid + 1:
                return None
        if len(chain) <= 1:
            return None
        chain.reverse()
        for path, _ in chain:
            try:
                with open(path, "rb") as f:
                    Decoder(f).verify()
            except (LTXError, OSError) as exc:
                raise RecoveryError(
                    f"open database({self.name!r}): verify {os.path.basename(path)}: {exc}"
                ) from exc
        log.warning(
            "%s: database content is the state after TXID %016x, behind the newest LTX file "
            "(TXID %016x): re-applying %d LTX files",
            self.name,
            chain[0][1].min_txid - 1,
            chain[-1][1].max_txid,
            len(chain),
        )
        return chain

    def _reapply(self, path: str, header: Header) -> None:
        assert self.tracker is not None
        if header.commit == 0:  # the database was dropped
            self.tracker.truncate(0)
            self.page_count = 0
            self.pos = Pos(header.max_txid, EMPTY_DATABASE_CHECKSUM)
            self.timestamp_ms = header.timestamp
            return
        if not os.path.exists(self.db_path):
            open(self.db_path, "ab").close()
        fd = os.open(self.db_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            with open(path, "rb") as f:
                dec = Decoder(f)
                _write_pages(fd, header.page_size, dec.pages(), self.tracker)
                trailer = dec.trailer
                assert trailer is not None
            os.ftruncate(fd, header.commit * header.page_size)
            self.tracker.truncate(header.commit)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            actual = self.tracker.checksum if header.commit else EMPTY_DATABASE_CHECKSUM
        except LTXError:
            actual = 0  # pages missing from the file that the LTX file does not restore
        if actual != trailer.post_apply_checksum:
            raise RecoveryError(
                f"open database({self.name!r}): recover ltx: database checksum {actual:016x} on TXID "
                f"{header.max_txid:016x} does not match LTX post-apply checksum "
                f"{trailer.post_apply_checksum:016x}"
            )
        self.page_count = header.commit
        self.pos = Pos(header.max_txid, trailer.post_apply_checksum)
        self.timestamp_ms = header.timestamp

    # -- recovery on a role change (LiteFS Store.Recover) ------------------------------------------

    def recover_files(self, wal_pages: dict[int, int]) -> RoleRecovery:
        """Undo what an interrupted writer left and move committed WAL frames into the database file.

        Runs in a worker thread while the caller holds SQLite's locks through the mount (no client
        reads or writes) and the node is not accepting writes, so nothing else changes the files.
        ``wal_pages`` is a copy of the committed WAL overlay (page -> WAL offset of its newest
        committed frame). Only files change here; :meth:`finish_recovery` updates the in-memory state
        on the node's thread. When a file changed, the content is then checked against the position.
        """
        out = RoleRecovery()
        # LTX files of WAL commits are not fsynced at commit (the WAL could rebuild them): they must
        # be durable before their frames leave the WAL below.
        self.wal.before_checkpoint_write()
        if os.path.exists(self.journal_path) and os.path.exists(self.db_path):
            with open(self.journal_path, "rb") as jf, open(self.db_path, "r+b") as df:
                hot = rollback_journal(jf, df)
                if hot:
                    os.fsync(df.fileno())
            if hot:
                os.unlink(self.journal_path)
                fsync_dir(self.path)
                out.actions.append("rolled back a hot journal")
        wal_path = self.backing_path(FileKind.WAL)
        header = self.wal.header
        if wal_pages and header is not None and self.page_count:
            # The committed frames are this node's position (each has its LTX file): checkpoint them,
            # as SQLite would, so the database file alone holds the position's content.
            ps = header.page_size
            with open(wal_path, "rb") as wf, open(self.db_path, "r+b") as df:
                for pgno in sorted(wal_pages):
                    if pgno > self.page_count:
                        continue
                    wf.seek(wal_pages[pgno])
                    data = wf.read(ps)
                    if len(data) < ps:
                        raise StoreError(f"{self.name}: WAL frame of page {pgno} is short")
                    df.seek((pgno - 1) * ps)
                    df.write(data)
                df.truncate(self.page_count * ps)
                df.flush()
                os.fsync(df.fileno())
            out.actions.append(f"checkpointed {len(wal_pages)} WAL pages")
        try:
            out.wal_size = os.path.getsize(wal_path)
        except FileNotFoundError:
            out.wal_size = 0
        # Re-reading the whole database is only needed when recovery changed its file: otherwise the
        # content is what the position already describes, and a handoff stays a matter of milliseconds.
        if (
            out.actions
            and self.pos.txid
            and self.page_size
            and self.page_count
            and os.path.exists(self.db_path)
        ):
            try:
                actual = database_checksum(self.db_path, self.page_size, self.page_count)
            except LTXError as exc:
                raise StoreError(f"{self.name}: verify after recovery: {exc}") from exc
            if actual != self.pos.post_apply_checksum:
                tracker = ChecksumTracker(self.page_size)
                with open(self.db_path, "rb") as f:
                    tracker.load_from_file(f, self.page_count)
                out.mismatch = (actual, tracker)
        return out

    def finish_recovery(self, result: RoleRecovery) -> None:
        """The node's-thread half of :meth:`recover_files` (still under the same locks)."""
        if result.wal_size:
            # Frames past the last commit belonged to a transaction that never committed: dropped
            # with the rest. SQLite starts a new WAL generation at offset 0.
            os.truncate(self.backing_path(FileKind.WAL), 0)
            result.actions.append(f"emptied the WAL ({result.wal_size} bytes)")
        self.wal.reset()
        self.wal.unsynced.clear()
        self._dirty.clear()
        self.external_mtime_ns = time.time_ns()
        if result.mismatch is not None:
            actual, tracker = result.mismatch
            # The content is what it is; the position now says so. A replica's position then
            # differs from the primary's and it gets a snapshot; a primary's next LTX file chains
            # from the real content.
            log.error(
                "%s: after recovery the database checksum is %016x, the position says %s: "
                "taking the content's checksum",
                self.name,
                actual,
                self.pos,
            )
            self.tracker = tracker
            self.pos = Pos(self.pos.txid, actual)

    # -- info ----------------------------------------------------------------------------------

    def pos_text(self) -> bytes:
        """Content of ``<db>-pos``."""
        return f"{self.pos.txid:016x}/{self.pos.post_apply_checksum:016x}\n".encode()

    def info(self) -> dict[str, object]:
        return {
            "name": self.name,
            "txid": f"{self.pos.txid:016x}",
            "checksum": f"{self.pos.post_apply_checksum:016x}",
            "pageSize": self.page_size,
            "pageCount": self.page_count,
            "stats": {
                "commits": self.stats.commits,
                "ltxBytes": self.stats.ltx_bytes,
                "pagesWritten": self.stats.pages_written,
                "rollbacksIgnored": self.stats.rollbacks_ignored,
                "commitSeconds": round(self.stats.commit_seconds, 6),
            },
        }


__all__ = [
    "CommitError",
    "CommitResult",
    "Database",
    "HaltForwardError",
    "ReadOnlyError",
    "RecoveryError",
    "RoleRecovery",
    "StoreError",
    "VerifyError",
]
