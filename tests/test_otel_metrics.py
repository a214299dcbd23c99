"""The OpenTelemetry metrics signal over real HTTP: moto as the endpoint, the fault server
for retries, throttling, resets and errors, the SDK's in-memory reader, and the real
OTLP/HTTP metrics exporter to the local receiver.

The central check: after the same real workload, the Prometheus signal and this one
agree on every count (calls by outcome, errors by type, attempts, retries by reason,
every histogram's count) and on every sum.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from opentelemetry.metrics import Meter as ApiMeter
from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import evobs
from evobs._configure import resolve_otlp_endpoint
from evobs._options import DEFAULT_DURATION_BUCKETS
from evobs._registry import MetricConflictError
from evobs.demo.faults import Fault, FaultServer
from evobs.signals import otel_metrics
from evobs.signals.metrics import ERROR_TYPE_CAP, LOCAL_BUCKETS
from evobs.signals.otel_metrics import INSTRUMENTS, OtelMetricsSignal

from .conftest import SpanRecorder, fast_config
from .faults_util import BOTOCORE_RETRIES_BARE_429, zero_backoff
from .otlp_receiver import OTLPReceiver, otlp_receiver

#: Prometheus family -> OpenTelemetry instrument: the same measurements (docs/metrics.md).
PAIRS = {
    "aws_sdk_call_duration_seconds": "client.call.duration",
    "aws_sdk_call_errors": "client.call.errors",
    "aws_sdk_call_attempts": "client.call.attempts",
    "aws_sdk_retries": "client.call.retries",
    "aws_sdk_call_attempt_duration_seconds": "client.call.attempt_duration",
    "aws_sdk_retry_backoff_seconds": "client.call.retry_backoff",
    "aws_sdk_call_serialization_duration_seconds": "client.call.serialization_duration",
    "aws_sdk_call_signing_duration_seconds": "client.call.auth.signing_duration",
    "aws_sdk_calls_in_flight": "client.call.in_flight",
    "aws_sdk_clients_created": "client.created",
    "aws_sdk_client_creation_duration_seconds": "client.creation_duration",
    "aws_sdk_resources_created": "client.resources_created",
}
#: Prometheus label -> OpenTelemetry attribute.
LABELS = {
    "service": "rpc.service",
    "operation": "rpc.method",
    "region": "cloud.region",
    "outcome": "aws.sdk.outcome",
    "error_type": "exception.type",
    "reason": "aws.sdk.retry.reason",
    "resource": "aws.sdk.resource",
}

Key = frozenset[tuple[str, str]]

#: Whether this opentelemetry-api takes histogram bucket advice (1.30 and newer).
ADVISORY = (
    "explicit_bucket_boundaries_advisory" in inspect.signature(ApiMeter.create_histogram).parameters
)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries cost no sleep (DESIGN 6): botocore's jitter returns 0."""
    zero_backoff(monkeypatch)


@pytest.fixture
def faults(moto_url: str) -> Iterator[FaultServer]:
    with FaultServer(upstream=moto_url) as server:
        yield server


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


# -- reading both sides --------------------------------------------------------------------


