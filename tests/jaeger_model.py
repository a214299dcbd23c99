"""What a Jaeger user sees: OTLP export requests converted with Jaeger's OTLP-to-Jaeger mapping.

Jaeger stores and shows spans in its own model; an OTLP span is converted by the
OpenTelemetry Collector's Jaeger translator (``pkg/translator/jaeger``,
``traces_to_jaegerproto.go``, which Jaeger v2 calls for its v1 storage and query APIs).
The mapping, as documented there and reproduced here:

- the resource is the span's *process*: ``service.name`` is the service name Jaeger
  lists (``OTLPResourceNoServiceName`` without one); the other resource attributes
  are process tags;
- the span name is the operation name; start time and duration are microseconds;
- tags: ``otel.scope.name`` / ``otel.scope.version``, then the span's attributes
  (arrays and maps as JSON strings), ``span.kind`` (``client``, ``server``,
  ``producer``, ``consumer``, ``internal``), status ERROR as ``error=true`` and
  ``otel.status_code=ERROR``, OK as ``otel.status_code=OK``, the status message as
  ``otel.status_description``, trace state as ``w3c.tracestate``;
- events are logs: the timestamp in microseconds, an ``event`` field with the name,
  then the event's attributes;
- the parent is the first reference, ``CHILD_OF``; links follow as ``FOLLOWS_FROM``
  (``CHILD_OF`` when the link's ``opentracing.ref_type`` attribute says ``child_of``).

On top of the stored model, what Jaeger derives from it:

- the row label of the timeline (jaeger-ui ``VirtualizedTraceView``): the service
  name, and ``-> peer`` when the span is a leaf CLIENT or PRODUCER span with a
  ``peer.service`` tag; a red marker when the span has ``error=true``;
- the dependency links (Jaeger's ``spark-dependencies`` job, ``SpansToDependencyLinks``):
  referenced span's service -> referring span's service for every reference within a
  trace, and service -> ``peer.service`` for every leaf span that has that tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .otlp_receiver import OTLPReceiver

__all__ = [
    "CHILD_OF",
    "FOLLOWS_FROM",
    "JaegerLog",
    "JaegerReceiver",
    "JaegerSpan",
    "JaegerTrace",
    "dependency_links",
    "jaeger_receiver",
    "to_jaeger",
]

CHILD_OF = "CHILD_OF"
FOLLOWS_FROM = "FOLLOWS_FROM"
NO_SERVICE_NAME = "OTLPResourceNoServiceName"

_KINDS = {
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
    Span.SPAN_KIND_INTERNAL: "internal",
}


@dataclass(frozen=True)
class Reference:
    ref_type: str
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class JaegerLog:
    """One span log: microseconds and fields (``event`` is the OTLP event's name)."""

    timestamp_us: int
    fields: dict[str, Any]

    @property
    def event(self) -> str | None:
        value = self.fields.get("event")
        return value if isinstance(value, str) else None


@dataclass
class JaegerSpan:
    """One span as Jaeger stores it (ids as lowercase hex, times in microseconds)."""

    trace_id: str
    span_id: str
    operation_name: str
    references: list[Reference]
    start_us: int
    duration_us: int
    tags: dict[str, Any]
    logs: list[JaegerLog]
    service_name: str
    process_tags: dict[str, Any]

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us

    @property
    def parent_id(self) -> str | None:
        """The parent: the first reference, when it is CHILD_OF a span of this trace."""
        if self.references:
            first = self.references[0]
            if first.ref_type == CHILD_OF and first.trace_id == self.trace_id:
                return first.span_id
        return None

    @property
    def kind(self) -> str | None:
        kind = self.tags.get("span.kind")
        return kind if isinstance(kind, str) else None

    @property
    def has_error(self) -> bool:
        """Jaeger marks a span failed by its ``error`` tag."""
        return self.tags.get("error") is True

    def logs_named(self, event: str) -> list[JaegerLog]:
        return [log for log in self.logs if log.event == event]


@dataclass
class JaegerTrace:
    """The spans of one trace id, and what Jaeger's timeline derives from them."""

    trace_id: str
    spans: list[JaegerSpan] = field(default_factory=list)

    def span(self, span_id: str) -> JaegerSpan | None:
        return next((s for s in self.spans if s.span_id == span_id), None)

    def roots(self) -> list[JaegerSpan]:
        ids = {s.span_id for s in self.spans}
        return [s for s in self.spans if s.parent_id is None or s.parent_id not in ids]

    def children(self, span: JaegerSpan) -> list[JaegerSpan]:
        return sorted(
            (s for s in self.spans if s.parent_id == span.span_id), key=lambda s: s.start_us
        )

    def descendants(self, span: JaegerSpan) -> list[JaegerSpan]:
        out: list[JaegerSpan] = []
        for child in self.children(span):
            out.append(child)
            out.extend(self.descendants(child))
        return out

    def named(self, name: str) -> list[JaegerSpan]:
        return [s for s in self.spans if s.operation_name == name]

    def is_leaf(self, span: JaegerSpan) -> bool:
        return not any(s.parent_id == span.span_id for s in self.spans)

    def row_label(self, span: JaegerSpan) -> str:
        """The service column of the span's timeline row: ``service`` or, for a leaf
        client/producer span with ``peer.service``, ``service -> peer``."""
        peer = span.tags.get("peer.service")
        if peer is not None and self.is_leaf(span) and span.kind in ("client", "producer"):
            return f"{span.service_name} -> {peer}"
        return span.service_name


# -- the mapping ------------------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    """A tag value: strings, bools, ints, doubles and bytes as they are; arrays and maps
    as the JSON string the translator writes (``pcommon.Value.AsString``)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind in ("array_value", "kvlist_value"):
        return json.dumps(_raw(value), separators=(",", ":"))
    return getattr(value, kind)


def _raw(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


def _tags(items: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def _us(ns: int) -> int:
    return ns // 1000


def _span(span: Span, scope: Any, service: str, process_tags: dict[str, Any]) -> JaegerSpan:
    trace_id = span.trace_id.hex()
    tags: dict[str, Any] = {}
    if scope.name:
        tags["otel.scope.name"] = scope.name
    if scope.version:
        tags["otel.scope.version"] = scope.version
    tags.update(_tags(span.attributes))
    kind = _KINDS.get(span.kind)
    if kind is not None:
        tags["span.kind"] = kind
    if span.status.code == Status.STATUS_CODE_ERROR:
        tags["otel.status_code"] = "ERROR"
        tags["error"] = True
    elif span.status.code == Status.STATUS_CODE_OK:
        tags["otel.status_code"] = "OK"
    if span.status.message:
        tags["otel.status_description"] = span.status.message
    if span.trace_state:
        tags["w3c.tracestate"] = span.trace_state
    references: list[Reference] = []
    if span.parent_span_id:
        references.append(Reference(CHILD_OF, trace_id, span.parent_span_id.hex()))
    for link in span.links:
        ref_type = FOLLOWS_FROM
        for kv in link.attributes:
            if kv.key == "opentracing.ref_type" and _value(kv.value) == "child_of":
                ref_type = CHILD_OF
        references.append(Reference(ref_type, link.trace_id.hex(), link.span_id.hex()))
    logs = []
    for event in span.events:
        fields: dict[str, Any] = {"event": event.name} if event.name else {}
        fields.update(_tags(event.attributes))
        logs.append(JaegerLog(_us(event.time_unix_nano), fields))
    start = _us(span.start_time_unix_nano)
    return JaegerSpan(
        trace_id=trace_id,
        span_id=span.span_id.hex(),
        operation_name=span.name,
        references=references,
        start_us=start,
        duration_us=_us(span.end_time_unix_nano) - start,
        tags=tags,
        logs=sorted(logs, key=lambda log: log.timestamp_us),
        service_name=service,
        process_tags=process_tags,
    )


def to_jaeger(requests: Iterable[ExportTraceServiceRequest]) -> dict[str, JaegerTrace]:
    """Every span of the export requests in Jaeger's model, grouped by trace id."""
    traces: dict[str, JaegerTrace] = {}
    for request in requests:
        for resource_spans in request.resource_spans:
            process_tags = _tags(resource_spans.resource.attributes)
            service = process_tags.pop("service.name", NO_SERVICE_NAME)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    converted = _span(span, scope_spans.scope, str(service), process_tags)
                    trace = traces.setdefault(converted.trace_id, JaegerTrace(converted.trace_id))
                    trace.spans.append(converted)
    for trace in traces.values():
        trace.spans.sort(key=lambda s: s.start_us)
    return traces


def dependency_links(traces: Iterable[JaegerTrace]) -> dict[tuple[str, str], int]:
    """(parent service, child service) -> call count, as Jaeger's dependency job counts
    them: one per reference to a span of the same trace (its service -> this span's),
    and one per leaf span (no span refers to it) with ``peer.service`` (its service ->
    the peer)."""
    links: dict[tuple[str, str], int] = {}
    for trace in traces:
        referenced = {r.span_id for s in trace.spans for r in s.references}
        for span in trace.spans:
            for reference in span.references:
                parent = trace.span(reference.span_id)
                if parent is not None:
                    key = (parent.service_name, span.service_name)
                    links[key] = links.get(key, 0) + 1
            peer = span.tags.get("peer.service")
            if peer is not None and span.span_id not in referenced:
                key = (span.service_name, str(peer))
                links[key] = links.get(key, 0) + 1
    return links


# -- receiving ----------------------------------------------------------------------------


class JaegerReceiver(OTLPReceiver):
    """The tests' OTLP/HTTP receiver, also keeping each decoded export request whole."""

    def __init__(self) -> None:
        super().__init__("accept")
        self.requests: list[ExportTraceServiceRequest] = []

    def _store(self, request: ExportTraceServiceRequest, content_type: str) -> None:
        super()._store(request, content_type)
        with self._lock:
            self.requests.append(request)

    def traces(self) -> dict[str, JaegerTrace]:
        """What arrived so far, as Jaeger would show it."""
        with self._lock:
            requests = list(self.requests)
        return to_jaeger(requests)


@contextmanager
def jaeger_receiver() -> Iterator[JaegerReceiver]:
    receiver = JaegerReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
