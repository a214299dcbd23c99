"""Chaos: every signal fails on purpose, the application never notices.

A tracer whose spans raise, metrics that raise on observe, a log handler that
raises, a user signal that raises at every transition: the same workload against
moto's real server must return exactly what it returns uninstrumented, and each
failure must be counted in ``evobs_handler_errors_total{event}`` and logged once
per kind, not once per call.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import evobs
from evobs import _registry
from evobs.signals import _series

N_CALLS = 13  # calls made by ``_workload`` (one of them retried once)


class Boom(RuntimeError):
    """The exception every chaos component raises."""


# -- the workload ---------------------------------------------------------------------

# Volatile per run (ids, dates), and MD5OfMessageAttributes: with message propagation on,
# evobs adds a ``traceparent`` attribute to sends (a documented feature), changing that digest.
_VOLATILE = frozenset(
    {
        "ResponseMetadata",
        "LastModified",
        "Date",
        "CreationDate",
        "MessageId",
        "ReceiptHandle",
        "MD5OfMessageAttributes",
    }
)


def _normalize(value: Any, tag: str) -> Any:
    """A response without what differs run to run (request ids, dates, the run tag)."""
    if isinstance(value, dict):
        return {k: _normalize(v, tag) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_normalize(v, tag) for v in value]
    if isinstance(value, str):
        return value.replace(tag, "<tag>")
    if hasattr(value, "read"):
        return ("body", value.read())
    return value


def _workload(session: boto3.Session, moto_url: str) -> list[Any]:
    """S3, STS and SQS calls with successes, 4xx errors and a retried call; normalized."""
    tag = uuid.uuid4().hex[:12]
    bucket = f"chaos-{tag}"
    s3 = session.client(
        "s3",
        endpoint_url=moto_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )
    sts = session.client("sts", endpoint_url=moto_url)
    sqs = session.client("sqs", endpoint_url=moto_url)
    resource = session.resource("s3", endpoint_url=moto_url)
    first = {"done": False}

    def throttle_once(request: Any = None, **_: Any) -> AWSResponse | None:
        # A real botocore retry: the first ListObjectsV2 attempt answers 503.
        if first["done"] or "list-type=2" not in request.url:
            return None
        first["done"] = True
        return AWSResponse(request.url, 503, {}, _RawBody(b""))

    s3.meta.events.register("before-send.s3.ListObjectsV2", throttle_once)
    results: list[Any] = []

    def run(fn: Callable[[], Any]) -> None:
        try:
            results.append(("ok", _normalize(fn(), tag)))
        except ClientError as exc:
            results.append(("error", type(exc).__name__, _normalize(exc.response, tag), str(exc)))

    run(lambda: s3.create_bucket(Bucket=bucket))
    run(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"payload"))
    run(lambda: s3.get_object(Bucket=bucket, Key="k")["Body"].read())
    run(lambda: s3.head_object(Bucket=bucket, Key="missing"))
    run(lambda: s3.get_object(Bucket=bucket, Key="missing"))
    run(lambda: s3.list_objects_v2(Bucket=bucket))
    run(lambda: sts.get_caller_identity())
    run(lambda: [o.key for o in resource.Bucket(bucket).objects.all()])
    run(lambda: s3.delete_object(Bucket=bucket, Key="k"))
    # Messaging: evobs edits params here (trace context in, its additions out again).
    queue = sqs.create_queue(QueueName=f"chaos-{tag}")["QueueUrl"]
    run(lambda: sqs.send_message(QueueUrl=queue, MessageBody="hello"))
    received: dict[str, Any] = {}

    def receive() -> Any:
        received.update(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0))
        return received

    run(receive)
    run(
        lambda: sqs.delete_message(
            QueueUrl=queue, ReceiptHandle=received["Messages"][0]["ReceiptHandle"]
        )
    )
    assert first["done"], "the scripted 503 never fired"
    return results


class _RawBody:
    """The minimal raw stream botocore's AWSResponse reads a body from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        if self._data:
            yield self._data


