"""The logs signal over real HTTP: every event asserted field by field, levels,
trace correlation, retry-storm rate limiting, and silence by default."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import structlog
from botocore.config import Config
from botocore.retries import standard
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer
from evobs.signals.logs import LogsSignal, RetryLimiter

from .conftest import SpanRecorder

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BASE_KEYS = {"event", "level", "timestamp", "service", "operation", "region"}
CALL_KEYS = BASE_KEYS | {
    "outcome",
    "http_status",
    "request_id",
    "invocation_id",
    "attempts",
    "duration_ms",
    "trace_id",
    "span_id",
}
ERROR_KEYS = CALL_KEYS | {"error_type", "error_message"}


class Capture(logging.Handler):
    """Keeps every record of the ``evobs`` logger; ``events()`` returns their event dicts."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for record in self.records:
            assert isinstance(record.msg, dict), record.msg
            event = dict(record.msg)
            event["_levelno"] = record.levelno
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def one(self, name: str) -> dict[str, Any]:
        found = self.events(name)
        assert len(found) == 1, f"expected one {name!r}, got {[e['event'] for e in self.events()]}"
        return found[0]


@pytest.fixture
def logs() -> Iterator[Capture]:
    """A DEBUG handler on the stdlib logger ``evobs``, removed afterwards."""
    log = logging.getLogger("evobs")
    handler = Capture()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's backoff jitter returns 0 (DESIGN 6): retries cost no sleep; the
    retry decision stays botocore's."""
    original = standard.ExponentialBackoff.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["random"] = lambda: 0.0
        original(self, *args, **kwargs)

    monkeypatch.setattr(standard.ExponentialBackoff, "__init__", init)
    monkeypatch.setattr("botocore.retryhandler.random", types.SimpleNamespace(random=lambda: 0.0))


@pytest.fixture
def faults(moto_url: str) -> Iterator[FaultServer]:
    with FaultServer(upstream=moto_url) as server:
        yield server


def retries(attempts: int) -> Config:
    return Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=2,
        read_timeout=2,
    )


def ids(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def instrument(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry, **options: Any
) -> evobs.Instrumentation:
    return evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, **options
    )


def test_success_call_event_field_by_field(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    logs: Capture,
) -> None:
    """A successful call logs one DEBUG ``aws.call`` with every DESIGN field; its ids
    equal the span's."""
    s3 = session.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="logs-ok")
    logs.records.clear()
    response = s3.list_objects_v2(Bucket="logs-ok")

    event = logs.one("aws.call")
    span = recorder.one("S3.ListObjectsV2")
    trace_id, span_id = ids(span)
    assert set(event) - {"_levelno"} == CALL_KEYS
    assert event["_levelno"] == logging.DEBUG
    assert event["level"] == "debug"
    assert event["service"] == "S3"
    assert event["operation"] == "ListObjectsV2"
    assert event["region"] == "us-east-1"
    assert event["outcome"] == "ok"
    assert event["http_status"] == 200
    assert event["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert UUID_RE.match(event["invocation_id"])
    assert event["invocation_id"] == dict(span.attributes or {})["aws.sdk.invocation_id"]
    assert event["attempts"] == 1
    assert isinstance(event["duration_ms"], float) and event["duration_ms"] > 0
    assert event["trace_id"] == trace_id and len(trace_id) == 32
    assert event["span_id"] == span_id and len(span_id) == 16
    assert "params" not in event


def test_client_error_is_warning(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    logs: Capture,
) -> None:
    """A 404 NoSuchKey logs WARNING with outcome, status, error type and the AWS message."""
    s3 = session.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="logs-missing")
    logs.records.clear()
    with pytest.raises(s3.exceptions.NoSuchKey) as raised:
        s3.get_object(Bucket="logs-missing", Key="absent")

    event = logs.one("aws.call")
    trace_id, span_id = ids(recorder.one("S3.GetObject"))
    assert set(event) - {"_levelno"} == ERROR_KEYS
    assert event["_levelno"] == logging.WARNING
    assert event["outcome"] == "client_error"
    assert event["http_status"] == 404
    assert event["error_type"] == "NoSuchKey"
    assert event["error_message"] == raised.value.response["Error"]["Message"]
    assert event["request_id"] == raised.value.response["ResponseMetadata"]["RequestId"]
    assert (event["trace_id"], event["span_id"]) == (trace_id, span_id)


