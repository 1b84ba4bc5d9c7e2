"""Incremental database checksum: per-page checksums plus per-block XOR aggregates.

A commit costs work proportional to the pages it changes: setting a page XORs its old checksum out of
the running total and the new one in; truncation XORs out whole 256-page blocks at once. The state can be
saved to a file and loaded on restart, so a large database need not be re-read (LiteFS issue #446).

Validating a saved state (the caller's job -- the file alone cannot know whether the database changed
since it was written): save it with ``meta`` describing the database file at that moment, e.g.
``{"size": st.st_size, "mtime_ns": st.st_mtime_ns, "txid": pos.txid}``, right after a commit or at clean
shutdown. On restart, call :meth:`ChecksumTracker.load` with ``expected=(page_size, commit, checksum)``
where ``checksum`` is the post-apply checksum of the newest LTX file (the position LiteFS trusts) and
``meta`` rebuilt from ``os.stat`` of the database now. Any difference raises ``LTXError``: fall back to
:meth:`ChecksumTracker.load_from_file`. Delete the state file before modifying the database outside
the tracker's knowledge (recovery, rollback) so a crash cannot leave a stale-but-matching state.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from array import array
from functools import reduce
from operator import xor
from typing import Any, BinaryIO

from litefs.ltx.checksum import CHECKSUM_FLAG, _go_iso, iter_db_pages, lock_pgno, page_checksum
from litefs.ltx.errors import LTXError

BLOCK_SHIFT = 8
BLOCK_PAGES = 1 << BLOCK_SHIFT
"""Pages per aggregate block (LiteFS uses 256 too)."""
_LOW63 = CHECKSUM_FLAG - 1
_STATE_MAGIC = b"LFSCKS01"
_STATE_HEAD = struct.Struct(">8sIIQI")  # magic, page size, commit, checksum, meta length


class ChecksumTracker:
    """Per-page checksums of one database and their running XOR.

    Page numbers run from 1 to :attr:`page_count`. A page whose checksum was never set is "unknown";
    :attr:`checksum` refuses to answer while any page (other than the lock page) is unknown, so a
    forgotten page cannot silently produce a wrong position.
    """

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self._lock = lock_pgno(page_size)
        self._pages = array("Q")  # index pgno-1; 0 = unknown (always 0 for the lock page)
        self._blocks = array("Q")  # XOR of the low 63 bits of each block's page checksums
        self._acc = 0  # XOR of the low 63 bits of every page checksum
        self._unknown = 0  # pages in 1..page_count, lock page excluded, whose checksum is 0

    @property
    def page_count(self) -> int:
        """Database size in pages (the commit)."""
        return len(self._pages)

    @property
    def checksum(self) -> int:
        """``FLAG | XOR`` of the checksums of pages 1..page_count, lock page excluded."""
        if self._unknown:
            missing = next(i + 1 for i, c in enumerate(self._pages) if c == 0 and i + 1 != self._lock)
            raise LTXError(
                f"database checksum unknown: {self._unknown} page(s) never set, first is page {missing}"
            )
        return CHECKSUM_FLAG | self._acc

    def get(self, pgno: int) -> int:
        """Checksum of one page (0 if unknown, or for the lock page)."""
        if not 1 <= pgno <= len(self._pages):
            raise LTXError(f"page {pgno} outside 1..{len(self._pages)}")
        return self._pages[pgno - 1]

    def set_page(self, pgno: int, data: bytes | bytearray | memoryview) -> None:
        """Record the content of page ``pgno``; grows :attr:`page_count` to ``pgno`` if needed."""
        if len(data) != self.page_size:
            raise LTXError(f"page {pgno}: {len(data)} bytes, page size is {self.page_size}")
        self.set_page_checksum(pgno, page_checksum(pgno, data))

    def set_page_checksum(self, pgno: int, cksum: int) -> None:
        """Record a page checksum (as from :func:`page_checksum`, flag included)."""
        if not isinstance(pgno, int) or pgno < 1 or pgno > 0xFFFFFFFF:
            raise LTXError(f"invalid page number {pgno!r}")
        if pgno == self._lock:
            raise LTXError(f"page {pgno} is the lock page: it has no checksum")
        if not isinstance(cksum, int) or not CHECKSUM_FLAG <= cksum <= 0xFFFFFFFFFFFFFFFF:
            raise LTXError(f"page {pgno}: invalid page checksum {cksum!r} (flag bit missing)")
        if pgno > len(self._pages):
            self.truncate(pgno)
        i = pgno - 1
        old = self._pages[i]
        delta = (old ^ cksum) & _LOW63
        self._pages[i] = cksum
        self._blocks[i >> BLOCK_SHIFT] ^= delta
        self._acc ^= delta
        if old == 0:
            self._unknown -= 1

    def set_page_checksums(self, first: int, checksums: list[int]) -> None:
        """Record the checksums of pages ``first, first + 1, ...`` at once: the same result as
        :meth:`set_page_checksum` for each, with the per-page work done by C loops over arrays."""
        n = len(checksums)
        if not n:
            return
        last = first + n - 1
        if not isinstance(first, int) or first < 1 or last > 0xFFFFFFFF:
            raise LTXError(f"invalid page numbers {first!r}..{last}")
        if first <= self._lock <= last:
            raise LTXError(f"page {self._lock} is the lock page: it has no checksum")
        new = array("Q")
        try:
            new.fromlist(checksums)
        except (TypeError, OverflowError) as exc:
            raise LTXError(f"pages {first}..{last}: invalid page checksum ({exc})") from None
        if min(new) < CHECKSUM_FLAG:
            raise LTXError(f"pages {first}..{last}: invalid page checksum (flag bit missing)")
        if last > len(self._pages):
            self.truncate(last)
        i0 = first - 1
        pages, blocks = self._pages, self._blocks
        old = pages[i0 : i0 + n]
        self._unknown -= old.count(0)
        pages[i0 : i0 + n] = new
        acc = self._acc
        start = i0
        while start < i0 + n:
            end = min(i0 + n, ((start >> BLOCK_SHIFT) + 1) << BLOCK_SHIFT)
            s, e = start - i0, end - i0
            delta = (reduce(xor, old[s:e], 0) ^ reduce(xor, new[s:e], 0)) & _LOW63
            blocks[start >> BLOCK_SHIFT] ^= delta
            acc ^= delta
            start = end
        self._acc = acc

    def truncate(self, commit: int) -> None:
        """Set the database size to ``commit`` pages: drop pages past it, or add unknown pages up to it."""
        if not isinstance(commit, int) or not 0 <= commit <= 0xFFFFFFFF:
            raise LTXError(f"invalid commit {commit!r}")
        n = len(self._pages)
        lock = self._lock
        pages, blocks = self._pages, self._blocks
        if commit < n:
            removed_zero = pages[commit:n].count(0) - (1 if commit < lock <= n else 0)
            # Pages in the partially kept block go one by one; whole blocks past it in one XOR each.
            first_whole = -(-commit // BLOCK_PAGES)
            end = min(n, first_whole * BLOCK_PAGES)
            if commit < end:
                x = reduce(xor, pages[commit:end], 0) & _LOW63
                blocks[commit >> BLOCK_SHIFT] ^= x
                self._acc ^= x
            for b in range(first_whole, len(blocks)):
                self._acc ^= blocks[b]
            del pages[commit:]
            del blocks[first_whole:]
            self._unknown -= removed_zero
        elif commit > n:
            pages.frombytes(bytes(8 * (commit - n)))
            nblocks = -(-commit // BLOCK_PAGES)
            blocks.frombytes(bytes(8 * (nblocks - len(blocks))))
            self._unknown += commit - n - (1 if n < lock <= commit else 0)

    def load_from_file(self, f: BinaryIO | str | os.PathLike, commit: int) -> None:
        """Replace the state with the checksums of pages 1..commit read from a database file."""
        if isinstance(f, (str, os.PathLike)):
            with open(f, "rb") as fh:
                self.load_from_file(fh, commit)
                return
        self._pages = array("Q")
        self._blocks = array("Q")
        self._acc = 0
        self._unknown = 0
        self.truncate(commit)
        pages, blocks = self._pages, self._blocks
        acc = 0
        for pgno, data in iter_db_pages(f, self.page_size, commit):
            c = CHECKSUM_FLAG | _go_iso(data, _go_iso(pgno.to_bytes(4, "big")))
            pages[pgno - 1] = c
            c &= _LOW63
            blocks[(pgno - 1) >> BLOCK_SHIFT] ^= c
            acc ^= c
        self._acc = acc
        self._unknown = 0

    @classmethod
    def from_file(cls, f: BinaryIO | str | os.PathLike, page_size: int, commit: int) -> ChecksumTracker:
        """A tracker loaded by a full scan of a database file."""
        t = cls(page_size)
        t.load_from_file(f, commit)
        return t

    def copy(self) -> ChecksumTracker:
        t = ChecksumTracker(self.page_size)
        t._pages = array("Q", self._pages)
        t._blocks = array("Q", self._blocks)
        t._acc, t._unknown = self._acc, self._unknown
        return t

    def save(self, path: str | os.PathLike, *, meta: dict[str, Any] | None = None) -> None:
        """Atomically write the state (plus caller ``meta``, JSON-serialisable) to ``path``.

        Every page must be known. The file carries page size, commit, checksum, ``meta`` and a CRC of
        everything, so :meth:`load` detects corruption; staleness is detected through ``expected`` and
        ``meta`` (see the module docstring).
        """
        checksum = self.checksum
        meta_bytes = json.dumps(meta or {}, sort_keys=True, separators=(",", ":")).encode()
        body = array("Q", self._pages)
        if sys.byteorder == "little":
            body.byteswap()
        head = _STATE_HEAD.pack(_STATE_MAGIC, self.page_size, len(self._pages), checksum, len(meta_bytes))
        crc = _go_iso(body, _go_iso(meta_bytes, _go_iso(head)))
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(meta_bytes)
            f.write(body)
            f.write(crc.to_bytes(8, "big"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dirfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        expected: tuple[int, int, int],
        meta: dict[str, Any] | None = None,
    ) -> ChecksumTracker:
        """Load a state saved by :meth:`save`, accepting it only if it matches what the caller expects.

        ``expected`` is ``(page_size, commit, checksum)``; ``meta``, when given, must equal the saved
        meta exactly. Raises ``LTXError`` when the file is missing, corrupt or stale -- the caller then
        rebuilds with :meth:`load_from_file`.
        """
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise LTXError(f"checksum state {os.fspath(path)!r} unreadable: {exc}") from None
        name = os.fspath(path)
        if len(raw) < _STATE_HEAD.size + 8:
            raise LTXError(f"checksum state {name!r}: truncated ({len(raw)} bytes)")
        magic, page_size, commit, checksum, meta_len = _STATE_HEAD.unpack_from(raw)
        if magic != _STATE_MAGIC:
            raise LTXError(f"checksum state {name!r}: bad magic {magic!r}")
        want_len = _STATE_HEAD.size + meta_len + 8 * commit + 8
        if len(raw) != want_len:
            raise LTXError(f"checksum state {name!r}: {len(raw)} bytes, expected {want_len}")
        if _go_iso(memoryview(raw)[:-8]) != int.from_bytes(raw[-8:], "big"):
            raise LTXError(f"checksum state {name!r}: CRC mismatch (corrupt file)")
        if (page_size, commit, checksum) != tuple(expected):
            raise LTXError(
                f"checksum state {name!r} is stale: it is for page size {page_size}, commit {commit}, "
                f"checksum {checksum:016x}; expected {expected[0]}, {expected[1]}, {expected[2]:016x}"
            )
        start = _STATE_HEAD.size
        try:
            saved_meta = json.loads(raw[start : start + meta_len])
        except ValueError:
            raise LTXError(f"checksum state {name!r}: unreadable meta") from None
        if meta is not None and saved_meta != json.loads(json.dumps(meta)):
            raise LTXError(f"checksum state {name!r} is stale: meta {saved_meta!r} != {meta!r}")
        try:
            t = cls(page_size)
        except LTXError as exc:
            raise LTXError(f"checksum state {name!r}: {exc}") from None
        pages = array("Q")
        pages.frombytes(raw[start + meta_len : -8])
        if sys.byteorder == "little":
            pages.byteswap()
        t._pages = pages
        lock = t._lock
        zeros = pages.count(0) - (1 if lock <= commit else 0)
        blocks = array("Q")
        acc = 0
        for b in range(0, commit, BLOCK_PAGES):
            x = reduce(xor, pages[b : b + BLOCK_PAGES], 0) & _LOW63
            blocks.append(x)
            acc ^= x
        t._blocks = blocks
        t._acc = acc
        t._unknown = zeros
        if zeros or (lock <= commit and pages[lock - 1] != 0) or CHECKSUM_FLAG | acc != checksum:
            raise LTXError(f"checksum state {name!r}: page checksums inconsistent with the saved total")
        return t
