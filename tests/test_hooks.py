"""Where users meet the call: their own after-call handlers, request/response hooks,
OpenTelemetry's suppression context, and the X-Ray trace header on the wire."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer

from .conftest import SpanRecorder, fast_config
from .faults_util import zero_backoff

try:
    from opentelemetry.instrumentation.utils import suppress_instrumentation
except ImportError:  # pragma: no cover - a dev dependency
    suppress_instrumentation = None  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    zero_backoff(monkeypatch)


# -- the user's own after-call handlers ------------------------------------------------


def test_user_after_call_handler_sees_the_call_span_current_and_recording(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """A user's after-call handler, the only place with the parsed result, enriches the
    call span through the API: the span is current and recording there, and the
    attribute is exported."""
    seen: dict[str, Any] = {}

    def enrich(parsed: Any = None, **_: Any) -> None:
        span = trace.get_current_span()
        seen["name"] = getattr(span, "name", None)
        seen["recording"] = span.is_recording()
        span.set_attribute("app.queue_count", len(parsed.get("QueueUrls", [])))

    session.events.register("after-call.sqs.ListQueues", enrich)
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        session.client("sqs", endpoint_url=moto_url).list_queues()
    finally:
        handle.uninstrument()
    assert seen == {"name": "SQS.ListQueues", "recording": True}
    assert recorder.one("SQS.ListQueues").attributes["app.queue_count"] == 0


def test_user_after_call_error_handler_sees_the_span_and_the_error_ends_it(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry
) -> None:
    """On a transport error, a user's after-call-error handler also runs inside the
    recording call span; the span then ends as a connection error."""
    seen: list[bool] = []

    def on_error(exception: Any = None, **_: Any) -> None:
        seen.append(trace.get_current_span().is_recording())

    session.events.register("after-call-error", on_error)
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        client = session.client(
            "sqs",
            endpoint_url="http://127.0.0.1:9",
            config=fast_config(mode="standard", total_max_attempts=1),
        )
        with pytest.raises(Exception, match="Could not connect"):
            client.list_queues()
    finally:
        handle.uninstrument()
    assert seen == [True]
    span = recorder.one("SQS.ListQueues")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["aws.sdk.outcome"] == "connection_error"


# -- hooks -----------------------------------------------------------------------------


def test_request_and_response_hooks_see_params_and_result(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """request_hook gets the span and the call with its params; response_hook gets the
    parsed result of a success and the error of a failure; what they set is exported."""
    requests: list[tuple[str, Any]] = []
    responses: list[tuple[str, Any]] = []

    def on_request(span: Any, call: evobs.Call) -> None:
        requests.append((call.name, dict(call.params or {})))
        span.set_attribute("app.bucket", (call.params or {}).get("Bucket", ""))

    def on_response(span: Any, call: evobs.Call, result: Any) -> None:
        responses.append((call.name, result))
        if isinstance(result, dict):
            span.set_attribute("app.key_count", result.get("KeyCount", -1))

    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        request_hook=on_request,
        response_hook=on_response,
    )
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        s3.create_bucket(Bucket="evobs-hooks")
        s3.list_objects_v2(Bucket="evobs-hooks")
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="evobs-hooks", Key="absent")
    finally:
        handle.uninstrument()
    assert any(n == "S3.ListObjectsV2" and p["Bucket"] == "evobs-hooks" for n, p in requests)
    listed = [r for n, r in responses if n == "S3.ListObjectsV2"]
    assert listed and listed[0]["KeyCount"] == 0
    failed = [r for n, r in responses if n == "S3.GetObject"]
    assert (
        len(failed) == 1
        and isinstance(failed[0], dict)
        and failed[0]["Error"]["Code"] == ("NoSuchKey")
    )
    span = recorder.one("S3.ListObjectsV2")
    assert span.attributes["app.bucket"] == "evobs-hooks"
    assert span.attributes["app.key_count"] == 0


def test_transport_error_reaches_the_response_hook_as_the_exception(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry
) -> None:
    """With no response at all, response_hook's result is the exception botocore raised."""
    results: list[Any] = []
    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        response_hook=lambda span, call, result: results.append(result),
    )
    try:
        client = session.client(
            "sqs",
            endpoint_url="http://127.0.0.1:9",
            config=fast_config(mode="standard", total_max_attempts=1),
        )
        with pytest.raises(Exception, match="Could not connect"):
            client.list_queues()
    finally:
        handle.uninstrument()
    assert len(results) == 1 and type(results[0]).__name__ == "EndpointConnectionError"


