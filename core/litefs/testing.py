"""Test helpers: run a real ``litefs mount`` process and always clean it up.

Each node is its own process (pyfuse3 allows one mount per process)::

    from litefs.testing import LiteFSNode

    with LiteFSNode(tmp_path) as node:          # mounted, API answering
        conn = sqlite3.connect(node.path("db"))
        ...
        assert node.pos("db").startswith("0000000000000001/")
    # stopped with SIGTERM, unmounted; a hung or killed node is unmounted with fusermount3 -u -z

``LiteFSNode.kill()`` sends SIGKILL (the mount stays behind, as after a crash) and ``start()`` starts
the node again on the same directories, so crash-recovery tests read naturally. Plugin authors can use
the helper for their own end-to-end tests; pass extra litefs.yml sections with ``config=``.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from litefs.fuse.mount import cleanup_stale_mount, is_mounted
from litefs.testing_ports import free_port

DEFAULT_TIMEOUT = 20.0


class NodeError(RuntimeError):
    """The node process did not start, exited early, or did not stop."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class LiteFSNode:
    """A ``litefs mount`` subprocess with its own config, mount and data directories under ``root``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        name: str = "node",
        config: dict[str, Any] | None = None,
        port: int | None = None,
        candidate: bool = True,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.root = Path(root) / name
        self.name = name
        self.port = port or free_port()
        self.mount_dir = str(self.root / "mnt")
        self.data_dir = str(self.root / "data")
        self.config_path = str(self.root / "litefs.yml")
        self.log_path = str(self.root / "litefs.log")
        self.url = f"http://127.0.0.1:{self.port}"
        base = {
            "fuse": {"dir": self.mount_dir},
            "data": {"dir": self.data_dir},
            "http": {"addr": f"127.0.0.1:{self.port}"},
            "lease": {
                "type": "static",
                "candidate": candidate,
                "hostname": name,
                "advertise-url": self.url,
            },
        }
        self.config = _merge(base, config or {})
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f, sort_keys=False)

    def start(self, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> LiteFSNode:
        """Start the process; with ``wait`` block until it is mounted and its API answers."""
        if self.proc is not None and self.proc.poll() is None:
            raise NodeError(f"node {self.name} is already running")
        self.write_config()
        env = dict(os.environ)
        env.update(self.env or {})
        cmd = [sys.executable, "-m", "litefs", "mount", "-config", self.config_path, *self.args]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self.returncode = None
        if wait:
            self.wait_ready(timeout)
        return self

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise NodeError(f"node {self.name} exited with code {code} during startup:\n{self.log()}")
            if is_mounted(self.mount_dir):
                try:
                    if httpx.get(self.url + "/info", timeout=1.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.02)
        raise NodeError(f"node {self.name} not ready after {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the process to exit on its own (e.g. a failed startup); return its exit code."""
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise NodeError(f"node {self.name} did not exit within {timeout}s") from exc
        return self.returncode

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; always leave no mount behind. Returns the exit code."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            self.returncode = proc.returncode
            self.proc = None
        if is_mounted(self.mount_dir):
            cleanup_stale_mount(self.mount_dir)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the node (a crash): the dead mount stays until the next start or stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.returncode = self.proc.returncode
        self.proc = None

    def child_pids(self, script: str) -> list[int]:
        """PIDs of the running node's child processes whose command line mentions ``script``
        (``ltxwriter_process``, ``syncproc_process``)."""
        assert self.proc is not None, "node not running"
        pid = self.proc.pid
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(p) for p in f.read().split()]
        found = []
        for child in children:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if script.encode() in f.read():
                        found.append(child)
            except FileNotFoundError:
                pass
        return found

    def __enter__(self) -> LiteFSNode:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- conveniences --------------------------------------------------------------------------

    def path(self, name: str) -> str:
        """Path of a file in the mount."""
        return os.path.join(self.mount_dir, name)

    def pos(self, db: str) -> str:
        """The ``<db>-pos`` text without the newline (read through the mount)."""
        with open(self.path(db + "-pos")) as f:
            return f.read().strip()

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 10.0), **kwargs)

    def info(self) -> dict[str, Any]:
        return self.get("/info").json()

    def ltx_dir(self, db: str) -> str:
        """``<data.dir>/dbs/<db>/ltx``, once the running node has written every LTX file it holds.

        WAL commits have their LTX files written by a background thread a moment after the commit
        (litefs.store.ltxwriter): waiting here keeps directory listings in tests deterministic.
        """
        self.wait_ltx_written()
        return os.path.join(self.data_dir, "dbs", db, "ltx")

    def wait_ltx_written(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the node's background LTX writer has nothing pending (no-op if not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                writer = self.get("/debug/vars", timeout=2.0).json()["store"].get("ltxWriter", {})
            except (httpx.HTTPError, ValueError, KeyError):
                return  # not answering (stopping, or a node without the API): nothing to wait for
            if not writer.get("pending"):
                return
            if time.monotonic() > deadline:
                raise NodeError(f"node {self.name}: LTX writer still has {writer['pending']} files pending")
            time.sleep(0.005)

    def ltx_files(self, db: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.ltx_dir(db)) if n.endswith(".ltx"))
        except FileNotFoundError:
            return []


__all__ = ["DEFAULT_TIMEOUT", "LiteFSNode", "NodeError", "free_port"]
