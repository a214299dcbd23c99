"""The fault matrix: every path of LIFECYCLE.md, in every retry mode, over real HTTP.

Each row drives one path through the scripted FaultServer (forwarding to moto)
or through botocore's own machinery (Stubber, mock_aws, presign, raising user
handlers), in the legacy, standard and adaptive retry modes, and checks that
the telemetry is true to what happened:

- the attempts botocore made (the requests the server saw, when the request
  reaches it) == ``aws.sdk.attempts`` == the ``aws_sdk_call_attempts_total`` delta;
- the retries metric and the ``aws.retry`` log count agree (attempts - 1);
- every started span ended; the OTel context after the call is the one before;
- ``aws_sdk_calls_in_flight`` is back to 0.

Backoff jitter is zero (DESIGN 6): retries cost no sleep, the decisions stay botocore's.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.retryhandler
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer

from .faults_util import (
    BOTOCORE_RETRIES_BARE_429,
    BOTOCORE_S3_200_ERRORS_EVERYWHERE,
    zero_backoff,
)

MODES = ("legacy", "standard", "adaptive")
MAX_ATTEMPTS = 3
READ_TIMEOUT = 0.4


@pytest.fixture(autouse=True)
def zero_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """No backoff sleep in any mode: standard's jitter and legacy's delay return 0."""
    zero_backoff(monkeypatch)
    monkeypatch.setattr(botocore.retryhandler, "delay_exponential", lambda *a, **k: 0.0)


@pytest.fixture(scope="module")
def fault_server(moto_url: str) -> Iterator[FaultServer]:
    with FaultServer(upstream=moto_url) as server:
        yield server


@pytest.fixture
def server(fault_server: FaultServer) -> Iterator[FaultServer]:
    fault_server.reset()
    yield fault_server
    fault_server.reset()


class _Logs(logging.Handler):
    """Collects evobs's structured events."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            self.events.append(record.msg)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]


@pytest.fixture
def logs() -> Iterator[_Logs]:
    logger = logging.getLogger("evobs")
    handler = _Logs()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _UserError(Exception):
    """What the raising user handlers raise."""


@dataclasses.dataclass
class Env:
    """What a row gets: the session, the endpoint, the retry config, the server."""

    session: boto3.Session
    server: FaultServer
    mode: str

    def config(self) -> Config:
        return Config(
            retries={"mode": self.mode, "total_max_attempts": MAX_ATTEMPTS},
            connect_timeout=1,
            read_timeout=READ_TIMEOUT,
        )

    def client(self, service: str, endpoint: str | None = None) -> Any:
        return self.session.client(
            service, endpoint_url=endpoint or self.server.url, config=self.config()
        )


@dataclasses.dataclass
class Row:
    """One path: how to drive it, and what botocore does on it."""

    name: str
    run: Callable[[Env], Any]
    #: The exception the application sees (None: the call returns).
    raises: type[BaseException] | None
    #: Call spans expected (0 for paths that are not calls).
    calls: int = 1
    #: The outcome of the call, when it is one.
    outcome: str | None = None
    #: The requests the server must have seen.
    server_attempts: int = 0
    #: The attempts evobs must report (None: ``server_attempts``).
    attempts: int | None = None
    #: Faults to script before the call.
    script: tuple[Fault, ...] = ()
    #: The ``reason`` of every retry on this path.
    reason: str | None = None
    #: Run on the session before ``instrument`` (handlers that must precede evobs's).
    prepare: Callable[[boto3.Session], None] | None = None


def _ddb(env: Env, endpoint: str | None = None) -> Any:
    return env.client("dynamodb", endpoint)


def _list_tables(env: Env) -> Any:
    return _ddb(env).list_tables()


def _s3_list(env: Env) -> Any:
    return env.client("s3").list_buckets()


def _refused(env: Env) -> Any:
    return _ddb(env, f"http://127.0.0.1:{_closed_port()}").list_tables()


def _describe_missing(env: Env) -> Any:
    return _ddb(env).describe_table(TableName="evobs-no-such-table")


