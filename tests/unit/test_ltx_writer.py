"""The background LTX writer (litefs.store.ltxwriter) and the one-shot encoder it is fed by."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from litefs.ltx import Decoder, Encoder, Header, encode_ltx
from litefs.ltx.errors import LTXError
from litefs.ltx.header import FLAG_COMPRESS_LZ4
from litefs.store.ltxwriter import LTXWriteError, LTXWriter, write_file_atomically

POST = (1 << 63) | 0x99


def _header(compress: bool, commit: int = 100) -> Header:
    return Header(
        flags=FLAG_COMPRESS_LZ4 if compress else 0,
        page_size=4096,
        commit=commit,
        min_txid=5,
        max_txid=5,
        timestamp=1_700_000_000_000,
        pre_apply_checksum=(1 << 63) | 0x77,
        node_id=9,
    )


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("npages", [1, 3, 17, 40])  # 17 and 40 pages cross LZ4's 64 KiB block size
def test_encode_ltx_is_byte_identical_to_the_streaming_encoder(compress: bool, npages: int) -> None:
    pages = [(p, os.urandom(1024) + bytes(3072)) for p in range(2, 2 + npages)]
    header = _header(compress)
    buf = io.BytesIO()
    enc = Encoder(buf, header)
    for pgno, data in pages:
        enc.encode_page(pgno, data)
    enc.finish(POST)
    assert encode_ltx(header, pages, POST) == buf.getvalue()
    dec = Decoder(io.BytesIO(encode_ltx(header, pages, POST)))
    dec.verify()
    assert dec.header == header


@pytest.mark.parametrize(
    "pages",
    [
        [(3, bytes(4096)), (2, bytes(4096))],  # not ascending
        [(2, bytes(4096)), (2, bytes(4096))],  # repeated
        [(101, bytes(4096))],  # above commit
        [(2, bytes(100))],  # short page
    ],
)
def test_encode_ltx_refuses_pages_that_break_the_format(pages: list[tuple[int, bytes]]) -> None:
    with pytest.raises(LTXError, match="cannot encode page"):
        encode_ltx(_header(True), pages, POST)


def test_writer_writes_in_order_and_serves_pending_content(tmp_path) -> None:
    writer = LTXWriter()
    gate = threading.Event()
    real_write = os.write

    def slow_write(fd: int, data: bytes) -> int:  # hold the writer thread: the files stay pending
        if threading.current_thread().name == "ltx-writer":
            gate.wait(5)
        return real_write(fd, data)

    paths = [str(tmp_path / f"{i:016x}-{i:016x}.ltx") for i in range(1, 4)]
    os_write = os.write
    os.write = slow_write  # type: ignore[assignment]
    try:
        for i, p in enumerate(paths):
            writer.submit(p, b"file %d" % i)
        assert writer.pending(paths[2]) == b"file 2"
        assert writer.pending_count == 3
        assert not writer.idle
    finally:
        gate.set()
        os.write = os_write  # type: ignore[assignment]
    writer.drain()
    assert writer.idle and writer.pending_count == 0 and writer.written == 3
    assert [Path(p).read_bytes() for p in paths] == [b"file 0", b"file 1", b"file 2"]
    assert writer.pending(paths[0]) is None
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    writer.close()


def test_writer_creates_a_missing_directory(tmp_path) -> None:
    path = tmp_path / "ltx" / "0000000000000001-0000000000000001.ltx"
    write_file_atomically(str(path), b"abc")
    assert path.read_bytes() == b"abc"


def test_a_failed_write_is_raised_by_the_next_submit_and_drain(tmp_path) -> None:
    writer = LTXWriter()
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")  # a file where the directory should be: open() fails with ENOTDIR
    writer.submit(str(blocker / "0000000000000001-0000000000000001.ltx"), b"x")
    with pytest.raises(LTXWriteError, match="writing an LTX file failed earlier"):
        writer.drain()
    with pytest.raises(LTXWriteError):
        writer.submit(str(tmp_path / "0000000000000002-0000000000000002.ltx"), b"y")
    writer.close()  # logs, does not raise


def test_close_writes_what_is_queued_and_refuses_more(tmp_path) -> None:
    writer = LTXWriter()
    paths = [str(tmp_path / f"{i}.ltx") for i in range(50)]
    for p in paths:
        writer.submit(p, b"data")
    writer.close()
    assert all(os.path.exists(p) for p in paths)
    with pytest.raises(LTXWriteError, match="closed"):
        writer.submit(str(tmp_path / "late.ltx"), b"x")
