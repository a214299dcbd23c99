"""Whether prompts and completions are recorded, where they go, and how they are capped.

Content (system prompts, messages, tool arguments and results, completions) is never
recorded unless the user opts in. Two switches decide, read once:

- the evobs option ``capture_genai_content``: ``True`` turns capture on, ``False``
  turns it off whatever the environment says, ``None`` (the default) defers to
- ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``, as the OpenTelemetry GenAI
  instrumentations read it: ``true`` in the default generation; ``SPAN_ONLY``,
  ``EVENT_ONLY``, ``SPAN_AND_EVENT`` or ``NO_CONTENT`` with
  ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` (``true`` is read
  as ``SPAN_ONLY`` there). Anything else means off.

``capture_params`` has nothing to do with it: it never makes content appear.

Where captured content goes follows the generation (see :mod:`.semconv`): span
attributes holding JSON (latest, :data:`SPAN`), or the v1.36 content events
(:data:`EVENT`). Every text is passed through the credential scrubber and capped
(:data:`MAX_PART_CHARS`), and each rendering as a whole is capped
(:data:`MAX_CONTENT_CHARS`) by keeping the most recent messages that fit, so the
JSON stays valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Final

from .._redact import TRUNCATED, scrub_credentials
from . import semconv

__all__ = [
    "ENV_VAR",
    "EVENT",
    "MAX_BODY_BYTES",
    "MAX_CONTENT_CHARS",
    "MAX_PART_CHARS",
    "MAX_REQUEST_BODY_BYTES",
    "NONE",
    "SPAN",
    "SPAN_AND_EVENT",
    "Content",
    "LegacyEvent",
    "Settings",
    "capture_mode",
]

ENV_VAR: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

NONE: Final = "none"
SPAN: Final = "span"
EVENT: Final = "event"
SPAN_AND_EVENT: Final = "span_and_event"

#: One text (a message part, a tool argument document) is cut past this.
MAX_PART_CHARS: Final = 4096
#: One rendering (one attribute value, one event body) is at most this long.
MAX_CONTENT_CHARS: Final = 16384
#: InvokeModel response bodies up to this size are read for their usage and finish
#: reason (then handed back identical); larger ones are left alone.
MAX_BODY_BYTES: Final = 1024 * 1024
#: InvokeModel request bodies larger than this are not parsed (only the model id is used).
MAX_REQUEST_BODY_BYTES: Final = 1024 * 1024

_LATEST_VALUES: Final = {
    "span_only": SPAN,
    "event_only": EVENT,
    "span_and_event": SPAN_AND_EVENT,
    "no_content": NONE,
    "true": SPAN,
}


def capture_mode(
    option: bool | None,
    generation: str = semconv.GENERATION,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Where content goes (:data:`NONE`, :data:`SPAN`, :data:`EVENT`,
    :data:`SPAN_AND_EVENT`), from the option and the environment."""
    if option is False:
        return NONE
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower()
    if generation == semconv.LATEST:
        mode = _LATEST_VALUES.get(raw, NONE)
        if option is True and mode == NONE:
            return SPAN
        return mode
    if option is True or raw == "true":
        return EVENT
    return NONE


