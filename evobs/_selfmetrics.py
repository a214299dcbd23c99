"""evobs's own health families: its failures, the spans it could not deliver, the log
events it held back. Each is declared here once, whichever part of evobs counts it.

They are evobs's own families (``signals._series``: count one with ``_series.count``),
prometheus_client's in multiprocess mode. Without a registry they go to
prometheus_client's global one, registered when prometheus_client is imported
(``_registry``): a process that never scrapes never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._registry import family

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "Counting",
    "counter_factory",
    "handler_errors",
    "log_events_suppressed",
    "resolve",
    "spans_dropped",
]


def resolve(registry: CollectorRegistry | None) -> CollectorRegistry:
    """The registry a family goes to: the one given, else prometheus_client's global
    (its stand-in until prometheus_client is imported)."""
    if registry is not None:
        return registry
    from ._registry import global_registry

    return global_registry()


def counter_factory() -> Any:
    """The counter family class (``_series.family_classes``)."""
    from .signals._series import family_classes

    return family_classes()[0]


def handler_errors(registry: CollectorRegistry | None) -> Any:
    """``evobs_handler_errors_total{event}``."""
    return family(
        resolve(registry),
        counter_factory(),
        "evobs_handler_errors",
        "Exceptions raised inside evobs (handlers and signals), swallowed so the call "
        "is unaffected",
        ("event",),
    )


def spans_dropped(registry: CollectorRegistry | None) -> Any:
    """``evobs_spans_dropped_total`` (the family; :class:`Counting` counts it)."""
    return family(
        resolve(registry),
        counter_factory(),
        "evobs_spans_dropped",
        "Spans evobs could not start or end (they are dropped, the call is unaffected)",
    )


class Counting:
    """``.inc(amount)`` on the one series of a family without labels, under its lock
    (evobs's own family, or prometheus_client's in multiprocess mode)."""

    __slots__ = ("_series",)

    def __init__(self, metric: Any) -> None:
        from .signals._series import CounterFamily

        self._series = metric.labels() if isinstance(metric, CounterFamily) else metric

    def inc(self, amount: float = 1) -> None:
        from .signals._series import count

        count(self._series, amount)


def log_events_suppressed(registry: CollectorRegistry | None) -> Any:
    """``evobs_log_events_suppressed_total{event}``: one of evobs's own families (updated
    under its lock by the retry-log limiter), prometheus_client's in multiprocess mode."""
    return family(
        resolve(registry),
        counter_factory(),
        "evobs_log_events_suppressed",
        "Log events evobs did not emit because of its rate limits",
        ("event",),
    )