def _stubbed(env: Env) -> Any:
    client = _ddb(env)
    with Stubber(client) as stub:
        stub.add_response("list_tables", {"TableNames": ["abc"]})
        return client.list_tables()


def _stubbed_error(env: Env) -> Any:
    client = _ddb(env)
    with Stubber(client) as stub:
        stub.add_client_error("list_tables", "ThrottlingException", http_status_code=400)
        return client.list_tables()


def _mock_aws(env: Env) -> Any:
    from moto import mock_aws

    with mock_aws():
        client = env.session.client("dynamodb", config=env.config())
        return client.list_tables()


def _param_validation(env: Env) -> Any:
    return _ddb(env).list_tables(Limit="ten")


def _presign(env: Env) -> Any:
    return env.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60
    )


def _keyboard_interrupt(env: Env) -> Any:
    client = _ddb(env)

    def interrupt(**_: Any) -> None:
        raise KeyboardInterrupt

    client.meta.events.register("before-send.dynamodb.ListTables", interrupt)
    return client.list_tables()


ROWS: list[Row] = [
    Row("success", _list_tables, None, outcome="ok", server_attempts=1),
    Row(
        "throttle-then-ok",
        _list_tables,
        None,
        outcome="ok",
        server_attempts=2,
        reason="throttled",
        script=(Fault.throttle(),),
    ),
    Row(
        "5xx-exhausted",
        _list_tables,
        ClientError,
        outcome="server_error",
        server_attempts=MAX_ATTEMPTS,
        reason="server_error",
        script=(Fault.status(503),) * MAX_ATTEMPTS,
    ),
    Row(
        "throttle-exhausted",
        _list_tables,
        ClientError,
        outcome="throttled",
        server_attempts=MAX_ATTEMPTS,
        reason="throttled",
        script=(Fault.throttle(),) * MAX_ATTEMPTS,
    ),
    Row(
        "5xx-then-ok",
        _list_tables,
        None,
        outcome="ok",
        server_attempts=3,
        reason="server_error",
        script=(Fault.status(500), Fault.status(502)),
    ),
    Row(
        "429-empty-then-ok",
        _list_tables,
        None,
        outcome="ok",
        server_attempts=2,
        reason="throttled",
        script=(Fault.too_many_requests(),),
    ),
    Row(
        "reset-then-ok",
        _list_tables,
        None,
        outcome="ok",
        server_attempts=2,
        reason="connection_error",
        script=(Fault.reset(),),
    ),
    Row(
        "reset-exhausted",
        _list_tables,
        ConnectionClosedError,
        outcome="connection_error",
        server_attempts=MAX_ATTEMPTS,
        reason="connection_error",
        script=(Fault.reset(),) * MAX_ATTEMPTS,
    ),
    Row(
        "read-timeout-then-ok",
        _list_tables,
        None,
        outcome="ok",
        server_attempts=2,
        reason="connection_error",
        script=(Fault.stall(5),),
    ),
    Row(
        "read-timeout-exhausted",
        _list_tables,
        ReadTimeoutError,
        outcome="connection_error",
        server_attempts=MAX_ATTEMPTS,
        reason="connection_error",
        script=(Fault.stall(5),) * MAX_ATTEMPTS,
    ),
    Row(
        "connection-refused",
        _refused,
        EndpointConnectionError,
        outcome="connection_error",
        attempts=MAX_ATTEMPTS,
        reason="connection_error",
    ),
    Row("4xx", _describe_missing, ClientError, outcome="client_error", server_attempts=1),
    Row(
        "s3-slowdown-then-ok",
        _s3_list,
        None,
        outcome="ok",
        server_attempts=2,
        reason="throttled",
        script=(Fault.throttle(),),
    ),
    Row(
        "s3-200-with-error-then-ok",
        _s3_list,
        None,
        outcome="ok",
        server_attempts=2,
        reason="server_error",
        script=(Fault.s3_200_error(),),
    ),
    Row(
        "s3-200-with-error-exhausted",
        _s3_list,
        ClientError,
        outcome="server_error",
        server_attempts=MAX_ATTEMPTS,
        reason="server_error",
        script=(Fault.s3_200_error(),) * MAX_ATTEMPTS,
    ),
    # The Stubber answers at before-call: no request is ever created.
    Row("stubber", _stubbed, None, outcome="ok"),
    Row("stubber-error", _stubbed_error, ClientError, outcome="throttled"),
    # moto's mock_aws answers in before-send: one attempt, no network.
    Row("mock_aws", _mock_aws, None, outcome="ok", attempts=1),
    Row(
        "keyboard-interrupt",
        _keyboard_interrupt,
        KeyboardInterrupt,
        outcome="error",
        attempts=1,
    ),
    Row("param-validation", _param_validation, ParamValidationError, calls=0),
    Row("presign", _presign, None, calls=0),
]

