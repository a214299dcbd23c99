"""Model families without the network: which dialect a model id speaks, what each family
reads from its documented response shapes, and that no JSON whatsoever makes a reader
raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evobs import genai
from evobs.genai import capture, converse, semconv
from evobs.genai.families import FAMILIES, UNKNOWN, family_of, operation_of


@pytest.mark.parametrize(
    ("model_id", "family", "operation"),
    [
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude", "chat"),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude", "chat"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude", "chat"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.meta.llama3-2-1b-instruct-v1:0",
            "meta.llama",
            "text_completion",
        ),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2",
            "anthropic.claude",
            "chat",
        ),
        ("amazon.nova-pro-v1:0", "amazon.nova", "chat"),
        ("apac.amazon.nova-micro-v1:0", "amazon.nova", "chat"),
        ("amazon.nova-sonic-v1:0", None, "chat"),
        ("amazon.nova-canvas-v1:0", None, "generate_content"),
        ("amazon.titan-text-premier-v1:0", "amazon.titan-text", "text_completion"),
        ("amazon.titan-tg1-large", "amazon.titan-text", "text_completion"),
        ("amazon.titan-embed-text-v2:0", None, "embeddings"),
        ("amazon.titan-image-generator-v2:0", None, "generate_content"),
        ("mistral.mixtral-8x7b-instruct-v0:1", "mistral", "text_completion"),
        ("cohere.command-r-plus-v1:0", "cohere.command-r", "chat"),
        ("cohere.command-light-text-v14", "cohere.command", "text_completion"),
        ("cohere.embed-english-v3", None, "embeddings"),
        ("stability.sd3-large-v1:0", None, "generate_content"),
        ("ai21.jamba-instruct-v1:0", None, "chat"),
        ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", None, "chat"),
        ("", None, "chat"),
    ],
)
def test_family_and_operation_of_model_ids(
    model_id: str, family: str | None, operation: str
) -> None:
    """Base model ids, cross-region profiles and ARNs resolve to their family; embeddings and
    image models get their operation; anything else is unknown (chat)."""
    assert family_of(model_id) == family
    assert operation_of(model_id) == operation


def test_family_of_tolerates_anything() -> None:
    """A model id that is not a string has no family."""
    assert family_of(None) is None  # type: ignore[arg-type]
    assert operation_of(12) == "chat"  # type: ignore[arg-type]


def _read(family: str, body: dict[str, Any], capture_on: bool = False) -> genai.Response:
    response = genai.Response()
    FAMILIES[family].read_response(body, response, capture_on)
    return response


def test_anthropic_usage_with_cache_and_tool_use() -> None:
    """Anthropic's usage: cache reads and writes are added to the input tokens; a tool_use
    block becomes a tool call in the output."""
    body = {
        "id": "msg_1",
        "model": "claude-3-5",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "tu1", "name": "lookup", "input": {"q": 1}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 5,
            "output_tokens": 7,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        },
    }
    response = _read("anthropic.claude", body, capture_on=True)
    assert (response.input_tokens, response.output_tokens) == (125, 7)
    assert (response.cache_read_tokens, response.cache_creation_tokens) == (100, 20)
    assert response.finish_reasons == ["tool_use"]
    assert response.output_messages == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me look."},
                {"type": "tool_call", "id": "tu1", "name": "lookup", "arguments": {"q": 1}},
            ],
            "finish_reason": "tool_use",
        }
    ]


def test_titan_with_several_results() -> None:
    """Titan: one finish reason and one output message per result, the output tokens
    summed."""
    body = {
        "inputTextTokenCount": 4,
        "results": [
            {"tokenCount": 3, "outputText": "a", "completionReason": "FINISH"},
            {"tokenCount": 5, "outputText": "b", "completionReason": "LENGTH"},
        ],
    }
    response = _read("amazon.titan-text", body, capture_on=True)
    assert response.finish_reasons == ["FINISH", "LENGTH"]
    assert (response.input_tokens, response.output_tokens) == (4, 8)
    assert response.output_messages == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "a"}],
            "finish_reason": "FINISH",
        },
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "b"}],
            "finish_reason": "LENGTH",
        },
    ]


def test_nova_cache_counts() -> None:
    """Nova's InvokeModel usage names its cache counts ...TokenCount."""
    body = {
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokenCount": 10},
    }
    response = _read("amazon.nova", body)
    assert (response.input_tokens, response.cache_read_tokens) == (13, 10)


