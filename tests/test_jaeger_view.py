"""What a Jaeger user sees of evobs's traces: the real OTLP/HTTP exporter sends to the
local receiver, and the decoded export requests are converted with Jaeger's
OTLP-to-Jaeger mapping (``tests/jaeger_model.py``): the AWS service as the peer of each
call, the labelled backoff, expected errors without an error log, part numbers, and the
demo's request-shaped traces."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

import evobs
from evobs._options import Options
from evobs.demo.faults import Fault, FaultServer
from evobs.services import _semconv

from .faults_util import zero_backoff
from .jaeger_model import (
    FOLLOWS_FROM,
    JaegerReceiver,
    JaegerSpan,
    JaegerTrace,
    dependency_links,
    jaeger_receiver,
)
from .workload_util import run_workload_until

SERVICE = "orders-api"
_MIB = 1024 * 1024


@pytest.fixture
def receiver() -> Iterator[JaegerReceiver]:
    with jaeger_receiver() as server:
        yield server


def _configure(
    receiver: JaegerReceiver, registry: CollectorRegistry, service: str
) -> evobs.Telemetry:
    """An application's setup: the SDK provider with the OTLP/HTTP exporter, not global."""
    return evobs.configure(
        service,
        traces="otlp",
        otlp_endpoint=receiver.base_url,
        metrics_port=None,
        logs=None,
        registry=registry,
        set_global=False,
    )


@pytest.fixture
def telemetry(receiver: JaegerReceiver, registry: CollectorRegistry) -> Iterator[evobs.Telemetry]:
    telemetry = _configure(receiver, registry, SERVICE)
    try:
        yield telemetry
    finally:
        telemetry.shutdown(timeout=10)


def _instrument(
    session: boto3.Session, telemetry: evobs.Telemetry, registry: CollectorRegistry, **options: Any
) -> evobs.Instrumentation:
    return evobs.instrument(
        session, tracer_provider=telemetry.tracer_provider, registry=registry, **options
    )


def _exported(telemetry: evobs.Telemetry, receiver: JaegerReceiver) -> dict[str, JaegerTrace]:
    """Everything ended so far, exported and converted as Jaeger would store it."""
    assert telemetry.force_flush(timeout=10)
    return receiver.traces()


def _config(**retries: Any) -> Config:
    return Config(
        retries=retries or {"mode": "standard", "total_max_attempts": 3},
        s3={"addressing_style": "path"},
        connect_timeout=2,
        read_timeout=5,
    )


def _create_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _spans(traces: dict[str, JaegerTrace], name: str) -> list[tuple[JaegerTrace, JaegerSpan]]:
    return [(t, s) for t in traces.values() for s in t.named(name)]


def _one(traces: dict[str, JaegerTrace], name: str) -> tuple[JaegerTrace, JaegerSpan]:
    found = _spans(traces, name)
    assert len(found) == 1, (
        f"{name}: {[s.operation_name for t in traces.values() for s in t.spans]}"
    )
    return found[0]


# -- the AWS service as the peer --------------------------------------------------------------


