"""The core's fault paths over real HTTP: botocore -> fault server -> moto, spans checked.

Every test compares what the span says with what the fault server saw on the
wire: ``aws.sdk.attempts`` is the number of requests that arrived, request ids
are the ones the server sent, statuses are the ones it answered. Retry jitter is
zeroed (DESIGN 6) so retries cost no sleep; the retry decisions stay botocore's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer

from .conftest import SpanRecorder
from .faults_util import (
    BOTOCORE_HONOURS_RETRY_AFTER,
    BOTOCORE_RETRIES_BARE_429,
    BOTOCORE_S3_200_ERRORS_EVERYWHERE,
    assert_clean,
    attempt_spans,
    attrs,
    closed_port,
    retry_events,
    zero_backoff,
)

MODES = ("legacy", "standard", "adaptive")
S3_200_ONLY_ON_COPIES = "this botocore reads S3's 200-with-error bodies on copies only"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    zero_backoff(monkeypatch)


@pytest.fixture
def faults(moto_url: str) -> Iterator[FaultServer]:
    """A fault server forwarding to moto unless scripted otherwise."""
    with FaultServer(moto_url) as server:
        yield server


def config(mode: str = "standard", attempts: int = 3, read_timeout: float = 2) -> Config:
    """Explicit retry mode and attempt count, short timeouts."""
    return Config(
        retries={"mode": mode, "total_max_attempts": attempts},  # type: ignore[typeddict-item]
        connect_timeout=2,
        read_timeout=read_timeout,
    )


def client(session: boto3.Session, service: str, url: str, cfg: Config | None = None) -> Any:
    return session.client(service, endpoint_url=url, config=cfg or config())  # type: ignore[call-overload]


# One call per protocol: (service, span name, operation seen by the server or None
# for REST, setup through moto, the call).
def _s3_setup(c: Any) -> None:
    c.create_bucket(Bucket="faults-bucket")


def _s3_call(c: Any) -> Any:
    return c.put_object(Bucket="faults-bucket", Key="k", Body=b"body")


def _ddb_setup(c: Any) -> None:
    pass


def _ddb_call(c: Any) -> Any:
    return c.list_tables()


def _sqs_setup(c: Any) -> None:
    pass


def _sqs_call(c: Any) -> Any:
    return c.list_queues()


def _sts_call(c: Any) -> Any:
    return c.get_caller_identity()


Case = tuple[str, str, Callable[[Any], None], Callable[[Any], Any]]
CASES: dict[str, Case] = {
    "s3-rest-xml": ("s3", "S3.PutObject", _s3_setup, _s3_call),
    "dynamodb-json": ("dynamodb", "DynamoDB.ListTables", _ddb_setup, _ddb_call),
    "sqs-json": ("sqs", "SQS.ListQueues", _sqs_setup, _sqs_call),
    "sts-query": ("sts", "STS.GetCallerIdentity", _ddb_setup, _sts_call),
}


def _prepare(
    case: str, session: boto3.Session, faults: FaultServer, cfg: Config | None = None
) -> tuple[Any, str, Callable[[Any], Any]]:
    """A client through the fault server, its setup done, the recording cleared."""
    service, name, setup, call = CASES[case]
    c = client(session, service, faults.url, cfg)
    setup(c)
    faults.reset()
    return c, name, call


def _ids(faults: FaultServer) -> list[str | None]:
    return [r.request_id for r in faults.requests]


# -- success -------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_success_one_attempt_no_children(
    case: str,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """A first-try success: one span, attempts == requests seen (1), status UNSET, no
    attempt children, no retry events, the request id the server forwarded."""
    c, name, call = _prepare(case, session, faults)
    response = call(c)
    span = recorder.one(name)
    a = attrs(span)
    assert faults.count() == 1
    assert a["aws.sdk.attempts"] == 1
    assert a["http.response.status_code"] == 200 == faults.requests[0].status
    assert a["aws.request_id"] == response["ResponseMetadata"]["RequestId"]
    assert a["aws.request_id"] == faults.requests[0].request_id
    assert a["server.port"] == faults.address[1]
    assert a["aws.sdk.retry_backoff_ms"] == 0
    assert "error.type" not in a
    assert span.status.status_code is StatusCode.UNSET
    assert attempt_spans(recorder, span) == []
    assert retry_events(span) == []
    assert_clean(recorder)


def test_attempt_status_masks_each_calls_own_key(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Attempt statuses are rendered once and reused, call after call, only under the
    same masks: one error text quoting key ``a`` shows it on a call writing key ``b``,
    and the call writing ``a`` (after, so it would reuse the first text if masks were
    not part of the key) masks it."""
    c, _, _ = _prepare("s3-rest-xml", session, faults)
    quoted = "Please slow down on reports/a.csv"
    names = ("reports/b.csv", "reports/a.csv")
    for key in names:
        faults.script([Fault.error(503, "SlowDown", quoted)])
        c.put_object(Bucket="faults-bucket", Key=key, Body=b"body")
    spans = recorder.named("S3.PutObject")
    assert len(spans) == 2
    first_attempts = [attempt_spans(recorder, span)[0] for span in spans]
    descriptions = [a.status.description or "" for a in first_attempts]
    assert all(a.status.status_code is StatusCode.ERROR for a in first_attempts)
    assert "reports/a.csv" in descriptions[0]  # not that call's key: shown
    assert descriptions[1].startswith("SlowDown: Please slow down on ")
    assert "reports/a.csv" not in descriptions[1]  # that call's own key: masked


