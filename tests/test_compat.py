"""Every private detail of another library that evobs reads (``evobs/_compat``), named
one by one: an upgrade that renames one fails the test of that name, and the fallback
that then applies loses nothing (tested here too). Also: the SDK span path is decided
once per tracer and can never lose a span."""

from __future__ import annotations

import collections
import inspect
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import metrics as prom_metrics
from prometheus_client import values as prom_values

import evobs
from evobs._compat import botocore as botocore_compat
from evobs._compat import otel_api, otel_sdk, prometheus
from evobs.signals.traces import TracesSignal

PROVEN = otel_sdk.fast_spans_proven()
needs_proven_sdk = pytest.mark.skipif(
    not PROVEN, reason=f"opentelemetry-sdk {otel_sdk.SDK_VERSION} takes the public API path"
)


# -- opentelemetry-sdk --------------------------------------------------------------------


def _tracer() -> Any:
    return TracerProvider().get_tracer("compat-test")


@needs_proven_sdk
def test_sdk_tracer_instrumentation_scope() -> None:
    """``Tracer._instrumentation_scope``: the scope evobs's spans carry."""
    assert _tracer()._instrumentation_scope.name == "compat-test"


@needs_proven_sdk
def test_sdk_tracer_span_limits() -> None:
    """``Tracer._span_limits``: the limits evobs applies as the SDK does."""
    assert isinstance(_tracer()._span_limits, SpanLimits)


@needs_proven_sdk
def test_sdk_tracer_is_enabled() -> None:
    """``Tracer._is_enabled``: tracer configurators can disable a tracer."""
    assert _tracer()._is_enabled() is True


@needs_proven_sdk
def test_sdk_multi_span_processor_span_processors() -> None:
    """``SynchronousMultiSpanProcessor._span_processors``: a tuple, replaced on add."""
    provider = TracerProvider()
    multi = _tracer_of(provider).span_processor
    before = otel_sdk.span_processors(multi)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    after = otel_sdk.span_processors(multi)
    assert before == () and isinstance(after, tuple) and len(after) == 1
    assert otel_sdk.current_span_processors(multi) is after  # the per-span check's read


@needs_proven_sdk
def test_sdk_processor_on_ending() -> None:
    """Processors' ``_on_ending`` (OnEnding, experimental): the SDK's own are no-ops."""
    hook = otel_sdk.on_ending_hook(SimpleSpanProcessor(InMemorySpanExporter()))
    assert hook is not None
    assert SimpleSpanProcessor._on_ending in otel_sdk.noop_hooks("_on_ending")
    assert SimpleSpanProcessor.on_start in otel_sdk.noop_hooks("on_start")


def test_sdk_parent_based_delegates() -> None:
    """``ParentBased._root`` and its four parent delegates: the SDK's default sampler is
    recognised and answered without a call; anything unreadable means "ask"."""
    assert otel_sdk.default_sampler_mode(sampling.DEFAULT_ON) == otel_sdk.PARENT_OR_ON
    assert otel_sdk.default_sampler_mode(sampling.ALWAYS_ON) == otel_sdk.ALWAYS_ON
    custom = sampling.ParentBased(sampling.TraceIdRatioBased(0.5))
    assert otel_sdk.default_sampler_mode(custom) == otel_sdk.ASK
    odd = sampling.ParentBased(sampling.ALWAYS_ON)
    del odd._root
    assert otel_sdk.default_sampler_mode(odd) == otel_sdk.ASK


def test_sdk_readable_span_constructor_fields() -> None:
    """``ReadableSpan.__init__`` takes every keyword evobs's span passes."""
    parameters = set(inspect.signature(ReadableSpan.__init__).parameters)
    assert parameters >= otel_sdk.READABLE_SPAN_FIELDS


