"""evobs's own health families: its failures, the spans it could not deliver, the log
events it held back. Each is declared here once, whichever part of evobs counts it.

prometheus_client is imported only when a family is made: a process with the metrics
signal off makes one only when there is something to count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._registry import family

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["handler_errors", "log_events_suppressed", "resolve", "spans_dropped"]


def resolve(registry: CollectorRegistry | None) -> CollectorRegistry:
    """The registry a family goes to: the one given, else prometheus_client's global."""
    if registry is not None:
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def handler_errors(registry: CollectorRegistry | None) -> Any:
    """``evobs_handler_errors_total{event}``."""
    from prometheus_client import Counter

    return family(
        resolve(registry),
        Counter,
        "evobs_handler_errors",
        "Exceptions raised inside evobs (handlers and signals), swallowed so the call "
        "is unaffected",
        ("event",),
    )


def spans_dropped(registry: CollectorRegistry | None) -> Any:
    """``evobs_spans_dropped_total``."""
    from prometheus_client import Counter

    return family(
        resolve(registry),
        Counter,
        "evobs_spans_dropped",
        "Spans evobs could not start or end (they are dropped, the call is unaffected)",
    )


def log_events_suppressed(registry: CollectorRegistry | None) -> Any:
    """``evobs_log_events_suppressed_total{event}``: one of evobs's own families (updated
    under its lock by the retry-log limiter), prometheus_client's in multiprocess mode."""
    from prometheus_client import Counter

    from ._compat.prometheus import multiprocess_mode
    from .signals._series import CounterFamily

    return family(
        resolve(registry),
        Counter if multiprocess_mode() else CounterFamily,
        "evobs_log_events_suppressed",
        "Log events evobs did not emit because of its rate limits",
        ("event",),
    )
