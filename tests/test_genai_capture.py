"""Content capture: off unless the user opts in, where the conventions put it when on,
always capped and scrubbed. The property test sends arbitrary prompts, system prompts and
tool arguments through every operation with capture off, in every configuration that
does not opt in, and finds none of them in anything evobs produced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evobs import _redact, genai
from evobs._options import Options
from evobs.demo.bedrock import BedrockServer
from evobs.genai import capture, semconv

from .genai_util import MODELS, Probe, client_for

MODEL = MODELS["anthropic.claude"]
SENTINEL = "zqPROMPTqz"
ANSWER = "zqANSWERqz fox runs"
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "lookup",
                "description": "Looks things up.",
                "inputSchema": {"json": {"type": "object"}},
            }
        }
    ]
}


@pytest.fixture
def answering(bedrock_server: BedrockServer) -> Iterator[BedrockServer]:
    """The endpoint answering with a completion that carries its own sentinel."""
    previous = bedrock_server.completion
    bedrock_server.completion = ANSWER
    yield bedrock_server
    bedrock_server.completion = previous


# -- the switches --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "env", "generation", "mode"),
    [
        (None, None, semconv.DEFAULT, capture.NONE),
        (None, "false", semconv.DEFAULT, capture.NONE),
        (None, "true", semconv.DEFAULT, capture.EVENT),
        (None, "TRUE", semconv.DEFAULT, capture.EVENT),
        (False, "true", semconv.DEFAULT, capture.NONE),
        (True, None, semconv.DEFAULT, capture.EVENT),
        (None, None, semconv.LATEST, capture.NONE),
        (None, "SPAN_ONLY", semconv.LATEST, capture.SPAN),
        (None, "event_only", semconv.LATEST, capture.EVENT),
        (None, "SPAN_AND_EVENT", semconv.LATEST, capture.SPAN_AND_EVENT),
        (None, "NO_CONTENT", semconv.LATEST, capture.NONE),
        (None, "true", semconv.LATEST, capture.SPAN),
        (None, "bogus", semconv.LATEST, capture.NONE),
        (True, None, semconv.LATEST, capture.SPAN),
        (True, "EVENT_ONLY", semconv.LATEST, capture.EVENT),
        (False, "SPAN_AND_EVENT", semconv.LATEST, capture.NONE),
    ],
)
def test_capture_mode(option: bool | None, env: str | None, generation: str, mode: str) -> None:
    """The option wins when set (False always off); otherwise the environment variable
    decides, read as each generation's instrumentations read it."""
    environ = {} if env is None else {capture.ENV_VAR: env}
    assert capture.capture_mode(option, generation, environ) == mode


def test_settings_from_the_environment() -> None:
    """Settings read the generation and the capture variable from the environment given."""
    environ = {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest_experimental",
        capture.ENV_VAR: "SPAN_AND_EVENT",
    }
    found = genai.Settings.from_options(None, environ=environ)
    assert (found.generation, found.capture) == (semconv.LATEST, capture.SPAN_AND_EVENT)
    assert found.content_on_span and found.content_on_events
    assert genai.Settings.from_options(False, environ=environ).capture == capture.NONE
    assert not genai.Settings.from_options(None, environ={}).capture_content
    with pytest.raises(ValueError, match="capture mode"):
        genai.Settings(capture="everything")


# -- where content goes when on ------------------------------------------------------------


def _latest() -> genai.Settings:
    return genai.Settings(capture=capture.SPAN, generation=semconv.LATEST)


