"""The ``__txid`` cookie: how a client tells any node which transaction it must be able to read."""

from __future__ import annotations

import email.utils
import time

COOKIE_NAME = "__txid"
#: How long the cookie lives (LiteFS: five minutes).
COOKIE_LIFETIME = 300.0
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_txid_cookie(cookie_headers: list[str]) -> int:
    """The TXID in the first ``__txid`` cookie of the ``Cookie`` header(s); 0 when missing or invalid.

    Only exactly 16 hex digits are accepted, as in LiteFS; anything else means "do not wait".
    """
    for header in cookie_headers:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name.strip() == COOKIE_NAME:
                value = value.strip().strip('"')
                if len(value) == 16 and all(c in _HEX for c in value):
                    return int(value, 16)
                return 0
    return 0


def txid_set_cookie(txid: int, now: float | None = None) -> str:
    """``Set-Cookie`` value for a write that left the database at ``txid``."""
    expires = email.utils.formatdate((time.time() if now is None else now) + COOKIE_LIFETIME, usegmt=True)
    return f"{COOKIE_NAME}={txid:016x}; Path=/; Expires={expires}; HttpOnly"
