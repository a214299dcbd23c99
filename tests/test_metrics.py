"""The metrics signal over real HTTP: moto as the endpoint, the fault server for
retries, throttling and resets. Every family is read back with
``registry.get_sample_value``."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest

import evobs
from evobs._options import DEFAULT_DURATION_BUCKETS
from evobs._registry import MetricConflictError
from evobs.demo.faults import Fault, FaultServer
from evobs.signals.metrics import (
    ERROR_TYPE_CAP,
    LOCAL_BUCKETS,
    MetricsServerError,
    start_metrics_server,
)
from tests.conftest import SpanRecorder, fast_config
from tests.faults_util import zero_backoff


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0.0 when the series does not exist."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def s3(session: boto3.Session, url: str, **retries: Any) -> Any:
    return session.client("s3", endpoint_url=url, config=fast_config(**retries))


def new_bucket(client: Any) -> str:
    name = f"m-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's backoff jitter returns 0 (DESIGN 6): retries cost no sleep; the
    retry decision stays botocore's."""
    zero_backoff(monkeypatch)


@pytest.fixture
def faults(moto_url: str) -> Iterator[FaultServer]:
    with FaultServer(upstream=moto_url) as server:
        yield server


# -- the happy path -------------------------------------------------------------------


def test_successful_calls_fill_every_call_family(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """Five ok S3 calls: durations by outcome, attempts, serialization, signing and
    attempt histograms count them; no errors, no retries; in-flight back to 0."""
    reg = instrumented.registry
    client = s3(session, moto_url)
    bucket = new_bucket(client)
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
    client.list_objects_v2(Bucket=bucket)

    put = {"service": "S3", "operation": "PutObject"}
    assert (
        value(reg, "aws_sdk_call_duration_seconds_count", **put, region="us-east-1", outcome="ok")
        == 3
    )
    assert (
        value(reg, "aws_sdk_call_duration_seconds_sum", **put, region="us-east-1", outcome="ok") > 0
    )
    assert value(reg, "aws_sdk_call_attempts_total", **put) == 3
    assert value(reg, "aws_sdk_call_attempt_duration_seconds_count", **put) == 3
    assert value(reg, "aws_sdk_call_serialization_duration_seconds_count", **put) == 3
    assert value(reg, "aws_sdk_call_serialization_duration_seconds_sum", **put) > 0
    assert value(reg, "aws_sdk_call_signing_duration_seconds_count", service="S3") == 5
    assert value(reg, "aws_sdk_call_signing_duration_seconds_sum", service="S3") > 0
    assert (
        value(
            reg,
            "aws_sdk_call_duration_seconds_count",
            service="S3",
            operation="ListObjectsV2",
            region="us-east-1",
            outcome="ok",
        )
        == 1
    )
    assert value(reg, "aws_sdk_calls_in_flight", service="S3") == 0
    assert value(reg, "aws_sdk_retries_total", **put, reason="server_error") == 0
    assert not [s for m in reg.collect() if m.name == "aws_sdk_call_errors" for s in m.samples], (
        "an ok call counted an error"
    )
    assert value(reg, "aws_sdk_retry_backoff_seconds_count", service="S3") == 0
    # The +Inf bucket equals the count, and the buckets are the configured ones.
    assert (
        value(
            reg,
            "aws_sdk_call_duration_seconds_bucket",
            **put,
            region="us-east-1",
            outcome="ok",
            le="+Inf",
        )
        == 3
    )
    le = str(DEFAULT_DURATION_BUCKETS[-1])
    assert (
        reg.get_sample_value(
            "aws_sdk_call_duration_seconds_bucket",
            {**put, "region": "us-east-1", "outcome": "ok", "le": le},
        )
        == 3
    )


def test_in_flight_counts_the_call_while_it_runs(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """A user before-send handler reads the gauge mid-call: 1; after the call: 0."""
    reg = instrumented.registry
    client = s3(session, moto_url)
    seen: list[float] = []

    def peek(**_: Any) -> None:
        seen.append(value(reg, "aws_sdk_calls_in_flight", service="S3"))

    client.meta.events.register("before-send.s3.ListBuckets", peek)
    client.list_buckets()
    assert seen == [1.0]
    assert value(reg, "aws_sdk_calls_in_flight", service="S3") == 0


def test_client_and_resource_creation(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """Clients and resources are counted per service id, with construction time."""
    reg = instrumented.registry
    for _ in range(2):
        session.client("dynamodb", endpoint_url=moto_url)
    resource = session.resource("s3", endpoint_url=moto_url)
    resource.Bucket("anything")
    resource.Bucket("other")

    assert value(reg, "aws_sdk_clients_created_total", service="DynamoDB") == 2
    assert value(reg, "aws_sdk_client_creation_duration_seconds_count", service="DynamoDB") == 2
    assert value(reg, "aws_sdk_client_creation_duration_seconds_sum", service="DynamoDB") > 0
    # The resource made its own S3 client.
    assert value(reg, "aws_sdk_clients_created_total", service="S3") == 1
    assert (
        value(reg, "aws_sdk_resources_created_total", service="S3", resource="ServiceResource") == 1
    )
    assert value(reg, "aws_sdk_resources_created_total", service="S3", resource="Bucket") == 2


# -- errors and fault paths -------------------------------------------------------------


def test_client_error_counts_error_type_and_expected_errors_truthfully(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """NoSuchKey is a client_error with error_type NoSuchKey; an expected HeadObject 404
    is still counted (expected_errors changes span status and log level, not metrics)."""
    handle = evobs.instrument(
        session,
        registry=registry,
        signals=("metrics",),
        expected_errors={"S3.HeadObject": {"404"}},
    )
    try:
        client = s3(session, moto_url)
        bucket = new_bucket(client)
        with pytest.raises(ClientError):
            client.get_object(Bucket=bucket, Key="missing")
        with pytest.raises(ClientError):
            client.head_object(Bucket=bucket, Key="missing")
    finally:
        handle.uninstrument()
    get = {"service": "S3", "operation": "GetObject"}
    assert value(registry, "aws_sdk_call_errors_total", **get, error_type="NoSuchKey") == 1
    assert (
        value(
            registry,
            "aws_sdk_call_duration_seconds_count",
            **get,
            region="us-east-1",
            outcome="client_error",
        )
        == 1
    )
    head = {"service": "S3", "operation": "HeadObject"}
    assert value(registry, "aws_sdk_call_errors_total", **head, error_type="404") == 1
    assert (
        value(
            registry,
            "aws_sdk_call_duration_seconds_count",
            **head,
            region="us-east-1",
            outcome="client_error",
        )
        == 1
    )
    assert value(registry, "aws_sdk_call_attempts_total", **get) == 1  # 4xx is not retried


def test_in_flight_restored_when_the_call_is_interrupted(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """A KeyboardInterrupt raised mid-call (no after-call event) still ends the call in
    the metrics: in-flight back to 0, one call with outcome ``error``."""
    handle = evobs.instrument(session, registry=registry, signals=("metrics",))
    try:
        client = s3(session, moto_url)

        def interrupt(**_: Any) -> None:
            raise KeyboardInterrupt

        client.meta.events.register("before-send.s3.ListBuckets", interrupt)
        with pytest.raises(KeyboardInterrupt):
            client.list_buckets()
    finally:
        handle.uninstrument()
    assert value(registry, "aws_sdk_calls_in_flight", service="S3") == 0
    op = {"service": "S3", "operation": "ListBuckets"}
    assert (
        value(
            registry,
            "aws_sdk_call_duration_seconds_count",
            **op,
            region="us-east-1",
            outcome="error",
        )
        == 1
    )
    assert value(registry, "aws_sdk_call_errors_total", **op, error_type="KeyboardInterrupt") == 1


@pytest.mark.usefixtures("no_jitter")
def test_retries_by_reason_backoff_and_attempts(
    instrumented: evobs.Instrumentation, session: boto3.Session, faults: FaultServer
) -> None:
    """Throttle, 503, then moto's answer: three attempts, one retry per reason, two
    backoffs, three signed attempts, one ok call."""
    reg = instrumented.registry
    faults.script([Fault.throttle(), Fault.status(503)])
    client = session.client("dynamodb", endpoint_url=faults.url, config=fast_config())
    client.list_tables()
    assert faults.count(operation="ListTables") == 3

    op = {"service": "DynamoDB", "operation": "ListTables"}
    assert value(reg, "aws_sdk_call_attempts_total", **op) == 3
    assert value(reg, "aws_sdk_retries_total", **op, reason="throttled") == 1
    assert value(reg, "aws_sdk_retries_total", **op, reason="server_error") == 1
    assert value(reg, "aws_sdk_retry_backoff_seconds_count", service="DynamoDB") == 2
    assert value(reg, "aws_sdk_call_attempt_duration_seconds_count", **op) == 3
    assert value(reg, "aws_sdk_call_signing_duration_seconds_count", service="DynamoDB") == 3
    assert (
        value(reg, "aws_sdk_call_duration_seconds_count", **op, region="us-east-1", outcome="ok")
        == 1
    )
    # The call succeeded in the end: its earlier failures are retries, not call errors.
    assert value(reg, "aws_sdk_call_errors_total", **op, error_type="ThrottlingException") == 0
    assert value(reg, "aws_sdk_calls_in_flight", service="DynamoDB") == 0


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize(
    ("fault", "outcome", "error_type"),
    [
        (Fault.status(500, "InternalServerError"), "server_error", "InternalServerError"),
        (Fault.throttle(), "throttled", "ThrottlingException"),
        (Fault.reset(), "connection_error", ConnectionClosedError.__name__),
    ],
    ids=["5xx", "throttled", "reset"],
)
def test_exhausted_retries_end_in_the_last_outcome(
    session: boto3.Session,
    faults: FaultServer,
    registry: CollectorRegistry,
    fault: Fault,
    outcome: str,
    error_type: str,
) -> None:
    """Three failing attempts: the call's outcome and error_type are the last attempt's,
    retries are counted by that reason, in-flight is back to 0."""
    handle = evobs.instrument(session, registry=registry, signals=("metrics",))
    try:
        faults.script([fault, fault, fault])
        client = session.client("dynamodb", endpoint_url=faults.url, config=fast_config())
        with pytest.raises((ClientError, ConnectionClosedError)):
            client.list_tables()
    finally:
        handle.uninstrument()
    op = {"service": "DynamoDB", "operation": "ListTables"}
    assert value(registry, "aws_sdk_call_attempts_total", **op) == 3
    assert value(registry, "aws_sdk_retries_total", **op, reason=outcome) == 2
    assert (
        value(
            registry,
            "aws_sdk_call_duration_seconds_count",
            **op,
            region="us-east-1",
            outcome=outcome,
        )
        == 1
    )
    assert value(registry, "aws_sdk_call_errors_total", **op, error_type=error_type) == 1
    assert value(registry, "aws_sdk_retry_backoff_seconds_count", service="DynamoDB") == 2
    assert value(registry, "aws_sdk_call_attempt_duration_seconds_count", **op) == 3
    assert value(registry, "aws_sdk_calls_in_flight", service="DynamoDB") == 0


def test_error_type_cardinality_is_capped(
    session: boto3.Session, faults: FaultServer, registry: CollectorRegistry
) -> None:
    """Past ERROR_TYPE_CAP distinct codes per operation, codes from the wire count as
    ``other``; the admitted ones keep counting under their own name."""
    handle = evobs.instrument(session, registry=registry, signals=("metrics",))
    extra = 3
    try:
        faults.script(Fault.error(400, f"WeirdCode{i}") for i in range(ERROR_TYPE_CAP + extra))
        faults.script([Fault.error(400, "WeirdCode0")])
        client = session.client("dynamodb", endpoint_url=faults.url, config=fast_config())
        for _ in range(ERROR_TYPE_CAP + extra + 1):
            with pytest.raises(ClientError):
                client.list_tables()
    finally:
        handle.uninstrument()
    op = {"service": "DynamoDB", "operation": "ListTables"}
    types = {
        s.labels["error_type"]
        for m in registry.collect()
        if m.name == "aws_sdk_call_errors"
        for s in m.samples
        if s.name == "aws_sdk_call_errors_total"
    }
    assert len(types) == ERROR_TYPE_CAP + 1
    assert value(registry, "aws_sdk_call_errors_total", **op, error_type="other") == extra
    assert value(registry, "aws_sdk_call_errors_total", **op, error_type="WeirdCode0") == 2
    assert (
        value(registry, "aws_sdk_call_errors_total", **op, error_type=f"WeirdCode{ERROR_TYPE_CAP}")
        == 0
    )


# -- exemplars ---------------------------------------------------------------------------


def test_call_duration_carries_the_trace_id_as_exemplar(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
) -> None:
    """The OpenMetrics exposition shows the call span's trace_id and span_id on the
    duration bucket the call fell in."""
    client = s3(session, moto_url)
    client.list_buckets()
    span = recorder.one("S3.ListBuckets")
    trace_id = format(span.context.trace_id, "032x")
    span_id = format(span.context.span_id, "016x")
    exemplars = [
        s.exemplar
        for m in instrumented.registry.collect()
        if m.name == "aws_sdk_call_duration_seconds"
        for s in m.samples
        if s.exemplar is not None and s.labels.get("operation") == "ListBuckets"
    ]
    assert len(exemplars) == 1
    assert exemplars[0].labels == {"trace_id": trace_id, "span_id": span_id}
    text = generate_latest(instrumented.registry).decode()  # type: ignore[no-untyped-call]
    assert f'trace_id="{trace_id}"' in text


def test_no_exemplar_without_a_sampled_span(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """An unsampled span (ALWAYS_OFF) leaves the histogram without exemplars."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    handle = evobs.instrument(session, tracer_provider=provider, registry=registry)
    try:
        s3(session, moto_url).list_buckets()
    finally:
        handle.uninstrument()
    samples = [
        s
        for m in registry.collect()
        if m.name == "aws_sdk_call_duration_seconds"
        for s in m.samples
    ]
    assert samples and all(s.exemplar is None for s in samples)
    assert (
        value(
            registry,
            "aws_sdk_call_duration_seconds_count",
            service="S3",
            operation="ListBuckets",
            region="us-east-1",
            outcome="ok",
        )
        == 1
    )


# -- registry sharing, conflicts, hot path ------------------------------------------------


def test_two_instrumentations_share_one_registry(
    moto_url: str, registry: CollectorRegistry
) -> None:
    """Two sessions into one registry share families: their calls add up."""
    sessions = [boto3.Session(region_name="us-east-1") for _ in range(2)]
    handles = [evobs.instrument(s, registry=registry, signals=("metrics",)) for s in sessions]
    try:
        for s in sessions:
            s3(s, moto_url).list_buckets()
    finally:
        for h in handles:
            h.uninstrument()
    assert (
        value(registry, "aws_sdk_call_attempts_total", service="S3", operation="ListBuckets") == 2
    )
    assert value(registry, "aws_sdk_clients_created_total", service="S3") == 2


def test_conflicting_family_fails_at_instrument_time(session: boto3.Session) -> None:
    """A registry already holding an aws_sdk_* family evobs did not create, or holding
    evobs's histograms with other buckets, is refused at instrument() with a clear error."""
    registry = CollectorRegistry()
    Counter("aws_sdk_call_attempts", "someone else's", ["service"], registry=registry)
    with pytest.raises(MetricConflictError, match="aws_sdk_call_attempts"):
        evobs.instrument(session, registry=registry, signals=("metrics",))

    other = CollectorRegistry()
    first = evobs.instrument(session, registry=other, signals=("metrics",))
    first.uninstrument()
    with pytest.raises(MetricConflictError, match="buckets"):
        evobs.instrument(
            boto3.Session(), registry=other, signals=("metrics",), duration_buckets=(0.1, 1.0)
        )


def test_custom_duration_buckets(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """duration_buckets sets the latency histograms' buckets; serialization and signing
    keep the sub-millisecond LOCAL_BUCKETS."""
    handle = evobs.instrument(
        session, registry=registry, signals=("metrics",), duration_buckets=(0.5, 2.0)
    )
    try:
        s3(session, moto_url).list_buckets()
    finally:
        handle.uninstrument()
    les = {
        s.labels["le"]
        for m in registry.collect()
        if m.name == "aws_sdk_call_duration_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    assert les == {"0.5", "2.0", "+Inf"}
    signing_les = {
        s.labels["le"]
        for m in registry.collect()
        if m.name == "aws_sdk_call_signing_duration_seconds"
        for s in m.samples
        if s.name.endswith("_bucket")
    }
    assert len(signing_les) == len(LOCAL_BUCKETS) + 1


def test_hot_path_resolves_no_labels_after_warm_up(
    session: boto3.Session,
    moto_url: str,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the first call, every family's ``.labels()`` raising changes nothing: the
    second identical call is recorded from cached children only."""
    handle = evobs.instrument(session, registry=registry, signals=("metrics",))
    try:
        client = s3(session, moto_url)
        client.list_buckets()

        def refuse(*_: Any, **__: Any) -> Any:
            raise AssertionError("labels() on the hot path")

        for cls in (Counter, Histogram, Gauge):
            monkeypatch.setattr(cls, "labels", refuse)
        client.list_buckets()
        monkeypatch.undo()
    finally:
        handle.uninstrument()
    op = {"service": "S3", "operation": "ListBuckets"}
    assert value(registry, "aws_sdk_call_attempts_total", **op) == 2
    assert (
        value(
            registry, "aws_sdk_call_duration_seconds_count", **op, region="us-east-1", outcome="ok"
        )
        == 2
    )
    assert not [
        s for m in registry.collect() if m.name == "evobs_handler_errors" for s in m.samples
    ]


def test_nothing_recorded_after_uninstrument(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """uninstrument() stops the metrics of clients created before it, too."""
    handle = evobs.instrument(session, registry=registry, signals=("metrics",))
    client = s3(session, moto_url)
    client.list_buckets()
    handle.uninstrument()
    client.list_buckets()
    assert (
        value(registry, "aws_sdk_call_attempts_total", service="S3", operation="ListBuckets") == 1
    )


# -- the endpoint --------------------------------------------------------------------------


def test_metrics_server_serves_the_registry_and_shuts_down(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """start_metrics_server(port=0) serves the registry over HTTP; shutdown frees the port."""
    s3(session, moto_url).list_buckets()
    server = evobs.start_metrics_server(port=0, addr="127.0.0.1", registry=instrumented.registry)
    try:
        assert server.port > 0
        with urllib.request.urlopen(server.url, timeout=5) as response:
            body = response.read().decode()
        assert 'aws_sdk_call_attempts_total{operation="ListBuckets",service="S3"} 1.0' in body
    finally:
        server.shutdown()
    server.shutdown()  # idempotent
    # The port is free again: a new server binds it.
    again = start_metrics_server(port=server.port, addr="127.0.0.1", registry=CollectorRegistry())
    again.close()
    assert again.port == server.port


def test_metrics_server_port_in_use_names_the_port() -> None:
    """A taken port raises MetricsServerError (an OSError) whose message names the port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(MetricsServerError, match=f"port {port} is already in use") as info:
            start_metrics_server(port=port, addr="127.0.0.1", registry=CollectorRegistry())
    assert isinstance(info.value, OSError)
    assert evobs.start_metrics_server is start_metrics_server
