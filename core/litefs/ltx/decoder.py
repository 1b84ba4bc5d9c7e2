"""Streaming LTX v1 decoder with full validation (ltx.md sections 2 to 4).

Memory use is bounded by a page plus one LZ4 block (at most 4 MiB, 64 KiB for LiteFS files) and a 64 KiB
read buffer, whatever the file size: decompression is asked for at most the bytes needed next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import reduce
from operator import xor
from typing import BinaryIO

import lz4.frame

from litefs.ltx.checksum import CHECKSUM_FLAG, _go_iso, lock_pgno
from litefs.ltx.errors import LTXError
from litefs.ltx.header import (
    HEADER_SIZE,
    PAGE_HEADER_SIZE,
    TRAILER_SIZE,
    Header,
    Trailer,
    read_record_pgnos,
    record_pgnos,
)
from litefs.ltx.pos import Pos

_READ_SIZE = 64 * 1024


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads (pipes, sockets); fewer only at EOF."""
    data = f.read(n)
    if data is None:
        raise LTXError("non-blocking stream returned no data")
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class _RawBody:
    """The page block of an uncompressed file, read straight from the file."""

    compressed = False

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int) -> bytes:
        return _read_exact(self._f, n)

    def finish(self) -> bytes:
        """After the end marker: return the rest of the file (should be just the trailer)."""
        return _read_exact(self._f, TRAILER_SIZE + 1)


class _LZ4Body:
    """The page block of a compressed file: one LZ4 frame, decompressed on demand."""

    compressed = True

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._d = lz4.frame.LZ4FrameDecompressor()
        # Decompressed bytes not handed out yet: _buf[_off:]. An offset instead of deleting from the
        # front of a buffer: that moved up to 64 KiB per 4-byte page header read.
        self._buf = b""
        self._off = 0

    def _more(self, want: int) -> bytes | None:
        """Decompress up to ``want`` more bytes; None when the frame has ended."""
        d = self._d
        stalls = 0
        while not d.eof:
            if d.needs_input:
                chunk = self._f.read(_READ_SIZE)
                if not chunk:
                    raise LTXError("truncated LTX file: compressed page block ends before its LZ4 frame end")
            else:
                chunk = b""
            try:
                out = d.decompress(chunk, max_length=want)
            except RuntimeError as exc:
                raise LTXError(f"corrupt LZ4 page block: {exc}") from None
            if out:
                return out
            if not chunk:
                # Asked for output without giving input and got none: never spin on a confused state.
                stalls += 1
                if stalls > 2:
                    raise LTXError("corrupt LZ4 page block: decompressor makes no progress")
        return None

    def read(self, n: int) -> bytes:
        buf, off = self._buf, self._off
        if len(buf) - off >= n:
            self._off = off + n
            return buf[off : off + n]
        parts = [buf[off:]]
        have = len(buf) - off
        self._buf, self._off = b"", 0
        while have < n:
            out = self._more(max(n - have, _READ_SIZE))
            if out is None:
                break
            take = n - have
            if len(out) > take:
                parts.append(out[:take])
                self._buf, self._off = out, take
                have = n
            else:
                parts.append(out)
                have += len(out)
        return b"".join(parts)

    def finish(self) -> bytes:
        """After the end marker: the frame must end with no more data; return what follows it."""
        if len(self._buf) > self._off or self._more(1) is not None:
            raise LTXError("corrupt LTX file: data after the end-of-pages marker inside the LZ4 frame")
        rest = self._d.unused_data or b""
        if len(rest) <= TRAILER_SIZE:
            rest += _read_exact(self._f, TRAILER_SIZE + 1 - len(rest))
        return rest


