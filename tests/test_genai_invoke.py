"""InvokeModel and InvokeModelWithResponseStream per model family, over real HTTP: the
request attributes from each family's documented body, and the response facts (finish
reasons, token usage, ids) from its response body or streamed chunks."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from evobs import genai
from evobs.demo.bedrock import DEFAULT_COMPLETION, BedrockServer, count_words
from evobs.genai import semconv

from .genai_util import MODELS, Probe, client_for

WORDS = count_words(DEFAULT_COMPLETION)
PROMPT = "Tell me a story about a fox"

#: A documented request body per family, every parameter it has set.
BODIES: dict[str | None, dict[str, Any]] = {
    "anthropic.claude": {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 200,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["STOP"],
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    },
    "amazon.nova": {
        "schemaVersion": "messages-v1",
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
        "inferenceConfig": {
            "maxTokens": 200,
            "temperature": 0.5,
            "topP": 0.9,
            "topK": 40,
            "stopSequences": ["STOP"],
        },
    },
    "amazon.titan-text": {
        "inputText": PROMPT,
        "textGenerationConfig": {
            "maxTokenCount": 200,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["STOP"],
        },
    },
    "meta.llama": {"prompt": PROMPT, "max_gen_len": 200, "temperature": 0.5, "top_p": 0.9},
    "mistral": {
        "prompt": f"<s>[INST] {PROMPT} [/INST]",
        "max_tokens": 200,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["STOP"],
    },
    "cohere.command-r": {
        "message": PROMPT,
        "chat_history": [
            {"role": "USER", "message": "Hi"},
            {"role": "CHATBOT", "message": "Hello"},
        ],
        "preamble": "Be brief.",
        "max_tokens": 200,
        "temperature": 0.5,
        "p": 0.9,
        "k": 40,
        "stop_sequences": ["STOP"],
        "seed": 7,
    },
    "cohere.command": {
        "prompt": PROMPT,
        "max_tokens": 200,
        "temperature": 0.5,
        "p": 0.9,
        "k": 40,
        "stop_sequences": ["STOP"],
    },
    None: {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200},
}
OPERATION = {
    "anthropic.claude": "chat",
    "amazon.nova": "chat",
    "amazon.titan-text": "text_completion",
    "meta.llama": "text_completion",
    "mistral": "text_completion",
    "cohere.command-r": "chat",
    "cohere.command": "text_completion",
    None: "chat",
}
FINISH = {
    "anthropic.claude": ("end_turn",),
    "amazon.nova": ("end_turn",),
    "amazon.titan-text": ("FINISH",),
    "meta.llama": ("stop",),
    "mistral": ("stop",),
    "cohere.command-r": ("COMPLETE",),
    "cohere.command": ("COMPLETE",),
    None: (),  # nobody reads an unknown body
}
HAS_TOP_K = {"anthropic.claude", "amazon.nova", "mistral", "cohere.command-r", "cohere.command"}
HAS_STOP = HAS_TOP_K | {"amazon.titan-text"}


def _input_tokens(out: dict[str, Any]) -> int:
    return int(out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"])


def _expected_request(family: str | None) -> dict[str, Any]:
    expected: dict[str, Any] = {
        "gen_ai.operation.name": OPERATION[family],
        semconv.provider_key(): "aws.bedrock",
        "gen_ai.request.model": MODELS[family],
    }
    if family is None:
        return expected
    expected |= {
        "aws.sdk.bedrock.model_family": family,
        "gen_ai.request.max_tokens": 200,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
    }
    if family in HAS_TOP_K:
        expected["gen_ai.request.top_k"] = 40.0
    if family in HAS_STOP:
        expected["gen_ai.request.stop_sequences"] = ["STOP"]
    if family == "cohere.command-r":
        expected["gen_ai.request.seed"] = 7
    return expected


@pytest.mark.parametrize("family", list(MODELS))
def test_invoke_model_request_and_response(
    bedrock_server: BedrockServer, family: str | None
) -> None:
    """Each family: the request attributes its body carries, its span name, and from its
    response the finish reason and the token usage the server counted; the application
    still reads the whole body."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    out = client.invoke_model(modelId=MODELS[family], body=json.dumps(BODIES[family]))
    assert probe.request.attributes == _expected_request(family)
    assert probe.request.span_name == f"{OPERATION[family]} {MODELS[family]}"
    response = probe.response
    assert tuple(response.finish_reasons) == FINISH[family]
    assert (response.input_tokens, response.output_tokens) == (_input_tokens(out), WORDS)
    assert response.token_counts() == {"input": _input_tokens(out), "output": WORDS}
    assert json.loads(out["body"].read())  # the application's body is whole
    assert probe.errors == []


