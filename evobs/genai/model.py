"""The facts of one GenAI call: what was asked (:class:`Request`), what came back
(:class:`Response`), and how each renders to attributes in a generation.

Plain data, no OpenTelemetry: a signal renders them. Every value that came from the
wire is checked for type and capped here, once.
"""

from __future__ import annotations

from typing import Any, Final

from . import semconv
from .capture import Content, Settings

__all__ = [
    "MAX_WIRE_CHARS",
    "Facts",
    "Request",
    "Response",
    "count",
    "items",
    "number",
    "strings",
    "wire_str",
]

#: Strings from the wire (ids, model names, finish reasons) are cut past this.
MAX_WIRE_CHARS: Final = 256
#: At most this many finish reasons or stop sequences are kept.
MAX_LIST_ITEMS: Final = 16


def wire_str(value: Any, limit: int = MAX_WIRE_CHARS) -> str | None:
    """A string from the wire, capped; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[:limit]


def items(value: Any) -> list[Any]:
    """A JSON array to iterate over; anything else is empty."""
    return value if isinstance(value, list) else []


def count(value: Any) -> int | None:
    """A token count: a non-negative int (bools and floats are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def number(value: Any) -> float | None:
    """A sampling parameter (temperature, top_p...): an int or float, as float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def strings(value: Any) -> list[str] | None:
    """A list of strings from a request (stop sequences), capped in count and length."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return None
    out = [s for s in (wire_str(v) for v in value[:MAX_LIST_ITEMS]) if s is not None]
    return out or None


class Request:
    """What a Bedrock Runtime GenAI call asked for, known before anything is sent."""

    __slots__ = (
        "attributes",
        "aws_operation",
        "content",
        "family",
        "generation",
        "guardrail_id",
        "model",
        "operation_name",
        "streaming",
    )

    def __init__(
        self,
        aws_operation: str,
        operation_name: str,
        model: str | None,
        *,
        family: str | None = None,
        streaming: bool = False,
        generation: str = semconv.GENERATION,
    ) -> None:
        #: ``Converse``, ``InvokeModelWithResponseStream``, ``ApplyGuardrail``...
        self.aws_operation = aws_operation
        #: ``gen_ai.operation.name``: ``chat``, ``text_completion``, ``embeddings``...
        self.operation_name = operation_name
        self.model = model
        #: The InvokeModel body dialect (``anthropic.claude``...); None for Converse
        #: (one shape for every model) and for unknown models.
        self.family = family
        self.streaming = streaming
        self.generation = generation
        self.guardrail_id: str | None = None
        #: Only when content capture is on.
        self.content: Content | None = None
        #: The span attributes known at request time (sampling-relevant ones first).
        self.attributes: dict[str, Any] = {
            semconv.OPERATION_NAME: operation_name,
            semconv.provider_key(generation): semconv.PROVIDER,
        }
        if model:
            self.attributes[semconv.REQUEST_MODEL] = model
        if streaming and generation == semconv.LATEST:
            self.attributes[semconv.REQUEST_STREAM] = True
        if family:
            self.attributes[semconv.MODEL_FAMILY] = family

    @property
    def span_name(self) -> str | None:
        """The conventions' span name; None where evobs keeps its own (ApplyGuardrail)."""
        if self.operation_name == semconv.APPLY_GUARDRAIL:
            return None
        return semconv.span_name(self.operation_name, self.model)

    @property
    def is_inference(self) -> bool:
        """Whether the GenAI metrics (duration, tokens) apply."""
        return self.operation_name != semconv.APPLY_GUARDRAIL

    def metric_labels(self) -> tuple[str, str, str]:
        """``(operation name, provider, request model)``: the label values the GenAI
        metric families share (in :data:`semconv.TOKEN_USAGE`'s label order)."""
        return (self.operation_name, semconv.PROVIDER, self.model or "")

    def set(self, key: str, value: Any) -> None:
        """Add a request attribute when the value is there."""
        if value is not None:
            self.attributes[key] = value

    def __repr__(self) -> str:
        return f"<genai.Request {self.aws_operation} {self.operation_name} {self.model!r}>"


class Response:
    """What came back: ids, finish reasons, token usage, guardrail action, output."""

    __slots__ = (
        "cache_creation_tokens",
        "cache_read_tokens",
        "finish_reasons",
        "guardrail_action",
        "guardrail_intervened",
        "input_tokens",
        "output_messages",
        "output_tokens",
        "response_id",
        "response_model",
    )

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        #: Every input token, cached ones included (as the conventions define it).
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        #: The guardrail's verdict as Bedrock spells it (``INTERVENED``, ``NONE``,
        #: ``GUARDRAIL_INTERVENED``), and whether it intervened.
        self.guardrail_action: str | None = None
        self.guardrail_intervened = False
        #: Only when content capture is on: the conventions' output messages.
        self.output_messages: list[dict[str, Any]] | None = None

    def add_finish_reason(self, value: Any) -> None:
        reason = wire_str(value)
        if reason is not None and len(self.finish_reasons) < MAX_LIST_ITEMS:
            self.finish_reasons.append(reason)
            if reason == "guardrail_intervened":
                self.guardrail_intervened = True

    def set_guardrail_action(self, value: Any) -> None:
        action = wire_str(value)
        if action is not None:
            self.guardrail_action = action
            if action in ("INTERVENED", "GUARDRAIL_INTERVENED"):
                self.guardrail_intervened = True

    def set_usage(
        self,
        input_tokens: Any,
        output_tokens: Any,
        cache_read: Any = None,
        cache_creation: Any = None,
        *,
        overwrite: bool = True,
    ) -> None:
        """Record usage; ``input_tokens`` excludes the cached tokens, which are added
        (Bedrock and Anthropic report them apart). ``overwrite=False`` fills gaps only."""
        read = count(cache_read)
        created = count(cache_creation)
        base = count(input_tokens)
        total = None if base is None else base + (read or 0) + (created or 0)
        out = count(output_tokens)
        if overwrite or self.input_tokens is None:
            if total is not None:
                self.input_tokens = total
            if read is not None:
                self.cache_read_tokens = read
            if created is not None:
                self.cache_creation_tokens = created
        if out is not None and (overwrite or self.output_tokens is None):
            self.output_tokens = out

    def token_counts(self) -> dict[str, int]:
        """``gen_ai.token.type`` -> count, for the token usage histogram."""
        out: dict[str, int] = {}
        if self.input_tokens is not None:
            out[semconv.TOKEN_INPUT] = self.input_tokens
        if self.output_tokens is not None:
            out[semconv.TOKEN_OUTPUT] = self.output_tokens
        return out

    def attributes(self, generation: str = semconv.GENERATION) -> dict[str, Any]:
        """The response attributes of ``generation`` (content excluded: see
        :mod:`.capture`)."""
        out: dict[str, Any] = {}
        if self.response_id is not None:
            out[semconv.RESPONSE_ID] = self.response_id
        if self.response_model is not None:
            out[semconv.RESPONSE_MODEL] = self.response_model
        if self.finish_reasons:
            out[semconv.RESPONSE_FINISH_REASONS] = tuple(self.finish_reasons)
        if self.input_tokens is not None:
            out[semconv.USAGE_INPUT_TOKENS] = self.input_tokens
        if self.output_tokens is not None:
            out[semconv.USAGE_OUTPUT_TOKENS] = self.output_tokens
        if generation == semconv.LATEST:
            if self.cache_read_tokens is not None:
                out[semconv.USAGE_CACHE_READ] = self.cache_read_tokens
            if self.cache_creation_tokens is not None:
                out[semconv.USAGE_CACHE_CREATION] = self.cache_creation_tokens
        if self.guardrail_action is not None:
            out[semconv.GUARDRAIL_ACTION] = self.guardrail_action
        return out

    def __repr__(self) -> str:
        return (
            f"<genai.Response finish={self.finish_reasons} in={self.input_tokens} "
            f"out={self.output_tokens}>"
        )


class Facts:
    """One GenAI call as its record carries it (``Call.genai``): what was asked, the
    settings it was read with, and, once a non-streaming call returns, what came back
    (a stream's response comes with its summary, at the stream's end). Plain data:
    set by the operation's hooks, rendered by the signals."""

    __slots__ = ("request", "response", "settings")

    def __init__(self, request: Request, settings: Settings) -> None:
        self.request = request
        self.settings = settings
        self.response: Response | None = None

    def __repr__(self) -> str:
        return f"<genai.Facts {self.request!r} {self.response!r}>"
