"""Bad input: whatever the application or the wire throws at evobs.

- ``instrument()`` with generated options and targets: a clear ``TypeError`` or
  ``ValueError`` naming evobs, never anything else;
- API params of every shape and size (valid or not): the application sees exactly
  what botocore does without evobs, evobs records no secret and fails internally
  never;
- error responses from the fault server with non-UTF-8 or huge messages, huge
  error codes, malformed XML/JSON bodies, no request-id headers: same exception
  as without evobs, bounded text in the telemetry, no internal error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer

from .faults_util import zero_backoff

ACCESS_KEY = "AKIDEVOBSBADINPUTKEY"
SECRET_KEY = "evobsBadInputSecretAccessKey"
SECRET_VALUE = "zqSECRETVALUEqz"
_SECRETS = (ACCESS_KEY, SECRET_KEY, SECRET_VALUE)


def _session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )


class _Telemetry:
    """An instrumented session with everything it records kept for inspection."""

    def __init__(self, **options: Any) -> None:
        self.session = _session()
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.registry = CollectorRegistry()
        self.handle = evobs.instrument(
            self.session, tracer_provider=provider, registry=self.registry, **options
        )

    def text(self, logs: list[Any]) -> str:
        """Everything recorded, as one string, to search for secrets."""
        parts: list[str] = []
        for span in self.exporter.get_finished_spans():
            parts.append(repr(span.name))
            parts.append(repr(dict(span.attributes or {})))
            parts.append(repr(span.status.description))
            parts.extend(repr((e.name, dict(e.attributes or {}))) for e in span.events)
        for metric in self.registry.collect():
            parts.extend(repr(s.labels) for s in metric.samples)
        parts.extend(repr(e) for e in logs)
        return "\n".join(parts)

    def internal_errors(self) -> float:
        return sum(
            s.value
            for m in self.registry.collect()
            for s in m.samples
            if s.name == "evobs_handler_errors_total"
        )


class _Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(record.msg)


@pytest.fixture(scope="module")
def logs() -> Iterator[_Logs]:
    logger = logging.getLogger("evobs")
    handler = _Logs()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What the application sees: the result, or the exception's type, text and response."""
    try:
        result = fn()
    except Exception as exc:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            response = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        return ("raised", (type(exc).__name__, _strip_ids(str(exc)), response))
    if isinstance(result, dict):
        result = {k: v for k, v in result.items() if k != "ResponseMetadata"}
    return ("returned", result)


def _strip_ids(text: str) -> str:
    import re

    return re.sub(r"evobs-fault-\d+", "<rid>", text)


# -- instrument() options and targets ------------------------------------------------------

_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=10)
    | st.sampled_from(["traces", "metrics", "logs", "*", "S3.HeadObject", "404"])
    | st.builds(object),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.frozensets(st.text(max_size=5), max_size=3)
        | st.dictionaries(st.text(max_size=15), inner, max_size=3)
        | st.tuples(inner, inner)
    ),
    max_leaves=8,
)
_POSITIVE = st.floats(min_value=1e-300, allow_infinity=True, allow_nan=False)
# Valid values half of the time, so accepted options get exercised by a real call too.
_VALID: dict[str, st.SearchStrategy[Any]] = {
    "signals": st.lists(st.sampled_from(["traces", "metrics", "logs"]), max_size=4),
    "expected_errors": st.dictionaries(
        st.sampled_from(["*", "DynamoDB", "DynamoDB.ListTables", "STS"]) | st.text(min_size=1),
        st.sets(st.sampled_from(["500", "InternalServerError", "404"]) | st.text()),
        max_size=3,
    ),
    "capture_params": st.booleans(),
    "capture_s3_keys": st.booleans(),
    "propagate_messages": st.booleans(),
    "slow_call_seconds": st.none() | _POSITIVE,
    "duration_buckets": st.lists(
        st.floats(min_value=1e-9, max_value=1e9), min_size=1, max_size=30, unique=True
    ).map(sorted),
    "retry_log_rate": _POSITIVE,
    "retry_log_burst": st.floats(min_value=1, max_value=1e6),
}
_OPTIONS = st.fixed_dictionaries(
    {},
    optional={name: valid | _ANY for name, valid in _VALID.items()} | {"bogus_option": _ANY},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=_OPTIONS,
    target_kind=st.sampled_from(["session", "botocore", "client", "junk"]),
    junk=_ANY,
    provider=st.sampled_from(["none", "real", "junk"]),
    registry=st.sampled_from(["fresh", "junk"]),
)
def test_instrument_rejects_bad_options_clearly(
    options: dict[str, Any], target_kind: str, junk: Any, provider: str, registry: str
) -> None:
    """Any options/target: either instrumented, or a TypeError/ValueError that names evobs."""
    if target_kind == "session":
        target: Any = _session()
    elif target_kind == "botocore":
        target = botocore.session.Session()
    elif target_kind == "client":
        target = _session().client("sts", endpoint_url="http://127.0.0.1:1")
    else:
        target = junk if junk is not None else object()
    kwargs: dict[str, Any] = dict(options)
    kwargs["tracer_provider"] = {"none": None, "real": TracerProvider(), "junk": junk}[provider]
    kwargs["registry"] = CollectorRegistry() if registry == "fresh" else junk
    if kwargs["registry"] is None:
        kwargs["registry"] = CollectorRegistry()
    try:
        handle = evobs.instrument(target, **kwargs)
    except (TypeError, ValueError) as exc:
        assert "evobs" in str(exc), f"unclear error: {exc!r}"
        return
    # Accepted: a real, working handle on that target, whose options never break a call
    # (here a DynamoDB call retried once after a 500, answered by canned responses).
    try:
        assert handle.enabled
        assert handle.target is target
        with _zero_backoff():
            if target_kind == "client":
                target.meta.events.register("before-send", _scripted([_OK_IDENTITY]))
                assert target.get_caller_identity()["Account"] == "123456789012"
            elif target_kind in ("session", "botocore"):
                make = target.create_client if target_kind == "botocore" else target.client
                client = make(
                    "dynamodb", endpoint_url="http://127.0.0.1:1", region_name="us-east-1"
                )
                client.meta.events.register("before-send", _scripted([_ERROR_500, _OK_TABLES]))
                assert client.list_tables()["TableNames"] == []
        errors = [
            s
            for m in kwargs["registry"].collect()
            for s in m.samples
            if s.name == "evobs_handler_errors_total"
        ]
        assert not errors, errors
    finally:
        handle.uninstrument()
    assert not handle.enabled


