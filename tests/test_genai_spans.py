"""GenAI spans of Bedrock Runtime calls, through ``evobs.instrument`` over real HTTP.

The local endpoint (``evobs.demo.bedrock``) answers with canned completions and real
event streams; the fault proxy in front of it throttles; the spans are the SDK's own,
read from an in-memory exporter. What is checked: the conventions' span name and
attributes next to evobs's own call attributes, a stream's span open until the stream
ends (read, closed, dropped, broken) and ended exactly once, the context restored when
the call returns, and content never recorded unless the user opts in.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from urllib3.exceptions import ProtocolError, ReadTimeoutError

import evobs
from evobs import _call
from evobs.demo.bedrock import (
    DEFAULT_COMPLETION,
    GUARDRAIL_TRIGGER,
    BedrockFault,
    BedrockServer,
    count_words,
)
from evobs.demo.faults import Fault, FaultServer
from evobs.genai import semconv
from evobs.services import bedrock_runtime
from evobs.signals import SignalBase

from .conftest import SpanRecorder
from .faults_util import attrs, retry_events, zero_backoff
from .genai_util import MODELS, client_at, wait_until

CLAUDE = MODELS["anthropic.claude"]
NOVA = MODELS["amazon.nova"]
LLAMA = MODELS["meta.llama"]
WORDS = count_words(DEFAULT_COMPLETION)
PROMPT = "zqPROMPTqz tell me about the weather"
SYSTEM = "zqSYSTEMqz you are terse"
MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]
PROMPT_WORDS = count_words(PROMPT)
#: A Bedrock throttle as the fault proxy answers it: 429 ThrottlingException in rest-json.
THROTTLE = Fault.error(429, "ThrottlingException", "Too many tokens").with_style("json")


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The cyclic collector off: a dropped stream is freed by reference counting alone."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Bedrock:
    """An instrumented bedrock-runtime client of one endpoint and what it records."""

    def __init__(
        self,
        url: str,
        recorder: SpanRecorder,
        registry: CollectorRegistry,
        attempts: int = 1,
        **options: Any,
    ) -> None:
        self.client = client_at(url, attempts)
        self.recorder = recorder
        self.registry = registry
        self.handle = evobs.instrument(
            self.client, tracer_provider=recorder.provider, registry=registry, **options
        )

    def span(self) -> ReadableSpan:
        (span,) = [s for s in self.recorder.spans if not s.name.endswith(" attempt")]
        return span

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def bedrock(
    bedrock_server: BedrockServer, recorder: SpanRecorder, registry: CollectorRegistry
) -> Iterator[Bedrock]:
    """An instrumented client of the local endpoint (one attempt, default options)."""
    found = Bedrock(bedrock_server.url, recorder, registry)
    try:
        yield found
    finally:
        found.handle.uninstrument()


def _instrumented(url: str, recorder: SpanRecorder, **options: Any) -> Bedrock:
    return Bedrock(url, recorder, CollectorRegistry(), **options)


def _texts(span: ReadableSpan) -> str:
    """Everything a span carries as text: attributes, events, status."""
    parts = [json.dumps(attrs(span), default=str), span.status.description or ""]
    for event in span.events:
        parts.append(event.name)
        parts.append(json.dumps(dict(event.attributes or {}), default=str))
    return "\n".join(parts)


# -- non-streaming calls --------------------------------------------------------------------


def test_converse_span_follows_the_conventions(bedrock: Bedrock) -> None:
    """A Converse call's span: named ``chat {model}``, CLIENT, the request parameters, the
    finish reason and token usage, next to evobs's own call attributes; no content."""
    bedrock.client.converse(
        modelId=CLAUDE,
        messages=MESSAGES,
        system=[{"text": SYSTEM}],
        inferenceConfig={"maxTokens": 64, "temperature": 0.5, "topP": 0.9},
    )
    span = bedrock.span()
    a = attrs(span)
    assert span.name == f"chat {CLAUDE}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.system"] == "aws.bedrock"
    assert a["gen_ai.request.model"] == CLAUDE
    assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"]) == (64, 0.5)
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert a["gen_ai.usage.input_tokens"] == PROMPT_WORDS + count_words(SYSTEM)
    assert a["gen_ai.usage.output_tokens"] == WORDS
    assert (a["rpc.service"], a["rpc.method"]) == ("Bedrock Runtime", "Converse")
    assert a["aws.sdk.attempts"] == 1 and a["http.response.status_code"] == 200
    assert a["aws.request_id"].endswith("-evobs-bedrock")
    assert "zqPROMPTqz" not in _texts(span) and "zqSYSTEMqz" not in _texts(span)


