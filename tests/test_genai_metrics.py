"""The GenAI metric families, filled by real Bedrock Runtime calls over HTTP.

Token usage by model, operation and token type; operation duration; time to first
chunk (streams only, when the stream ends); guardrail interventions; the model label
capped per registry. Read back from the registry and from the text exposition.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import evobs
from evobs.demo.bedrock import DEFAULT_COMPLETION, GUARDRAIL_TRIGGER, BedrockServer, count_words
from evobs.signals import _genai_metrics

from .genai_util import MODELS, client_for

NOVA = MODELS["amazon.nova"]
UNKNOWN = MODELS[None]
WORDS = count_words(DEFAULT_COMPLETION)
PROMPT = "one two three four"
MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]


class Metrics:
    """A metrics-only instrumented client of the local endpoint and its registry."""

    def __init__(self, server: BedrockServer) -> None:
        self.registry = CollectorRegistry()
        self.client = client_for(server)
        self.handle = evobs.instrument(self.client, registry=self.registry, signals=["metrics"])

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics(bedrock_server: BedrockServer) -> Iterator[Metrics]:
    found = Metrics(bedrock_server)
    try:
        yield found
    finally:
        found.handle.uninstrument()


def _gen(model: str, operation: str = "chat") -> dict[str, str]:
    return {
        "gen_ai_operation_name": operation,
        "gen_ai_system": "aws.bedrock",
        "gen_ai_request_model": model,
    }


def test_token_usage_and_duration_by_model_and_token_type(metrics: Metrics) -> None:
    """With the metrics signal alone: one Converse call gives one token-usage
    observation per token type with the counts from the response, and one duration
    observation without an error type; a model no family knows gets its usage from
    Bedrock's headers."""
    metrics.client.converse(modelId=NOVA, messages=MESSAGES)
    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}]}).encode()
    metrics.client.invoke_model(modelId=UNKNOWN, body=body)["body"].read()
    for model in (NOVA, UNKNOWN):
        tokens = "gen_ai_client_token_usage"
        assert metrics.value(f"{tokens}_sum", **_gen(model), gen_ai_token_type="input") == 4
        assert metrics.value(f"{tokens}_sum", **_gen(model), gen_ai_token_type="output") == WORDS
        assert metrics.value(f"{tokens}_count", **_gen(model), gen_ai_token_type="input") == 1
        duration = "gen_ai_client_operation_duration_seconds_count"
        assert metrics.value(duration, **_gen(model), error_type="") == 1
    # Powers of four: 9 output tokens land in the le=16 bucket, not le=4.
    out = {**_gen(NOVA), "gen_ai_token_type": "output"}
    assert metrics.value("gen_ai_client_token_usage_bucket", **out, le="4.0") == 0
    assert metrics.value("gen_ai_client_token_usage_bucket", **out, le="16.0") == 1
    assert (
        metrics.value("gen_ai_client_operation_time_to_first_chunk_seconds_count", **_gen(NOVA))
        is None
    )


def test_a_stream_is_measured_when_it_ends(metrics: Metrics) -> None:
    """ConverseStream: nothing GenAI is recorded when the call returns; reading the
    stream to its end records its duration, its usage and its time to first chunk."""
    out = metrics.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    ttfc = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    assert metrics.value(ttfc, **_gen(NOVA)) is None
    assert (
        metrics.value(
            "aws_sdk_call_duration_seconds_count",
            service="Bedrock Runtime",
            operation="ConverseStream",
            region="us-east-1",
            outcome="ok",
        )
        == 1
    )
    list(out["stream"])
    assert metrics.value(ttfc, **_gen(NOVA)) == 1
    first = metrics.value("gen_ai_client_operation_time_to_first_chunk_seconds_sum", **_gen(NOVA))
    total = metrics.value(
        "gen_ai_client_operation_duration_seconds_sum", **_gen(NOVA), error_type=""
    )
    assert first is not None and total is not None and 0 < first <= total
    assert (
        metrics.value("gen_ai_client_token_usage_sum", **_gen(NOVA), gen_ai_token_type="output")
        == WORDS
    )


