"""The stream wrapper's one promise: on_done exactly once, whichever way the stream ends
(read to the end, closed after a partial read, dropped, broken), with the usage seen,
and the application's iteration unchanged."""

from __future__ import annotations

import gc
import json
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.eventstream import EventStream

from evobs import genai
from evobs.demo.bedrock import DEFAULT_COMPLETION, BedrockServer, count_words
from evobs.genai.stream import GenAIEventStream, Tracker

from .genai_util import MODELS, Probe, client_for

MODEL = MODELS["amazon.nova"]
WORDS = count_words(DEFAULT_COMPLETION)
MESSAGES = [{"role": "user", "content": [{"text": "Tell me a story"}]}]


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off: what is freed is freed by reference counting, so
    a reference cycle would keep the stream alive and fail the test."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stream(bedrock_server: BedrockServer) -> tuple[Probe, Any]:
    client = client_for(bedrock_server)
    probe = Probe(client)
    return probe, client.converse_stream(modelId=MODEL, messages=MESSAGES)


def test_the_wrapper_is_transparent(bedrock_server: BedrockServer) -> None:
    """The application gets an EventStream yielding exactly the events it would get
    without evobs; botocore's own members are reachable through it."""
    client = client_for(bedrock_server)
    plain = list(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    probe, out = _stream(bedrock_server)
    stream = out["stream"]
    assert isinstance(stream, EventStream) and isinstance(stream, GenAIEventStream)
    assert stream._operation_name == "ConverseStream"  # botocore's private member, passed through
    assert list(stream) == plain
    assert "GenAIEventStream" in repr(stream)
    assert probe.summary.end == "completed"


def test_full_read_ends_once(bedrock_server: BedrockServer) -> None:
    """Read to the end: on_done once (completed) with the usage; iterating again yields
    nothing, and close() afterwards calls nothing more."""
    probe, out = _stream(bedrock_server)
    stream = out["stream"]
    assert len(list(stream)) > WORDS
    assert list(stream) == []
    stream.close()
    assert len(probe.summaries) == 1
    assert probe.summary.end == "completed"
    assert probe.summary.response.output_tokens == WORDS


def test_partial_read_then_close(bedrock_server: BedrockServer) -> None:
    """Three events read, then close(): on_done once (closed) with the three events and no
    usage (the metadata event was never read); closing again calls nothing more."""
    probe, out = _stream(bedrock_server)
    stream = out["stream"]
    for index, _ in enumerate(stream):
        if index == 2:
            break
    assert probe.summaries == []  # leaving the loop is not an end
    stream.close()
    stream.close()
    summary = probe.summary
    assert (summary.end, summary.events) == ("closed", 3)
    assert summary.response.input_tokens is None and summary.response.output_tokens is None


def test_a_left_loop_resumes(bedrock_server: BedrockServer) -> None:
    """Leaving the loop and iterating again resumes where it stopped (as botocore's stream
    does), and the end is counted once with every event."""
    client = client_for(bedrock_server)
    plain = list(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    probe, out = _stream(bedrock_server)
    stream = out["stream"]
    first = []
    for event in stream:
        first.append(event)
        if len(first) == 4:
            break
    rest = list(stream)
    assert first + rest == plain
    assert (probe.summary.end, probe.summary.events) == ("completed", len(plain))


def test_dropped_unread_ends_when_collected(bedrock_server: BedrockServer, no_gc: None) -> None:
    """A response dropped without reading its stream: on_done once (collected) as soon as
    the last reference goes, the cyclic collector off: no reference cycle holds it."""
    probe, out = _stream(bedrock_server)
    ref = weakref.ref(out["stream"])
    del out
    assert ref() is None
    assert probe.summary.end == "collected"
    assert probe.summary.events == 0


def test_dropped_half_read_ends_when_collected(bedrock_server: BedrockServer, no_gc: None) -> None:
    """An iterator and its stream dropped half-way: on_done once (collected) with the events
    read so far."""
    probe, out = _stream(bedrock_server)
    iterator = iter(out["stream"])
    for _ in range(5):
        next(iterator)
    del out, iterator
    assert (probe.summary.end, probe.summary.events) == ("collected", 5)


def test_a_finished_stream_is_freed(bedrock_server: BedrockServer, no_gc: None) -> None:
    """After the end, the wrapper is not kept alive by its finalizer or its callback."""
    probe, out = _stream(bedrock_server)
    stream = out["stream"]
    list(stream)
    assert not stream._evobs_finalizer.alive
    ref = weakref.ref(stream)
    del out, stream
    assert ref() is None
    assert len(probe.summaries) == 1


def test_invoke_stream_partial_close_and_gc(bedrock_server: BedrockServer, no_gc: None) -> None:
    """InvokeModelWithResponseStream: read fully, closed half-way, dropped: one summary
    each, with the usage only where the trailer was read."""
    client = client_for(bedrock_server)
    probe = Probe(client)
    body = json.dumps({"prompt": "Tell me a story", "max_gen_len": 50})
    model = MODELS["meta.llama"]
    list(client.invoke_model_with_response_stream(modelId=model, body=body)["body"])
    half = client.invoke_model_with_response_stream(modelId=model, body=body)["body"]
    next(iter(half))
    half.close()
    dropped = client.invoke_model_with_response_stream(modelId=model, body=body)
    del dropped
    full, closed, collected = probe.summaries
    assert (full.end, full.response.output_tokens) == ("completed", WORDS)
    assert (closed.end, closed.events) == ("closed", 1)
    assert closed.response.input_tokens is not None  # Llama's first chunk carries the prompt count
    assert closed.response.output_tokens == 1  # generation_token_count of the one chunk read
    assert (collected.end, collected.events) == ("collected", 0)


def test_a_failing_callback_never_reaches_the_application(bedrock_server: BedrockServer) -> None:
    """on_done raising: the application's iteration completes normally; the error goes to
    on_error."""
    client = client_for(bedrock_server)
    settings = genai.Settings()
    errors: list[BaseException] = []

    def broken(summary: genai.StreamSummary) -> None:
        raise RuntimeError("evobs bug")

    def after(parsed: Any, model: Any, **kwargs: Any) -> None:
        request = genai.read_request(model.name, {"modelId": MODEL}, settings)
        assert request is not None
        genai.wrap_stream(request, parsed, settings, broken, start_ns=0, on_error=errors.append)

    client.meta.events.register("after-call.bedrock-runtime.ConverseStream", after)
    events = list(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    assert len(events) > WORDS
    assert [str(e) for e in errors] == ["evobs bug"]


class _BrokenAccumulator:
    def feed(self, event: Any) -> None:
        raise ValueError("cannot read that")

    def finish(self) -> genai.Response:
        return genai.Response()


def test_a_failing_accumulator_never_reaches_the_application(bedrock_server: BedrockServer) -> None:
    """An accumulator that raises on every event: every event still reaches the
    application, on_done still runs once, each failure goes to on_error."""
    client = client_for(bedrock_server)
    plain = list(client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"])
    raw = client.converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]
    done: list[genai.StreamSummary] = []
    errors: list[BaseException] = []
    tracker = Tracker(_BrokenAccumulator(), done.append, start_ns=0, on_error=errors.append)  # type: ignore[arg-type]
    assert list(GenAIEventStream(raw, tracker)) == plain
    assert len(done) == 1 and done[0].end == "completed"
    assert len(errors) == len(plain)


def test_concurrent_ends_call_once() -> None:
    """Many threads ending the same tracker at once: on_done runs once."""
    done: list[genai.StreamSummary] = []
    tracker = Tracker(_BrokenAccumulator(), done.append, start_ns=0)  # type: ignore[arg-type]
    barrier = threading.Barrier(8)

    def end() -> None:
        barrier.wait()
        tracker.finish("closed")

    threads = [threading.Thread(target=end) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(done) == 1 and tracker.done


def test_wrap_leaves_other_values_alone(bedrock_server: BedrockServer) -> None:
    """wrap() replaces only botocore's own EventStream: not an already wrapped stream, not a
    missing one, not another operation's response."""
    probe, out = _stream(bedrock_server)
    settings = genai.Settings()
    request = probe.request
    assert genai.wrap_stream(request, out, settings, print, start_ns=0) is None  # already wrapped
    assert genai.wrap_stream(request, {}, settings, print, start_ns=0) is None
    other = genai.Request("Converse", "chat", MODEL)
    assert genai.wrap_stream(other, {"stream": out["stream"]}, settings, print, start_ns=0) is None
    out["stream"].close()
