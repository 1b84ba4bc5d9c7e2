"""``litefs run`` and ``litefs.client`` against a real node."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from litefs import client
from litefs.testing import LiteFSNode


def run(litefs_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([litefs_bin, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def primary(tmp_path: Path):
    node = LiteFSNode(tmp_path, name="primary")
    try:
        node.start()
        yield node
    finally:
        node.stop()


def test_client_sees_the_primary(primary: LiteFSNode) -> None:
    assert client.is_primary(primary.mount_dir)
    assert client.primary(primary.mount_dir) is None
    info = client.info(primary.url)
    assert info["isPrimary"] is True and info["candidate"] is True


def test_client_refuses_a_directory_that_is_not_a_mount(tmp_path: Path) -> None:
    with pytest.raises(client.ClientError, match="is not a LiteFS mount"):
        client.is_primary(str(tmp_path))


def test_client_events_follow_commits(primary: LiteFSNode) -> None:
    seen: list[dict] = []
    got_tx = threading.Event()

    def follow() -> None:
        for event in client.events(primary.url):
            seen.append(event)
            if event["type"] == "tx":
                got_tx.set()
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    # Commit until the follower has seen one: it may subscribe after the first commit.
    for _ in range(50):
        subprocess.run(
            ["sqlite3", primary.path("ev.db"), "CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1)"],
            check=True,
        )
        if got_tx.wait(0.2):
            break
    assert got_tx.is_set()
    assert seen[0]["type"] == "init" and seen[0]["data"]["isPrimary"] is True
    tx = next(e for e in seen if e["type"] == "tx")
    assert tx["db"] == "ev.db"
    assert len(tx["data"]["txID"]) == 16


def test_run_passes_exit_code(primary: LiteFSNode, litefs_bin: str) -> None:
    out = run(litefs_bin, "run", "-url", primary.url, "--", "sh", "-c", "echo hi; exit 3")
    assert out.returncode == 3
    assert out.stdout == "hi\n"


def test_run_if_candidate_runs_on_a_candidate(primary: LiteFSNode, litefs_bin: str) -> None:
    out = run(litefs_bin, "run", "-url", primary.url, "-if-candidate", "--", "echo", "ran")
    assert out.returncode == 0 and out.stdout == "ran\n"


def test_run_if_candidate_skips_a_non_candidate(tmp_path: Path, litefs_bin: str) -> None:
    node = LiteFSNode(tmp_path, name="replica", candidate=False, config={"skip-sync": True})
    try:
        node.start()
        out = run(litefs_bin, "run", "-url", node.url, "-if-candidate", "--", "echo", "ran")
    finally:
        node.stop()
    assert out.returncode == 0
    assert out.stdout == "node is not a candidate, skipping execution\n"


def test_run_promote_on_the_primary_just_runs(primary: LiteFSNode, litefs_bin: str) -> None:
    out = run(litefs_bin, "run", "-url", primary.url, "-promote", "--", "echo", "ok")
    assert out.returncode == 0 and out.stdout == "ok\n"


def test_run_usage_errors(litefs_bin: str) -> None:
    assert run(litefs_bin, "run").returncode == 2
    both = run(litefs_bin, "run", "-promote", "-with-halt-lock-on", "/litefs/db", "--", "true")
    assert both.returncode == 2
    assert "cannot specify both -promote and -with-halt-lock-on" in both.stderr


def test_run_unreachable_node_is_a_clear_error(litefs_bin: str) -> None:
    out = run(litefs_bin, "run", "-url", "http://127.0.0.1:9", "-if-candidate", "--", "true")
    assert out.returncode == 1
    assert "cannot reach node at http://127.0.0.1:9" in out.stderr
