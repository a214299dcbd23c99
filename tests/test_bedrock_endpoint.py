"""The local Bedrock Runtime endpoint (evobs.demo.bedrock), as real botocore sees it:
every operation parses, streams are valid event-stream frames, faults arrive as the
service sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from urllib3.exceptions import ProtocolError

from evobs.demo.bedrock import (
    DEFAULT_COMPLETION,
    GUARDRAIL_MESSAGE,
    GUARDRAIL_TRIGGER,
    BedrockFault,
    BedrockServer,
    count_words,
    encode_event_message,
)

from .faults_util import zero_backoff
from .genai_util import MODELS, client_for

WORDS = count_words(DEFAULT_COMPLETION)
PROMPT = "Tell me a story about a fox"


def _user(text: str = PROMPT) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def _chunks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(e["chunk"]["bytes"]) for e in events]


def test_encoder_round_trips_through_botocores_decoder() -> None:
    """A frame from encode_event_message decodes in botocore with the same headers and
    payload; one flipped payload byte fails botocore's CRC check."""
    frame = encode_event_message({":event-type": "chunk", ":message-type": "event"}, b'{"a": 1}')
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    (message,) = list(buffer)
    assert message.headers == {":event-type": "chunk", ":message-type": "event"}
    assert message.payload == b'{"a": 1}'
    corrupt = bytearray(frame)
    corrupt[-6] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_converse_answers_with_usage_in_words(bedrock_server: BedrockServer) -> None:
    """Converse: the canned completion, usage counted in words, end_turn, and the request
    recorded with its operation and model id."""
    client = client_for(bedrock_server)
    out = client.converse(modelId=MODELS["anthropic.claude"], messages=_user())
    assert out["output"]["message"]["content"] == [{"text": DEFAULT_COMPLETION}]
    assert out["stopReason"] == "end_turn"
    assert out["usage"] == {
        "inputTokens": count_words(PROMPT),
        "outputTokens": WORDS,
        "totalTokens": count_words(PROMPT) + WORDS,
    }
    (request,) = bedrock_server.requests
    assert (request.operation, request.model_id) == ("Converse", MODELS["anthropic.claude"])


def test_max_tokens_cuts_the_completion(bedrock_server: BedrockServer) -> None:
    """A max-tokens limit below the completion's length cuts it and says max_tokens."""
    client = client_for(bedrock_server)
    out = client.converse(
        modelId=MODELS["amazon.nova"], messages=_user(), inferenceConfig={"maxTokens": 3}
    )
    assert out["stopReason"] == "max_tokens"
    assert out["usage"]["outputTokens"] == 3


def test_converse_stream_is_an_event_stream(bedrock_server: BedrockServer) -> None:
    """ConverseStream: botocore iterates messageStart, text deltas that join to the
    completion, messageStop and a metadata event with the usage."""
    client = client_for(bedrock_server)
    events = list(client.converse_stream(modelId=MODELS["amazon.nova"], messages=_user())["stream"])
    assert events[0] == {"messageStart": {"role": "assistant"}}
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text == DEFAULT_COMPLETION
    assert {"messageStop": {"stopReason": "end_turn"}} in events
    assert events[-1]["metadata"]["usage"]["outputTokens"] == WORDS


def test_converse_calls_a_tool_when_given_one(bedrock_server: BedrockServer) -> None:
    """With a toolConfig, the model asks for the first tool (stopReason tool_use); the
    streamed tool input joins to valid JSON."""
    client = client_for(bedrock_server)
    tools = {
        "tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]
    }
    out = client.converse(modelId=MODELS["amazon.nova"], messages=_user(), toolConfig=tools)
    assert out["stopReason"] == "tool_use"
    use = out["output"]["message"]["content"][1]["toolUse"]
    assert use["name"] == "lookup" and use["input"] == {"query": DEFAULT_COMPLETION}
    events = list(
        client.converse_stream(modelId=MODELS["amazon.nova"], messages=_user(), toolConfig=tools)[
            "stream"
        ]
    )
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"]
    ]
    assert json.loads("".join(pieces)) == {"query": DEFAULT_COMPLETION}


@pytest.mark.parametrize("family", list(MODELS))
def test_invoke_model_answers_in_the_familys_shape(
    bedrock_server: BedrockServer, family: str | None
) -> None:
    """InvokeModel: the body is the family's documented JSON and the token-count headers
    carry the usage."""
    client = client_for(bedrock_server)
    body = {"prompt": PROMPT} if family != "amazon.nova" else {"messages": _user()}
    out = client.invoke_model(modelId=MODELS[family], body=json.dumps(body))
    payload = json.loads(out["body"].read())
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == WORDS
    assert int(headers["x-amzn-bedrock-input-token-count"]) == count_words(PROMPT)
    expected_key = {
        "anthropic.claude": "completion",  # a prompt body: the legacy text completions API
        "amazon.nova": "output",
        "amazon.titan-text": "results",
        "meta.llama": "generation",
        "mistral": "outputs",
        "cohere.command-r": "text",
        "cohere.command": "generations",
        None: "choices",
    }[family]
    assert expected_key in payload


@pytest.mark.parametrize("family", list(MODELS))
def test_invoke_model_stream_chunks_end_with_invocation_metrics(
    bedrock_server: BedrockServer, family: str | None
) -> None:
    """InvokeModelWithResponseStream: base64 chunks of the family's streaming JSON, the
    last carrying amazon-bedrock-invocationMetrics with the usage."""
    client = client_for(bedrock_server)
    out = client.invoke_model_with_response_stream(
        modelId=MODELS[family], body=json.dumps({"prompt": PROMPT})
    )
    assert out["contentType"] == "application/json"
    chunks = _chunks(list(out["body"]))
    assert len(chunks) >= WORDS
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (count_words(PROMPT), WORDS)


