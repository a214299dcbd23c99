"""A local endpoint that answers like Amazon Bedrock Runtime, for the tests and the demo.

Bedrock cannot be reached from a test machine, and moto does not implement its
runtime. :class:`BedrockServer` is a threaded HTTP server on 127.0.0.1 that speaks
the service's rest-json protocol well enough for real botocore to parse every
answer, streams included::

    with BedrockServer() as server:
        client = session.client("bedrock-runtime", endpoint_url=server.url)
        client.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=[...])

It answers ``Converse``, ``ConverseStream``, ``InvokeModel``,
``InvokeModelWithResponseStream`` and ``ApplyGuardrail``. ``InvokeModel`` bodies
are answered in the documented shape of the model's family (Anthropic Claude
messages, Amazon Nova, Amazon Titan Text, Meta Llama, Mistral, Cohere Command R and
Command); other model ids get an OpenAI-style chat body no extractor knows. Token
counts are words: the input count is the number of words of the request's text, the
output count the number of words of the completion (``completion=``), cut to the
request's max tokens (then the finish reason says so).

Streams are real ``application/vnd.amazon.eventstream`` frames (prelude, headers,
CRC32s), one HTTP chunk per frame. ``InvokeModelWithResponseStream`` chunks carry
the family's streaming JSON, with the ``amazon-bedrock-invocationMetrics`` trailer
in the last one.

A guardrail intervenes when the request names one and its text contains
:data:`GUARDRAIL_TRIGGER`. Faults are scripted like :class:`evobs.demo.faults.Fault`:
each is used once, by the next request it matches::

    server.script([BedrockFault.throttle(), BedrockFault.stream_error(after=3)])
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, Final, Literal
from urllib.parse import unquote

from ..genai.families import family_of
from ._loopback import LoopbackHTTPServer, LoopbackServer

__all__ = [
    "DEFAULT_COMPLETION",
    "GUARDRAIL_MESSAGE",
    "GUARDRAIL_TRIGGER",
    "BedrockFault",
    "BedrockRequest",
    "BedrockServer",
    "count_words",
    "encode_event_message",
]

#: What the model answers unless told otherwise (nine words: nine output tokens).
DEFAULT_COMPLETION: Final = "The quick brown fox jumps over the lazy dog."
#: A guardrail named in the request intervenes when the request's text contains this.
GUARDRAIL_TRIGGER: Final = "FORBIDDEN"
#: What an intervening guardrail answers instead of the model.
GUARDRAIL_MESSAGE: Final = "Sorry, I cannot help with that request."

FaultKind = Literal["throttle", "validation", "error", "stream_error", "cut"]

_ROUTES: Final = (
    (re.compile(r"^/model/(?P<model>[^/]+)/invoke$"), "InvokeModel"),
    (
        re.compile(r"^/model/(?P<model>[^/]+)/invoke-with-response-stream$"),
        "InvokeModelWithResponseStream",
    ),
    (re.compile(r"^/model/(?P<model>[^/]+)/converse$"), "Converse"),
    (re.compile(r"^/model/(?P<model>[^/]+)/converse-stream$"), "ConverseStream"),
    (
        re.compile(r"^/guardrail/(?P<guardrail>[^/]+)/version/(?P<version>[^/]+)/apply$"),
        "ApplyGuardrail",
    ),
)
_STREAMING: Final = frozenset({"ConverseStream", "InvokeModelWithResponseStream"})
#: Keys whose string values are the request's text (for counting input tokens).
_TEXT_KEYS: Final = frozenset(
    {"text", "prompt", "inputText", "message", "content", "system", "preamble"}
)
#: Keys that carry a max-tokens limit, in any family's request.
_MAX_TOKEN_KEYS: Final = (
    "maxTokens",
    "max_tokens",
    "max_new_tokens",
    "maxTokenCount",
    "max_gen_len",
)
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


# -- the event stream encoding ------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    """One string header (type 7): name length, name, type, value length, value."""
    raw_name = name.encode("utf-8")
    raw_value = value.encode("utf-8")
    return (
        struct.pack("!B", len(raw_name))
        + raw_name
        + struct.pack("!BH", 7, len(raw_value))
        + raw_value
    )


def encode_event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message.

    Prelude: total length and headers length (big-endian uint32 each) and the CRC32
    of those 8 bytes; then the headers, the payload, and the CRC32 of everything
    before it.
    """
    encoded_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 4 + 4 + 4 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded_headers + payload
    return message + struct.pack("!I", zlib.crc32(message) & 0xFFFFFFFF)


