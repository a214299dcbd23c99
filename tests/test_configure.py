"""``evobs.configure()``: environment variables, the three outputs, span queue sizing and
drop accounting, bounded shutdown."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import structlog
from botocore.awsrequest import AWSResponse
from prometheus_client import CollectorRegistry, Counter

import evobs
from evobs._configure import DEFAULT_SPAN_QUEUE_SIZE, resolve_otlp_endpoint
from evobs._log import logger as evobs_logger

from .otlp_receiver import OTLPReceiver, otlp_receiver

_OTEL_VARS = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as server:
        yield server


def _quiet(registry: CollectorRegistry, **kwargs: Any) -> evobs.Telemetry:
    """configure() with only what the test names switched on, never the global provider."""
    options: dict[str, Any] = {
        "traces": None,
        "metrics_port": None,
        "logs": None,
        "registry": registry,
        "set_global": False,
    }
    options.update(kwargs)
    return evobs.configure(**options)


class _Raw(io.BytesIO):
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _canned_dynamodb(session: boto3.Session) -> Any:
    """A DynamoDB client answered in before-send with a canned 200 (every event fires,
    no network): the tight loop of the issue's measurement."""
    client = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        return AWSResponse(
            request.url,
            200,
            {"x-amzn-RequestId": "canned", "Content-Type": "application/x-amz-json-1.0"},
            _Raw(b"{}"),
        )

    client.meta.events.register("before-send.dynamodb.GetItem", answer)
    return client


# -- environment ----------------------------------------------------------------------


def test_service_name_from_env_and_argument(
    monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    """OTEL_SERVICE_NAME names the service when no argument does; the argument wins over it;
    other OTEL_RESOURCE_ATTRIBUTES are kept."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=payments")
    env_named = _quiet(registry, traces="console")
    arg_named = _quiet(registry, traces="console", service_name="from-arg")
    try:
        assert env_named.tracer_provider is not None and arg_named.tracer_provider is not None
        env_attrs = env_named.tracer_provider.resource.attributes
        arg_attrs = arg_named.tracer_provider.resource.attributes
        assert env_attrs["service.name"] == "from-env"
        assert arg_attrs["service.name"] == "from-arg"
        assert env_attrs["deployment.environment"] == "test"
        assert arg_attrs["team"] == "payments"
    finally:
        env_named.shutdown()
        arg_named.shutdown()


def test_service_name_from_resource_attributes(
    monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    """service.name in OTEL_RESOURCE_ATTRIBUTES is honoured when nothing else names it."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=billing")
    telemetry = _quiet(registry, traces="console")
    try:
        assert telemetry.tracer_provider is not None
        assert telemetry.tracer_provider.resource.attributes["service.name"] == "billing"
    finally:
        telemetry.shutdown()


def test_otlp_endpoint_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """A base URL gets /v1/traces; a URL with a path is used as is; the argument beats
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which beats OTEL_EXPORTER_OTLP_ENDPOINT."""
    assert resolve_otlp_endpoint() == "http://localhost:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert resolve_otlp_endpoint() == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom")
    assert resolve_otlp_endpoint() == "http://traces:9999/custom"
    assert resolve_otlp_endpoint("http://jaeger:4318") == "http://jaeger:4318/v1/traces"
    assert resolve_otlp_endpoint("http://gw/otlp/v1/traces") == "http://gw/otlp/v1/traces"


def test_env_endpoint_receives_spans(
    monkeypatch: pytest.MonkeyPatch,
    receiver: OTLPReceiver,
    registry: CollectorRegistry,
    session: boto3.Session,
) -> None:
    """With only OTEL_EXPORTER_OTLP_ENDPOINT set, spans arrive at that collector."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    telemetry = _quiet(registry, traces="otlp", service_name="env-endpoint")
    telemetry.instrument(session)
    client = _canned_dynamodb(session)
    client.get_item(TableName="t", Key={"pk": {"S": "1"}})
    assert telemetry.shutdown(timeout=10)
    (span,) = receiver.named("DynamoDB.GetItem")
    assert span.resource["service.name"] == "env-endpoint"
    assert span.attributes["rpc.method"] == "GetItem"


def test_sdk_disabled_installs_no_provider(
    monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    """OTEL_SDK_DISABLED=true: no provider is built (metrics and logs still work)."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    stream = io.StringIO()
    telemetry = _quiet(registry, traces="otlp", logs="json", log_stream=stream)
    try:
        assert telemetry.tracer_provider is None
        assert telemetry.otlp_endpoint is None
        evobs_logger.warning("test.sdk_disabled")
        assert "test.sdk_disabled" in stream.getvalue()
    finally:
        telemetry.shutdown()