def test_expected_error_is_info(
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    logs: Capture,
) -> None:
    """An error listed in ``expected_errors`` logs at INFO, still with its outcome and type."""
    handle = instrument(session, recorder, registry, expected_errors={"S3.HeadObject": {"404"}})
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        s3.create_bucket(Bucket="logs-expected")
        logs.records.clear()
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket="logs-expected", Key="absent")
    finally:
        handle.uninstrument()
    event = logs.one("aws.call")
    assert event["_levelno"] == logging.INFO
    assert event["outcome"] == "client_error"
    assert event["http_status"] == 404
    assert event["error_type"] == "404"


@pytest.mark.usefixtures("no_jitter")
def test_retry_event_then_success(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    faults: FaultServer,
    recorder: SpanRecorder,
    logs: Capture,
) -> None:
    """A 503 then success: one WARNING ``aws.retry`` (attempt 2, reason, type, delay), then
    a DEBUG ``aws.call`` with two attempts; all ids equal the call span's."""
    ddb = session.client("dynamodb", endpoint_url=faults.url, config=retries(3))
    faults.script([Fault.status(503), Fault.forward()])
    ddb.list_tables()

    retry = logs.one("aws.retry")
    call = logs.one("aws.call")
    trace_id, span_id = ids(recorder.one("DynamoDB.ListTables"))
    assert set(retry) - {"_levelno"} == BASE_KEYS | {
        "attempt",
        "reason",
        "error_type",
        "http_status",
        "delay_ms",
        "request_id",
        "trace_id",
        "span_id",
    }
    assert retry["_levelno"] == logging.WARNING
    assert retry["service"] == "DynamoDB"
    assert retry["operation"] == "ListTables"
    assert retry["attempt"] == 2
    assert retry["reason"] == "server_error"
    assert retry["error_type"] == "ServiceUnavailable"
    assert retry["http_status"] == 503
    assert faults.requests[0].request_id is not None
    assert retry["request_id"] == faults.requests[0].request_id
    assert isinstance(retry["delay_ms"], float) and retry["delay_ms"] >= 0
    assert (retry["trace_id"], retry["span_id"]) == (trace_id, span_id)
    assert call["outcome"] == "ok"
    assert call["attempts"] == 2
    assert call["_levelno"] == logging.DEBUG
    assert (call["trace_id"], call["span_id"]) == (trace_id, span_id)


@pytest.mark.usefixtures("no_jitter")
def test_throttled_is_warning(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    faults: FaultServer,
    logs: Capture,
) -> None:
    """Throttling on every attempt: retries say ``throttled``, the call logs WARNING."""
    ddb = session.client("dynamodb", endpoint_url=faults.url, config=retries(2))
    faults.script([Fault.throttle(), Fault.throttle()])
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.list_tables()
    assert [r["reason"] for r in logs.events("aws.retry")] == ["throttled"]
    event = logs.one("aws.call")
    assert event["_levelno"] == logging.WARNING
    assert event["outcome"] == "throttled"
    assert event["http_status"] == 400
    assert event["error_type"] == "ThrottlingException"
    assert event["error_message"] == "Rate exceeded"
    assert event["attempts"] == 2


@pytest.mark.usefixtures("no_jitter")
def test_server_error_is_error(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    faults: FaultServer,
    logs: Capture,
) -> None:
    """Retries exhausted on 500: ERROR, outcome server_error, the last attempt's type."""
    ddb = session.client("dynamodb", endpoint_url=faults.url, config=retries(2))
    faults.script([Fault.status(500), Fault.status(500, "InternalServerError")])
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.list_tables()
    event = logs.one("aws.call")
    assert set(event) - {"_levelno"} == ERROR_KEYS
    assert event["_levelno"] == logging.ERROR
    assert event["outcome"] == "server_error"
    assert event["http_status"] == 500
    assert event["error_type"] == "InternalServerError"
    assert event["attempts"] == 2
    assert [r["error_type"] for r in logs.events("aws.retry")] == ["InternalError"]


