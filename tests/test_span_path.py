"""The cheap span path (evobs/signals/_spans.py) against the SDK's own.

For the SDK's exact ``Tracer`` evobs records its spans straight into the
provider's pipeline (``SdkPipeline``/``SdkSpan``) instead of calling
``Tracer.start_span``. These tests run real calls (moto, the fault server) and
check that what reaches processors and exporters is what the SDK would have
produced: the same workload through a trivial ``Tracer`` subclass (which takes
the public-API path) must export the same spans; samplers, limits, processors,
user code inside the call and a disabled/shut-down SDK must behave as the SDK's.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import multiprocessing
import queue
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)
from prometheus_client import CollectorRegistry

import evobs
from evobs._compat.otel_sdk import fast_spans_proven
from evobs.demo.faults import Fault, FaultServer
from evobs.signals._spans import SdkSpan

from .conftest import fast_config
from .faults_util import zero_backoff

#: Whether the "fast" rig takes evobs's own span path here: on an SDK outside
#: ``FAST_SPANS_PROVEN`` it takes ``start_span`` like the "api" rig, and the same tests
#: prove that fallback exports the same spans.
FAST = fast_spans_proven()

BUCKET = "evobs-span-path"
TABLE = "evobs-span-path"
# Values that differ from one run of the same call to the next.
VOLATILE = {"aws.request_id", "aws.extended_request_id", "aws.sdk.invocation_id", "server.port"}
# Experimental SDK features that older SDKs (1.39 and before) do not have: a tracer
# configurator that disables tracers after the fact, and processors' ``_on_ending`` hook.
HAS_TRACER_CONFIGURATOR = hasattr(TracerProvider, "_set_tracer_configurator")
SDK_CALLS_ON_ENDING = hasattr(sdk_trace.SynchronousMultiSpanProcessor, "_on_ending")


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    zero_backoff(monkeypatch)


@pytest.fixture(scope="module")
def world(moto_url: str) -> str:
    """A bucket with one object and a table with one item, made uninstrumented."""
    plain = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    s3 = plain.client("s3", endpoint_url=moto_url)
    # moto's server outlives the module (a rerun in the same session): exist-ok.
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="present", Body=b"x")
    ddb = plain.client("dynamodb", endpoint_url=moto_url)
    with contextlib.suppress(ddb.exceptions.ResourceInUseException):
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})
    return moto_url


@pytest.fixture
def faults(moto_url: str) -> Iterator[FaultServer]:
    """A fault server forwarding to moto unless scripted otherwise."""
    with FaultServer(moto_url) as server:
        yield server


# -- providers: the fast path and the API path -------------------------------------------


class _SubTracer(sdk_trace.Tracer):
    """The SDK's tracer, unchanged, but not exactly it: evobs takes the API path."""


class _SubProvider(TracerProvider):
    """A TracerProvider whose tracers are ``_SubTracer``s built with the SDK's own arguments."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if type(tracer) is sdk_trace.Tracer:
            tracer.__class__ = _SubTracer
        return tracer


PATHS = ("fast", "api")


class Rig:
    """A provider (of the path's kind) with an in-memory exporter, and an instrumented session."""

    def __init__(
        self,
        path: str,
        registry: CollectorRegistry | None = None,
        processor: SpanProcessor | None = None,
        **provider_kw: Any,
    ) -> None:
        cls = TracerProvider if path == "fast" else _SubProvider
        self.provider = cls(shutdown_on_exit=False, **provider_kw)
        self.exporter = InMemorySpanExporter()
        self.provider.add_span_processor(processor or SimpleSpanProcessor(self.exporter))
        self.session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.handle = evobs.instrument(
            self.session,
            tracer_provider=self.provider,
            registry=registry if registry is not None else CollectorRegistry(),
        )

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def client(self, service: str, url: str, **kw: Any) -> Any:
        return self.session.client(service, endpoint_url=url, **kw)  # type: ignore[call-overload]

    def close(self) -> None:
        self.handle.uninstrument()
        self.provider.shutdown()


@pytest.fixture
def rigs() -> Iterator[Callable[..., Rig]]:
    """Make rigs; all uninstrumented and shut down at the end."""
    made: list[Rig] = []

    def make(path: str = "fast", **kw: Any) -> Rig:
        rig = Rig(path, **kw)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _comparable(span: ReadableSpan) -> dict[str, Any]:
    """What must be equal between two runs of the same call on the two paths."""
    attributes = {
        key: (None if key in VOLATILE or key.endswith("_ms") else value)
        for key, value in _attrs(span).items()
    }
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": attributes,
        "status": (span.status.status_code, span.status.description),
        "events": [(e.name, sorted((e.attributes or {}).keys())) for e in span.events],
        "links": len(span.links),
        "flags": int(span.context.trace_flags),
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "resource": dict(span.resource.attributes),
        "scope": (scope.name, scope.version) if scope is not None else None,
        "has_parent": span.parent is not None,
    }


