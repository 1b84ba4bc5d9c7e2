"""Free loopback ports for test processes, chosen so that nothing else grabs them first.

A port from ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range, the same range every
outgoing connection takes its local port from. Between choosing the port and the child process
binding it, one of the many client connections a parallel test run opens can take it ("Address
already in use"). Ports are therefore handed out from below the ephemeral range, each pytest-xdist
worker from its own slice, each process from a random point in its slice and never twice.
"""

from __future__ import annotations

import os
import random
import socket
import threading

_BAND_LOW = 10000
_SLICES = 16
_lock = threading.Lock()
_next: int | None = None


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _slice() -> tuple[int, int]:
    high = _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % _SLICES if worker.isdigit() else 0
    width = (high - _BAND_LOW) // _SLICES
    start = _BAND_LOW + index * width
    return start, start + width


def _is_free(port: int) -> bool:
    # No SO_REUSEADDR: a port still in TIME_WAIT is skipped too.
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody uses and that no outgoing connection will pick."""
    global _next
    low, high = _slice()
    if high - low < 64:  # an unusual ephemeral range: fall back to the kernel's choice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    with _lock:
        if _next is None or not low <= _next < high:
            _next = random.randrange(low, high)
        for _ in range(high - low):
            port = _next
            _next = low if _next + 1 >= high else _next + 1
            if _is_free(port):
                return port
    raise OSError(f"no free loopback port in {low}-{high - 1}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (see ``free_port``)."""
    return [free_port() for _ in range(count)]
