"""evobs's own logger, and the accounting of its own failures.

Library manners: events go through structlog wrapping the stdlib logger
``evobs``, which gets a ``NullHandler`` and nothing else. Nothing prints unless
the application configures logging (or calls ``evobs.configure(logs=...)``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from ._fork import ForkSafeLock
from ._lazy import lazy_module, lazy_names

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from . import _selfmetrics
    from .signals._series import count
else:
    # Needed at the first failure, or now if the metrics signal is on (see HandlerErrors).
    _selfmetrics = lazy_module(globals(), "evobs._selfmetrics", "_selfmetrics")
    (count,) = lazy_names(globals(), "evobs.signals._series", "count")

__all__ = ["STDLIB_LOGGER", "EventDict", "HandlerErrors", "get_logger"]

STDLIB_LOGGER: Final = logging.getLogger("evobs")
if not any(isinstance(h, logging.NullHandler) for h in STDLIB_LOGGER.handlers):
    STDLIB_LOGGER.addHandler(logging.NullHandler())


class EventDict(dict[str, Any]):
    """An event dict that reads well as a plain ``logging`` message.

    ``ProcessorFormatter`` copies it to a plain dict (so structlog apps get the
    fields); a stdlib-only app's formatter calls ``str()`` on it and gets
    ``aws.call service=S3 operation=PutObject ...`` instead of a dict repr.
    """

    __slots__ = ()

    def __str__(self) -> str:
        event = self.get("event", "")
        pairs = " ".join(
            f"{k}={v}"
            for k, v in self.items()
            if k not in ("event", "level", "timestamp", "exc_info") and v is not None
        )
        return f"{event} {pairs}" if pairs else str(event)


def _readable(_: Any, __: str, event_dict: Any) -> EventDict:
    return EventDict(event_dict)


_LOGGER: Any = None
_LOGGER_LOCK: Final = ForkSafeLock()


def get_logger() -> Any:
    """structlog bound to ``logging.getLogger("evobs")``, built on first use.

    The last processor hands the event dict to stdlib, so apps with structlog's
    ProcessorFormatter get the dict and plain logging apps get a readable record.
    structlog is imported here, not at ``import evobs``: it costs ~50 ms, which a
    Lambda cold start with the logs signal off should not pay.
    """
    global _LOGGER
    if _LOGGER is None:
        with _LOGGER_LOCK:
            if _LOGGER is None:
                import structlog

                _LOGGER = structlog.wrap_logger(
                    STDLIB_LOGGER,
                    processors=[
                        structlog.stdlib.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                        _readable,
                        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
                    ],
                    wrapper_class=structlog.stdlib.BoundLogger,
                    cache_logger_on_first_use=True,
                )
    return _LOGGER


def __getattr__(name: str) -> Any:
    # ``from evobs._log import logger`` keeps working, lazily.
    if name == "logger":
        return get_logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class HandlerErrors:
    """Counts evobs's own failures per event (``evobs_handler_errors_total``) and logs
    each kind once; never raises.

    ``eager``: the family is registered now (the metrics signal is on, so it shows in the
    first scrape); otherwise at the first failure, so a process with metrics off does not
    import prometheus_client for a family that may never be needed."""

    __slots__ = ("_children", "_counter", "_lock", "_registry", "_seen")

    def __init__(self, registry: CollectorRegistry | None, *, eager: bool = True) -> None:
        self._registry = registry
        self._counter: Any = _selfmetrics.handler_errors(registry) if eager else None
        self._children: dict[str, Any] = {}
        self._seen: set[tuple[str, type[BaseException]]] = set()
        self._lock = ForkSafeLock()

    def record(self, event: str, exc: BaseException) -> None:
        try:
            child = self._children.get(event)
            if child is None:
                with self._lock:
                    if self._counter is None:
                        self._counter = _selfmetrics.handler_errors(self._registry)
                    child = self._children[event] = self._counter.labels(event=event)
            count(child)
            key = (event, type(exc))
            if key in self._seen:
                return
            with self._lock:
                if key in self._seen or len(self._seen) > 256:
                    return
                self._seen.add(key)
            get_logger().error(
                "evobs.internal_error",
                evobs_event=event,
                error_type=type(exc).__name__,
                error_message=str(exc)[:500],
                exc_info=exc,
            )
        except Exception:  # the error path itself must never raise
            pass
