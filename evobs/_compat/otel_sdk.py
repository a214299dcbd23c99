"""The OpenTelemetry SDK's private details evobs reads, and which SDK versions its span
path is proven on.

evobs's span path (``evobs.signals._spans``) records its spans through the parts of
the SDK's own ``Tracer`` (sampler, id generator, limits, span processors) instead of
``Tracer.start_span``. That is only right where the dependency matrix has shown the
result equal to ``start_span``: :data:`FAST_SPANS_PROVEN` names those SDK versions, and
:func:`tracer_parts` answers, once per tracer, whether every part the path needs is
present with the shape it expects. Anything else takes the public API.
"""

from __future__ import annotations

import operator
import os
import sys
from collections import deque
from collections.abc import Callable
from importlib import metadata
from typing import Any, Final

from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, sampling
from opentelemetry.trace import TraceFlags

from . import parameter_names

__all__ = [
    "FAST_SPANS_PROVEN",
    "READABLE_SPAN_FIELDS",
    "SDK_VERSION",
    "SETS_RANDOM_TRACE_ID_FLAG",
    "SPAN_PROCESSORS_ATTR",
    "TracerParts",
    "batch_queue",
    "current_span_processors",
    "default_sampler_mode",
    "fast_spans_proven",
    "noop_hooks",
    "on_ending_hook",
    "span_processors",
    "tracer_parts",
]


def _sdk_version() -> tuple[int, ...]:
    """From the SDK's own public ``opentelemetry.sdk.version``: a metadata lookup scans
    every installed distribution, a cost each cold start would pay."""
    try:
        from opentelemetry.sdk.version import __version__ as text
    except ImportError:
        try:
            text = metadata.version("opentelemetry-sdk")
        except metadata.PackageNotFoundError:
            return ()
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


#: The installed opentelemetry-sdk's version, ``(1, 45, 2)``; ``()`` if unknown.
SDK_VERSION: Final = _sdk_version()

#: The lowest and highest ``(major, minor)`` of opentelemetry-sdk on which the dependency
#: matrix (``make test-matrix``, ``docs/compatibility.md``) runs the span-path equivalence
#: suite (``tests/test_span_path.py``) and finds the fast path's spans equal to
#: ``start_span``'s. Below: the SDK has neither ``_on_ending`` nor tracer configurators and
#: evobs takes the API. Above: not yet proven, so the API too until the matrix covers it.
FAST_SPANS_PROVEN: Final = ((1, 40), (1, 45))

#: From 1.43 ``start_span`` sets W3C's random-trace-id flag (``TraceFlags.RANDOM_TRACE_ID``)
#: when the id generator says its trace ids are random, or the parent's flag.
SETS_RANDOM_TRACE_ID_FLAG: Final = SDK_VERSION[:2] >= (1, 43) and hasattr(
    TraceFlags, "RANDOM_TRACE_ID"
)


def fast_spans_proven(version: tuple[int, ...] | None = None) -> bool:
    """Whether the matrix proves the span path on this SDK version (default: installed)."""
    if version is None:
        version = SDK_VERSION
    low, high = FAST_SPANS_PROVEN
    return low <= version[:2] <= high


class TracerParts:
    """What starting and ending a span goes through in one SDK ``Tracer``, read once."""

    __slots__ = (
        "id_generator",
        "instrumentation_info",
        "instrumentation_scope",
        "is_enabled",
        "limits",
        "multi",
        "sampler",
        "span_processor",
        "tracer",
    )

    def __init__(
        self,
        tracer: Any,
        sampler: Any,
        id_generator: Any,
        span_processor: Any,
        multi: Any,
        instrumentation_info: Any,
        instrumentation_scope: Any,
        limits: SpanLimits,
        is_enabled: Callable[[], bool] | None,
    ) -> None:
        #: Kept for ``tracer.resource``: the SDK gives its tracers a new resource after fork.
        self.tracer = tracer
        self.sampler = sampler
        self.id_generator = id_generator
        self.span_processor = span_processor
        #: The provider's ``SynchronousMultiSpanProcessor``, whose processors are called
        #: directly; None for any other processor, which is called as a whole.
        self.multi = multi
        self.instrumentation_info = instrumentation_info
        self.instrumentation_scope = instrumentation_scope
        self.limits = limits
        self.is_enabled = is_enabled


def tracer_parts(tracer: Any) -> TracerParts | None:
    """The parts of exactly the SDK's ``Tracer``, or None where the span path must not be
    used: another tracer class (a subclass may do its own thing in ``start_span``), an
    SDK version the matrix does not prove, the SDK's own span metrics switched on (they
    are counted inside ``start_span``), or any part missing or of an unexpected shape.

    Private reads: ``Tracer._instrumentation_scope``, ``Tracer._span_limits``,
    ``Tracer._is_enabled`` and ``SynchronousMultiSpanProcessor._span_processors``."""
    if type(tracer) is not sdk_trace.Tracer or not fast_spans_proven():
        return None
    if os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() in (
        "1",
        "true",
    ):
        return None
    try:
        sampler = tracer.sampler
        ids = tracer.id_generator
        processor = tracer.span_processor
        info = getattr(tracer, "instrumentation_info", None)
        scope = tracer._instrumentation_scope
        limits = tracer._span_limits
        is_enabled = tracer._is_enabled
        resource = tracer.resource
    except AttributeError:
        return None
    if not (
        callable(getattr(sampler, "should_sample", None))
        and callable(getattr(ids, "generate_trace_id", None))
        and callable(getattr(ids, "generate_span_id", None))
        and callable(getattr(processor, "on_start", None))
        and callable(getattr(processor, "on_end", None))
        and isinstance(limits, SpanLimits)
        and callable(is_enabled)
        and resource is not None
        and _READABLE_SPAN_FIELDS is not None
    ):
        return None
    multi_class = getattr(sdk_trace, "SynchronousMultiSpanProcessor", None)
    multi = processor if multi_class is not None and type(processor) is multi_class else None
    if multi is not None and span_processors(multi) is None:
        return None
    return TracerParts(tracer, sampler, ids, processor, multi, info, scope, limits, is_enabled)