@pytest.mark.parametrize(
    ("family", "body", "operation"),
    [
        (
            "anthropic.claude",
            {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 100},
            "chat",
        ),
        ("meta.llama", {"prompt": PROMPT, "max_gen_len": 100}, "text_completion"),
        ("amazon.titan-text", {"inputText": PROMPT}, "text_completion"),
        (None, {"messages": [{"role": "user", "content": PROMPT}]}, "chat"),
    ],
)
def test_invoke_model_span_per_family(
    bedrock: Bedrock, family: str | None, body: dict[str, Any], operation: str
) -> None:
    """InvokeModel: the operation name the family's body says, the usage from the body
    or (a model no family knows) from Bedrock's headers; the application reads the
    same body it would read without evobs."""
    model = MODELS[family]
    out = bedrock.client.invoke_model(modelId=model, body=json.dumps(body).encode())
    answer = json.loads(out["body"].read())
    assert answer  # the application's body, intact
    span = bedrock.span()
    a = attrs(span)
    assert span.name == f"{operation} {model}"
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.usage.input_tokens"] == PROMPT_WORDS
    assert a["gen_ai.usage.output_tokens"] == WORDS
    assert a.get("aws.sdk.bedrock.model_family") == family


def test_apply_guardrail_keeps_its_call_name(bedrock: Bedrock) -> None:
    """ApplyGuardrail has no model: its span keeps evobs's name, with the GenAI operation,
    the guardrail and its verdict."""
    bedrock.client.apply_guardrail(
        guardrailIdentifier="gr-1",
        guardrailVersion="1",
        source="INPUT",
        content=[{"text": {"text": f"say {GUARDRAIL_TRIGGER}"}}],
    )
    span = bedrock.span()
    a = attrs(span)
    assert span.name == "Bedrock Runtime.ApplyGuardrail"
    assert a["gen_ai.operation.name"] == "apply_guardrail"
    assert a["aws.bedrock.guardrail.id"] == "gr-1"
    assert a["aws.sdk.bedrock.guardrail_action"] == "GUARDRAIL_INTERVENED"
    assert GUARDRAIL_TRIGGER not in _texts(span)


class _NameSampler(Sampler):
    """Records the name and attributes every span was sampled with."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any
    ) -> SamplingResult:
        attributes = kw.get("attributes", args[1] if len(args) > 1 else None)
        self.seen.append((name, dict(attributes or {})))
        return SamplingResult(Decision.RECORD_AND_SAMPLE)

    def get_description(self) -> str:
        return "names"


@pytest.mark.parametrize("fast_spans", [True, False], ids=["fast-path", "public-api"])
def test_the_sampler_sees_the_final_name(bedrock_server: BedrockServer, fast_spans: bool) -> None:
    """The span is sampled under its conventions' name, with the model and operation
    among the attributes the sampler sees, on the cheap span path and the public API."""
    from opentelemetry.sdk.trace import TracerProvider

    sampler = _NameSampler()
    recorder = SpanRecorder()
    recorder.provider = TracerProvider(sampler=sampler)
    bedrock = _instrumented(bedrock_server.url, recorder, fast_spans=fast_spans)
    try:
        bedrock.client.converse(modelId=NOVA, messages=MESSAGES)
    finally:
        bedrock.handle.uninstrument()
    ((name, attributes),) = sampler.seen
    assert name == f"chat {NOVA}"
    assert attributes["gen_ai.request.model"] == NOVA
    assert attributes["gen_ai.operation.name"] == "chat"


def test_throttling_is_retried_and_the_span_says_so(
    bedrock_server: BedrockServer, recorder: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 ThrottlingException from the fault proxy is retried: one span with two
    attempt spans, the retry event says ``throttled``, and the GenAI attributes are
    those of the answer that came back."""
    zero_backoff(monkeypatch)
    with FaultServer(upstream=bedrock_server.url) as proxy:
        proxy.script([THROTTLE.on(path=r"/converse$")])
        bedrock = _instrumented(proxy.url, recorder, attempts=3)
        try:
            bedrock.client.converse(modelId=CLAUDE, messages=MESSAGES)
        finally:
            bedrock.handle.uninstrument()
    span = bedrock.span()
    a = attrs(span)
    assert span.name == f"chat {CLAUDE}" and a["aws.sdk.attempts"] == 2
    assert [e["aws.sdk.retry.reason"] for e in retry_events(span)] == ["throttled"]
    # Attempt spans keep evobs's name: they are HTTP attempts of the AWS operation.
    first, second = sorted(
        recorder.named("Bedrock Runtime.Converse attempt"), key=lambda s: s.start_time or 0
    )
    assert first.parent is not None and first.parent.span_id == span.context.span_id
    assert attrs(first)["aws.sdk.outcome"] == "throttled"
    assert attrs(first)["error.type"] == "ThrottlingException"
    assert "aws.sdk.outcome" not in attrs(second)
    assert a["gen_ai.usage.output_tokens"] == WORDS
    assert (
        bedrock.sample(
            "aws_sdk_retries_total",
            {"service": "Bedrock Runtime", "operation": "Converse", "reason": "throttled"},
        )
        == 1.0
    )


