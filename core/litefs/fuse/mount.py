"""Mount lifecycle: options, stale-mount cleanup, and running the pyfuse3 loop.

pyfuse3 keeps its session in module globals: one mount per process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pyfuse3

log = logging.getLogger("litefs.fuse")

#: One pyfuse3 worker: handlers never await, and extra workers only add scheduling cost (measured
#: +10-35% with one, fuse-perf.md §7A).
MAX_TASKS = 1


def _unescape_mount_field(field: str) -> str:
    # /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_entries(path: str) -> int:
    """How many entries in /proc/self/mounts have ``path`` as their mount point."""
    path = os.path.abspath(path)
    count = 0
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1 and _unescape_mount_field(parts[1]) == path:
                    count += 1
    except FileNotFoundError:
        return 0
    return count


def is_mounted(path: str) -> bool:
    return mount_entries(path) > 0


def cleanup_stale_mount(path: str, *, attempts: int = 20) -> None:
    """Unmount whatever is mounted at ``path`` (a dead mount of a killed node) until nothing is.

    A new mount on top of a dead one would succeed silently and hide it until it stops; fusermount3
    fails with EBUSY while anything is open inside, hence the lazy ``-z`` fallback.
    """
    for i in range(attempts):
        if not is_mounted(path):
            return
        log.info("unmounting stale mount at %s", path)
        res = subprocess.run(["fusermount3", "-u", path], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True, text=True, check=False)
        time.sleep(0.01 * (i + 1))
    if is_mounted(path):
        raise OSError(f"cannot unmount stale mount at {path}")


def prepare_mountpoint(path: str, *, skip_unmount: bool) -> None:
    """Clean a stale mount (unless told not to) and make sure the directory exists."""
    if not skip_unmount:
        cleanup_stale_mount(path)
    os.makedirs(path, exist_ok=True)


def mount_options(*, allow_other: bool, debug: bool) -> set[str]:
    opts = set(pyfuse3.default_options)  # default_permissions: the kernel checks mode bits
    opts.add("fsname=litefs")
    opts.add("subtype=litefs")
    if allow_other:
        opts.add("allow_other")
    if debug:
        opts.add("debug")
    return opts