def _structure(spans: Sequence[ReadableSpan]) -> list[int | None]:
    """Each span's parent as an index into ``spans`` (None: a root)."""
    index = {s.context.span_id: i for i, s in enumerate(spans)}
    return [index.get(s.parent.span_id) if s.parent is not None else None for s in spans]


def _workload(rig: Rig, moto_url: str, faults: FaultServer) -> None:
    """A success, a 404, a DynamoDB read, STS, and a call retried 503, 503, 200."""
    s3 = rig.client("s3", moto_url)
    s3.list_objects_v2(Bucket=BUCKET)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="missing")
    ddb = rig.client("dynamodb", moto_url)
    ddb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    rig.client("sts", moto_url).get_caller_identity()
    retried = rig.client("dynamodb", faults.url, config=fast_config())
    faults.reset()
    faults.script([Fault.status(503), Fault.status(503)])
    response = retried.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert faults.count() == 3


# -- 1. equivalence ----------------------------------------------------------------------


def test_fast_path_exports_what_the_api_path_exports(
    world: str, faults: FaultServer, rigs: Callable[..., Rig]
) -> None:
    """The same workload on the SDK's Tracer (evobs's own spans) and on a trivial
    subclass (``Tracer.start_span``) exports the same spans: names, kinds, attributes,
    statuses, events, links, parent structure, resource and scope."""
    fast = rigs("fast")
    api = rigs("api")
    _workload(fast, world, faults)
    _workload(api, world, faults)

    fast_spans, api_spans = fast.spans, api.spans
    # which path ran
    assert fast_spans and all((type(s) is SdkSpan) == FAST for s in fast_spans)
    assert [_comparable(s) for s in fast_spans] == [_comparable(s) for s in api_spans]
    assert _structure(fast_spans) == _structure(api_spans)

    for spans in (fast_spans, api_spans):
        calls = [s for s in spans if s.name == "DynamoDB.GetItem" and s.parent is None]
        retried = [c for c in calls if _attrs(c)["aws.sdk.attempts"] == 3]
        assert len(retried) == 1
        call = retried[0]
        attempts = [s for s in spans if s.name == "DynamoDB.GetItem attempt"]
        assert len(attempts) == 3
        for attempt in attempts:
            assert attempt.parent is not None
            assert attempt.parent.span_id == call.context.span_id
            assert attempt.context.trace_id == call.context.trace_id
            assert attempt.kind is SpanKind.CLIENT
        assert [e.name for e in call.events].count("aws.sdk.retry") == 2
        error = [s for s in spans if s.name == "S3.HeadObject"]
        assert len(error) == 1 and error[0].status.status_code is StatusCode.ERROR
        assert _attrs(error[0])["http.response.status_code"] == 404
        assert any(e.name == "exception" for e in error[0].events)
    assert fast.provider.resource == api.provider.resource
    assert fast_spans[0].resource == fast.provider.resource


# -- 2. fields ---------------------------------------------------------------------------


