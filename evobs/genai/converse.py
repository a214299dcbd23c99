"""The Converse API: one request and response shape for every model.

``Converse`` and ``ConverseStream`` params are botocore's own structures, so their
request attributes need no body. The same block shapes (``{"text"}``,
``{"toolUse"}``, ``{"toolResult"}``, ``{"image"}``...) and stream events
(``messageStart``, ``contentBlockDelta``, ``messageStop``, ``metadata``) are what
Amazon Nova speaks through InvokeModel, so :mod:`.families` reuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from . import semconv
from .capture import (
    Content,
    OutputBuilder,
    Settings,
    marker_part,
    text_part,
    tool_call_part,
    tool_response_part,
)
from .model import Request, Response, count, number, strings, wire_str

__all__ = [
    "StreamState",
    "blocks_to_parts",
    "fill_content",
    "read_inference",
    "read_response",
    "read_usage",
    "tool_definitions",
]

#: Content blocks whose data is never recorded, even with capture on.
_MARKED: Final = ("image", "document", "video", "audio", "reasoningContent", "cachePoint")


def blocks_to_parts(blocks: Any) -> list[dict[str, Any]]:
    """Converse content blocks -> the conventions' parts (text, tool calls, tool results;
    binaries and reasoning as bare markers)."""
    parts: list[dict[str, Any]] = []
    if isinstance(blocks, str):
        return [text_part(blocks)]
    if not isinstance(blocks, list):
        return parts
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            parts.append(text_part(block["text"]))
        elif isinstance(block.get("toolUse"), Mapping):
            use = block["toolUse"]
            parts.append(tool_call_part(use.get("toolUseId"), use.get("name"), use.get("input")))
        elif isinstance(block.get("toolResult"), Mapping):
            result = block["toolResult"]
            inner = result.get("content")
            response: Any = inner
            if isinstance(inner, list):
                response = [
                    b.get("text") if isinstance(b, Mapping) and "text" in b else b.get("json")
                    for b in inner
                    if isinstance(b, Mapping)
                ]
            parts.append(tool_response_part(result.get("toolUseId"), response))
        else:
            for kind in _MARKED:
                if kind in block:
                    parts.append(marker_part(kind))
                    break
    return parts


def fill_content(content: Content, system: Any, messages: Any, tool_config: Any) -> None:
    """Converse-shaped ``system``, ``messages`` and ``toolConfig`` -> ``content``."""
    if isinstance(system, list):
        content.system.extend(blocks_to_parts(system))
    elif isinstance(system, str):
        content.system.append(text_part(system))
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                role = message.get("role") if isinstance(message.get("role"), str) else "user"
                parts = blocks_to_parts(message.get("content"))
                content.input_messages.append({"role": role, "parts": parts})
    content.tools.extend(tool_definitions(tool_config))


def tool_definitions(tool_config: Any) -> list[dict[str, Any]]:
    """``toolConfig.tools[].toolSpec`` -> the conventions' tool definitions."""
    out: list[dict[str, Any]] = []
    tools = tool_config.get("tools") if isinstance(tool_config, Mapping) else None
    if not isinstance(tools, list):
        return out
    for tool in tools:
        spec = tool.get("toolSpec") if isinstance(tool, Mapping) else None
        if isinstance(spec, Mapping):
            schema = spec.get("inputSchema")
            definition: dict[str, Any] = {"type": "function", "name": spec.get("name")}
            if isinstance(spec.get("description"), str):
                definition["description"] = spec["description"]
            if isinstance(schema, Mapping) and "json" in schema:
                definition["parameters"] = schema["json"]
            out.append(definition)
    return out


def read_inference(request: Request, config: Any) -> None:
    """Converse's ``inferenceConfig`` (Nova's too: its older bodies use snake_case, and
    its ``topK`` lives there)."""
    if not isinstance(config, Mapping):
        return
    get = config.get
    request.set(semconv.REQUEST_MAX_TOKENS, count(get("maxTokens", get("max_new_tokens"))))
    request.set(semconv.REQUEST_TEMPERATURE, number(get("temperature")))
    request.set(semconv.REQUEST_TOP_P, number(get("topP", get("top_p"))))
    request.set(semconv.REQUEST_TOP_K, number(get("topK", get("top_k"))))
    request.set(semconv.REQUEST_STOP_SEQUENCES, strings(get("stopSequences")))


