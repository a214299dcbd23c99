"""The real OTLP/HTTP exporter, through ``evobs.configure``, to a local receiver that
decodes ``ExportTraceServiceRequest`` protobuf: what a collector or Jaeger receives."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer

from .faults_util import zero_backoff
from .otlp_receiver import OTLPReceiver, otlp_receiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as server:
        yield server


def _configure(endpoint: str, registry: CollectorRegistry, **kwargs: object) -> evobs.Telemetry:
    return evobs.configure(
        "orders-api",
        traces="otlp",
        otlp_endpoint=endpoint,
        metrics_port=None,
        logs=None,
        registry=registry,
        set_global=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _s3(session: boto3.Session, url: str, **config: object) -> object:
    return session.client(
        "s3",
        endpoint_url=url,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=2,
            read_timeout=2,
            **config,  # type: ignore[arg-type]
        ),
    )


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries cost no sleep (DESIGN 6): botocore's jitter returns 0."""
    zero_backoff(monkeypatch)


def test_spans_resource_and_attributes_arrive_intact(
    session: boto3.Session, moto_url: str, receiver: OTLPReceiver, registry: CollectorRegistry
) -> None:
    """A call against moto is exported over OTLP/HTTP; the receiver decodes the span with its
    name, kind, evobs attributes and the resource's service.name."""
    telemetry = _configure(receiver.base_url, registry)
    try:
        telemetry.instrument(session)
        client = _s3(session, moto_url)
        client.create_bucket(Bucket="otlp-intact")  # type: ignore[attr-defined]
        client.put_object(Bucket="otlp-intact", Key="k", Body=b"hello")  # type: ignore[attr-defined]
    finally:
        assert telemetry.shutdown(timeout=10)
    assert telemetry.otlp_endpoint == receiver.url
    put = receiver.named("S3.PutObject")
    assert len(put) == 1, [s.name for s in receiver.received()]
    span = put[0]
    assert span.kind == PbSpan.SPAN_KIND_CLIENT
    assert span.attributes["rpc.system"] == "aws-api"
    assert span.attributes["rpc.service"] == "S3"
    assert span.attributes["rpc.method"] == "PutObject"
    assert span.attributes["cloud.region"] == "us-east-1"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["aws.sdk.attempts"] == 1
    assert len(span.trace_id) == 32 and len(span.span_id) == 16
    assert span.end_ns > span.start_ns
    assert span.resource["service.name"] == "orders-api"
    assert span.resource["telemetry.sdk.name"] == "opentelemetry"
    assert span.scope == "evobs"
    assert receiver.content_types and receiver.content_types[0] == "application/x-protobuf"
    assert telemetry.spans_dropped == 0


def test_parent_links_survive_export(
    session: boto3.Session, moto_url: str, receiver: OTLPReceiver, registry: CollectorRegistry
) -> None:
    """A user span around the calls is their parent; a retried call's attempt spans are the
    call span's children, all in one trace, after the protobuf round trip."""
    telemetry = _configure(receiver.base_url, registry)
    assert telemetry.tracer_provider is not None
    tracer = telemetry.tracer_provider.get_tracer("test")
    try:
        telemetry.instrument(session)
        with FaultServer(upstream=moto_url) as faults:
            client = _s3(session, faults.url)
            client.create_bucket(Bucket="otlp-links")  # type: ignore[attr-defined]
            faults.script([Fault.status(503).on(method="PUT", path=r"/otlp-links/k")])
            with tracer.start_as_current_span("checkout"):
                client.put_object(Bucket="otlp-links", Key="k", Body=b"x")  # type: ignore[attr-defined]
                client.list_objects_v2(Bucket="otlp-links")  # type: ignore[attr-defined]
    finally:
        assert telemetry.shutdown(timeout=10)
    (parent,) = receiver.named("checkout")
    (put,) = receiver.named("S3.PutObject")
    (listing,) = receiver.named("S3.ListObjectsV2")
    attempts = sorted(receiver.named("S3.PutObject attempt"), key=lambda s: s.start_ns)
    assert put.parent_span_id == parent.span_id
    assert listing.parent_span_id == parent.span_id
    assert {put.trace_id, listing.trace_id} == {parent.trace_id}
    assert put.attributes["aws.sdk.attempts"] == 2
    assert [a.attributes["http.request.resend_count"] for a in attempts] == [0, 1]
    assert [a.attributes.get("http.response.status_code") for a in attempts] == [503, 200]
    for attempt in attempts:
        assert attempt.parent_span_id == put.span_id
        assert attempt.trace_id == parent.trace_id
    assert attempts[0].status_code == PbStatus.STATUS_CODE_ERROR
    assert any(name == "aws.sdk.retry" for name, _ in put.events)


def test_unreachable_endpoint_never_breaks_calls(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """With nothing listening on the OTLP port, calls succeed as usual, shutdown returns,
    and the spans that could not be exported are counted in evobs_spans_dropped_total."""
    with otlp_receiver("refuse") as closed:
        telemetry = _configure(closed.base_url, registry, export_timeout=2.0)
        telemetry.instrument(session)
        client = _s3(session, moto_url)
        client.create_bucket(Bucket="otlp-down")  # type: ignore[attr-defined]
        for i in range(20):
            client.put_object(Bucket="otlp-down", Key=f"k{i}", Body=b"x")  # type: ignore[attr-defined]
        listed = client.list_objects_v2(Bucket="otlp-down")  # type: ignore[attr-defined]
        assert listed["KeyCount"] == 20
        telemetry.shutdown(timeout=1.0)
        deadline = time.monotonic() + 15
        while telemetry.spans_dropped < 22 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert telemetry.spans_dropped == 22


def test_hanging_collector_does_not_hold_shutdown(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """A collector that accepts the request and never answers: calls are unaffected and
    shutdown gives up at its timeout (returns False) instead of waiting for the export."""
    with otlp_receiver("hang") as hanging:
        telemetry = _configure(hanging.base_url, registry, export_timeout=30.0)
        telemetry.instrument(session)
        client = _s3(session, moto_url)
        client.create_bucket(Bucket="otlp-hang")  # type: ignore[attr-defined]
        client.put_object(Bucket="otlp-hang", Key="k", Body=b"x")  # type: ignore[attr-defined]
        assert telemetry.shutdown(timeout=0.5) is False
        deadline = time.monotonic() + 10
        while hanging.requests_seen < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hanging.requests_seen == 1
    assert client.get_object(Bucket="otlp-hang", Key="k")["Body"].read() == b"x"  # type: ignore[attr-defined]
