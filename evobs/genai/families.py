"""InvokeModel bodies per model family, from each family's documented shapes.

``InvokeModel`` and ``InvokeModelWithResponseStream`` carry the model provider's own
JSON. :func:`family_of` tells the dialect from the model id (base model ids,
cross-region inference profiles such as ``us.anthropic...``, and ARNs that end in
one); each :class:`Family` reads its request body (parameters, and content when
captured), its response body (id, finish reasons, usage, output) and its streamed
chunks. Families covered:

==================== ======================================= =====================
family               request                                 operation
==================== ======================================= =====================
``anthropic.claude`` Messages API (legacy ``prompt`` too)    chat (text_completion)
``amazon.nova``      ``messages-v1`` (Converse-like blocks)  chat
``amazon.titan-text`` ``inputText`` + ``textGenerationConfig`` text_completion
``meta.llama``       ``prompt``, ``max_gen_len``             text_completion
``mistral``          ``prompt`` (or ``messages``)            text_completion (chat)
``cohere.command-r`` ``message`` + ``chat_history``          chat
``cohere.command``   ``prompt``                              text_completion
==================== ======================================= =====================

Any other model is "unknown": it still gets what needs no body (operation, model,
usage from Bedrock's token-count headers or the stream's invocation metrics).
Every reader tolerates any JSON: a missing or mistyped member is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._fork import ForkSafeLock
from . import converse, semconv
from .capture import Content, OutputBuilder, Settings, text_part, tool_call_part, tool_response_part
from .model import Request, Response, count, items, number, strings, wire_str

__all__ = ["FAMILIES", "Family", "Stream", "family_of", "operation_of"]

#: Cross-region inference profile prefixes (``us.anthropic.claude-...``).
_GEOGRAPHIES: Final = frozenset({"us", "eu", "apac", "global", "us-gov", "ca", "jp", "au", "ap"})
_CACHE_MAX: Final = 1024
_cache: dict[str, tuple[str | None, str]] = {}
_cache_lock = ForkSafeLock()

#: The trailer every InvokeModelWithResponseStream chunk sequence ends with.
INVOCATION_METRICS: Final = "amazon-bedrock-invocationMetrics"
GUARDRAIL_MEMBER: Final = "amazon-bedrock-guardrailAction"


def _model_name(model_id: str) -> tuple[str, str]:
    """``(provider, name)`` of a model id: ``("anthropic", "claude-3-haiku-...")``."""
    ident = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    parts = ident.split(".")
    if len(parts) >= 3 and parts[0] in _GEOGRAPHIES:
        parts = parts[1:]
    if len(parts) < 2:
        return "", ident
    return parts[0], ".".join(parts[1:])


def _classify(model_id: str) -> tuple[str | None, str]:
    provider, name = _model_name(model_id)
    family: str | None = None
    operation = semconv.CHAT
    if "embed" in name:
        operation = semconv.EMBEDDINGS
    elif provider == "stability" or any(k in name for k in ("image", "canvas", "reel")):
        operation = semconv.GENERATE_CONTENT
    elif provider == "anthropic" and name.startswith("claude"):
        family = "anthropic.claude"
    elif provider == "amazon" and name.startswith("nova"):
        family = None if "sonic" in name else "amazon.nova"
    elif provider == "amazon" and (name.startswith("titan-text") or name.startswith("titan-tg1")):
        family = "amazon.titan-text"
    elif provider == "meta" and name.startswith("llama"):
        family = "meta.llama"
    elif provider == "mistral":
        family = "mistral"
    elif provider == "cohere" and name.startswith("command-r"):
        family = "cohere.command-r"
    elif provider == "cohere" and name.startswith("command"):
        family = "cohere.command"
    if family is not None:
        operation = FAMILIES[family].default_operation
    return family, operation


def _lookup(model_id: str) -> tuple[str | None, str]:
    found = _cache.get(model_id)
    if found is None:
        found = _classify(model_id)
        with _cache_lock:
            if len(_cache) >= _CACHE_MAX:
                _cache.clear()
            _cache[model_id] = found
    return found


def family_of(model_id: str) -> str | None:
    """The InvokeModel body dialect of a model id, or None (unknown). Cached, bounded."""
    return _lookup(model_id)[0] if isinstance(model_id, str) else None


def operation_of(model_id: str) -> str:
    """``gen_ai.operation.name`` from the model id alone (the body may refine it)."""
    return _lookup(model_id)[1] if isinstance(model_id, str) else semconv.CHAT


# -- the base classes ------------------------------------------------------------------------


class Stream:
    """Accumulates one family's streamed chunks (decoded JSON objects)."""

    __slots__ = ("output", "response")

    def __init__(self, settings: Settings) -> None:
        self.response = Response()
        self.output = OutputBuilder(settings.max_part_chars) if settings.capture_content else None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        """One chunk: the family's reading, then Bedrock's own trailer members."""
        self.chunk(chunk)
        metrics = chunk.get(INVOCATION_METRICS)
        if isinstance(metrics, Mapping):  # fills what the family did not report
            self.response.set_usage(
                metrics.get("inputTokenCount"), metrics.get("outputTokenCount"), overwrite=False
            )
        if GUARDRAIL_MEMBER in chunk:
            self.response.set_guardrail_action(chunk.get(GUARDRAIL_MEMBER))

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        """The family's own members (nothing for an unknown family)."""

    def finish(self) -> Response:
        """The response so far (a partial read gives what was seen)."""
        if self.output is not None:
            reasons = self.response.finish_reasons
            self.response.output_messages = [self.output.message(reasons[0] if reasons else None)]
        return self.response


