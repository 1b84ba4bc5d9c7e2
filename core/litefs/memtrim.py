"""Give freed heap memory back to the kernel after a bulk transfer (glibc's ``malloc_trim``).

An import or a snapshot moves a database through memory a MiB or so at a time, from worker threads
that each get a glibc arena of their own. Freed, those buffers stay in the arenas and keep the
node's RSS high long after the transfer (about 100 MB after a 1 GB ``/import``). ``malloc_trim(0)``
returns the free pages of every arena. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes

from litefs.libc import libc_function

_malloc_trim = libc_function("malloc_trim", [ctypes.c_size_t])


def release_free_memory() -> None:
    """Return free heap pages to the kernel (takes milliseconds: call it from a worker thread)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


__all__ = ["release_free_memory"]