def test_connection_error_is_error(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    logs: Capture,
) -> None:
    """Nothing listening: ERROR, outcome connection_error, no status, the exception's type."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s3 = session.client("s3", endpoint_url=f"http://127.0.0.1:{port}", config=retries(1))
    with pytest.raises(Exception) as raised:
        s3.list_buckets()
    event = logs.one("aws.call")
    assert event["_levelno"] == logging.ERROR
    assert event["outcome"] == "connection_error"
    assert event["http_status"] is None
    assert event["request_id"] is None
    assert event["error_type"] == type(raised.value).__name__ == "EndpointConnectionError"
    assert event["error_message"] == str(raised.value)
    assert (event["trace_id"], event["span_id"]) == ids(recorder.one("S3.ListBuckets"))


def test_other_error_is_error(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    faults: FaultServer,
    logs: Capture,
) -> None:
    """A 302 answer (neither 4xx, 5xx nor a transport failure) is outcome ``error``, ERROR."""
    ddb = session.client("dynamodb", endpoint_url=faults.url, config=retries(1))
    faults.script([Fault.empty(302)])
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.list_tables()
    event = logs.one("aws.call")
    assert event["_levelno"] == logging.ERROR
    assert event["outcome"] == "error"
    assert event["http_status"] == 302
    assert event["error_type"] == "302"


def test_raising_user_handler_is_error(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    moto_url: str,
    logs: Capture,
) -> None:
    """An exception from a user's before-send handler: outcome ``error``, its class as type."""

    class Refused(Exception):
        pass

    def refuse(**_: Any) -> None:
        raise Refused("refused by policy")

    s3 = session.client("s3", endpoint_url=moto_url, config=retries(1))
    s3.meta.events.register("before-send.s3.ListBuckets", refuse)
    with pytest.raises(Refused):
        s3.list_buckets()
    event = logs.one("aws.call")
    assert event["_levelno"] == logging.ERROR
    assert event["outcome"] == "error"
    assert event["error_type"] == "Refused"
    assert event["error_message"] == "refused by policy"


def test_slow_call_event(
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    logs: Capture,
) -> None:
    """Over ``slow_call_seconds``: a WARNING ``aws.call.slow`` next to the ``aws.call``."""
    handle = instrument(session, recorder, registry, slow_call_seconds=1e-9)
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        logs.records.clear()
        s3.list_buckets()
    finally:
        handle.uninstrument()
    call = logs.one("aws.call")
    slow = logs.one("aws.call.slow")
    assert slow["_levelno"] == logging.WARNING
    assert set(slow) - {"_levelno"} == CALL_KEYS | {"slow_call_ms", "retry_backoff_ms"}
    assert slow["slow_call_ms"] == 0.0
    assert slow["retry_backoff_ms"] == 0.0
    for key in CALL_KEYS - {"event", "level", "timestamp"}:
        assert slow[key] == call[key], key
    assert (slow["trace_id"], slow["span_id"]) == ids(recorder.one("S3.ListBuckets"))


def test_fast_call_logs_no_slow_event(
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    logs: Capture,
) -> None:
    """Under the threshold, no ``aws.call.slow``."""
    handle = instrument(session, recorder, registry, slow_call_seconds=3600)
    try:
        session.client("s3", endpoint_url=moto_url).list_buckets()
    finally:
        handle.uninstrument()
    assert logs.events("aws.call.slow") == []
    assert len(logs.events("aws.call")) == 1


def test_client_created_event(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str, logs: Capture
) -> None:
    """Creating a client logs DEBUG ``aws.client.created`` with service, region, duration."""
    session.client("sqs", endpoint_url=moto_url, region_name="eu-west-1")
    event = logs.one("aws.client.created")
    assert set(event) - {"_levelno"} == {
        "event",
        "level",
        "timestamp",
        "service",
        "region",
        "duration_ms",
    }
    assert event["_levelno"] == logging.DEBUG
    assert event["service"] == "SQS"
    assert event["region"] == "eu-west-1"
    assert event["duration_ms"] > 0


