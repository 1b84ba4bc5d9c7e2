"""Logging for the node: stdlib ``logging`` under the ``litefs`` logger, text or JSON on stderr."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_STANDARD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (optional), level, logger, msg, and any ``extra=`` fields."""

    def __init__(self, timestamp: bool) -> None:
        super().__init__()
        self.timestamp = timestamp

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {}
        if self.timestamp:
            out["time"] = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        out["level"] = record.levelname
        out["logger"] = record.name
        out["msg"] = record.getMessage()
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(*, format: str = "text", timestamp: bool = False, debug: bool = False) -> None:
    """Configure the root logger once; a second call replaces the first handler."""
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JSONFormatter(timestamp))
    else:
        fmt = (
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if timestamp
            else "%(levelname)s %(name)s: %(message)s"
        )
        handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # hypercorn's access lines are noise at INFO; keep its errors.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
