"""Trace context into messages (producers) and back out of them (consumers).

Producers: as the call starts (in the client's call frame, before botocore or any
provide-client-params handler sees the params) the send call's own span already exists
(its operation has ``early_span``), so its context is injected with the globally configured
propagator (``opentelemetry.propagate.inject``, W3C ``traceparent`` by default) into
SQS/SNS message attributes, Lambda's ClientContext ``custom`` map, or, for EventBridge
entries (which have no attributes), the entry's ``TraceHeader`` in X-Ray format.

Rules: never a payload, never the user's objects (nested dicts and lists are replaced by
copies in the call's own kwargs dict), never over a service limit (10 message
attributes, message and batch sizes, 3583 bytes of ClientContext): a message that
would not fit is sent as the user wrote it and counted in the span attribute
``aws.sdk.propagation.skipped``. The call never fails because of propagation.

Consumers: ReceiveMessage asks for the propagation attributes if the user did not (and
evobs removes what it added before the user sees the response, remembering the removed
context by message id so :func:`extract_context` still works); the receive span is
linked to every producer's context; :func:`extract_context` turns a received message
(SQS, SNS-wrapped, EventBridge-delivered, or a Lambda event record) into an OTel Context.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ._fork import ForkSafeLock
from ._lazy import lazy_module

if TYPE_CHECKING:
    from opentelemetry import propagate
    from opentelemetry.context import Context

    from ._call import Call
else:
    # Imported by the first message that carries context (it reads its propagators'
    # entry points): a process that sends none never pays for it.
    propagate = lazy_module(globals(), "opentelemetry.propagate", "propagate")

__all__ = [
    "TRACE_ID_HEADER",
    "extract_context",
    "finish_receive",
    "inject_client_context",
    "inject_message_attributes",
    "inject_message_batch",
    "inject_trace_header",
    "parse_xray",
    "prepare_receive",
    "receive_links",
    "request_header_writer",
    "xray_header",
]

#: The HTTP header X-Ray reads a caller's trace from (SigV4 never signs it).
TRACE_ID_HEADER: Final = "X-Amzn-Trace-Id"

MAX_MESSAGE_ATTRIBUTES: Final = 10  # SQS, and SNS raw delivery to SQS
SQS_MAX_BYTES: Final = 1_048_576  # SQS message and batch payload (1 MiB since 2025)
SNS_MAX_BYTES: Final = 262_144  # SNS message and PublishBatch payload
EVENTS_MAX_BYTES: Final = 262_144  # EventBridge PutEvents request entries
CLIENT_CONTEXT_MAX: Final = 3583  # Lambda ClientContext, base64-encoded bytes

_XRAY: Final = "AWSTraceHeader"
_ALL: Final = frozenset({"All", ".*"})

# -- the propagator's fields, cached per propagator object --------------------------

_FIELDS: list[Any] = [None, ()]


def _fields() -> tuple[str, ...]:
    """The carrier keys the global propagator writes (``traceparent``, ``tracestate``...)."""
    textmap = propagate.get_global_textmap()
    if _FIELDS[0] is not textmap:
        _FIELDS[1] = tuple(sorted(textmap.fields))
        _FIELDS[0] = textmap
    fields: tuple[str, ...] = _FIELDS[1]
    return fields


def _carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _skipped(call: Call, count: int) -> None:
    """Messages sent without context: a fact on the record, rendered by the traces signal."""
    call.propagation_skipped += count


def _size(value: Any) -> int:
    """UTF-8 size of a string (cheap for ASCII), length of bytes, 0 for anything else."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    return 0


def _attributes_size(attributes: Mapping[str, Any]) -> int:
    total = 0
    for name, value in attributes.items():
        total += _size(name)
        if isinstance(value, Mapping):
            total += _size(value.get("DataType"))
            total += _size(value.get("StringValue")) + _size(value.get("BinaryValue"))
    return total


# -- producers ------------------------------------------------------------------------


def _merge(
    existing: Any, carrier: dict[str, str], body: Any, limit: int
) -> tuple[dict[str, Any] | None, int]:
    """A copy of ``existing`` message attributes plus the carrier, and the bytes added;
    ``(None, 0)`` when it would break the count or size limit (or nothing to add)."""
    if existing is None:
        existing = {}
    elif not isinstance(existing, Mapping):
        return None, 0
    added = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in carrier.items()
        if name not in existing
    }
    if not added or len(existing) + len(added) > MAX_MESSAGE_ATTRIBUTES:
        return None, 0
    extra = _attributes_size(added)
    if _size(body) + _attributes_size(existing) + extra > limit:
        return None, 0
    merged = dict(existing)
    merged.update(added)
    return merged, extra