def test_sdk_batch_processor_queue() -> None:
    """``BatchSpanProcessor._batch_processor._queue``/``_max_queue_size`` (>= 1.34) or
    ``.queue``/``.max_queue_size``: the queue whose overflow evobs counts as drops."""
    processor = BatchSpanProcessor(
        InMemorySpanExporter(), max_queue_size=64, max_export_batch_size=16
    )
    try:
        found = otel_sdk.batch_queue(processor)
        assert found is not None
        queue, size = found
        assert isinstance(queue, collections.deque) and size == 64
    finally:
        processor.shutdown()
    assert otel_sdk.batch_queue(object()) is None


def test_fast_spans_proven_range() -> None:
    """The span path applies only on the SDK versions the dependency matrix proves."""
    low, high = otel_sdk.FAST_SPANS_PROVEN
    assert otel_sdk.fast_spans_proven((*low, 0))
    assert otel_sdk.fast_spans_proven((*high, 9))
    assert not otel_sdk.fast_spans_proven((low[0], low[1] - 1, 0))
    assert not otel_sdk.fast_spans_proven((high[0], high[1] + 1, 0))
    assert not otel_sdk.fast_spans_proven(())


def _tracer_of(provider: TracerProvider) -> Any:
    return provider.get_tracer("compat-test")


# -- the span path decided once, never losing a span ----------------------------------------


def _traces_signal(handle: evobs.Instrumentation) -> TracesSignal:
    return next(s for s in handle.signals if isinstance(s, TracesSignal))


class _Rig:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.registry = CollectorRegistry()


def _calls(session: boto3.Session, moto_url: str, n: int) -> None:
    client = session.client("sqs", endpoint_url=moto_url)
    for _ in range(n):
        client.list_queues()


@needs_proven_sdk
def test_fast_path_taken_on_a_proven_sdk(session: boto3.Session, moto_url: str) -> None:
    """On a proven SDK with every part in shape, the SDK's own tracer takes the path."""
    rig = _Rig()
    handle = evobs.instrument(session, tracer_provider=rig.provider, registry=rig.registry)
    try:
        assert _traces_signal(handle).fast_spans
        _calls(session, moto_url, 2)
    finally:
        handle.uninstrument()
    assert len(rig.exporter.get_finished_spans()) == 2