# Raising user handlers at each per-call event, registered before evobs's
# (register_first on the same wildcard node, after instrument) and after it.
_EVENTS = (
    "provide-client-params",
    "before-call",
    "request-created",
    "before-send",
    "needs-retry",
    "after-call",
    "after-call-error",
)


# What botocore and evobs do when a user handler of that event raises, registered
# before evobs's handler (on the session, before instrument) or after it:
# (calls, outcome, attempts evobs sees, requests the server sees).
_RAISING: dict[tuple[str, bool], tuple[int, str | None, int, int]] = {
    # The call fails before before-call: not a call (LIFECYCLE, DESIGN 2).
    ("provide-client-params", True): (0, None, 0, 0),
    ("provide-client-params", False): (0, None, 0, 0),
    # evobs's before-call never ran: the call was never opened.
    ("before-call", True): (0, None, 0, 0),
    ("before-call", False): (1, "error", 0, 0),
    # evobs's request-created never ran: it cannot know of the attempt.
    ("request-created", True): (1, "error", 0, 0),
    ("request-created", False): (1, "error", 1, 0),
    ("before-send", True): (1, "error", 1, 0),
    ("before-send", False): (1, "error", 1, 0),
    ("needs-retry", True): (1, "error", 1, 1),
    ("needs-retry", False): (1, "error", 1, 1),
    # Before ours: the safety net closes the call with the user's exception.
    ("after-call", True): (1, "error", 1, 1),
    # After ours: the AWS call itself succeeded, and its telemetry says so.
    ("after-call", False): (1, "ok", 1, 1),
    ("after-call-error", True): (1, "error", MAX_ATTEMPTS, MAX_ATTEMPTS),
    ("after-call-error", False): (1, "connection_error", MAX_ATTEMPTS, MAX_ATTEMPTS),
}


def _raising_handler_row(event: str, first: bool) -> Row:
    def boom(**_: Any) -> None:
        raise _UserError(event)

    def prepare(session: boto3.Session) -> None:
        session.events.register_first(f"{event}.*.*", boom)

    def run(env: Env) -> Any:
        client = _ddb(env)
        if not first:
            client.meta.events.register(f"{event}.dynamodb.ListTables", boom)
        if event == "after-call-error":
            env.server.script([Fault.reset()] * MAX_ATTEMPTS)
        return client.list_tables()

    calls, outcome, attempts, server_attempts = _RAISING[event, first]
    position = "before-ours" if first else "after-ours"
    return Row(
        f"raising-{event}-{position}",
        run,
        _UserError,
        calls=calls,
        outcome=outcome,
        attempts=attempts,
        server_attempts=server_attempts,
        prepare=prepare if first else None,
    )


