"""pyfuse3 ``Operations`` for the LiteFS mount: maps FUSE calls to the store and nothing else.

Design rules (measured in fuse-perf.md):

* Handlers run inline on the trio thread and never await, so one pyfuse3 worker task suffices
  (``max_tasks=1``) and a request costs no thread hop. Two exceptions, both for HALT locks (write
  forwarding from a replica): opening ``<db>-lock`` for writing waits for the lock (with an extra
  worker meanwhile, fuse/workers.py), and a commit under a HALT lock runs in a worker thread while
  its LTX file goes to the primary.
* Every handler is wrapped: OSError becomes its errno, store errors their LiteFS errno, anything else
  EIO plus a log line -- an escaping exception would kill the mount.
* The kernel answers as much as possible from its caches: explicit (never 0) entry/attr timeouts,
  negative dentries for missing ``-journal``/``-wal``/``-shm`` (SQLite checks for a hot journal on
  every read transaction), keep_cache for the database. ``-journal`` and ``-wal`` are opened
  direct_io so their writes arrive exactly as SQLite issued them (commit detection depends on it);
  ``-shm`` never is (direct_io breaks MAP_SHARED).
* Whenever the node changes files behind the kernel (import, replica apply) it calls
  :meth:`LiteFSOperations.invalidate_db` from a worker thread.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio

from litefs.fuse.workers import ExtraWorkers
from litefs.store import (
    CommitError,
    Database,
    FileKind,
    HaltForwardError,
    InvalidNameError,
    ReadOnlyError,
    Store,
    StoreError,
    filename,
    parse_filename,
)
from litefs.store.fsutil import fsync_dir
from litefs.store.names import LAG_FILENAME, PRIMARY_FILENAME

log = logging.getLogger("litefs.fuse")

ROOT_INODE = pyfuse3.ROOT_INODE
LAG_INODE = ROOT_INODE + 1
PRIMARY_INODE = ROOT_INODE + 2
_FIRST_DYNAMIC_INODE = ROOT_INODE + 16

#: Seconds the kernel may trust attributes and dentries of real files. Never 0: with 0 every cached
#: read() costs a GETATTR round trip (85 us instead of 2 us).
ATTR_TIMEOUT = 10.0
ENTRY_TIMEOUT = 10.0
#: Seconds a "no such file" answer for -journal/-wal/-shm (and unknown names) is cached.
NEGATIVE_TIMEOUT = 10.0
#: Synthesised files change under the kernel all the time; keep their attributes short-lived.
SPECIAL_ATTR_TIMEOUT = 0.1

POS_SIZE = 34
LAG_SIZE = 11

#: File kinds opened with direct_io: every write reaches us exactly as issued.
DIRECT_IO_KINDS = frozenset({FileKind.JOURNAL, FileKind.WAL, FileKind.POS, FileKind.LOCK})


@dataclass
class Handle:
    """An open file of the mount."""

    kind: FileKind | None
    db: Database | None
    fd: int = -1
    content: bytes = b""
    """Snapshot of a synthesised file taken at open (-pos, .lag, .primary)."""
    halt_id: int | None = None
    """``<db>-lock`` opened for writing on a replica: the HALT lock this handle holds."""


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every failure of a handler into an errno; count requests per operation."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: LiteFSOperations, *args: Any, **kwargs: Any) -> Any:
        self.counters[name] += 1
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except ReadOnlyError as exc:
            if exc.loud:
                log.warning("fuse: %s(): %s", name, exc)
            raise pyfuse3.FUSEError(errno.EACCES) from exc
        except HaltForwardError as exc:
            # The primary refused a commit made under a HALT lock: SQLite sees an I/O error and
            # the node rolls the transaction back (not fatal).
            log.warning("fuse: %s(): %s", name, exc)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        except CommitError as exc:
            log.error("fuse: %s(): %s", name, exc)
            self.fatal(exc)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc
        except StoreError as exc:
            log.error("fuse: %s(): %s", name, exc)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        except Exception as exc:
            log.exception("fuse: %s() failed", name)
            raise pyfuse3.FUSEError(errno.EIO) from exc

    return wrapper


class LiteFSOperations(pyfuse3.Operations):
    """The flat LiteFS namespace over a :class:`~litefs.store.Store`."""

    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, store: Store, *, on_fatal: Callable[[BaseException], None] | None = None) -> None:
        super().__init__()
        self.store = store
        self.counters: Counter[str] = Counter()
        self._on_fatal = on_fatal
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._started_ns = time.time_ns()
        self._inodes: dict[tuple[str, FileKind], int] = {}
        self._keys: dict[int, tuple[str, FileKind]] = {}
        self._next_inode = _FIRST_DYNAMIC_INODE
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._dirty_dirs: set[str] = set()
        #: Extra pyfuse3 workers while a request waits for a HALT lock (see fuse/workers.py).
        self.workers = ExtraWorkers()
        #: The node's replica-side HALT locks (litefs.replication.halt.ReplicaHalts); None in tests
        #: that run the operations without a node.
        self.halts: Any = None

    # -- helpers -------------------------------------------------------------------------------

    def fatal(self, exc: BaseException) -> None:
        if self._on_fatal is not None:
            self._on_fatal(exc)

    def inode_of(self, db: str, kind: FileKind) -> int:
        key = (db, kind)
        ino = self._inodes.get(key)
        if ino is None:
            ino = self._next_inode
            self._next_inode += 1
            self._inodes[key] = ino
            self._keys[ino] = key
        return ino

    def _key(self, inode: int) -> tuple[Database, FileKind]:
        key = self._keys.get(inode)
        if key is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        db = self.store.db(key[0])
        if db is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return db, key[1]

    def _new_handle(self, handle: Handle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> Handle:
        h = self._handles.get(fh)
        if h is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return h

    def _file_mode(self, kind: FileKind) -> int:
        if kind is FileKind.LOCK:
            return stat.S_IFREG | 0o444
        if kind is FileKind.DATABASE and not self.store.is_primary:
            return stat.S_IFREG | 0o444
        return stat.S_IFREG | 0o666

    def _db_mode(self, db: Database) -> int:
        if not self.store.is_primary and db.remote_halt is None:
            return stat.S_IFREG | 0o444
        return stat.S_IFREG | 0o666

    def _attrs(
        self, inode: int, mode: int, size: int, mtime_ns: int, timeout: float
    ) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = inode
        e.generation = 0
        e.entry_timeout = timeout
        e.attr_timeout = timeout
        e.st_mode = mode
        e.st_nlink = 1
        e.st_uid = self._uid
        e.st_gid = self._gid
        e.st_rdev = 0
        e.st_size = size
        e.st_blksize = 4096
        e.st_blocks = (size + 511) // 512
        e.st_atime_ns = mtime_ns
        e.st_mtime_ns = mtime_ns
        e.st_ctime_ns = mtime_ns
        return e

    @staticmethod
    def _negative() -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = 0
        e.entry_timeout = NEGATIVE_TIMEOUT
        return e

    def _root_attrs(self) -> pyfuse3.EntryAttributes:
        # A replica holding a HALT lock creates journals: writable then too.
        writable = self.store.is_primary or any(db.remote_halt is not None for db in self.store.dbs())
        mode = stat.S_IFDIR | (0o777 if writable else 0o555)
        e = self._attrs(ROOT_INODE, mode, 0, self._started_ns, SPECIAL_ATTR_TIMEOUT)
        e.st_nlink = 2
        return e

    def _lag_content(self) -> bytes:
        # On the primary the lag is zero; replicas fill this in once replication exists.
        if self.store.is_primary:
            return b"+000000000\n"
        return b"+2147483647\n"

    def _primary_content(self) -> bytes | None:
        if self.store.is_primary or not self.store.primary_hostname:
            return None
        return (self.store.primary_hostname + "\n").encode()

    def _file_attrs(self, db: Database, kind: FileKind, inode: int) -> pyfuse3.EntryAttributes | None:
        """Attributes of a database file, or None if it does not exist."""
        if kind is FileKind.POS:
            if not db.exists():
                return None
            mtime = db.timestamp_ms * 1_000_000 or self._started_ns
            return self._attrs(inode, stat.S_IFREG | 0o666, POS_SIZE, mtime, SPECIAL_ATTR_TIMEOUT)
        if kind is FileKind.LOCK:
            if not db.exists():
                return None
            return self._attrs(inode, stat.S_IFREG | 0o444, 0, self._started_ns, SPECIAL_ATTR_TIMEOUT)
        try:
            st = os.stat(db.backing_path(kind))
        except FileNotFoundError:
            return None
        mtime = st.st_mtime_ns
        if kind is FileKind.DATABASE:
            # The kernel drops its page cache (auto_inval_data) whenever it sees a new mtime. Writes
            # through the mount keep that cache correct, so only changes made behind the kernel move
            # the reported mtime (and those are invalidated explicitly anyway): this saves two
            # re-reads per write transaction.
            mtime = db.external_mtime_ns
        size = st.st_size
        if kind is FileKind.JOURNAL:
            size = db.journal_size(size)
        mode = self._db_mode(db) if kind is FileKind.DATABASE else self._file_mode(kind)
        return self._attrs(inode, mode, size, mtime, ATTR_TIMEOUT)

    def _special_attrs(self, inode: int) -> pyfuse3.EntryAttributes | None:
        if inode == LAG_INODE:
            return self._attrs(inode, stat.S_IFREG | 0o444, LAG_SIZE, time.time_ns(), SPECIAL_ATTR_TIMEOUT)
        if inode == PRIMARY_INODE:
            content = self._primary_content()
            if content is None:
                return None
            return self._attrs(
                inode, stat.S_IFREG | 0o444, len(content), time.time_ns(), SPECIAL_ATTR_TIMEOUT
            )
        return None

    def _parse(self, name: bytes) -> tuple[str, FileKind]:
        try:
            return parse_filename(os.fsdecode(name))
        except InvalidNameError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    async def _committing(self, db: Database, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store call that may commit. Under a remote HALT lock the commit waits for the
        primary (``/tx``), so it runs in a worker thread while the trio loop serves that request."""
        if db.forward_ltx is None or self.halts is None:
            return fn(*args)
        in_flight = self.halts.in_flight
        in_flight[db.name] = in_flight.get(db.name, 0) + 1
        try:
            with trio.CancelScope(shield=True):  # a commit is never abandoned halfway
                return await trio.to_thread.run_sync(fn, *args)
        finally:
            in_flight[db.name] -= 1

    # -- lookups and attributes ----------------------------------------------------------------

    @_guard
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if parent_inode != ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if name == LAG_FILENAME.encode():
            return self._special_attrs(LAG_INODE)
        if name == PRIMARY_FILENAME.encode():
            attrs = self._special_attrs(PRIMARY_INODE)
            if attrs is None:
                raise pyfuse3.FUSEError(errno.ENOENT)  # changes with the role: not cached
            return attrs
        dbname, kind = self._parse(name)
        db = self.store.db(dbname)
        if db is None:
            return self._negative()
        attrs = self._file_attrs(db, kind, self.inode_of(dbname, kind))
        return attrs if attrs is not None else self._negative()

    @_guard
    async def forget(self, inode_list: Any) -> None:
        # Inode numbers are stable per name for the life of the mount: nothing to free.
        return None

    @_guard
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if inode == ROOT_INODE:
            return self._root_attrs()
        if inode in (LAG_INODE, PRIMARY_INODE):
            attrs = self._special_attrs(inode)
        else:
            db, kind = self._key(inode)
            attrs = self._file_attrs(db, kind, inode)
        if attrs is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return attrs

    @_guard
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: Any,
    ) -> pyfuse3.EntryAttributes:
        if inode in (ROOT_INODE, LAG_INODE, PRIMARY_INODE):
            raise pyfuse3.FUSEError(errno.EPERM)
        db, kind = self._key(inode)
        handle = self._handles.get(fh) if fh is not None else None
        fd = handle.fd if handle is not None and handle.fd >= 0 else None
        if fields.update_size:
            size = attr.st_size
            if kind is FileKind.DATABASE:
                db.truncate_database(size, fd)
            elif kind is FileKind.JOURNAL:
                await self._committing(db, db.truncate_journal, size, fd)
            elif kind is FileKind.WAL:
                db.truncate_wal(size, fd)
            elif kind is FileKind.SHM:
                if fd is not None:
                    os.ftruncate(fd, size)
                else:
                    os.truncate(db.backing_path(kind), size)
            elif kind is FileKind.LOCK and size == 0:
                pass  # open(<db>-lock, "w") truncates an always-empty file: allow it
            else:
                raise pyfuse3.FUSEError(errno.EPERM)
        if (fields.update_atime or fields.update_mtime) and kind in (
            FileKind.DATABASE,
            FileKind.JOURNAL,
            FileKind.WAL,
            FileKind.SHM,
        ):
            st = os.stat(db.backing_path(kind))
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            os.utime(db.backing_path(kind), ns=(atime, mtime))
        # Mode and ownership are fixed by LiteFS: silently keep them.
        attrs = self._file_attrs(db, kind, inode)
        if attrs is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return attrs

    # -- directory -----------------------------------------------------------------------------

    # The kernel asks for the root directory's handle, and SQLite syncs the directory, on every
    # rollback-journal transaction (it opens the journal with O_CREAT, and that marks it for a
    # directory sync): three requests per commit. Answering ENOSYS to opendir and fsyncdir makes
    # the kernel stop sending them for this mount (it then treats both as successful); readdir
    # works without a handle, and a directory whose entries changed is made durable at the next
    # fsync of a file in it instead -- which is exactly when SQLite would have synced it.

    @_guard
    async def opendir(self, inode: int, ctx: Any) -> int:
        if inode != ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        raise pyfuse3.FUSEError(errno.ENOSYS)

    def _listing(self) -> list[tuple[bytes, pyfuse3.EntryAttributes]]:
        out: list[tuple[bytes, pyfuse3.EntryAttributes]] = []
        out.append((LAG_FILENAME.encode(), self._special_attrs(LAG_INODE)))
        primary = self._special_attrs(PRIMARY_INODE)
        if primary is not None:
            out.append((PRIMARY_FILENAME.encode(), primary))
        for db in self.store.dbs():
            if db.page_count == 0:
                continue  # deleted, or never committed: hidden as in LiteFS
            for kind in (FileKind.DATABASE, FileKind.POS, FileKind.JOURNAL, FileKind.SHM, FileKind.WAL):
                attrs = self._file_attrs(db, kind, self.inode_of(db.name, kind))
                if attrs is not None:
                    out.append((filename(db.name, kind).encode(), attrs))
        return out

    @_guard
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        entries = self._listing()
        for i in range(start_id, len(entries)):
            name, attrs = entries[i]
            if not pyfuse3.readdir_reply(token, name, attrs, i + 1):
                break

    @_guard
    async def releasedir(self, fh: int) -> None:
        return None

    @_guard
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        self._sync_dirty_dirs()  # this one call is still honoured
        raise pyfuse3.FUSEError(errno.ENOSYS)

    def _sync_dirty_dirs(self) -> None:
        """Make created and removed backing entries durable (see opendir)."""
        dirs, self._dirty_dirs = self._dirty_dirs, set()
        for path in dirs:
            fsync_dir(path)

    @_guard
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)  # flat namespace (LiteFS answers EPERM too)

    @_guard
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        raise pyfuse3.FUSEError(errno.EPERM)

    @_guard
    async def rename(self, *args: Any) -> None:
        raise pyfuse3.FUSEError(errno.EIO)

    @_guard
    async def link(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EIO)

    @_guard
    async def symlink(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EIO)

    @_guard
    async def mknod(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EIO)

    @_guard
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        st = os.statvfs(self.store.data_dir)
        out = pyfuse3.StatvfsData()
        for key in (
            "f_bsize",
            "f_frsize",
            "f_blocks",
            "f_bfree",
            "f_bavail",
            "f_files",
            "f_ffree",
            "f_favail",
        ):
            setattr(out, key, getattr(st, key))
        out.f_namemax = st.f_namemax
        return out

    # -- files ---------------------------------------------------------------------------------

    @staticmethod
    def _backing_flags(flags: int) -> int:
        # O_DIRECT on the backing file would make SQLite's unaligned buffers fail with EINVAL.
        return flags & ~(os.O_DIRECT | os.O_CREAT | os.O_EXCL | os.O_NOCTTY)

    def _file_info(self, fh: int, kind: FileKind | None) -> pyfuse3.FileInfo:
        fi = pyfuse3.FileInfo()
        fi.fh = fh
        fi.direct_io = kind in DIRECT_IO_KINDS or kind is None
        fi.keep_cache = kind is FileKind.DATABASE or kind is FileKind.SHM
        return fi

    @_guard
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        if inode in (LAG_INODE, PRIMARY_INODE):
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise pyfuse3.FUSEError(errno.EACCES)
            content = self._lag_content() if inode == LAG_INODE else self._primary_content()
            if content is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._file_info(self._new_handle(Handle(None, None, content=content)), None)
        db, kind = self._key(inode)
        if kind is FileKind.POS:
            h = Handle(kind, db, content=db.pos_text())
        elif kind is FileKind.LOCK:
            h = Handle(kind, db)
            if flags & os.O_ACCMODE != os.O_RDONLY:
                # Opening <db>-lock for writing takes the HALT lock (pyfuse3 never sees the byte-72
                # lock LiteFS clients take): the open returns once it is held; the last close of
                # this handle releases it. A no-op on the primary.
                h.halt_id = await self._take_halt(db)
        else:
            # Replicas may open the database read-write, as in LiteFS: the writes then fail.
            h = Handle(kind, db, fd=db.open_file(kind, self._backing_flags(flags)))
        return self._file_info(self._new_handle(h), kind)

    @_guard
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        if parent_inode != ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if name in (LAG_FILENAME.encode(), PRIMARY_FILENAME.encode()):
            raise pyfuse3.FUSEError(errno.EACCES)
        dbname, kind = self._parse(name)
        if kind in (FileKind.POS, FileKind.LOCK):
            # LiteFS says ENOSYS, but from create() the kernel takes ENOSYS as "create is not
            # implemented" and falls back to mknod+open for every later create of the mount.
            raise pyfuse3.FUSEError(errno.EPERM)
        if kind is FileKind.DATABASE:
            db = self.store.create_db(dbname)
        else:
            db = self.store.db(dbname)
            if db is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
        fd = db.open_file(kind, self._backing_flags(flags) | os.O_CREAT, 0o644)
        self._dirty_dirs.add(db.path)
        fh = self._new_handle(Handle(kind, db, fd=fd))
        inode = self.inode_of(dbname, kind)
        attrs = self._file_attrs(db, kind, inode)
        assert attrs is not None
        return self._file_info(fh, kind), attrs

    async def _take_halt(self, db: Database) -> int | None:
        if self.halts is None:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        from litefs.replication.halt import HaltError

        try:
            async with self.workers.waiting():
                lock = await self.halts.acquire(db.name)
        except HaltError as exc:
            log.warning("fuse: halt lock on %s: %s", db.name, exc)
            raise pyfuse3.FUSEError(errno.EIO) from exc
        except trio.Cancelled:
            raise pyfuse3.FUSEError(errno.EAGAIN) from None
        return None if lock is None else lock.id

    @_guard
    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self._handle(fh)
        if h.fd >= 0:
            if h.kind is FileKind.JOURNAL and h.db.journal_visible_size is not None:
                size = max(0, min(size, h.db.journal_visible_size - off))  # past the shown end
            return os.pread(h.fd, size, off)
        return h.content[off : off + size]

    @_guard
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self._handle(fh)
        kind, db = h.kind, h.db
        if kind is FileKind.DATABASE:
            db.write_stats.database_writes += 1
            return db.write_database(h.fd, off, buf)
        if kind is FileKind.JOURNAL:
            db.write_stats.journal_writes += 1
            return await self._committing(db, db.write_journal, h.fd, off, buf)
        if kind is FileKind.WAL:
            db.write_stats.wal_writes += 1
            # A completed commit frame becomes an LTX file first.
            return await self._committing(db, db.write_wal, h.fd, off, buf)
        if kind is FileKind.SHM:
            db.write_stats.shm_writes += 1
            return os.pwrite(h.fd, buf, off)
        raise pyfuse3.FUSEError(errno.EIO if kind is FileKind.LOCK else errno.EPERM)

    @_guard
    async def flush(self, fh: int) -> None:
        return None

    @_guard
    async def fsync(self, fh: int, datasync: bool) -> None:
        h = self._handle(fh)
        if h.fd < 0:
            return
        if self._dirty_dirs:
            self._sync_dirty_dirs()
        if h.kind is FileKind.DATABASE:
            h.db.sync_database(h.fd, datasync)
        elif h.kind is FileKind.WAL:
            h.db.wal.sync(datasync, h.fd)  # maybe started with the commit (store/syncproc.py)
        else:
            (os.fdatasync if datasync else os.fsync)(h.fd)

    @_guard
    async def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is not None and h.fd >= 0:
            h.db.close_file(h.fd)
        if h is not None and h.halt_id is not None and self.halts is not None:
            # The last close of the handle (also when its process died): the database is
            # read-only again at once; recovery and the DELETE /halt run in the background.
            self.halts.release_soon(h.db.name, h.halt_id)

    @_guard
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        if parent_inode != ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOENT)
        dbname, kind = self._parse(name)
        db = self.store.db(dbname)
        if db is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if kind is FileKind.JOURNAL:
            await self._committing(db, db.remove_journal)
        elif kind in (FileKind.WAL, FileKind.SHM):
            db.remove_file(kind)
        elif kind is FileKind.DATABASE:
            if not self.store.is_primary:
                raise pyfuse3.FUSEError(errno.EACCES)
            self.store.drop_db(dbname)
        else:
            raise pyfuse3.FUSEError(errno.EPERM)
        self._dirty_dirs.add(db.path)

    # -- invalidation (call from a worker thread: it can block in the kernel) --------------------

    def invalidate_db_sync(self, name: str) -> None:
        """Drop the kernel's cached data, attributes and dentries of every file of a database."""
        for kind in FileKind:
            ino = self._inodes.get((name, kind))
            if ino is not None:
                try:
                    pyfuse3.invalidate_inode(ino, attr_only=False)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
            try:
                pyfuse3.invalidate_entry(ROOT_INODE, filename(name, kind).encode())
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EBADF):
                    raise

    def invalidate_attrs_sync(self, name: str, kind: FileKind) -> None:
        """Drop the kernel's cached attributes of one file (its mode changes with a HALT lock)."""
        ino = self._inodes.get((name, kind))
        if ino is None:
            return
        try:
            pyfuse3.invalidate_inode(ino, attr_only=True)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def invalidate_data_sync(self, name: str, kind: FileKind) -> None:
        """Drop the kernel's cached pages of one file of a database (mmaps fault them in again).

        Dirty pages of shared mappings are written back to us first (FUSE launders them), so
        calling this before rewriting ``-shm`` behind the kernel keeps stale write-back from landing
        on top of the new bytes.
        """
        ino = self._inodes.get((name, kind))
        if ino is None:
            return
        try:
            pyfuse3.invalidate_inode(ino, attr_only=False)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
