"""The exec supervisor with real ``litefs mount`` processes and real child commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from litefs.testing import LiteFSNode

pytestmark = pytest.mark.fuse


def wait_for_file(path: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(
        f"{path} never contained {text!r}: {path.read_text() if path.exists() else 'missing'}"
    )


def test_app_exit_code_becomes_node_exit_code(tmp_path: Path) -> None:
    node = LiteFSNode(tmp_path, config={"exec": "sh -c 'exit 7'"})
    try:
        node.start(wait=False)
        assert node.wait_exit() == 7
    finally:
        node.stop()
    assert "app exited with code 7" in node.log()


def test_command_after_dashdash_replaces_exec(tmp_path: Path) -> None:
    node = LiteFSNode(tmp_path, config={"exec": "sh -c 'exit 9'"}, args=("--", "sh", "-c", "exit 5"))
    try:
        node.start(wait=False)
        assert node.wait_exit() == 5
    finally:
        node.stop()


def test_migrations_run_in_order_then_the_app_writes_through_the_mount(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    script = tmp_path / "app.py"
    script.write_text(
        "import os, sqlite3, sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write('app primary=%s\\n' % os.environ['LITEFS_PRIMARY'])\n"
        "    f.write('mount=%s\\n' % os.environ['LITEFS_MOUNT_DIR'])\n"
        "    f.write('api=%s\\n' % os.environ['LITEFS_API_URL'])\n"
        "db = sqlite3.connect(os.path.join(os.environ['LITEFS_MOUNT_DIR'], 'app.db'))\n"
        "db.execute('CREATE TABLE IF NOT EXISTS t (x)')\n"
        "db.execute('INSERT INTO t VALUES (1)')\n"
        "db.commit()\n"
    )
    config = {
        "exec": [
            {"cmd": f"sh -c 'echo migrate-1 >> {trace}'", "if-candidate": True},
            {"cmd": f"sh -c 'echo migrate-2 >> {trace}'"},
            {"cmd": f"{sys.executable} {script} {trace}"},
        ]
    }
    node = LiteFSNode(tmp_path, config=config)
    try:
        node.start(wait=False)
        assert node.wait_exit() == 0, node.log()
    finally:
        node.stop()
    lines = trace.read_text().splitlines()
    assert lines[:3] == ["migrate-1", "migrate-2", "app primary=1"]
    assert f"mount={node.mount_dir}" in lines
    assert f"api={node.url}" in lines
    # The app's two transactions went through the mount and became LTX files.
    assert node.ltx_files("app.db")[-1] == "0000000000000002-0000000000000002.ltx"


def test_if_candidate_entries_are_skipped_on_non_candidates(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    config = {
        "skip-sync": True,  # a lone non-candidate never becomes ready; do not wait for it
        "exec": [
            {"cmd": f"sh -c 'echo migrate >> {trace}'", "if-candidate": True},
            {"cmd": f"sh -c 'echo app >> {trace}'"},
        ],
    }
    node = LiteFSNode(tmp_path, config=config, candidate=False)
    try:
        node.start(wait=False)
        assert node.wait_exit() == 0, node.log()
    finally:
        node.stop()
    assert trace.read_text().splitlines() == ["app"]


def test_failed_migration_stops_the_node_and_the_app_never_starts(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    config = {
        "exec": [
            {"cmd": "sh -c 'echo migration exploded >&2; exit 4'"},
            {"cmd": f"sh -c 'echo app >> {trace}; sleep 60'"},
        ]
    }
    node = LiteFSNode(tmp_path, config=config)
    try:
        node.start(wait=False)
        assert node.wait_exit() == 1
    finally:
        node.stop()
    log = node.log()
    assert "migration exploded" in log  # the command's own output passes through
    assert "failed with exit code 4" in log
    assert not trace.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_goes_to_the_app_first_then_the_node_exits_0(tmp_path: Path, signum: int) -> None:
    trace = tmp_path / "trace"
    script = tmp_path / "app.py"
    script.write_text(
        "import signal, sys, time\n"
        "def stop(signum, frame):\n"
        "    open(sys.argv[1], 'a').write('got %d\\n' % signum)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "open(sys.argv[1], 'a').write('running\\n')\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    node = LiteFSNode(tmp_path, config={"exec": f"{sys.executable} {script} {trace}"})
    try:
        node.start()
        wait_for_file(trace, "running")
        assert node.proc is not None
        node.proc.send_signal(signum)
        assert node.wait_exit() == 0, node.log()
    finally:
        node.stop()
    assert trace.read_text().splitlines() == ["running", f"got {int(signum)}"]


def test_fatal_error_stops_the_app_while_the_mount_still_answers(tmp_path: Path) -> None:
    """A non-signal shutdown (a commit that cannot be made durable: exit 99) stops the app first;
    the app's SIGTERM handler still reads through the mount, then FUSE unmounts."""
    trace = tmp_path / "trace"
    script = tmp_path / "app.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "def stop(signum, frame):\n"
        "    with open(os.path.join(os.environ['LITEFS_MOUNT_DIR'], 'db-pos')) as f:\n"
        "        pos = f.read().strip()\n"
        "    open(sys.argv[1], 'a').write('stopped pos=%s\\n' % pos)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open(sys.argv[1], 'a').write('running\\n')\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    node = LiteFSNode(tmp_path, config={"exec": f"{sys.executable} {script} {trace}"})
    try:
        node.start()
        wait_for_file(trace, "running")
        sqlite3(node, "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        pos = node.pos("db")
        ltx = node.ltx_dir("db")
        os.rename(ltx, ltx + ".away")
        Path(ltx).write_text("not a directory")  # the next LTX file cannot be written
        with pytest.raises(subprocess.CalledProcessError):
            sqlite3(node, "INSERT INTO t VALUES (2)")
        assert node.wait_exit() == 99, node.log()
    finally:
        node.stop()
    assert trace.read_text().splitlines() == ["running", f"stopped pos={pos}"]


def sqlite3(node: LiteFSNode, statement: str) -> str:
    out = subprocess.run(
        ["sqlite3", "-cmd", ".timeout 5000", node.path("db"), statement],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()
