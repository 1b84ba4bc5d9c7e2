"""Helpers for the proxy tests: the small web app behind each proxy, and waiting for ports."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

APP_SCRIPT = Path(__file__).with_name("proxy_testapp.py")


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something answers HTTP at ``url`` (any status)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"nothing answers at {url} after {timeout}s: {last}")


class App:
    """The test app as a subprocess."""

    def __init__(self, port: int, db_path: str, name: str) -> None:
        self.port = port
        self.db_path = db_path
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> App:
        self.proc = subprocess.Popen(
            [sys.executable, str(APP_SCRIPT), str(self.port), self.db_path, self.name],
            stdin=subprocess.DEVNULL,
        )
        if wait:
            wait_http(self.url + "/ping", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def make_app() -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(port: int, db_path: str, name: str = "app", start: bool = True) -> App:
        app = App(port, db_path, name)
        apps.append(app)
        return app.start() if start else app

    try:
        yield make
    finally:
        for app in apps:
            app.stop()


def proxy_section(proxy_port: int, app_port: int, **extra: Any) -> dict[str, Any]:
    """A ``proxy:`` section for LiteFSNode's ``config=`` (``max_lag=`` becomes ``max-lag``)."""
    return {
        "proxy": {
            "addr": f"127.0.0.1:{proxy_port}",
            "target": f"127.0.0.1:{app_port}",
            "db": "app.db",
            **{key.replace("_", "-"): value for key, value in extra.items()},
        }
    }


@pytest.fixture(scope="session")
def helpers() -> Any:
    """This module, so module-scoped fixtures in the test files can use App, wait_http, proxy_section."""
    return sys.modules[__name__]
