"""Converse and ConverseStream over real HTTP: request attributes from botocore's own
params, response facts from the parsed response and the stream's events, and the errors
a stream can end with."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EventStreamError
from urllib3.exceptions import ProtocolError

from evobs import genai
from evobs.demo.bedrock import DEFAULT_COMPLETION, BedrockFault, BedrockServer, count_words
from evobs.genai import semconv

from .genai_util import MODELS, Probe, client_for

MODEL = MODELS["anthropic.claude"]
PROMPT = "Tell me a story about a fox"
WORDS = count_words(DEFAULT_COMPLETION)
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "lookup",
                "description": "Looks things up.",
                "inputSchema": {
                    "json": {"type": "object", "properties": {"query": {"type": "string"}}}
                },
            }
        }
    ]
}


def _messages(text: str = PROMPT) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def _converse_kwargs(**extra: Any) -> dict[str, Any]:
    return {
        "modelId": MODEL,
        "messages": _messages(),
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.2,
            "topP": 0.8,
            "stopSequences": ["END"],
        },
        "additionalModelRequestFields": {"top_k": 5},
        **extra,
    }


def test_converse_request_attributes(bedrock_server: BedrockServer) -> None:
    """Converse: chat, the provider, the model, every inferenceConfig parameter, top_k from
    the model-specific fields, the guardrail id, and the span name chat {model}. Converse
    has one shape for every model: no family."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    client.converse(
        **_converse_kwargs(guardrailConfig={"guardrailIdentifier": "gr-1", "guardrailVersion": "2"})
    )
    assert probe.request.attributes == {
        "gen_ai.operation.name": "chat",
        semconv.provider_key(): "aws.bedrock",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.8,
        "gen_ai.request.stop_sequences": ["END"],
        "gen_ai.request.top_k": 5.0,
        "aws.bedrock.guardrail.id": "gr-1",
    }
    assert probe.request.span_name == f"chat {MODEL}"
    assert probe.request.metric_labels() == ("chat", "aws.bedrock", MODEL)


def test_converse_response(bedrock_server: BedrockServer) -> None:
    """Converse: finish reason and usage from the parsed response; no response id (Converse
    returns none); max_tokens when the limit cuts the answer."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    out = client.converse(**_converse_kwargs())
    client.converse(modelId=MODEL, messages=_messages(), inferenceConfig={"maxTokens": 2})
    full, cut = probe.responses
    assert full.attributes() == {
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": out["usage"]["inputTokens"],
        "gen_ai.usage.output_tokens": WORDS,
    }
    assert cut.finish_reasons == ["max_tokens"] and cut.output_tokens == 2


def test_converse_tool_use_and_guardrail(bedrock_server: BedrockServer) -> None:
    """tool_use and guardrail_intervened finish reasons; the guardrail counts as an
    intervention."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    client.converse(modelId=MODEL, messages=_messages(), toolConfig=TOOLS)
    client.converse(
        modelId=MODEL,
        messages=_messages("FORBIDDEN things"),
        guardrailConfig={"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
    )
    tool, guarded = probe.responses
    assert tool.finish_reasons == ["tool_use"] and not tool.guardrail_intervened
    assert guarded.finish_reasons == ["guardrail_intervened"] and guarded.guardrail_intervened


def test_converse_cache_tokens_count_as_input() -> None:
    """Cached input tokens are part of gen_ai.usage.input_tokens (as the conventions say);
    the latest generation also reports them apart."""
    parsed = {
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 10,
            "outputTokens": 4,
            "totalTokens": 44,
            "cacheReadInputTokens": 20,
            "cacheWriteInputTokens": 10,
        },
    }
    response = genai.read_response(
        genai.Request("Converse", "chat", MODEL), parsed, genai.Settings()
    )
    assert response.input_tokens == 40
    latest = response.attributes(semconv.LATEST)
    assert latest["gen_ai.usage.cache_read.input_tokens"] == 20
    assert latest["gen_ai.usage.cache_creation.input_tokens"] == 10
    assert "gen_ai.usage.cache_read.input_tokens" not in response.attributes(semconv.DEFAULT)


def test_prompt_router_names_the_response_model() -> None:
    """A prompt router's invoked model becomes gen_ai.response.model."""
    parsed = {
        "stopReason": "end_turn",
        "trace": {"promptRouter": {"invokedModelId": "arn:aws:bedrock:model/x"}},
    }
    response = genai.read_response(
        genai.Request("Converse", "chat", "router"), parsed, genai.Settings()
    )
    assert response.response_model == "arn:aws:bedrock:model/x"