def test_a_throttled_failure_is_throttled_everywhere(
    bedrock_server: BedrockServer, recorder: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttled on every attempt: the call fails with outcome ``throttled`` on the span
    and in ``aws_sdk_call_duration_seconds``, and the GenAI duration says why."""
    zero_backoff(monkeypatch)
    with FaultServer(upstream=bedrock_server.url) as proxy:
        proxy.script([THROTTLE.on(path=r"/converse-stream$")] * 2)
        bedrock = _instrumented(proxy.url, recorder, attempts=2)
        try:
            with pytest.raises(ClientError, match="ThrottlingException"):
                bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
        finally:
            bedrock.handle.uninstrument()
    span = bedrock.span()  # ended with the call: no stream was returned
    a = attrs(span)
    assert span.name == f"chat {NOVA}" and span.status.status_code is StatusCode.ERROR
    assert (a["aws.sdk.outcome"], a["error.type"]) == ("throttled", "ThrottlingException")
    assert "aws.sdk.stream.end" not in a
    labels = {"service": "Bedrock Runtime", "operation": "ConverseStream", "region": "us-east-1"}
    assert (
        bedrock.sample("aws_sdk_call_duration_seconds_count", {**labels, "outcome": "throttled"})
        == 1.0
    )
    duration = {
        "gen_ai_operation_name": "chat",
        "gen_ai_system": "aws.bedrock",
        "gen_ai_request_model": NOVA,
        "error_type": "ThrottlingException",
    }
    assert bedrock.sample("gen_ai_client_operation_duration_seconds_count", duration) == 1.0
    assert (
        bedrock.sample(
            "gen_ai_client_token_usage_count",
            {**duration, "gen_ai_token_type": "input"} | {"error_type": ""},
        )
        is None
    )


# -- streams ----------------------------------------------------------------------------


def _current_span_is_none() -> bool:
    return not trace.get_current_span().get_span_context().is_valid


def test_a_streams_span_stays_open_until_it_is_read(bedrock: Bedrock) -> None:
    """ConverseStream returns before any event is read: the span is still open (the
    context restored all the same), and ends once the last event is read, with the
    usage and finish reason from the stream."""
    out = bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    assert bedrock.recorder.spans == [] and bedrock.recorder.started == 1
    assert _current_span_is_none()
    events = list(out["stream"])
    assert events and bedrock.recorder.ended == 1
    span = bedrock.span()
    a = attrs(span)
    assert span.name == f"chat {NOVA}" and a["rpc.method"] == "ConverseStream"
    assert (a["aws.sdk.stream.end"], a["aws.sdk.stream.events"]) == ("completed", len(events))
    assert a["gen_ai.usage.output_tokens"] == WORDS
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert a["aws.sdk.attempts"] == 1  # the call's own attributes, set when it returned
    assert span.end_time is not None and span.start_time is not None
    assert span.status.status_code is StatusCode.UNSET


def test_a_stream_closed_early_ends_its_span_once(bedrock: Bedrock) -> None:
    """close() after two events ends the span (``closed``); closing again, reading again
    and dropping the stream change nothing."""
    stream = bedrock.client.invoke_model_with_response_stream(
        modelId=LLAMA, body=json.dumps({"prompt": PROMPT}).encode()
    )["body"]
    iterator = iter(stream)
    next(iterator), next(iterator)
    stream.close()
    stream.close()
    del iterator, stream
    gc.collect()
    span = bedrock.span()
    a = attrs(span)
    assert span.name == f"text_completion {LLAMA}"
    assert (a["aws.sdk.stream.end"], a["aws.sdk.stream.events"]) == ("closed", 2)
    assert a["gen_ai.usage.input_tokens"] == PROMPT_WORDS  # the first chunk says it


def test_a_dropped_stream_ends_its_span_when_collected(bedrock: Bedrock, no_gc: None) -> None:
    """A response dropped unread: the span ends (``collected``) once the last reference
    goes, on another thread (never inside the finalizer), exactly once."""
    from opentelemetry.sdk.trace import SpanProcessor

    ended_on: list[int] = []

    class Where(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            ended_on.append(threading.get_ident())

    bedrock.recorder.provider.add_span_processor(Where())
    out = bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    assert bedrock.recorder.ended == 0
    del out
    assert wait_until(lambda: bedrock.recorder.ended == 1)
    assert ended_on and ended_on[0] != threading.get_ident()
    span = bedrock.span()
    assert attrs(span)["aws.sdk.stream.end"] == "collected"
    assert attrs(span)["aws.sdk.stream.events"] == 0


@pytest.mark.parametrize(
    ("exception", "outcome", "error_type"),
    [
        ("throttlingException", "throttled", "ThrottlingException"),
        ("modelStreamErrorException", "client_error", "ModelStreamErrorException"),
        ("internalServerException", "server_error", "InternalServerException"),
    ],
)
def test_an_error_inside_the_stream_sets_the_outcome(
    bedrock: Bedrock, bedrock_server: BedrockServer, exception: str, outcome: str, error_type: str
) -> None:
    """An exception event mid-stream: the application gets botocore's error, the span
    ends with the outcome the modeled status gives, an error status and an exception
    event; the call itself had succeeded (its metrics say ``ok``)."""
    bedrock_server.script([BedrockFault.stream_error(exception, after=3)])
    out = bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    with pytest.raises(EventStreamError):
        list(out["stream"])
    span = bedrock.span()
    a = attrs(span)
    assert (a["aws.sdk.outcome"], a["error.type"]) == (outcome, error_type)
    assert a["aws.sdk.stream.end"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description and span.status.description.startswith(error_type)
    assert [e.name for e in span.events] == ["exception"]
    labels = {"service": "Bedrock Runtime", "operation": "ConverseStream", "region": "us-east-1"}
    assert bedrock.sample("aws_sdk_call_duration_seconds_count", {**labels, "outcome": "ok"}) == 1
    assert (
        bedrock.sample(
            "gen_ai_client_operation_duration_seconds_count",
            {
                "gen_ai_operation_name": "chat",
                "gen_ai_system": "aws.bedrock",
                "gen_ai_request_model": NOVA,
                "error_type": error_type,
            },
        )
        == 1.0
    )


def test_a_broken_connection_mid_stream_is_a_connection_error(
    bedrock: Bedrock, bedrock_server: BedrockServer
) -> None:
    """The endpoint resets the connection after two events: urllib3's ProtocolError
    reaches the application, and the span says ``connection_error``."""
    bedrock_server.script([BedrockFault.cut(after=2)])
    out = bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    with pytest.raises(ProtocolError):
        list(out["stream"])
    a = attrs(bedrock.span())
    assert (a["aws.sdk.outcome"], a["error.type"]) == ("connection_error", "ProtocolError")
    assert a["aws.sdk.stream.events"] == 2


def test_urllib3_stream_errors_are_connection_errors() -> None:
    """One place decides: urllib3's mid-stream errors (a reset, a read timeout) are
    ``connection_error``, as botocore's own connection errors are."""
    assert _call.classify(None, None, ProtocolError("Connection broken")) == "connection_error"
    timeout = ReadTimeoutError(None, "/", "Read timed out.")  # type: ignore[arg-type]
    assert _call.classify(None, None, timeout) == "connection_error"
    assert _call.classify(None, None, ValueError("x")) == "error"


def test_a_stream_read_on_another_thread(bedrock: Bedrock) -> None:
    """The stream is read on a worker thread: the span ends there, once, with the
    events that thread read; the caller's context was restored at return."""
    out = bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    assert _current_span_is_none()
    events: list[Any] = []
    reader = threading.Thread(target=lambda: events.extend(out["stream"]))
    reader.start()
    reader.join(10)
    assert events and bedrock.recorder.ended == 1
    assert attrs(bedrock.span())["aws.sdk.stream.events"] == len(events)


def test_the_stream_span_is_the_parent_of_nothing_after_return(bedrock: Bedrock) -> None:
    """Calls made while the stream is read are not children of the stream's span: the
    call returned, its span is no longer current."""
    out = bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    bedrock.client.converse(modelId=CLAUDE, messages=MESSAGES)
    list(out["stream"])
    spans = {s.name: s for s in bedrock.recorder.spans}
    assert spans[f"chat {CLAUDE}"].parent is None
    assert spans[f"chat {NOVA}"].parent is None


def test_a_raising_after_call_handler_leaves_the_stream_span_to_the_stream(
    bedrock: Bedrock, no_gc: None
) -> None:
    """A user's after-call handler raises: the call fails for the application, the
    safety net ends the call, and the span is not ended early: it ends when the stream
    the application never got is collected."""

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("user handler")

    bedrock.client.meta.events.register("after-call.bedrock-runtime.ConverseStream", broken)
    with pytest.raises(RuntimeError, match="user handler"):
        bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)
    assert _current_span_is_none()
    gc.collect()  # the exception's traceback held the parsed response
    assert wait_until(lambda: bedrock.recorder.ended == 1)
    assert attrs(bedrock.span())["aws.sdk.stream.end"] == "collected"