_ERROR_500 = (
    500,
    {"x-amzn-RequestId": "R", "content-type": "application/x-amz-json-1.0"},
    b'{"__type": "InternalServerError", "message": "boom"}',
)
_OK_TABLES = (
    200,
    {"x-amzn-RequestId": "R", "content-type": "application/x-amz-json-1.0"},
    b'{"TableNames": []}',
)
_OK_IDENTITY = (
    200,
    {"x-amzn-RequestId": "R", "content-type": "text/xml"},
    b"<GetCallerIdentityResponse><GetCallerIdentityResult><Account>123456789012</Account>"
    b"<Arn>arn:aws:iam::123456789012:user/x</Arn><UserId>X</UserId>"
    b"</GetCallerIdentityResult></GetCallerIdentityResponse>",
)


def _scripted(script: list[tuple[int, dict[str, str], bytes]]) -> Callable[..., AWSResponse]:
    """A user before-send handler answering from ``script`` (the last answer repeats)."""
    pending = list(script)

    def answer(request: Any = None, **_: Any) -> AWSResponse:
        status, headers, body = pending.pop(0) if len(pending) > 1 else pending[0]
        return AWSResponse(request.url, status, headers, _RawBody(body))

    return answer


@contextlib.contextmanager
def _zero_backoff() -> Iterator[None]:
    """Retry jitter 0 for clients built inside (DESIGN 6); the decision stays botocore's."""
    with pytest.MonkeyPatch.context() as patch:
        zero_backoff(patch)
        yield


def test_instrument_option_examples() -> None:
    """Representative bad options each give the documented exception type."""
    session = _session()
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"signals": "traces"}, TypeError),
        ({"signals": ["nope"]}, ValueError),
        ({"slow_call_seconds": math.nan}, ValueError),
        ({"slow_call_seconds": -1}, ValueError),
        ({"duration_buckets": []}, ValueError),
        ({"duration_buckets": [2, 1]}, ValueError),
        ({"retry_log_rate": 0}, ValueError),
        ({"capture_params": "yes"}, TypeError),
        ({"expected_errors": ["404"]}, TypeError),
        ({"bogus": 1}, TypeError),
    ]
    for options, kind in cases:
        with pytest.raises(kind, match="evobs"):
            evobs.instrument(session, registry=CollectorRegistry(), **options)
    with pytest.raises(TypeError, match="evobs"):
        evobs.instrument(42)
    with pytest.raises(TypeError, match="evobs"):
        evobs.instrument(session, registry={})


# -- params of every shape and size ----------------------------------------------------------


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        data = self.read()
        if data:
            yield data


def _canned(status: int, body: bytes) -> Callable[..., AWSResponse]:
    headers = {"x-amzn-RequestId": "REQ", "content-type": "application/x-amz-json-1.1"}

    def answer(request: Any = None, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, headers, _RawBody(body))

    return answer


_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=50)
    | st.binary(max_size=20)
    | st.just("x" * 100_000)
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(["Key", "Value", "Name", "SecretString", "Password", "X"]) | st.text(),
            inner,
            max_size=4,
        )
    ),
    max_leaves=15,
)
_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "Name": st.text(min_size=1, max_size=60) | _VALUE,
        # The model marks SecretString sensitive: the marker goes only there.
        "SecretString": st.just(SECRET_VALUE) | st.just(SECRET_VALUE * 1000) | _VALUE,
        "SecretBinary": st.binary(max_size=40) | _VALUE,
        "Description": st.text(max_size=2000) | _VALUE,
        "Tags": st.lists(
            st.fixed_dictionaries({"Key": st.text(max_size=20), "Value": st.text(max_size=20)}),
            max_size=5,
        )
        | _VALUE,
        "ClientRequestToken": st.text(min_size=32, max_size=64) | _VALUE,
        "Unknown": _VALUE,
    },
)