def _event(event_type: str, body: dict[str, Any]) -> bytes:
    return encode_event_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(body).encode(),
    )


def _exception(exception_type: str, message: str) -> bytes:
    return encode_event_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


def _chunk(body: dict[str, Any]) -> bytes:
    """An InvokeModelWithResponseStream ``chunk`` event: base64 of the family's JSON."""
    raw = json.dumps(body).encode()
    return _event("chunk", {"bytes": base64.b64encode(raw).decode("ascii")})


# -- faults -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BedrockFault:
    """One scripted answer; build one with the class methods, narrow it with :meth:`on`."""

    kind: FaultKind
    status: int = 400
    code: str = "ValidationException"
    message: str = "injected by evobs BedrockServer"
    #: For stream faults: how many events go out before the fault.
    after: int = 0
    operation: str | None = None

    @classmethod
    def throttle(
        cls, message: str = "Too many requests, please wait before trying again."
    ) -> BedrockFault:
        """HTTP 429 ThrottlingException, as Bedrock answers when the account's quota is hit."""
        return cls("throttle", status=429, code="ThrottlingException", message=message)

    @classmethod
    def validation(
        cls, message: str = "Malformed input request, please reformat your input."
    ) -> BedrockFault:
        """HTTP 400 ValidationException."""
        return cls("validation", status=400, code="ValidationException", message=message)

    @classmethod
    def error(
        cls, status: int, code: str, message: str = "injected by evobs BedrockServer"
    ) -> BedrockFault:
        """Any modeled error (``ModelTimeoutException`` 408, ``InternalServerException`` 500...)."""
        return cls("error", status=status, code=code, message=message)

    @classmethod
    def stream_error(
        cls,
        exception: str = "modelStreamErrorException",
        *,
        after: int = 2,
        message: str = "The model stream failed.",
    ) -> BedrockFault:
        """A streaming answer that sends ``after`` events, then an exception frame
        (``modelStreamErrorException``, ``throttlingException``, ``internalServerException``...)."""
        return cls("stream_error", code=exception, after=after, message=message)

    @classmethod
    def cut(cls, after: int = 2) -> BedrockFault:
        """A streaming answer whose connection is closed after ``after`` events."""
        return cls("cut", after=after)

    def on(self, operation: str) -> BedrockFault:
        """Apply only to requests of this operation."""
        return dataclasses.replace(self, operation=operation)


@dataclasses.dataclass(slots=True)
class BedrockRequest:
    """One request as it arrived."""

    operation: str | None
    model_id: str | None
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    fault: str | None = None
    status: int | None = None

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def json(self) -> Any:
        """The request body as JSON (None when it is not)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


# -- the canned model -----------------------------------------------------------------------


def count_words(text: str) -> int:
    """The server's token count for a text: its whitespace-separated words."""
    return len(text.split())


def _texts(value: Any, key: str | None = None, depth: int = 0) -> Iterator[str]:
    """Every string under a text-carrying key, anywhere in a request body."""
    if depth > 32:
        return
    if isinstance(value, str):
        if key in _TEXT_KEYS:
            yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _texts(v, k if isinstance(k, str) else None, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, key, depth + 1)


def _max_tokens(value: Any, depth: int = 0) -> int | None:
    if depth > 4 or not isinstance(value, dict):
        return None
    for key in _MAX_TOKEN_KEYS:
        found = value.get(key)
        if isinstance(found, int) and not isinstance(found, bool):
            return found
    for child in value.values():
        found = _max_tokens(child, depth + 1)
        if found is not None:
            return found
    return None