@pytest.fixture(scope="module")
def baseline(moto_url: str) -> list[Any]:
    """The workload's results with evobs not installed at all."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return _workload(session, moto_url)


def _sum(registry: CollectorRegistry, name: str) -> float:
    """A sample summed over all its label sets."""
    return sum(s.value for m in registry.collect() for s in m.samples if s.name == name)


def _errors(registry: CollectorRegistry, event: str) -> float:
    value = registry.get_sample_value("evobs_handler_errors_total", {"event": event})
    return 0.0 if value is None else value


# -- log capture ----------------------------------------------------------------------


class _Capture(logging.Handler):
    """Records evobs's log records; optionally raises on the ``aws.*`` events."""

    def __init__(self, raise_on_events: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self.raise_on_events = raise_on_events
        self.records: list[logging.LogRecord] = []
        self.raised = 0

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg.get("event") if isinstance(record.msg, dict) else record.msg
        if self.raise_on_events and isinstance(event, str) and event.startswith("aws."):
            self.raised += 1
            raise Boom("log handler down")
        self.records.append(record)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            r.msg for r in self.records if isinstance(r.msg, dict) and r.msg.get("event") == name
        ]

    def internal_errors(self) -> list[dict[str, Any]]:
        return [
            r.msg
            for r in self.records
            if isinstance(r.msg, dict) and r.msg.get("event") == "evobs.internal_error"
        ]


@pytest.fixture
def capture() -> Iterator[_Capture]:
    logger = logging.getLogger("evobs")
    handler = _Capture()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _logged_once_per_kind(capture: _Capture) -> None:
    """Each (event, exception type) is logged once, however many calls hit it."""
    kinds = [(m.get("evobs_event"), m.get("error_type")) for m in capture.internal_errors()]
    assert kinds, "no evobs.internal_error was logged"
    assert len(kinds) == len(set(kinds)), f"logged more than once per kind: {kinds}"


# -- chaos components ------------------------------------------------------------------


class _RaisingSpan(trace.NonRecordingSpan):
    """A span that claims to record and raises from every mutator named in ``fail``."""

    def __init__(self, fail: frozenset[str]) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self._fail = fail

    def _maybe(self, what: str) -> None:
        if what in self._fail:
            raise Boom(f"span.{what}")

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        self._maybe("set_attribute")

    def set_attributes(self, attributes: Any) -> None:
        self._maybe("set_attribute")

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        self._maybe("set_attribute")

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        self._maybe("set_attribute")

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        self._maybe("set_attribute")

    def end(self, end_time: int | None = None) -> None:
        self._maybe("end")

    def get_span_context(self) -> trace.SpanContext:
        self._maybe("context")
        return trace.SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )


class _RaisingTracer(trace.Tracer):
    def __init__(self, fail: frozenset[str]) -> None:
        self._fail = fail
        self.started = 0

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        if "start" in self._fail:
            raise Boom("start_span")
        self.started += 1
        return _RaisingSpan(self._fail)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise Boom("start_as_current_span")


class _RaisingProvider(trace.TracerProvider):
    """A tracer provider whose spans raise on start, on set_attribute and/or on end."""

    def __init__(self, fail: frozenset[str]) -> None:
        self.tracer = _RaisingTracer(fail)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


class _RaisingSignal:
    """A user signal that raises at every transition."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def _boom(self, what: str) -> None:
        self.seen[what] = self.seen.get(what, 0) + 1
        raise Boom(what)

    def call_started(self, call: Any) -> None:
        self._boom("call_started")

    def attempt_started(self, call: Any, attempt: Any) -> None:
        self._boom("attempt_started")

    def attempt_ended(self, call: Any, attempt: Any) -> None:
        self._boom("attempt_ended")

    def call_ended(self, call: Any) -> None:
        self._boom("call_ended")

    def client_created(self, event: Any) -> None:
        self._boom("client_created")

    def resource_created(self, event: Any) -> None:
        self._boom("resource_created")


class _CountingSignal:
    """A well-behaved user signal: proves the other signals kept receiving transitions."""

    def __init__(self) -> None:
        self.ended: list[Any] = []

    def call_ended(self, call: Any) -> None:
        self.ended.append((call.name, call.outcome, len(call.attempts)))


# -- the tests ----------------------------------------------------------------------------


def test_baseline_is_meaningful(baseline: list[Any]) -> None:
    """The uninstrumented workload has successes, errors and a read body to compare."""
    kinds = [r[0] for r in baseline]
    assert len(baseline) == N_CALLS - 1  # CreateQueue's result is used, not compared
    assert kinds.count("error") == 2
    assert ("ok", b"payload") in baseline
    assert ("ok", ["k"]) in baseline
    messages = [
        r[1]["Messages"]
        for r in baseline
        if r[0] == "ok" and isinstance(r[1], dict) and "Messages" in r[1]
    ]
    assert messages and messages[0][0]["Body"] == "hello"
    assert "MessageAttributes" not in messages[0][0]


@pytest.mark.parametrize(
    "fail",
    [
        frozenset({"start"}),
        frozenset({"set_attribute"}),
        frozenset({"end"}),
        frozenset({"context"}),
    ],
    ids=["start", "set_attribute", "end", "get_span_context"],
)
def test_raising_tracer(
    fail: frozenset[str],
    baseline: list[Any],
    session: boto3.Session,
    registry: CollectorRegistry,
    moto_url: str,
    capture: _Capture,
) -> None:
    """Spans that raise on start / set_attribute / end / get_span_context cost only the
    traces signal: metrics and logs still record every call."""
    provider = _RaisingProvider(fail)
    counting = _CountingSignal()
    handle = evobs.instrument(
        session,
        tracer_provider=provider,
        registry=registry,
        signals=("traces", "metrics", "logs", counting),
    )
    try:
        assert _workload(session, moto_url) == baseline
    finally:
        handle.uninstrument()
    # The other signals saw every call, with the right outcome.
    assert len(counting.ended) == N_CALLS
    assert ("S3.ListObjectsV2", "ok", 2) in counting.ended
    assert sum(1 for _, outcome, _ in counting.ended if outcome == "client_error") == 2
    assert _sum(registry, "aws_sdk_call_duration_seconds_count") == N_CALLS
    assert _sum(registry, "aws_sdk_call_attempts_total") == N_CALLS + 1
    assert len(capture.events("aws.call")) == N_CALLS
    if "start" in fail:
        assert _errors(registry, "call_started") == N_CALLS
        assert provider.tracer.started == 0
    elif "context" in fail:
        # Nothing but the trace ids can be missing: a log event without them, a sample
        # without an exemplar.
        assert provider.tracer.started >= N_CALLS
    else:
        # Every call's span was started and its failure contained at the end.
        assert provider.tracer.started >= N_CALLS
        assert _errors(registry, "call_ended") == N_CALLS
    _logged_once_per_kind(capture)


class _NoTracerProvider(trace.TracerProvider):
    """A tracer provider that cannot even give a tracer."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise Boom("get_tracer")


