"""The GenAI metric families: token usage, operation duration, time to first chunk,
guardrail interventions, rendered from ``call.genai`` by the metrics signal.

Names and labels are the OpenTelemetry GenAI conventions' (``evobs.genai.semconv``),
translated to Prometheus as OpenTelemetry's Prometheus compatibility rules do. Like
every family of the metrics signal they are evobs's own (``_series``), so none needs
prometheus_client until collected, and prometheus_client's in multiprocess mode.

A non-streaming call is recorded when it ends; a call that returned a stream when the
stream ends (``call.stream``), so its duration, usage and time to first chunk are the
stream's. Label values that come from the user or the wire (the model id, the guardrail
id, the error type) are capped per registry: past :data:`LABEL_CAP` distinct values,
``other``.
"""

from __future__ import annotations

import weakref
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from .._fork import ForkSafeLock
from .._registry import family
from ..genai import semconv
from ._labels import OTHER
from ._series import family_classes, lock_of

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .._call import Call
    from ..genai.model import Request, Response
    from ..genai.stream import StreamSummary

__all__ = ["LABEL_CAP", "OTHER", "GenAIMetrics"]

#: Distinct values of each capped label (model, guardrail id, error type) per registry.
LABEL_CAP: Final = 64
_MAX_LABEL_LEN: Final = 256
_NS: Final = 1e-9


class _Capped:
    """The admitted values of one label in one registry (shared by every signal on it)."""

    __slots__ = ("_lock", "_seen")

    def __init__(self) -> None:
        self._lock = ForkSafeLock()
        self._seen: set[str] = set()

    def admit(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(value) > _MAX_LABEL_LEN:
            return OTHER
        with self._lock:
            if value in self._seen or len(self._seen) < LABEL_CAP:
                self._seen.add(value)
                return value
        return OTHER


class _Labels:
    """The three capped labels of one registry."""

    __slots__ = ("__weakref__", "errors", "guardrails", "models")

    def __init__(self) -> None:
        self.models = _Capped()
        self.guardrails = _Capped()
        self.errors = _Capped()


_LABELS: Final[weakref.WeakKeyDictionary[Any, _Labels]] = weakref.WeakKeyDictionary()
_LABELS_LOCK: Final = ForkSafeLock()


def _labels_of(duration: Any) -> _Labels:
    with _LABELS_LOCK:
        found = _LABELS.get(duration)
        if found is None:
            found = _LABELS[duration] = _Labels()
        return found


def _histogram(registry: CollectorRegistry, spec: semconv.MetricSpec, factory: Any) -> Any:
    return family(
        registry, factory, spec.prometheus, spec.description, spec.labels, buckets=spec.buckets
    )


class GenAIMetrics:
    """The GenAI families of one registry, created once (at ``instrument()``, so a
    conflicting family is reported there, never at call time)."""

    __slots__ = ("_children", "_duration", "_guardrail", "_labels", "_tokens", "_ttfc")

    def __init__(self, registry: CollectorRegistry) -> None:
        counter, _, histogram = family_classes()
        self._tokens = _histogram(registry, semconv.TOKEN_USAGE, histogram)
        self._duration = _histogram(registry, semconv.OPERATION_DURATION, histogram)
        self._ttfc = _histogram(registry, semconv.TIME_TO_FIRST_CHUNK, histogram)
        spec = semconv.GUARDRAIL_INTERVENTIONS
        self._guardrail = family(registry, counter, spec.prometheus, spec.description, spec.labels)
        self._labels = _labels_of(self._duration)
        #: (family, label values) -> child: bounded by the caps.
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def call_ended(self, call: Call) -> None:
        """Record the call now, or when the stream it returned ends."""
        facts = call.genai
        stream = call.stream
        if stream is not None:
            request, start_ns = facts.request, call.start_ns
            stream.subscribe(lambda summary: self._stream_ended(request, start_ns, summary))
            return
        error = "" if call.outcome == "ok" else (call.error_type or call.outcome or "error")
        self._record(facts.request, call.duration_ns, error, facts.response, None)

    def _stream_ended(self, request: Request, start_ns: int, summary: StreamSummary) -> None:
        error = "" if summary.outcome == "ok" else (summary.error_type or summary.outcome)
        duration_ns = perf_counter_ns() - start_ns
        self._record(request, duration_ns, error, summary.response, summary.time_to_first_chunk)

    def _record(
        self,
        request: Request,
        duration_ns: int,
        error: str,
        response: Response | None,
        time_to_first_chunk: float | None,
    ) -> None:
        labels = self._labels
        model = labels.models.admit(request.model or "")
        operation = request.operation_name
        if request.is_inference:
            error_type = labels.errors.admit(error) if error else ""
            values = (operation, semconv.PROVIDER, model)
            duration = self._child(self._duration, (*values, error_type))
            tokens = []
            if response is not None:
                tokens = [
                    (self._child(self._tokens, (*values, token_type)), count)
                    for token_type, count in response.token_counts().items()
                ]
            ttfc = None if time_to_first_chunk is None else self._child(self._ttfc, values)
            with lock_of(duration) as w:  # all keyed by the operation name: one lock
                w.observe(duration, duration_ns * _NS)
                for child, count in tokens:
                    w.observe(child, count)
                if ttfc is not None and time_to_first_chunk is not None:
                    w.observe(ttfc, time_to_first_chunk)
        if response is not None and response.guardrail_intervened:
            guardrail = labels.guardrails.admit(request.guardrail_id or "")
            child = self._child(self._guardrail, (request.aws_operation, model, guardrail))
            with lock_of(child) as w:
                w.inc(child)
