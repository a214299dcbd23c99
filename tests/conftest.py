"""Shared fixtures: the real AWS endpoint (moto's server on 127.0.0.1), an
in-memory span exporter, a fresh Prometheus registry per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import evobs

# No real credentials or endpoints ever: every test talks to 127.0.0.1.
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    AWS_EC2_METADATA_DISABLED="true",
)

collect_ignore = ["aio", "benchmarks"]


class SpanRecorder:
    """A TracerProvider with an in-memory exporter, and counts of started/ended spans."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.started = 0
        recorder = self

        class _Counter(SimpleSpanProcessor):
            def on_start(self, span: Any, parent_context: Any = None) -> None:
                recorder.started += 1

            def on_end(self, span: ReadableSpan) -> None:
                pass

        self.provider.add_span_processor(_Counter(self.exporter))

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    @property
    def ended(self) -> int:
        return len(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in self.spans]}"
        return found[0]


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's server, in-process, on a free loopback port, for the whole run."""
    from evobs.demo.aws import start_moto_server

    server, url = start_moto_server()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _bedrock_server() -> Iterator[Any]:
    """The local Bedrock Runtime endpoint, for the whole run."""
    from evobs.demo.bedrock import BedrockServer

    with BedrockServer() as server:
        yield server


@pytest.fixture
def bedrock_server(_bedrock_server: Any) -> Iterator[Any]:
    """The local Bedrock Runtime endpoint, its script and recording fresh for each test."""
    _bedrock_server.reset()
    yield _bedrock_server
    _bedrock_server.reset()


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture
def instrumented(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry
) -> Iterator[evobs.Instrumentation]:
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    try:
        yield handle
    finally:
        handle.uninstrument()


@pytest.fixture(autouse=True)
def _otel_context_restored() -> Iterator[None]:
    """Every test must leave the OpenTelemetry context exactly as it found it."""
    before = otel_context.get_current()
    yield
    assert otel_context.get_current() == before, "a test leaked an attached OTel context"


def fast_config(**retries: Any) -> Config:
    """Short timeouts and explicit retries, for the fault paths."""
    return Config(
        retries=retries or {"mode": "standard", "total_max_attempts": 3},
        connect_timeout=2,
        read_timeout=2,
    )