class Settings:
    """What the GenAI extraction needs to know, decided once per instrumentation."""

    __slots__ = (
        "capture",
        "generation",
        "max_body_bytes",
        "max_content_chars",
        "max_part_chars",
        "max_request_body_bytes",
    )

    def __init__(
        self,
        *,
        capture: str = NONE,
        generation: str = semconv.GENERATION,
        max_content_chars: int = MAX_CONTENT_CHARS,
        max_part_chars: int = MAX_PART_CHARS,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_request_body_bytes: int = MAX_REQUEST_BODY_BYTES,
    ) -> None:
        if capture not in (NONE, SPAN, EVENT, SPAN_AND_EVENT):
            raise ValueError(f"evobs: unknown GenAI capture mode {capture!r}")
        self.capture = capture
        self.generation = generation
        self.max_content_chars = max_content_chars
        self.max_part_chars = max_part_chars
        #: 0 never reads an InvokeModel response body (usage then comes from headers).
        self.max_body_bytes = max_body_bytes
        self.max_request_body_bytes = max_request_body_bytes

    @classmethod
    def from_options(
        cls, capture_genai_content: bool | None = None, *, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from the evobs option and the environment, read now (once per
        instrumentation). With ``environ`` given, the generation is read from it too."""
        if environ is None:
            gen = semconv.GENERATION
            env: Mapping[str, str] = os.environ
        else:
            gen = semconv.generation(environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", ""))
            env = environ
        return cls(capture=capture_mode(capture_genai_content, gen, env), generation=gen)

    @property
    def capture_content(self) -> bool:
        """Whether any content is collected at all."""
        return self.capture != NONE

    @property
    def content_on_span(self) -> bool:
        return self.capture in (SPAN, SPAN_AND_EVENT)

    @property
    def content_on_events(self) -> bool:
        return self.capture in (EVENT, SPAN_AND_EVENT)

    def __repr__(self) -> str:
        return f"<genai.Settings {self.generation} capture={self.capture}>"


# -- content ------------------------------------------------------------------------------


def text_part(text: str) -> dict[str, Any]:
    """A text part in the conventions' message schema."""
    return {"type": "text", "content": text}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def tool_response_part(call_id: Any, response: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": call_id, "response": response}


def marker_part(kind: str) -> dict[str, Any]:
    """A part whose data is never recorded (images, documents, video, reasoning)."""
    return {"type": kind}


class Content:
    """Captured content of one call, in the conventions' message schema (latest).

    Built only when capture is on. ``input_messages`` are ``{"role", "parts"}``;
    ``output_messages`` add ``finish_reason``; ``system`` is a list of parts;
    ``tools`` the tool definitions.
    """

    __slots__ = ("input_messages", "output_messages", "system", "tools")

    def __init__(self) -> None:
        self.system: list[dict[str, Any]] = []
        self.input_messages: list[dict[str, Any]] = []
        self.output_messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return (
            f"<genai.Content system={len(self.system)} in={len(self.input_messages)} "
            f"out={len(self.output_messages)} tools={len(self.tools)}>"
        )


class LegacyEvent:
    """One v1.36 content event: its name and body (the body's ``content`` is opt-in)."""

    __slots__ = ("body", "name")

    def __init__(self, name: str, body: dict[str, Any]) -> None:
        self.name = name
        self.body = body

    def __repr__(self) -> str:
        return f"<LegacyEvent {self.name}>"


def _cap_text(text: str, limit: int) -> str:
    text = scrub_credentials(text)
    if len(text) > limit:
        return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED
    return text


#: Members that hold free-form documents (tool arguments and results, JSON schemas): a
#: document that renders past the part cap is replaced by its capped JSON text.
_DOCUMENTS: Final = frozenset({"arguments", "response", "parameters"})


def _clean(value: Any, limit: int, depth: int = 0, document: bool = False) -> Any:
    """A JSON-safe copy: strings scrubbed and capped, containers copied, a ``document``
    that renders past ``limit`` replaced by its capped JSON text, other objects by their
    type name."""
    if isinstance(value, str):
        return _cap_text(value, limit)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth > 16:
        return "<too-deep>"
    out: Any
    if isinstance(value, dict):
        out = {str(k): _clean(v, limit, depth + 1, k in _DOCUMENTS) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        out = [_clean(v, limit, depth + 1) for v in value]
    else:
        return f"<{type(value).__name__}>"
    if document:
        text = _dumps(out)
        if len(text) > limit:
            return _cap_text(text, limit)
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def render(items: list[dict[str, Any]], settings: Settings) -> str:
    """The JSON of ``items`` (messages or parts), texts capped, at most
    ``settings.max_content_chars`` long: the most recent items that fit are kept."""
    cleaned = [_clean(item, settings.max_part_chars) for item in items]
    budget = settings.max_content_chars
    kept: list[str] = []
    used = 2  # the brackets
    for item in reversed(cleaned):
        text = _dumps(item)
        cost = len(text) + (1 if kept else 0)
        if used + cost > budget:
            break
        kept.append(text)
        used += cost
    if not kept and cleaned:
        # Not even the last item fits: shrink its texts until it does.
        limit = settings.max_part_chars
        while limit > 16:
            limit //= 2
            text = _dumps(_clean(items[-1], limit))
            if len(text) + 2 <= budget:
                kept.append(text)
                break
    return "[" + ",".join(reversed(kept)) + "]"


def span_attributes(content: Content, settings: Settings) -> dict[str, str]:
    """The latest generation's content attributes (JSON strings), for the call span."""
    out: dict[str, str] = {}
    if content.system:
        out[semconv.SYSTEM_INSTRUCTIONS] = render(content.system, settings)
    if content.input_messages:
        out[semconv.INPUT_MESSAGES] = render(content.input_messages, settings)
    if content.output_messages:
        out[semconv.OUTPUT_MESSAGES] = render(content.output_messages, settings)
    if content.tools:
        out[semconv.TOOL_DEFINITIONS] = render(content.tools, settings)
    return out


def _legacy_content(parts: list[dict[str, Any]], settings: Settings) -> Any:
    """v1.36 ``content``: the text when every part is text, else the parts."""
    texts = [p.get("content") for p in parts if p.get("type") == "text"]
    if len(texts) == len(parts) and all(isinstance(t, str) for t in texts):
        return _cap_text("\n".join(str(t) for t in texts), settings.max_content_chars)
    return _clean(parts, settings.max_part_chars)


def _legacy_tool_calls(parts: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            "id": p.get("id"),
            "type": "function",
            "function": {
                "name": p.get("name"),
                "arguments": _clean(p.get("arguments"), settings.max_part_chars),
            },
        }
        for p in parts
        if p.get("type") == "tool_call"
    ]


def legacy_events(content: Content, settings: Settings) -> list[LegacyEvent]:
    """The v1.36 content events, in order: system, each input message, each choice."""
    events: list[LegacyEvent] = []
    if content.system:
        body = {"content": _legacy_content(content.system, settings)}
        events.append(LegacyEvent("gen_ai.system.message", body))
    for message in content.input_messages:
        role = message.get("role")
        parts = message.get("parts") or []
        responses = [p for p in parts if p.get("type") == "tool_call_response"]
        others = [p for p in parts if p.get("type") != "tool_call_response"]
        for part in responses:
            body = {"content": _clean(part.get("response"), settings.max_part_chars)}
            body["id"] = part.get("id")
            events.append(LegacyEvent("gen_ai.tool.message", body))
        if not others:
            continue
        if role == "assistant":
            calls = _legacy_tool_calls(others, settings)
            texts = [p for p in others if p.get("type") != "tool_call"]
            body = {"content": _legacy_content(texts, settings)} if texts else {}
            if calls:
                body["tool_calls"] = calls
            events.append(LegacyEvent("gen_ai.assistant.message", body))
        elif role == "system":
            body = {"content": _legacy_content(others, settings)}
            events.append(LegacyEvent("gen_ai.system.message", body))
        else:
            body = {"content": _legacy_content(others, settings)}
            events.append(LegacyEvent("gen_ai.user.message", body))
    for index, message in enumerate(content.output_messages):
        parts = message.get("parts") or []
        texts = [p for p in parts if p.get("type") != "tool_call"]
        reply: dict[str, Any] = {}
        if texts:
            reply["content"] = _legacy_content(texts, settings)
        calls = _legacy_tool_calls(parts, settings)
        if calls:
            reply["tool_calls"] = calls
        body = {
            "index": index,
            "finish_reason": message.get("finish_reason") or "unknown",
            "message": reply,
        }
        events.append(LegacyEvent("gen_ai.choice", body))
    return events


class OutputBuilder:
    """Builds the output message from streamed deltas, by content block index.

    Used only when capture is on. Each block keeps at most ``limit`` characters (the
    rendering caps them anyway), so a long stream costs bounded memory.
    """

    __slots__ = ("_blocks", "_limit")

    def __init__(self, limit: int = MAX_PART_CHARS) -> None:
        # index -> [kind, pieces, size, call id, tool name]
        self._blocks: dict[int, list[Any]] = {}
        self._limit = limit + 1

    def _block(self, index: Any, kind: str) -> list[Any]:
        key = index if isinstance(index, int) and not isinstance(index, bool) else -1
        block = self._blocks.get(key)
        if block is None:
            block = self._blocks[key] = [kind, [], 0, None, None]
        return block

    def _add(self, block: list[Any], piece: Any) -> None:
        if isinstance(piece, str) and piece and block[2] < self._limit:
            piece = piece[: self._limit - block[2]]
            block[1].append(piece)
            block[2] += len(piece)

    def text(self, index: Any, piece: Any) -> None:
        self._add(self._block(index, "text"), piece)

    def tool_start(self, index: Any, call_id: Any, name: Any) -> None:
        block = self._block(index, "tool_call")
        block[0] = "tool_call"
        block[3] = call_id if isinstance(call_id, str) else None
        block[4] = name if isinstance(name, str) else None

    def tool_input(self, index: Any, piece: Any) -> None:
        block = self._block(index, "tool_call")
        block[0] = "tool_call"
        self._add(block, piece)

    def message(self, finish_reason: str | None) -> dict[str, Any]:
        """The output message so far (``{"role", "parts", "finish_reason"}``)."""
        parts: list[dict[str, Any]] = []
        for _, block in sorted(self._blocks.items()):
            kind, pieces, _size, call_id, name = block
            joined = "".join(pieces)
            if kind == "tool_call":
                try:
                    arguments: Any = json.loads(joined) if joined else {}
                except ValueError:
                    arguments = joined
                parts.append(tool_call_part(call_id, name, arguments))
            else:
                parts.append(text_part(joined))
        return {"role": "assistant", "parts": parts, "finish_reason": finish_reason or "unknown"}