@pytest.mark.skipif(not FAST, reason="this SDK takes start_span: no SdkSpan to check")
def test_sdk_span_has_every_readable_span_field(world: str, rigs: Callable[..., Rig]) -> None:
    """An SdkSpan carries every instance attribute ``ReadableSpan.__init__`` sets (so
    exporters reading private fields keep working) and serializes with ``to_json``
    to the same keys as an SDK span."""
    rig = rigs("fast")
    rig.client("sts", world).get_caller_identity()
    (span,) = rig.spans
    assert type(span) is SdkSpan
    missing = set(vars(ReadableSpan(name="x"))) - set(vars(span))
    assert not missing, f"SdkSpan lacks ReadableSpan fields: {sorted(missing)}"

    ours = json.loads(span.to_json())
    assert ours["name"] == "STS.GetCallerIdentity"
    assert ours["attributes"]["rpc.service"] == "STS"
    assert ours["context"]["trace_id"] == f"0x{span.context.trace_id:032x}"
    rig.provider.get_tracer("ref").start_span("ref").end()
    (ref,) = [s for s in rig.spans if s.name == "ref"]
    assert set(ours) == set(json.loads(ref.to_json()))
    assert ours["resource"] == json.loads(ref.to_json())["resource"]


# -- 3. samplers -------------------------------------------------------------------------

_STS = {"service": "STS", "operation": "GetCallerIdentity", "region": "us-east-1", "outcome": "ok"}