#: Where a ``SynchronousMultiSpanProcessor`` keeps its processors.
SPAN_PROCESSORS_ATTR: Final = "_span_processors"


#: The same read, unchecked, for the per-span "did the processors change?" test (one C
#: call: the caller compares the result by identity); raises AttributeError where the
#: attribute is gone, which fails the fast path over to the public API.
current_span_processors: Final[Callable[[Any], Any]] = operator.attrgetter(SPAN_PROCESSORS_ATTR)


def span_processors(multi: Any) -> tuple[Any, ...] | None:
    """The processors of a ``SynchronousMultiSpanProcessor`` (its ``_span_processors``
    tuple, replaced, never mutated, by ``add_span_processor``); None if unreadable."""
    processors = getattr(multi, SPAN_PROCESSORS_ATTR, None)
    return processors if isinstance(processors, tuple) else None


def on_ending_hook(processor: Any) -> Callable[[Any], None] | None:
    """A processor's ``_on_ending`` (the SDK's experimental OnEnding hook, from 1.40);
    None where the SDK or the processor has none."""
    hook = getattr(processor, "_on_ending", None)
    return hook if callable(hook) else None


def noop_hooks(name: str) -> frozenset[Any]:
    """The SDK's own processors' ``name`` hook (``on_start``, ``_on_ending``) where it is
    empty: not worth a call per span.

    Those of ``opentelemetry.sdk.trace.export`` only once something imported it: until
    then no processor of that module exists, and evobs does not import it for nothing."""
    from opentelemetry.sdk.trace import SpanProcessor

    classes: list[Any] = [SpanProcessor]
    export = sys.modules.get("opentelemetry.sdk.trace.export")
    if export is not None:
        classes += [getattr(export, n, None) for n in ("SimpleSpanProcessor", "BatchSpanProcessor")]
    return frozenset(h for c in classes if (h := getattr(c, name, None)) is not None)


#: ``default_sampler_mode`` answers: ask the sampler, it samples everything, or it
#: follows the parent and samples roots.
ASK: Final = 0
ALWAYS_ON: Final = 1
PARENT_OR_ON: Final = 2


def default_sampler_mode(sampler: Any) -> int:
    """Whether the sampler is one of the SDK's defaults, whose answer is known without a
    call. Private reads: ``ParentBased._root``, ``._remote_parent_sampled``,
    ``._remote_parent_not_sampled``, ``._local_parent_sampled``,
    ``._local_parent_not_sampled``; unreadable means "ask"."""
    if sampler is sampling.ALWAYS_ON:
        return ALWAYS_ON
    if type(sampler) is sampling.ParentBased and (
        getattr(sampler, "_root", None) is sampling.ALWAYS_ON
        and getattr(sampler, "_remote_parent_sampled", None) is sampling.ALWAYS_ON
        and getattr(sampler, "_remote_parent_not_sampled", None) is sampling.ALWAYS_OFF
        and getattr(sampler, "_local_parent_sampled", None) is sampling.ALWAYS_ON
        and getattr(sampler, "_local_parent_not_sampled", None) is sampling.ALWAYS_OFF
    ):
        return PARENT_OR_ON
    return ASK


def _readable_span_fields() -> frozenset[str] | None:
    """The keyword parameters of ``ReadableSpan.__init__`` (None if it cannot be read)."""
    try:
        parameters = parameter_names(ReadableSpan.__init__)
    except (TypeError, ValueError):
        return None
    names = frozenset(n for n in parameters if n != "self")
    return names if names >= READABLE_SPAN_FIELDS else None


#: The keyword arguments evobs's span passes to ``ReadableSpan.__init__`` (any other field
#: gets the SDK's own default, so a field a newer SDK adds never breaks an exporter).
READABLE_SPAN_FIELDS: Final = frozenset(
    {
        "name",
        "context",
        "parent",
        "resource",
        "attributes",
        "kind",
        "instrumentation_info",
        "status",
        "start_time",
        "instrumentation_scope",
    }
)
_READABLE_SPAN_FIELDS: Final = _readable_span_fields()


def batch_queue(processor: Any) -> tuple[deque[Any], int] | None:
    """The SDK batch processor's bounded deque and its capacity, if reachable.

    opentelemetry-sdk >= 1.34 keeps it in ``BatchSpanProcessor._batch_processor._queue``
    (``_max_queue_size``); older releases in ``BatchSpanProcessor.queue``
    (``max_queue_size``). The SDK reports drops only through its own internal metrics
    (off by default) and a log line, so evobs looks at the queue itself."""
    for owner, queue_attr, size_attr in (
        (getattr(processor, "_batch_processor", None), "_queue", "_max_queue_size"),
        (processor, "queue", "max_queue_size"),
    ):
        queue = getattr(owner, queue_attr, None)
        size = getattr(owner, size_attr, None)
        if isinstance(queue, deque) and isinstance(size, int) and queue.maxlen == size:
            return queue, size
    return None