def test_capture_params_adds_redacted_params(
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    logs: Capture,
) -> None:
    """``capture_params=True``: the log and the span carry the same redacted JSON params."""
    handle = instrument(session, recorder, registry, capture_params=True)
    try:
        sm = session.client("secretsmanager", endpoint_url=moto_url)
        sm.create_secret(Name="logs-params", SecretString="p4ssw0rd-logs-test")
    finally:
        handle.uninstrument()
    event = logs.one("aws.call")
    span = recorder.one("Secrets Manager.CreateSecret")
    params = json.loads(event["params"])
    # botocore fills the idempotency token in before the call is sent.
    assert UUID_RE.match(params.pop("ClientRequestToken"))
    assert params == {"Name": "logs-params", "SecretString": "<redacted>"}
    assert dict(span.attributes or {})["aws.request.params"] == event["params"]


def test_no_trace_ids_without_traces(
    session: boto3.Session, moto_url: str, registry: CollectorRegistry, logs: Capture
) -> None:
    """With the traces signal off there is no span, so no ``trace_id``/``span_id`` fields."""
    handle = evobs.instrument(session, registry=registry, signals=("logs",))
    try:
        session.client("s3", endpoint_url=moto_url).list_buckets()
    finally:
        handle.uninstrument()
    event = logs.one("aws.call")
    assert "trace_id" not in event and "span_id" not in event
    assert event["outcome"] == "ok"


class _Spy:
    """Stands in for the structlog logger: counts what the signal tried to log."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append(name)


def test_no_event_built_when_level_disabled(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """With ``evobs`` at WARNING, a successful call reaches no logging method at all
    (the level check happens before the event dict is built)."""
    (signal,) = [s for s in instrumented.signals if isinstance(s, LogsSignal)]
    spy = _Spy()
    signal._log = spy  # the logger is not under test here; the level check is
    log = logging.getLogger("evobs")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        s3.list_buckets()
        assert spy.calls == []
        with pytest.raises(s3.exceptions.NoSuchBucket):
            s3.list_objects_v2(Bucket="logs-no-such-bucket")
        assert spy.calls == ["log"]
    finally:
        log.setLevel(level)


@pytest.mark.usefixtures("no_jitter")
def test_retry_storm_is_rate_limited(
    session: boto3.Session,
    faults: FaultServer,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    logs: Capture,
) -> None:
    """At most ``retry_log_rate`` retries per second per operation are logged; the rest
    are counted in ``evobs_log_events_suppressed_total{event="aws.retry"}``."""
    # 0.001/s: a burst of one, then one more token every 1000 s: deterministic.
    handle = instrument(session, recorder, registry, retry_log_rate=0.001, retry_log_burst=1)
    try:
        ddb = session.client("dynamodb", endpoint_url=faults.url, config=retries(5))
        faults.script([Fault.status(503)] * 5)
        with pytest.raises(ddb.exceptions.ClientError):
            ddb.list_tables()
        faults.script([Fault.status(503), Fault.forward()])
        ddb.list_tables()
    finally:
        handle.uninstrument()
    emitted = logs.events("aws.retry")
    assert [e["attempt"] for e in emitted] == [2]
    suppressed = registry.get_sample_value(
        "evobs_log_events_suppressed_total", {"event": "aws.retry"}
    )
    assert suppressed == 4  # 3 more retries of the first call, 1 of the second
    assert [e["attempts"] for e in logs.events("aws.call")] == [5, 2]


def test_rate_limiter_refills_and_reports_drops() -> None:
    """The token bucket: a burst, refill at ``rate`` over time, per key, and the next
    event let through says how many were dropped before it."""
    limiter = RetryLimiter(2.0, burst=2)
    second = 1_000_000_000
    assert [limiter.allow("a", 0) for _ in range(3)] == [0, 0, -1]
    assert limiter.allow("b", 0) == 0  # another operation has its own bucket
    assert limiter.allow("a", second // 4) == -1  # half a token
    assert limiter.allow("a", second // 2) == 2  # one token: two were dropped
    assert limiter.allow("a", second // 2) == -1
    assert limiter.allow("a", 10 * second) == 1  # refill is capped at the burst
    assert limiter.allow("a", 10 * second) == 0
    assert limiter.allow("a", 10 * second) == -1


def test_default_limit_logs_sporadic_retries_and_summarises_storms() -> None:
    """The defaults (1 event per second per operation, a burst of 10): a few retries are
    all logged; a sustained storm gets one event per second, saying how many it dropped."""
    from evobs._options import Options

    options = Options()
    assert (options.retry_log_rate, options.retry_log_burst) == (1.0, 10.0)
    limiter = RetryLimiter(options.retry_log_rate, burst=options.retry_log_burst)
    second = 1_000_000_000
    assert [limiter.allow("op", 0) for _ in range(10)] == [0] * 10
    assert [limiter.allow("op", 0) for _ in range(500)] == [-1] * 500
    assert limiter.allow("op", second) == 500
    assert limiter.allow("op", second) == -1


def test_suppressed_counter_shared_with_metrics_family(registry: CollectorRegistry) -> None:
    """The suppression counter is created through ``family()`` once per registry, with the
    labels the metrics signal uses, so both signals share it."""
    from evobs._options import Options
    from evobs._selfmetrics import log_events_suppressed as log_events_suppressed_counter

    LogsSignal(Options(), registry)
    LogsSignal(Options(), registry)  # a second instrumentation into the same registry
    shared = log_events_suppressed_counter(registry)  # what the metrics signal gets
    series = shared.labels(event="aws.retry")
    with series.lock as w:
        w.inc(series)
    assert (
        registry.get_sample_value("evobs_log_events_suppressed_total", {"event": "aws.retry"}) == 1
    )


def test_structlog_app_gets_event_dict(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """An app using structlog's ProcessorFormatter renders evobs events with all fields."""
    stream: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stream.append(self.format(record))

    handler = ListHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ]
        )
    )
    log = logging.getLogger("evobs")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        session.client("s3", endpoint_url=moto_url).list_buckets()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    events = [json.loads(line) for line in stream]
    call = next(e for e in events if e["event"] == "aws.call")
    assert set(call) == CALL_KEYS
    assert call["operation"] == "ListBuckets"
    assert call["level"] == "debug"