class Family:
    """One InvokeModel dialect. Subclasses override what their shapes carry."""

    name: str = ""
    default_operation: str = semconv.CHAT
    stream_class: type[Stream] = Stream

    def operation(self, body: Mapping[str, Any]) -> str:
        """The operation name, refined by the body (Anthropic's legacy ``prompt``...)."""
        return self.default_operation

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        """Parameters into ``request``; messages into ``content`` when it is given."""

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        """Id, finish reasons, usage (and the output when ``capture``) into ``response``."""

    def stream(self, settings: Settings) -> Stream:
        return self.stream_class(settings)


def _single_output(response: Response, parts: list[dict[str, Any]]) -> None:
    reasons = response.finish_reasons
    response.output_messages = [
        {"role": "assistant", "parts": parts, "finish_reason": reasons[0] if reasons else "unknown"}
    ]


def _text_outputs(response: Response, choices: list[tuple[Any, Any]]) -> None:
    """One output message per ``(text, finish reason)`` choice."""
    response.output_messages = [
        {
            "role": "assistant",
            "parts": [text_part(text)] if isinstance(text, str) else [],
            "finish_reason": str(reason or "unknown"),
        }
        for text, reason in choices
    ]


def _user_prompt(content: Content | None, prompt: Any) -> None:
    if content is not None and isinstance(prompt, str):
        content.input_messages.append({"role": "user", "parts": [text_part(prompt)]})


# -- Anthropic Claude ----------------------------------------------------------------------------


def _anthropic_parts(blocks: Any) -> list[dict[str, Any]]:
    if isinstance(blocks, str):
        return [text_part(blocks)]
    parts: list[dict[str, Any]] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(text_part(str(block.get("text", ""))))
        elif kind == "tool_use":
            parts.append(tool_call_part(block.get("id"), block.get("name"), block.get("input")))
        elif kind == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = [b.get("text") for b in inner if isinstance(b, Mapping) and "text" in b]
            parts.append(tool_response_part(block.get("tool_use_id"), inner))
        elif isinstance(kind, str):
            parts.append({"type": kind})  # image, document, thinking: never their data
    return parts


class _AnthropicStream(Stream):
    __slots__ = ()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        kind = chunk.get("type")
        response = self.response
        if kind == "message_start":
            message = chunk.get("message")
            if isinstance(message, Mapping):
                response.response_id = wire_str(message.get("id"))
                response.response_model = wire_str(message.get("model"))
                _anthropic_usage(response, message.get("usage"))
        elif kind == "message_delta":
            delta = chunk.get("delta")
            if isinstance(delta, Mapping):
                response.add_finish_reason(delta.get("stop_reason"))
            usage = chunk.get("usage")
            if isinstance(usage, Mapping):
                response.set_usage(None, usage.get("output_tokens"))
        elif "completion" in chunk and kind is None:  # legacy text completions
            if self.output is not None:
                self.output.text(0, chunk.get("completion"))
            response.add_finish_reason(chunk.get("stop_reason"))
        elif self.output is not None:
            index = chunk.get("index")
            if kind == "content_block_start":
                block = chunk.get("content_block")
                if isinstance(block, Mapping) and block.get("type") == "tool_use":
                    self.output.tool_start(index, block.get("id"), block.get("name"))
            elif kind == "content_block_delta":
                delta = chunk.get("delta")
                if isinstance(delta, Mapping):
                    if delta.get("type") == "text_delta":
                        self.output.text(index, delta.get("text"))
                    elif delta.get("type") == "input_json_delta":
                        self.output.tool_input(index, delta.get("partial_json"))


