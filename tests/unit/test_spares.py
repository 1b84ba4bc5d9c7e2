"""The pool of pre-made, durable empty files that rollback commits write their LTX files into."""

from __future__ import annotations

import os
import time

from litefs.store.spares import SPARE_PREFIX, SparePool


def _take(pool: SparePool, timeout: float = 5.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spare = pool.take()
        if spare is not None:
            return spare
        time.sleep(0.001)
    raise AssertionError("no spare became ready")


def test_first_take_starts_the_pool_and_later_takes_get_empty_files(tmp_path) -> None:
    pool = SparePool(str(tmp_path / "ltx"), target=2)
    try:
        assert pool.take() is None  # nodes that never commit never make spares
        fd, path = _take(pool)
        assert os.path.basename(path).startswith(SPARE_PREFIX)
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"data")
        os.close(fd)
        fd2, path2 = _take(pool)
        os.close(fd2)
        assert path2 != path
        assert pool.taken == 2
    finally:
        pool.close()


def test_close_deletes_unused_spares_and_the_pool_can_start_again(tmp_path) -> None:
    ltx = tmp_path / "ltx"
    pool = SparePool(str(ltx), target=3)
    pool.take()
    fd, used = _take(pool)
    os.close(fd)
    deadline = time.monotonic() + 5
    while len(os.listdir(ltx)) < 4 and time.monotonic() < deadline:  # the used one + 3 ready
        time.sleep(0.001)
    pool.close()
    assert os.listdir(ltx) == [os.path.basename(used)]
    assert pool.take() is None  # restarts
    fd, _ = _take(pool)
    os.close(fd)
    pool.close()


def test_a_directory_that_cannot_hold_files_disables_the_pool(tmp_path) -> None:
    blocker = tmp_path / "ltx"
    blocker.write_text("a file where the directory should be")
    pool = SparePool(str(blocker), target=2)
    try:
        assert pool.take() is None
        deadline = time.monotonic() + 5
        while not pool._failed and time.monotonic() < deadline:
            time.sleep(0.001)
        assert pool.take() is None  # commits go on the plain way
    finally:
        pool.close()
