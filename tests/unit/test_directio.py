"""Appending a snapshot's LTX file with O_DIRECT (litefs.store.directio)."""

from __future__ import annotations

import os
import random
import threading

import pytest

from litefs.store.directio import ALIGN, DirectAppender


@pytest.mark.parametrize("total", [0, 1, ALIGN - 1, ALIGN, 3 * 65536 + 17, 65536 * 4])
def test_the_file_holds_exactly_the_bytes_written(tmp_path, total: int) -> None:
    data = os.urandom(total)
    path = str(tmp_path / "x.ltx")
    out = DirectAppender(path, buffer_size=65536)
    rng = random.Random(total)
    pos = 0
    while pos < total:
        n = rng.choice([1, 100, 4096, 5000, 70000])
        out.write(data[pos : pos + n])
        pos += n
    out.close()
    assert out.size == total
    with open(path, "rb") as f:
        assert f.read() == data


def test_direct_io_is_used_on_this_file_system(tmp_path) -> None:
    out = DirectAppender(str(tmp_path / "x.ltx"))
    try:
        assert out.direct or not hasattr(os, "O_DIRECT")
    finally:
        out.close()


def test_a_refused_direct_write_falls_back_to_buffered(tmp_path, monkeypatch) -> None:
    real_pwrite = os.pwrite
    calls = []

    def pwrite_refusing_direct(fd: int, data, offset: int) -> int:
        if not calls:
            calls.append(fd)
            raise OSError(22, "Invalid argument")  # what a file system without O_DIRECT writes says
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite_refusing_direct)
    path = str(tmp_path / "x.ltx")
    data = os.urandom(200_000)
    out = DirectAppender(path, buffer_size=65536)
    out.write(data)
    out.close()
    assert not out.direct
    with open(path, "rb") as f:
        assert f.read() == data


def test_abandon_from_another_thread_waits_for_the_write_and_stops_it(tmp_path) -> None:
    out = DirectAppender(str(tmp_path / "x.ltx"), buffer_size=65536)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(2000):
                out.write(os.urandom(10_000))
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    out.abandon()
    t.join()
    assert errors and "written after close" in str(errors[0])
    out.abandon()  # idempotent
    out.close()


def test_a_failed_background_write_is_raised_by_the_next_call(tmp_path, monkeypatch) -> None:
    real_pwrite = os.pwrite

    def pwrite_disk_full(fd: int, data, offset: int) -> int:
        if offset >= 65536:
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite_disk_full)
    out = DirectAppender(str(tmp_path / "x.ltx"), buffer_size=65536)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(10):  # the second full buffer fails in the writer thread; a later call says so
            out.write(os.urandom(65536))
        out.close()
    out.abandon()


def test_writes_overlap_the_device_write_and_keep_their_order(tmp_path, monkeypatch) -> None:
    real_pwrite = os.pwrite
    in_flight = threading.Event()
    release = threading.Event()

    def slow_pwrite(fd: int, data, offset: int) -> int:
        in_flight.set()
        release.wait(10)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", slow_pwrite)
    path = str(tmp_path / "x.ltx")
    data = os.urandom(65536 * 3 + 100)
    out = DirectAppender(path, buffer_size=65536)
    out.write(data[: 65536 + 1])  # overflows the first buffer: handed to the writer thread
    assert in_flight.wait(10)
    out.write(data[65536 + 1 : 2 * 65536 - 1])  # into the second buffer while the first is written
    assert out.length == 2 * 65536 - 1
    release.set()
    out.write(data[2 * 65536 - 1 :])
    out.close()
    with open(path, "rb") as f:
        assert f.read() == data