def test_tracer_provider_without_tracer(
    baseline: list[Any],
    session: boto3.Session,
    registry: CollectorRegistry,
    moto_url: str,
    capture: _Capture,
) -> None:
    """A provider whose get_tracer raises: instrument() succeeds, the traces are off,
    metrics and logs record every call, the failure is counted and logged once."""
    handle = evobs.instrument(session, tracer_provider=_NoTracerProvider(), registry=registry)
    try:
        assert [type(s).__name__ for s in handle.signals] == ["MetricsSignal", "LogsSignal"]
        assert _workload(session, moto_url) == baseline
    finally:
        handle.uninstrument()
    assert _errors(registry, "instrument") == 1
    assert _sum(registry, "aws_sdk_call_duration_seconds_count") == N_CALLS
    assert len(capture.events("aws.call")) == N_CALLS
    _logged_once_per_kind(capture)


def _health_series(series: Any) -> bool:
    """Whether ``series`` belongs to one of evobs's health families (``evobs_*``, evobs's
    own too): they must keep counting while the ``aws_sdk_*`` ones raise."""
    for families in list(_registry._FAMILIES.values()):
        for name, metric in list(families.items()):
            members = list(getattr(metric, "_series", {}).values())
            if name.startswith("evobs_") and series in members:
                return True
    return False


@pytest.fixture
def raising_metrics(monkeypatch: pytest.MonkeyPatch) -> Callable[[tuple[str, ...]], None]:
    """Make the ``aws_sdk_*`` metric children raise on observe (evobs's own counter works):
    prometheus_client's children and the series of evobs's per-call families alike."""

    def arm(kinds: tuple[str, ...]) -> None:
        children: dict[str, list[tuple[Any, str]]] = {
            "counter": [(Counter, "inc")],
            "histogram": [(Histogram, "observe")],
            "gauge": [(Gauge, "inc"), (Gauge, "dec"), (Gauge, "set")],
        }
        # evobs's own series change only through the writer of their lock.
        series: dict[str, list[tuple[str, type]]] = {
            "counter": [("inc", _series.CounterSeries)],
            "histogram": [("observe", _series.HistogramSeries)],
            "gauge": [("inc", _series.GaugeSeries), ("dec", _series.GaugeSeries)],
        }
        for kind in kinds:
            for cls, name in children[kind]:
                original = getattr(cls, name)

                def raising(self: Any, *a: Any, __o: Any = original, **kw: Any) -> Any:
                    if str(getattr(self, "_name", "")).startswith("aws_sdk"):
                        raise Boom(f"{type(self).__name__} observe")
                    return __o(self, *a, **kw)

                monkeypatch.setattr(cls, name, raising)
        for kind in kinds:
            for name, target in series[kind]:
                original = getattr(_series.Writer, name)

                def write(
                    target_series: Any, *a: Any, __o: Any = original, __t: type = target, **kw: Any
                ) -> Any:
                    if isinstance(target_series, __t) and not _health_series(target_series):
                        raise Boom(f"{type(target_series).__name__} write")
                    return __o(target_series, *a, **kw)

                monkeypatch.setattr(_series.Writer, name, staticmethod(write))

    return arm