def test_a_failing_stream_subscriber_costs_only_itself(
    bedrock_server: BedrockServer, recorder: SpanRecorder
) -> None:
    """A user's signal that subscribes a raising callback to the stream's end: counted in
    evobs_handler_errors_total, the span still ends, the application reads every event."""

    class Subscriber(SignalBase):
        def call_ended(self, call: evobs.Call) -> None:
            if call.stream is not None:
                call.stream.subscribe(lambda summary: 1 / 0)

    bedrock = _instrumented(
        bedrock_server.url, recorder, signals=["traces", "metrics", Subscriber()]
    )
    try:
        events = list(bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    finally:
        bedrock.handle.uninstrument()
    assert events and recorder.ended == 1
    assert bedrock.sample("evobs_handler_errors_total", {"event": "stream-end"}) == 1.0


def test_the_record_carries_genai_facts_only_for_genai_calls(
    bedrock_server: BedrockServer, recorder: SpanRecorder, moto_url: str
) -> None:
    """A user's signal reads ``call.genai`` and ``call.stream``: set for Bedrock's
    inference calls, None for every other call."""
    seen: dict[str, tuple[Any, Any]] = {}

    class Reader(SignalBase):
        def call_ended(self, call: evobs.Call) -> None:
            seen[call.operation] = (call.genai, call.stream)

    bedrock = _instrumented(bedrock_server.url, recorder, signals=[Reader()])
    try:
        bedrock.client.converse(modelId=NOVA, messages=MESSAGES)
        list(bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    finally:
        bedrock.handle.uninstrument()
    import boto3

    session = boto3.Session(region_name="us-east-1")
    handle = evobs.instrument(session, signals=[Reader()], registry=CollectorRegistry())
    try:
        session.client("s3", endpoint_url=moto_url).list_buckets()
    finally:
        handle.uninstrument()
    facts, stream = seen["Converse"]
    assert facts.request.model == NOVA and facts.response.output_tokens == WORDS
    assert stream is None
    facts, stream = seen["ConverseStream"]
    assert stream.ended and stream.summary.end == "completed"
    assert seen["ListBuckets"] == (None, None)


# -- content --------------------------------------------------------------------------------


def test_content_is_never_recorded_by_default_not_even_with_capture_params(
    bedrock_server: BedrockServer, recorder: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """capture_params=True renders the params, with the messages and system prompt as
    ``<body>``; no prompt or completion appears anywhere in any span."""
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    bedrock = _instrumented(bedrock_server.url, recorder, capture_params=True)
    try:
        bedrock.client.converse(modelId=CLAUDE, messages=MESSAGES, system=[{"text": SYSTEM}])
        list(bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    finally:
        bedrock.handle.uninstrument()
    assert recorder.ended == 2
    for span in recorder.spans:
        text = _texts(span)
        assert "zqPROMPTqz" not in text and "zqSYSTEMqz" not in text
        assert "quick brown fox" not in text
        assert "<body>" in attrs(span)["aws.request.params"]


def _events(span: ReadableSpan) -> list[tuple[str, Any]]:
    return [(e.name, json.loads(e.attributes["body"])) for e in span.events]  # type: ignore[index]


def test_opted_in_content_goes_into_the_v136_events(
    bedrock_server: BedrockServer, recorder: SpanRecorder
) -> None:
    """capture_genai_content=True (default generation): the system prompt, the user
    message and the choice are span events with their body as JSON."""
    captured = _instrumented(bedrock_server.url, recorder, capture_genai_content=True)
    try:
        captured.client.converse(modelId=CLAUDE, messages=MESSAGES, system=[{"text": SYSTEM}])
    finally:
        captured.handle.uninstrument()
    events = _events(captured.span())
    assert [name for name, _ in events] == [
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.choice",
    ]
    assert events[0][1] == {"content": SYSTEM}
    assert events[1][1] == {"content": PROMPT}
    assert events[2][1]["message"]["content"] == DEFAULT_COMPLETION
    assert events[2][1]["finish_reason"] == "end_turn"


def test_the_environment_variable_turns_content_on_and_the_option_wins(
    bedrock_server: BedrockServer, recorder: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true captures the stream's
    output at its end; capture_genai_content=False turns capture off whatever it says."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    on = _instrumented(bedrock_server.url, recorder)
    off_recorder = SpanRecorder()
    off = _instrumented(bedrock_server.url, off_recorder, capture_genai_content=False)
    try:
        list(on.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
        list(off.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    finally:
        on.handle.uninstrument()
        off.handle.uninstrument()
    events = _events(on.span())
    assert [name for name, _ in events] == ["gen_ai.user.message", "gen_ai.choice"]
    assert events[1][1]["message"]["content"] == DEFAULT_COMPLETION
    assert off.span().events == ()
    assert "zqPROMPTqz" not in _texts(off.span())


def test_latest_generation_content_and_stream_attributes(
    bedrock_server: BedrockServer, recorder: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the latest conventions: ``gen_ai.provider.name``, ``gen_ai.request.stream``,
    time to first chunk, and content as JSON span attributes (input at the call's end,
    output at the stream's)."""
    monkeypatch.setattr(semconv, "GENERATION", semconv.LATEST)
    monkeypatch.setattr(bedrock_runtime, "_SETTINGS", {})
    bedrock = _instrumented(bedrock_server.url, recorder, capture_genai_content=True)
    try:
        list(bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    finally:
        bedrock.handle.uninstrument()
    a = attrs(bedrock.span())
    assert a["gen_ai.provider.name"] == "aws.bedrock" and "gen_ai.system" not in a
    assert a["gen_ai.request.stream"] is True
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < 10
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    (output,) = json.loads(a["gen_ai.output.messages"])
    assert output["parts"] == [{"type": "text", "content": DEFAULT_COMPLETION}]
    assert bedrock.span().events == ()


# -- the docs ------------------------------------------------------------------------------


def test_every_genai_attribute_and_event_is_documented(
    bedrock_server: BedrockServer, recorder: SpanRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every attribute and event a GenAI span carries (both generations, content on, a
    stream broken mid-way, a guardrail) is named in docs/genai.md or the span docs."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    text = "".join((docs / page).read_text() for page in ("genai.md", "telemetry.md"))
    documented = set(re.findall(r"`([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)`", text))
    guardrail = {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}
    for generation in (semconv.DEFAULT, semconv.LATEST):
        monkeypatch.setattr(semconv, "GENERATION", generation)
        monkeypatch.setattr(bedrock_runtime, "_SETTINGS", {})
        bedrock = _instrumented(bedrock_server.url, recorder, capture_genai_content=True)
        try:
            bedrock.client.converse(
                modelId=CLAUDE,
                messages=MESSAGES,
                system=[{"text": SYSTEM}],
                guardrailConfig=guardrail,
                inferenceConfig={"maxTokens": 5, "topP": 0.5},
            )
            body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 9}
            bedrock.client.invoke_model(modelId=CLAUDE, body=json.dumps(body).encode())
            bedrock.client.apply_guardrail(
                source="OUTPUT", content=[{"text": {"text": "ok"}}], **guardrail
            )
            list(bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
            bedrock_server.script([BedrockFault.stream_error("throttlingException", after=2)])
            with pytest.raises(EventStreamError):
                list(bedrock.client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
        finally:
            bedrock.handle.uninstrument()
    emitted: set[str] = set()
    for span in recorder.spans:
        emitted.update(span.attributes or {})
        for event in span.events:
            emitted.add(event.name)
            emitted.update(k for k in event.attributes or {} if not k.startswith("exception."))
    assert {"gen_ai.input.messages", "gen_ai.choice", "body", "aws.sdk.stream.end"} <= emitted
    assert sorted(emitted - documented) == []


# -- export ---------------------------------------------------------------------------------

_AT_EXIT = """
import sys
import boto3
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
import evobs

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
session = boto3.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
)
evobs.instrument(session, tracer_provider=provider, signals=["traces"])
client = session.client("bedrock-runtime", endpoint_url=sys.argv[1])
KEPT = client.converse_stream(
    modelId="us.amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}]
)
print("returned", flush=True)
"""


def test_a_stream_never_read_ends_its_span_at_exit(
    bedrock_server: BedrockServer, tmp_path: Any
) -> None:
    """A script that keeps a stream unread until it exits: the stream is finalized at
    exit, and its span ends then, before the span processors shut down (a new thread
    would not outlive the process)."""
    import subprocess
    import sys

    script = tmp_path / "unread.py"
    script.write_text(_AT_EXIT)
    done = subprocess.run(
        [sys.executable, str(script), bedrock_server.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.index("returned") < out.index('"aws.sdk.stream.end": "collected"'), out[-3000:]


def test_stream_spans_cross_the_real_otlp_exporter(
    bedrock_server: BedrockServer, registry: CollectorRegistry
) -> None:
    """Through ``evobs.configure`` and the real OTLP/HTTP exporter, a stream's span arrives
    once it ends, with the GenAI attributes and how the stream ended."""
    from .otlp_receiver import otlp_receiver

    with otlp_receiver() as receiver:
        telemetry = evobs.configure(
            "assistant",
            traces="otlp",
            otlp_endpoint=receiver.base_url,
            metrics_port=None,
            logs=None,
            registry=registry,
            set_global=False,
        )
        client = client_at(bedrock_server.url)
        handle = evobs.instrument(
            client, tracer_provider=telemetry.tracer_provider, registry=registry
        )
        try:
            stream = client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"]
            iterator = iter(stream)
            next(iterator)
            stream.close()
            telemetry.force_flush(timeout=10)
        finally:
            handle.uninstrument()
            telemetry.shutdown(timeout=10)
        (span,) = receiver.named(f"chat {NOVA}")
    assert span.attributes["gen_ai.request.model"] == NOVA
    assert span.attributes["aws.sdk.stream.end"] == "closed"
    assert span.attributes["aws.sdk.stream.events"] == 1
    assert span.attributes["rpc.method"] == "ConverseStream"
    assert span.end_ns > span.start_ns