def otel_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Every data point evobs's meter produced, by instrument name: (attributes, point)."""
    out: dict[str, list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != otel_metrics.METER_NAME:
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    out[metric.name].append((dict(point.attributes or {}), point))
    return out


def otel_metric(reader: InMemoryMetricReader, name: str) -> Any:
    """The SDK's Metric object (unit, description, data) of one instrument."""
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    return metric
    raise AssertionError(f"no {name} in the reader")


def prometheus_side(registry: CollectorRegistry) -> dict[str, dict[Key, tuple[float, float]]]:
    """Per paired family, per label set: (count or value, sum) as the registry exposes them."""
    out: dict[str, dict[Key, tuple[float, float]]] = {}
    for family in registry.collect():
        if family.name not in PAIRS:
            continue
        series: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for sample in family.samples:
            key = frozenset(sample.labels.items())
            if sample.name.endswith(("_count", "_total")) or family.type == "gauge":
                series[key][0] = sample.value
            elif sample.name.endswith("_sum"):
                series[key][1] = sample.value
        # A histogram child made ahead of its first observation (per service, at the first
        # call) has no OpenTelemetry counterpart: the SDK exports points only once recorded.
        out[family.name] = {
            k: (v[0], v[1])
            for k, v in series.items()
            if not (family.type == "histogram" and v[0] == 0)
        }
    return out


def otel_side(
    reader: InMemoryMetricReader, labelnames: dict[str, tuple[str, ...]]
) -> dict[str, dict[Key, tuple[float, float]]]:
    """The OpenTelemetry points folded onto the paired family's labels (a family by
    service sums the instrument's points over ``rpc.method``)."""
    points = otel_points(reader)
    out: dict[str, dict[Key, tuple[float, float]]] = {}
    for family, instrument in PAIRS.items():
        series: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for attributes, point in points.get(instrument, []):
            key = frozenset(
                (label, attributes.get(LABELS[label], "unknown"))
                for label in labelnames.get(family, ())
            )
            count = point.count if hasattr(point, "count") else point.value
            series[key][0] += count
            series[key][1] += getattr(point, "sum", 0.0)
        out[family] = {k: (v[0], v[1]) for k, v in series.items()}
    return out


def assert_sides_agree(registry: CollectorRegistry, reader: InMemoryMetricReader) -> None:
    prom = prometheus_side(registry)
    labelnames = {
        family: tuple(label for label, _ in next(iter(series))) if series else ()
        for family, series in prom.items()
    }
    otel = otel_side(reader, labelnames)
    assert set(prom) == set(PAIRS), set(PAIRS) - set(prom)
    for family in PAIRS:
        assert set(otel[family]) == set(prom[family]), family
        for key, (count, total) in prom[family].items():
            other_count, other_total = otel[family][key]
            assert other_count == count, (family, dict(key), count, other_count)
            assert other_total == pytest.approx(total, rel=1e-9, abs=1e-12), (family, dict(key))


# -- the workload both signals see ------------------------------------------------------


def faulty_workload(session: boto3.Session, faults: FaultServer) -> None:
    """Successes, retried successes (throttled, 503, reset, 429), exhausted retries (throttled,
    500), 4xx errors, client and resource creation: every family gets observations."""
    ddb = session.client("dynamodb", endpoint_url=faults.url, config=fast_config())
    s3 = session.client("s3", endpoint_url=faults.url, config=fast_config())
    sqs = session.client("sqs", endpoint_url=faults.url, config=fast_config())
    bucket = f"om-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
    faults.script([Fault.throttle(), Fault.status(503)])
    ddb.list_tables()
    faults.script([Fault.throttle(), Fault.throttle(), Fault.throttle()])
    with pytest.raises(ClientError):
        ddb.list_tables()
    faults.script([Fault.reset()])
    ddb.list_tables()
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="missing")
    faults.script([Fault.status(500, "InternalError")] * 3)
    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="k-500", Body=b"x")
    faults.script([Fault.too_many_requests()])
    if BOTOCORE_RETRIES_BARE_429:
        sqs.list_queues()
    else:  # older botocore gives a bare 429 to the caller: one error, no retry
        with pytest.raises(ClientError):
            sqs.list_queues()
    session.resource("s3", endpoint_url=faults.url).Bucket(bucket)