def test_plain_logging_app_gets_readable_line(
    instrumented: evobs.Instrumentation, session: boto3.Session, moto_url: str
) -> None:
    """A stdlib-only app (``%(message)s``) reads ``aws.call service=S3 ...``, not a dict repr."""
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("evobs")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        session.client("s3", endpoint_url=moto_url).list_buckets()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    line = next(x for x in lines if " aws.call " in f" {x} ")
    assert line.startswith("DEBUG aws.call service=S3 operation=ListBuckets region=us-east-1 ")
    assert " outcome=ok " in line and " attempts=1 " in line


SILENT_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import boto3, structlog
    import evobs
    from botocore.config import Config

    url, closed, out = sys.argv[1], sys.argv[2], sys.argv[3]
    session = boto3.Session(region_name="us-east-1")
    handle = evobs.instrument(session, slow_call_seconds=1e-9)
    cfg = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1)
    s3 = session.client("s3", endpoint_url=url, config=cfg)
    s3.create_bucket(Bucket="silent-bucket")
    s3.list_buckets()
    for call in (
        lambda: s3.get_object(Bucket="silent-bucket", Key="absent"),
        lambda: s3.list_objects_v2(Bucket="no-such-silent-bucket"),
        lambda: session.client("s3", endpoint_url=closed, config=cfg).list_buckets(),
    ):
        try:
            call()
        except Exception:
            pass
    evobs_logger = logging.getLogger("evobs")
    with open(out, "w") as f:
        json.dump(
            {
                "evobs_handlers": [type(h).__name__ for h in evobs_logger.handlers],
                "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
                "structlog_configured": structlog.is_configured(),
                "evobs_level": evobs_logger.level,
                "propagate": evobs_logger.propagate,
            },
            f,
        )
    """
)


def test_silent_by_default(moto_url: str, tmp_path: Any) -> None:
    """An app that configures no logging sees nothing from evobs: calls that log DEBUG,
    WARNING and ERROR events print nothing, and evobs adds only a NullHandler and
    configures neither logging nor structlog."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "state.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARN")}
    result = subprocess.run(
        [sys.executable, "-c", SILENT_SCRIPT, moto_url, closed, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
    state = json.loads(out.read_text())
    assert state == {
        "evobs_handlers": ["NullHandler"],
        "root_handlers": [],
        "structlog_configured": False,
        "evobs_level": logging.NOTSET,
        "propagate": True,
    }