@pytest.fixture(scope="module")
def param_clients() -> tuple[_Telemetry, Any, Any]:
    """An instrumented (capture_params on) and a plain Secrets Manager client, both canned."""
    telemetry = _Telemetry(capture_params=True)
    body = b'{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x", "Name": "x"}'
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    clients = []
    for session in (telemetry.session, _session()):
        client = session.client("secretsmanager", endpoint_url="http://127.0.0.1:1", config=config)
        client.meta.events.register("before-send", _canned(200, body))
        clients.append(client)
    return telemetry, clients[0], clients[1]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(params=_PARAMS)
def test_params_of_every_shape(
    params: dict[str, Any], param_clients: tuple[_Telemetry, Any, Any], logs: _Logs
) -> None:
    """Generated params: the app sees botocore's own result or error; no secret recorded."""
    telemetry, instrumented, plain = param_clients
    telemetry.exporter.clear()
    before = len(logs.events)
    seen = _outcome(lambda: instrumented.create_secret(**params))
    expected = _outcome(lambda: plain.create_secret(**params))
    assert seen == expected
    assert telemetry.internal_errors() == 0
    text = telemetry.text(logs.events[before:])
    for secret in _SECRETS:
        assert secret not in text, f"{secret} recorded"


# -- hostile responses from the wire -------------------------------------------------------

_HUGE = 1_000_000
_FAULTS: list[tuple[str, Fault]] = [
    ("non-utf8-message", Fault.non_utf8(500)),
    ("non-utf8-message-400", Fault.non_utf8(400, code="ValidationException")),
    ("huge-message", Fault.huge_message(500, size=_HUGE)),
    ("huge-code", Fault.error(400, "E" * 5000)),
    ("malformed-500", Fault.malformed(500)),
    ("malformed-400", Fault.malformed(400)),
    ("empty-500", Fault.empty(500)),
    ("no-request-id", Fault.status(500).without_request_id()),
    ("no-request-id-400", Fault.error(400, "ValidationException").without_request_id()),
    ("garbage-200", Fault.raw(200, b"\x00\xff<<not a document>>")),
    ("garbage-200-no-id", Fault.raw(200, b"{{{").without_request_id()),
    ("html-502", Fault.raw(502, b"<html><body>Bad gateway</body></html>")),
    (
        "huge-request-id",
        Fault.status(500)
        .without_request_id()
        .with_headers(("x-amzn-RequestId", "R" * 20_000), ("x-amz-request-id", "R" * 20_000)),
    ),
]
_SERVICES = {
    "dynamodb": lambda c: c.list_tables(),
    "s3": lambda c: c.list_buckets(),
    "sqs": lambda c: c.list_queues(),
}


@pytest.fixture(scope="module")
def fault_server(moto_url: str) -> Iterator[FaultServer]:
    with FaultServer(upstream=moto_url) as server:
        yield server


@pytest.mark.parametrize("service", sorted(_SERVICES))
@pytest.mark.parametrize("fault", [f for _, f in _FAULTS], ids=[n for n, _ in _FAULTS])
def test_hostile_responses(
    fault: Fault, service: str, fault_server: FaultServer, logs: _Logs
) -> None:
    """Bad bodies and headers: same exception as without evobs; bounded, secret-free telemetry."""
    fault_server.reset()
    telemetry = _Telemetry()
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=5)
    call = _SERVICES[service]
    try:
        instrumented = telemetry.session.client(
            service, endpoint_url=fault_server.url, config=config
        )
        plain = _session().client(service, endpoint_url=fault_server.url, config=config)
        before = len(logs.events)
        fault_server.script([fault])
        seen = _outcome(lambda: call(instrumented))
        fault_server.script([fault])
        expected = _outcome(lambda: call(plain))
    finally:
        telemetry.handle.uninstrument()
    assert len(fault_server.requests) == 2
    assert seen == expected
    assert telemetry.internal_errors() == 0
    spans = telemetry.exporter.get_finished_spans()
    assert len(spans) == 1
    span = spans[0]
    assert len(span.status.description or "") <= 1024
    for value in (span.attributes or {}).values():
        assert len(str(value)) <= 1024, "unbounded attribute"
    for event in logs.events[before:]:
        assert len(repr(event)) <= 16384, "unbounded log event"
    for metric in telemetry.registry.collect():
        for sample in metric.samples:
            assert all(len(v) <= 128 for v in sample.labels.values()), sample
    text = telemetry.text(logs.events[before:])
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret not in text
    if not fault.request_ids and not fault.headers:
        assert "aws.request_id" not in (span.attributes or {})
    elif fault.headers:  # a 20 kB request id: kept, truncated
        assert str((span.attributes or {})["aws.request_id"]).startswith("RRRR")
    assert (
        sum(
            s.value
            for m in telemetry.registry.collect()
            for s in m.samples
            if s.name == "aws_sdk_calls_in_flight"
        )
        == 0
    )
