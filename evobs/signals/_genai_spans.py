"""GenAI on the call span: what the traces signal renders from ``call.genai``.

The span's name and request attributes are set when it starts (``TracesSignal``). When
the call ends, :func:`render_call` adds the response attributes and, if the user opted
in, the content. A call that returned a stream (``call.stream``) keeps its span open:
:func:`follow_stream` subscribes the span's end to the stream's, which adds what only
the stream knew (usage, finish reasons, time to first chunk, how it ended, an error
inside it) and ends the span, exactly once, whenever and on whichever thread the stream
ends.

Only the public span API is used after the call: the stream may end on another thread,
after evobs's own span writes are over.
"""

from __future__ import annotations

import json
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import Status, StatusCode

from .._call import WALL_OFFSET_NS
from ..genai import semconv

if TYPE_CHECKING:
    from .._call import Call
    from .._log import HandlerErrors
    from ..genai.capture import Content, Settings
    from ..genai.model import Facts
    from ..genai.stream import StreamSummary

__all__ = ["EVENT_BODY", "follow_stream", "render_call"]

#: The attribute holding a v1.36 content event's body (JSON) on its span event.
EVENT_BODY: Final = "body"
_MAX_DESCRIPTION: Final = 1024


def render_call(span: Any, call: Call, attributes: dict[str, Any]) -> None:
    """The response's attributes into ``attributes`` (the call span's, written after),
    and the captured content onto the span; for a recording span only."""
    facts: Facts = call.genai
    settings = facts.settings
    response = facts.response
    if response is not None:
        attributes.update(response.attributes(settings.generation))
    content = facts.request.content  # built only when capture is on
    if content is not None:
        output = response.output_messages if response is not None else None
        if output:  # a stream's output comes with its end
            content = _content_of(output, content)
        _content(span, content, settings, attributes, call.start_ns, call.end_ns)


def follow_stream(span: Any, call: Call, errors: HandlerErrors) -> bool:
    """Subscribe the span's end to the end of the stream the call returned. False (the
    caller ends the span now) if that failed: a span is never left open."""
    stream = call.stream
    facts: Facts | None = call.genai
    if stream is None or facts is None:
        return False

    def stream_ended(summary: StreamSummary) -> None:
        try:
            _render_end(span, facts, summary)
        finally:
            span.end(end_time=perf_counter_ns() + WALL_OFFSET_NS)

    try:
        stream.subscribe(stream_ended)
    except Exception as exc:
        errors.record("stream-end", exc)
        return False
    return True


def _render_end(span: Any, facts: Facts, summary: StreamSummary) -> None:
    if not span.is_recording():
        return
    settings = facts.settings
    attributes = summary.attributes(settings.generation)
    if summary.outcome != "ok":
        error_type = summary.error_type or summary.outcome
        attributes["error.type"] = error_type
        attributes["aws.sdk.outcome"] = summary.outcome
        message = summary.error_message
        description = (f"{error_type}: {message}" if message else error_type)[:_MAX_DESCRIPTION]
        span.add_event(
            "exception",
            {"exception.type": error_type, "exception.message": description},
        )
        span.set_status(Status(StatusCode.ERROR, description))
    output = summary.response.output_messages
    if facts.request.content is not None and output:
        now = perf_counter_ns()
        _content(span, _content_of(output), settings, attributes, now, now)
    span.set_attributes(attributes)


def _content_of(output: list[dict[str, Any]], request: Content | None = None) -> Content:
    """The request's content (if given) with ``output`` as its output messages."""
    from ..genai.capture import Content

    content = Content()
    if request is not None:
        content.system = request.system
        content.input_messages = request.input_messages
        content.tools = request.tools
    content.output_messages = output
    return content


def _content(
    span: Any,
    content: Content,
    settings: Settings,
    attributes: dict[str, Any],
    start_ns: int,
    end_ns: int | None,
) -> None:
    """Captured content where the generation puts it: JSON span attributes (latest), or
    the v1.36 content events as span events (their body as JSON in :data:`EVENT_BODY`)."""
    from ..genai.capture import legacy_events, span_attributes

    if settings.content_on_span:
        attributes.update(span_attributes(content, settings))
    if settings.content_on_events:
        provider = {semconv.provider_key(settings.generation): semconv.PROVIDER}
        for event in legacy_events(content, settings):
            at = end_ns if event.name == "gen_ai.choice" and end_ns is not None else start_ns
            body = json.dumps(event.body, ensure_ascii=False, separators=(",", ":"), default=str)
            span.add_event(event.name, {**provider, EVENT_BODY: body}, at + WALL_OFFSET_NS)
