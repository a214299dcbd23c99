"""The core over real HTTP (moto's server): spans, parenting, the leak-proof lifecycle."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointResolutionError, ParamValidationError
from botocore.stub import Stubber
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

import evobs
from evobs import Attempt, Call

from .conftest import SpanRecorder


def _bucket(client: Any, name: str) -> str:
    client.create_bucket(Bucket=name)
    return name


def test_s3_call_becomes_one_client_span(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """A successful call is one CLIENT span named Service.Operation with the contract attributes."""
    s3 = session.client("s3", endpoint_url=moto_url)
    _bucket(s3, "core-span-bucket")
    s3.put_object(Bucket="core-span-bucket", Key="k", Body=b"hello")

    span = recorder.one("S3.PutObject")
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attrs["rpc.system"] == "aws-api"
    assert attrs["rpc.service"] == "S3"
    assert attrs["rpc.method"] == "PutObject"
    assert attrs["cloud.region"] == "us-east-1"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == int(moto_url.rsplit(":", 1)[1])
    assert attrs["http.request.method"] == "PUT"
    assert attrs["http.response.status_code"] == 200
    assert attrs["aws.sdk.attempts"] == 1
    assert attrs["aws.request_id"]
    assert attrs["aws.sdk.signing_ms"] > 0
    assert attrs["aws.sdk.serialization_ms"] > 0
    assert "error.type" not in attrs
    assert not recorder.named("S3.PutObject attempt"), "single-attempt calls get no child spans"
    assert span.parent is None
    assert recorder.started == recorder.ended


def test_dynamodb_sqs_sts_service_ids(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """json, query-compatible json and query protocols all produce spans named by service id."""
    session.client("dynamodb", endpoint_url=moto_url).list_tables()
    session.client("sqs", endpoint_url=moto_url).list_queues()
    session.client("sts", endpoint_url=moto_url).get_caller_identity()
    names = sorted(s.name for s in recorder.spans)
    assert names == ["DynamoDB.ListTables", "SQS.ListQueues", "STS.GetCallerIdentity"]
    for span in recorder.spans:
        assert span.attributes is not None
        assert span.attributes["rpc.service"] == span.name.split(".")[0]


def test_call_span_is_current_during_the_call(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """A user's before-send handler sees the call span as the current span."""
    seen: list[Any] = []
    client = session.client("dynamodb", endpoint_url=moto_url)
    client.meta.events.register(
        "before-send.dynamodb.ListTables",
        lambda **kw: seen.append(trace.get_current_span().get_span_context()),
    )
    before = otel_context.get_current()
    client.list_tables()
    span = recorder.one("DynamoDB.ListTables")
    assert seen == [span.get_span_context()]
    assert otel_context.get_current() == before


