"""Applying LTX files to a database file, and snapshotting a SQLite file into an LTX file."""

from __future__ import annotations

import os
import time
from typing import BinaryIO

from litefs.ltx.checksum import is_valid_page_size, iter_db_pages
from litefs.ltx.decoder import Decoder
from litefs.ltx.encoder import Encoder
from litefs.ltx.errors import LTXError
from litefs.ltx.header import FLAG_COMPRESS_LZ4, Header, Trailer
from litefs.ltx.tracker import ChecksumTracker

_SQLITE_MAGIC = b"SQLite format 3\0"


def sqlite_geometry(header: bytes, file_size: int) -> tuple[int, int]:
    """``(page_size, page_count)`` of a SQLite file from its first 100 bytes and its size.

    Page size is header bytes 16-17 (1 means 65536). The page count is the in-header size (bytes 28-31)
    when SQLite marks it valid (non-zero and version-valid-for, bytes 92-95, equal to the change counter,
    bytes 24-27), else the file size divided by the page size -- SQLite's own rule. A local helper so the
    LTX tools do not depend on ``litefs.sqlite``.
    """
    if len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise LTXError("not a SQLite database: bad or missing header magic at offset 0")
    page_size = int.from_bytes(header[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if not is_valid_page_size(page_size):
        raise LTXError(f"invalid SQLite header: page size {page_size} at offset 16")
    count = int.from_bytes(header[28:32], "big")
    if count == 0 or header[24:28] != header[92:96]:
        count = file_size // page_size
    return page_size, count


def read_sqlite_geometry(path: str | os.PathLike) -> tuple[int, int]:
    """:func:`sqlite_geometry` of a database file on disk."""
    with open(path, "rb") as f:
        head = f.read(100)
        size = os.fstat(f.fileno()).st_size
    return sqlite_geometry(head, size)


def apply_ltx(
    decoder_or_file: Decoder | BinaryIO | str | os.PathLike,
    db_file: BinaryIO | str | os.PathLike,
    *,
    tracker: ChecksumTracker | None = None,
    verify_first: bool = True,
    fsync: bool = False,
) -> tuple[Header, Trailer]:
    """Write an LTX file's pages into a database file and truncate it to ``commit`` pages.

    ``decoder_or_file`` is a fresh :class:`Decoder`, a binary file or a path. For a seekable file or a
    path the whole LTX file is verified first (nothing is written if it is corrupt); a :class:`Decoder`
    is applied while streaming, so a corrupt stream can leave the database partly written (the error is
    still raised). ``db_file`` is a binary file opened for update or a path (created if missing).

    With ``tracker``, the tracker follows the writes and the result is checked: for an incremental file
    the tracker must first be at the pre-apply checksum, and afterwards at the post-apply checksum;
    mismatches raise ``LTXError`` (the pre-apply check happens before anything is written).
    Returns the header and trailer.
    """
    if isinstance(decoder_or_file, Decoder):
        return _apply(decoder_or_file, db_file, tracker, fsync)
    if isinstance(decoder_or_file, (str, os.PathLike)):
        with open(decoder_or_file, "rb") as f:
            return apply_ltx(f, db_file, tracker=tracker, verify_first=verify_first, fsync=fsync)
    f = decoder_or_file
    if verify_first and f.seekable():
        start = f.tell()
        Decoder(f).verify()
        f.seek(start)
    return _apply(Decoder(f), db_file, tracker, fsync)


def _apply(
    dec: Decoder, db_file: BinaryIO | str | os.PathLike, tracker: ChecksumTracker | None, fsync: bool
) -> tuple[Header, Trailer]:
    if isinstance(db_file, (str, os.PathLike)):
        fd = os.open(db_file, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b") as db:
            return _apply(dec, db, tracker, fsync)
    h = dec.header
    if tracker is not None:
        if tracker.page_size != h.page_size:
            raise LTXError(f"LTX page size {h.page_size} != database page size {tracker.page_size}")
        if h.is_snapshot:
            tracker.truncate(0)
        elif tracker.checksum != h.pre_apply_checksum:
            raise LTXError(
                f"pre-apply checksum mismatch: database is at {tracker.checksum:016x}, LTX file "
                f"{h.min_txid:016x}-{h.max_txid:016x} expects {h.pre_apply_checksum:016x}"
            )
    size = h.page_size
    for pgno, data in dec.pages():
        db_file.seek((pgno - 1) * size)
        db_file.write(data)
        if tracker is not None:
            tracker.set_page(pgno, data)
    db_file.truncate(h.commit * size)
    db_file.flush()
    if fsync:
        os.fsync(db_file.fileno())
    trailer = dec.trailer
    assert trailer is not None
    if tracker is not None:
        tracker.truncate(h.commit)
        if tracker.checksum != trailer.post_apply_checksum:
            raise LTXError(
                f"post-apply checksum mismatch after applying {h.min_txid:016x}-{h.max_txid:016x}: "
                f"database is at {tracker.checksum:016x}, file says {trailer.post_apply_checksum:016x}"
            )
    return h, trailer


def write_snapshot(
    db_path: str | os.PathLike,
    out: BinaryIO,
    *,
    txid: int,
    compress: bool,
    node_id: int = 0,
    timestamp: int | None = None,
) -> tuple[Header, Trailer]:
    """Encode a (checkpointed) SQLite file as a snapshot LTX: TXIDs 1..txid, all pages but the lock page.

    ``timestamp`` is in milliseconds (default: now). The post-apply checksum is computed from the pages.
    The database must not change while this runs.
    """
    with open(db_path, "rb") as f:
        page_size, commit = sqlite_geometry(f.read(100), os.fstat(f.fileno()).st_size)
        header = Header(
            flags=FLAG_COMPRESS_LZ4 if compress else 0,
            page_size=page_size,
            commit=commit,
            min_txid=1,
            max_txid=txid,
            timestamp=int(time.time() * 1000) if timestamp is None else timestamp,
            node_id=node_id,
        )
        enc = Encoder(out, header)
        for pgno, data in iter_db_pages(f, page_size, commit):
            enc.encode_page(pgno, data)
        return header, enc.finish()