class _Answer:
    """What the canned model says to one request: words, counts, why it stopped."""

    __slots__ = ("input_tokens", "intervened", "tool", "truncated", "words")

    def __init__(self, request: Any, completion: str, guardrail: bool) -> None:
        text = " ".join(_texts(request))
        self.input_tokens = count_words(text)
        self.intervened = guardrail and GUARDRAIL_TRIGGER in text
        words = (GUARDRAIL_MESSAGE if self.intervened else completion).split()
        limit = _max_tokens(request)
        self.truncated = limit is not None and 0 < limit < len(words)
        self.words = words[:limit] if self.truncated and limit is not None else words
        #: The tool to call (Converse with a toolConfig and no tool result yet).
        self.tool = None if self.intervened else _tool_to_call(request)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def output_tokens(self) -> int:
        return len(self.words)

    def pieces(self) -> list[str]:
        """The completion as stream deltas: each word with its leading space."""
        return [w if i == 0 else " " + w for i, w in enumerate(self.words)]


def _tool_to_call(request: Any) -> str | None:
    if not isinstance(request, dict):
        return None
    config = request.get("toolConfig")
    messages = request.get("messages")
    if not isinstance(config, dict) or not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list) and any(
        isinstance(b, dict) and "toolResult" in b for b in content
    ):
        return None
    for tool in config.get("tools") or ():
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return str(spec["name"])
    return None


#: family -> (finish reason when complete, when cut by max tokens)
_FINISH: Final = {
    "anthropic.claude": ("end_turn", "max_tokens"),
    "amazon.nova": ("end_turn", "max_tokens"),
    "amazon.titan-text": ("FINISH", "LENGTH"),
    "meta.llama": ("stop", "length"),
    "mistral": ("stop", "length"),
    "cohere.command-r": ("COMPLETE", "MAX_TOKENS"),
    "cohere.command": ("COMPLETE", "MAX_TOKENS"),
}
_CONVERSE_FINISH: Final = ("end_turn", "max_tokens")


def _finish(family: str | None, answer: _Answer) -> str:
    complete, cut = _FINISH.get(family or "", ("stop", "length"))
    return cut if answer.truncated else complete


def _metrics(answer: _Answer) -> dict[str, int]:
    return {
        "inputTokenCount": answer.input_tokens,
        "outputTokenCount": answer.output_tokens,
        "invocationLatency": 42,
        "firstByteLatency": 7,
    }


def _invoke_body(
    family: str | None, model: str, request: Any, answer: _Answer, rid: str
) -> dict[str, Any]:
    """The InvokeModel response body of ``family``, as its documentation shows it."""
    finish = _finish(family, answer)
    text = answer.text
    if family == "anthropic.claude":
        if isinstance(request, dict) and "messages" not in request and "prompt" in request:
            return {
                "completion": " " + text,
                "stop_reason": "stop_sequence" if not answer.truncated else "max_tokens",
                "stop": None,
            }
        return {
            "id": f"msg_bdrk_{rid}",
            "type": "message",
            "role": "assistant",
            "model": "claude-canned-20240101",
            "content": [{"type": "text", "text": text}],
            "stop_reason": finish,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
        }
    if family == "amazon.nova":
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": finish,
            "usage": {
                "inputTokens": answer.input_tokens,
                "outputTokens": answer.output_tokens,
                "totalTokens": answer.input_tokens + answer.output_tokens,
            },
        }
    if family == "amazon.titan-text":
        return {
            "inputTextTokenCount": answer.input_tokens,
            "results": [
                {"tokenCount": answer.output_tokens, "outputText": text, "completionReason": finish}
            ],
        }
    if family == "meta.llama":
        return {
            "generation": text,
            "prompt_token_count": answer.input_tokens,
            "generation_token_count": answer.output_tokens,
            "stop_reason": finish,
        }
    if family == "mistral":
        if isinstance(request, dict) and "messages" in request:
            return {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "stop_reason": finish,
                    }
                ]
            }
        return {"outputs": [{"text": text, "stop_reason": finish}]}
    if family == "cohere.command-r":
        return {
            "response_id": f"resp-{rid}",
            "text": text,
            "generation_id": f"gen-{rid}",
            "chat_history": [],
            "finish_reason": finish,
        }
    if family == "cohere.command":
        return {
            "id": f"resp-{rid}",
            "generations": [{"id": f"gen-{rid}", "text": text, "finish_reason": finish}],
            "prompt": "",
        }
    return {
        "id": f"chatcmpl-{rid}",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        },
    }


