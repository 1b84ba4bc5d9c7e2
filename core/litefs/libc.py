"""C library functions that Python's standard library does not wrap, looked up by name."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any


def libc_function(name: str, argtypes: Sequence[Any] | None, restype: Any = ctypes.c_int) -> Any:
    """The C library's ``name`` with errno kept for ``ctypes.get_errno()``, or None where it does
    not exist (another C library or platform): callers then do without. ``argtypes`` None leaves
    the arguments unchecked (for variadic functions such as ``syscall``)."""
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    if argtypes is not None:
        fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


__all__ = ["libc_function"]
