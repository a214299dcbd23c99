"""Bedrock Runtime operations -> GenAI facts: the entry points a signal calls.

- :func:`read_request` at call start (the params are the user's, read only):
  operation name, provider, model, family, parameters, guardrail, and content when
  capture is on. The span name and the sampling-relevant attributes are known here.
- :func:`read_response` at the end of a non-streaming call: ``Converse`` (botocore's
  parsed structure), ``InvokeModel`` (its body, read as :mod:`.body` explains), and
  ``ApplyGuardrail`` (the guardrail's action).
- streaming calls: :func:`evobs.genai.stream.wrap` replaces the returned stream.

Nothing here calls OpenTelemetry, and nothing raises for any input: a body that is
not JSON, not a dict, or not readable without side effects gives fewer attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

from . import converse, semconv
from .body import request_body, take_response_body
from .capture import Content, Settings, text_part
from .families import FAMILIES, GUARDRAIL_MEMBER, UNKNOWN, family_of, operation_of
from .model import Request, Response, items, wire_str

__all__ = [
    "OPERATIONS",
    "SERVICE",
    "STREAM_MEMBERS",
    "is_genai",
    "parse_json",
    "read_request",
    "read_response",
]

#: botocore's service id for Bedrock Runtime.
SERVICE: Final = "Bedrock Runtime"
OPERATIONS: Final = frozenset(
    {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream", "ApplyGuardrail"}
)
#: Streaming operation -> the output member holding botocore's ``EventStream``.
STREAM_MEMBERS: Final[Mapping[str, str]] = {
    "ConverseStream": "stream",
    "InvokeModelWithResponseStream": "body",
}
_TOKEN_HEADERS: Final = ("x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count")


def is_genai(service: str, operation: str) -> bool:
    """Whether evobs records this operation as a GenAI call."""
    return service == SERVICE and operation in OPERATIONS


def parse_json(data: bytes | str | None) -> Mapping[str, Any] | None:
    """A JSON object, or None for anything else (not JSON, not an object, not UTF-8)."""
    if data is None:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_request(operation: str, params: Mapping[str, Any], settings: Settings) -> Request | None:
    """The request facts of a GenAI operation (None for any other operation)."""
    if operation not in OPERATIONS or not isinstance(params, Mapping):
        return None
    if operation == "ApplyGuardrail":
        request = Request(operation, semconv.APPLY_GUARDRAIL, None, generation=settings.generation)
        request.guardrail_id = wire_str(params.get("guardrailIdentifier"))
        request.set(semconv.GUARDRAIL_ID, request.guardrail_id)
        if settings.capture_content:
            content = request.content = Content()
            texts = [
                text_part(block["text"]["text"])
                for block in items(params.get("content"))
                if isinstance(block, Mapping)
                and isinstance(block.get("text"), Mapping)
                and isinstance(block["text"].get("text"), str)
            ]
            role = "assistant" if params.get("source") == "OUTPUT" else "user"
            content.input_messages.append({"role": role, "parts": texts})
        return request
    model = wire_str(params.get("modelId"), 2048)
    streaming = operation in STREAM_MEMBERS
    if operation in ("Converse", "ConverseStream"):
        request = Request(
            operation, semconv.CHAT, model, streaming=streaming, generation=settings.generation
        )
        converse.read_request(request, params, settings)
        return request
    family_name = family_of(model) if model else None
    family = FAMILIES.get(family_name or "", UNKNOWN)
    body = parse_json(request_body(params.get("body"), settings.max_request_body_bytes))
    operation_name = family.operation(body) if body is not None else operation_of(model or "")
    request = Request(
        operation,
        operation_name,
        model,
        family=family_name,
        streaming=streaming,
        generation=settings.generation,
    )
    request.guardrail_id = wire_str(params.get("guardrailIdentifier"))
    request.set(semconv.GUARDRAIL_ID, request.guardrail_id)
    if body is not None:
        captured = Content() if settings.capture_content else None
        family.read_request(body, request, captured)
        request.content = captured
    return request


def read_response(
    request: Request, parsed: MutableMapping[str, Any], settings: Settings
) -> Response:
    """The response facts of a finished non-streaming call (InvokeModel's body is read
    and handed back identical: see :mod:`.body`)."""
    operation = request.aws_operation
    if operation == "Converse":
        return converse.read_response(parsed, settings)
    if operation == "ApplyGuardrail":
        response = Response()
        response.set_guardrail_action(parsed.get("action"))
        if settings.capture_content:
            outputs = parsed.get("outputs")
            parts = [
                text_part(o["text"])
                for o in items(outputs)
                if isinstance(o, Mapping) and isinstance(o.get("text"), str)
            ]
            if parts:
                response.output_messages = [
                    {"role": "assistant", "parts": parts, "finish_reason": "guardrail"}
                ]
        return response
    response = Response()
    if operation == "InvokeModel":
        body = parse_json(take_response_body(parsed, settings.max_body_bytes))
        if body is not None:
            FAMILIES.get(request.family or "", UNKNOWN).read_response(
                body, response, settings.capture_content
            )
            if GUARDRAIL_MEMBER in body:
                response.set_guardrail_action(body.get(GUARDRAIL_MEMBER))
        _header_usage(response, parsed)
    return response


def _header_usage(response: Response, parsed: Mapping[str, Any]) -> None:
    """Bedrock's token-count headers: usage for any model, the body not needed."""
    metadata = parsed.get("ResponseMetadata")
    headers = metadata.get("HTTPHeaders") if isinstance(metadata, Mapping) else None
    if not isinstance(headers, Mapping):
        return
    values = []
    for name in _TOKEN_HEADERS:
        raw = headers.get(name)
        try:
            values.append(int(raw) if raw is not None else None)
        except (TypeError, ValueError):
            values.append(None)
    response.set_usage(values[0], values[1], overwrite=False)