def test_anthropic_stream_has_message_start_and_delta_usage(bedrock_server: BedrockServer) -> None:
    """Anthropic's stream: message_start with the input usage and message_delta with the
    output usage and the stop reason, as the Messages API streams them."""
    client = client_for(bedrock_server)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": _user()}
    out = client.invoke_model_with_response_stream(
        modelId=MODELS["anthropic.claude"], body=json.dumps(body)
    )
    chunks = _chunks(list(out["body"]))
    assert chunks[0]["type"] == "message_start"
    assert chunks[0]["message"]["usage"]["input_tokens"] == count_words(PROMPT)
    delta = next(c for c in chunks if c["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == WORDS


def test_guardrails_intervene_on_the_trigger(bedrock_server: BedrockServer) -> None:
    """A guardrail named in the request intervenes on the trigger word: Converse says
    guardrail_intervened, InvokeModel's body says INTERVENED, ApplyGuardrail says
    GUARDRAIL_INTERVENED (and NONE without the trigger)."""
    client = client_for(bedrock_server)
    guardrail = {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
    out = client.converse(
        modelId=MODELS["amazon.nova"], messages=_user(GUARDRAIL_TRIGGER), guardrailConfig=guardrail
    )
    assert out["stopReason"] == "guardrail_intervened"
    assert out["output"]["message"]["content"][0]["text"] == GUARDRAIL_MESSAGE
    out = client.invoke_model(
        modelId=MODELS["meta.llama"],
        body=json.dumps({"prompt": GUARDRAIL_TRIGGER}),
        guardrailIdentifier="gr-1",
        guardrailVersion="1",
    )
    assert json.loads(out["body"].read())["amazon-bedrock-guardrailAction"] == "INTERVENED"
    for text, action in ((GUARDRAIL_TRIGGER, "GUARDRAIL_INTERVENED"), ("fine", "NONE")):
        out = client.apply_guardrail(
            guardrailIdentifier="gr-1",
            guardrailVersion="1",
            source="INPUT",
            content=[{"text": {"text": text}}],
        )
        assert out["action"] == action


def test_throttling_is_a_429_that_botocore_retries(
    bedrock_server: BedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two scripted throttles then success: botocore retries (3 attempts) and succeeds; with
    one attempt the ThrottlingException (HTTP 429) reaches the caller."""
    zero_backoff(monkeypatch)
    bedrock_server.script([BedrockFault.throttle(), BedrockFault.throttle()])
    client = client_for(bedrock_server, attempts=3)
    client.converse(modelId=MODELS["amazon.nova"], messages=_user())
    assert bedrock_server.count("Converse") == 3
    bedrock_server.script([BedrockFault.throttle()])
    with pytest.raises(ClientError) as caught:
        client_for(bedrock_server).converse(modelId=MODELS["amazon.nova"], messages=_user())
    error = caught.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_validation_and_modeled_errors(bedrock_server: BedrockServer) -> None:
    """A scripted ValidationException (400), a ModelTimeoutException (408), and a body that
    is not JSON are modeled errors botocore raises as such."""
    client = client_for(bedrock_server)
    bedrock_server.script(
        [
            BedrockFault.validation(),
            BedrockFault.error(408, "ModelTimeoutException").on("InvokeModel"),
        ]
    )
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId=MODELS["amazon.nova"], messages=_user())
    with pytest.raises(client.exceptions.ModelTimeoutException):
        client.invoke_model(modelId=MODELS["meta.llama"], body=b"{}")
    with pytest.raises(client.exceptions.ValidationException):
        client.invoke_model(modelId=MODELS["meta.llama"], body=b"not json")


@pytest.mark.parametrize("exception", ["modelStreamErrorException", "throttlingException"])
def test_exception_frame_mid_stream(bedrock_server: BedrockServer, exception: str) -> None:
    """After the scripted number of events an exception frame arrives: botocore raises
    EventStreamError with the frame's exception type as the code."""
    bedrock_server.script([BedrockFault.stream_error(exception, after=3)])
    client = client_for(bedrock_server)
    stream = client.converse_stream(modelId=MODELS["amazon.nova"], messages=_user())["stream"]
    received = []
    with pytest.raises(EventStreamError) as caught:
        for event in stream:
            received.append(event)
    assert len(received) == 3
    assert caught.value.response["Error"]["Code"] == exception


def test_a_cut_stream_breaks_the_connection(bedrock_server: BedrockServer) -> None:
    """A cut stream resets the connection after the scripted events: urllib3's
    ProtocolError reaches the iterating code."""
    bedrock_server.script([BedrockFault.cut(after=2)])
    client = client_for(bedrock_server)
    out = client.invoke_model_with_response_stream(
        modelId=MODELS["meta.llama"], body=b'{"prompt": "x"}'
    )
    received = []
    with pytest.raises(ProtocolError):
        for event in out["body"]:
            received.append(event)
    assert len(received) == 2


def test_model_arns_reach_the_server_decoded(bedrock_server: BedrockServer) -> None:
    """An ARN model id (slashes and colons percent-encoded in the path) is decoded, and
    answered in its family's shape."""
    arn = "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0"
    out = client_for(bedrock_server).invoke_model(modelId=arn, body=b'{"prompt": "hi"}')
    assert "generation" in json.loads(out["body"].read())
    assert bedrock_server.requests[-1].model_id == arn