ROWS += [_raising_handler_row(e, first) for e in _EVENTS for first in (True, False)]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of a sample over every label set matching ``labels``."""
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


#: Rows whose path is newer botocore's (faults_util): name -> (the retry modes it
#: concerns, whether this botocore behaves so, what it does not do otherwise).
NEWER_BOTOCORE = {
    "429-empty-then-ok": (
        ("standard", "adaptive"),
        BOTOCORE_RETRIES_BARE_429,
        "retry a bare 429 in this mode",
    ),
    "s3-200-with-error-then-ok": (
        MODES,
        BOTOCORE_S3_200_ERRORS_EVERYWHERE,
        "read S3's 200-with-error bodies outside copies",
    ),
    "s3-200-with-error-exhausted": (
        MODES,
        BOTOCORE_S3_200_ERRORS_EVERYWHERE,
        "read S3's 200-with-error bodies outside copies",
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_fault_matrix(
    row: Row,
    mode: str,
    server: FaultServer,
    session: boto3.Session,
    recorder: Any,
    registry: CollectorRegistry,
    logs: _Logs,
) -> None:
    """Telemetry agrees with the wire and with botocore on this path, in this retry mode."""
    modes, has_it, missing = NEWER_BOTOCORE.get(row.name, (MODES, True, ""))
    if mode in modes and not has_it:
        pytest.skip(f"this botocore does not {missing}")
    if row.prepare is not None:
        row.prepare(session)
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    server.script(row.script)
    env = Env(session, server, mode)
    parent = recorder.provider.get_tracer("test").start_span("app")
    token = otel_context.attach(trace.set_span_in_context(parent))
    before = otel_context.get_current()
    try:
        if row.raises is None:
            row.run(env)
        else:
            with pytest.raises(row.raises):
                row.run(env)
        after = otel_context.get_current()
    finally:
        otel_context.detach(token)
        parent.end()
        handle.uninstrument()
    assert after == before, "the call left the OTel context changed"
    assert not server.pending, f"scripted faults never used: {server.pending}"

    assert len(server.requests) == row.server_attempts, [r.fault for r in server.requests]
    attempts = row.server_attempts if row.attempts is None else row.attempts

    # Spans: every started span ended; one call span (or none) with the true attempts.
    assert recorder.started == recorder.ended
    spans = [s for s in recorder.spans if s.name != "app"]
    call_spans = [s for s in spans if not s.name.endswith(" attempt")]
    assert len(call_spans) == row.calls, [s.name for s in spans]
    service = "S3" if row.run in (_s3_list, _presign) else "DynamoDB"
    if row.calls:
        (span,) = call_spans
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
        attrs = span.attributes or {}
        assert attrs.get("aws.sdk.attempts") == attempts
        if row.outcome is not None:
            assert attrs.get("aws.sdk.outcome", "ok") == row.outcome
        attempt_spans = [s for s in spans if s.name.endswith(" attempt")]
        assert len(attempt_spans) == (attempts if attempts > 1 else 0)
        assert _value(registry, "aws_sdk_call_duration_seconds_count", service=service) == 1
        if row.outcome is not None:
            assert _value(registry, "aws_sdk_call_duration_seconds_count", outcome=row.outcome) == 1
    else:
        assert _value(registry, "aws_sdk_call_duration_seconds_count") == 0

    # Metrics: attempts and retries agree with botocore; in-flight settles.
    counted = attempts if row.calls else 0
    assert _value(registry, "aws_sdk_call_attempts_total", service=service) == counted
    retries = max(counted - 1, 0)
    assert _value(registry, "aws_sdk_retries_total") == retries
    if row.reason is not None:
        assert _value(registry, "aws_sdk_retries_total", reason=row.reason) == retries
        assert all(e.get("reason") == row.reason for e in logs.named("aws.retry"))
    assert _value(registry, "aws_sdk_calls_in_flight") == 0
    assert _value(registry, "evobs_handler_errors_total") == 0

    # Logs: one aws.retry per retry (well under the rate limit), one aws.call per call.
    assert len(logs.named("aws.retry")) == retries
    assert len(logs.named("aws.call")) == row.calls


def test_matrix_covers_lifecycle_paths() -> None:
    """The table names every path LIFECYCLE.md lists, so a dropped row is noticed."""
    names = {r.name for r in ROWS}
    required = {
        "success",
        "throttle-then-ok",
        "5xx-exhausted",
        "reset-exhausted",
        "read-timeout-exhausted",
        "connection-refused",
        "4xx",
        "s3-200-with-error-then-ok",
        "stubber",
        "mock_aws",
        "keyboard-interrupt",
        "param-validation",
        "presign",
    }
    assert required <= names
    for event in _EVENTS:
        assert f"raising-{event}-before-ours" in names
        assert f"raising-{event}-after-ours" in names
