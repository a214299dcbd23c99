"""The cheap span path: evobs's spans recorded straight into the SDK's pipeline.

``Tracer.start_span`` of the OpenTelemetry SDK validates every attribute under a
lock, builds bounded containers and copies the span again when it ends: inside an
AWS call that is about 35 µs per span, more than evobs needs for everything else.
evobs's own attributes are valid by construction, so for the SDK's own ``Tracer``
it asks the same parts the SDK would (the provider's sampler, id generator, span
processors, resource and limits) and hands the processors a span of its own: a
``ReadableSpan`` (what processors and exporters consume, built by its own
constructor) that is also an ``opentelemetry.trace.Span`` (what code running inside
the call sees as current). What a user sets on it through the API is validated
exactly as the SDK does.

It applies only where ``evobs._compat.otel_sdk`` says so, decided once per tracer:
an SDK version the dependency matrix proves equal to ``start_span``, with every part
present in the shape expected. If it fails at run time anyway, the pipeline reports
it (the traces signal then takes the public API for good) and still delivers the
span it was handling. Any other tracer (another SDK, a vendor's,
``OTEL_SDK_DISABLED``) is used through the API, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

from .._compat import otel_sdk
from .._compat.otel_api import new_span_context, span_in
from .._compat.otel_sdk import TracerParts

__all__ = ["SdkPipeline", "SdkSpan", "exception_type"]

if TYPE_CHECKING:
    #: What :meth:`SdkPipeline.sample` decides, as ``Tracer.start_span`` would:
    #: ``(context, parent, recording, attributes)``, a plain tuple (no class to build
    #: per call).
    Sampled = tuple[SpanContext | None, SpanContext | None, bool, dict[str, Any]]

_UNSET: Final = Status(StatusCode.UNSET)
_RANDOM: Final = (
    getattr(TraceFlags, "RANDOM_TRACE_ID", 0) if otel_sdk.SETS_RANDOM_TRACE_ID_FLAG else 0
)
_SAMPLED: Final = TraceFlags.SAMPLED
# The four flag values a span can get, built once (TraceFlags is an int subclass).
_FLAGS: Final = {
    (sampled, random): TraceFlags((_SAMPLED if sampled else 0) | (_RANDOM if random else 0))
    for sampled in (False, True)
    for random in (False, True)
}

#: At most this many attributes on evobs's own spans and events: below the SDK's
#: default limits (128), so under those limits nothing needs bounding.
_OWN_SPAN_ATTRIBUTES: Final = 64
_OWN_EVENT_ATTRIBUTES: Final = 8


class SdkPipeline:
    """The parts of one SDK ``Tracer`` that starting and ending a span goes through."""

    __slots__ = (
        "_enabled",
        "_fallback_on_end",
        "_generate_span_id",
        "_generate_trace_id",
        "_limits",
        "_max_events",
        "_max_span_attributes",
        "_multi",
        "_on_end",
        "_on_ending",
        "_on_failure",
        "_on_start",
        "_plain_events",
        "_plain_spans",
        "_processors",
        "_random_root",
        "_sampler",
        "_sampler_mode",
        "_tracer",
        "instrumentation_info",
        "instrumentation_scope",
    )

    def __init__(self, parts: TracerParts, on_failure: Callable[[BaseException], None]) -> None:
        self._sampler = parts.sampler
        self._sampler_mode = otel_sdk.default_sampler_mode(self._sampler)
        ids = parts.id_generator
        self._generate_trace_id = ids.generate_trace_id
        self._generate_span_id = ids.generate_span_id
        is_random = getattr(ids, "is_trace_id_random", None)
        self._random_root = bool(is_random()) if callable(is_random) and _RANDOM else False
        processor = parts.span_processor
        self._on_start: Callable[..., None] | None = processor.on_start
        self._on_end = processor.on_end
        #: Where a span goes if this path fails while ending it: the tracer's processor.
        self._fallback_on_end = processor.on_end
        # The SDK calls processors' ``_on_ending`` (OnEnding, still experimental).
        self._on_ending = otel_sdk.on_ending_hook(processor)
        # The provider's usual fan-out: its processors are called directly, and
        # ``_on_ending`` only if one of them does something in it (see ``_dispatch``).
        self._multi = parts.multi
        self._processors: Any = None
        # Read per span, not copied: the SDK gives its tracers a new resource after fork.
        self._tracer = parts.tracer
        self.instrumentation_info = parts.instrumentation_info
        self.instrumentation_scope = parts.instrumentation_scope
        # Under the default limits (128 attributes, no length limit) evobs's own
        # attributes and events pass as they are; other limits apply as in the SDK.
        lim = self._limits = parts.limits
        self._max_span_attributes = lim.max_span_attributes
        self._max_events = lim.max_events if lim.max_events is not None else 1 << 30
        self._plain_spans = lim.max_span_attribute_length is None and (
            lim.max_span_attributes is None or lim.max_span_attributes >= _OWN_SPAN_ATTRIBUTES
        )
        self._plain_events = lim.max_attribute_length is None and (
            lim.max_event_attributes is None or lim.max_event_attributes >= _OWN_EVENT_ATTRIBUTES
        )
        # Tracer configurators (experimental) can disable a tracer after the fact.
        self._enabled = parts.is_enabled
        #: Told once if this path fails at run time: its owner then takes the public API.
        self._on_failure = on_failure

    @classmethod
    def of(cls, tracer: Any, on_failure: Callable[[BaseException], None]) -> SdkPipeline | None:
        """The pipeline of the SDK's own ``Tracer`` where the matrix proves it; None for
        anything else (see ``evobs._compat.otel_sdk.tracer_parts``)."""
        parts = otel_sdk.tracer_parts(tracer)
        if parts is None:
            return None
        try:
            return cls(parts, on_failure)
        except Exception:
            return None  # a part of an unexpected shape: the public API

    def failed(self, exc: BaseException) -> None:
        """This path failed at run time: its owner is told (and stops using it)."""
        on_failure, self._on_failure = self._on_failure, _ignore
        on_failure(exc)

    @property
    def limits(self) -> SpanLimits:
        return self._limits

    def _begin(
        self, span: SdkSpan, context: Context | None, parent: SdkSpan | None = None
    ) -> SdkSpan:
        """Hands a new span to the processors (as they are now: see ``_refresh``). The
        context it was started in is ``context``, or (None) the one ``parent`` is
        current in, built only for a processor that does something in ``on_start``."""
        multi = self._multi
        if multi is not None and _processors_of(multi) is not self._processors:
            self._refresh()
        on_start = self._on_start
        if on_start is not None:
            if context is None and parent is not None:
                context = trace.set_span_in_context(parent)
            on_start(span, parent_context=context)
        return span

    def _refresh(self) -> None:
        """The provider's processors changed (``add_span_processor`` replaces the tuple:
        checked per span, by identity): dispatch to them as they are now."""
        processors = otel_sdk.span_processors(self._multi)
        if processors is None:
            raise AttributeError("SynchronousMultiSpanProcessor._span_processors")
        self._dispatch(processors)

    def _dispatch(self, processors: tuple[Any, ...]) -> None:
        """Point ``_on_start``/``_on_ending``/``_on_end`` at the provider's processors as
        they are now (``add_span_processor`` replaces the tuple: checked per span). One
        processor is called directly; the SDK's empty ``on_start``/``_on_ending`` hooks
        are not called."""
        multi: Any = self._multi  # only called when there is one
        self._processors = processors
        if len(processors) == 1:
            self._on_start = processors[0].on_start
            self._on_end = processors[0].on_end
        else:
            self._on_start = multi.on_start
            self._on_end = multi.on_end
        if not _busy(processors, "on_start"):
            self._on_start = None
        busy = _busy(processors, "_on_ending")
        self._on_ending = otel_sdk.on_ending_hook(multi) if busy else None

    @property
    def resource(self) -> Any:
        return self._tracer.resource

    def sample(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        context: Context | None = None,
    ) -> Sampled:
        """``(span context, parent, recording, attributes)`` as ``Tracer.start_span``
        decides them, a plain tuple; no span context when the tracer is disabled. The
        span starts with the attributes returned: the sampler's, which the SDK uses in
        place of those given."""
        current = span_in(context)
        parent = None if current is INVALID_SPAN else current.get_span_context()
        if self._enabled is not None and not self._enabled():
            return (None, parent, False, attributes)
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._generate_trace_id()
            random = self._random_root
        else:
            trace_id = parent.trace_id
            random = bool(parent.trace_flags & _RANDOM)
        mode = self._sampler_mode
        if mode:
            # The SDK's default samplers, whose answer is known without asking:
            # ALWAYS_ON samples everything, ParentBased(ALWAYS_ON) follows the parent.
            sampled = parent is None or mode == _ALWAYS_ON or bool(parent.trace_flags & _SAMPLED)
            trace_state = None if parent is None else parent.trace_state
            recording = sampled
        else:
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, ())
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            trace_state = result.trace_state
            attributes = dict(result.attributes) if result.attributes else {}
        span_context = new_span_context(
            trace_id, self._generate_span_id(), False, _FLAGS[sampled, random], trace_state
        )
        return (span_context, parent, recording, attributes)

    def open(
        self,
        name: str,
        kind: SpanKind,
        start_time: int,
        sampled: Sampled,
        context: Context | None = None,
    ) -> trace.Span:
        """The span for a decision of :meth:`sample`, with its attributes (evobs's are
        valid by construction)."""
        span_context, parent, recording, attributes = sampled
        if span_context is None:  # a disabled tracer: the parent stays current
            return trace.NonRecordingSpan(parent or trace.INVALID_SPAN_CONTEXT)
        if not recording:
            return trace.NonRecordingSpan(span_context)
        return self._begin(
            SdkSpan(self, name, span_context, parent, kind, attributes, start_time), context
        )

    def child(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
        parent: SdkSpan,
        context: Context,
    ) -> trace.Span:
        """A span under one of evobs's own recording spans (``context`` holds it): with
        the SDK's default samplers it is sampled as its parent, with its flags and trace
        state, so only the span id is new."""
        if not self._sampler_mode:
            return self.start(name, kind, attributes, start_time, context)
        ctx: SpanContext = parent._context  # type: ignore[assignment]  # set on every SdkSpan
        span_context = new_span_context(
            ctx.trace_id, self._generate_span_id(), False, ctx.trace_flags, ctx.trace_state
        )
        return self._begin(
            SdkSpan(self, name, span_context, ctx, kind, attributes, start_time), context
        )

    @property
    def children_follow_parent(self) -> bool:
        """Whether a child of a recording span of evobs's is sampled as its parent (the
        SDK's default samplers): :meth:`ended_child` may be used."""
        return bool(self._sampler_mode)

    def ended_child(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
        end_time: int,
        parent: SdkSpan,
        context: Context | None = None,
        status: Status | None = None,
        exception: dict[str, Any] | None = None,
    ) -> None:
        """A child of one of evobs's recording spans that is over already (a retried
        call's attempt, rendered when the call ends), under the default samplers
        (:attr:`children_follow_parent`): built whole, with its status and ``exception``
        event, then handed to the processors, ``on_start`` then ``on_end``, as
        :meth:`child` and :meth:`end` would (two calls of evobs's instead of five).
        ``context`` (the one ``parent`` is current in) is built only if a processor's
        ``on_start`` is to get it."""
        ctx: SpanContext = parent._context  # type: ignore[assignment]  # set on every SdkSpan
        span = SdkSpan(
            self,
            name,
            new_span_context(
                ctx.trace_id, self._generate_span_id(), False, ctx.trace_flags, ctx.trace_state
            ),
            ctx,
            kind,
            attributes,
            start_time,
        )
        if exception is not None:
            span.record_event("exception", exception, end_time)
        if status is not None:
            span._status = status
        self._begin(span, context, parent)
        span._end_time = end_time
        self.end(span)

    def start(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
        context: Context | None = None,
    ) -> trace.Span:
        """What ``Tracer.start_span`` does, for attributes evobs built."""
        sampled = self.sample(name, kind, attributes, context)
        return self.open(name, kind, start_time, sampled, context)

    def end(self, span: SdkSpan) -> None:
        """Hands an ended span to the processors. A failure of this path here still
        delivers the span, through the tracer's own processor."""
        try:
            attributes = span._attributes
            most = self._max_span_attributes
            if type(attributes) is dict and (
                not self._plain_spans or (most is not None and len(attributes) > most)
            ):
                limits = self._limits  # non-default limits: the SDK's container applies them
                span._attributes = BoundedAttributes(
                    limits.max_span_attributes,
                    attributes,
                    immutable=True,
                    max_value_len=limits.max_span_attribute_length,
                )
            multi = self._multi
            if multi is not None and _processors_of(multi) is not self._processors:
                self._refresh()
            on_ending, on_end = self._on_ending, self._on_end
        except Exception as exc:
            self.failed(exc)
            on_ending, on_end = None, self._fallback_on_end
        if on_ending is not None:
            on_ending(span)
        on_end(span)