def test_response_ids_and_models(bedrock_server: BedrockServer) -> None:
    """Anthropic's message id and model, and Cohere's response ids, become
    gen_ai.response.id / gen_ai.response.model."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    for family in ("anthropic.claude", "cohere.command-r", "cohere.command"):
        client.invoke_model(modelId=MODELS[family], body=json.dumps(BODIES[family]))
    claude, command_r, command = (r.attributes() for r in probe.responses)
    assert claude["gen_ai.response.id"].startswith("msg_bdrk_")
    assert claude["gen_ai.response.model"] == "claude-canned-20240101"
    assert command_r["gen_ai.response.id"].startswith("resp-")
    assert command["gen_ai.response.id"].startswith("resp-")


@pytest.mark.parametrize("family", list(MODELS))
def test_invoke_model_stream(bedrock_server: BedrockServer, family: str | None) -> None:
    """Each family's stream, read to the end: one summary, completed, with the finish
    reason from its chunks and the usage from its chunks or the invocation-metrics trailer
    (an unknown family gets the usage from the trailer alone)."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    out = client.invoke_model_with_response_stream(
        modelId=MODELS[family], body=json.dumps(BODIES[family])
    )
    assert probe.summaries == []
    events = list(out["body"])
    summary = probe.summary
    assert summary.end == "completed" and summary.outcome == "ok"
    assert summary.events == len(events)
    assert summary.time_to_first_chunk is not None and summary.time_to_first_chunk >= 0
    response = summary.response
    assert tuple(response.finish_reasons) == FINISH[family]
    assert response.output_tokens == WORDS
    assert response.input_tokens == count_words(" ".join(_request_texts(family)))
    assert probe.request.attributes["gen_ai.operation.name"] == OPERATION[family]
    assert probe.errors == []


def _request_texts(family: str | None) -> list[str]:
    """The texts the server counts as input (every text-carrying member)."""
    body = BODIES[family]
    texts: list[str] = []

    def walk(value: Any, key: str | None) -> None:
        if isinstance(value, str) and key in {
            "text",
            "prompt",
            "inputText",
            "message",
            "content",
            "system",
            "preamble",
        }:
            texts.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for item in value:
                walk(item, key)

    walk(body, None)
    return texts


def test_anthropic_stream_reads_message_start_and_delta(bedrock_server: BedrockServer) -> None:
    """Anthropic's stream: the id and model from message_start, the output tokens and stop
    reason from message_delta."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    out = client.invoke_model_with_response_stream(
        modelId=MODELS["anthropic.claude"], body=json.dumps(BODIES["anthropic.claude"])
    )
    for _ in out["body"]:
        pass
    attributes = probe.summary.attributes()
    assert attributes["gen_ai.response.id"].startswith("msg_bdrk_")
    assert attributes["gen_ai.response.model"] == "claude-canned-20240101"
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attributes["gen_ai.usage.output_tokens"] == WORDS
    assert attributes["aws.sdk.stream.end"] == "completed"


def test_body_forms_the_application_may_pass(bedrock_server: BedrockServer, tmp_path: Path) -> None:
    """str, bytearray and BytesIO bodies are read (a BytesIO's position does not move, and
    the server still gets every byte); a file is never read by evobs (only the model id
    is used), and the call is unchanged."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    model = MODELS["meta.llama"]
    raw = json.dumps(BODIES["meta.llama"]).encode()
    client.invoke_model(modelId=model, body=raw.decode())
    client.invoke_model(modelId=model, body=bytearray(raw))
    buffer = io.BytesIO(raw)
    client.invoke_model(modelId=model, body=buffer)
    path = tmp_path / "body.json"
    path.write_bytes(raw)
    with path.open("rb") as handle:
        client.invoke_model(modelId=model, body=handle)
    texts, arrays, bytes_io, files = probe.requests
    for read in (texts, arrays, bytes_io):
        assert read.attributes["gen_ai.request.max_tokens"] == 200
    assert "gen_ai.request.max_tokens" not in files.attributes
    assert files.attributes["gen_ai.operation.name"] == "text_completion"  # from the model id
    assert [r.body for r in bedrock_server.requests] == [raw] * 4


