"""SQS: messaging attributes, PRODUCER/CONSUMER kinds, trace context in message attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from .. import _propagation as p
from . import ServiceSpec, _semconv

if TYPE_CHECKING:
    from .._options import Options

# operation -> (old messaging.operation, new messaging.operation.type)
_OPERATIONS = {
    "SendMessage": ("publish", "send"),
    "SendMessageBatch": ("publish", "send"),
    "ReceiveMessage": ("receive", "receive"),
    "DeleteMessage": (None, "settle"),
    "DeleteMessageBatch": (None, "settle"),
}


def _static(name: str) -> dict[str, Any]:
    old, new = _OPERATIONS.get(name, (None, None))
    return _semconv.messaging("aws_sqs", old, new, name)


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    url = params.get("QueueUrl")
    if isinstance(url, str):
        attrs["aws.sqs.queue.url"] = url
        attrs["messaging.destination.name"] = url.rstrip("/").rpartition("/")[2]
    entries = params.get("Entries")
    if isinstance(entries, list):
        attrs["messaging.batch.message_count"] = len(entries)


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    message_id = parsed.get("MessageId")  # SendMessage
    if isinstance(message_id, str):
        attrs["messaging.message.id"] = message_id
    if name == "ReceiveMessage":
        messages = parsed.get("Messages")
        count = len(messages) if isinstance(messages, list) else 0
        attrs["messaging.batch.message_count"] = count
        if count == 1 and isinstance(messages, list) and isinstance(messages[0], dict):
            single = messages[0].get("MessageId")
            if isinstance(single, str):
                attrs["messaging.message.id"] = single


SPEC = ServiceSpec(
    static=_static,
    request=_request,
    response=_response,
    kinds={
        "SendMessage": SpanKind.PRODUCER,
        "SendMessageBatch": SpanKind.PRODUCER,
        "ReceiveMessage": SpanKind.CONSUMER,
    },
    injects={
        "SendMessage": p.inject_message_attributes("MessageBody", p.SQS_MAX_BYTES),
        "SendMessageBatch": p.inject_message_batch("Entries", "MessageBody", p.SQS_MAX_BYTES),
    },
    edits={"ReceiveMessage": p.prepare_receive},
    finishes={"ReceiveMessage": p.finish_receive},
    links={"ReceiveMessage": p.receive_links},
)