# -- throttling, then success ---------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "code", "status"),
    [
        ("s3-rest-xml", "SlowDown", 503),
        ("dynamodb-json", "ThrottlingException", 400),
        ("sqs-json", "ThrottlingException", 400),
        ("sts-query", "Throttling", 400),
    ],
)
def test_throttle_then_success(
    case: str,
    code: str,
    status: int,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Two throttles then success: 3 attempts as the server saw, call OK, attempt
    children with resend counts 0..2 and per-attempt ids, two retry events (throttled)."""
    c, name, call = _prepare(case, session, faults)
    faults.script([Fault.throttle(), Fault.throttle()])
    response = call(c)
    assert response["ResponseMetadata"]["RetryAttempts"] == 2

    span = recorder.one(name)
    a = attrs(span)
    assert faults.count() == 3
    assert a["aws.sdk.attempts"] == 3
    assert a["http.response.status_code"] == 200
    assert "error.type" not in a
    assert span.status.status_code is StatusCode.UNSET
    assert a["aws.request_id"] == faults.requests[-1].request_id
    assert a["aws.sdk.retry_backoff_ms"] >= 0

    children = attempt_spans(recorder, span)
    assert [attrs(s)["http.request.resend_count"] for s in children] == [0, 1, 2]
    assert [attrs(s).get("http.response.status_code") for s in children] == [status, status, 200]
    assert [attrs(s).get("aws.request_id") for s in children] == _ids(faults)
    assert [attrs(s).get("error.type") for s in children] == [code, code, None]
    assert [s.status.status_code for s in children] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    for child in children:
        assert child.start_time is not None and child.end_time is not None
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= child.start_time <= child.end_time <= span.end_time
    # the backoff is the gap between attempts, and an event on the call span
    events = retry_events(span)
    assert [e["aws.sdk.attempt"] for e in events] == [2, 3]
    assert [e["aws.sdk.retry.reason"] for e in events] == ["throttled", "throttled"]
    assert all(e["aws.sdk.retry_backoff_ms"] >= 0 for e in events)
    for event, before, after in zip(events, children[:-1], children[1:], strict=True):
        assert before.end_time is not None and after.start_time is not None
        gap_ms = (after.start_time - before.end_time) / 1e6
        assert event["aws.sdk.retry_backoff_ms"] == pytest.approx(gap_ms, abs=1e-3)
    assert a["aws.sdk.retry_backoff_ms"] == pytest.approx(
        sum(e["aws.sdk.retry_backoff_ms"] for e in events)
    )
    assert_clean(recorder)


@pytest.mark.skipif(
    not BOTOCORE_HONOURS_RETRY_AFTER, reason="this botocore ignores x-amz-retry-after"
)
def test_backoff_is_the_sleep_botocore_took(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """With jitter zeroed, the only sleep is the one the server asks for with
    ``x-amz-retry-after`` (ms): the recorded backoff covers at least that sleep,
    on the span total, the retry event and the gap between attempt spans."""
    c, name, call = _prepare("dynamodb-json", session, faults)
    faults.script([Fault.status(503).with_headers(("x-amz-retry-after", "60"))])
    call(c)
    span = recorder.one(name)
    (event,) = retry_events(span)
    assert event["aws.sdk.retry_backoff_ms"] >= 60
    assert attrs(span)["aws.sdk.retry_backoff_ms"] == pytest.approx(
        event["aws.sdk.retry_backoff_ms"]
    )
    first, second = attempt_spans(recorder, span)
    assert first.end_time is not None and second.start_time is not None
    assert (second.start_time - first.end_time) / 1e6 >= 60
    assert_clean(recorder)


@pytest.mark.skipif(
    not BOTOCORE_RETRIES_BARE_429, reason="this botocore does not retry a bare 429 in standard mode"
)
def test_429_empty_body_then_success(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """A bare 429 (no body, no code) is throttling by status: retried, reason throttled."""
    c, name, call = _prepare("dynamodb-json", session, faults)
    faults.script([Fault.too_many_requests()])
    call(c)
    span = recorder.one(name)
    assert attrs(span)["aws.sdk.attempts"] == 2 == faults.count()
    first, _ = attempt_spans(recorder, span)
    assert attrs(first)["http.response.status_code"] == 429
    assert attrs(first)["aws.sdk.outcome"] == "throttled"
    assert "error.type" in attrs(first)
    assert first.status.status_code is StatusCode.ERROR
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["throttled"]
    assert span.status.status_code is StatusCode.UNSET
    assert_clean(recorder)


def test_mixed_failures_then_success(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """503, reset, throttle, success: every attempt says what happened to it, in order."""
    c, name, call = _prepare("dynamodb-json", session, faults, config(attempts=4))
    faults.script([Fault.status(503), Fault.reset(), Fault.throttle()])
    call(c)
    span = recorder.one(name)
    assert attrs(span)["aws.sdk.attempts"] == 4 == faults.count()
    children = attempt_spans(recorder, span)
    assert [attrs(s).get("error.type") for s in children] == [
        "ServiceUnavailable",
        "ConnectionClosedError",
        "ThrottlingException",
        None,
    ]
    assert [attrs(s).get("http.response.status_code") for s in children] == [
        503,
        None,
        400,
        200,
    ]
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == [
        "server_error",
        "connection_error",
        "throttled",
    ]
    # the reset attempt carries its exception as an event
    assert [e.name for e in children[1].events] == ["exception"]
    assert span.status.status_code is StatusCode.UNSET
    assert_clean(recorder)


def test_concurrent_retries_are_counted_per_call(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Threads sharing one client, throttles landing on whichever request comes: the
    attempts of all spans add up to the requests seen, each call's children match its
    own attempt count and request ids, and every thread's context is left clean."""
    # More attempts than throttles: a thread that takes them all in a row (a loaded
    # machine schedules threads unevenly) still succeeds, as the assertions require.
    c, name, call = _prepare("dynamodb-json", session, faults, config(attempts=7))
    faults.script([Fault.throttle()] * 6)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                call(c)
            assert not trace.get_current_span().get_span_context().is_valid
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    spans = recorder.named(name)
    assert len(spans) == 12
    assert sum(attrs(s)["aws.sdk.attempts"] for s in spans) == faults.count() == 18
    ids = {r.request_id for r in faults.requests}
    for span in spans:
        children = attempt_spans(recorder, span)
        n = attrs(span)["aws.sdk.attempts"]
        assert len(children) == (n if n > 1 else 0)
        assert {attrs(s)["aws.request_id"] for s in children} <= ids
        assert span.status.status_code is StatusCode.UNSET
    assert_clean(recorder)


def test_attempt_without_request_id(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """An attempt answered without a request id has none; the call keeps the final one."""
    c, name, call = _prepare("dynamodb-json", session, faults)
    faults.script([Fault.status(500).without_request_id()])
    call(c)
    span = recorder.one(name)
    first, second = attempt_spans(recorder, span)
    assert "aws.request_id" not in attrs(first)
    assert attrs(second)["aws.request_id"] == faults.requests[1].request_id
    assert attrs(span)["aws.request_id"] == faults.requests[1].request_id
    assert_clean(recorder)


# -- exhausted retries, per retry mode ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["s3-rest-xml", "dynamodb-json"])
def test_5xx_exhausted(
    mode: str,
    case: str,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """500 on every attempt: the ClientError surfaces, span ERROR with the code and 500,
    attempts == requests seen == total_max_attempts, retry reasons server_error."""
    c, name, call = _prepare(case, session, faults, config(mode, attempts=3))
    faults.set_default(Fault.status(500, "InternalError", "boom"))
    with pytest.raises(ClientError) as raised:
        call(c)
    assert raised.value.response["Error"]["Code"] == "InternalError"

    span = recorder.one(name)
    a = attrs(span)
    assert faults.count() == 3
    assert a["aws.sdk.attempts"] == 3
    assert a["http.response.status_code"] == 500
    assert a["error.type"] == "InternalError"
    assert a["aws.sdk.outcome"] == "server_error"
    assert a["aws.request_id"] == faults.requests[-1].request_id
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "InternalError: boom"
    children = attempt_spans(recorder, span)
    assert [attrs(s)["http.request.resend_count"] for s in children] == [0, 1, 2]
    assert all(attrs(s)["http.response.status_code"] == 500 for s in children)
    assert all(s.status.status_code is StatusCode.ERROR for s in children)
    assert [attrs(s).get("aws.request_id") for s in children] == _ids(faults)
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["server_error"] * 2
    assert_clean(recorder)


@pytest.mark.parametrize("mode", MODES)
def test_reset_exhausted(
    mode: str,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Every attempt reset: ConnectionClosedError, no status, attempts == connections seen
    (legacy mode never delivers the last needs-retry: the count must not depend on it)."""
    c, name, call = _prepare("s3-rest-xml", session, faults, config(mode, attempts=3))
    faults.set_default(Fault.reset())
    with pytest.raises(ConnectionClosedError):
        call(c)
    span = recorder.one(name)
    a = attrs(span)
    assert faults.count() == 3
    assert a["aws.sdk.attempts"] == 3
    assert "http.response.status_code" not in a
    assert a["error.type"] == "ConnectionClosedError"
    assert a["aws.sdk.outcome"] == "connection_error"
    assert span.status.status_code is StatusCode.ERROR
    assert "exception" in [e.name for e in span.events]
    children = attempt_spans(recorder, span)
    assert len(children) == 3
    for child in children:
        assert attrs(child)["error.type"] == "ConnectionClosedError"
        assert "http.response.status_code" not in attrs(child)
        assert child.status.status_code is StatusCode.ERROR
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["connection_error"] * 2
    assert_clean(recorder)


@pytest.mark.parametrize("mode", MODES)
def test_read_timeout(
    mode: str,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """A server that never answers: ReadTimeoutError after 2 attempts, both seen by the server."""
    c, name, call = _prepare("dynamodb-json", session, faults, config(mode, 2, read_timeout=0.3))
    faults.set_default(Fault.stall())
    with pytest.raises(ReadTimeoutError):
        call(c)
    span = recorder.one(name)
    a = attrs(span)
    assert faults.count() == 2
    assert a["aws.sdk.attempts"] == 2
    assert a["error.type"] == "ReadTimeoutError"
    assert a["aws.sdk.outcome"] == "connection_error"
    assert "http.response.status_code" not in a
    assert span.status.status_code is StatusCode.ERROR
    children = attempt_spans(recorder, span)
    assert [attrs(s)["error.type"] for s in children] == ["ReadTimeoutError"] * 2
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["connection_error"]
    assert_clean(recorder)


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused(
    mode: str,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
) -> None:
    """A closed port: EndpointConnectionError, retried by botocore, address recorded."""
    port = closed_port()
    c = client(session, "dynamodb", f"http://127.0.0.1:{port}", config(mode, attempts=2))
    with pytest.raises(EndpointConnectionError):
        c.list_tables()
    span = recorder.one("DynamoDB.ListTables")
    a = attrs(span)
    assert a["aws.sdk.attempts"] == 2
    assert a["error.type"] == "EndpointConnectionError"
    assert a["aws.sdk.outcome"] == "connection_error"
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == port
    assert "http.response.status_code" not in a
    assert span.status.status_code is StatusCode.ERROR
    children = attempt_spans(recorder, span)
    assert [attrs(s)["error.type"] for s in children] == ["EndpointConnectionError"] * 2
    assert_clean(recorder)


def test_throttle_exhausted_in_legacy_mode(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Legacy mode retries throttling too; the exhausted call is throttled, not server_error."""
    c, name, call = _prepare("sts-query", session, faults, config("legacy", attempts=2))
    faults.set_default(Fault.throttle())
    with pytest.raises(ClientError):
        call(c)
    span = recorder.one(name)
    a = attrs(span)
    assert a["aws.sdk.attempts"] == 2 == faults.count()
    assert a["error.type"] == "Throttling"
    assert a["aws.sdk.outcome"] == "throttled"
    assert span.status.status_code is StatusCode.ERROR
    assert_clean(recorder)


def test_adaptive_throttle_then_success(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Adaptive mode: a throttle then success is 2 attempts, reason throttled."""
    c, name, call = _prepare("dynamodb-json", session, faults, config("adaptive", attempts=3))
    faults.script([Fault.throttle()])
    call(c)
    span = recorder.one(name)
    assert attrs(span)["aws.sdk.attempts"] == 2 == faults.count()
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["throttled"]
    assert span.status.status_code is StatusCode.UNSET
    assert_clean(recorder)


# -- 4xx ------------------------------------------------------------------------------------


def test_no_such_key_is_one_attempt_error(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """moto's real NoSuchKey through the proxy: not retried, ERROR, 404, code, no children."""
    c, _, _ = _prepare("s3-rest-xml", session, faults)
    with pytest.raises(ClientError):
        c.get_object(Bucket="faults-bucket", Key="missing")
    span = recorder.one("S3.GetObject")
    a = attrs(span)
    assert faults.count() == 1
    assert a["aws.sdk.attempts"] == 1
    assert a["http.response.status_code"] == 404 == faults.requests[0].status
    assert a["error.type"] == "NoSuchKey"
    assert a["aws.sdk.outcome"] == "client_error"
    assert a["aws.request_id"] == faults.requests[0].request_id
    assert span.status.status_code is StatusCode.ERROR
    assert attempt_spans(recorder, span) == []
    assert_clean(recorder)


def test_head_object_404(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """HeadObject 404 has no body: error.type is the status string botocore reports."""
    c, _, _ = _prepare("s3-rest-xml", session, faults)
    with pytest.raises(ClientError):
        c.head_object(Bucket="faults-bucket", Key="missing")
    span = recorder.one("S3.HeadObject")
    a = attrs(span)
    assert a["aws.sdk.attempts"] == 1 == faults.count()
    assert a["http.response.status_code"] == 404
    assert a["error.type"] == "404"
    assert span.status.status_code is StatusCode.ERROR
    assert_clean(recorder)


def test_sqs_query_compatible_error_code(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """SQS (JSON, query-compatible): error.type is the modeled name botocore exposes as
    QueryErrorCode, from moto's real answer and from a scripted one alike."""
    c, _, _ = _prepare("sqs-json", session, faults)
    faults.script(
        [
            Fault.forward(),
            Fault.error(400, "com.amazonaws.sqs#QueueDoesNotExist", "gone").with_headers(
                ("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")
            ),
        ]
    )
    for _ in range(2):
        with pytest.raises(ClientError) as raised:
            c.get_queue_url(QueueName="faults-missing-queue")
        assert raised.value.response["Error"]["QueryErrorCode"] == "QueueDoesNotExist"
    real, scripted = recorder.named("SQS.GetQueueUrl")
    for span, seen in zip((real, scripted), faults.requests, strict=True):
        a = attrs(span)
        assert a["error.type"] == "QueueDoesNotExist"
        assert a["http.response.status_code"] == 400 == seen.status
        assert a["aws.request_id"] == seen.request_id
        assert a["aws.sdk.attempts"] == 1
        assert span.status.status_code is StatusCode.ERROR
    assert [r.fault for r in faults.requests] == ["forward", "error"]
    assert_clean(recorder)


@pytest.fixture
def expecting(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry
) -> Iterator[evobs.Instrumentation]:
    """The session instrumented with HeadObject 404 and conditional checks expected."""
    handle = evobs.instrument(
        session,
        tracer_provider=recorder.provider,
        registry=registry,
        expected_errors={"S3.HeadObject": {"404"}, "*": {"ConditionalCheckFailedException"}},
    )
    try:
        yield handle
    finally:
        handle.uninstrument()


def test_expected_head_object_404(
    expecting: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """An expected 404: status UNSET, error.type and status code still set truthfully."""
    c, _, _ = _prepare("s3-rest-xml", session, faults)
    with pytest.raises(ClientError):
        c.head_object(Bucket="faults-bucket", Key="missing")
    span = recorder.one("S3.HeadObject")
    a = attrs(span)
    assert span.status.status_code is StatusCode.UNSET
    assert a["error.type"] == "404"
    assert a["http.response.status_code"] == 404
    assert a["aws.sdk.outcome"] == "client_error"
    assert_clean(recorder)


def test_expected_scripted_error_code_and_unexpected_one(
    expecting: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """A wildcard-expected code leaves the status unset; another 400 code is still ERROR."""
    c, name, call = _prepare("dynamodb-json", session, faults)
    faults.script(
        [
            Fault.error(400, "ConditionalCheckFailedException", "The conditional request failed"),
            Fault.error(400, "ValidationException", "nope"),
        ]
    )
    with pytest.raises(ClientError):
        call(c)
    with pytest.raises(ClientError):
        call(c)
    expected, unexpected = recorder.named(name)
    assert attrs(expected)["error.type"] == "ConditionalCheckFailedException"
    assert expected.status.status_code is StatusCode.UNSET
    assert attrs(unexpected)["error.type"] == "ValidationException"
    assert unexpected.status.status_code is StatusCode.ERROR
    assert faults.count() == 2
    assert_clean(recorder)


# -- S3's 200 with an error body -----------------------------------------------------------


@pytest.mark.skipif(not BOTOCORE_S3_200_ERRORS_EVERYWHERE, reason=S3_200_ONLY_ON_COPIES)
def test_s3_200_with_error_body_exhausted(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """botocore turns S3's "200 + <Error>" into a retried 500: the span says 500 and the
    code, every attempt says 500 and server_error, as botocore decided."""
    c, name, call = _prepare("s3-rest-xml", session, faults, config(attempts=2))
    faults.set_default(Fault.s3_200_error("InternalError", "copy failed"))
    with pytest.raises(ClientError) as raised:
        call(c)
    assert raised.value.response["Error"]["Code"] == "InternalError"
    span = recorder.one(name)
    a = attrs(span)
    assert [r.status for r in faults.requests] == [200, 200]
    assert a["aws.sdk.attempts"] == 2
    assert a["http.response.status_code"] == 500
    assert a["error.type"] == "InternalError"
    assert span.status.status_code is StatusCode.ERROR
    children = attempt_spans(recorder, span)
    assert [attrs(s).get("http.response.status_code") for s in children] == [500, 500]
    assert [attrs(s).get("aws.sdk.outcome") for s in children] == ["server_error"] * 2
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["server_error"]
    assert_clean(recorder)


@pytest.mark.skipif(not BOTOCORE_S3_200_ERRORS_EVERYWHERE, reason=S3_200_ONLY_ON_COPIES)
def test_s3_200_with_error_body_then_success(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """One "200 + <Error>" then a real success: OK call of 2 attempts."""
    c, name, call = _prepare("s3-rest-xml", session, faults)
    faults.script([Fault.s3_200_error()])
    call(c)
    span = recorder.one(name)
    assert attrs(span)["aws.sdk.attempts"] == 2 == faults.count()
    assert attrs(span)["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET
    first, _ = attempt_spans(recorder, span)
    assert attrs(first)["error.type"] == "InternalError"
    assert_clean(recorder)


# -- hostile error bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.malformed(500), Fault.non_utf8(500), Fault.huge_message(500, 200_000)],
    ids=["malformed", "non-utf8", "huge"],
)
@pytest.mark.parametrize("case", ["s3-rest-xml", "dynamodb-json", "sts-query"])
def test_hostile_error_bodies(
    case: str,
    fault: Fault,
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """Unparseable, non-UTF-8 or huge error bodies: the user gets botocore's error (a
    ClientError, or the parser's own exception when it fails), the span is closed as
    ERROR with what the events carried, and a bounded description."""
    c, name, call = _prepare(case, session, faults, config(attempts=1))
    faults.set_default(fault)
    with pytest.raises((ClientError, ResponseParserError, UnicodeDecodeError)) as raised:
        call(c)
    span = recorder.one(name)
    a = attrs(span)
    assert a["aws.sdk.attempts"] == 1 == faults.count()
    if isinstance(raised.value, ClientError):
        assert a["http.response.status_code"] == 500
        assert a["error.type"] == raised.value.response["Error"]["Code"]
    else:
        # botocore drops the response when its parser fails: no status reaches the events.
        assert "http.response.status_code" not in a
        assert a["error.type"] == type(raised.value).__name__
        assert a["aws.sdk.outcome"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert len(span.status.description) <= 1024
    assert_clean(recorder)


def test_parser_error_does_not_record_the_response_body(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    recorder: SpanRecorder,
    faults: FaultServer,
) -> None:
    """A 200 whose XML botocore cannot parse raises an error that quotes the body; the
    span must not carry the body (it can hold credentials: AssumeRole's, here)."""
    body = (
        b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<AssumeRoleResult><Credentials><AccessKeyId>ASIAEVOBSFAKEKEYID01</AccessKeyId>"
        b"<SecretAccessKey>evobsSecretAccessKeyLeakCanary0123456789</SecretAccessKey>"
        b"<SessionToken>evobsSessionTokenLeakCanary</SessionToken></Credentials><AssumeRole"
    )
    c = client(session, "sts", faults.url, config(attempts=1))
    faults.set_default(Fault.raw(200, body, [("Content-Type", "text/xml")]))
    with pytest.raises(ResponseParserError):
        c.assume_role(RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="leak-test")
    span = recorder.one("STS.AssumeRole")
    recorded = repr(
        (
            span.status.description,
            dict(span.attributes or {}),
            [(e.name, dict(e.attributes or {})) for e in span.events],
        )
    )
    assert attrs(span)["error.type"] == "ResponseParserError"
    for canary in ("ASIAEVOBSFAKEKEYID01", "LeakCanary"):
        assert canary not in recorded
    assert_clean(recorder)


def test_uninstrumented_fault_calls_record_nothing(
    session: boto3.Session, recorder: SpanRecorder, faults: FaultServer
) -> None:
    """Without instrumentation the same retries produce no span (the recorder is honest)."""
    c, _, call = _prepare("dynamodb-json", session, faults)
    faults.script([Fault.throttle()])
    call(c)
    assert faults.count() == 2
    assert recorder.spans == []
