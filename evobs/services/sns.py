"""SNS: topic ARN, PRODUCER kind for publishes, trace context in message attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from .. import _propagation as p
from . import ServiceSpec, _semconv

if TYPE_CHECKING:
    from .._options import Options

_PUBLISHES = ("Publish", "PublishBatch")


def _static(name: str) -> dict[str, Any]:
    if name in _PUBLISHES:
        return _semconv.messaging("aws.sns", "publish", "send", name)
    return {}


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    # TargetArn (a mobile endpoint) and PhoneNumber are never recorded.
    topic = params.get("TopicArn")
    if isinstance(topic, str):
        attrs["aws.sns.topic.arn"] = topic
        if name in _PUBLISHES:
            attrs["messaging.destination.name"] = topic.rpartition(":")[2]
    entries = params.get("PublishBatchRequestEntries")
    if isinstance(entries, list):
        attrs["messaging.batch.message_count"] = len(entries)


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    message_id = parsed.get("MessageId")
    if isinstance(message_id, str):
        attrs["messaging.message.id"] = message_id
    topic = parsed.get("TopicArn")  # CreateTopic
    if isinstance(topic, str):
        attrs["aws.sns.topic.arn"] = topic


SPEC = ServiceSpec(
    static=_static,
    request=_request,
    response=_response,
    kinds={"Publish": SpanKind.PRODUCER, "PublishBatch": SpanKind.PRODUCER},
    injects={
        "Publish": p.inject_message_attributes("Message", p.SNS_MAX_BYTES),
        "PublishBatch": p.inject_message_batch(
            "PublishBatchRequestEntries", "Message", p.SNS_MAX_BYTES
        ),
    },
)