def _anthropic_usage(response: Response, usage: Any) -> None:
    if isinstance(usage, Mapping):
        response.set_usage(
            usage.get("input_tokens"),
            None,
            usage.get("cache_read_input_tokens"),
            usage.get("cache_creation_input_tokens"),
        )
        if "output_tokens" in usage:
            response.set_usage(None, usage.get("output_tokens"))


class Anthropic(Family):
    name = "anthropic.claude"
    stream_class = _AnthropicStream

    def operation(self, body: Mapping[str, Any]) -> str:
        if "messages" not in body and "prompt" in body:
            return semconv.TEXT_COMPLETION
        return semconv.CHAT

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        request.set(
            semconv.REQUEST_MAX_TOKENS,
            count(body.get("max_tokens", body.get("max_tokens_to_sample"))),
        )
        request.set(semconv.REQUEST_TEMPERATURE, number(body.get("temperature")))
        request.set(semconv.REQUEST_TOP_P, number(body.get("top_p")))
        request.set(semconv.REQUEST_TOP_K, number(body.get("top_k")))
        request.set(semconv.REQUEST_STOP_SEQUENCES, strings(body.get("stop_sequences")))
        if content is None:
            return
        system = body.get("system")
        content.system.extend(_anthropic_parts(system) if system else [])
        for message in items(body.get("messages")):
            if isinstance(message, Mapping):
                role = message.get("role") if isinstance(message.get("role"), str) else "user"
                content.input_messages.append(
                    {"role": role, "parts": _anthropic_parts(message.get("content"))}
                )
        _user_prompt(content, body.get("prompt"))
        for tool in items(body.get("tools")):
            if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
                definition: dict[str, Any] = {"type": "function", "name": tool["name"]}
                if isinstance(tool.get("description"), str):
                    definition["description"] = tool["description"]
                if "input_schema" in tool:
                    definition["parameters"] = tool["input_schema"]
                content.tools.append(definition)

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        response.response_id = wire_str(body.get("id"))
        response.response_model = wire_str(body.get("model"))
        response.add_finish_reason(body.get("stop_reason"))
        _anthropic_usage(response, body.get("usage"))
        if capture:
            if "completion" in body:
                _single_output(response, [text_part(str(body.get("completion")))])
            else:
                _single_output(response, _anthropic_parts(body.get("content")))


# -- Amazon Nova -------------------------------------------------------------------------------