@pytest.mark.parametrize("path", PATHS)
def test_always_off_no_spans_metrics_still_count(
    path: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """ALWAYS_OFF: no span reaches the exporter, the calls succeed, metrics still count."""
    registry = CollectorRegistry()
    rig = rigs(path, registry=registry, sampler=ALWAYS_OFF)
    sts = rig.client("sts", world)
    for _ in range(3):
        assert sts.get_caller_identity()["Account"]
    assert rig.spans == []
    count = registry.get_sample_value("aws_sdk_call_duration_seconds_count", _STS)
    assert count == 3


def _remote(sampled: bool, trace_state: TraceState | None = None) -> SpanContext:
    return SpanContext(
        trace_id=uuid.uuid4().int,
        span_id=uuid.uuid4().int >> 64,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        trace_state=trace_state,
    )


@pytest.mark.parametrize("path", PATHS)
def test_parent_based_unsampled_remote_parent(
    path: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """ParentBased(ALWAYS_ON) under a non-sampled remote parent: nothing exported,
    the call succeeds, and the parent is current again afterwards."""
    rig = rigs(path, sampler=ParentBased(ALWAYS_ON))
    sts = rig.client("sts", world)
    parent = _remote(sampled=False)
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        assert sts.get_caller_identity()["Account"]
        assert trace.get_current_span().get_span_context() == parent
    finally:
        otel_context.detach(token)
    assert rig.spans == []


@pytest.mark.parametrize("path", PATHS)
def test_parent_based_sampled_remote_parent(
    path: str, world: str, faults: FaultServer, rigs: Callable[..., Rig]
) -> None:
    """ParentBased(ALWAYS_ON) under a sampled remote parent: the call span is its child
    (trace id, parent span id, trace state carried), flags sampled; attempt spans too."""
    rig = rigs(path, sampler=ParentBased(ALWAYS_ON))
    ddb = rig.client("dynamodb", faults.url, config=fast_config())
    state = TraceState([("vendor", "v1")])
    parent = _remote(sampled=True, trace_state=state)
    faults.reset()
    faults.script([Fault.status(503)])
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        ddb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    finally:
        otel_context.detach(token)
    (call,) = rig.named("DynamoDB.GetItem")
    assert call.parent is not None
    assert call.parent.span_id == parent.span_id
    assert call.parent.is_remote
    assert call.context.trace_id == parent.trace_id
    assert call.context.trace_state == state
    assert call.context.trace_flags.sampled
    attempts = rig.named("DynamoDB.GetItem attempt")
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.context.trace_id == parent.trace_id
        assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
        assert attempt.context.trace_state == state


class _Recording(Sampler):
    """Samples everything, adds an attribute of its own, records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, SpanKind | None, dict[str, Any]]] = []

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.calls.append((name, kind, dict(attributes or {})))
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE, {**(attributes or {}), "sampler.extra": "yes"}
        )

    def get_description(self) -> str:
        return "Recording"


@pytest.mark.parametrize("path", PATHS)
def test_custom_sampler_is_asked_and_its_attributes_kept(
    path: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """A custom sampler is called with the span's name, kind and evobs's start
    attributes (``rpc.service`` among them); the attribute it adds is exported."""
    sampler = _Recording()
    rig = rigs(path, sampler=sampler)
    rig.client("dynamodb", world).get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    assert len(sampler.calls) == 1
    name, kind, asked = sampler.calls[0]
    assert name == "DynamoDB.GetItem"
    assert kind is SpanKind.CLIENT
    assert asked["rpc.service"] == "DynamoDB"
    (span,) = rig.spans
    a = _attrs(span)
    assert a["sampler.extra"] == "yes"
    assert a["rpc.service"] == "DynamoDB"
    assert a["aws.sdk.attempts"] == 1


def _rewrite(attributes: dict[str, Any]) -> dict[str, Any]:
    """Renames one value, drops one key, adds one: the count stays the same."""
    out = dict(attributes)
    out["rpc.service"] = "Renamed"
    out.pop("rpc.method", None)
    out["sampler.added"] = 1
    return out


# What a sampler may return as the span's start attributes (the SDK takes them as is).
REWRITES: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "same_count": _rewrite,
    "only_its_own": lambda attributes: {"sampler.only": 1},
    "none": lambda attributes: None,
}


class _Rewriting(Sampler):
    """Samples everything and owns the span's start attributes, as the SDK lets it."""

    def __init__(self, rewrite: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self._rewrite = rewrite

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, self._rewrite(dict(attributes or {})))

    def get_description(self) -> str:
        return "Rewriting"


@pytest.mark.parametrize("rewrite", list(REWRITES))
def test_sampler_attributes_replace_start_attributes_as_in_the_sdk(
    rewrite: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """A sampler that returns its own start attributes (rewritten, only its own, none)
    gets the same span on both paths: the SDK takes ``SamplingResult.attributes`` as
    the span's start attributes."""
    fast = rigs("fast", sampler=_Rewriting(REWRITES[rewrite]))
    api = rigs("api", sampler=_Rewriting(REWRITES[rewrite]))
    for rig in (fast, api):
        rig.client("sts", world).get_caller_identity()
    (ours,) = fast.spans
    (sdks,) = api.spans
    assert "rpc.method" not in _attrs(sdks)  # the SDK's span: the sampler's attributes only
    assert _attrs(sdks)["aws.sdk.attempts"] == 1  # and evobs's end attributes
    assert _comparable(ours)["attributes"] == _comparable(sdks)["attributes"]


class _Alternating(Sampler):
    """Samples every other span; remembers each decision by trace id."""

    def __init__(self) -> None:
        self.decisions: dict[int, bool] = {}

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        sampled = len(self.decisions) % 2 == 0
        self.decisions[trace_id] = sampled
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
        return SamplingResult(decision, attributes if sampled else None)

    def get_description(self) -> str:
        return "Alternating"


@pytest.mark.parametrize("path", PATHS)
def test_exactly_the_sampled_calls_are_exported(
    path: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """With a sampler that alternates, the exported spans are exactly the calls it
    sampled (by trace id), each with the sampled flag; all calls succeed."""
    sampler = _Alternating()
    rig = rigs(path, sampler=sampler)
    sts = rig.client("sts", world)
    for _ in range(8):
        assert sts.get_caller_identity()["Account"]
    assert len(sampler.decisions) == 8
    sampled = {t for t, keep in sampler.decisions.items() if keep}
    assert len(sampled) == 4
    spans = rig.spans
    assert {s.context.trace_id for s in spans} == sampled
    assert len(spans) == 4
    assert all(s.context.trace_flags.sampled for s in spans)


# -- 4. user code inside the call --------------------------------------------------------


class _Opaque:
    """A value the SDK cannot render (no ``__str__`` of its own)."""


# Writes the SDK validates: an empty key (dropped), a mapping (an extended AnyValue
# in SDK >= 1.3x, kept as a dict), an opaque object (stored as None), a list (a tuple),
# a long string (truncated only under limits).
ODD_WRITES: tuple[tuple[str, Any], ...] = (
    ("", "dropped"),
    ("app.bad", {"a": 1}),
    ("app.opaque", _Opaque()),
    ("app.list", ["a", "b"]),
    ("app.mixed", ["a", 1]),
)


@pytest.mark.parametrize("path", PATHS)
def test_user_code_inside_the_call_sees_evobs_span(
    path: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """A botocore handler running inside the call writes to the current span through the
    API: valid attributes and events are exported, odd keys and values end up exactly
    as on a span of the SDK's own, evobs's attributes stay intact; a span the handler
    starts is a child."""
    rig = rigs(path)
    s3 = rig.client("s3", world)
    seen: list[Any] = []
    app_tracer = rig.provider.get_tracer("app")

    def handler(**_: Any) -> None:
        span = trace.get_current_span()
        seen.append(span)
        span.set_attribute("app.tag", "x")
        span.add_event("app.event", {"k": 1})
        # The same odd writes on evobs's span and on a span of the SDK's own.
        reference = app_tracer.start_span("app.reference", context=otel_context.Context())
        for key, value in ODD_WRITES:
            span.set_attribute(key, value)
            reference.set_attribute(key, value)
        reference.end()
        child = app_tracer.start_span("app.child")
        child.end()

    s3.meta.events.register("before-send.s3.HeadObject", handler)
    s3.head_object(Bucket=BUCKET, Key="present")

    (call,) = rig.named("S3.HeadObject")
    assert len(seen) == 1
    assert seen[0].get_span_context() == call.context
    assert (type(seen[0]) is SdkSpan) == (path == "fast" and FAST)
    a = _attrs(call)
    assert a["app.tag"] == "x"
    (reference,) = rig.named("app.reference")
    ref = _attrs(reference)
    assert "" not in a and "" not in ref  # an invalid key is dropped
    for key, _ in ODD_WRITES:
        assert (key in a) == (key in ref), key
        assert a.get(key) == ref.get(key), key
    assert a["rpc.service"] == "S3"
    assert a["rpc.method"] == "HeadObject"
    assert a["http.response.status_code"] == 200
    assert a["aws.sdk.attempts"] == 1
    (event,) = [e for e in call.events if e.name == "app.event"]
    assert dict(event.attributes or {}) == {"k": 1}
    assert call.name == "S3.HeadObject"
    (child,) = rig.named("app.child")
    assert child.parent is not None
    assert child.parent.span_id == call.context.span_id
    assert child.context.trace_id == call.context.trace_id


def _user_writes(**_: Any) -> None:
    """Everything the API lets code inside a call do to the current span."""
    span = trace.get_current_span()
    span.set_attributes({"app.a": 1, "app.list": ["x", "y"], "": "dropped", "app.map": {"k": 2}})
    span.set_attribute("app.opaque", _Opaque())
    span.add_event("app.event", {"k": 1, "seq": [1, 2], "": 3}, timestamp=1_000)
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    span.add_link(remote, {"link.attr": "v"})
    span.add_link(trace.INVALID_SPAN_CONTEXT)  # no attributes, invalid: dropped
    span.record_exception(ValueError("boom"), {"extra": True}, timestamp=2_000)
    span.set_status(StatusCode.OK)  # final: evobs's ERROR for the 404 is ignored


def test_user_api_writes_same_on_both_paths(world: str, rigs: Callable[..., Rig]) -> None:
    """Attributes, events, links, an exception and an OK status written through the API
    by code inside a failing call end up the same on both paths (values included)."""
    fast = rigs("fast")
    api = rigs("api")
    for rig in (fast, api):
        s3 = rig.client("s3", world)
        s3.meta.events.register("before-send.s3.HeadObject", _user_writes)
        with pytest.raises(ClientError):
            s3.head_object(Bucket=BUCKET, Key="missing")
    (ours,) = fast.spans
    (sdks,) = api.spans
    assert (type(ours) is SdkSpan) == FAST and type(sdks) is not SdkSpan
    assert sdks.status.status_code is StatusCode.OK
    assert _comparable(ours) == _comparable(sdks)
    assert _event_values(ours) == _event_values(sdks)
    user = [(e.name, e.timestamp) for e in ours.events if e.timestamp in (1_000, 2_000)]
    assert user == [(e.name, e.timestamp) for e in sdks.events if e.timestamp in (1_000, 2_000)]
    assert len(user) == 2
    assert [(lk.context, dict(lk.attributes or {})) for lk in ours.links] == [
        (lk.context, dict(lk.attributes or {})) for lk in sdks.links
    ]
    assert len(ours.links) == 1


@pytest.mark.skipif(not HAS_TRACER_CONFIGURATOR, reason="this SDK has no tracer configurator")
@pytest.mark.parametrize("path", PATHS)
def test_tracer_disabled_by_configurator(path: str, world: str, rigs: Callable[..., Rig]) -> None:
    """A tracer the provider's (experimental) tracer configurator disables after
    instrument records nothing; enabled again, it records again; calls always succeed."""
    rig = rigs(path)
    sts = rig.client("sts", world)

    def enabled(flag: bool) -> None:
        rig.provider._set_tracer_configurator(  # the SDK's own (experimental) switch
            tracer_configurator=lambda scope: sdk_trace._TracerConfig(is_enabled=flag)
        )

    sts.get_caller_identity()
    enabled(False)
    sts.get_caller_identity()
    assert not trace.get_current_span().get_span_context().is_valid
    enabled(True)
    sts.get_caller_identity()
    assert len(rig.spans) == 2


# -- 5. limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_attribute_length_limit(path: str, world: str, rigs: Callable[..., Rig]) -> None:
    """``max_span_attribute_length=5``: every string value of the exported call span is
    at most 5 characters, ``rpc.service`` truncated like any other."""
    rig = rigs(path, span_limits=SpanLimits(max_span_attribute_length=5))
    rig.client("dynamodb", world).get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    (span,) = rig.spans
    a = _attrs(span)
    assert a["rpc.service"] == "Dynam"
    assert a["rpc.method"] == "GetIt"
    strings = [v for v in a.values() if isinstance(v, str)]
    strings += [x for v in a.values() if isinstance(v, tuple) for x in v if isinstance(x, str)]
    assert strings
    assert all(len(v) <= 5 for v in strings), a


def test_attribute_length_limit_same_on_both_paths(world: str, rigs: Callable[..., Rig]) -> None:
    """Truncated attributes (including sequence values) are the same on both paths."""
    limits = SpanLimits(max_span_attribute_length=5)
    fast = rigs("fast", span_limits=limits)
    api = rigs("api", span_limits=limits)
    for rig in (fast, api):
        rig.client("dynamodb", world).get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    (ours,) = fast.spans
    (sdks,) = api.spans
    assert _comparable(ours) == _comparable(sdks)


def _event_values(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    """Events with their attribute values (durations and tracebacks reduced to lengths)."""
    out = []
    for event in span.events:
        values = {}
        for key, value in (event.attributes or {}).items():
            if key.endswith("_ms"):
                value = None
            elif key == "exception.stacktrace":
                value = min(len(value), 10_000)  # the text differs by frames; its bound must not
            values[key] = value
        out.append((event.name, values))
    return out


LIMITS = {
    "attribute_length": SpanLimits(max_attribute_length=5),
    "span_attributes": SpanLimits(max_span_attributes=4),
    "event_attributes": SpanLimits(max_event_attributes=1),
    "events": SpanLimits(max_events=1),
}


@pytest.mark.parametrize(
    "limit",
    [
        "attribute_length",
        "span_attributes",
        "event_attributes",
        "events",
    ],
)
def test_limits_same_on_both_paths(
    limit: str, world: str, faults: FaultServer, rigs: Callable[..., Rig]
) -> None:
    """Under each of the SDK's span limits (attribute length, attribute count, event
    attribute count, event count) the workload exports the same spans on both paths,
    event attribute values included, and the same dropped counts."""
    fast = rigs("fast", span_limits=LIMITS[limit])
    api = rigs("api", span_limits=LIMITS[limit])
    _workload(fast, world, faults)
    _workload(api, world, faults)
    ours, sdks = fast.spans, api.spans
    assert [_comparable(s) for s in ours] == [_comparable(s) for s in sdks]
    assert [_event_values(s) for s in ours] == [_event_values(s) for s in sdks]
    assert [(s.dropped_attributes, s.dropped_events) for s in ours] == [
        (s.dropped_attributes, s.dropped_events) for s in sdks
    ]


# -- 6. processors -----------------------------------------------------------------------


class _Probe(SpanProcessor):
    """Records what on_start sees, writes an attribute there, keeps what on_end gets."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any], bool, Any]] = []
        self.ended: list[Any] = []
        #: Per span name, the ``parent_context`` each start came with.
        self.parents: dict[str, list[Any]] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append((span.name, dict(span.attributes or {}), span.is_recording(), span))
        self.parents.setdefault(span.name, []).append(parent_context)
        span.set_attribute("from.on_start", 1)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


@pytest.mark.parametrize("path", PATHS)
def test_processor_sees_start_and_end(path: str, world: str, rigs: Callable[..., Rig]) -> None:
    """on_start gets a recording span with evobs's start attributes and may write to it;
    on_end gets a ReadableSpan with end >= start carrying that write; the span is no
    longer recording after the call."""
    probe = _Probe()
    rig = rigs(path, processor=probe)
    rig.client("sts", world).get_caller_identity()
    assert len(probe.started) == 1 == len(probe.ended)
    name, attributes, recording, live = probe.started[0]
    assert name == "STS.GetCallerIdentity"
    assert attributes["rpc.service"] == "STS"
    assert recording is True
    ended = probe.ended[0]
    assert isinstance(ended, ReadableSpan)
    assert ended.start_time is not None and ended.end_time is not None
    assert ended.end_time >= ended.start_time
    a = _attrs(ended)
    assert a["from.on_start"] == 1
    assert a["aws.sdk.attempts"] == 1
    assert live.is_recording() is False


@pytest.mark.parametrize("path", PATHS)
def test_processor_with_on_start_sees_live_attempt_spans(
    path: str, world: str, faults: FaultServer, rigs: Callable[..., Rig]
) -> None:
    """A processor that watches spans start gets every attempt span live, as the SDK
    would give it (recording, writable, under the call's span), and the attempt spans
    exported are the same as without it (but for what it wrote)."""
    probe = _Probe()
    watched = rigs(path, processor=probe)
    plain = rigs(path)
    for rig in (watched, plain):
        client = rig.client("dynamodb", faults.url, config=fast_config())
        faults.reset()
        faults.script([Fault.status(503), Fault.status(503)])
        client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    started = [(name, attrs, recording) for name, attrs, recording, _ in probe.started]
    attempts = [entry for entry in started if entry[0] == "DynamoDB.GetItem attempt"]
    assert [attrs["aws.sdk.attempt"] for _, attrs, _ in attempts] == [1, 2, 3]
    assert all(recording for _, _, recording in attempts)
    ended = [s for s in probe.ended if s.name == "DynamoDB.GetItem attempt"]
    assert len(ended) == 3 and all(_attrs(s)["from.on_start"] == 1 for s in ended)
    (call,) = [s for s in probe.ended if s.name == "DynamoDB.GetItem"]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in ended)
    # on_start's parent_context is the one the call span is current in, as start_span gives
    # it (not None, which a processor would read as whatever is current when it runs).
    parents = probe.parents["DynamoDB.GetItem attempt"]
    assert all(p is not None for p in parents)
    assert [trace.get_current_span(p).get_span_context() for p in parents] == [call.context] * 3

    def comparable(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
        out = [_comparable(s) for s in spans if s.name == "DynamoDB.GetItem attempt"]
        for entry in out:
            entry["attributes"].pop("from.on_start", None)
        return out

    assert comparable(ended) == comparable(plain.spans)
    assert [s.status.status_code for s in ended] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]


class _Ending(_Probe):
    """A processor with an ``_on_ending`` hook of its own (the SDK's experimental OnEnding)."""

    def __init__(self) -> None:
        super().__init__()
        self.ending: list[str] = []

    def _on_ending(self, span: Any) -> None:
        self.ending.append(span.name)


@pytest.mark.parametrize("path", PATHS)
def test_processors_added_later_and_on_ending_hooks(
    path: str, world: str, rigs: Callable[..., Rig]
) -> None:
    """A processor added to the provider after instrument() gets on_start/on_end for the
    next spans, next to the first one; a processor's own ``_on_ending`` hook is called
    where the SDK calls it (and not where the SDK never does)."""
    rig = rigs(path)
    sts = rig.client("sts", world)
    sts.get_caller_identity()
    later = _Ending()
    rig.provider.add_span_processor(later)
    sts.get_caller_identity()
    assert len(rig.named("STS.GetCallerIdentity")) == 2  # the first processor, both calls
    assert [name for name, *_ in later.started] == ["STS.GetCallerIdentity"]
    assert later.ending == (["STS.GetCallerIdentity"] if SDK_CALLS_ON_ENDING else [])
    assert len(later.ended) == 1 and _attrs(later.ended[0])["from.on_start"] == 1


@pytest.mark.parametrize("path", PATHS)
def test_batch_processor_after_force_flush(
    path: str, world: str, faults: FaultServer, rigs: Callable[..., Rig]
) -> None:
    """Through a BatchSpanProcessor every span (call spans and attempt spans) is
    exported by ``force_flush``."""
    exporter = InMemorySpanExporter()
    rig = rigs(path, processor=BatchSpanProcessor(exporter))
    rig.client("sts", world).get_caller_identity()
    ddb = rig.client("dynamodb", faults.url, config=fast_config())
    faults.reset()
    faults.script([Fault.status(503)])
    ddb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    assert rig.provider.force_flush()
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == [
        "DynamoDB.GetItem",
        "DynamoDB.GetItem attempt",
        "DynamoDB.GetItem attempt",
        "STS.GetCallerIdentity",
    ]


# -- 7. disabled -------------------------------------------------------------------------


def test_sdk_disabled(
    world: str, monkeypatch: pytest.MonkeyPatch, rigs: Callable[..., Rig]
) -> None:
    """``OTEL_SDK_DISABLED=true``: the provider hands out a NoOp tracer; calls succeed
    (including an error call) and nothing is exported."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    rig = rigs("fast")
    s3 = rig.client("s3", world)
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="missing")
    assert rig.spans == []


@pytest.mark.parametrize("path", PATHS)
def test_provider_shut_down_before_the_calls(
    path: str, world: str, faults: FaultServer, rigs: Callable[..., Rig]
) -> None:
    """A provider shut down before the calls: calls (a success, an error, a retried
    call) succeed or raise their own error, nothing of the SDK's raises into the app."""
    rig = rigs(path)
    rig.provider.shutdown()
    s3 = rig.client("s3", world)
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key="missing")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    ddb = rig.client("dynamodb", faults.url, config=fast_config())
    faults.reset()
    faults.script([Fault.status(503)])
    assert ddb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
    assert not trace.get_current_span().get_span_context().is_valid


# -- the provider's resource after fork ----------------------------------------------------


def _sdk_version() -> tuple[int, ...]:
    """The installed OpenTelemetry SDK's release, e.g. ``(1, 45, 2)``."""
    release = importlib.metadata.version("opentelemetry-sdk").split(".")
    return tuple(int(part) for part in release if part.isdigit())


def _fork_child(rig: Rig, url: str, results: Any) -> None:
    try:
        rig.client("sts", url).get_caller_identity()
        span = [s for s in rig.spans if s.name == "STS.GetCallerIdentity"][-1]
        results.put(
            {
                "span": dict(span.resource.attributes),
                "provider": dict(rig.provider.resource.attributes),
            }
        )
    except BaseException as exc:  # reported to the parent
        results.put({"error": repr(exc)})


@pytest.mark.skipif(
    sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
    reason="needs the fork start method",
)
def test_resource_follows_the_provider_after_fork(world: str, rigs: Callable[..., Rig]) -> None:
    """In a forked child evobs's spans carry the resource the provider has there: the
    child's own (a new ``service.instance.id``) on SDKs that re-detect it after fork."""
    rig = rigs("fast")
    rig.client("sts", world).get_caller_identity()  # the pipeline exists before the fork
    ctx = multiprocessing.get_context("fork")
    results: Any = ctx.Queue()
    process = ctx.Process(target=_fork_child, args=(rig, world, results))
    process.start()
    try:
        report = results.get(timeout=30)
    except queue.Empty:
        pytest.fail("the forked child never reported")
    finally:
        process.join(timeout=10)
    assert "error" not in report, report
    if _sdk_version() >= (1, 44):  # the SDK gives a forked child its own resource from 1.44
        parent_id = rig.provider.resource.attributes.get("service.instance.id")
        assert report["provider"].get("service.instance.id") not in (None, parent_id)
    assert report["span"] == report["provider"]
