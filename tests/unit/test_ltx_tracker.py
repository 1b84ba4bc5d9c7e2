"""ChecksumTracker: equals a full recompute after any updates; save/load round trip and staleness."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litefs.ltx import CHECKSUM_FLAG, ChecksumTracker, LTXError, database_checksum, lock_pgno, page_checksum


def test_empty_tracker() -> None:
    t = ChecksumTracker(4096)
    assert t.page_count == 0 and t.checksum == CHECKSUM_FLAG


def test_matches_vectors() -> None:
    t = ChecksumTracker(512)
    t.set_page(1, b"2" * 512)
    t.set_page(2, b"3" * 512)
    assert t.checksum == 0x8B87423EEEEEEEEE
    t.set_page(1, b"\x03" * 512)
    t.set_page(2, b"\x02" * 512)
    assert t.checksum == 0x8B87423EEEEEEEEE  # the other vector with the same value
    t.truncate(1)
    t.set_page(1, b"1" * 512)
    assert t.checksum == 0xEB1A999231044DDD
    assert t.get(1) == page_checksum(1, b"1" * 512)


def test_unknown_pages_refuse_a_checksum() -> None:
    t = ChecksumTracker(512)
    t.set_page(3, b"x" * 512)
    assert t.page_count == 3
    with pytest.raises(LTXError, match="2 page.*first is page 1"):
        _ = t.checksum
    t.set_page(1, b"x" * 512)
    t.set_page(2, b"x" * 512)
    assert t.checksum & CHECKSUM_FLAG
    t.truncate(5)
    with pytest.raises(LTXError, match="page 4"):
        _ = t.checksum
    t.truncate(3)
    assert t.checksum == database_checksum(io.BytesIO(b"x" * 1536), 512, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda t: t.set_page(16385, bytes(65536)), "lock page"),
        (lambda t: t.set_page(0, bytes(65536)), "invalid page number"),
        (lambda t: t.set_page(1, bytes(10)), "10 bytes"),
        (lambda t: t.set_page_checksum(1, 5), "flag"),
        (lambda t: t.truncate(-1), "invalid commit"),
        (lambda t: t.get(1), "outside"),
    ],
)
def test_rejects_bad_calls(call, match: str) -> None:  # noqa: ANN001
    with pytest.raises(LTXError, match=match):
        call(ChecksumTracker(65536))


# Page size 65536 puts the lock page at 16385, so page counts near it are cheap to reach.
PAGE = 65536
LOCK = lock_pgno(PAGE)
counts = st.one_of(st.integers(0, 600), st.integers(LOCK - 300, LOCK + 300))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 1000), st.binary(min_size=1, max_size=1)),
        st.tuples(st.just("truncate"), counts, st.just(b"")),
        st.tuples(st.just("fill"), st.just(0), st.binary(min_size=1, max_size=1)),
    ),
    max_size=25,
)


def _synthetic(pgno: int, salt: int) -> int:
    """A cheap, distinct page checksum (the tracker treats checksums as opaque values)."""
    return CHECKSUM_FLAG | ((pgno * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) & (CHECKSUM_FLAG - 1))


@settings(max_examples=80, deadline=None)
@given(start=counts, ops=ops)
def test_tracker_equals_full_recompute(start: int, ops) -> None:  # noqa: ANN001
    """Random page updates and truncations: the tracker always agrees with a recomputation."""
    model: dict[int, int] = {}  # pgno -> page checksum
    t = ChecksumTracker(PAGE)
    for p in range(1, start + 1):
        if p != LOCK:
            model[p] = _synthetic(p, 0)
            t.set_page_checksum(p, model[p])
    t.truncate(start)
    commit = start
    for op, arg, fill in ops:
        if op == "set":
            # Sample page numbers around both ends of the database, skipping the lock page.
            pgno = max(1, commit - 500 + arg)
            if pgno == LOCK:
                continue
            data = fill * PAGE
            model[pgno] = page_checksum(pgno, data)
            t.set_page(pgno, data)
            commit = max(commit, pgno)
        elif op == "truncate":
            commit = arg
            t.truncate(commit)
            model = {p: c for p, c in model.items() if p <= commit}
        else:  # fill every unknown page, as SQLite does when a database grows
            for p in range(1, commit + 1):
                if p != LOCK and p not in model:
                    model[p] = _synthetic(p, fill[0] + 1)
                    t.set_page_checksum(p, model[p])
        assert t.page_count == commit
        if all(p in model for p in range(1, commit + 1) if p != LOCK):
            acc = 0
            for c in model.values():
                acc ^= c
            assert t.checksum == CHECKSUM_FLAG | (acc & (CHECKSUM_FLAG - 1))
            assert all(t.get(p) == model.get(p, 0) for p in range(max(1, commit - 300), commit + 1))
        else:
            with pytest.raises(LTXError, match="unknown"):
                _ = t.checksum


def _write_db(path: Path, pages: int, page_size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(pages):
            f.write(os.urandom(16) * (page_size // 16))


def test_load_from_file_matches_database_checksum(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write_db(path, 700, 1024)
    t = ChecksumTracker.from_file(path, 1024, 700)
    assert t.checksum == database_checksum(path, 1024, 700)
    t2 = ChecksumTracker(1024)
    with open(path, "rb") as f:
        t2.load_from_file(f, 650)
    assert t2.checksum == database_checksum(path, 1024, 650)
    t.truncate(650)
    assert t.checksum == t2.checksum
    with pytest.raises(LTXError, match="too short"):
        ChecksumTracker.from_file(path, 1024, 701)


def test_save_load_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "db"
    _write_db(db, 1000, 512)
    t = ChecksumTracker.from_file(db, 512, 1000)
    st_ = os.stat(db)
    meta = {"size": st_.st_size, "mtime_ns": st_.st_mtime_ns, "txid": 42}
    state = tmp_path / "db.cksum"
    t.save(state, meta=meta)
    expected = (512, 1000, t.checksum)
    loaded = ChecksumTracker.load(state, expected=expected, meta=meta)
    assert loaded.checksum == t.checksum
    assert [loaded.get(p) for p in range(1, 1001)] == [t.get(p) for p in range(1, 1001)]
    # The loaded tracker keeps working incrementally.
    loaded.set_page(5, b"q" * 512)
    loaded.truncate(900)
    t.set_page(5, b"q" * 512)
    t.truncate(900)
    assert loaded.checksum == t.checksum
    assert ChecksumTracker.load(state, expected=expected).page_count == 1000  # meta check is optional


def test_load_detects_stale_or_corrupt_state(tmp_path: Path) -> None:
    t = ChecksumTracker(4096)
    for p in range(1, 300):
        t.set_page(p, bytes([p % 256]) * 4096)
    state = tmp_path / "state"
    t.save(state, meta={"size": 1, "mtime_ns": 2})
    good = (4096, 299, t.checksum)
    with pytest.raises(LTXError, match="stale"):
        ChecksumTracker.load(state, expected=(4096, 299, t.checksum ^ 1))
    with pytest.raises(LTXError, match="stale"):
        ChecksumTracker.load(state, expected=(4096, 298, t.checksum))
    with pytest.raises(LTXError, match="stale"):
        ChecksumTracker.load(state, expected=(1024, 299, t.checksum))
    with pytest.raises(LTXError, match="stale: meta"):
        ChecksumTracker.load(state, expected=good, meta={"size": 1, "mtime_ns": 3})
    with pytest.raises(LTXError, match="unreadable"):
        ChecksumTracker.load(tmp_path / "missing", expected=good)
    raw = state.read_bytes()
    for i in (0, 9, 30, 40, len(raw) // 2, len(raw) - 1):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        state.write_bytes(bytes(bad))
        with pytest.raises(LTXError):
            ChecksumTracker.load(state, expected=good)
    for cut in (0, 10, 40, len(raw) - 1):
        state.write_bytes(raw[:cut])
        with pytest.raises(LTXError):
            ChecksumTracker.load(state, expected=good)


def test_save_refuses_unknown_pages(tmp_path: Path) -> None:
    t = ChecksumTracker(512)
    t.truncate(3)
    with pytest.raises(LTXError, match="unknown"):
        t.save(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_copy_is_independent() -> None:
    t = ChecksumTracker(512)
    t.set_page(1, b"a" * 512)
    c = t.copy()
    c.set_page(1, b"b" * 512)
    assert t.checksum != c.checksum


def test_set_page_checksums_matches_one_by_one() -> None:
    """The bulk setter gives the same state as set_page_checksum page by page (growing, overwriting,
    across block boundaries, around the lock page)."""
    import random

    from litefs.ltx.checksum import CHECKSUM_FLAG, lock_pgno

    rng = random.Random(5)
    size = 512
    lock = lock_pgno(size)
    one, bulk = ChecksumTracker(size), ChecksumTracker(size)
    runs = [(1, 700), (300, 10), (250, 20), (690, 50), (lock - 5, 5), (lock + 1, 300), (2, 1)]
    for first, n in runs:
        cks = [CHECKSUM_FLAG | rng.getrandbits(63) for _ in range(n)]
        for i, c in enumerate(cks):
            one.set_page_checksum(first + i, c)
        bulk.set_page_checksums(first, cks)
        assert bulk.page_count == one.page_count
        assert bulk._unknown == one._unknown
        assert bulk._blocks == one._blocks and bulk._acc == one._acc
    one.truncate(600)
    bulk.truncate(600)
    assert bulk.checksum == one.checksum
    with pytest.raises(LTXError, match="lock page"):
        bulk.set_page_checksums(lock - 1, [CHECKSUM_FLAG, CHECKSUM_FLAG])
    with pytest.raises(LTXError, match="flag bit"):
        bulk.set_page_checksums(3, [CHECKSUM_FLAG, 5])
