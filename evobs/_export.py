"""Where configure()'s spans go: the OTLP endpoint, the resource, and a provider whose
batch processor counts what it cannot deliver.

Spans that never leave the process (queue full, export failed) are counted in
``evobs_spans_dropped_total`` instead of vanishing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from . import _selfmetrics
from ._compat.otel_sdk import batch_queue
from ._fork import ForkSafeLock
from ._log import get_logger

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

__all__ = [
    "DEFAULT_EXPORT_BATCH_SIZE",
    "DEFAULT_SCHEDULE_DELAY_MS",
    "DEFAULT_SPAN_QUEUE_SIZE",
    "CountingExporter",
    "CountingSpanProcessor",
    "build_resource",
    "build_tracer_provider",
    "otlp_endpoint_is_set",
    "resolve_otlp_endpoint",
]

#: Spans the batch processor holds while the export thread catches up. The SDK's
#: default (2048) lost 13-29% of spans in a tight loop of boto3 calls (botocore's
#: per-call uuid4 releases the GIL and starves the export thread); 16384 absorbs a
#: burst of thousands of calls with the exporter making no progress at all.
#: Worst case memory, an exporter that is down: 16384 finished spans, ~3.4 KB each (~55 MB).
DEFAULT_SPAN_QUEUE_SIZE: Final = 16384
#: Spans per OTLP request: small enough for any collector's request limit.
DEFAULT_EXPORT_BATCH_SIZE: Final = 512
#: The export thread wakes at least this often (the SDK default is 5000 ms); it
#: also wakes as soon as a full batch is waiting.
DEFAULT_SCHEDULE_DELAY_MS: Final = 1000
_DEFAULT_OTLP_BASE: Final = "http://localhost:4318"
_TRACES_PATH: Final = "/v1/traces"
#: Per OTLP signal: its path under a base URL and the variable naming its full URL.
_SIGNALS: Final = {
    "traces": (_TRACES_PATH, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    "metrics": ("/v1/metrics", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        get_logger().warning("evobs.configure.bad_env", variable=name, value=raw[:100])
        return default
    return value if value > 0 else default


# -- span drop accounting ---------------------------------------------------------------


class CountingSpanProcessor:
    """Wraps a ``BatchSpanProcessor`` and counts the spans it could not queue.

    The SDK's processor silently drops a span when its queue is full; this
    wrapper checks the queue's length before handing the span over (under a lock,
    so two threads cannot both miss a drop) and counts a full queue as a drop.
    It costs one length check per span.
    """

    __slots__ = ("_closed", "_counter", "_lock", "_queue", "_size", "processor")

    def __init__(self, processor: Any, counter: Any) -> None:
        self.processor = processor
        self._counter = counter
        self._closed = False
        self._lock = ForkSafeLock()
        found = batch_queue(processor)
        self._queue: deque[Any] | None = None
        self._size = 0
        if found is not None:
            self._queue, self._size = found
        if found is None:
            get_logger().warning(
                "evobs.configure.drops_unobservable",
                reason="this opentelemetry-sdk's BatchSpanProcessor has no reachable queue; "
                "spans dropped for a full queue are not counted (failed exports still are)",
            )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.processor.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Span) -> None:
        on_ending = getattr(self.processor, "_on_ending", None)
        if on_ending is not None:
            on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        if queue is None:
            self.processor.on_end(span)
            return
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._closed:
            # Ended after shutdown (e.g. a call through the global provider): the SDK
            # discards it, so it is a drop too.
            self._counter.inc()
            return
        with self._lock:
            if len(queue) >= self._size:
                self._counter.inc()
            self.processor.on_end(span)

    def shutdown(self) -> None:
        self._closed = True
        self.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.processor.force_flush(timeout_millis))


class CountingExporter:
    """Wraps a span exporter: spans in a batch that failed to export are counted as dropped."""

    __slots__ = ("_counter", "exporter")

    def __init__(self, exporter: SpanExporter, counter: Any) -> None:
        self.exporter = exporter
        self._counter = counter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.exporter.export(spans)
        except Exception:
            self._counter.inc(len(spans))
            raise
        if result is not SpanExportResult.SUCCESS:
            self._counter.inc(len(spans))
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


# -- endpoint and resource --------------------------------------------------------------


def resolve_otlp_endpoint(otlp_endpoint: str | None = None, signal: str = "traces") -> str:
    """The full OTLP/HTTP URL of ``signal`` (traces, metrics): the argument, else the
    standard variables.

    A URL without a path (``http://jaeger:4318``) is a base and gets ``/v1/traces``
    (``/v1/metrics``) appended, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does; a URL with a
    path is a traces URL used as is, as ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is. Metrics
    go next to a traces URL that ends in ``/v1/traces`` (``.../v1/metrics``); for any
    other traces path there is no telling, which is a ``ValueError``.
    """
    path, variable = _SIGNALS[signal]
    if otlp_endpoint:
        if not urlsplit(otlp_endpoint).path.strip("/"):
            return otlp_endpoint.rstrip("/") + path
        if signal == "traces":
            return otlp_endpoint
        if otlp_endpoint.rstrip("/").endswith(_TRACES_PATH):
            return otlp_endpoint.rstrip("/").removesuffix(_TRACES_PATH) + path
        raise ValueError(
            f"evobs.configure: otlp_endpoint {otlp_endpoint!r} is a traces URL that does not "
            f"end in {_TRACES_PATH}, so the {signal} URL cannot be derived from it: pass a "
            f"base URL, or set {variable}"
        )
    full = os.environ.get(variable, "").strip()
    if full:
        return full
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _DEFAULT_OTLP_BASE
    return base.rstrip("/") + path


def otlp_endpoint_is_set() -> bool:
    """Whether the environment names an OTLP endpoint (the demo exports only then)."""
    return any(
        os.environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def build_resource(service_name: str | None) -> Any:
    """Resource with ``service.name``: the argument, else ``OTEL_SERVICE_NAME``, else
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``, else the SDK's
    ``unknown_service:<executable>``. Other ``OTEL_RESOURCE_ATTRIBUTES`` are kept."""
    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, Any] = {"telemetry.distro.name": "evobs"}
    if service_name:
        attributes["service.name"] = service_name
    return Resource.create(attributes)


def build_tracer_provider(
    service_name: str | None = None,
    *,
    exporter: SpanExporter,
    registry: CollectorRegistry,
    span_queue_size: int | None = None,
) -> tuple[TracerProvider, CountingSpanProcessor]:
    """An SDK provider sending to ``exporter`` through a sized, drop-counting batch processor.

    ``OTEL_BSP_MAX_QUEUE_SIZE``, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and
    ``OTEL_BSP_SCHEDULE_DELAY`` override evobs's defaults when set.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    queue_size = span_queue_size or _env_int("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_SPAN_QUEUE_SIZE)
    batch_size = min(
        _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_EXPORT_BATCH_SIZE), queue_size
    )
    delay = _env_int("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MS)
    counter = _selfmetrics.Counting(_selfmetrics.spans_dropped(registry))
    batch = BatchSpanProcessor(
        CountingExporter(exporter, counter),  # type: ignore[arg-type]
        max_queue_size=queue_size,
        max_export_batch_size=batch_size,
        schedule_delay_millis=delay,
    )
    processor = CountingSpanProcessor(batch, counter)
    # configure() registers its own, bounded, exit handler (the SDK's waits up to 30 s
    # for a hanging collector).
    provider = TracerProvider(resource=build_resource(service_name), shutdown_on_exit=False)
    provider.add_span_processor(processor)  # type: ignore[arg-type]
    return provider, processor