def _name(prefix: str) -> str:
    """A fresh table, bucket or queue name (moto's server lives for the whole run)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _three_services(session: boto3.Session, moto_url: str) -> tuple[Any, Any, Any, str]:
    """DynamoDB, S3 and SQS clients, with a table, a bucket and a queue of one name."""
    name = _name("peers")
    dynamodb = session.client("dynamodb", endpoint_url=moto_url, config=_config())
    s3 = session.client("s3", endpoint_url=moto_url, config=_config())
    sqs = session.client("sqs", endpoint_url=moto_url, config=_config())
    _create_table(dynamodb, name)
    s3.create_bucket(Bucket=name)
    sqs.create_queue(QueueName=name)
    return dynamodb, s3, sqs, name


def _handle_request(telemetry: evobs.Telemetry, clients: tuple[Any, Any, Any, str]) -> None:
    """One request of the application: a DynamoDB write, an S3 put and an SQS send."""
    dynamodb, s3, sqs, name = clients
    queue = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    tracer = telemetry.tracer_provider.get_tracer("orders")  # type: ignore[union-attr]
    with tracer.start_as_current_span("place order", kind=SpanKind.SERVER):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "order-1"}})
        s3.put_object(Bucket=name, Key="order-1.json", Body=b"{}")
        sqs.send_message(QueueUrl=queue, MessageBody="order-1")


def test_every_call_names_its_aws_service_as_the_peer(
    session: boto3.Session,
    moto_url: str,
    receiver: JaegerReceiver,
    telemetry: evobs.Telemetry,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``EVOBS_PEER_SERVICE=1`` each call span carries ``peer.service`` and
    ``service.peer.name`` (the service id), so Jaeger labels its row ``orders-api ->
    DynamoDB`` and its dependency graph gets an edge to each AWS service."""
    monkeypatch.setenv("EVOBS_PEER_SERVICE", "1")
    handle = _instrument(session, telemetry, registry)
    try:
        clients = _three_services(session, moto_url)
        _handle_request(telemetry, clients)
    finally:
        handle.uninstrument()
    traces = _exported(telemetry, receiver)
    trace, root = _one(traces, "place order")
    calls = trace.children(root)
    assert [s.operation_name for s in calls] == [
        "DynamoDB.PutItem",
        "S3.PutObject",
        "SQS.SendMessage",
    ]
    for span in calls:
        service = span.tags["rpc.service"]
        assert span.tags["peer.service"] == service == span.tags["service.peer.name"]
        assert trace.row_label(span) == f"{SERVICE} -> {service}"
    assert [s.tags["span.kind"] for s in calls] == ["client", "client", "producer"]
    assert trace.row_label(root) == SERVICE
    links = dependency_links(traces.values())
    for peer in ("DynamoDB", "S3", "SQS"):
        assert links.get((SERVICE, peer), 0) >= 1, links
    # The setup calls (CreateQueue, GetQueueUrl) are leaves of their own: edges too.
    assert links[(SERVICE, "SQS")] == 3