def inject_message_attributes(body_key: str, limit: int) -> Any:
    """An edit for one-message sends (SQS SendMessage, SNS Publish)."""

    def inject(call: Call, params: dict[str, Any]) -> None:
        carrier = _carrier()
        if not carrier:
            return
        merged, _ = _merge(params.get("MessageAttributes"), carrier, params.get(body_key), limit)
        if merged is None:
            if any(name not in (params.get("MessageAttributes") or {}) for name in carrier):
                _skipped(call, 1)
            return
        params["MessageAttributes"] = merged  # a new dict: the user's stays as it was

    return inject


def inject_message_batch(list_key: str, body_key: str, limit: int) -> Any:
    """An edit for batch sends (SendMessageBatch, PublishBatch): per entry, within the
    count limit per entry and the size limit for the whole batch."""

    def inject(call: Call, params: dict[str, Any]) -> None:
        entries = params.get(list_key)
        if not isinstance(entries, list | tuple) or not entries:
            return
        carrier = _carrier()
        if not carrier:
            return
        total = 0
        for entry in entries:
            if isinstance(entry, Mapping):
                total += _size(entry.get(body_key))
                attributes = entry.get("MessageAttributes")
                if isinstance(attributes, Mapping):
                    total += _attributes_size(attributes)
        out: list[Any] = []
        skipped = 0
        changed = False
        for entry in entries:
            if not isinstance(entry, Mapping):
                out.append(entry)
                continue
            merged, extra = _merge(
                entry.get("MessageAttributes"), carrier, entry.get(body_key), limit
            )
            if merged is None or total + extra > limit:
                out.append(entry)
                skipped += 1
                continue
            total += extra
            copy = dict(entry)  # the user's entry stays as it was
            copy["MessageAttributes"] = merged
            out.append(copy)
            changed = True
        if changed:
            params[list_key] = out
        _skipped(call, skipped)

    return inject


def xray_header(span_context: SpanContext) -> str | None:
    """``Root=1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy;Parent=zzzzzzzzzzzzzzzz;Sampled=1``."""
    if not span_context.is_valid:
        return None
    trace_id = format(span_context.trace_id, "032x")
    sampled = "1" if span_context.trace_flags.sampled else "0"
    return (
        f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_context.span_id:016x};Sampled={sampled}"
    )


def request_header_writer() -> Callable[[Any], None] | None:
    """A function that writes the current span's ``X-Amzn-Trace-Id`` into an attempt's
    headers at before-send, after signing (SigV4 never signs it), through the AWS X-Ray
    propagator package (``evobs[xray]``); None when the package is not installed. A
    header already there (the user's, or botocore's own in Lambda) is left as it is."""
    try:
        from opentelemetry.propagators.aws import AwsXRayPropagator
    except ImportError:
        return None
    inject = AwsXRayPropagator().inject

    def write(headers: Any) -> None:
        if TRACE_ID_HEADER not in headers:
            inject(headers)

    return write