def test_raising_hooks_are_counted_never_raised(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """Hooks are guarded like every handler: the call returns its result, the span is
    exported, and each failure is counted under the hook's name."""

    def broken(*_: Any) -> None:
        raise RuntimeError("hook bug")

    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        request_hook=broken,
        response_hook=broken,
    )
    try:
        result = session.client("sqs", endpoint_url=moto_url).list_queues()
    finally:
        handle.uninstrument()
    assert result["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert recorder.one("SQS.ListQueues").status.status_code is StatusCode.UNSET
    for hook in ("request_hook", "response_hook"):
        assert registry.get_sample_value("evobs_handler_errors_total", {"event": hook}) == 1


def test_hooks_must_be_callable(session: boto3.Session) -> None:
    """A hook that is not callable is refused at instrument() time, with its name."""
    with pytest.raises(TypeError, match="request_hook"):
        evobs.instrument(session, request_hook="not callable")


# -- suppression ---------------------------------------------------------------------


@pytest.mark.skipif(suppress_instrumentation is None, reason="needs opentelemetry-instrumentation")
def test_suppressed_calls_make_no_span_and_no_log_but_are_counted(
    session: boto3.Session,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    moto_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Inside OpenTelemetry's suppress-instrumentation context (an exporter making its
    own AWS calls) a call produces no span and no log event; the metrics still count
    it, since the call did happen and counting it cannot loop."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    caplog.set_level(logging.DEBUG, logger="evobs")
    try:
        client = session.client("sqs", endpoint_url=moto_url)
        caplog.clear()
        with suppress_instrumentation():  # type: ignore[misc]
            client.list_queues()
        suppressed_events = [r for r in caplog.records if r.name == "evobs"]
        client.list_queues()
    finally:
        handle.uninstrument()
    assert suppressed_events == []
    assert len(recorder.named("SQS.ListQueues")) == 1
    assert recorder.started == 1
    count = registry.get_sample_value(
        "aws_sdk_call_duration_seconds_count",
        {"service": "SQS", "operation": "ListQueues", "region": "us-east-1", "outcome": "ok"},
    )
    assert count == 2
    assert any("aws.call" in r.getMessage() for r in caplog.records if r.name == "evobs")


# -- X-Amzn-Trace-Id -----------------------------------------------------------------


@pytest.fixture
def faults(moto_url: str) -> Iterator[FaultServer]:
    with FaultServer(moto_url) as server:
        yield server


def _signed_headers(authorization: str) -> list[str]:
    match = re.search(r"SignedHeaders=([^,]+)", authorization)
    assert match, authorization
    return match.group(1).split(";")


def test_xray_header_on_every_attempt_outside_the_signature(
    session: boto3.Session,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    faults: FaultServer,
) -> None:
    """Every attempt of a retried call carries ``X-Amzn-Trace-Id`` naming the call span
    (seen at the fault proxy), SigV4 does not sign it, and the signature still verifies
    over what was sent."""
    faults.script([Fault.status(503), Fault.status(503)])
    handle = evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, xray_header=True
    )
    try:
        client = session.client(
            "sqs",
            endpoint_url=faults.url,
            config=fast_config(mode="standard", total_max_attempts=3),
        )
        client.list_queues()
    finally:
        handle.uninstrument()
    span = recorder.one("SQS.ListQueues")
    ctx = span.context
    trace_id = f"{ctx.trace_id:032x}"
    expected = f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={ctx.span_id:016x};Sampled=1"
    requests = faults.requests
    assert len(requests) == 3
    for request in requests:
        assert request.header("X-Amzn-Trace-Id") == expected
        authorization = request.header("Authorization") or ""
        assert "x-amzn-trace-id" not in _signed_headers(authorization)
    # The signature still verifies over what arrived: recomputed from the recorded
    # request's signed headers and body, with the test credentials and its own date.
    for request in requests:
        authorization = request.header("Authorization") or ""
        assert f"Signature={_signature(request, faults.url)}" in authorization


def _signature(recorded: Any, base_url: str) -> str:
    """SigV4 of a recorded request over exactly the headers it says it signed."""
    signed = _signed_headers(recorded.header("Authorization") or "")
    headers = {name: recorded.header(name) for name in signed}
    url = f"{base_url}{recorded.path}" + (f"?{recorded.query}" if recorded.query else "")
    request = AWSRequest(method=recorded.method, url=url, headers=headers, data=recorded.body)
    request.context["timestamp"] = recorded.header("X-Amz-Date")
    auth = SigV4Auth(Credentials("testing", "testing"), "sqs", "us-east-1")
    canonical = auth.canonical_request(request)
    return str(auth.signature(auth.string_to_sign(request, canonical), request))


def test_xray_header_is_opt_in(
    session: boto3.Session,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    faults: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """By default nothing is added to the request; ``EVOBS_XRAY_HEADER=1`` turns it on."""
    for env, expected in ((None, None), ("1", "Root=1-")):
        if env is not None:
            monkeypatch.setenv("EVOBS_XRAY_HEADER", env)
        faults.reset()
        handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
        try:
            session.client("sqs", endpoint_url=faults.url).list_queues()
        finally:
            handle.uninstrument()
        value = faults.requests[0].header("X-Amzn-Trace-Id")
        assert (value if value is None else value[:7]) == expected


def test_existing_trace_header_is_left_alone(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, faults: FaultServer
) -> None:
    """A header already on the request (the user's, or botocore's own in Lambda) wins."""

    def add(params: Any, **_: Any) -> None:
        params["headers"]["X-Amzn-Trace-Id"] = "Root=1-00000000-000000000000000000000001"

    handle = evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, xray_header=True
    )
    try:
        client = session.client("sqs", endpoint_url=faults.url)
        client.meta.events.register("before-call.sqs.ListQueues", add)
        client.list_queues()
    finally:
        handle.uninstrument()
    assert (
        faults.requests[0].header("X-Amzn-Trace-Id") == "Root=1-00000000-000000000000000000000001"
    )


def test_no_header_without_a_call_span(
    session: boto3.Session, registry: CollectorRegistry, faults: FaultServer
) -> None:
    """With traces off there is no call span to name: no header."""
    handle = evobs.instrument(session, registry=registry, signals=("metrics",), xray_header=True)
    try:
        session.client("sqs", endpoint_url=faults.url).list_queues()
    finally:
        handle.uninstrument()
    assert faults.requests[0].header("X-Amzn-Trace-Id") is None
    assert otel_context.get_current() is not None
