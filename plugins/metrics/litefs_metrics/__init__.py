"""Prometheus metrics for litefs-py with LiteFS's metric names.

Status: the ``metrics`` section is registered; the ``/metrics`` route is not built yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litefs.hookspecs import hookimpl


@dataclass
class MetricsConfig:
    """``metrics`` in litefs.yml (an extension: LiteFS always serves /metrics)."""

    enabled: bool = True


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("metrics", MetricsConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return bool(config.section("metrics").enabled)