def test_latest_content_on_span_attributes(answering: BedrockServer) -> None:
    """Latest generation, capture on: system instructions, input messages (text, tool call,
    tool result, an image as a bare marker), output messages with their finish reason, and
    tool definitions, as JSON strings in the conventions' schema."""
    client = client_for(answering)
    probe = Probe(client, _latest())
    messages = [
        {
            "role": "user",
            "content": [
                {"text": "Weather in Paris?"},
                {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"city": "Paris"}}}
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "rainy"}]}}],
        },
    ]
    client.converse(
        modelId=MODEL, messages=messages, system=[{"text": "Be brief."}], toolConfig=TOOLS
    )
    request_content = probe.request.content
    assert request_content is not None
    attributes = genai.content_attributes(request_content, probe.settings)
    assert json.loads(attributes["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Be brief."}
    ]
    inputs = json.loads(attributes["gen_ai.input.messages"])
    assert inputs[0] == {
        "role": "user",
        "parts": [{"type": "text", "content": "Weather in Paris?"}, {"type": "image"}],
    }
    assert inputs[1]["parts"] == [
        {"type": "tool_call", "id": "t1", "name": "lookup", "arguments": {"city": "Paris"}}
    ]
    assert inputs[2]["parts"] == [{"type": "tool_call_response", "id": "t1", "response": ["rainy"]}]
    assert "PNG" not in attributes["gen_ai.input.messages"]
    tools = json.loads(attributes["gen_ai.tool.definitions"])
    assert tools == [
        {
            "type": "function",
            "name": "lookup",
            "description": "Looks things up.",
            "parameters": {"type": "object"},
        }
    ]
    content = genai.Content()
    content.output_messages = probe.response.output_messages or []
    output = json.loads(genai.content_attributes(content, probe.settings)["gen_ai.output.messages"])
    assert output == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "end_turn",
        }
    ]


def test_streamed_output_is_assembled(answering: BedrockServer) -> None:
    """Capture on, streams: the text deltas and the streamed tool input JSON become the
    output message (ConverseStream, and Anthropic through InvokeModelWithResponseStream)."""
    client = client_for(answering)
    probe = Probe(client, _latest())
    list(
        client.converse_stream(
            modelId=MODEL, messages=[{"role": "user", "content": [{"text": "q"}]}], toolConfig=TOOLS
        )["stream"]
    )
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "q"}],
    }
    list(client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))["body"])
    converse_out, invoke_out = (s.response.output_messages for s in probe.summaries)
    assert converse_out == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": ANSWER},
                {
                    "type": "tool_call",
                    "id": "tooluse_canned_1",
                    "name": "lookup",
                    "arguments": {"query": ANSWER},
                },
            ],
            "finish_reason": "tool_use",
        }
    ]
    assert invoke_out == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "end_turn",
        }
    ]


def test_legacy_events(answering: BedrockServer) -> None:
    """Default generation, capture on: the v1.36 events in order, with their bodies."""
    client = client_for(answering)
    settings = genai.Settings(capture=capture.EVENT, generation=semconv.DEFAULT)
    probe = Probe(client, settings)
    messages = [
        {"role": "user", "content": [{"text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "w"}}}],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "rainy"}]}}],
        },
    ]
    client.converse(modelId=MODEL, messages=messages, system=[{"text": "Be brief."}])
    content = probe.request.content
    assert content is not None
    content.output_messages = probe.response.output_messages or []
    events = [(e.name, e.body) for e in genai.content_events(content, settings)]
    assert events == [
        ("gen_ai.system.message", {"content": "Be brief."}),
        ("gen_ai.user.message", {"content": "Weather?"}),
        (
            "gen_ai.assistant.message",
            {
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": {"q": "w"}},
                    }
                ]
            },
        ),
        ("gen_ai.tool.message", {"content": ["rainy"], "id": "t1"}),
        (
            "gen_ai.choice",
            {"index": 0, "finish_reason": "end_turn", "message": {"content": ANSWER}},
        ),
    ]


def test_family_content(bedrock_server: BedrockServer) -> None:
    """Capture on, InvokeModel: each family's prompt reaches the input messages (Cohere's
    preamble and history too)."""
    client = client_for(bedrock_server)
    probe = Probe(client, _latest())
    bodies = {
        "amazon.titan-text": {"inputText": "titan prompt"},
        "meta.llama": {"prompt": "llama prompt"},
        "cohere.command-r": {
            "message": "cohere prompt",
            "preamble": "sys",
            "chat_history": [{"role": "CHATBOT", "message": "earlier"}],
        },
        "amazon.nova": {"messages": [{"role": "user", "content": [{"text": "nova prompt"}]}]},
    }
    for family, body in bodies.items():
        client.invoke_model(modelId=MODELS[family], body=json.dumps(body))
    titan, llama, cohere, nova = (r.content for r in probe.requests)
    assert titan is not None and llama is not None and cohere is not None and nova is not None
    assert titan.input_messages == [
        {"role": "user", "parts": [{"type": "text", "content": "titan prompt"}]}
    ]
    assert llama.input_messages[0]["parts"][0]["content"] == "llama prompt"
    assert cohere.system == [{"type": "text", "content": "sys"}]
    assert [m["role"] for m in cohere.input_messages] == ["assistant", "user"]
    assert nova.input_messages[0]["parts"][0]["content"] == "nova prompt"


