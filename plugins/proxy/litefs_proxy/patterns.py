"""Path patterns of ``proxy.passthrough`` and ``proxy.always-forward``.

LiteFS's syntax: ``*`` matches any run of characters (slashes included), every other character
matches itself, and a pattern must match the whole path. So ``/build/*`` matches ``/build/`` and
``/build/foo/bar`` but not ``/build``; ``*.png`` matches ``/images/pic.png``; ``*foo*`` matches
``foo/bar``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """One pattern as an anchored regular expression."""
    return re.compile(
        "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    )


class PathMatcher:
    """A list of patterns; ``matches(path)`` is true when any of them matches the whole path."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = list(patterns)
        self._compiled = [compile_pattern(p) for p in self.patterns]

    def matches(self, path: str) -> bool:
        return any(rx.fullmatch(path) for rx in self._compiled)

    def __bool__(self) -> bool:
        return bool(self._compiled)
