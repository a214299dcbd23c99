"""The metrics signal (placeholder until the metrics issue lands)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

__all__ = ["MetricsSignal", "start_metrics_server"]


class MetricsSignal:
    name = "metrics"

    def __init__(self, registry: CollectorRegistry, options: Any) -> None:
        self._registry = registry


def start_metrics_server(port: int = 9464, addr: str = "0.0.0.0") -> Any:
    raise NotImplementedError