# -- caps and scrubbing ----------------------------------------------------------------------


def test_texts_are_capped_and_the_json_stays_valid() -> None:
    """A long text is cut with the truncation marker; too many messages keep the most recent
    that fit; the rendering is valid JSON within the cap."""
    settings = genai.Settings(capture=capture.SPAN, max_part_chars=100, max_content_chars=1000)
    content = genai.Content()
    content.input_messages = [
        {"role": "user", "parts": [{"type": "text", "content": f"message {i} " + "x" * 500}]}
        for i in range(50)
    ]
    rendered = genai.content_attributes(content, settings)["gen_ai.input.messages"]
    assert len(rendered) <= 1000
    messages = json.loads(rendered)
    assert messages and messages[-1]["parts"][0]["content"].startswith("message 49 ")
    assert all(m["parts"][0]["content"].endswith(_redact.TRUNCATED) for m in messages)
    assert all(len(m["parts"][0]["content"]) <= 100 for m in messages)


def test_one_huge_message_still_renders_within_the_cap() -> None:
    """A single message larger than the whole cap is shrunk until it fits."""
    settings = genai.Settings(capture=capture.SPAN, max_part_chars=4096, max_content_chars=300)
    content = genai.Content()
    content.input_messages = [
        {"role": "user", "parts": [{"type": "text", "content": "y" * 10000}] * 3}
    ]
    rendered = genai.content_attributes(content, settings)["gen_ai.input.messages"]
    assert len(rendered) <= 300
    assert json.loads(rendered)[0]["role"] == "user"


def test_credentials_in_prompts_are_scrubbed(bedrock_server: BedrockServer) -> None:
    """Capture on: an access key id inside a prompt is masked, like everywhere in evobs."""
    client = client_for(bedrock_server)
    probe = Probe(client, _latest())
    client.converse(
        modelId=MODEL,
        messages=[{"role": "user", "content": [{"text": "my key is AKIAIOSFODNN7EXAMPLE ok"}]}],
    )
    content = probe.request.content
    assert content is not None
    rendered = genai.content_attributes(content, probe.settings)["gen_ai.input.messages"]
    assert "AKIAIOSFODNN7EXAMPLE" not in rendered and "my key is" in rendered


# -- never without opting in -------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
#: Everything that does not opt in: no option, option False, the variable off or unset,
#: in both generations (and with the variable on but the option False).
_NOT_OPTED_IN = st.sampled_from(
    [
        (None, {}),
        (None, {capture.ENV_VAR: "false"}),
        (False, {capture.ENV_VAR: "true"}),
        (None, {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}),
        (
            None,
            {
                "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                capture.ENV_VAR: "NO_CONTENT",
            },
        ),
        (
            False,
            {
                "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                capture.ENV_VAR: "SPAN_AND_EVENT",
            },
        ),
    ]
)


