"""The background LTX writer (litefs.store.ltxwriter) and the one-shot encoder it is fed by."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from litefs.ltx import Decoder, Encoder, Header, encode_ltx
from litefs.ltx.errors import LTXError
from litefs.ltx.header import FLAG_COMPRESS_LZ4
from litefs.store.fsutil import write_file_atomically
from litefs.store.ltxwriter import LTXWriteError, LTXWriter

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
    writer.submit(str(tmp_path / "first.ltx"), b"first")
    writer.drain()
    os.kill(writer.pid, signal.SIGSTOP)  # hold the writer process: the next files stay pending
    paths = [str(tmp_path / f"{i:016x}-{i:016x}.ltx") for i in range(1, 4)]
    try:
        for i, p in enumerate(paths):
            writer.submit(p, b"file %d" % i)
        assert writer.pending(paths[2]) == b"file 2"
        assert writer.pending_count == 3
        assert not writer.idle
        assert not any(os.path.exists(p) for p in paths)
    finally:
        os.kill(writer.pid, signal.SIGCONT)
    writer.drain()
    assert writer.idle and writer.pending_count == 0 and writer.written == 4
    assert [Path(p).read_bytes() for p in paths] == [b"file 0", b"file 1", b"file 2"]
    assert writer.pending(paths[0]) is None
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    writer.close()


def test_a_killed_writer_process_is_an_error_not_a_hang(tmp_path) -> None:
    errors = []
    writer = LTXWriter()
    writer.on_error = errors.append
    writer.submit(str(tmp_path / "a.ltx"), b"a")
    writer.drain()
    os.kill(writer.pid, signal.SIGKILL)
    with pytest.raises(LTXWriteError, match="writer process exited"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            writer.submit(str(tmp_path / "b.ltx"), b"b")
            writer.drain()
    assert errors and "writer process exited" in str(errors[0])
    writer.close()


def test_the_process_writes_what_it_was_sent_after_the_node_is_gone(tmp_path) -> None:
    """A node killed with files still queued: its writer process finishes them (stdin EOF)."""
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / "core")!r})
from litefs.store.ltxwriter import LTXWriter
w = LTXWriter()
w.submit({str(tmp_path / "warm.ltx")!r}, b"w")
w.drain()
os.kill(w.pid, signal.SIGSTOP)
for i in range(50):
    w.submit(os.path.join({str(tmp_path)!r}, "f%03d.ltx" % i), b"x" * 1000)
print(w.pid, flush=True)
os.kill(w.pid, signal.SIGCONT)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL
    child = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        time.sleep(0.01)
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("f"))
    assert names == [f"f{i:03d}.ltx" for i in range(50)]
    assert all((tmp_path / n).stat().st_size == 1000 for n in names)


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


def test_a_file_larger_than_the_pipe_arrives_whole(tmp_path) -> None:
    writer = LTXWriter()
    big = os.urandom(5 << 20)  # more than the pipe holds: the send is split into several writes
    writer.submit(str(tmp_path / "big.ltx"), big)
    writer.submit(str(tmp_path / "small.ltx"), b"s")
    writer.drain()
    assert (tmp_path / "big.ltx").read_bytes() == big
    assert (tmp_path / "small.ltx").read_bytes() == b"s"
    writer.close()
