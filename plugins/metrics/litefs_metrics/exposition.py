"""Text exposition that keeps LiteFS's counter names.

LiteFS uses the Go client, which exposes a counter called ``litefs_db_commit_count`` under exactly that
name. prometheus-client would append ``_total`` to every counter, so dashboards and alerts written for
LiteFS (``rate(litefs_db_commit_count[1m])``) would find nothing. Families of type :class:`GoCounter`
are therefore written here, in the same text format; everything else (gauges, histograms, the process
and platform collectors) is written by prometheus-client itself.
"""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class GoCounter(Metric):
    """A counter family whose samples carry the family name itself, without ``_total``."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, documentation, "counter")
        self._labelnames = labels

    def add(self, label_values: tuple[str, ...], value: float) -> None:
        if len(label_values) != len(self._labelnames):
            raise ValueError(f"{self.name}: expected labels {self._labelnames}, got {label_values!r}")
        self.add_sample(self.name, dict(zip(self._labelnames, label_values, strict=True)), value)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _render_go_counter(metric: GoCounter) -> str:
    lines = [
        f"# HELP {metric.name} {_escape_help(metric.documentation)}\n",
        f"# TYPE {metric.name} counter\n",
    ]
    for sample in metric.samples:
        labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
        lines.append(f"{sample.name}{{{labels}}} " if labels else f"{sample.name} ")
        lines.append(floatToGoString(sample.value) + "\n")
    return "".join(lines)


class _One:
    """A collector holding one already-collected family, to hand to ``generate_latest``."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def render(registry: Collector) -> bytes:
    """The registry in Prometheus text format, with :class:`GoCounter` families named as LiteFS does."""
    parts: list[bytes] = []
    batch: list[Metric] = []
    for metric in registry.collect():
        if isinstance(metric, GoCounter):
            if batch:
                parts.append(generate_latest(_One(batch)))  # type: ignore[arg-type]
                batch = []
            parts.append(_render_go_counter(metric).encode())
        else:
            batch.append(metric)
    if batch:
        parts.append(generate_latest(_One(batch)))  # type: ignore[arg-type]
    return b"".join(parts)