class Decoder:
    """Read and check one LTX file from ``f``, page by page.

    The header is read and validated on construction. Iterate :meth:`pages` to get ``(pgno, data)``;
    when it is exhausted the trailer has been read (:attr:`trailer`), the file checksum verified and, for
    a snapshot, the post-apply checksum recomputed and verified. Any problem raises ``LTXError``; pages
    already yielded before the error must then be treated as untrusted.

    The decoder requires the trailer to be the last bytes of the input (no trailing data).
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        raw = _read_exact(f, HEADER_SIZE)
        if len(raw) < HEADER_SIZE:
            raise LTXError(f"truncated LTX file: header is {len(raw)} of {HEADER_SIZE} bytes")
        self.header: Header = Header.from_bytes(raw)
        self._crc = _go_iso(raw)
        self._body = _LZ4Body(f) if self.header.compressed else _RawBody(f)
        self.trailer: Trailer | None = None
        """Set once :meth:`pages` is exhausted and every check passed."""
        self.page_count = 0
        self._started = False

    @property
    def post_apply_pos(self) -> Pos:
        """(max TXID, post-apply checksum); only once the file has been fully read."""
        if self.trailer is None:
            raise LTXError("post-apply position unknown until the whole file has been decoded")
        return Pos(self.header.max_txid, self.trailer.post_apply_checksum)

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(pgno, page bytes)`` in file order, validating as it goes. Can be iterated once."""
        if self._started:
            raise LTXError("Decoder.pages() can only be iterated once")
        self._started = True
        return self._pages()

    def _pages(self) -> Iterator[tuple[int, bytes]]:
        h = self.header
        size = h.page_size
        lock = lock_pgno(size)
        snapshot = h.is_snapshot
        body = self._body
        where = "decompressed offset" if body.compressed else "offset"
        offset = HEADER_SIZE
        crc = self._crc
        acc = 0
        prev = 0
        while True:
            pg = body.read(PAGE_HEADER_SIZE)
            if len(pg) < PAGE_HEADER_SIZE:
                raise LTXError(f"truncated LTX file: page header missing at {where} {offset}")
            crc = _go_iso(pg, crc)
            pgno = int.from_bytes(pg, "big")
            if pgno == 0:
                offset += PAGE_HEADER_SIZE
                break
            if pgno > h.commit:
                raise LTXError(f"page {pgno} at {where} {offset} is beyond commit {h.commit}")
            if pgno == lock:
                raise LTXError(f"page {pgno} at {where} {offset} is the lock page (page size {size})")
            if snapshot:
                want = prev + 2 if prev + 1 == lock else prev + 1
                if pgno != want:
                    raise LTXError(f"snapshot page {pgno} at {where} {offset}: expected page {want}")
            elif pgno <= prev:
                raise LTXError(
                    f"page {pgno} at {where} {offset} out of order: must be strictly above page {prev}"
                )
            data = body.read(size)
            if len(data) < size:
                raise LTXError(
                    f"truncated LTX file: page {pgno} data at {where} {offset + PAGE_HEADER_SIZE} has "
                    f"{len(data)} of {size} bytes"
                )
            crc = _go_iso(data, crc)
            if snapshot:
                acc ^= _go_iso(data, _go_iso(pg))
            prev = pgno
            offset += PAGE_HEADER_SIZE + size
            self.page_count += 1
            yield pgno, data
        if snapshot and prev < h.commit and (prev + 2 if prev + 1 == lock else prev + 1) <= h.commit:
            raise LTXError(f"snapshot incomplete: ends after page {prev}, commit is {h.commit}")
        self._finish(crc, acc)

    def _finish(self, crc: int, acc: int) -> None:
        """After the end-of-pages marker: read and check the trailer (file and snapshot checksums)."""
        h = self.header
        rest = self._body.finish()
        if len(rest) < TRAILER_SIZE:
            raise LTXError(f"truncated LTX file: trailer has {len(rest)} of {TRAILER_SIZE} bytes")
        if len(rest) > TRAILER_SIZE:
            raise LTXError("corrupt LTX file: unexpected data after the trailer")
        trailer = Trailer.from_bytes(rest)
        crc = _go_iso(rest[:8], crc)
        if trailer.file_checksum != CHECKSUM_FLAG | crc:
            raise LTXError(
                f"file checksum mismatch: trailer says {trailer.file_checksum:016x}, "
                f"content gives {CHECKSUM_FLAG | crc:016x}"
            )
        trailer.validate(h.commit)
        if h.is_snapshot and trailer.post_apply_checksum != CHECKSUM_FLAG | acc:
            raise LTXError(
                f"snapshot post-apply checksum mismatch: trailer says {trailer.post_apply_checksum:016x}, "
                f"pages give {CHECKSUM_FLAG | acc:016x}"
            )
        self.trailer = trailer

    def snapshot_runs(self, batch: int = 256) -> Iterator[tuple[int, list[memoryview], list[int]]]:
        """A snapshot's pages in runs: ``(first pgno, [page data], [page checksum])``, consecutive pages.

        The same checks as :meth:`pages` (and the same :attr:`trailer` once exhausted), for a large
        snapshot at a fraction of the per-page cost: a run of up to ``batch`` pages is read in one
        piece, checksummed in one call and handed out as views into it (no copies), with each page's
        checksum (``FLAG | CRC64(pgno || data)``) computed on the way. Runs never span the lock page.
        """
        h = self.header
        if not h.is_snapshot:
            raise LTXError("snapshot_runs() needs a snapshot LTX file")
        if self._started:
            raise LTXError("Decoder pages can only be iterated once")
        self._started = True
        size = h.page_size
        lock = lock_pgno(size)
        body = self._body
        where = "decompressed offset" if body.compressed else "offset"
        rec = PAGE_HEADER_SIZE + size
        crc, acc = self._crc, 0
        offset = HEADER_SIZE
        pgno = 1
        while pgno <= h.commit:
            if pgno == lock:
                pgno += 1
                continue
            n = min(batch, h.commit - pgno + 1, (lock - pgno) if pgno < lock else batch)
            buf = body.read(n * rec)
            if len(buf) < n * rec:
                got = len(buf) // rec
                raise LTXError(
                    f"truncated LTX file: snapshot page {pgno + got} at {where} {offset + got * rec} "
                    f"is cut off (commit is {h.commit})"
                )
            crc = _go_iso(buf, crc)
            view = memoryview(buf)
            starts = range(0, n * rec, rec)
            # Every page header at once: the record headers, picked out with one strided slice per
            # byte, must equal the page numbers pgno..pgno+n-1 (checked page by page only on a mismatch).
            if read_record_pgnos(buf, rec, n) != record_pgnos(pgno, n):
                for i, o in enumerate(starts):
                    got = int.from_bytes(view[o : o + PAGE_HEADER_SIZE], "big")
                    if got != pgno + i:
                        raise LTXError(
                            f"snapshot page {got} at {where} {offset + o}: expected page {pgno + i}"
                        )
            raw = [_go_iso(view[o : o + rec]) for o in starts]
            acc = reduce(xor, raw, acc)
            sums = [CHECKSUM_FLAG | c for c in raw]
            pages = [view[o + PAGE_HEADER_SIZE : o + rec] for o in starts]
            self.page_count += n
            yield pgno, pages, sums
            pgno += n
            offset += n * rec
        end = body.read(PAGE_HEADER_SIZE)
        if len(end) < PAGE_HEADER_SIZE:
            raise LTXError(f"truncated LTX file: end-of-pages marker missing at {where} {offset}")
        if end != bytes(PAGE_HEADER_SIZE):
            raise LTXError(
                f"snapshot page {int.from_bytes(end, 'big')} at {where} {offset}: beyond commit {h.commit}"
            )
        self._finish(_go_iso(end, crc), acc)

    def verify(self) -> Trailer:
        """Consume and check the whole file; return the trailer."""
        for _ in self.pages():
            pass
        assert self.trailer is not None
        return self.trailer


def decode_file(path: str | os.PathLike) -> tuple[Header, list[tuple[int, bytes]], Trailer]:
    """Decode a whole (small) LTX file into memory: ``(header, [(pgno, data), ...], trailer)``."""
    with open(path, "rb") as f:
        dec = Decoder(f)
        pages = list(dec.pages())
        assert dec.trailer is not None
        return dec.header, pages, dec.trailer


def peek_header(f: BinaryIO) -> Header:
    """Read and validate the 100-byte header from ``f`` (its position advances by 100)."""
    raw = _read_exact(f, HEADER_SIZE)
    if len(raw) < HEADER_SIZE:
        raise LTXError(f"truncated LTX file: header is {len(raw)} of {HEADER_SIZE} bytes")
    return Header.from_bytes(raw)
