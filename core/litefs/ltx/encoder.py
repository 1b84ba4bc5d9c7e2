"""Streaming LTX v1 encoder (ltx.md sections 3 and 4).

Memory use is one page plus the LZ4 compressor's 64 KiB block buffer, whatever the number of pages.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from functools import reduce
from operator import xor
from typing import BinaryIO

import lz4.frame

from litefs.ltx.checksum import CHECKSUM_FLAG, _go_iso, lock_pgno
from litefs.ltx.errors import LTXError
from litefs.ltx.header import PAGE_HEADER_SIZE, Header, Trailer, read_record_pgnos, record_pgnos

_END_MARKER = b"\0\0\0\0"


def new_lz4_compressor() -> lz4.frame.LZ4FrameCompressor:
    """An LZ4 frame compressor with the parameters pierrec/lz4 uses under ltx v0.3.14.

    64 KiB independent blocks, content checksum on, no block checksum, no content size: the frame
    descriptor comes out as ``04 22 4d 18 64 40 a7``, byte-identical to what LiteFS writes.
    """
    return lz4.frame.LZ4FrameCompressor(
        block_size=lz4.frame.BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=True,
        block_checksum=False,
        auto_flush=False,
    )


class Encoder:
    """Write one LTX file to ``f`` page by page.

    The header is validated and written at construction. Call :meth:`encode_page` for each page in the
    order the format requires (every page 1..commit except the lock page for a snapshot, strictly
    ascending otherwise), then :meth:`finish`. Rule violations raise ``LTXError`` before anything
    invalid is written.
    """

    def __init__(self, f: BinaryIO, header: Header) -> None:
        header.validate()
        self._f = f
        self.header = header
        self._page_size = header.page_size
        self._lock = lock_pgno(header.page_size)
        self._last_pgno = 0
        self._finished = False
        self.page_count = 0
        """Pages encoded so far."""
        self.trailer: Trailer | None = None
        # The file checksum covers the uncompressed logical stream, so it is independent of the LZ4 output.
        raw = header.to_bytes(validate=False)  # validated just above
        self._crc = _go_iso(raw)
        # Snapshots carry the whole database: fold each page checksum so finish() can check post-apply.
        self._db_acc = 0
        f.write(raw)
        self._lz: lz4.frame.LZ4FrameCompressor | None = None
        if header.compressed:
            self._lz = new_lz4_compressor()
            f.write(self._lz.begin())

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._lz is None:
            self._f.write(data)
        else:
            out = self._lz.compress(data)
            if out:
                self._f.write(out)

    def encode_page(self, pgno: int, data: bytes | bytearray | memoryview) -> None:
        """Append one page; ``data`` must be exactly ``page_size`` bytes."""
        if self._finished:
            raise LTXError("encode_page() after finish()")
        h = self.header
        if not isinstance(pgno, int) or pgno < 1 or pgno > h.commit:
            raise LTXError(f"cannot encode page {pgno!r}: outside 1..commit ({h.commit})")
        if pgno == self._lock:
            raise LTXError(f"cannot encode page {pgno}: it is the lock page for page size {h.page_size}")
        if len(data) != self._page_size:
            raise LTXError(f"cannot encode page {pgno}: {len(data)} bytes, page size is {self._page_size}")
        if h.is_snapshot:
            want = self._next_snapshot_pgno()
            if pgno != want:
                raise LTXError(f"snapshot page out of order: got page {pgno}, expected page {want}")
        elif pgno <= self._last_pgno:
            raise LTXError(
                f"page {pgno} out of order: pages must be strictly ascending (previous {self._last_pgno})"
            )
        pg = pgno.to_bytes(4, "big")
        self._write(pg)
        self._write(data)
        self._crc = _go_iso(data, _go_iso(pg, self._crc))
        if h.is_snapshot:
            self._db_acc ^= _go_iso(data, _go_iso(pg))
        self._last_pgno = pgno
        self.page_count += 1

    def encode_pages(self, first_pgno: int, data: bytes | bytearray | memoryview) -> None:
        """Append consecutive pages ``first_pgno, first_pgno + 1, ...`` given as one buffer.

        The same bytes as :meth:`encode_page` for each page, but checked once and passed to the
        compressor in one piece (LZ4 is several times faster on ~1 MiB than page by page). ``data``
        holds whole pages; the run must not contain the lock page.
        """
        if self._finished:
            raise LTXError("encode_pages() after finish()")
        size = self._page_size
        if len(data) % size:
            raise LTXError(f"cannot encode pages: {len(data)} bytes is not a multiple of page size {size}")
        n = len(data) // size
        if not n:
            return
        view = memoryview(data)
        # The records (4-byte page number, page) are laid out once (encode_records checks them).
        parts: list[bytes | memoryview] = [b""] * (2 * n)
        parts[0::2] = [(first_pgno + i).to_bytes(4, "big") for i in range(n)]
        parts[1::2] = [view[o : o + size] for o in range(0, n * size, size)]
        self.encode_records(first_pgno, b"".join(parts))

    def encode_records(self, first_pgno: int, records: bytes | bytearray | memoryview) -> None:
        """Append consecutive pages given as their LTX page records (u32 page number, page), laid
        out by the caller (:meth:`SnapshotView.read_records_into` reads them straight into place).

        The file checksum takes the records in one call and each page checksum (a snapshot's) one
        call per record. The page numbers must be ``first_pgno, first_pgno + 1, ...``; the run must
        not contain the lock page. ``records`` is written as it is (a file object that keeps it
        must not let the caller's buffer change under it: :class:`_Sink` below hands it on at once).
        """
        if self._finished:
            raise LTXError("encode_records() after finish()")
        h = self.header
        size = self._page_size
        rec = size + PAGE_HEADER_SIZE
        if len(records) % rec:
            raise LTXError(
                f"cannot encode pages: {len(records)} bytes is not a multiple of record size {rec}"
            )
        n = len(records) // rec
        if not n:
            return
        last = first_pgno + n - 1
        if not isinstance(first_pgno, int) or first_pgno < 1 or last > h.commit:
            raise LTXError(f"cannot encode pages {first_pgno!r}..{last}: outside 1..commit ({h.commit})")
        if first_pgno <= self._lock <= last:
            raise LTXError(f"cannot encode page {self._lock}: it is the lock page for page size {size}")
        if h.is_snapshot:
            want = self._next_snapshot_pgno()
            if first_pgno != want:
                raise LTXError(f"snapshot page out of order: got page {first_pgno}, expected page {want}")
        elif first_pgno <= self._last_pgno:
            raise LTXError(
                f"page {first_pgno} out of order: pages must be strictly ascending (previous {self._last_pgno})"
            )
        rv = memoryview(records)
        if read_record_pgnos(rv, rec, n) != record_pgnos(first_pgno, n):
            raise LTXError(f"cannot encode pages {first_pgno}..{last}: record page numbers do not match")
        self._crc = _go_iso(rv, self._crc)
        if h.is_snapshot:
            self._db_acc = reduce(
                xor, [_go_iso(rv[o : o + rec]) for o in range(0, n * rec, rec)], self._db_acc
            )
        self._write(records)
        self._last_pgno = last
        self.page_count += n

    def _next_snapshot_pgno(self) -> int:
        nxt = self._last_pgno + 1
        return nxt + 1 if nxt == self._lock else nxt

    @property
    def snapshot_checksum(self) -> int:
        """For a snapshot, the database checksum of the pages encoded so far."""
        return CHECKSUM_FLAG | self._db_acc

    def finish(self, post_apply_checksum: int | None = None) -> Trailer:
        """Write the end marker and trailer; return the trailer.

        For a snapshot ``post_apply_checksum`` may be omitted (the checksum of the encoded pages is used);
        when given it must equal that checksum. A snapshot must have received all its pages.
        """
        if self._finished:
            raise LTXError("finish() called twice")
        h = self.header
        if h.is_snapshot:
            if self._last_pgno < h.commit and self._next_snapshot_pgno() <= h.commit:
                raise LTXError(
                    f"snapshot incomplete: {h.commit} pages expected, last encoded page is {self._last_pgno}"
                )
            if post_apply_checksum is None:
                post_apply_checksum = self.snapshot_checksum
            elif post_apply_checksum != self.snapshot_checksum:
                raise LTXError(
                    f"snapshot post-apply checksum {post_apply_checksum:016x} does not match its pages "
                    f"({self.snapshot_checksum:016x})"
                )
        elif post_apply_checksum is None:
            raise LTXError("post-apply checksum required for a non-snapshot LTX file")
        Trailer(post_apply_checksum, CHECKSUM_FLAG).validate(h.commit)
        self._write(_END_MARKER)
        if self._lz is not None:
            self._f.write(self._lz.flush())
        post = post_apply_checksum.to_bytes(8, "big")
        crc = _go_iso(post, _go_iso(_END_MARKER, self._crc))
        self.trailer = Trailer(post_apply_checksum, CHECKSUM_FLAG | crc)
        self._f.write(self.trailer.to_bytes())
        self._finished = True
        return self.trailer


def encode_ltx(header: Header, pages: Iterable[tuple[int, bytes]], post_apply_checksum: int) -> bytes:
    """The whole LTX file for a transaction held in memory, byte-identical to :class:`Encoder`.

    The commit path's shortcut: one LZ4 call over the page section instead of a compressor object
    fed page by page. Snapshots go through :class:`Encoder` (they check every page as they go).
    """
    if header.is_snapshot:
        buf = io.BytesIO()
        enc = Encoder(buf, header)
        for pgno, data in pages:
            enc.encode_page(pgno, data)
        enc.finish(post_apply_checksum)
        return buf.getvalue()
    header.validate()
    raw = header.to_bytes(validate=False)
    page_size = header.page_size
    commit = header.commit
    lock = lock_pgno(page_size)
    parts: list[bytes] = []
    last = 0
    for pgno, data in pages:
        if pgno <= last or pgno > commit or pgno == lock or len(data) != page_size:
            raise LTXError(
                f"cannot encode page {pgno!r} ({len(data)} bytes) after page {last}: pages must be "
                f"ascending, within 1..commit ({commit}), not the lock page ({lock}), {page_size} bytes"
            )
        parts.append(pgno.to_bytes(4, "big"))
        parts.append(data)
        last = pgno
    parts.append(_END_MARKER)
    body = b"".join(parts)
    Trailer(post_apply_checksum, CHECKSUM_FLAG).validate(commit)
    post = post_apply_checksum.to_bytes(8, "big")
    crc = _go_iso(post, _go_iso(body, _go_iso(raw)))
    trailer = Trailer(post_apply_checksum, CHECKSUM_FLAG | crc).to_bytes()
    if header.compressed:
        body = lz4.frame.compress(
            body,
            block_size=lz4.frame.BLOCKSIZE_MAX64KB,
            block_linked=False,
            content_checksum=True,
            block_checksum=False,
            store_size=False,
        )
    return raw + body + trailer