def test_guardrail_interventions_are_counted(metrics: Metrics) -> None:
    """A guardrail that intervenes (Converse's ``guardrail_intervened``, ApplyGuardrail's
    ``GUARDRAIL_INTERVENED``) counts once per call; one that lets the text pass does not."""
    guardrail = {"guardrailIdentifier": "gr-orders", "guardrailVersion": "1"}
    trigger = [{"role": "user", "content": [{"text": f"please {GUARDRAIL_TRIGGER}"}]}]
    metrics.client.converse(modelId=NOVA, messages=trigger, guardrailConfig=guardrail)
    metrics.client.converse(modelId=NOVA, messages=MESSAGES, guardrailConfig=guardrail)
    for text in (f"say {GUARDRAIL_TRIGGER}", "hello"):
        metrics.client.apply_guardrail(
            guardrailIdentifier="gr-orders",
            guardrailVersion="1",
            source="INPUT",
            content=[{"text": {"text": text}}],
        )
    counter = "aws_sdk_bedrock_guardrail_interventions_total"
    assert metrics.value(counter, operation="Converse", model=NOVA, guardrail_id="gr-orders") == 1
    assert (
        metrics.value(counter, operation="ApplyGuardrail", model="", guardrail_id="gr-orders") == 1
    )
    # ApplyGuardrail is not an inference: no duration or tokens for it.
    assert "apply_guardrail" not in generate_latest(metrics.registry).decode()


def test_the_model_label_is_capped(metrics: Metrics) -> None:
    """Past the cap of distinct model ids in a registry, calls are counted under
    ``other``; the models admitted before keep their own series."""
    cap = _genai_metrics.LABEL_CAP
    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}]}).encode()
    for i in range(cap + 3):
        metrics.client.invoke_model(modelId=f"example.model-{i:03d}-v1:0", body=body)
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert metrics.value(duration, **_gen("example.model-000-v1:0"), error_type="") == 1
    assert metrics.value(duration, **_gen("other"), error_type="") == 3
    models = {
        s.labels["gen_ai_request_model"]
        for m in metrics.registry.collect()
        if m.name == "gen_ai_client_operation_duration_seconds"
        for s in m.samples
    }
    assert len(models) == cap + 1


def test_the_cap_is_shared_by_every_instrumentation_of_a_registry(
    bedrock_server: BedrockServer,
) -> None:
    """Two instrumentations into one registry share the families and the cap: 40
    distinct models from each still make at most the cap's worth of series."""
    cap = _genai_metrics.LABEL_CAP
    registry = CollectorRegistry()
    clients = [client_for(bedrock_server) for _ in range(2)]
    handles = [evobs.instrument(c, registry=registry, signals=["metrics"]) for c in clients]
    body = json.dumps({"messages": [{"role": "user", "content": PROMPT}]}).encode()
    try:
        for n, client in enumerate(clients):
            for i in range(40):
                client.invoke_model(modelId=f"example.shared-{n}-{i:02d}-v1:0", body=body)
    finally:
        for handle in handles:
            handle.uninstrument()
    counts = {
        s.labels["gen_ai_request_model"]: s.value
        for m in registry.collect()
        if m.name == "gen_ai_client_operation_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    }
    assert len(counts) == cap + 1
    assert counts["other"] == 80 - cap


def test_families_exist_from_the_first_bedrock_runtime_client(
    bedrock_server: BedrockServer,
) -> None:
    """The four GenAI families are registered with the first Bedrock Runtime client a
    session creates, before any Bedrock call, and hold no series until one is made; a
    process that never creates one neither loads nor exposes them."""
    names = (
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "aws_sdk_bedrock_guardrail_interventions_total",
    )
    registry = CollectorRegistry()
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    handle = evobs.instrument(session, registry=registry, signals=["metrics"])
    try:
        session.client("s3", endpoint_url=bedrock_server.url)
        text = generate_latest(registry).decode()
        assert not any(name in text for name in names)
        session.client("bedrock-runtime", endpoint_url=bedrock_server.url)
    finally:
        handle.uninstrument()
    text = generate_latest(registry).decode()
    for name in names:
        assert f"# TYPE {name} " in text, name
    assert "gen_ai_client_token_usage_count" not in text


def test_a_clash_with_a_genai_family_costs_only_genai(bedrock_server: BedrockServer) -> None:
    """A registry that already has a ``gen_ai_client_token_usage`` of its own: the first
    Bedrock Runtime client reports the clash once (``evobs_handler_errors_total``), the
    user's metric is untouched, and the calls still count in every other family."""
    from prometheus_client import Counter

    registry = CollectorRegistry()
    Counter("gen_ai_client_token_usage", "the application's own", registry=registry)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    handle = evobs.instrument(session, registry=registry, signals=["metrics"])
    try:
        client = session.client("bedrock-runtime", endpoint_url=bedrock_server.url)
        for _ in range(2):
            client.converse(modelId=NOVA, messages=MESSAGES)
    finally:
        handle.uninstrument()
    errors = registry.get_sample_value("evobs_handler_errors_total", {"event": "client_created"})
    assert errors == 1.0
    assert registry.get_sample_value("gen_ai_client_token_usage_total") == 0.0
    labels = {"service": "Bedrock Runtime", "operation": "Converse"}
    assert registry.get_sample_value("aws_sdk_call_attempts_total", labels) == 2.0