def _values(value: Any) -> Iterator[str]:
    """Every string inside an attribute value (sequences included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)
    else:
        yield str(value)


def _produced(probe: Probe) -> list[str]:
    """Every string evobs produced from the calls: attributes of both generations, span
    names, metric labels, stream summaries (error messages included)."""
    out: list[str] = []
    for request in probe.requests:
        assert request.content is None
        out += [k for k in request.attributes] + [
            v for x in request.attributes.values() for v in _values(x)
        ]
        out += [request.span_name or "", *request.metric_labels()]
    responses = list(probe.responses) + [s.response for s in probe.summaries]
    for response in responses:
        assert response.output_messages is None
        for generation in (semconv.DEFAULT, semconv.LATEST):
            out += [v for x in response.attributes(generation).values() for v in _values(x)]
    for summary in probe.summaries:
        out += [v for x in summary.attributes(semconv.LATEST).values() for v in _values(x)]
        out.append(summary.error_message or "")
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prompt=_TEXT,
    system=_TEXT,
    argument=_TEXT,
    stops=st.lists(st.from_regex(r"[A-Y0-9]{1,8}", fullmatch=True), max_size=3),
    switches=_NOT_OPTED_IN,
)
def test_no_content_without_opting_in(
    answering: BedrockServer,
    prompt: str,
    system: str,
    argument: str,
    stops: list[str],
    switches: tuple[bool | None, dict[str, str]],
) -> None:
    """Without opting in, whatever the prompts, system prompts and tool arguments, none of
    them nor the completion appears in anything evobs produced: Converse, ConverseStream,
    InvokeModel and InvokeModelWithResponseStream of three families, ApplyGuardrail."""
    option, environ = switches
    client = client_for(answering)
    probe = Probe(client, genai.Settings.from_options(option, environ=environ))
    secret = SENTINEL + prompt
    messages = [
        {"role": "user", "content": [{"text": secret}]},
        {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "t1",
                        "name": "lookup",
                        "input": {"q": SENTINEL + argument},
                    }
                }
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": secret}]}}],
        },
    ]
    kwargs = {
        "modelId": MODEL,
        "messages": messages,
        "system": [{"text": SENTINEL + system}],
        "toolConfig": TOOLS,
        "inferenceConfig": {"maxTokens": 50, "stopSequences": stops or ["Z"]},
    }
    client.converse(**kwargs)
    list(client.converse_stream(**kwargs)["stream"])
    anthropic = {
        "max_tokens": 50,
        "system": SENTINEL + system,
        "messages": [{"role": "user", "content": secret}],
        "stop_sequences": stops,
    }
    client.invoke_model(modelId=MODEL, body=json.dumps(anthropic))
    list(
        client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(anthropic))["body"]
    )
    for family, body in (
        ("meta.llama", {"prompt": secret}),
        ("cohere.command-r", {"message": secret, "preamble": SENTINEL + system}),
    ):
        client.invoke_model(modelId=MODELS[family], body=json.dumps(body))
        list(
            client.invoke_model_with_response_stream(modelId=MODELS[family], body=json.dumps(body))[
                "body"
            ]
        )
    client.apply_guardrail(
        guardrailIdentifier="g",
        guardrailVersion="1",
        source="INPUT",
        content=[{"text": {"text": secret}}],
    )
    produced = _produced(probe)
    assert len(probe.requests) == 9 and len(probe.summaries) == 4
    for text in produced:
        assert SENTINEL not in text
        assert "zqANSWERqz" not in text


def test_capture_params_alone_never_turns_content_on() -> None:
    """capture_params=True is an evobs option about params; the GenAI content switch is a
    different one: with only capture_params set, content stays off."""
    options = Options(capture_params=True, capture_s3_keys=True)
    assert options.capture_params
    assert not genai.Settings.from_options(None, environ={}).capture_content


def test_captured_params_hold_no_prompts() -> None:
    """capture_params=True renders a Converse call's params without its prompts, system
    prompts or tool definitions (each a ``<body>``, as an SQS message body), and an
    ApplyGuardrail call's without its content; the model id and parameters stay."""
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    converse = _redact.render_params(
        model.operation_model("Converse"),
        {
            "modelId": MODEL,
            "messages": [{"role": "user", "content": [{"text": SENTINEL}]}],
            "system": [{"text": SENTINEL}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "description": SENTINEL}}]},
            "inferenceConfig": {"maxTokens": 77},
        },
    )
    assert converse.count("<body>") == 3 and "77" in converse
    guardrail = _redact.render_params(
        model.operation_model("ApplyGuardrail"),
        {
            "guardrailIdentifier": "g",
            "guardrailVersion": "1",
            "source": "INPUT",
            "content": [{"text": {"text": SENTINEL}}],
        },
    )
    assert MODEL in converse
    assert SENTINEL not in converse and SENTINEL not in guardrail
