"""Process-wide mode (``evobs.instrument_all``) and zero-code instrumentation through the
OpenTelemetry distribution (``opentelemetry-instrument``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.session
import pytest
from prometheus_client import CollectorRegistry

import evobs
from evobs import _install

from .conftest import SpanRecorder
from .otlp_receiver import otlp_receiver

ORIGINAL_INIT = botocore.session.Session.__init__
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
def process(
    recorder: SpanRecorder, registry: CollectorRegistry
) -> Iterator[evobs.ProcessInstrumentation]:
    handle = evobs.instrument_all(tracer_provider=recorder.provider, registry=registry)
    try:
        yield handle
    finally:
        evobs.uninstrument_all()


def _library_calls(moto_url: str) -> None:
    """What a third-party library does: its own sessions, made after instrument_all()."""
    boto3.Session(region_name="us-east-1", **CREDENTIALS).client(
        "sqs", endpoint_url=moto_url
    ).list_queues()
    botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=moto_url, **CREDENTIALS
    ).list_tables()


def test_sessions_built_by_other_code_are_traced(
    process: evobs.ProcessInstrumentation, recorder: SpanRecorder, moto_url: str
) -> None:
    """A module that builds its own boto3.Session() and botocore session is traced."""
    _library_calls(moto_url)
    assert [s.name for s in recorder.spans] == ["SQS.ListQueues", "DynamoDB.ListTables"]
    assert process.sessions >= 2


def test_uninstrument_all_leaves_nothing_registered(
    recorder: SpanRecorder, registry: CollectorRegistry, moto_url: str
) -> None:
    """The exact inverse: Session.__init__ is botocore's own again, sessions it
    instrumented have no evobs handler left, and nothing more is recorded."""
    evobs.instrument_all(tracer_provider=recorder.provider, registry=registry)
    session = boto3.Session(region_name="us-east-1", **CREDENTIALS)
    client = session.client("sqs", endpoint_url=moto_url)
    evobs.uninstrument_all()
    assert botocore.session.Session.__init__ is ORIGINAL_INIT
    emitter = session._session.get_component("event_emitter")
    assert emitter not in _install.INSTALLED
    # botocore keeps every handler registered with a unique id by that id.
    ids = getattr(emitter, "_emitter", emitter)._unique_id_handlers
    assert not [uid for uid in ids if str(uid).startswith("evobs.")]
    client.list_queues()
    session.client("sqs", endpoint_url=moto_url).list_queues()
    _library_calls(moto_url)
    assert recorder.spans == []


def test_per_session_instrument_wins_for_its_session(
    process: evobs.ProcessInstrumentation,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    moto_url: str,
) -> None:
    """instrument(session, ...) on a session process-wide mode already instrumented
    replaces that instrumentation with its own options, for that session only."""
    other = SpanRecorder()
    session = boto3.Session(region_name="us-east-1", **CREDENTIALS)
    own = evobs.instrument(session, tracer_provider=other.provider, registry=CollectorRegistry())
    try:
        session.client("sqs", endpoint_url=moto_url).list_queues()
        _library_calls(moto_url)
    finally:
        own.uninstrument()
    assert [s.name for s in other.spans] == ["SQS.ListQueues"]
    assert [s.name for s in recorder.spans] == ["SQS.ListQueues", "DynamoDB.ListTables"]


def test_boto3_default_session_is_instrumented(
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """boto3.client(...) goes through boto3's default session: instrumented whether it
    existed before instrument_all() or is created after."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session(region_name="us-east-1", **CREDENTIALS)
    evobs.instrument_all(tracer_provider=recorder.provider, registry=registry)
    try:
        boto3.client("sqs", endpoint_url=moto_url).list_queues()
        boto3.setup_default_session(region_name="us-east-1", **CREDENTIALS)  # a new one
        boto3.client("sqs", endpoint_url=moto_url).list_queues()
    finally:
        evobs.uninstrument_all()
    assert [s.name for s in recorder.spans] == ["SQS.ListQueues", "SQS.ListQueues"]


def test_instrument_all_is_idempotent_and_refuses_other_options(
    process: evobs.ProcessInstrumentation, recorder: SpanRecorder, registry: CollectorRegistry
) -> None:
    """Same options: the same handle. Other options: a clear error naming the inverse."""
    assert evobs.instrument_all(tracer_provider=recorder.provider, registry=registry) is process
    with pytest.raises(ValueError, match="uninstrument_all"):
        evobs.instrument_all(
            tracer_provider=recorder.provider, registry=registry, capture_params=True
        )


def test_one_set_of_signals_for_every_session(
    process: evobs.ProcessInstrumentation, moto_url: str
) -> None:
    """Sessions built per request share the process-wide signals (one tracer, one set of
    metric children): each new session costs a registration only."""
    sessions = [boto3.Session(region_name="us-east-1", **CREDENTIALS) for _ in range(5)]
    instrumentations = [
        _install.INSTALLED[s._session.get_component("event_emitter")] for s in sessions
    ]
    assert {id(i.outputs) for i in instrumentations} == {id(process.outputs)}
    assert len({id(i.handlers) for i in instrumentations}) == 5


# -- zero code: opentelemetry-instrument --------------------------------------------------

APP = """
import boto3

client = boto3.client("sqs", region_name="us-east-1")
url = client.create_queue(QueueName="zero-code")["QueueUrl"]
print(url in client.list_queues()["QueueUrls"])
"""


def test_opentelemetry_instrument_loads_evobs_with_no_code_change(
    moto_url: str, tmp_path: Path
) -> None:
    """An application with no evobs import, run under ``opentelemetry-instrument``, sends
    evobs's spans to the OTLP receiver: the entry point instruments the process."""
    pytest.importorskip("opentelemetry.distro")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    command = Path(sys.executable).with_name("opentelemetry-instrument")
    with otlp_receiver() as receiver:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": moto_url,
            "OTEL_SERVICE_NAME": "zero-code-app",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
            # Only evobs: the peer instrumentation may be installed in this environment.
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "botocore",
            "EVOBS_SIGNALS": "traces",
        }
        done = subprocess.run(
            [str(command), sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "True"
        spans = receiver.wait_for(2)
    names = sorted(s.name for s in spans)
    assert names == ["SQS.CreateQueue", "SQS.ListQueues"]
    assert {s.resource.get("service.name") for s in spans} == {"zero-code-app"}
    assert all(s.scope == "evobs" for s in spans)
