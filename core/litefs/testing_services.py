"""Real Consul and etcd processes on loopback, for tests and benchmarks.

Nothing in litefs itself imports this module. It starts each service on free ``127.0.0.1`` ports
in a temporary directory, waits until the service answers, and stops it by PID. Binaries are found
on ``PATH`` or in ``<repo>/.services`` (where ``scripts/services.sh install`` puts Consul); when one
is missing, ``scripts/services.sh install-<name>`` is run once to fetch it.

``LITEFS_TEST_CONSUL_URL`` and ``LITEFS_TEST_ETCD_ENDPOINTS`` (as printed by
``scripts/services.sh env``) make the pytest fixtures reuse running services instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from litefs.testing_ports import free_port


class ServiceUnavailable(Exception):
    """A service binary could not be found or installed; tests that need it should skip."""


def repo_root() -> Path | None:
    """The litefs-py checkout (the directory holding ``scripts/services.sh``), if there is one."""
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for candidate in (start, *start.parents):
            if (candidate / "scripts" / "services.sh").is_file():
                return candidate
    return None


def _services_dir() -> Path | None:
    env = os.environ.get("LITEFS_SERVICES_DIR")
    if env:
        return Path(env)
    root = repo_root()
    return root / ".services" if root else None


_install_failures: dict[str, str] = {}


def _install(what: str) -> None:
    """Run ``scripts/services.sh install-<what>`` once per process; remember a failure."""
    if what in _install_failures:
        raise ServiceUnavailable(_install_failures[what])
    root = repo_root()
    if root is None:
        _install_failures[what] = f"{what} is not installed and scripts/services.sh was not found"
        raise ServiceUnavailable(_install_failures[what])
    proc = subprocess.run(
        ["bash", str(root / "scripts" / "services.sh"), f"install-{what}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        _install_failures[what] = (
            f"{what} could not be installed by scripts/services.sh (exit {proc.returncode}): "
            + (proc.stderr.strip()[-600:] or proc.stdout.strip()[-600:])
        )
        raise ServiceUnavailable(_install_failures[what])


def find_consul() -> str:
    """Path of a ``consul`` binary, installing Debian bullseye's 1.8.7 into .services if needed."""

    def look() -> str | None:
        found = shutil.which("consul")
        if found:
            return found
        base = _services_dir()
        if base is not None and (base / "consul/root/usr/bin/consul").is_file():
            return str(base / "consul/root/usr/bin/consul")
        return None

    found = look()
    if found is None:
        _install("consul")
        found = look()
    if found is None:
        raise ServiceUnavailable("consul binary still missing after scripts/services.sh install-consul")
    return found