def test_request_body_over_the_limit_is_not_parsed(bedrock_server: BedrockServer) -> None:
    """A body larger than max_request_body_bytes gives the model-derived attributes only."""
    client = client_for(bedrock_server)
    probe = Probe(client, genai.Settings(max_request_body_bytes=16))
    client.invoke_model(modelId=MODELS["meta.llama"], body=json.dumps(BODIES["meta.llama"]))
    assert "gen_ai.request.max_tokens" not in probe.request.attributes
    assert probe.response.output_tokens == WORDS  # usage still comes from the headers


def test_legacy_and_chat_dialects(bedrock_server: BedrockServer) -> None:
    """Anthropic's legacy prompt API is a text completion; Mistral's messages API is a chat."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    client.invoke_model(
        modelId=MODELS["anthropic.claude"],
        body=json.dumps(
            {"prompt": f"\n\nHuman: {PROMPT}\n\nAssistant:", "max_tokens_to_sample": 50}
        ),
    )
    client.invoke_model(
        modelId=MODELS["mistral"],
        body=json.dumps({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 50}),
    )
    claude, mistral = probe.requests
    assert claude.operation_name == "text_completion"
    assert claude.attributes["gen_ai.request.max_tokens"] == 50
    assert mistral.operation_name == "chat"
    assert probe.responses[0].finish_reasons == ["stop_sequence"]
    assert probe.responses[1].finish_reasons == ["stop"]


def test_guardrail_on_invoke_model(bedrock_server: BedrockServer) -> None:
    """A guardrail named on InvokeModel: aws.bedrock.guardrail.id on the request, and the
    body's (or last chunk's) INTERVENED action on the response."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    body = json.dumps({"prompt": "FORBIDDEN words"})
    kwargs = {
        "modelId": MODELS["meta.llama"],
        "body": body,
        "guardrailIdentifier": "gr-7",
        "guardrailVersion": "1",
    }
    client.invoke_model(**kwargs)
    for _ in client.invoke_model_with_response_stream(**kwargs)["body"]:
        pass
    assert [r.attributes["aws.bedrock.guardrail.id"] for r in probe.requests] == ["gr-7", "gr-7"]
    for response in (probe.response, probe.summary.response):
        assert response.guardrail_intervened
        assert response.attributes()["aws.sdk.bedrock.guardrail_action"] == "INTERVENED"


def test_model_arn_and_inference_profile(bedrock_server: BedrockServer) -> None:
    """A foundation-model ARN and a cross-region profile id resolve to their family; the
    request model is the id exactly as given."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"
    client.invoke_model(modelId=arn, body=json.dumps(BODIES["amazon.titan-text"]))
    assert probe.request.family == "amazon.titan-text"
    assert probe.request.attributes["gen_ai.request.model"] == arn
    assert probe.response.finish_reasons == ["FINISH"]


def test_apply_guardrail(bedrock_server: BedrockServer) -> None:
    """ApplyGuardrail: apply_guardrail with the guardrail id, no GenAI span name (evobs keeps
    its own), no inference metrics, and the action on the response."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    for text in ("FORBIDDEN", "fine"):
        client.apply_guardrail(
            guardrailIdentifier="gr-9",
            guardrailVersion="1",
            source="INPUT",
            content=[{"text": {"text": text}}],
        )
    request = probe.requests[0]
    assert request.attributes["gen_ai.operation.name"] == "apply_guardrail"
    assert request.attributes["aws.bedrock.guardrail.id"] == "gr-9"
    assert request.span_name is None and not request.is_inference
    intervened, passed = probe.responses
    assert intervened.guardrail_intervened and intervened.guardrail_action == "GUARDRAIL_INTERVENED"
    assert not passed.guardrail_intervened and passed.guardrail_action == "NONE"
    assert intervened.token_counts() == {}