def test_cohere_r_billed_units_and_tool_calls() -> None:
    """Command R: the response id, the billed units as usage when present, tool calls in
    the output."""
    body = {
        "response_id": "r1",
        "text": "",
        "finish_reason": "COMPLETE",
        "tool_calls": [{"name": "lookup", "parameters": {"q": "x"}}],
        "meta": {"billed_units": {"input_tokens": 11, "output_tokens": 4}},
    }
    response = _read("cohere.command-r", body, capture_on=True)
    assert (response.response_id, response.input_tokens, response.output_tokens) == ("r1", 11, 4)
    assert response.output_messages is not None
    assert response.output_messages[0]["parts"][1] == {
        "type": "tool_call",
        "id": None,
        "name": "lookup",
        "arguments": {"q": "x"},
    }


def test_mistral_chat_choices() -> None:
    """Mistral's chat API: one finish reason per choice."""
    body = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "stop_reason": "length"}
        ]
    }
    assert _read("mistral", body).finish_reasons == ["length"]


def test_wire_values_are_checked_and_capped() -> None:
    """Counts must be non-negative ints (not bools, floats or strings); ids are capped; at
    most 16 finish reasons are kept."""
    body = {
        "id": "x" * 1000,
        "stop_reason": "end_turn",
        "usage": {"input_tokens": True, "output_tokens": -3},
    }
    response = _read("anthropic.claude", body)
    assert response.input_tokens is None and response.output_tokens is None
    assert response.response_id is not None and len(response.response_id) == 256
    many = {"results": [{"completionReason": f"R{i}"} for i in range(40)]}
    assert len(_read("amazon.titan-text", many).finish_reasons) == 16


# -- robustness: any JSON ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
#: JSON objects built from the members the readers look at, so the readers go deep.
KEYS = st.sampled_from(
    [
        "messages",
        "content",
        "system",
        "text",
        "type",
        "usage",
        "input_tokens",
        "output_tokens",
        "stop_reason",
        "results",
        "outputs",
        "choices",
        "message",
        "delta",
        "index",
        "id",
        "model",
        "inferenceConfig",
        "maxTokens",
        "toolUse",
        "toolResult",
        "contentBlockDelta",
        "messageStop",
        "metadata",
        "chat_history",
        "generations",
        "tools",
        "meta",
        "billed_units",
        "event_type",
        "amazon-bedrock-invocationMetrics",
        "amazon-bedrock-guardrailAction",
        "prompt",
        "textGenerationConfig",
        "stopSequences",
        "toolConfig",
        "contentBlockStart",
        "start",
    ]
)
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)
BODIES = st.dictionaries(KEYS, SHAPED, max_size=8) | st.dictionaries(
    st.text(max_size=8), JSON, max_size=4
)


@settings(max_examples=300, deadline=None)
@given(body=BODIES, capture_on=st.booleans())
def test_no_body_makes_a_reader_raise(body: dict[str, Any], capture_on: bool) -> None:
    """Any JSON object through every family's request, response and stream reader, and the
    Converse readers, in both capture modes: nothing raises, and what comes out renders."""
    mode = capture.SPAN if capture_on else capture.NONE
    settings_ = genai.Settings(capture=mode, generation=semconv.LATEST)
    for family in [*FAMILIES.values(), UNKNOWN]:
        request = genai.Request("InvokeModel", "chat", "m", family=family.name or None)
        content = genai.Content() if capture_on else None
        family.operation(body)
        family.read_request(body, request, content)
        response = genai.Response()
        family.read_response(body, response, capture_on)
        stream = family.stream(settings_)
        stream.feed(body)
        stream.feed(body)
        finished = stream.finish()
        for result in (response, finished):
            json.dumps(result.attributes(semconv.LATEST), default=list)
        if content is not None:
            genai.content_attributes(content, settings_)
            genai.content_events(content, settings_)
    state = converse.StreamState(settings_)
    state.feed(body)
    state.finish()
    converse.read_response(body, settings_)
    for operation in genai.OPERATIONS:
        genai.read_request(operation, body, settings_)