def read_request(request: Request, params: Mapping[str, Any], settings: Settings) -> None:
    """Converse / ConverseStream params -> request attributes (and content if on)."""
    read_inference(request, params.get("inferenceConfig"))
    extra = params.get("additionalModelRequestFields")
    if isinstance(extra, Mapping):  # top_k is model-specific: it travels here
        request.set(semconv.REQUEST_TOP_K, number(extra.get("top_k", extra.get("topK"))))
    guardrail = params.get("guardrailConfig")
    if isinstance(guardrail, Mapping):
        request.guardrail_id = wire_str(guardrail.get("guardrailIdentifier"))
        request.set(semconv.GUARDRAIL_ID, request.guardrail_id)
    if settings.capture_content:
        content = request.content = Content()
        fill_content(
            content, params.get("system"), params.get("messages"), params.get("toolConfig")
        )


def read_usage(response: Response, usage: Any) -> None:
    """Converse's ``TokenUsage`` (and Nova's, which names cache counts differently)."""
    if isinstance(usage, Mapping):
        response.set_usage(
            usage.get("inputTokens"),
            usage.get("outputTokens"),
            usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount")),
            usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount")),
        )


def read_response(parsed: Mapping[str, Any], settings: Settings) -> Response:
    """A Converse response (or a Nova InvokeModel body) -> :class:`Response`."""
    response = Response()
    response.add_finish_reason(parsed.get("stopReason"))
    read_usage(response, parsed.get("usage"))
    trace = parsed.get("trace")
    if isinstance(trace, Mapping):
        router = trace.get("promptRouter")
        if isinstance(router, Mapping):  # a prompt router picked the model
            response.response_model = wire_str(router.get("invokedModelId"))
    if settings.capture_content:
        output = parsed.get("output")
        message = output.get("message") if isinstance(output, Mapping) else None
        if isinstance(message, Mapping):
            response.output_messages = [
                {
                    "role": "assistant",
                    "parts": blocks_to_parts(message.get("content")),
                    "finish_reason": response.finish_reasons[0]
                    if response.finish_reasons
                    else "unknown",
                }
            ]
    return response


class StreamState:
    """Accumulates ConverseStream events (or Nova's streamed chunks): finish reason,
    usage, guardrail action, and the output when capturing."""

    __slots__ = ("output", "response")

    def __init__(self, settings: Settings) -> None:
        self.response = Response()
        self.output = OutputBuilder(settings.max_part_chars) if settings.capture_content else None

    def feed(self, event: Mapping[str, Any]) -> None:
        """One parsed event (``{"contentBlockDelta": {...}}``...)."""
        output = self.output
        if output is not None:
            start = event.get("contentBlockStart")
            if isinstance(start, Mapping):
                use = (
                    start.get("start", {}).get("toolUse")
                    if isinstance(start.get("start"), Mapping)
                    else None
                )
                if isinstance(use, Mapping):
                    output.tool_start(
                        start.get("contentBlockIndex"), use.get("toolUseId"), use.get("name")
                    )
            delta_event = event.get("contentBlockDelta")
            if isinstance(delta_event, Mapping):
                delta = delta_event.get("delta")
                index = delta_event.get("contentBlockIndex")
                if isinstance(delta, Mapping):
                    if "text" in delta:
                        output.text(index, delta.get("text"))
                    elif isinstance(delta.get("toolUse"), Mapping):
                        output.tool_input(index, delta["toolUse"].get("input"))
        stop = event.get("messageStop")
        if isinstance(stop, Mapping):
            self.response.add_finish_reason(stop.get("stopReason"))
        metadata = event.get("metadata")
        if isinstance(metadata, Mapping):
            read_usage(self.response, metadata.get("usage"))
            trace = metadata.get("trace")
            router = trace.get("promptRouter") if isinstance(trace, Mapping) else None
            if isinstance(router, Mapping):
                self.response.response_model = wire_str(router.get("invokedModelId"))

    def finish(self) -> Response:
        """The response so far (a partial read gives what was seen)."""
        if self.output is not None:
            reasons = self.response.finish_reasons
            self.response.output_messages = [self.output.message(reasons[0] if reasons else None)]
        return self.response