class _NovaStream(Stream):
    __slots__ = ("_state",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._state = converse.StreamState(settings)
        self.response = self._state.response
        self.output = None  # the Converse state builds it

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        self._state.feed(chunk)

    def finish(self) -> Response:
        return self._state.finish()


class Nova(Family):
    name = "amazon.nova"
    stream_class = _NovaStream

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        converse.read_inference(request, body.get("inferenceConfig"))
        if content is not None:
            converse.fill_content(
                content, body.get("system"), body.get("messages"), body.get("toolConfig")
            )

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        response.add_finish_reason(body.get("stopReason"))
        converse.read_usage(response, body.get("usage"))
        if capture:
            output = body.get("output")
            message = output.get("message") if isinstance(output, Mapping) else None
            blocks = message.get("content") if isinstance(message, Mapping) else None
            _single_output(response, converse.blocks_to_parts(blocks))


# -- Amazon Titan Text -----------------------------------------------------------------------------


class _TitanStream(Stream):
    __slots__ = ()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        response = self.response
        if self.output is not None:
            self.output.text(0, chunk.get("outputText"))
        if chunk.get("completionReason") is not None:
            response.add_finish_reason(chunk.get("completionReason"))
        if count(chunk.get("inputTextTokenCount")) is not None:
            response.set_usage(chunk.get("inputTextTokenCount"), None)
        if count(chunk.get("totalOutputTextTokenCount")) is not None:
            response.set_usage(None, chunk.get("totalOutputTextTokenCount"))


class Titan(Family):
    name = "amazon.titan-text"
    default_operation = semconv.TEXT_COMPLETION
    stream_class = _TitanStream

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        config = body.get("textGenerationConfig")
        if isinstance(config, Mapping):
            request.set(semconv.REQUEST_MAX_TOKENS, count(config.get("maxTokenCount")))
            request.set(semconv.REQUEST_TEMPERATURE, number(config.get("temperature")))
            request.set(semconv.REQUEST_TOP_P, number(config.get("topP")))
            request.set(semconv.REQUEST_STOP_SEQUENCES, strings(config.get("stopSequences")))
        _user_prompt(content, body.get("inputText"))

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        results = [r for r in items(body.get("results")) if isinstance(r, Mapping)]
        output = [count(r.get("tokenCount")) for r in results]
        response.set_usage(
            body.get("inputTextTokenCount"),
            sum(o for o in output if o is not None) if any(o is not None for o in output) else None,
        )
        for result in results:
            response.add_finish_reason(result.get("completionReason"))
        if capture:
            _text_outputs(
                response, [(r.get("outputText"), r.get("completionReason")) for r in results]
            )


# -- Meta Llama -----------------------------------------------------------------------------------


class _LlamaStream(Stream):
    __slots__ = ()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        if self.output is not None:
            self.output.text(0, chunk.get("generation"))
        if count(chunk.get("prompt_token_count")) is not None:
            self.response.set_usage(chunk.get("prompt_token_count"), None)
        if count(chunk.get("generation_token_count")) is not None:
            self.response.set_usage(None, chunk.get("generation_token_count"))
        if chunk.get("stop_reason") is not None:
            self.response.add_finish_reason(chunk.get("stop_reason"))


class Llama(Family):
    name = "meta.llama"
    default_operation = semconv.TEXT_COMPLETION
    stream_class = _LlamaStream

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        request.set(semconv.REQUEST_MAX_TOKENS, count(body.get("max_gen_len")))
        request.set(semconv.REQUEST_TEMPERATURE, number(body.get("temperature")))
        request.set(semconv.REQUEST_TOP_P, number(body.get("top_p")))
        _user_prompt(content, body.get("prompt"))

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        response.set_usage(body.get("prompt_token_count"), body.get("generation_token_count"))
        response.add_finish_reason(body.get("stop_reason"))
        if capture:
            _single_output(response, [text_part(str(body.get("generation", "")))])


# -- Mistral --------------------------------------------------------------------------------------


def _mistral_choices(body: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """``(text, stop reason)`` per output: ``outputs`` (text completion) or ``choices``."""
    out: list[tuple[Any, Any]] = []
    for item in items(body.get("outputs")):
        if isinstance(item, Mapping):
            out.append((item.get("text"), item.get("stop_reason")))
    for item in items(body.get("choices")):
        if isinstance(item, Mapping):
            message = item.get("message") or item.get("delta")
            text = message.get("content") if isinstance(message, Mapping) else None
            out.append((text, item.get("stop_reason", item.get("finish_reason"))))
    return out


class _MistralStream(Stream):
    __slots__ = ()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        for text, reason in _mistral_choices(chunk):
            if self.output is not None:
                self.output.text(0, text)
            if reason is not None:
                self.response.add_finish_reason(reason)


class Mistral(Family):
    name = "mistral"
    default_operation = semconv.TEXT_COMPLETION
    stream_class = _MistralStream

    def operation(self, body: Mapping[str, Any]) -> str:
        return semconv.CHAT if "messages" in body else semconv.TEXT_COMPLETION

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        request.set(semconv.REQUEST_MAX_TOKENS, count(body.get("max_tokens")))
        request.set(semconv.REQUEST_TEMPERATURE, number(body.get("temperature")))
        request.set(semconv.REQUEST_TOP_P, number(body.get("top_p")))
        request.set(semconv.REQUEST_TOP_K, number(body.get("top_k")))
        request.set(semconv.REQUEST_STOP_SEQUENCES, strings(body.get("stop")))
        if content is None:
            return
        _user_prompt(content, body.get("prompt"))
        for message in items(body.get("messages")):
            if isinstance(message, Mapping):
                role = message.get("role") if isinstance(message.get("role"), str) else "user"
                text = message.get("content")
                parts = [text_part(text)] if isinstance(text, str) else []
                content.input_messages.append({"role": role, "parts": parts})

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        choices = _mistral_choices(body)
        for _, reason in choices:
            response.add_finish_reason(reason)
        if capture:
            _text_outputs(response, choices)


# -- Cohere ---------------------------------------------------------------------------------------

_COHERE_ROLES: Final = {"USER": "user", "CHATBOT": "assistant", "SYSTEM": "system", "TOOL": "tool"}


def _cohere_sampling(body: Mapping[str, Any], request: Request) -> None:
    request.set(semconv.REQUEST_MAX_TOKENS, count(body.get("max_tokens")))
    request.set(semconv.REQUEST_TEMPERATURE, number(body.get("temperature")))
    request.set(semconv.REQUEST_TOP_P, number(body.get("p")))
    request.set(semconv.REQUEST_TOP_K, number(body.get("k")))
    request.set(semconv.REQUEST_STOP_SEQUENCES, strings(body.get("stop_sequences")))


def _cohere_billed(response: Response, body: Mapping[str, Any]) -> None:
    meta = body.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, Mapping) else None
    if isinstance(billed, Mapping):
        response.set_usage(billed.get("input_tokens"), billed.get("output_tokens"))


class _CohereRStream(Stream):
    __slots__ = ()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        kind = chunk.get("event_type")
        if kind == "text-generation" and self.output is not None:
            self.output.text(0, chunk.get("text"))
        elif kind == "stream-end":
            self.response.add_finish_reason(chunk.get("finish_reason"))
            final = chunk.get("response")
            if isinstance(final, Mapping):
                self.response.response_id = wire_str(final.get("response_id"))
                _cohere_billed(self.response, final)


class CohereR(Family):
    name = "cohere.command-r"
    stream_class = _CohereRStream

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        _cohere_sampling(body, request)
        request.set(semconv.REQUEST_SEED, count(body.get("seed")))
        request.set(semconv.REQUEST_FREQUENCY_PENALTY, number(body.get("frequency_penalty")))
        request.set(semconv.REQUEST_PRESENCE_PENALTY, number(body.get("presence_penalty")))
        if content is None:
            return
        if isinstance(body.get("preamble"), str):
            content.system.append(text_part(body["preamble"]))
        for turn in items(body.get("chat_history")):
            if isinstance(turn, Mapping) and isinstance(turn.get("message"), str):
                role = _COHERE_ROLES.get(str(turn.get("role")), "user")
                content.input_messages.append({"role": role, "parts": [text_part(turn["message"])]})
        _user_prompt(content, body.get("message"))
        for tool in items(body.get("tools")):
            if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
                definition = {"type": "function", "name": tool["name"]}
                if isinstance(tool.get("description"), str):
                    definition["description"] = tool["description"]
                content.tools.append(definition)

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        response.response_id = wire_str(body.get("response_id"))
        response.add_finish_reason(body.get("finish_reason"))
        _cohere_billed(response, body)
        if capture:
            parts = [text_part(str(body.get("text", "")))]
            for call in items(body.get("tool_calls")):
                if isinstance(call, Mapping):
                    parts.append(tool_call_part(None, call.get("name"), call.get("parameters")))
            _single_output(response, parts)


class _CohereStream(Stream):
    __slots__ = ()

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        if self.output is not None and not chunk.get("is_finished"):
            self.output.text(0, chunk.get("text"))
        if chunk.get("is_finished"):
            self.response.add_finish_reason(chunk.get("finish_reason"))


class Cohere(Family):
    name = "cohere.command"
    default_operation = semconv.TEXT_COMPLETION
    stream_class = _CohereStream

    def read_request(
        self, body: Mapping[str, Any], request: Request, content: Content | None
    ) -> None:
        _cohere_sampling(body, request)
        _user_prompt(content, body.get("prompt"))

    def read_response(self, body: Mapping[str, Any], response: Response, capture: bool) -> None:
        response.response_id = wire_str(body.get("id"))
        generations = [g for g in items(body.get("generations")) if isinstance(g, Mapping)]
        for generation in generations:
            response.add_finish_reason(generation.get("finish_reason"))
        if capture:
            _text_outputs(response, [(g.get("text"), g.get("finish_reason")) for g in generations])


#: family name -> its reader (one instance each: they hold no state).
FAMILIES: Final[Mapping[str, Family]] = {
    f.name: f for f in (Anthropic(), Nova(), Titan(), Llama(), Mistral(), CohereR(), Cohere())
}
#: An unknown model: no body reading.
UNKNOWN: Final = Family()
