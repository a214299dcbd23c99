"""EventBridge: PRODUCER kind for PutEvents, trace context in each entry's X-Ray ``TraceHeader``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from .. import _propagation as p
from . import ServiceSpec

if TYPE_CHECKING:
    from .._options import Options


def _request(name: str, params: dict[str, Any], options: Options, attrs: dict[str, Any]) -> None:
    entries = params.get("Entries")
    if name == "PutEvents" and isinstance(entries, list):
        attrs["messaging.batch.message_count"] = len(entries)
        buses = {e.get("EventBusName") or "default" for e in entries if isinstance(e, dict)}
        if len(buses) == 1:
            attrs["messaging.destination.name"] = str(buses.pop()).rpartition("/")[2]
    bus = params.get("EventBusName")
    if isinstance(bus, str):
        attrs["messaging.destination.name"] = bus.rpartition("/")[2]


def _response(name: str, parsed: dict[str, Any], attrs: dict[str, Any]) -> None:
    failed = parsed.get("FailedEntryCount")
    if isinstance(failed, int) and failed:
        attrs["aws.eventbridge.failed_entry_count"] = failed


SPEC = ServiceSpec(
    request=_request,
    response=_response,
    kinds={"PutEvents": SpanKind.PRODUCER},
    injects={"PutEvents": p.inject_trace_header},
)