def test_fast_path_can_be_switched_off(
    session: boto3.Session, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fast_spans=False`` and ``EVOBS_FAST_SPANS=0``: the public API, same spans."""
    for kwargs, env in (({"fast_spans": False}, None), ({}, "0")):
        if env is not None:
            monkeypatch.setenv("EVOBS_FAST_SPANS", env)
        rig = _Rig()
        handle = evobs.instrument(
            session, tracer_provider=rig.provider, registry=rig.registry, **kwargs
        )
        try:
            assert not _traces_signal(handle).fast_spans
            _calls(session, moto_url, 1)
        finally:
            handle.uninstrument()
        assert [s.name for s in rig.exporter.get_finished_spans()] == ["SQS.ListQueues"]


def test_sdk_version_not_proven_takes_the_api(
    session: boto3.Session, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK release the matrix has not proven (simulated: one minor past the newest)
    takes the public API, decided at instrument() time; every span is exported."""
    high = otel_sdk.FAST_SPANS_PROVEN[1]
    monkeypatch.setattr(otel_sdk, "SDK_VERSION", (high[0], high[1] + 1, 0))
    rig = _Rig()
    handle = evobs.instrument(session, tracer_provider=rig.provider, registry=rig.registry)
    try:
        assert not _traces_signal(handle).fast_spans
        _calls(session, moto_url, 3)
    finally:
        handle.uninstrument()
    assert len(rig.exporter.get_finished_spans()) == 3


def _processors_as_list(provider: TracerProvider) -> Any:
    """An SDK whose multi processor keeps its processors in a list, not the tuple the
    span path expects (the SDK itself works the same with either)."""
    multi = provider._active_span_processor
    multi._span_processors = list(multi._span_processors)
    return multi


@needs_proven_sdk
def test_private_part_of_another_shape_takes_the_api(session: boto3.Session, moto_url: str) -> None:
    """A private part in a shape the path does not expect is seen at instrument() time:
    the public API, every span exported, nothing counted as a failure."""
    rig = _Rig()
    _processors_as_list(rig.provider)
    handle = evobs.instrument(session, tracer_provider=rig.provider, registry=rig.registry)
    try:
        assert not _traces_signal(handle).fast_spans
        _calls(session, moto_url, 3)
    finally:
        handle.uninstrument()
    assert len(rig.exporter.get_finished_spans()) == 3
    assert (
        rig.registry.get_sample_value("evobs_handler_errors_total", {"event": "fast-spans"}) is None
    )


@needs_proven_sdk
def test_private_part_changed_at_run_time_loses_no_span(
    session: boto3.Session, moto_url: str
) -> None:
    """The provider's processors change shape while calls run (a broken assumption at
    run time, while a call's span is open): that span and every later one are exported,
    nothing raises per call, and the switch to the public API is counted once."""
    rig = _Rig()
    handle = evobs.instrument(session, tracer_provider=rig.provider, registry=rig.registry)
    client = session.client("sqs", endpoint_url=moto_url)

    def change(**_: Any) -> None:
        _processors_as_list(rig.provider)

    try:
        client.list_queues()
        assert _traces_signal(handle).fast_spans
        client.meta.events.register("after-call.sqs.ListQueues", change)
        client.list_queues()  # changed while this call's span is open
        client.meta.events.unregister("after-call.sqs.ListQueues", change)
        client.list_queues()
        client.list_queues()
        assert not _traces_signal(handle).fast_spans
    finally:
        handle.uninstrument()
    assert [s.name for s in rig.exporter.get_finished_spans()] == ["SQS.ListQueues"] * 4
    assert rig.registry.get_sample_value("evobs_handler_errors_total", {"event": "fast-spans"}) == 1


# -- opentelemetry-api --------------------------------------------------------------------


def test_api_suppress_instrumentation_key() -> None:
    """``opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY``: the suppression flag."""
    key = otel_api.SUPPRESS_INSTRUMENTATION_KEY
    assert key is not None
    token = otel_context.attach(otel_context.set_value(key, True))
    try:
        assert otel_api.instrumentation_suppressed()
    finally:
        otel_context.detach(token)
    assert not otel_api.instrumentation_suppressed()


def test_api_proxy_meter_provider() -> None:
    """``opentelemetry.metrics._internal._PROXY_METER_PROVIDER``: the placeholder that says
    no global MeterProvider is set yet (configure() sets its own only then)."""
    from opentelemetry import metrics
    from opentelemetry.metrics import _internal

    assert hasattr(_internal, "_PROXY_METER_PROVIDER")
    expected = metrics.get_meter_provider() is _internal._PROXY_METER_PROVIDER
    assert otel_api.no_global_meter_provider() is expected


def test_api_runtime_context_var() -> None:
    """``opentelemetry.context._RUNTIME_CONTEXT._current_context``: the ContextVar the
    suppression check reads directly (it runs on every call); it holds the current
    Context, and without it the check goes through ``get_current()`` with the same answer."""
    import contextvars

    from opentelemetry.context import _RUNTIME_CONTEXT

    var = _RUNTIME_CONTEXT._current_context  # type: ignore[attr-defined]
    assert isinstance(var, contextvars.ContextVar)
    assert var.get() is otel_context.get_current()
    assert otel_api._runtime_context_var() is var
    key = otel_api.SUPPRESS_INSTRUMENTATION_KEY
    token = otel_context.attach(otel_context.set_value(key, True))
    try:
        assert var.get().get(key) is True
    finally:
        otel_context.detach(token)


def test_api_context_access_direct() -> None:
    """``opentelemetry.context._RUNTIME_CONTEXT`` (a ``ContextVarsRuntimeContext``), its
    ``_current_context`` and ``opentelemetry.trace.propagation._SPAN_KEY``: where they
    have that shape the call span is made current through the ContextVar itself, with
    the same results as ``get_current``, ``attach(set_span_in_context(...))``,
    ``detach`` and ``get_current_span``."""
    from opentelemetry import trace
    from opentelemetry.context import _RUNTIME_CONTEXT
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.trace import propagation

    assert type(_RUNTIME_CONTEXT) is ContextVarsRuntimeContext
    assert isinstance(propagation._SPAN_KEY, str)  # type: ignore[attr-defined]
    assert otel_api.current_context is not otel_context.get_current  # the direct path
    span = trace.NonRecordingSpan(trace.SpanContext(5, 6, False))
    before = otel_context.get_current()
    assert otel_api.current_context() is before
    token = otel_api.attach_span(span, before)
    try:
        assert trace.get_current_span() is span
        assert otel_api.current_context() is otel_context.get_current()
        assert dict(otel_context.get_current()) == dict(trace.set_span_in_context(span, before))
        assert otel_api.span_in(None) is span
    finally:
        otel_api.detach_context(token)
    assert otel_context.get_current() is before
    for context in (before, trace.set_span_in_context(span), otel_context.Context()):
        assert otel_api.span_in(context) is trace.get_current_span(context)
    odd = otel_context.Context({propagation._SPAN_KEY: "not a span"})  # type: ignore[attr-defined]
    assert otel_api.span_in(odd) is trace.get_current_span(odd) is trace.INVALID_SPAN


def test_api_context_access_detach_failure_is_the_apis(caplog: pytest.LogCaptureFixture) -> None:
    """A token that cannot be reset (used twice) is handed to the API's ``detach``,
    which logs it as it always does; nothing is raised into the call."""
    from opentelemetry import trace

    span = trace.NonRecordingSpan(trace.SpanContext(5, 6, False))
    before = otel_context.get_current()
    token = otel_api.attach_span(span, before)
    otel_api.detach_context(token)
    with caplog.at_level("ERROR", logger="opentelemetry.context"):
        otel_api.detach_context(token)
    assert "Failed to detach context" in caplog.text
    assert otel_context.get_current() is before


def test_api_context_access_follows_a_replaced_runtime_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library that replaces ``_RUNTIME_CONTEXT`` after evobs is imported: every call
    goes through the API, so the span is current in the new runtime context and the
    suppression flag set there is seen."""
    from opentelemetry import trace
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    class Replacement(ContextVarsRuntimeContext):
        pass

    replacement = Replacement()
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", replacement)
    suppressed = otel_context.attach(
        otel_context.set_value(otel_api.SUPPRESS_INSTRUMENTATION_KEY, True)
    )
    try:
        assert otel_api.instrumentation_suppressed()  # set in the new runtime context
    finally:
        otel_context.detach(suppressed)
    assert not otel_api.instrumentation_suppressed()
    span = trace.NonRecordingSpan(trace.SpanContext(5, 6, False))
    current = otel_api.current_context()
    assert current is replacement.get_current()
    token = otel_api.attach_span(span, current)
    try:
        assert trace.get_current_span(replacement.get_current()) is span
        assert otel_api.span_in(None) is span
    finally:
        otel_api.detach_context(token)
    assert replacement.get_current() is current


def test_api_context_access_other_shape_takes_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """A span key of another shape, or another runtime context: the API's own functions."""
    from opentelemetry.trace import propagation

    monkeypatch.setattr(propagation, "_SPAN_KEY", object())
    assert otel_api._context_access()[0] is otel_context.get_current
    monkeypatch.undo()
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", object())
    current, _attach, detach, span_in = otel_api._context_access()
    assert current is otel_context.get_current
    assert detach is otel_context.detach
    assert span_in is propagation.get_current_span


def test_api_span_context_new() -> None:
    """``SpanContext.__new__``, called directly (``otel_api.new_span_context``): the class
    has no ``__init__`` of its own and a plain metaclass, so the function builds exactly
    what the class call builds, validation included; of any other shape, the class."""
    from opentelemetry.trace import SpanContext, TraceFlags
    from opentelemetry.trace.span import DEFAULT_TRACE_STATE

    assert type(SpanContext) is type
    assert SpanContext.__init__ is object.__init__
    assert isinstance(vars(SpanContext)["__new__"], staticmethod)
    assert otel_api.new_span_context is not SpanContext  # the direct call applies
    for args in (
        (1 << 100, 7, False, TraceFlags(TraceFlags.SAMPLED), None),
        (5, 6, True, TraceFlags(0), DEFAULT_TRACE_STATE),
        (0, 6, False, None, None),  # invalid ids: is_valid computed as by the class
        (5, 0, False, TraceFlags(TraceFlags.SAMPLED), None),
    ):
        built = otel_api.new_span_context(*args)
        expected = SpanContext(*args)
        assert type(built) is SpanContext
        assert tuple(built) == tuple(expected)
        assert built.is_valid is expected.is_valid


def test_api_span_context_other_shape_takes_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``SpanContext`` with an ``__init__`` of its own: the class itself is called."""
    from opentelemetry import trace

    class WithInit(trace.SpanContext):
        def __init__(self, *args: Any) -> None:
            pass

    monkeypatch.setattr(otel_api, "SpanContext", WithInit)
    assert otel_api._span_context_constructor() is WithInit


# -- prometheus_client --------------------------------------------------------------------


def test_prometheus_value_class_multiprocess() -> None:
    """``values.ValueClass._multiprocess``: whether values live in files."""
    assert isinstance(prom_values.ValueClass._multiprocess, bool)
    assert prometheus.multiprocess_mode() is prom_values.ValueClass._multiprocess


def test_prometheus_labelnames_and_upper_bounds() -> None:
    """``MetricWrapperBase._labelnames`` and ``Histogram._upper_bounds``."""
    registry = CollectorRegistry()
    counter = Counter("compat_c", "c", ("a", "b"), registry=registry)
    histogram = Histogram("compat_h", "h", buckets=(0.5, 1.0), registry=registry)
    assert prometheus.labelnames(counter) == ("a", "b")
    assert prometheus.histogram_bounds(histogram) == (0.5, 1.0)
    assert prometheus.labelnames(object()) is None
    assert prometheus.histogram_bounds(object()) is None


def test_prometheus_use_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """``metrics._use_created``: whether ``_created`` samples are exposed (default on)."""
    assert prometheus.use_created() is prom_metrics._use_created
    monkeypatch.delattr(prom_metrics, "_use_created")
    assert prometheus.use_created() is True


# -- botocore / boto3 ------------------------------------------------------------------------


def test_botocore_throttled_error_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``retries.standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES``; without it
    the codes botocore has always listed, so throttling stays throttling."""
    from botocore.retries.standard import ThrottledRetryableChecker

    codes = botocore_compat.throttling_error_codes()
    assert codes == frozenset(ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
    assert {"ThrottlingException", "SlowDown", "Throttling"} <= codes
    monkeypatch.delattr(ThrottledRetryableChecker, "_THROTTLED_ERROR_CODES")
    assert botocore_compat.throttling_error_codes() >= {"ThrottlingException", "SlowDown"}


def test_botocore_prepared_request_context() -> None:
    """``AWSPreparedRequest(context=...)`` from botocore 1.43.68; before it, before-send is
    correlated per thread (both paths are tested in the suite)."""
    has = "context" in inspect.signature(AWSPreparedRequest.__init__).parameters
    assert botocore_compat.PREPARED_REQUEST_HAS_CONTEXT is has


def test_boto3_get_default_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """``boto3._get_default_session()``; without it, the public ``DEFAULT_SESSION``."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    session = botocore_compat.default_boto3_session()
    assert session is boto3.DEFAULT_SESSION
    monkeypatch.delattr(boto3, "_get_default_session")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    assert botocore_compat.default_boto3_session() is boto3.DEFAULT_SESSION is not None


def test_parameter_names_match_inspect_signature() -> None:
    """``parameter_names`` (the code-object read both version checks use) lists what
    ``inspect.signature`` lists, for the two constructors it is asked about, a wrapped
    function and a callable without a code object."""
    import functools

    from evobs._compat import parameter_names

    def plain(a: int, b: int = 0, *args: Any, c: int, **kw: Any) -> None:
        """Positional, keyword-only, and the catch-alls (which are not listed)."""

    @functools.wraps(plain)
    def wrapped(*args: Any, **kw: Any) -> None:
        """Follows ``plain`` through ``__wrapped__``."""

    for function in (ReadableSpan.__init__, AWSPreparedRequest.__init__, wrapped):
        expected = {
            name
            for name, p in inspect.signature(function).parameters.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        assert parameter_names(function) == expected
    assert parameter_names(plain) == parameter_names(wrapped) == {"a", "b", "c"}
    assert parameter_names(dict.get) == frozenset(inspect.signature(dict.get).parameters)


def test_botocore_register_first_unchecked() -> None:
    """``HierarchicalEmitter._register_first``: evobs registers its handlers without
    botocore's ``getfullargspec`` check, so each must pass it (takes ``**kwargs``); they
    run first, as with ``register_first``; another emitter gets the public method."""
    from botocore.hooks import HierarchicalEmitter

    from evobs._install import _PER_CALL, Instrumentation

    assert callable(getattr(HierarchicalEmitter, botocore_compat.UNCHECKED_REGISTER_FIRST))
    instrumentation = evobs.instrument(boto3.Session(region_name="us-east-1"), signals=())
    try:
        assert isinstance(instrumentation, Instrumentation)
        handlers = [getattr(instrumentation.handlers, attr) for _, attr in _PER_CALL]
        handlers += [
            instrumentation._on_creating_client_class,
            instrumentation.handlers.resource_created,
        ]
        for handler in handlers:
            assert inspect.getfullargspec(handler).varkw is not None, handler
    finally:
        instrumentation.uninstrument()

    emitter = HierarchicalEmitter()
    order: list[str] = []
    emitter.register("evobs-test.*", lambda **kw: order.append("theirs"))
    botocore_compat.register_first(
        emitter, "evobs-test.*", lambda **kw: order.append("ours"), "evobs-test"
    )
    botocore_compat.register_first(  # the same unique id: registered once
        emitter, "evobs-test.*", lambda **kw: order.append("again"), "evobs-test"
    )
    emitter.emit("evobs-test.op")
    assert order == ["ours", "theirs"]

    class Other:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any, str]] = []

        def register_first(self, event: str, handler: Any, unique_id: str) -> None:
            self.calls.append((event, handler, unique_id))

    other = Other()
    botocore_compat.register_first(other, "e", print, "u")
    assert other.calls == [("e", print, "u")]


def test_botocore_event_aliaser_emitter() -> None:
    """``EventAliaser._emitter``: evobs registers on the emitter a session's aliaser
    forwards to; its event names alias to themselves, and a handler registered there
    runs when the aliaser emits (in the session and in every client copied from it)."""
    from botocore.hooks import EventAliaser

    from evobs._install import _PER_CALL

    session = boto3.Session(region_name="us-east-1")
    aliaser = session.events
    assert type(aliaser) is EventAliaser
    inner = botocore_compat.unaliased(aliaser)
    assert inner is vars(aliaser)[botocore_compat.ALIASED_EMITTER]
    names = [f"{event}.*.*" for event, _ in _PER_CALL]
    names += ["creating-client-class", "creating-resource-class"]
    for name in names:
        assert aliaser._alias_event_name(name) == name
    seen: list[str] = []
    inner.register_first("evobs-test.*.*", lambda **kw: seen.append(kw["event_name"]))
    aliaser.emit("evobs-test.s3.Op")
    client = session.client("s3", endpoint_url="http://127.0.0.1:1")
    client.meta.events.emit("evobs-test.s3.Op")
    assert seen == ["evobs-test.s3.Op"] * 2
    assert botocore_compat.unaliased(inner) is inner  # anything else: itself
