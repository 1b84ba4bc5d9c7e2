"""The one exception every litefs.yml problem raises."""

from __future__ import annotations

import os

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A problem with litefs.yml: not found, unreadable, bad YAML, bad key or value, or invalid.

    ``path`` is the config file (``None`` when the config did not come from a file), ``line`` the
    1-based line of the offending value (``None`` when unknown), ``key`` the dotted key path
    (``lease.consul.ttl``, ``exec[1].cmd``; ``None`` when the problem is not about one key) and
    ``message`` the bare message. When several problems were found, ``errors`` lists them all (the
    attributes above describe the first) and ``str()`` prints one per line. The CLI exits 2.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        key: str | None = None,
        errors: list[ConfigError] | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.key = key
        self.errors: list[ConfigError] = errors if errors else [self]
        super().__init__(message)

    def _one(self) -> str:
        if self.path is not None and self.line is not None:
            return f"{self.path}:{self.line}: {self.message}"
        if self.path is not None:
            return f"{self.path}: {self.message}"
        return self.message

    def __str__(self) -> str:
        if len(self.errors) > 1:
            return "\n".join(err._one() for err in self.errors)
        return self._one()