def find_etcd() -> str:
    """Path of an ``etcd`` binary, installing Debian's etcd-server if needed."""
    found = shutil.which("etcd")
    if found is None:
        _install("etcd")
        found = shutil.which("etcd")
    if found is None:
        raise ServiceUnavailable("etcd binary still missing after scripts/services.sh install-etcd")
    return found


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` (and the process' exit) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(0.05)


@dataclass
class _Process:
    """One child process with its log file; stopped by PID only."""

    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ConsulAgent:
    """``consul agent -dev`` bound to 127.0.0.1 on free ports."""

    def __init__(
        self, workdir: Path | None = None, extra_args: list[str] | None = None, token: str = ""
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="litefs-consul-")) if workdir is None else workdir
        self.extra_args = list(extra_args or [])
        self.token = token
        """A token with read access, for the readiness check of an agent with ACLs on."""
        self.http_port = free_port()
        self.server_port = free_port()
        self._process: _Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> ConsulAgent:
        binary = find_consul()
        args = [
            binary, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1",
            f"-http-port={self.http_port}", "-dns-port=-1", "-grpc-port=-1",
            f"-serf-lan-port={free_port()}", f"-serf-wan-port={free_port()}",
            f"-server-port={self.server_port}", f"-data-dir={self.workdir / 'data'}",
            *self.extra_args,
        ]  # fmt: skip
        self._process = _Process(args, self.workdir / "consul.log")
        self._process.start()

        def ready() -> bool:
            # A leader, and the agent's own node in the catalog: sessions need both.
            headers = {"X-Consul-Token": self.token} if self.token else {}
            leader = httpx.get(f"{self.url}/v1/status/leader", timeout=1).json()
            nodes = httpx.get(f"{self.url}/v1/catalog/nodes", headers=headers, timeout=1).json()
            return bool(leader) and bool(nodes)

        try:
            wait_until(ready, timeout, f"consul agent on {self.url}", self._process.proc)
        except Exception as exc:
            tail = self._process.log_tail()
            self.stop()
            raise RuntimeError(f"{exc}\n--- consul log ---\n{tail}") from exc
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class EtcdMember:
    """One etcd member: its name, ports and process."""

    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: _Process | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def args(self, binary: str, initial_cluster: str, state: str, token: str) -> list[str]:
        return [
            binary, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--listen-metrics-urls", f"http://127.0.0.1:{self.metrics_port}",
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", token,
            # Fast elections on loopback: a killed leader is replaced in about a second.
            "--heartbeat-interval", "100", "--election-timeout", "1000",
        ]  # fmt: skip

    def healthy(self) -> bool:
        return httpx.get(f"{self.client_url}/health", timeout=1).json().get("health") == "true"

    def status(self) -> dict:
        """``/v3/maintenance/status`` of this member (its ID, the leader's ID, raft term)."""
        return httpx.post(f"{self.client_url}/v3/maintenance/status", json={}, timeout=2).json()


class EtcdCluster:
    """One or more etcd members on loopback, started together."""

    def __init__(self, size: int = 1, workdir: Path | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="litefs-etcd-")) if workdir is None else workdir
        self.token = f"litefs-test-{os.getpid()}-{time.monotonic_ns()}"
        self.members = [EtcdMember(f"m{i}", self.workdir / f"m{i}") for i in range(1, size + 1)]
        self._binary = ""

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        self._binary = find_etcd()
        for member in self.members:
            self._launch(member, "new")
        for member in self.members:
            self._wait(member, timeout)
        return self

    def _launch(self, member: EtcdMember, state: str) -> None:
        args = member.args(self._binary, self.initial_cluster, state, self.token)
        member.process = _Process(args, self.workdir / f"{member.name}.log")
        member.process.start()

    def _wait(self, member: EtcdMember, timeout: float) -> None:
        assert member.process is not None
        try:
            wait_until(
                member.healthy,
                timeout,
                f"etcd member {member.name} on {member.client_url}",
                member.process.proc,
            )
        except Exception as exc:
            tail = member.process.log_tail()
            self.stop()
            raise RuntimeError(f"{exc}\n--- etcd {member.name} log ---\n{tail}") from exc

    def leader(self) -> EtcdMember:
        """The member that is raft leader now (asked of the first live member)."""
        for member in self.members:
            if member.process is None or not member.process.running:
                continue
            status = member.status()
            leader_id = str(status["leader"])
            for candidate in self.members:
                if candidate.process is not None and candidate.process.running:
                    if str(candidate.status()["header"]["member_id"]) == leader_id:
                        return candidate
        raise RuntimeError("no etcd member reports a live leader")

    def kill(self, member: EtcdMember) -> None:
        """SIGKILL one member (as a crash would)."""
        assert member.process is not None
        member.process.stop(signal.SIGKILL)

    def restart(self, member: EtcdMember, timeout: float = 30.0) -> None:
        """Start a killed member again with its old data; it rejoins the cluster."""
        self._launch(member, "existing")
        self._wait(member, timeout)

    def stop(self) -> None:
        # Throwaway members: SIGKILL. (On SIGTERM a member of a 3-member cluster can spend
        # seconds trying to hand raft leadership to peers that are stopping too.)
        for member in self.members:
            if member.process is not None:
                member.process.stop(signal.SIGKILL)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def consul_kv_raw(url: str, key: str) -> dict | None:
    """The raw KV entry of ``key`` as Consul's HTTP API returns it (no client library), or None."""
    resp = httpx.get(f"{url}/v1/kv/{key}", timeout=2)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return json.loads(resp.text)[0]


__all__ = [
    "ConsulAgent",
    "EtcdCluster",
    "EtcdMember",
    "ServiceUnavailable",
    "consul_kv_raw",
    "find_consul",
    "find_etcd",
    "free_port",
    "repo_root",
    "wait_until",
]
