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


def test_both_instrumentations_active_is_said_once(
    session: boto3.Session,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With opentelemetry-instrumentation-botocore active too, every call would get two
    call spans: evobs says so once in its log, naming how to pick one."""
    peer = pytest.importorskip("opentelemetry.instrumentation.botocore")
    from evobs import _install as install_module

    monkeypatch.setattr(install_module, "_PEER_NOTED", [False])
    caplog.set_level("WARNING", logger="evobs")
    instrumentor = peer.BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=recorder.provider)
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        session.client("sqs", region_name="us-east-1")
        session.client("s3", region_name="us-east-1")
    finally:
        handle.uninstrument()
        instrumentor.uninstrument()
    said = [r for r in caplog.records if "evobs.peer_instrumentation_active" in r.getMessage()]
    assert len(said) == 1
    assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in said[0].getMessage()


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, {}),
        (
            {
                "EVOBS_SIGNALS": "traces, metrics",
                "EVOBS_CAPTURE_PARAMS": "true",
                "EVOBS_PROPAGATE_MESSAGES": "off",
                "EVOBS_SLOW_CALL_SECONDS": "2.5",
                "EVOBS_EXPECTED_ERRORS": (
                    "S3.HeadObject=404;*=ConditionalCheckFailedException,NoSuchKey"
                ),
            },
            {
                "signals": ("traces", "metrics"),
                "capture_params": True,
                "propagate_messages": False,
                "slow_call_seconds": 2.5,
                "expected_errors": {
                    "S3.HeadObject": {"404"},
                    "*": {"ConditionalCheckFailedException", "NoSuchKey"},
                },
            },
        ),
    ],
)
def test_options_from_the_environment(env: dict[str, str], options: dict[str, object]) -> None:
    """Zero-code instrumentation reads its options from EVOBS_* variables, and they are
    valid instrument() options."""
    from evobs._options import Options, options_from_env

    assert options_from_env(env) == options
    Options(**options_from_env(env))


@pytest.mark.parametrize(
    "env",
    [
        {"EVOBS_CAPTURE_PARAMS": "maybe"},
        {"EVOBS_SLOW_CALL_SECONDS": "soon"},
        {"EVOBS_EXPECTED_ERRORS": "S3.HeadObject"},
    ],
)
def test_malformed_environment_options_name_the_variable(env: dict[str, str]) -> None:
    """A malformed variable is a clear error naming it, not a silent default."""
    from evobs._options import options_from_env

    with pytest.raises(ValueError, match=next(iter(env))):
        options_from_env(env)