class SdkSpan(ReadableSpan, trace.Span):
    """One span recorded by evobs: current while its call runs, then handed to the
    processors as the ``ReadableSpan`` they export (frozen once ended)."""

    # Kept as evobs writes them: a plain dict and list until a limit or user code needs
    # the SDK's bounded containers (then those).
    _attributes: Any
    _events: Any
    _links: Any

    def __init__(
        self,
        pipeline: SdkPipeline,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
    ) -> None:
        # ReadableSpan's own constructor: every field it has, a newer SDK's too.
        ReadableSpan.__init__(
            self,
            name=name,
            context=context,
            parent=parent,
            resource=pipeline._tracer.resource,  # per span: a forked child's is new
            attributes=attributes,
            kind=kind,
            instrumentation_info=pipeline.instrumentation_info,
            status=_UNSET,
            start_time=start_time,
            instrumentation_scope=pipeline.instrumentation_scope,
        )
        self._pipeline = pipeline

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # -- evobs's own writes: values valid by construction ---------------------------

    def record(self, attributes: Mapping[str, Any]) -> None:
        """evobs's attributes: str, bool, int, float or tuples of them, by construction."""
        if self._end_time is None:
            self._attributes.update(attributes)

    def writable_attributes(self) -> dict[str, Any] | None:
        """The attribute dict evobs may fill in place (its own values only): None once
        ended, or once code in the call set attributes through the API (validated)."""
        attributes = self._attributes
        return attributes if self._end_time is None and type(attributes) is dict else None

    def record_event(self, name: str, attributes: dict[str, Any], timestamp: int) -> None:
        if self._end_time is None:
            pipeline = self._pipeline
            if not pipeline._plain_events:
                limits = pipeline.limits
                attributes = BoundedAttributes(  # type: ignore[assignment]
                    limits.max_event_attributes,
                    attributes,
                    immutable=True,
                    max_value_len=limits.max_attribute_length,
                )
            events = self._events
            if type(events) is list and len(events) < pipeline._max_events:
                events.append(Event(name, attributes, timestamp))  # evobs's few, in order
            elif type(events) is tuple and pipeline._max_events:
                self._events = [Event(name, attributes, timestamp)]
            else:
                self._bounded_events().append(Event(name, attributes, timestamp))

    def finish(self, end_time: int) -> None:
        if self._end_time is None:
            self._end_time = end_time
            self._pipeline.end(self)

    def _bounded_events(self) -> Any:
        """The events as the SDK keeps them (bounded, counting drops): from the first
        event code in the call adds, or past the limit."""
        events = self._events
        if not isinstance(events, BoundedList):
            events = self._events = BoundedList.from_seq(
                self._pipeline.limits.max_events, list(events)
            )
        return events

    # -- opentelemetry.trace.Span: what code inside the call can do, validated ------

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # always set here

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is None:
            self._validated_attributes()[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is None:
            target = self._validated_attributes()
            for key, value in attributes.items():
                target[key] = value

    def _validated_attributes(self) -> BoundedAttributes:
        attributes = self._attributes
        if not isinstance(attributes, BoundedAttributes):
            limits = self._pipeline.limits
            attributes = self._attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        return attributes

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is None:
            limits = self._pipeline.limits
            bounded = BoundedAttributes(
                limits.max_event_attributes,
                attributes,
                immutable=True,
                max_value_len=limits.max_attribute_length,
            )
            self._bounded_events().append(Event(name, bounded, timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None:
            return
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        links = self._links
        if not isinstance(links, BoundedList):
            links = self._links = BoundedList(self._pipeline.limits.max_links)
        limits = self._pipeline.limits
        bounded = BoundedAttributes(
            limits.max_link_attributes,
            attributes,
            immutable=True,
            max_value_len=limits.max_attribute_length,
        )
        links.append(Link(context, bounded))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return  # as the SDK: OK is final
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        import traceback

        merged: dict[str, Any] = {
            "exception.type": exception_type(exception),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            merged.update(attributes)
        self.add_event("exception", merged, timestamp)

    def end(self, end_time: int | None = None) -> None:
        self.finish(end_time if end_time is not None else time_ns())


def exception_type(exception: BaseException) -> str:
    """``exception.type`` as the SDK writes it: the qualified class name."""
    module = type(exception).__module__
    qualname = type(exception).__qualname__
    return f"{module}.{qualname}" if module not in (None, "builtins") else qualname


def _busy(processors: tuple[Any, ...], hook: str) -> bool:
    """Whether any of ``processors`` does something in ``hook`` (the SDK's own empty
    hooks are known: ``otel_sdk.noop_hooks``, read here, not at import)."""
    noop = otel_sdk.noop_hooks(hook)
    return any(getattr(type(p), hook, None) not in noop for p in processors)


def _ignore(exc: BaseException) -> None:
    """A pipeline's failure hook once it has fired."""


_ALWAYS_ON: Final = otel_sdk.ALWAYS_ON
#: The multi processor's tuple of processors, compared by identity on every span.
_processors_of: Final = otel_sdk.current_span_processors
