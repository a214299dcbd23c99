"""The demo's GenAI assistant: Bedrock Runtime calls against the local endpoint behind
the fault proxy, rendered as GenAI spans and metrics, in the demo's summary."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from urllib3.exceptions import ProtocolError

import evobs
from evobs.demo.assistant import CLAUDE, LLAMA, NOVA, Assistant, bedrock_endpoint
from evobs.demo.bedrock import BedrockFault, BedrockServer
from evobs.demo.faults import FaultServer

from .conftest import SpanRecorder
from .faults_util import attrs, zero_backoff
from .genai_util import MODELS, client_at
from .workload_util import run_workload_until

MESSAGES = [{"role": "user", "content": [{"text": "Summarise order 42"}]}]


def test_the_fault_proxy_passes_event_streams_through(bedrock_server: BedrockServer) -> None:
    """Through the fault proxy, an event stream arrives chunked as the endpoint sends it
    (not buffered into one body), every event intact; a stream the endpoint breaks off
    breaks the client's connection too."""
    with FaultServer(upstream=bedrock_server.url) as proxy:
        client = client_at(proxy.url)
        out = client.converse_stream(modelId=MODELS["amazon.nova"], messages=MESSAGES)
        headers = out["ResponseMetadata"]["HTTPHeaders"]
        events = list(out["stream"])
        direct = list(
            client_at(bedrock_server.url).converse_stream(
                modelId=MODELS["amazon.nova"], messages=MESSAGES
            )["stream"]
        )
        bedrock_server.script([BedrockFault.cut(after=2)])
        broken = client.converse_stream(modelId=MODELS["amazon.nova"], messages=MESSAGES)
        with pytest.raises(ProtocolError):
            list(broken["stream"])
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    assert events == direct
    assert proxy.requests[0].status == 200 and proxy.requests[0].request_id


def test_the_assistant_makes_genai_spans_and_metrics(
    moto_url: str, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo workload with its assistant: every Bedrock operation is called, each span
    is a GenAI span that ended (streams included), throttles injected at the proxy show
    as throttled attempts, and tokens are counted by model."""
    from opentelemetry.sdk.trace import TracerProvider

    from evobs.demo.summary import SpanCollector
    from evobs.demo.workload import EXPECTED_ERRORS, Workload, demo_session

    zero_backoff(monkeypatch)
    collector = SpanCollector()
    recorder = SpanRecorder()
    provider: TracerProvider = recorder.provider
    provider.add_span_processor(collector)  # type: ignore[arg-type]
    session = demo_session()
    handle = evobs.instrument(
        session, tracer_provider=provider, registry=registry, expected_errors=EXPECTED_ERRORS
    )
    try:
        with FaultServer(upstream=moto_url) as faults, bedrock_endpoint() as (server, proxy):
            assistant = Assistant(session, proxy.url, proxy=proxy, server=server, think=0)
            # Every fault kind early: a short run still shows each.
            assistant.chaos.rates = (0.3, 0.1, 0.3)
            workload = Workload(
                session,
                faults.url,
                faults=faults,
                seed=3,
                multipart=False,
                tracer_provider=provider,
                assistant=assistant,
            )
            _run_until_seen(workload, collector)
    finally:
        handle.uninstrument()
    assert workload.tally.failures == {}
    bedrock = [s for s in recorder.spans if s.attributes.get("rpc.service") == "Bedrock Runtime"]
    assert {s.attributes["rpc.method"] for s in bedrock} == set(_OPERATIONS)
    names = {s.name for s in bedrock}
    assert {f"chat {CLAUDE}", f"chat {NOVA}", f"text_completion {LLAMA}"} <= names
    assert "Bedrock Runtime.ApplyGuardrail" in names
    streams = [
        s
        for s in bedrock
        if s.attributes["rpc.method"].endswith("Stream")
        and s.attributes.get("http.response.status_code") == 200
    ]
    assert streams and all("aws.sdk.stream.end" in attrs(s) for s in streams)
    injected = assistant.chaos.injected
    assert sum(injected.values()) > 0
    stats = {(s.service, s.operation): s for s in collector.by_operation()}
    throttled = sum(
        s.throttled for (service, _), s in stats.items() if service == "Bedrock Runtime"
    )
    assert throttled >= injected["throttle"]
    tokens = {
        sample.labels["gen_ai_request_model"]
        for metric in registry.collect()
        if metric.name == "gen_ai_client_token_usage"
        for sample in metric.samples
        if sample.name.endswith("_count")
    }
    assert {CLAUDE, NOVA, LLAMA} <= tokens


_OPERATIONS = (
    "Converse",
    "ConverseStream",
    "InvokeModel",
    "InvokeModelWithResponseStream",
    "ApplyGuardrail",
)


def _run_until_seen(workload: Any, collector: Any) -> None:
    """Run the workload until every Bedrock operation was called and a throttle was
    injected."""

    def seen() -> bool:
        called = {s.operation for s in collector.by_operation() if s.service == "Bedrock Runtime"}
        return called >= set(_OPERATIONS) and workload.assistant.chaos.injected["throttle"] > 0

    run_workload_until(workload, seen)