def test_call_span_is_child_of_the_application_span(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """The call span parents to whatever span the application has open."""
    tracer = recorder.provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        session.client("sqs", endpoint_url=moto_url).list_queues()
    span = recorder.one("SQS.ListQueues")
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id


def test_client_error_is_error_status_with_type(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """A 4xx arrives as after-call: status ERROR, error.type the AWS code, exception event."""
    s3 = session.client("s3", endpoint_url=moto_url)
    _bucket(s3, "core-error-bucket")
    with pytest.raises(ClientError) as raised:
        s3.get_object(Bucket="core-error-bucket", Key="missing")
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    span = recorder.one("S3.GetObject")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("NoSuchKey")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "NoSuchKey"
    assert span.attributes["http.response.status_code"] == 404
    assert [e.name for e in span.events] == ["exception"]


def test_expected_errors_leave_status_unset(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """HeadObject 404 declared expected: status unset, error.type still recorded truthfully."""
    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        expected_errors={"S3.HeadObject": {"404"}},
    )
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        _bucket(s3, "core-expected-bucket")
        with pytest.raises(ClientError):
            s3.head_object(Bucket="core-expected-bucket", Key="missing")
        span = recorder.one("S3.HeadObject")
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None
        assert span.attributes["error.type"] == "404"
    finally:
        handle.uninstrument()


def test_stubber_calls_still_produce_a_span(
    instrumented: evobs.Instrumentation, session: boto3.Session, recorder: SpanRecorder
) -> None:
    """botocore's Stubber answers in before-call; the span still opens and closes."""
    client = session.client("dynamodb")
    with Stubber(client) as stub:
        stub.add_response("list_tables", {"TableNames": ["table-a"]})
        stub.add_client_error("describe_table", service_error_code="ResourceNotFoundException")
        assert client.list_tables()["TableNames"] == ["table-a"]
        with pytest.raises(ClientError):
            client.describe_table(TableName="nope")
    assert recorder.one("DynamoDB.ListTables").status.status_code is StatusCode.UNSET
    failed = recorder.one("DynamoDB.DescribeTable")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "ResourceNotFoundException"
    assert recorder.started == recorder.ended == 2


def test_mock_aws_calls_produce_spans(
    instrumented: evobs.Instrumentation, session: boto3.Session, recorder: SpanRecorder
) -> None:
    """moto's mock_aws answers in before-send: every event fires, one span per call."""
    from moto import mock_aws

    with mock_aws():
        client = session.client("sqs")
        client.create_queue(QueueName="mocked")
        client.list_queues()
    assert [s.name for s in recorder.spans] == ["SQS.CreateQueue", "SQS.ListQueues"]
    assert recorder.started == recorder.ended


@pytest.mark.parametrize("event", ["before-call", "request-created", "before-send"])
def test_raising_user_handler_closes_the_span(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
    event: str,
) -> None:
    """A user handler that raises after ours: the app gets its exception, the span is closed."""

    class Boom(Exception):
        pass

    def raiser(**_: Any) -> None:
        raise Boom("user handler failed")

    client = session.client("dynamodb", endpoint_url=moto_url)
    client.meta.events.register(f"{event}.dynamodb.ListTables", raiser)
    before = otel_context.get_current()
    with pytest.raises(Boom):
        client.list_tables()
    assert otel_context.get_current() == before
    span = recorder.one("DynamoDB.ListTables")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "Boom"
    assert recorder.started == recorder.ended


def test_raising_user_handler_registered_first_before_ours(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """A user handler that runs before ours (registered first, later) still leaves nothing open."""

    def raiser(**_: Any) -> None:
        raise RuntimeError("early")

    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        client = session.client("dynamodb", endpoint_url=moto_url)
        client.meta.events.register_first("before-call.*.*", raiser)
        with pytest.raises(RuntimeError):
            client.list_tables()
        assert recorder.started == recorder.ended
    finally:
        handle.uninstrument()


def test_raising_user_after_call_handler_does_not_lose_the_span(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """Our after-call runs before the user's, so the span is complete and ok."""
    client = session.client("dynamodb", endpoint_url=moto_url)

    def raiser(**_: Any) -> None:
        raise ValueError("after")

    client.meta.events.register("after-call.dynamodb.ListTables", raiser)
    with pytest.raises(ValueError):
        client.list_tables()
    span = recorder.one("DynamoDB.ListTables")
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200


def test_keyboard_interrupt_mid_call_closes_span_and_restores_context(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """A BaseException mid-call fires no after-call event: the base class closes the span."""
    client = session.client("dynamodb", endpoint_url=moto_url)

    def interrupt(**_: Any) -> None:
        raise KeyboardInterrupt

    client.meta.events.register("before-send.dynamodb.ListTables", interrupt)
    before = otel_context.get_current()
    with pytest.raises(KeyboardInterrupt):
        client.list_tables()
    assert otel_context.get_current() == before
    span = recorder.one("DynamoDB.ListTables")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyboardInterrupt"
    assert recorder.started == recorder.ended


def test_param_validation_error_and_presign_leave_nothing(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """Calls that never reach before-call (validation, presigning) open no span."""
    s3 = session.client("s3", endpoint_url=moto_url)
    with pytest.raises(ParamValidationError):
        s3.put_object(Bucket="b", Key="k", ContentLength="many")  # type: ignore[arg-type]
    # A wrong type in a parameter S3's endpoint ruleset declares (Key): older botocore
    # (1.35) hands Key to the ruleset, which rejects it (EndpointResolutionError) before
    # parameter validation runs; newer botocore leaves the parameters the ruleset never
    # reads out of endpoint resolution, so validation rejects it. Both fail before before-call.
    with pytest.raises((ParamValidationError, EndpointResolutionError)):
        s3.put_object(Bucket="b", Key=123)  # type: ignore[arg-type]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    assert "Signature" in url
    assert recorder.started == recorder.ended == 0


def test_paginator_and_waiter_calls_each_get_a_span(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """Paginators make one call per page, waiters one per poll."""
    s3 = session.client("s3", endpoint_url=moto_url)
    _bucket(s3, "core-pages")
    for i in range(5):
        s3.put_object(Bucket="core-pages", Key=f"k{i}", Body=b"x")
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="core-pages", MaxKeys=2))
    assert len(pages) == 3
    s3.get_waiter("object_exists").wait(Bucket="core-pages", Key="k0")
    assert len(recorder.named("S3.ListObjectsV2")) == 3
    assert len(recorder.named("S3.HeadObject")) == 1


def test_nested_assume_role_is_a_child_of_the_outer_call(
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    moto_url: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An AssumeRole credential refresh inside signing gets its own span, parented to the call."""
    config = tmp_path / "config"
    config.write_text(
        "[profile base]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/evobs\n"
        "source_profile = base\nregion = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    session = boto3.Session(profile_name="role")
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        session.client("sqs").list_queues()
    finally:
        handle.uninstrument()
    outer = recorder.one("SQS.ListQueues")
    inner = recorder.one("STS.AssumeRole")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id
    assert recorder.started == recorder.ended == 2


def test_eight_threads_share_one_client(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """Per-call state only: concurrent calls on one client never mix their spans."""
    client = session.client("sqs", endpoint_url=moto_url)
    tracer = recorder.provider.get_tracer("app")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                with tracer.start_as_current_span(f"worker-{n}-{i}"):
                    client.list_queues()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    calls = recorder.named("SQS.ListQueues")
    workers = {s.context.span_id: s for s in recorder.spans if s.name.startswith("worker-")}
    assert len(calls) == 80
    assert len({s.context.span_id for s in calls}) == 80
    assert all(s.parent is not None and s.parent.span_id in workers for s in calls)
    # each worker span has exactly one call child
    assert sorted(s.parent.span_id for s in calls if s.parent) == sorted(workers)
    assert recorder.started == recorder.ended


def test_instrument_twice_is_idempotent(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """Same options: the same handle, handlers registered once. Other options: ValueError."""
    first = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        second = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
        assert second is first
        with pytest.raises(ValueError, match="already instrumented"):
            evobs.instrument(
                session, tracer_provider=recorder.provider, registry=registry, capture_params=True
            )
        session.client("sqs", endpoint_url=moto_url).list_queues()
        assert len(recorder.spans) == 1
    finally:
        first.uninstrument()


def test_uninstrument_stops_recording_even_for_existing_clients(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """Clients copy the session's handlers; the shared flag stops them all. Re-instrument works."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    early = session.client("sqs", endpoint_url=moto_url)
    evobs.uninstrument(session)
    assert not handle.enabled
    early.list_queues()
    session.client("sqs", endpoint_url=moto_url).list_queues()
    assert recorder.spans == []
    again = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        assert again is not handle
        session.client("sqs", endpoint_url=moto_url).list_queues()
        assert len(recorder.spans) == 1
    finally:
        again.uninstrument()


def test_clients_created_before_instrument_are_not_instrumented_but_can_be(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """Instrumenting a client directly swaps in the safety-net class; uninstrument restores it."""
    client = session.client("sqs", endpoint_url=moto_url)
    original = type(client)
    session_handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        client.list_queues()
        assert recorder.spans == []
        handle = evobs.instrument(client, tracer_provider=recorder.provider, registry=registry)
        assert type(client) is not original and isinstance(client, original)
        client.list_queues()
        assert len(recorder.named("SQS.ListQueues")) == 1
        handle.uninstrument()
        assert type(client) is original
        client.list_queues()
        assert len(recorder.named("SQS.ListQueues")) == 1
    finally:
        session_handle.uninstrument()


def test_instrumenting_a_client_of_an_instrumented_session_returns_its_handle(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """A client that already carries the session's instrumentation is not instrumented twice."""
    client = session.client("sqs", endpoint_url=moto_url)
    assert (
        evobs.instrument(client, tracer_provider=recorder.provider, registry=instrumented.registry)
        is instrumented
    )
    client.list_queues()
    assert len(recorder.spans) == 1


@pytest.mark.parametrize("target", ["session", 42, object(), b"x", [1]])
def test_bad_targets_raise_type_error(target: Any) -> None:
    """Anything but a session, a client or None is a clear TypeError."""
    with pytest.raises(TypeError, match=r"evobs\.instrument\(\) takes"):
        evobs.instrument(target)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"nonsense": True}, TypeError),
        ({"signals": "traces"}, TypeError),
        ({"signals": ["traces", "spans"]}, ValueError),
        ({"signals": [object()]}, TypeError),
        ({"capture_params": "yes"}, TypeError),
        ({"slow_call_seconds": -1}, ValueError),
        ({"slow_call_seconds": "1"}, TypeError),
        ({"duration_buckets": [1, 0.5]}, ValueError),
        ({"duration_buckets": []}, ValueError),
        ({"expected_errors": ["404"]}, TypeError),
        ({"retry_log_rate": 0}, ValueError),
        ({"retry_log_burst": 0.5}, ValueError),
    ],
)
def test_bad_options_raise_clear_errors(
    session: boto3.Session, options: dict[str, Any], error: type[Exception]
) -> None:
    """Options are validated at instrument() time, with the option named in the message."""
    with pytest.raises(error, match="evobs"):
        evobs.instrument(session, registry=CollectorRegistry(), **options)


def test_bad_provider_and_registry_types(session: boto3.Session) -> None:
    """tracer_provider and registry are type-checked up front."""
    with pytest.raises(TypeError, match="TracerProvider"):
        evobs.instrument(session, tracer_provider="otlp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CollectorRegistry"):
        evobs.instrument(session, registry={})  # type: ignore[arg-type]


def test_evobs_disabled_makes_instrument_a_no_op(
    session: boto3.Session,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EVOBS_DISABLED=1: a handle comes back, nothing is registered or recorded."""
    monkeypatch.setenv("EVOBS_DISABLED", "1")
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    assert not handle.enabled
    session.client("sqs", endpoint_url=moto_url).list_queues()
    assert recorder.spans == []


class _RecordingSignal:
    """A user signal: records every transition it receives."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def call_started(self, call: Call) -> None:
        self.events.append(("call_started", call.name))

    def attempt_started(self, call: Call, attempt: Attempt) -> None:
        self.events.append(("attempt_started", attempt.number))

    def attempt_ended(self, call: Call, attempt: Attempt) -> None:
        self.events.append(("attempt_ended", attempt.outcome))

    def call_ended(self, call: Call) -> None:
        self.events.append(("call_ended", call.outcome))

    def client_created(self, event: evobs.ClientCreated) -> None:
        self.events.append(("client_created", event.service))
        assert event.duration_ns > 0

    def resource_created(self, event: evobs.ResourceCreated) -> None:
        self.events.append(("resource_created", f"{event.service}.{event.resource}"))


class _BrokenSignal:
    """A signal that raises at every transition."""

    def call_started(self, call: Call) -> None:
        raise RuntimeError("broken")

    def call_ended(self, call: Call) -> None:
        raise RuntimeError("broken")


def test_user_signals_receive_transitions_and_broken_ones_are_isolated(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """Custom signals see every transition; a raising one costs only itself and is counted."""
    good = _RecordingSignal()
    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        signals=["traces", good, _BrokenSignal()],
    )
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        s3.list_buckets()
        session.resource("s3", endpoint_url=moto_url).Bucket("any")
    finally:
        handle.uninstrument()
    assert good.events[:5] == [
        ("client_created", "S3"),
        ("call_started", "S3.ListBuckets"),
        ("attempt_started", 1),
        ("attempt_ended", "ok"),
        ("call_ended", "ok"),
    ]
    assert ("resource_created", "S3.ServiceResource") in good.events
    assert ("resource_created", "S3.Bucket") in good.events
    assert recorder.one("S3.ListBuckets").status.status_code is StatusCode.UNSET
    for event in ("call_started", "call_ended"):
        assert registry.get_sample_value("evobs_handler_errors_total", {"event": event}) == 1.0


def test_call_record_survives_deepcopy_of_the_context() -> None:
    """botocore deep-copies the context dict for some operations: the record is shared."""
    import copy

    from evobs._operation import Operation

    model = boto3.Session(region_name="us-east-1").client("ec2").meta.service_model
    call = Call(Operation(model.operation_model("CopySnapshot")), "us-east-1", 1)
    context = {"evobs.call": call, "other": [1]}
    cloned = copy.deepcopy(context)
    assert cloned["evobs.call"] is call
    assert cloned["other"] is not context["other"]


def test_ec2_copy_snapshot_deepcopy_path(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    moto_url: str,
) -> None:
    """EC2 CopySnapshot presigns inside before-call (deep-copying the context): one span."""
    ec2 = session.client("ec2", endpoint_url=moto_url)
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    snapshot = ec2.create_snapshot(VolumeId=volume["VolumeId"])
    ec2.copy_snapshot(SourceSnapshotId=snapshot["SnapshotId"], SourceRegion="us-east-1")
    span = recorder.one("EC2.CopySnapshot")
    assert span.status.status_code is StatusCode.UNSET
    assert recorder.started == recorder.ended