def parse_xray(header: Any) -> SpanContext | None:
    """The span context in an X-Ray trace header, or None."""
    if not isinstance(header, str):
        return None
    root = parent = None
    sampled = False
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            pieces = value.split("-")
            if len(pieces) == 3 and pieces[0] == "1":
                root = pieces[1] + pieces[2]
        elif key == "Parent":
            parent = value
        elif key == "Sampled":
            sampled = value == "1"
    if root is None or parent is None or len(root) != 32 or len(parent) != 16:
        return None
    try:
        context = SpanContext(
            int(root, 16),
            int(parent, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


def inject_trace_header(call: Call, params: dict[str, Any]) -> None:
    """EventBridge PutEvents: each entry's ``TraceHeader`` (entries have no attributes)."""
    entries = params.get("Entries")
    if not isinstance(entries, list | tuple) or not entries:
        return
    header = xray_header(trace.get_current_span().get_span_context())
    if header is None:
        return
    total = 0
    for entry in entries:
        if isinstance(entry, Mapping):
            for key in ("Source", "DetailType", "Detail", "TraceHeader"):
                total += _size(entry.get(key))
            resources = entry.get("Resources")
            if isinstance(resources, list | tuple):
                total += sum(_size(r) for r in resources)
            if entry.get("Time") is not None:
                total += 14
    extra = len(header)
    out: list[Any] = []
    skipped = 0
    changed = False
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("TraceHeader"):
            out.append(entry)  # the user's own trace header wins
            continue
        if total + extra > EVENTS_MAX_BYTES:
            out.append(entry)
            skipped += 1
            continue
        total += extra
        copy = dict(entry)
        copy["TraceHeader"] = header
        out.append(copy)
        changed = True
    if changed:
        params["Entries"] = out
    _skipped(call, skipped)


def inject_client_context(call: Call, params: dict[str, Any]) -> None:
    """Lambda Invoke: the ``custom`` map of the base64 JSON ClientContext (never the payload)."""
    carrier = _carrier()
    if not carrier:
        return
    raw = params.get("ClientContext")
    document: Any = {}
    if raw is not None:
        try:
            document = json.loads(base64.b64decode(raw, validate=True))
        except (TypeError, ValueError, binascii.Error):
            document = None
    custom = document.get("custom") if isinstance(document, dict) else None
    if custom is None and isinstance(document, dict):
        custom = {}
    if not isinstance(custom, dict) or not isinstance(document, dict):
        _skipped(call, 1)  # not a ClientContext evobs can extend without guessing
        return
    added = {k: v for k, v in carrier.items() if k not in custom}
    if not added:
        return
    merged = dict(document)
    merged["custom"] = {**custom, **added}
    encoded = base64.b64encode(json.dumps(merged, separators=(",", ":")).encode()).decode()
    if len(encoded) > CLIENT_CONTEXT_MAX:
        _skipped(call, 1)
        return
    params["ClientContext"] = encoded


# -- consumers ------------------------------------------------------------------------

# Context evobs removed from received messages (it asked for it, the user did not),
# by message id, so extract_context still finds it. Bounded, oldest out first.
_REMEMBERED: Final[OrderedDict[str, dict[str, str]]] = OrderedDict()
_REMEMBERED_MAX: Final = 4096
_REMEMBERED_LOCK: Final = ForkSafeLock()


def _remember(message_id: Any, carrier: dict[str, str]) -> None:
    if not isinstance(message_id, str):
        return
    with _REMEMBERED_LOCK:
        _REMEMBERED[message_id] = carrier
        _REMEMBERED.move_to_end(message_id)
        while len(_REMEMBERED) > _REMEMBERED_MAX:
            _REMEMBERED.popitem(last=False)


def prepare_receive(call: Call, params: dict[str, Any]) -> None:
    """ReceiveMessage: ask for the propagation attributes (and ``AWSTraceHeader``) if the
    user did not, and note what was added so :func:`finish_receive` can remove it."""
    names = params.get("MessageAttributeNames")
    if names is None:
        names = []
    if not isinstance(names, list | tuple):
        return
    added: tuple[str, ...] = ()
    if not any(n in _ALL for n in names):
        added = tuple(f for f in _fields() if f not in names)
        if added:
            params["MessageAttributeNames"] = [*names, *added]
    trace_header = False
    if "AttributeNames" not in params:  # the deprecated spelling: leave the user's request alone
        system = params.get("MessageSystemAttributeNames")
        if system is None:
            system = []
        if isinstance(system, list | tuple) and not any(n in ("All", _XRAY) for n in system):
            params["MessageSystemAttributeNames"] = [*system, _XRAY]
            trace_header = True
    if added or trace_header:
        call.notes = (added, trace_header)


def finish_receive(parsed: dict[str, Any], call: Call) -> None:
    """Remove what :func:`prepare_receive` added from the response, before the user sees it."""
    noted, call.notes = call.notes, None
    if not noted:
        return
    added, trace_header = noted
    messages = parsed.get("Messages")
    if not isinstance(messages, list):
        return
    for message in messages:
        if not isinstance(message, dict):
            continue
        removed: dict[str, str] = {}
        attributes = message.get("MessageAttributes")
        if added and isinstance(attributes, dict):
            for name in added:
                value = attributes.pop(name, None)
                if isinstance(value, dict) and isinstance(value.get("StringValue"), str):
                    removed[name] = value["StringValue"]
            if not attributes:
                del message["MessageAttributes"]
                message.pop("MD5OfMessageAttributes", None)
        system = message.get("Attributes")
        if trace_header and isinstance(system, dict):
            value = system.pop(_XRAY, None)
            if isinstance(value, str):
                removed[_XRAY] = value
            if not system:
                del message["Attributes"]
        if removed:
            _remember(message.get("MessageId"), removed)


def _string_attributes(attributes: Any, value_key: str) -> dict[str, str]:
    carrier: dict[str, str] = {}
    if isinstance(attributes, Mapping):
        for name, value in attributes.items():
            if isinstance(value, Mapping):
                text = value.get(value_key)
                if isinstance(text, str):
                    carrier[name] = text
    return carrier


def _has_fields(carrier: Mapping[str, str]) -> bool:
    return any(f in carrier for f in _fields())


def _message_carrier(message: Mapping[str, Any]) -> tuple[dict[str, str], Any]:
    """(propagation carrier, X-Ray header) of one message, from wherever it is carried."""
    carrier = _string_attributes(message.get("MessageAttributes"), "StringValue")
    if not carrier:  # a Lambda SQS event record
        carrier = _string_attributes(message.get("messageAttributes"), "stringValue")
    system = message.get("Attributes") or message.get("attributes")
    header = system.get(_XRAY) if isinstance(system, Mapping) else None
    return carrier, header


def _producer_carrier(message: Mapping[str, Any]) -> tuple[dict[str, str], Any]:
    """:func:`_message_carrier`, completed with what evobs removed from the response
    (the context it asked for and the user did not), remembered by message id."""
    carrier, header = _message_carrier(message)
    if not _has_fields(carrier):
        remembered = None
        message_id = message.get("MessageId", message.get("messageId"))
        if isinstance(message_id, str):
            with _REMEMBERED_LOCK:
                remembered = _REMEMBERED.get(message_id)
        if remembered:
            carrier = {**remembered, **carrier}
            header = header or remembered.get(_XRAY)
    return carrier, header


def _from_envelope(message: Mapping[str, Any]) -> dict[str, str]:
    """SNS notification attributes: in an SQS body (not raw delivery) or a Lambda SNS record."""
    sns = message.get("Sns")
    if isinstance(sns, Mapping):
        return _string_attributes(sns.get("MessageAttributes"), "Value")
    body = message.get("Body", message.get("body"))
    if not isinstance(body, str) or '"MessageAttributes"' not in body:
        return {}
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(document, dict) or document.get("Type") != "Notification":
        return {}
    return _string_attributes(document.get("MessageAttributes"), "Value")


def extract_context(message: Mapping[str, Any], context: Context | None = None) -> Context:
    """The OpenTelemetry Context that continues the producer's trace of a received message.

    Takes a message dict as ``receive_message`` returns it (or a Lambda event record),
    and finds the producer's context in its message attributes, in an SNS notification
    envelope in its body, in the ``AWSTraceHeader`` system attribute (EventBridge and
    X-Ray producers), or in what evobs removed from the response. Returns ``context``
    (default: the current context) with the producer's span as the parent, or unchanged
    if the message carries no context::

        with tracer.start_as_current_span("process", context=evobs.extract_context(msg),
                                          kind=SpanKind.CONSUMER):
            ...
    """
    base = otel_context.get_current() if context is None else context
    if not isinstance(message, Mapping):
        return base
    carrier, header = _producer_carrier(message)
    if not _has_fields(carrier):
        carrier = {**_from_envelope(message), **carrier}
    if _has_fields(carrier):
        extracted = propagate.extract(carrier, context=base)
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    span_context = parse_xray(header)
    if span_context is not None:
        return trace.set_span_in_context(NonRecordingSpan(span_context), base)
    return base


def receive_links(parsed: dict[str, Any]) -> list[SpanContext]:
    """The producers' span contexts of the messages in a ReceiveMessage response (read
    after :func:`finish_receive`, from what it remembered)."""
    messages = parsed.get("Messages")
    if not isinstance(messages, list):
        return []
    fields = _fields()
    empty = otel_context.Context()
    links: list[SpanContext] = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        carrier, header = _producer_carrier(message)
        span_context = None
        if any(f in carrier for f in fields):
            extracted = propagate.extract(carrier, context=empty)
            span_context = trace.get_current_span(extracted).get_span_context()
        if span_context is None or not span_context.is_valid:
            span_context = parse_xray(header)
        if span_context is not None and span_context.is_valid and span_context not in links:
            links.append(span_context)
    return links