def _invoke_chunks(
    family: str | None, request: Any, answer: _Answer, rid: str
) -> list[dict[str, Any]]:
    """The InvokeModelWithResponseStream chunks of ``family``; the last carries the
    ``amazon-bedrock-invocationMetrics`` trailer."""
    finish = _finish(family, answer)
    pieces = answer.pieces()
    chunks: list[dict[str, Any]]
    if family == "anthropic.claude":
        chunks = [
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_bdrk_{rid}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-canned-20240101",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1},
                },
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            *(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": p},
                }
                for p in pieces
            ),
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": finish, "stop_sequence": None},
                "usage": {"output_tokens": answer.output_tokens},
            },
            {"type": "message_stop"},
        ]
    elif family == "amazon.nova":
        chunks = [
            {"messageStart": {"role": "assistant"}},
            *(
                {"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}}
                for p in pieces
            ),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": finish}},
            {
                "metadata": {
                    "usage": {
                        "inputTokens": answer.input_tokens,
                        "outputTokens": answer.output_tokens,
                    },
                    "metrics": {},
                    "trace": {},
                }
            },
        ]
    elif family == "amazon.titan-text":
        chunks = [
            {
                "outputText": p,
                "index": 0,
                "totalOutputTextTokenCount": i + 1,
                "completionReason": finish if i == len(pieces) - 1 else None,
                "inputTextTokenCount": answer.input_tokens if i == 0 else None,
            }
            for i, p in enumerate(pieces)
        ]
    elif family == "meta.llama":
        chunks = [
            {
                "generation": p,
                "prompt_token_count": answer.input_tokens if i == 0 else None,
                "generation_token_count": i + 1,
                "stop_reason": finish if i == len(pieces) - 1 else None,
            }
            for i, p in enumerate(pieces)
        ]
    elif family == "mistral":
        chunks = [
            {"outputs": [{"text": p, "stop_reason": finish if i == len(pieces) - 1 else None}]}
            for i, p in enumerate(pieces)
        ]
    elif family == "cohere.command-r":
        chunks = [
            {"is_finished": False, "event_type": "stream-start", "generation_id": f"gen-{rid}"},
            *({"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces),
            {
                "is_finished": True,
                "event_type": "stream-end",
                "finish_reason": finish,
                "response": {
                    "response_id": f"resp-{rid}",
                    "text": answer.text,
                    "generation_id": f"gen-{rid}",
                    "finish_reason": finish,
                },
            },
        ]
    elif family == "cohere.command":
        chunks = [{"text": p, "is_finished": False} for p in pieces]
        chunks.append({"is_finished": True, "finish_reason": finish, "text": ""})
    else:
        chunks = [
            {
                "id": f"chatcmpl-{rid}",
                "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}],
            }
            for p in pieces
        ]
        chunks.append(
            {
                "id": f"chatcmpl-{rid}",
                "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
            }
        )
    if not chunks:
        chunks = [{}]
    chunks[-1] = {**chunks[-1], "amazon-bedrock-invocationMetrics": _metrics(answer)}
    return chunks


def _converse_blocks(answer: _Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": answer.text}]
    if answer.tool is not None:
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": "tooluse_canned_1",
                    "name": answer.tool,
                    "input": {"query": answer.text},
                }
            }
        )
    return blocks


def _converse_stop(answer: _Answer) -> str:
    if answer.intervened:
        return "guardrail_intervened"
    if answer.tool is not None:
        return "tool_use"
    return _CONVERSE_FINISH[1] if answer.truncated else _CONVERSE_FINISH[0]


def _converse_usage(answer: _Answer) -> dict[str, int]:
    return {
        "inputTokens": answer.input_tokens,
        "outputTokens": answer.output_tokens,
        "totalTokens": answer.input_tokens + answer.output_tokens,
    }


def _converse_events(answer: _Answer) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [
        ("contentBlockDelta", {"delta": {"text": p}, "contentBlockIndex": 0})
        for p in answer.pieces()
    ]
    events.append(("contentBlockStop", {"contentBlockIndex": 0}))
    if answer.tool is not None:
        arguments = json.dumps({"query": answer.text})
        half = len(arguments) // 2
        events.append(
            (
                "contentBlockStart",
                {
                    "start": {"toolUse": {"toolUseId": "tooluse_canned_1", "name": answer.tool}},
                    "contentBlockIndex": 1,
                },
            )
        )
        for part in (arguments[:half], arguments[half:]):
            events.append(
                (
                    "contentBlockDelta",
                    {"delta": {"toolUse": {"input": part}}, "contentBlockIndex": 1},
                )
            )
        events.append(("contentBlockStop", {"contentBlockIndex": 1}))
    events.append(("messageStop", {"stopReason": _converse_stop(answer)}))
    events.append(("metadata", {"usage": _converse_usage(answer), "metrics": {"latencyMs": 42}}))
    return events


# -- the server -----------------------------------------------------------------------------


class BedrockServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 that answers like Bedrock Runtime.

    Thread-safe: the script queue and the recording are guarded by one lock.
    """

    thread_name = "evobs-bedrock-server"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        completion: str = DEFAULT_COMPLETION,
        first_token_seconds: float = 0.0,
        token_seconds: float = 0.0,
    ) -> None:
        super().__init__(host, port)
        #: What the model answers (its words are the output tokens).
        self.completion = completion
        #: How long the model takes to its first token, then per further event (the demo
        #: sets them, so a stream's time to first chunk differs from its duration).
        self.first_token_seconds = first_token_seconds
        self.token_seconds = token_seconds
        self._lock = threading.Lock()
        self._queue: list[BedrockFault] = []
        self._requests: list[BedrockRequest] = []
        self._ids = itertools.count(1)

    # -- lifecycle --------------------------------------------------------------------

    # -- scripting and recording ---------------------------------------------------------------

    def script(self, faults: Iterable[BedrockFault]) -> None:
        """Append faults; each is used once, by the next request it matches."""
        with self._lock:
            self._queue.extend(faults)

    @property
    def pending(self) -> list[BedrockFault]:
        """Scripted faults not used yet."""
        with self._lock:
            return list(self._queue)

    @property
    def requests(self) -> list[BedrockRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def count(self, operation: str | None = None) -> int:
        """How many requests arrived (of ``operation``)."""
        return sum(1 for r in self.requests if operation is None or r.operation == operation)

    def reset(self) -> None:
        """Forget the recording and the script."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    def _record(self, request: BedrockRequest) -> BedrockFault | None:
        with self._lock:
            self._requests.append(request)
            for index, fault in enumerate(self._queue):
                if fault.operation is None or fault.operation == request.operation:
                    del self._queue[index]
                    return fault
            return None

    def _next_id(self) -> str:
        return f"{next(self._ids):08d}-evobs-bedrock"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer
    timeout = 10
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the recording is the log."""

    def handle_one_request(self) -> None:
        with contextlib.suppress(ConnectionError):
            super().handle_one_request()

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        operation, match = None, None
        for pattern, name in _ROUTES:
            match = pattern.match(path)
            if match:
                operation = name
                break
        model_id = unquote(match.group("model")) if match and "model" in match.groupdict() else None
        record = BedrockRequest(
            operation=operation,
            model_id=model_id,
            path=path,
            headers=tuple(self.headers.items()),
            body=body,
        )
        fault = owner._record(record)
        rid = owner._next_id()
        if operation is None:
            self._error(record, rid, 404, "UnknownOperationException", f"no route for {path}")
            return
        if fault is not None and fault.kind in ("throttle", "validation", "error"):
            record.fault = fault.kind
            self._error(record, rid, fault.status, fault.code, fault.message)
            return
        request: Any = None
        if body:
            try:
                request = json.loads(body)
            except ValueError:
                self._error(
                    record, rid, 400, "ValidationException", "Malformed input request: not JSON."
                )
                return
        if fault is not None:
            record.fault = fault.kind
        if operation == "ApplyGuardrail":
            self._apply_guardrail(record, rid, request)
            return
        family = family_of(model_id or "")
        guardrail = bool(
            record.header("X-Amzn-Bedrock-GuardrailIdentifier")
            or (isinstance(request, dict) and request.get("guardrailConfig"))
        )
        answer = _Answer(request, owner.completion, guardrail)
        if operation not in _STREAMING:  # the whole answer is generated before it is sent
            time.sleep(owner.first_token_seconds + owner.token_seconds * answer.output_tokens)
        if operation == "Converse":
            self._json(record, rid, 200, self._converse(answer))
        elif operation == "InvokeModel":
            payload = _invoke_body(family, model_id or "", request, answer, rid)
            if guardrail:
                payload["amazon-bedrock-guardrailAction"] = (
                    "INTERVENED" if answer.intervened else "NONE"
                )
            headers = [
                ("X-Amzn-Bedrock-Input-Token-Count", str(answer.input_tokens)),
                ("X-Amzn-Bedrock-Output-Token-Count", str(answer.output_tokens)),
                ("X-Amzn-Bedrock-Invocation-Latency", "42"),
            ]
            self._json(record, rid, 200, payload, headers)
        elif operation == "ConverseStream":
            frames = [_event(t, b) for t, b in _converse_events(answer)]
            self._stream(record, rid, frames, fault)
        else:
            chunks = _invoke_chunks(family, request, answer, rid)
            if guardrail:
                chunks[-1]["amazon-bedrock-guardrailAction"] = (
                    "INTERVENED" if answer.intervened else "NONE"
                )
            self._stream(
                record,
                rid,
                [_chunk(c) for c in chunks],
                fault,
                [("X-Amzn-Bedrock-Content-Type", "application/json")],
            )

    # -- answers -------------------------------------------------------------------------------

    @staticmethod
    def _converse(answer: _Answer) -> dict[str, Any]:
        out: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": _converse_blocks(answer)}},
            "stopReason": _converse_stop(answer),
            "usage": _converse_usage(answer),
            "metrics": {"latencyMs": 42},
        }
        if answer.intervened:
            out["trace"] = {"guardrail": {"actionReason": "Guardrail blocked."}}
        return out

    def _apply_guardrail(self, record: BedrockRequest, rid: str, request: Any) -> None:
        texts = " ".join(_texts(request))
        intervened = GUARDRAIL_TRIGGER in texts
        self._json(
            record,
            rid,
            200,
            {
                "usage": {
                    "topicPolicyUnits": 1,
                    "contentPolicyUnits": 1,
                    "wordPolicyUnits": 1,
                    "sensitiveInformationPolicyUnits": 1,
                    "sensitiveInformationPolicyFreeUnits": 0,
                    "contextualGroundingPolicyUnits": 0,
                },
                "action": "GUARDRAIL_INTERVENED" if intervened else "NONE",
                "actionReason": "Guardrail blocked." if intervened else "No action.",
                "outputs": [{"text": GUARDRAIL_MESSAGE}] if intervened else [],
                "assessments": [],
            },
        )

    def _json(
        self,
        record: BedrockRequest,
        rid: str,
        status: int,
        payload: dict[str, Any],
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        record.status = status
        self.send_response_only(status, _REASONS.get(status))
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", rid)
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _error(
        self, record: BedrockRequest, rid: str, status: int, code: str, message: str
    ) -> None:
        body = json.dumps({"message": message}).encode()
        record.status = status
        self.send_response_only(status, _REASONS.get(status))
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", rid)
        self.send_header(
            "x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _stream(
        self,
        record: BedrockRequest,
        rid: str,
        frames: list[bytes],
        fault: BedrockFault | None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Status 200, then one HTTP chunk per event-stream frame."""
        record.status = 200
        self.send_response_only(200, "OK")
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("x-amzn-RequestId", rid)
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        # One stream per connection: a client that stops reading leaves the rest unread.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if fault is not None and fault.kind in ("stream_error", "cut"):
            frames = frames[: fault.after]
        owner = self.server.owner
        try:
            for index, frame in enumerate(frames):
                delay = owner.first_token_seconds if index == 0 else owner.token_seconds
                if delay:
                    time.sleep(delay)
                self._write_chunk(frame)
            if fault is not None and fault.kind == "cut":
                self._cut()
                return
            if fault is not None and fault.kind == "stream_error":
                self._write_chunk(_exception(fault.code, fault.message))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client went away (a stream closed early)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Close the connection mid-stream (a TCP reset)."""
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


BedrockServer.handler = _Handler