def test_the_peer_is_opt_in(
    session: boto3.Session,
    moto_url: str,
    receiver: JaegerReceiver,
    telemetry: evobs.Telemetry,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``EVOBS_PEER_SERVICE`` (the conventions rate the attribute opt-in) no
    span names a peer: the rows show the application alone, and so does the graph."""
    monkeypatch.delenv("EVOBS_PEER_SERVICE", raising=False)
    handle = _instrument(session, telemetry, registry)
    try:
        _handle_request(telemetry, _three_services(session, moto_url))
    finally:
        handle.uninstrument()
    traces = _exported(telemetry, receiver)
    trace, root = _one(traces, "place order")
    for span in trace.children(root):
        assert "peer.service" not in span.tags
        assert "service.peer.name" not in span.tags
        assert trace.row_label(span) == SERVICE
    assert set(dependency_links(traces.values())) == {(SERVICE, SERVICE)}


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("1", True), ("true", True), (" On ", True), ("yes", True), ("0", False), ("", False)],
)
def test_peer_service_switch_values(
    value: str, enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EVOBS_PEER_SERVICE`` reads like evobs's other switches (the ``peer_service``
    option wins); the peer attributes join the static RPC attributes of every
    generation, and only when switched on."""
    monkeypatch.setenv("EVOBS_PEER_SERVICE", value)
    assert Options().peer_service is enabled
    assert Options(peer_service=not enabled).peer_service is not enabled
    for generation in (_semconv.OLD, _semconv.NEW, _semconv.DUP):
        on = _semconv.rpc("Secrets Manager", "GetSecretValue", generation, peer_service=True)
        off = _semconv.rpc("Secrets Manager", "GetSecretValue", generation, peer_service=False)
        assert on == {
            **off,
            "peer.service": "Secrets Manager",
            "service.peer.name": "Secrets Manager",
        }
        assert "peer.service" not in off


# -- the backoff, labelled where it happens -----------------------------------------------------


def test_backoff_is_a_labelled_log_where_the_sleep_starts(
    session: boto3.Session,
    moto_url: str,
    receiver: JaegerReceiver,
    telemetry: evobs.Telemetry,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A throttled first attempt (the server asks for a 50 ms wait): on the call span,
    Jaeger shows an ``aws.sdk.retry`` log at the end of the failed attempt, the start of
    the gap, saying why (throttled, ThrottlingException), before which attempt, and how
    long the sleep was (the gap between the two attempt spans)."""
    zero_backoff(monkeypatch)
    handle = _instrument(session, telemetry, registry)
    try:
        with FaultServer(upstream=moto_url) as faults:
            dynamodb = session.client("dynamodb", endpoint_url=faults.url, config=_config())
            table = _name("backoff")
            _create_table(dynamodb, table)
            faults.script(
                [Fault.throttle().with_headers(("x-amz-retry-after", "50")).on("PutItem")]
            )
            dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
            assert faults.count(operation="PutItem") == 2
    finally:
        handle.uninstrument()
    trace, call = _one(_exported(telemetry, receiver), "DynamoDB.PutItem")
    first, second = trace.children(call)
    assert first.tags["error.type"] == "ThrottlingException"
    assert first.end_us < second.start_us  # the sleep the server asked for
    (log,) = call.logs_named("aws.sdk.retry")
    assert log.timestamp_us == first.end_us
    assert log.fields["aws.sdk.retry.reason"] == "throttled"
    assert log.fields["error.type"] == "ThrottlingException"
    assert log.fields["aws.sdk.attempt"] == second.tags["aws.sdk.attempt"] == 2
    gap_us = second.start_us - first.end_us
    assert abs(log.fields["aws.sdk.retry_backoff_ms"] * 1000 - gap_us) <= 1
    assert not call.has_error  # retried to success: nothing failed
    assert [log.event for log in call.logs] == ["aws.sdk.retry"]


# -- expected errors ----------------------------------------------------------------------------


def test_expected_errors_show_no_error_log(
    session: boto3.Session,
    moto_url: str,
    receiver: JaegerReceiver,
    telemetry: evobs.Telemetry,
    registry: CollectorRegistry,
) -> None:
    """A declared-expected ConditionalCheckFailedException: the span is not marked failed
    and has no ``exception`` log, while ``error.type`` still says what happened; an
    undeclared NoSuchKey is marked failed and logs its exception."""
    handle = _instrument(
        session,
        telemetry,
        registry,
        expected_errors={"DynamoDB.PutItem": {"ConditionalCheckFailedException"}},
    )
    try:
        dynamodb = session.client("dynamodb", endpoint_url=moto_url, config=_config())
        s3 = session.client("s3", endpoint_url=moto_url, config=_config())
        name = _name("expected")
        _create_table(dynamodb, name)
        s3.create_bucket(Bucket=name)
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "a"}})
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            dynamodb.put_item(
                TableName=name,
                Item={"pk": {"S": "a"}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        with pytest.raises(ClientError, match="NoSuchKey"):
            s3.get_object(Bucket=name, Key="missing")
    finally:
        handle.uninstrument()
    traces = _exported(telemetry, receiver)
    puts = [s for _, s in _spans(traces, "DynamoDB.PutItem")]
    assert len(puts) == 2
    expected = next(s for s in puts if "error.type" in s.tags)
    assert expected.tags["error.type"] == "ConditionalCheckFailedException"
    assert expected.tags["aws.sdk.outcome"] == "client_error"
    assert not expected.has_error
    assert "otel.status_code" not in expected.tags
    assert expected.logs_named("exception") == []
    _, missing = _one(traces, "S3.GetObject")
    assert missing.has_error
    assert missing.tags["otel.status_description"].startswith("NoSuchKey: ")
    (log,) = missing.logs_named("exception")
    assert log.fields["exception.type"] == "NoSuchKey"


# -- part numbers -------------------------------------------------------------------------------


def test_part_spans_carry_their_part_number(
    session: boto3.Session,
    moto_url: str,
    receiver: JaegerReceiver,
    telemetry: evobs.Telemetry,
    registry: CollectorRegistry,
) -> None:
    """A 3-part ``upload_file``: each UploadPart span has its ``aws.s3.part_number``, so
    the three rows under ``S3.upload_file`` differ; a GetObject of one part has it too.
    The ranged GetObjects of ``download_file`` name no part (none is known)."""
    handle = _instrument(session, telemetry, registry)
    transfer = TransferConfig(multipart_threshold=5 * _MIB, multipart_chunksize=5 * _MIB)
    try:
        s3 = session.client("s3", endpoint_url=moto_url, config=_config())
        bucket = _name("parts")
        s3.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "upload.bin")
            with open(path, "wb") as handle_out:
                handle_out.write(b"x" * (12 * _MIB))
            s3.upload_file(path, bucket, "big.bin", Config=transfer)
            s3.get_object(Bucket=bucket, Key="big.bin", PartNumber=2)["Body"].read()
            s3.download_file(bucket, "big.bin", os.path.join(tmp, "down.bin"), Config=transfer)
    finally:
        handle.uninstrument()
    traces = _exported(telemetry, receiver)
    trace, parent = _one(traces, "S3.upload_file")
    parts = [s for s in trace.children(parent) if s.operation_name == "S3.UploadPart"]
    assert sorted(s.tags["aws.s3.part_number"] for s in parts) == [1, 2, 3]
    gets = [s for _, s in _spans(traces, "S3.GetObject")]
    by_part = [s for s in gets if "aws.s3.part_number" in s.tags]
    assert [s.tags["aws.s3.part_number"] for s in by_part] == [2]
    download_trace, download = _one(traces, "S3.download_file")
    ranged = download_trace.descendants(download)
    assert ranged and all("aws.s3.part_number" not in s.tags for s in ranged)


# -- the demo: request-shaped traces ------------------------------------------------------------


_WANTED = ("order with a throttled retry", "order followed through the queue", "multipart upload")


#: Units (each a request trace) to run at least: the test reads more than 20 traces.
_MIN_UNITS = 30


def _run_until_seen(workload: Any, collector: Any) -> None:
    """Run the workload until the traces the test reads exist (a throttled order, one
    followed through the queue, the upload) and at least ``_MIN_UNITS`` units ran."""

    def seen() -> bool:
        labels = " ".join(label for label, _ in collector.worth_opening())
        units = sum(workload.tally.steps.values())
        return units >= _MIN_UNITS and all(wanted in labels for wanted in _WANTED)

    run_workload_until(workload, seen)


def test_demo_traces_are_request_shaped(
    moto_url: str,
    receiver: JaegerReceiver,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo workload, in-process and short, exported over OTLP: every AWS call made
    by the workload sits in a trace rooted at an application span; an order's trace holds
    its DynamoDB, S3 and SQS calls and the consumer that continued it from the message;
    throttles appear inside requests; the upload's parts are told apart; the graph has
    an edge to each AWS service; and the summary names traces that really exist."""
    from evobs.demo.summary import SpanCollector
    from evobs.demo.workload import APP_SCOPE, EXPECTED_ERRORS, UNITS, Workload, demo_session

    zero_backoff(monkeypatch)
    monkeypatch.setenv("EVOBS_PEER_SERVICE", "1")  # the demo's default
    telemetry = _configure(receiver, registry, "evobs-demo")
    provider = telemetry.tracer_provider
    assert provider is not None
    collector = SpanCollector()
    provider.add_span_processor(collector)  # type: ignore[attr-defined]
    session = demo_session()
    handle = evobs.instrument(
        session, tracer_provider=provider, registry=registry, expected_errors=EXPECTED_ERRORS
    )
    try:
        with FaultServer(upstream=moto_url) as faults:
            workload = Workload(
                session, faults.url, faults=faults, seed=5, tracer_provider=provider
            )
            workload.chaos.rates = (0.2, 0.0, 0.0, 3)  # throttle one call in five
            workload.setup()
            setup_ids = set(_exported(telemetry, receiver))
            _run_until_seen(workload, collector)
        traces = _exported(telemetry, receiver)
    finally:
        handle.uninstrument()
        telemetry.shutdown(timeout=10)
    assert workload.tally.failures == {}
    run = {tid: t for tid, t in traces.items() if tid not in setup_ids}
    assert len(run) > 20

    # Every trace of the run is a request: rooted at one application span, never a bare call.
    for trace in run.values():
        roots = trace.roots()
        assert len(roots) == 1, [s.operation_name for s in roots]
        (root,) = roots
        assert root.tags["otel.scope.name"] == APP_SCOPE, root.operation_name
        assert root.operation_name in UNITS
        assert root.service_name == "evobs-demo"

    # An order followed through the queue: the consumer continues the order's trace.
    followed = [
        t
        for t in run.values()
        if t.roots()[0].operation_name == "place order" and t.named("process order event")
    ]
    assert followed
    trace = followed[0]
    (root,) = trace.roots()
    assert root.kind == "server"
    names = {s.operation_name for s in trace.descendants(root)}
    assert {"DynamoDB.GetItem", "DynamoDB.PutItem", "S3.PutObject", "SQS.SendMessage"} <= names
    (process,) = trace.named("process order event")
    assert process.kind == "consumer"
    parent = trace.span(process.parent_id or "")
    assert parent is not None and parent.operation_name == "SQS.SendMessage"
    assert [s.operation_name for s in trace.children(process)] == ["DynamoDB.UpdateItem"]
    polls = [r for r in process.references if r.ref_type == FOLLOWS_FROM]
    assert len(polls) == 1 and polls[0].trace_id != trace.trace_id
    poll = traces[polls[0].trace_id].span(polls[0].span_id)
    assert poll is not None and poll.operation_name == "poll order events"

    # Throttles inside requests: a retried call under an application span, labelled.
    throttled = [
        (t, s)
        for t in run.values()
        for s in t.spans
        if s.operation_name.endswith(" attempt") and s.tags.get("aws.sdk.outcome") == "throttled"
    ]
    assert throttled
    for trace, attempt in throttled:
        call = trace.span(attempt.parent_id or "")
        assert call is not None
        assert any(log.timestamp_us == attempt.end_us for log in call.logs_named("aws.sdk.retry"))
        assert trace.roots()[0].operation_name in UNITS

    # The upload: three parts, told apart by their part number.
    (archive,) = [t for t in run.values() if t.roots()[0].operation_name == "archive orders"]
    parts = archive.named("S3.UploadPart")
    assert sorted(s.tags["aws.s3.part_number"] for s in parts) == [1, 2, 3]

    # The dependency graph: the demo and the three AWS services it calls.
    links = dependency_links(run.values())
    for peer in ("DynamoDB", "S3", "SQS"):
        assert links.get(("evobs-demo", peer), 0) > 0, links

    # The summary's traces exist, and are what they claim to be.
    picks = dict(collector.worth_opening())
    assert picks
    for label, record in picks.items():
        assert record.trace_id in run, label
        assert run[record.trace_id].roots()[0].operation_name == record.root
    slowest = next(r for label, r in picks.items() if label.startswith("slowest order"))
    assert slowest.root == "place order"
    assert slowest.root_ns == max(t.root_ns for t in collector.traces() if t.root == "place order")