@pytest.mark.parametrize(
    "kinds",
    [("counter", "histogram", "gauge"), ("histogram",), ("counter",)],
    ids=["all", "histograms", "counters"],
)
def test_raising_metrics(
    kinds: tuple[str, ...],
    raising_metrics: Callable[[tuple[str, ...]], None],
    baseline: list[Any],
    session: boto3.Session,
    registry: CollectorRegistry,
    recorder: Any,
    moto_url: str,
    capture: _Capture,
) -> None:
    """Metrics that raise on observe cost only the metrics signal; in-flight still settles."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    raising_metrics(kinds)
    try:
        assert _workload(session, moto_url) == baseline
    finally:
        handle.uninstrument()
    assert len(recorder.named("S3.GetObject")) == 2
    assert recorder.started == recorder.ended
    # Every call counts its attempts and observes its duration at call_ended.
    assert _errors(registry, "call_ended") == N_CALLS
    if "gauge" not in kinds:
        # The gauge worked, so it must be back where it started whatever else raised.
        for service in ("S3", "STS"):
            value = registry.get_sample_value("aws_sdk_calls_in_flight", {"service": service})
            assert value == 0, f"in-flight for {service} left at {value}"
    _logged_once_per_kind(capture)


def test_raising_log_handler(
    baseline: list[Any],
    session: boto3.Session,
    registry: CollectorRegistry,
    recorder: Any,
    moto_url: str,
    capture: _Capture,
) -> None:
    """A log handler that raises on every aws.* record costs only the logs signal."""
    capture.raise_on_events = True
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        assert _workload(session, moto_url) == baseline
    finally:
        handle.uninstrument()
    assert capture.raised >= N_CALLS, "the logs signal never reached the raising handler"
    assert _errors(registry, "call_ended") == N_CALLS
    assert recorder.ended == recorder.started
    assert len(recorder.named("S3.ListObjectsV2")) == 1
    assert (
        registry.get_sample_value(
            "aws_sdk_call_attempts_total", {"service": "S3", "operation": "ListObjectsV2"}
        )
        == 2
    )
    _logged_once_per_kind(capture)


def test_raising_user_signal(
    baseline: list[Any],
    session: boto3.Session,
    registry: CollectorRegistry,
    recorder: Any,
    moto_url: str,
    capture: _Capture,
) -> None:
    """A user signal raising at every transition: calls unchanged, every failure counted."""
    bad = _RaisingSignal()
    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        signals=("traces", "metrics", "logs", bad),
    )
    try:
        assert _workload(session, moto_url) == baseline
    finally:
        handle.uninstrument()
    attempts = N_CALLS + 1  # ListObjectsV2 took two
    assert bad.seen["call_started"] == N_CALLS
    assert bad.seen["call_ended"] == N_CALLS
    assert bad.seen["attempt_started"] == attempts
    assert bad.seen["attempt_ended"] == attempts
    for transition, count in bad.seen.items():
        assert _errors(registry, transition) == count, transition
    assert bad.seen["client_created"] == 4  # s3, sts, sqs, and the resource's client
    assert bad.seen["resource_created"] >= 2  # ServiceResource, Bucket, ObjectSummary
    # The built-in signals were unaffected.
    assert recorder.started == recorder.ended == N_CALLS + 2  # + ListObjectsV2's attempt spans
    _logged_once_per_kind(capture)


def test_everything_raising_at_once(
    raising_metrics: Callable[[tuple[str, ...]], None],
    baseline: list[Any],
    session: boto3.Session,
    registry: CollectorRegistry,
    moto_url: str,
    capture: _Capture,
) -> None:
    """All three built-in signals and a user signal broken together: still transparent."""
    capture.raise_on_events = True
    handle = evobs.instrument(
        session,
        tracer_provider=_RaisingProvider(frozenset({"set_attribute", "end"})),
        registry=registry,
        signals=("traces", "metrics", "logs", _RaisingSignal()),
    )
    raising_metrics(("counter", "histogram", "gauge"))
    try:
        assert _workload(session, moto_url) == baseline
    finally:
        handle.uninstrument()
    assert _errors(registry, "call_ended") >= N_CALLS * 3
    _logged_once_per_kind(capture)