def test_converse_stream_to_the_end(bedrock_server: BedrockServer) -> None:
    """ConverseStream read to the end: one summary (completed) with the finish reason, the
    usage from the metadata event, the number of events and a time to first chunk."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    out = client.converse_stream(**_converse_kwargs())
    assert probe.summaries == []  # the call returned, the stream is not read yet
    events = list(out["stream"])
    summary = probe.summary
    assert (summary.end, summary.outcome, summary.events) == ("completed", "ok", len(events))
    assert summary.response.finish_reasons == ["end_turn"]
    assert summary.response.output_tokens == WORDS
    assert summary.response.input_tokens == events[-1]["metadata"]["usage"]["inputTokens"]
    assert summary.time_to_first_chunk is not None and summary.time_to_first_chunk >= 0
    assert probe.request.streaming


def test_stream_attributes_by_generation(bedrock_server: BedrockServer) -> None:
    """The latest generation adds gen_ai.request.stream and
    gen_ai.response.time_to_first_chunk; v1.36 has neither, and names the provider
    gen_ai.system."""
    client = client_for(bedrock_server)
    default = Probe(client, genai.Settings(generation=semconv.DEFAULT))
    latest_client = client_for(bedrock_server)
    latest = Probe(latest_client, genai.Settings(generation=semconv.LATEST))
    for c in (client, latest_client):
        for _ in c.converse_stream(modelId=MODEL, messages=_messages())["stream"]:
            pass
    old_request, new_request = default.request.attributes, latest.request.attributes
    assert (
        old_request["gen_ai.system"] == "aws.bedrock" and "gen_ai.provider.name" not in old_request
    )
    assert (
        new_request["gen_ai.provider.name"] == "aws.bedrock" and "gen_ai.system" not in new_request
    )
    assert (
        "gen_ai.request.stream" not in old_request and new_request["gen_ai.request.stream"] is True
    )
    old_end = default.summary.attributes(semconv.DEFAULT)
    new_end = latest.summary.attributes(semconv.LATEST)
    assert "gen_ai.response.time_to_first_chunk" not in old_end
    assert new_end["gen_ai.response.time_to_first_chunk"] == latest.summary.time_to_first_chunk


@pytest.mark.parametrize(
    ("exception", "error_type", "status", "outcome"),
    [
        ("modelStreamErrorException", "ModelStreamErrorException", 424, "client_error"),
        ("throttlingException", "ThrottlingException", 429, "throttled"),
        ("internalServerException", "InternalServerException", 500, "server_error"),
        ("validationException", "ValidationException", 400, "client_error"),
    ],
)
def test_exception_inside_the_stream(
    bedrock_server: BedrockServer, exception: str, error_type: str, status: int, outcome: str
) -> None:
    """An exception frame mid-stream ends the stream as an error: the modeled error type
    and status, evobs's outcome word for it, the redacted message, and the events seen
    before it; the application still gets botocore's EventStreamError."""
    bedrock_server.script([BedrockFault.stream_error(exception, after=3, message="stream broke")])
    client = client_for(bedrock_server)
    probe = Probe(client)
    stream = client.converse_stream(modelId=MODEL, messages=_messages())["stream"]
    with pytest.raises(EventStreamError):
        for _ in stream:
            pass
    summary = probe.summary
    assert (summary.end, summary.events) == ("error", 3)
    assert (summary.error_type, summary.error_code) == (error_type, exception)
    assert (summary.http_status, summary.outcome) == (status, outcome)
    assert summary.error_message == "stream broke"
    assert summary.response.output_tokens is None  # the metadata event never came
    assert summary.attributes()["error.type"] == error_type


def test_broken_connection_inside_the_stream(bedrock_server: BedrockServer) -> None:
    """A connection reset mid-stream: error, connection_error, the urllib3 exception type;
    the application sees the same ProtocolError it would without evobs."""
    bedrock_server.script([BedrockFault.cut(after=2)])
    client = client_for(bedrock_server)
    probe = Probe(client)
    stream = client.converse_stream(modelId=MODEL, messages=_messages())["stream"]
    with pytest.raises(ProtocolError):
        for _ in stream:
            pass
    summary = probe.summary
    assert (summary.end, summary.outcome, summary.error_type) == (
        "error",
        "connection_error",
        "ProtocolError",
    )
    assert summary.events == 2


def test_invoke_model_stream_exception(bedrock_server: BedrockServer) -> None:
    """InvokeModelWithResponseStream's own exception member (modelTimeoutException) is
    classified from its model (408: client_error)."""
    bedrock_server.script([BedrockFault.stream_error("modelTimeoutException", after=1)])
    client = client_for(bedrock_server)
    probe = Probe(client)
    out = client.invoke_model_with_response_stream(
        modelId=MODELS["meta.llama"], body=b'{"prompt": "hi"}'
    )
    with pytest.raises(EventStreamError):
        list(out["body"])
    summary = probe.summary
    assert (summary.error_type, summary.http_status, summary.outcome) == (
        "ModelTimeoutException",
        408,
        "client_error",
    )