def test_prometheus_and_otel_agree_after_a_faulty_workload(
    session: boto3.Session,
    faults: FaultServer,
    registry: CollectorRegistry,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """Both metrics signals, after the same real workload through the fault server, agree
    on every series: calls by outcome, errors by type, attempts, retries by reason, every
    histogram's count and sum, in-flight back to 0, client and resource creation. The
    attempts are the requests that reached the wire."""
    handle = evobs.instrument(
        session, registry=registry, meter_provider=provider, signals=("metrics", "otel_metrics")
    )
    try:
        faults.reset()
        faulty_workload(session, faults)
    finally:
        handle.uninstrument()
    assert_sides_agree(registry, reader)

    points = otel_points(reader)
    assert sum(p.value for _, p in points["client.call.attempts"]) == len(faults.requests)
    retries = {
        (a["rpc.method"], a["aws.sdk.retry.reason"]): p.value
        for a, p in points["client.call.retries"]
    }
    assert retries[("ListTables", "throttled")] == 3  # one retried success, one exhausted call
    assert retries[("ListTables", "server_error")] == 1
    assert retries[("ListTables", "connection_error")] == 1
    assert retries[("PutObject", "server_error")] == 2
    assert retries.get(("ListQueues", "throttled"), 0) == int(BOTOCORE_RETRIES_BARE_429)
    errors = {(a["rpc.method"], a["exception.type"]) for a, _ in points["client.call.errors"]}
    assert errors == {
        ("ListTables", "ThrottlingException"),
        ("GetObject", "NoSuchKey"),
        ("HeadObject", "404"),
        ("PutObject", "InternalError"),
    } | (set() if BOTOCORE_RETRIES_BARE_429 else {("ListQueues", "429")})
    assert all(p.value == 0 for _, p in points["client.call.in_flight"])


def test_instruments_units_descriptions_and_attributes(
    session: boto3.Session,
    faults: FaultServer,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """Every instrument the workload fills has the documented kind, unit, description and
    exactly its documented attribute keys; the scope is ``evobs`` with evobs's version."""
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    try:
        faulty_workload(session, faults)
    finally:
        handle.uninstrument()
    points = otel_points(reader)
    assert set(points) == set(INSTRUMENTS)
    sdk_kind = {"histogram": "Histogram", "counter": "Sum", "observable updowncounter": "Sum"}
    for name, (kind, unit, description, attributes) in INSTRUMENTS.items():
        metric = otel_metric(reader, name)
        assert (metric.unit, metric.description) == (unit, description), name
        assert type(metric.data).__name__ == sdk_kind[kind], name
        if kind != "histogram":
            assert metric.data.is_monotonic is (kind == "counter"), name
        for attrs, _ in points[name]:
            required = set(attributes) - {"cloud.region"}
            assert required <= set(attrs) <= set(attributes), (name, attrs)
    data = reader.get_metrics_data()
    assert data is not None
    scopes = {
        (s.scope.name, s.scope.version) for r in data.resource_metrics for s in r.scope_metrics
    }
    assert scopes == {("evobs", evobs.__version__)}


def test_histograms_advise_evobs_s_buckets(
    session: boto3.Session,
    moto_url: str,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """Latency histograms advise the ``duration_buckets`` option's boundaries (seconds, not
    the SDK's millisecond-sized defaults), serialization and signing the sub-millisecond
    LOCAL_BUCKETS, as the Prometheus families do."""
    if not ADVISORY:
        pytest.skip("this opentelemetry-api takes no bucket advice (added in 1.30)")
    buckets = (0.005, 0.05, 0.5, 5.0)
    handle = evobs.instrument(
        session, meter_provider=provider, signals=("otel_metrics",), duration_buckets=buckets
    )
    try:
        session.client("s3", endpoint_url=moto_url, config=fast_config()).list_buckets()
    finally:
        handle.uninstrument()
    points = otel_points(reader)
    for name in (
        "client.call.duration",
        "client.call.attempt_duration",
        "client.creation_duration",
    ):
        assert tuple(points[name][0][1].explicit_bounds) == buckets, name
    for name in ("client.call.serialization_duration", "client.call.auth.signing_duration"):
        assert tuple(points[name][0][1].explicit_bounds) == LOCAL_BUCKETS, name


def test_expected_errors_are_still_counted(
    session: boto3.Session,
    moto_url: str,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """An expected error (HeadObject 404) changes span status and log level, never the
    metrics: it is an error of type ``404`` and a ``client_error`` call."""
    handle = evobs.instrument(
        session,
        meter_provider=provider,
        signals=("otel_metrics",),
        expected_errors={"S3.HeadObject": {"404"}},
    )
    try:
        client = session.client("s3", endpoint_url=moto_url, config=fast_config())
        bucket = f"om-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        with pytest.raises(ClientError):
            client.head_object(Bucket=bucket, Key="missing")
    finally:
        handle.uninstrument()
    points = otel_points(reader)
    (errors,) = [(a, p) for a, p in points["client.call.errors"] if a["rpc.method"] == "HeadObject"]
    assert errors[0]["exception.type"] == "404" and errors[1].value == 1
    (duration,) = [a for a, _ in points["client.call.duration"] if a["rpc.method"] == "HeadObject"]
    assert duration["aws.sdk.outcome"] == "client_error"
    assert duration["cloud.region"] == "us-east-1"


def test_exception_type_cardinality_is_capped(
    session: boto3.Session,
    faults: FaultServer,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """Past ERROR_TYPE_CAP distinct codes per operation (the Prometheus cap), codes from
    the wire count as ``other``; admitted ones keep counting under their own name."""
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
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
    counts = {a["exception.type"]: p.value for a, p in otel_points(reader)["client.call.errors"]}
    assert len(counts) == ERROR_TYPE_CAP + 1
    assert counts["other"] == extra
    assert counts["WeirdCode0"] == 2
    assert f"WeirdCode{ERROR_TYPE_CAP}" not in counts


def test_in_flight_restored_when_the_call_is_interrupted(
    session: boto3.Session,
    moto_url: str,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """A KeyboardInterrupt mid-call (no after-call event): the safety net ends the call,
    in-flight is back to 0 and the call counts as an ``error`` of that type."""
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    try:
        client = session.client("s3", endpoint_url=moto_url, config=fast_config())

        def interrupt(**_: Any) -> None:
            raise KeyboardInterrupt

        client.meta.events.register("before-send.s3.ListBuckets", interrupt)
        with pytest.raises(KeyboardInterrupt):
            client.list_buckets()
    finally:
        handle.uninstrument()
    points = otel_points(reader)
    assert [p.value for _, p in points["client.call.in_flight"]] == [0]
    (outcome,) = [a["aws.sdk.outcome"] for a, _ in points["client.call.duration"]]
    assert outcome == "error"
    assert [a["exception.type"] for a, _ in points["client.call.errors"]] == ["KeyboardInterrupt"]


def test_in_flight_counts_the_call_while_it_runs(
    session: boto3.Session,
    moto_url: str,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """A collection mid-call (a user before-send handler) reads 1 in flight; after the
    call, 0: counted when the provider collects, as the Prometheus gauge is when scraped."""
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    seen: list[list[tuple[str, float]]] = []
    try:
        client = session.client("s3", endpoint_url=moto_url, config=fast_config())

        def peek(**_: Any) -> None:
            points = otel_points(reader)["client.call.in_flight"]
            seen.append([(a["rpc.method"], p.value) for a, p in points])

        client.meta.events.register("before-send.s3.ListBuckets", peek)
        client.list_buckets()
    finally:
        handle.uninstrument()
    assert seen == [[("ListBuckets", 1)]]
    points = otel_points(reader)["client.call.in_flight"]
    assert [(a, p.value) for a, p in points] == [
        ({"rpc.service": "S3", "rpc.method": "ListBuckets"}, 0)
    ]


class _Unreferenceable:
    """A meter provider that cannot be weakly referenced (``__slots__`` without
    ``__weakref__``), delegating to an SDK provider."""

    __slots__ = ("_inner",)

    def __init__(self, inner: MeterProvider) -> None:
        self._inner = inner

    def get_meter(self, *args: Any, **kwargs: Any) -> ApiMeter:
        return self._inner.get_meter(*args, **kwargs)


def test_a_provider_without_weak_references_shares_its_instruments(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Two signals on a provider that cannot be weakly referenced share one set of
    instruments, so one in-flight callback counts the calls of both."""
    import botocore.session

    from evobs._call import Call
    from evobs._operation import Operation
    from evobs._options import Options

    model = botocore.session.get_session().get_service_model("s3")
    op = Operation(model.operation_model("ListBuckets"))
    wrapper = _Unreferenceable(provider)
    first = OtelMetricsSignal(wrapper, Options())  # type: ignore[arg-type]
    second = OtelMetricsSignal(wrapper, Options())  # type: ignore[arg-type]
    try:
        assert first._instruments is second._instruments
        calls = [Call(op, "us-east-1", 0), Call(op, "us-east-1", 0)]
        first.call_started(calls[0])
        second.call_started(calls[1])
        assert [p.value for _, p in otel_points(reader)["client.call.in_flight"]] == [2]
        second.call_ended(calls[1])
        assert [p.value for _, p in otel_points(reader)["client.call.in_flight"]] == [1]
    finally:
        otel_metrics._HELD.pop(id(wrapper), None)


def test_duration_exemplar_is_the_call_span(
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    """With traces on, the SDK's exemplar on the call's duration point is the call span
    (the signal records while that span is still current)."""
    from opentelemetry.sdk.metrics.export import HistogramDataPoint

    if "exemplars" not in getattr(HistogramDataPoint, "__dataclass_fields__", {}):
        pytest.skip("this opentelemetry-sdk has no exemplars (added in 1.27)")
    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        meter_provider=provider,
        signals=("traces", "otel_metrics"),
    )
    try:
        session.client("s3", endpoint_url=moto_url, config=fast_config()).list_buckets()
    finally:
        handle.uninstrument()
    span = recorder.one("S3.ListBuckets")
    ((_, point),) = otel_points(reader)["client.call.duration"]
    assert [(e.trace_id, e.span_id) for e in point.exemplars] == [
        (span.context.trace_id, span.context.span_id)
    ]


# -- hot path, sharing, conflicts ------------------------------------------------------------


def test_hot_path_builds_no_attribute_dict_after_warm_up(
    session: boto3.Session,
    faults: FaultServer,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a retried call and a failed call, the same two calls again are recorded from
    cached attribute dicts only (every builder raising changes nothing)."""
    handle = evobs.instrument(
        session, meter_provider=provider, registry=registry, signals=("otel_metrics",)
    )
    try:
        client = session.client("dynamodb", endpoint_url=faults.url, config=fast_config())

        def calls() -> None:
            faults.script([Fault.status(503)])
            client.list_tables()
            faults.script([Fault.error(400, "ValidationException")])
            with pytest.raises(ClientError):
                client.list_tables()

        calls()

        def refuse(*_: Any, **__: Any) -> Any:
            raise AssertionError("an attribute dict built on the hot path")

        for builder in ("_op", "_duration_attributes", "_retry_attributes", "_error_attributes"):
            monkeypatch.setattr(OtelMetricsSignal, builder, refuse)
        calls()
        monkeypatch.undo()
    finally:
        handle.uninstrument()
    points = otel_points(reader)
    assert sum(p.value for _, p in points["client.call.attempts"]) == 6
    assert sum(p.value for _, p in points["client.call.errors"]) == 2
    assert sum(p.value for _, p in points["client.call.retries"]) == 2
    assert registry.get_sample_value("evobs_handler_errors_total", {"event": "call_ended"}) is None


def test_two_instrumentations_share_one_provider(
    moto_url: str, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Two sessions on one provider share the instruments: their calls add up in one
    series; another duration_buckets on that provider is refused at instrument() time."""
    sessions = [boto3.Session(region_name="us-east-1") for _ in range(2)]
    handles = [
        evobs.instrument(s, meter_provider=provider, signals=("otel_metrics",)) for s in sessions
    ]
    try:
        for s in sessions:
            s.client("s3", endpoint_url=moto_url, config=fast_config()).list_buckets()
    finally:
        for h in handles:
            h.uninstrument()
    ((_, attempts),) = otel_points(reader)["client.call.attempts"]
    assert attempts.value == 2
    with pytest.raises(MetricConflictError, match="duration_buckets"):
        evobs.instrument(
            boto3.Session(),
            meter_provider=provider,
            signals=("otel_metrics",),
            duration_buckets=(0.1, 1.0),
        )


def test_a_dropped_provider_is_not_kept_alive() -> None:
    """The per-provider instruments do not keep a provider alive: once nothing else holds
    it, it is collected and its entry leaves the shared table (bounded when providers come
    and go)."""
    import gc
    import weakref

    from evobs._options import Options

    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    signal = OtelMetricsSignal(meter_provider, Options())
    alive = weakref.ref(meter_provider)
    assert meter_provider in otel_metrics._SHARED
    entries = len(otel_metrics._SHARED)
    del meter_provider, signal
    gc.collect()
    assert alive() is None
    assert len(otel_metrics._SHARED) <= entries - 1  # its entry went with it


def test_nothing_recorded_after_uninstrument(
    session: boto3.Session, moto_url: str, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """uninstrument() stops the signal for clients created before it, too."""
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    client = session.client("s3", endpoint_url=moto_url, config=fast_config())
    client.list_buckets()
    handle.uninstrument()
    client.list_buckets()
    ((_, attempts),) = otel_points(reader)["client.call.attempts"]
    assert attempts.value == 1


# -- selection and validation -------------------------------------------------------------


def test_meter_provider_is_validated_and_part_of_the_identity(
    session: boto3.Session, provider: MeterProvider
) -> None:
    """meter_provider must be an OpenTelemetry MeterProvider; instrumenting again with the
    same one returns the handle, with another one is refused."""
    with pytest.raises(TypeError, match="meter_provider must be an opentelemetry MeterProvider"):
        evobs.instrument(session, meter_provider=object())  # type: ignore[arg-type]
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    try:
        assert handle.meter_provider is provider
        assert (
            evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",)) is handle
        )
        with pytest.raises(ValueError, match="already instrumented"):
            evobs.instrument(session, meter_provider=MeterProvider(), signals=("otel_metrics",))
    finally:
        handle.uninstrument()


def test_signal_names(
    session: boto3.Session, provider: MeterProvider, registry: CollectorRegistry
) -> None:
    """``otel_metrics`` is accepted alone or next to ``metrics``; it is not on by default;
    an unknown name's error lists it."""
    alone = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    try:
        assert [type(s).__name__ for s in alone.signals] == ["OtelMetricsSignal"]
    finally:
        alone.uninstrument()
    default = evobs.instrument(boto3.Session(), meter_provider=provider, registry=registry)
    try:
        assert "OtelMetricsSignal" not in [type(s).__name__ for s in default.signals]
    finally:
        default.uninstrument()
    with pytest.raises(ValueError, match="'otel_metrics'"):
        evobs.instrument(boto3.Session(), signals=("prometheus",))


def test_otel_metrics_come_before_traces(session: boto3.Session, provider: MeterProvider) -> None:
    """The signal is delivered each transition before traces, so its call_ended runs while
    the call span is current (the SDK's exemplars then point at it)."""
    handle = evobs.instrument(
        session, meter_provider=provider, signals=("logs", "traces", "metrics", "otel_metrics")
    )
    try:
        names = [type(s).__name__ for s in handle.signals]
    finally:
        handle.uninstrument()
    assert names.index("OtelMetricsSignal") < names.index("TracesSignal")


def test_sdk_disabled_builds_no_signal(
    session: boto3.Session, provider: MeterProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_SDK_DISABLED=true: the signal is not built (no cost), Prometheus still is."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handle = evobs.instrument(session, meter_provider=provider, signals=("metrics", "otel_metrics"))
    try:
        assert [type(s).__name__ for s in handle.signals] == ["MetricsSignal"]
    finally:
        handle.uninstrument()


class _BrokenProvider(ApiMeterProvider):
    """A provider that cannot even give a meter."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no meter today")


class _RaisingProvider(ApiMeterProvider):
    """A provider whose instruments raise on every measurement."""

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        class Instrument:
            def add(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("cannot add")

            record = add

        class Meter:
            def __getattr__(self, name: str) -> Any:
                return lambda *args, **kwargs: Instrument()

        return Meter()


def test_a_broken_meter_provider_costs_only_this_signal(
    moto_url: str, registry: CollectorRegistry
) -> None:
    """A provider that raises when asked for a meter, or whose instruments raise: the calls
    succeed, Prometheus still counts them, and the failures are counted as evobs's own."""
    for broken, event in ((_BrokenProvider(), "instrument"), (_RaisingProvider(), "call_ended")):
        session = boto3.Session(region_name="us-east-1")
        handle = evobs.instrument(
            session, meter_provider=broken, registry=registry, signals=("metrics", "otel_metrics")
        )
        try:
            buckets = session.client(
                "s3", endpoint_url=moto_url, config=fast_config()
            ).list_buckets()
        finally:
            handle.uninstrument()
        assert "Buckets" in buckets
        assert (registry.get_sample_value("evobs_handler_errors_total", {"event": event}) or 0) >= 1
    assert (
        registry.get_sample_value(
            "aws_sdk_call_attempts_total", {"service": "S3", "operation": "ListBuckets"}
        )
        == 2
    )


def test_noop_provider_records_nothing_and_breaks_nothing(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry
) -> None:
    """The API's no-op provider (OpenTelemetry installed, no SDK configured): calls work,
    no evobs error is counted."""
    handle = evobs.instrument(
        session, meter_provider=NoOpMeterProvider(), registry=registry, signals=("otel_metrics",)
    )
    try:
        session.client("s3", endpoint_url=moto_url, config=fast_config()).list_buckets()
    finally:
        handle.uninstrument()
    assert not [
        s for m in registry.collect() if m.name == "evobs_handler_errors" for s in m.samples
    ]


def test_the_signal_is_loaded_only_when_enabled() -> None:
    """Instrumenting without ``otel_metrics`` never loads the signal's module, and with the
    Prometheus and log signals alone not even the OpenTelemetry metrics API (the SDK's
    tracer loads it for its own use once traces are on): cold starts pay for what is on."""
    script = textwrap.dedent(
        """
        import sys, boto3, evobs
        evobs.instrument(boto3.Session(region_name="us-east-1"), signals=("metrics", "logs"))
        print(sorted(m for m in ("opentelemetry.metrics", "evobs.signals.otel_metrics")
                     if m in sys.modules))
        evobs.instrument(boto3.Session(region_name="us-east-1"))
        print("evobs.signals.otel_metrics" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "False"]


def test_global_provider_set_after_instrument_receives_the_metrics() -> None:
    """With no meter_provider, the signal uses the global one, through the API's proxy when
    the application sets it later (checked in a fresh interpreter: it is set once)."""
    script = textwrap.dedent(
        """
        import io, boto3, evobs
        from botocore.awsrequest import AWSResponse
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        class Raw(io.BytesIO):
            def stream(self, **kwargs):
                yield self.getvalue()

        def answer(request, **kwargs):
            return AWSResponse(request.url, 200, {"x-amzn-RequestId": "r"}, Raw(b"{}"))

        session = boto3.Session(
            aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        evobs.instrument(session, signals=("otel_metrics",))
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        client = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")
        client.meta.events.register("before-send.dynamodb.ListTables", answer)
        client.list_tables()
        client.list_tables()
        found = {
            m.name: [p for p in m.data.data_points]
            for r in reader.get_metrics_data().resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        }
        (attempts,) = found["client.call.attempts"]
        assert attempts.value == 2, attempts
        assert dict(attempts.attributes)["rpc.method"] == "ListTables"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- OTLP ---------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as server:
        yield server


def test_real_otlp_exporter_delivers_the_metrics(
    session: boto3.Session, faults: FaultServer, receiver: OTLPReceiver
) -> None:
    """The SDK's PeriodicExportingMetricReader with the real OTLP/HTTP metrics exporter
    sends ExportMetricsServiceRequest protobuf; the receiver decodes the standard names,
    units and attributes, and the resource."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(endpoint=receiver.metrics_url)
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)],
        resource=Resource.create({"service.name": "orders-api"}),
    )
    handle = evobs.instrument(session, meter_provider=provider, signals=("otel_metrics",))
    try:
        client = session.client("dynamodb", endpoint_url=faults.url, config=fast_config())
        faults.script([Fault.throttle()])
        client.list_tables()
        faults.script([Fault.error(400, "ValidationException")])
        with pytest.raises(ClientError):
            client.list_tables()
    finally:
        handle.uninstrument()
        provider.shutdown()  # the last collection is exported
    assert receiver.metrics_requests >= 1
    names = {p.metric for p in receiver.received_points()}
    assert {
        "client.call.duration",
        "client.call.attempts",
        "client.call.errors",
        "client.call.attempt_duration",
        "client.call.serialization_duration",
        "client.call.auth.signing_duration",
        "client.call.retries",
        "client.call.retry_backoff",
        "client.call.in_flight",
        "client.created",
    } <= names
    (attempts,) = receiver.received_points("client.call.attempts")
    assert attempts.kind == "sum" and attempts.is_monotonic and attempts.value == 3
    assert attempts.unit == "{attempt}"
    assert attempts.attributes == {
        "rpc.service": "DynamoDB",
        "rpc.method": "ListTables",
    }
    assert attempts.resource["service.name"] == "orders-api"
    assert (attempts.scope, attempts.scope_version) == ("evobs", evobs.__version__)
    (error,) = receiver.received_points("client.call.errors")
    assert error.attributes["exception.type"] == "ValidationException" and error.value == 1
    durations = {
        p.attributes["aws.sdk.outcome"]: p for p in receiver.received_points("client.call.duration")
    }
    assert set(durations) == {"ok", "client_error"}
    assert durations["ok"].unit == "s" and durations["ok"].count == 1
    if ADVISORY:
        assert tuple(durations["ok"].explicit_bounds) == DEFAULT_DURATION_BUCKETS
    (retry,) = receiver.received_points("client.call.retries")
    assert retry.attributes["aws.sdk.retry.reason"] == "throttled" and retry.value == 1


def test_configure_exports_metrics_and_traces_to_one_collector(
    session: boto3.Session,
    moto_url: str,
    receiver: OTLPReceiver,
    registry: CollectorRegistry,
) -> None:
    """configure(otel_metrics="otlp") builds a MeterProvider exporting to the same collector
    as the spans (``/v1/metrics`` next to ``/v1/traces``); the handle's instrumentations
    record the signal; shutdown() exports the last collection and uninstruments."""
    telemetry = evobs.configure(
        "orders-api",
        traces="otlp",
        otel_metrics="otlp",
        otlp_endpoint=receiver.base_url,
        metrics_port=None,
        logs=None,
        registry=registry,
        set_global=False,
        instrument=session,
    )
    try:
        assert telemetry.otlp_metrics_endpoint == receiver.metrics_url
        assert telemetry.meter_provider is not None and not telemetry.meter_is_global
        session.client("s3", endpoint_url=moto_url, config=fast_config()).list_buckets()
    finally:
        assert telemetry.shutdown(timeout=10)
    (attempts,) = receiver.received_points("client.call.attempts")
    assert attempts.attributes["rpc.method"] == "ListBuckets" and attempts.value == 1
    assert attempts.resource["service.name"] == "orders-api"
    (span,) = receiver.named("S3.ListBuckets")
    assert span.attributes["rpc.method"] == "ListBuckets"
    # Prometheus is still recorded next to it (the default signals plus otel_metrics).
    assert (
        registry.get_sample_value(
            "aws_sdk_call_attempts_total", {"service": "S3", "operation": "ListBuckets"}
        )
        == 1
    )


def test_configure_metrics_endpoint_from_the_environment(
    session: boto3.Session,
    receiver: OTLPReceiver,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is used as is, and force_flush() exports now."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.metrics_url)
    telemetry = evobs.configure(
        traces=None,
        otel_metrics="otlp",
        metrics_port=None,
        logs=None,
        registry=registry,
        set_global=False,
    )
    try:
        assert telemetry.otlp_metrics_endpoint == receiver.metrics_url
        assert telemetry.meter_provider is not None
        telemetry.meter_provider.get_meter("probe").create_counter("probe.count").add(3)
        assert telemetry.force_flush(timeout=10)
        (point,) = receiver.wait_for_points("probe.count")
        assert point.value == 3
    finally:
        assert telemetry.shutdown(timeout=10)


def test_metrics_endpoint_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics URL: a base URL gets /v1/metrics; a traces URL ending in /v1/traces gives
    its sibling; any other traces path cannot tell (a clear error); without an argument,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT +
    /v1/metrics, else localhost. The traces URL is unchanged by all this."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_otlp_endpoint(signal="metrics") == "http://localhost:4318/v1/metrics"
    assert resolve_otlp_endpoint("http://c:4318/", "metrics") == "http://c:4318/v1/metrics"
    assert (
        resolve_otlp_endpoint("http://gw/otlp/v1/traces", "metrics") == "http://gw/otlp/v1/metrics"
    )
    assert resolve_otlp_endpoint("http://gw/otlp/v1/traces") == "http://gw/otlp/v1/traces"
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        resolve_otlp_endpoint("http://gw/custom", "metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert resolve_otlp_endpoint(signal="metrics") == "http://collector:4318/v1/metrics"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom")
    assert resolve_otlp_endpoint(signal="metrics") == "http://m:9/custom"
    assert resolve_otlp_endpoint() == "http://collector:4318/v1/traces"


def test_configure_validates_and_honours_sdk_disabled(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """otel_metrics takes "otlp", "console" or None; OTEL_SDK_DISABLED builds no provider."""
    with pytest.raises(ValueError, match="otel_metrics must be"):
        evobs.configure(otel_metrics="prometheus", traces=None, metrics_port=None, logs=None)  # type: ignore[arg-type]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = evobs.configure(
        otel_metrics="otlp", traces=None, metrics_port=None, logs=None, registry=registry
    )
    try:
        assert telemetry.meter_provider is None
    finally:
        telemetry.shutdown()


def test_configure_console_metrics(
    session: boto3.Session,
    moto_url: str,
    registry: CollectorRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """otel_metrics="console" prints the metrics as JSON on stdout at shutdown."""
    telemetry = evobs.configure(
        "console-metrics",
        traces=None,
        otel_metrics="console",
        metrics_port=None,
        logs=None,
        registry=registry,
        set_global=False,
        instrument=session,
    )
    session.client("s3", endpoint_url=moto_url, config=fast_config()).list_buckets()
    assert telemetry.shutdown(timeout=10)
    out = capsys.readouterr().out
    assert '"name": "client.call.duration"' in out
    assert '"rpc.method": "ListBuckets"' in out


def test_global_meter_provider_only_when_none_set() -> None:
    """configure(otel_metrics=...) makes its provider the global one when none is set, and
    a later evobs.instrument(signals=...) without meter_provider records into it; a second
    configure() does not replace it (fresh interpreter: the global is set once)."""
    script = textwrap.dedent(
        """
        import io, boto3, evobs
        from botocore.awsrequest import AWSResponse
        from opentelemetry import metrics

        first = evobs.configure("one", traces=None, otel_metrics="console", metrics_port=None,
                                logs=None)
        second = evobs.configure("two", traces=None, otel_metrics="console", metrics_port=None,
                                 logs=None)
        assert first.meter_is_global and not second.meter_is_global
        assert metrics.get_meter_provider() is first.meter_provider
        second.shutdown(); first.shutdown()
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ok"
    assert "Overriding of current MeterProvider" not in done.stderr


def test_placeholder_global_provider_read_names_the_api_attribute() -> None:
    """configure() tells "no global MeterProvider yet" by comparing with the API's
    ``opentelemetry.metrics._internal._PROXY_METER_PROVIDER`` (a private name: if it goes,
    set_meter_provider's own refusal still protects an existing provider)."""
    from opentelemetry import metrics
    from opentelemetry.metrics import _internal

    from evobs._compat.otel_api import no_global_meter_provider

    assert hasattr(_internal, "_PROXY_METER_PROVIDER")
    assert no_global_meter_provider() is (
        metrics.get_meter_provider() is _internal._PROXY_METER_PROVIDER
    )


# -- the micro benchmark ---------------------------------------------------------------------


def test_micro_benchmark_measures_every_variant() -> None:
    """``python -m tests.benchmarks.metrics_signals`` times every signal variant over both
    recorded calls (a tiny run here: only that it measures, never how fast)."""
    from tests.benchmarks import metrics_signals

    rows = metrics_signals.measure(number=20, repeat=1)
    assert {(label, call) for label, call, _ in rows} == {
        (label, call) for label, _ in metrics_signals.VARIANTS for call in metrics_signals.CALLS
    }
    assert all(micros > 0 for _, _, micros in rows)
    table = metrics_signals.render(rows)
    assert "otel_metrics, SDK MeterProvider" in table and "metrics (Prometheus)" in table
