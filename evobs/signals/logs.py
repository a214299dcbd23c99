"""The logs signal: structured, trace-correlated events through the ``evobs`` logger.

Events (see ``docs/logs.md``): ``aws.call`` for every call, ``aws.retry`` per
retry (rate-limited per operation, so a retry storm cannot flood the logs),
``aws.call.slow`` over ``slow_call_seconds``, ``aws.client.created``.

This runs on every AWS call. Each event is built only if the stdlib logger
``evobs`` would emit it at that level (``isEnabledFor``, a cached lookup), so an
application that does not log evobs's events pays one method call per call, and
structlog is imported only when the first event is due.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from .._fork import ForkSafeLock
from .._lazy import lazy_module, lazy_names
from .._log import STDLIB_LOGGER, get_logger
from . import SignalBase

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .. import _selfmetrics
    from .._call import Attempt, Call
    from .._operation import Operation
    from .._options import Options
    from .._redact import error_message, render_params
    from . import ClientCreated
else:
    # Imported by the first failed call logged (or captured params).
    error_message, render_params = lazy_names(
        globals(), "evobs._redact", "error_message", "render_params"
    )
    # Imported with the retry-log limiter (see LogsSignal).
    _selfmetrics = lazy_module(globals(), "evobs._selfmetrics", "_selfmetrics")

__all__ = ["LEVELS", "LogsSignal", "RetryLimiter"]

DEBUG: Final = logging.DEBUG
INFO: Final = logging.INFO
WARNING: Final = logging.WARNING
ERROR: Final = logging.ERROR

#: ``aws.call`` level per outcome (expected errors: INFO).
LEVELS: Final = {
    "ok": DEBUG,
    "client_error": WARNING,
    "throttled": WARNING,
    "server_error": ERROR,
    "connection_error": ERROR,
    "error": ERROR,
}

_NS_PER_MS: Final = 1_000_000
_MAX_BUCKETS: Final = 4096
_LIMITER_GUARD: Final = ForkSafeLock()


def _ms(ns: int) -> float:
    return round(ns / _NS_PER_MS, 3)


class _Bucket:
    __slots__ = ("stamp", "suppressed", "tokens")

    def __init__(self, tokens: float, stamp: int) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.suppressed = 0


class RetryLimiter:
    """A token bucket per operation: ``burst`` events at once, then ``rate`` per second.

    ``allow`` returns -1 for an event to drop, else how many were dropped since the
    last one let through (so the next event can say so). ``suppressed``, a counter
    series, is counted for each dropped event under the same lock (its own series lock:
    one lock per retry instead of two)."""

    __slots__ = ("_buckets", "_burst", "_lock", "_per_ns", "_suppressed")

    def __init__(self, rate: float, burst: float | None = None, suppressed: Any = None) -> None:
        from ._series import PROMETHEUS_CHILDREN, SeriesLock, lock_of

        self._per_ns = rate / 1e9
        self._burst = max(1.0, rate if burst is None else burst)
        self._buckets: dict[Any, _Bucket] = {}
        self._suppressed = suppressed
        lock = lock_of(suppressed) if suppressed is not None else None
        # prometheus_client's children (multiprocess mode) lock themselves: the buckets
        # then get a lock of their own, whose writer still counts the child.
        self._lock: Any = lock if isinstance(lock, SeriesLock) else _OwnLock(PROMETHEUS_CHILDREN)

    def allow(self, key: Any, now_ns: int) -> int:
        with self._lock as w:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_BUCKETS:
                    self._buckets.clear()
                bucket = self._buckets[key] = _Bucket(self._burst, now_ns)
            else:
                elapsed = now_ns - bucket.stamp
                if elapsed > 0:
                    bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._per_ns)
                    bucket.stamp = now_ns
            if bucket.tokens < 1.0:
                bucket.suppressed += 1
                if self._suppressed is not None:
                    w.inc(self._suppressed)
                return -1
            bucket.tokens -= 1.0
            dropped, bucket.suppressed = bucket.suppressed, 0
            return dropped


class _OwnLock(ForkSafeLock):
    """A lock of the limiter's own; its writer counts prometheus_client's children."""

    __slots__ = ("_children",)

    def __init__(self, children: Any) -> None:
        super().__init__()
        #: ``_series.PROMETHEUS_CHILDREN`` (passed in: ``_series`` is imported with the limiter).
        self._children = children

    def __enter__(self) -> Any:
        self._lock.acquire()
        return self._children.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class LogsSignal(SignalBase):
    """Renders call records as structlog events on the stdlib logger ``evobs``."""

    __slots__ = (
        "_enabled",
        "_limiter",
        "_log",
        "_options",
        "_registry",
        "_slow_ns",
        "_static",
    )

    name = "logs"

    def __init__(self, options: Options, registry: CollectorRegistry | None) -> None:
        self._options = options
        self._enabled = STDLIB_LOGGER.isEnabledFor
        # A concrete BoundLogger (evobs's own processor chain; nothing global), made when
        # the first event is due: until then structlog is not even imported.
        self._log: Any = _FirstEvent(self)
        slow = options.slow_call_seconds
        # Clamped: a huge threshold (1e300 s) means never, not an OverflowError.
        self._slow_ns = None if slow is None else int(min(slow, 1e12) * 1e9)
        self._registry = registry
        #: Made at the first retry that would be logged, unless a registry is given or
        #: the metrics signal is on (then now, so its counter is in the first scrape):
        #: with metrics off, its family is made only when there is a retry.
        self._limiter: RetryLimiter | None = None
        if registry is not None or "metrics" in options.signals:
            self._limiter = self._new_limiter()
        self._static: dict[Operation, dict[str, Any]] = {}

    def _new_limiter(self) -> RetryLimiter:
        with _LIMITER_GUARD:  # one limiter per signal, whichever thread gets here first
            limiter = self._limiter
            if limiter is None:
                options = self._options
                suppressed = _selfmetrics.log_events_suppressed(self._registry)
                limiter = self._limiter = RetryLimiter(
                    options.retry_log_rate,
                    burst=options.retry_log_burst,
                    suppressed=suppressed.labels(event="aws.retry"),
                )
            return limiter

    # -- helpers --------------------------------------------------------------------

    def _base(self, call: Call) -> dict[str, Any]:
        """service/operation (cached per operation), region, and the trace ids."""
        static = self._static.get(call.op)
        if static is None:
            static = self._static[call.op] = {
                "service": call.op.service,
                "operation": call.op.name,
            }
        fields = static.copy()
        fields["region"] = call.region
        ctx = call.span_context
        if ctx is not None and ctx.is_valid:
            fields["trace_id"] = format(ctx.trace_id, "032x")
            fields["span_id"] = format(ctx.span_id, "016x")
        return fields

    # -- transitions ------------------------------------------------------------------

    def attempt_started(self, call: Call, attempt: Attempt) -> None:
        number = attempt.number
        if number == 1 or call.suppressed or not self._enabled(WARNING):
            return
        limiter = self._limiter or self._new_limiter()
        dropped = limiter.allow(call.op, attempt.start_ns)
        if dropped < 0:
            return
        previous = call.attempts[number - 2]
        fields = self._base(call)
        fields["attempt"] = number
        fields["reason"] = previous.outcome or "error"
        fields["error_type"] = previous.error_type
        fields["http_status"] = previous.http_status
        fields["delay_ms"] = _ms(attempt.start_ns - (previous.end_ns or attempt.start_ns))
        if previous.request_id:
            fields["request_id"] = previous.request_id
        if dropped:
            fields["suppressed"] = dropped
        self._log.warning("aws.retry", **fields)

    def call_ended(self, call: Call) -> None:
        if call.suppressed:
            return
        outcome = call.outcome or "error"
        level = DEBUG if outcome == "ok" else INFO if call.expected else LEVELS.get(outcome, ERROR)
        slow_ns = self._slow_ns
        slow = slow_ns is not None and call.duration_ns > slow_ns and self._enabled(WARNING)
        if not slow and not self._enabled(level):
            return
        fields = self._base(call)
        fields["outcome"] = outcome
        fields["http_status"] = call.http_status
        if outcome != "ok":
            fields["error_type"] = call.error_type or outcome
            fields["error_message"] = error_message(
                call, capture_s3_keys=self._options.capture_s3_keys
            )
        fields["request_id"] = call.request_id
        fields["invocation_id"] = call.invocation_id
        fields["attempts"] = len(call.attempts)
        fields["duration_ms"] = _ms(call.duration_ns)
        if self._options.capture_params and call.params is not None:
            fields["params"] = render_params(
                call.op.model, call.params, capture_s3_keys=self._options.capture_s3_keys
            )
        if self._enabled(level):
            self._log.log(level, "aws.call", **fields)
        if slow:
            fields.pop("params", None)
            fields["slow_call_ms"] = _ms(slow_ns or 0)
            fields["retry_backoff_ms"] = _ms(call.backoff_ns)
            self._log.warning("aws.call.slow", **fields)

    def client_created(self, event: ClientCreated) -> None:
        if not self._enabled(DEBUG):
            return
        self._log.debug(
            "aws.client.created",
            service=event.service,
            region=event.region,
            duration_ms=_ms(event.duration_ns),
        )


class _FirstEvent:
    """Stands for a logs signal's structlog logger until its first event: builds it
    (importing structlog), puts it in the signal's place and hands it over."""

    __slots__ = ("_signal",)

    def __init__(self, signal: LogsSignal) -> None:
        self._signal = signal

    def __getattr__(self, name: str) -> Any:
        log = self._signal._log = get_logger().bind()
        return getattr(log, name)
