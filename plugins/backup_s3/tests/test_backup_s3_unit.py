"""Pure parts of the S3 backup plugin: SigV4, key layout, batching and restore planning."""

from __future__ import annotations

import click
import pytest

from litefs.ltx import Pos
from litefs_backup_s3.cli import parse_timestamp_arg, parse_txid_arg
from litefs_backup_s3.layout import RemoteDB, RemoteFile, ltx_key, parse_listing, snapshot_key
from litefs_backup_s3.restore import RestoreError, plan
from litefs_backup_s3.s3 import EMPTY_SHA256, ObjectInfo, S3Client, sign_v4
from litefs_backup_s3.uploader import MAX_BATCH, LocalFile, build_batch


def test_sigv4_matches_the_aws_documentation_example() -> None:
    # "GET Object" example of the AWS SigV4 documentation (header-based auth for S3).
    auth = sign_v4(
        method="GET",
        path="/test.txt",
        query={},
        headers={
            "host": "examplebucket.s3.amazonaws.com",
            "range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
        },
        payload_sha256=EMPTY_SHA256,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    assert auth == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_client_repr_hides_secrets() -> None:
    c = S3Client("http://127.0.0.1:1", "b", access_key_id="AKID", secret_access_key="SECRET")
    assert "SECRET" not in repr(c) and "AKID" not in repr(c)


def test_key_layout() -> None:
    assert ltx_key("p/q/", "app.db", 1, 255) == "p/q/app.db/ltx/0000000000000001-00000000000000ff.ltx"
    assert snapshot_key("", "app.db", 16) == "app.db/snapshots/0000000000000010.ltx"


def test_parse_listing_ignores_foreign_keys() -> None:
    keys = [
        "p/db/ltx/0000000000000001-0000000000000003.ltx",
        "p/db/ltx/0000000000000004-0000000000000004.ltx",
        "p/db/snapshots/0000000000000004.ltx",
        "p/db/ltx/garbage.ltx",
        "p/db/ltx/0000000000000005-0000000000000004.ltx",  # empty range
        "p/other/readme.txt",
        "elsewhere/db/ltx/0000000000000001-0000000000000001.ltx",
    ]
    dbs = parse_listing("p", [ObjectInfo(k, 1, "") for k in keys])
    assert list(dbs) == ["db"]
    assert [(f.min_txid, f.max_txid) for f in dbs["db"].ltx] == [(1, 3), (4, 4)]
    assert [f.max_txid for f in dbs["db"].snapshots] == [4]
    assert dbs["db"].max_txid == 4


def _remote(ltx: list[tuple[int, int]], snaps: list[int] = ()) -> RemoteDB:
    return RemoteDB(
        "db",
        ltx=[RemoteFile(f"l{lo}-{hi}", lo, hi, False) for lo, hi in ltx],
        snapshots=[RemoteFile(f"s{t}", 1, t, True) for t in snaps],
    )


def test_plan_prefers_the_newest_snapshot() -> None:
    r = _remote([(1, 1), (2, 2), (3, 5), (6, 6), (7, 9)], snaps=[5])
    assert [f.key for f in plan(r, 9)] == ["s5", "l6-6", "l7-9"]
    assert [f.key for f in plan(r, 2)] == ["l1-1", "l2-2"]
    assert [f.key for f in plan(r, 5)] == ["s5"]


def test_plan_errors_name_the_nearest_restorable_points() -> None:
    r = _remote([(1, 1), (2, 4), (5, 5)])
    with pytest.raises(RestoreError, match="nearest restorable TXIDs: 1, 4"):
        plan(r, 3)  # inside the compacted object 2..4
    gap = _remote([(6, 7)], snaps=[5])
    with pytest.raises(RestoreError, match="before the first backup"):
        plan(gap, 3)


def test_plan_survives_overlapping_objects() -> None:
    # An upload whose answer was lost is redone as a longer object: both exist.
    r = _remote([(1, 1), (2, 3), (2, 5), (6, 6)])
    assert [f.key for f in plan(r, 6)] == ["l1-1", "l2-5", "l6-6"]
    assert [f.key for f in plan(r, 3)] == ["l1-1", "l2-3"]


def _files(ranges: list[tuple[int, int]]) -> list[LocalFile]:
    return [LocalFile(lo, hi, f"/x/{lo}-{hi}") for lo, hi in ranges]


def test_build_batch_continues_the_remote_position() -> None:
    files = _files([(1, 1), (2, 2), (3, 3), (4, 4)])
    assert [f.min_txid for f in build_batch(files, Pos(2, 1))] == [3, 4]
    assert build_batch(_files([(5, 5)]), Pos(2, 1)) is None  # TXIDs 3..4 are gone: a gap
    assert [f.max_txid for f in build_batch(files, Pos(0, 0), stop_at=2)] == [1, 2]
    many = _files([(i, i) for i in range(1, MAX_BATCH + 10)])
    assert len(build_batch(many, Pos(0, 0))) == MAX_BATCH


def test_cli_argument_parsing() -> None:
    assert parse_txid_arg("10") == 10
    assert parse_txid_arg("0x10") == 16
    assert parse_txid_arg("0000000000000010") == 16
    assert parse_timestamp_arg("1970-01-01T00:00:01.5Z") == 1500
    assert parse_timestamp_arg("1970-01-01T01:00:01+01:00") == 1000
    with pytest.raises(click.BadParameter, match="time zone"):
        parse_timestamp_arg("2024-01-01T00:00:00")
    with pytest.raises(click.BadParameter):
        parse_txid_arg("ten")
