"""Start one of the node's helper processes (the LTX writer, the WAL syncer).

A helper is a standard-library-only script run as ``python -I -S <script> <fd>...``, so it starts in
milliseconds and has an interpreter and GIL of its own. It runs in a session of its own: a Ctrl-C
to the node's process group must not cut its work short (the node stops it by closing its input).

Start helpers before the FUSE mount exists: a new process closes its inherited descriptors before it
runs, and closing one on our own mount would send a FUSE request to the node, which is waiting for
the new process to start -- a deadlock.
"""

from __future__ import annotations

import subprocess
import sys
from typing import IO


def start_helper(
    script: str,
    *args: str,
    pass_fds: tuple[int, ...] = (),
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Run ``script`` with ``args`` as a helper of this node; ``pass_fds`` stay open in it."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", script, *args],
        stdin=stdin,
        stdout=subprocess.DEVNULL,  # helpers report on their own descriptors; stderr stays the node's
        pass_fds=pass_fds,
        start_new_session=True,
    )


__all__ = ["start_helper"]