def test_global_provider_only_when_none_set() -> None:
    """The first configure() becomes the global provider; a second one does not replace
    it (checked in a fresh interpreter: the global provider can be set once per process)."""
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        import evobs
        first = evobs.configure("one", traces="console", metrics_port=None, logs=None)
        second = evobs.configure("two", traces="console", metrics_port=None, logs=None)
        assert first.is_global and not second.is_global, (first.is_global, second.is_global)
        assert trace.get_tracer_provider() is first.tracer_provider
        second.shutdown(); first.shutdown()
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_spans_are_flushed_at_exit_without_shutdown(receiver: OTLPReceiver) -> None:
    """A process that never calls shutdown() still exports its queued spans at exit
    (configure's own exit handler, bounded like shutdown())."""
    script = textwrap.dedent(
        f"""
        import evobs
        telemetry = evobs.configure(
            "exiting", traces="otlp", otlp_endpoint="{receiver.base_url}",
            metrics_port=None, logs=None,
        )
        telemetry.tracer_provider.get_tracer("test").start_span("before-exit").end()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    (span,) = receiver.wait_for(1)
    assert span.name == "before-exit" and span.resource["service.name"] == "exiting"


def test_invalid_arguments_are_rejected(registry: CollectorRegistry) -> None:
    """Unknown outputs and bad ports fail at configure() time with a clear error."""
    with pytest.raises(ValueError, match="traces"):
        _quiet(registry, traces="jaeger")
    with pytest.raises(ValueError, match="logs"):
        _quiet(registry, logs="xml")
    with pytest.raises(ValueError, match="metrics_port"):
        _quiet(registry, metrics_port=-1)


# -- logs ---------------------------------------------------------------------------------


def test_json_logs_go_to_the_evobs_logger_only(registry: CollectorRegistry) -> None:
    """logs="json" adds one handler to the ``evobs`` logger, renders structlog and plain
    records as JSON, leaves the root logger and structlog's global config alone, and
    shutdown removes the handler."""
    root_handlers = list(logging.getLogger().handlers)
    structlog_config = structlog.get_config()
    stream = io.StringIO()
    telemetry = _quiet(registry, logs="json", log_stream=stream)
    try:
        ours = [
            h for h in logging.getLogger("evobs").handlers if not isinstance(h, logging.NullHandler)
        ]
        assert len(ours) == 1
        evobs_logger.warning(
            "aws.call", service="S3", operation="GetObject", outcome="client_error"
        )
        evobs_logger.debug("too.verbose")
        logging.getLogger("evobs.child").info("plain %s", "record")
        logging.getLogger("other").warning("not ours")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["aws.call", "plain record"]
        assert lines[0]["service"] == "S3" and lines[0]["level"] == "warning"
        assert lines[0]["timestamp"].endswith("Z")
        assert lines[1]["level"] == "info" and lines[1]["logger"] == "evobs.child"
        assert logging.getLogger().handlers == root_handlers
        assert structlog.get_config() == structlog_config
    finally:
        telemetry.shutdown()
    assert not [
        h for h in logging.getLogger("evobs").handlers if not isinstance(h, logging.NullHandler)
    ]
    evobs_logger.warning("after.shutdown")
    assert "after.shutdown" not in stream.getvalue()


def test_configuring_logs_twice_keeps_one_handler(registry: CollectorRegistry) -> None:
    """A second configure(logs=...) replaces evobs's handler instead of adding another."""
    first, second = io.StringIO(), io.StringIO()
    one = _quiet(registry, logs="json", log_stream=first)
    two = _quiet(registry, logs="json", log_stream=second)
    try:
        evobs_logger.warning("once")
        assert first.getvalue() == ""
        assert second.getvalue().count("once") == 1
    finally:
        two.shutdown()
        one.shutdown()


def test_console_logs(registry: CollectorRegistry) -> None:
    """logs="console" renders with structlog's ConsoleRenderer (key=value, not JSON)."""
    stream = io.StringIO()
    telemetry = _quiet(registry, logs="console", log_stream=stream)
    try:
        evobs_logger.warning("aws.retry", service="DynamoDB", attempt=2)
        text = stream.getvalue()
        assert "aws.retry" in text and "service=DynamoDB" in text and "attempt=2" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    finally:
        telemetry.shutdown()


# -- metrics ------------------------------------------------------------------------------


def test_metrics_server_serves_the_registry(registry: CollectorRegistry) -> None:
    """metrics_port=0 serves the registry on a free loopback port; shutdown frees it."""
    Counter("configure_probe", "probe", registry=registry).inc(3)
    telemetry = _quiet(registry, metrics_port=0)
    port = telemetry.metrics_port
    assert port and telemetry.metrics_url == f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(telemetry.metrics_url, timeout=5) as response:
        body = response.read().decode()
    assert "configure_probe_total 3.0" in body
    telemetry.shutdown()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_metrics_port_in_use_is_a_clear_error(registry: CollectorRegistry) -> None:
    """A taken port raises at configure() time, naming the port; nothing is left behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stream = io.StringIO()
        with pytest.raises(OSError, match=f"{port}.*in use"):
            _quiet(registry, metrics_port=port, traces="console", logs="json", log_stream=stream)
    assert not [
        h for h in logging.getLogger("evobs").handlers if not isinstance(h, logging.NullHandler)
    ]


# -- traces: queue sizing, drops, console, instrument= --------------------------------------


def test_burst_of_calls_loses_no_spans(
    session: boto3.Session, receiver: OTLPReceiver, registry: CollectorRegistry
) -> None:
    """5000 calls in a tight loop while the collector is not answering (the export thread
    is stuck on its first batch): configure()'s queue holds the whole burst, none is counted
    as dropped, and all 5000 spans arrive once the collector answers. With the SDK's
    default queue (2048) the same run loses 2440 of them."""
    telemetry = _quiet(
        registry, traces="otlp", otlp_endpoint=receiver.base_url, export_timeout=120.0
    )
    processor = telemetry._span_processor
    assert processor is not None and processor._size == DEFAULT_SPAN_QUEUE_SIZE
    telemetry.instrument(session)
    client = _canned_dynamodb(session)
    made = 5000
    receiver.hold()
    try:
        for i in range(made):
            client.get_item(TableName="t", Key={"pk": {"S": str(i)}})
        assert telemetry.spans_dropped == 0
    finally:
        receiver.release()
    assert telemetry.shutdown(timeout=60)
    received = receiver.wait_for(made)
    assert len(received) == made
    assert len({s.span_id for s in received}) == made
    assert telemetry.spans_dropped == 0


def test_drops_are_counted_when_the_queue_is_full(
    session: boto3.Session, registry: CollectorRegistry
) -> None:
    """With a tiny queue and a collector that never answers, the spans that do not fit are
    counted in evobs_spans_dropped_total (never silent), and calls are unaffected."""
    with otlp_receiver("hang") as hanging:
        telemetry = _quiet(
            registry, traces="otlp", otlp_endpoint=hanging.base_url, span_queue_size=8
        )
        telemetry.instrument(session)
        client = _canned_dynamodb(session)
        made = 200
        for i in range(made):
            assert client.get_item(TableName="t", Key={"pk": {"S": str(i)}})["ResponseMetadata"]
        dropped = telemetry.spans_dropped
        exported = registry.get_sample_value("evobs_spans_dropped_total")
        assert exported == dropped
        # At most one batch (8) is with the hung exporter and 8 wait in the queue.
        assert made - 16 <= dropped <= made
        telemetry.shutdown(timeout=0.5)


def test_console_traces(session: boto3.Session, capsys: pytest.CaptureFixture[str]) -> None:
    """traces="console" prints finished spans to stdout (off-thread, flushed at shutdown)."""
    telemetry = _quiet(CollectorRegistry(), traces="console", service_name="console-demo")
    telemetry.instrument(session)
    _canned_dynamodb(session).get_item(TableName="t", Key={"pk": {"S": "1"}})
    assert telemetry.shutdown(timeout=10)
    out = capsys.readouterr().out
    assert '"name": "DynamoDB.GetItem"' in out
    assert '"service.name": "console-demo"' in out


def test_instrument_argument_and_shutdown_uninstruments(
    session: boto3.Session, receiver: OTLPReceiver, registry: CollectorRegistry
) -> None:
    """instrument=session instruments it with configure()'s provider; shutdown undoes it,
    so later calls make no spans."""
    telemetry = _quiet(registry, traces="otlp", otlp_endpoint=receiver.base_url, instrument=session)
    client = _canned_dynamodb(session)
    client.get_item(TableName="t", Key={"pk": {"S": "1"}})
    assert telemetry.shutdown(timeout=10)
    client.get_item(TableName="t", Key={"pk": {"S": "2"}})
    assert len(receiver.named("DynamoDB.GetItem")) == 1
    assert telemetry.spans_dropped == 0  # uninstrumented: no span, so nothing dropped
    assert telemetry.tracer_provider is not None
    telemetry.tracer_provider.get_tracer("late").start_span("after-shutdown").end()
    assert telemetry.spans_dropped == 1  # the SDK discards it: counted, not silent
    assert telemetry.shutdown() is True  # idempotent
