"""A local OTLP/HTTP receiver for the tests: what a Collector's (or Jaeger's) port 4318 does.

It decodes each ``POST /v1/traces`` body as an ``ExportTraceServiceRequest`` and each
``POST /v1/metrics`` body as an ``ExportMetricsServiceRequest`` with
``opentelemetry-proto``, and keeps the spans and the metric data points, each with its
resource attributes, so tests check what actually crossed the wire. Modes for the
reliability tests:
``"accept"`` (200; ``hold()``/``release()`` make it slow for a while), ``"refuse"``
(closed port: nothing listens), ``"hang"`` (reads the request, never answers until
stopped).
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

Mode = Literal["accept", "refuse", "hang"]

__all__ = ["OTLPReceiver", "ReceivedPoint", "ReceivedSpan", "closed_port", "otlp_receiver"]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


@dataclass
class ReceivedSpan:
    """One decoded span: ids as lowercase hex, times in ns, attributes as a dict."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str
    links: list[str] = field(default_factory=list)


@dataclass
class ReceivedPoint:
    """One decoded metric data point with its metric's name, unit and kind.

    ``kind`` is the OTLP data field (``sum``, ``gauge``, ``histogram``...). Sums and
    gauges carry ``value``; histograms ``count``, ``sum``, ``bucket_counts`` and
    ``explicit_bounds``. ``temporality`` is OTLP's enum (1 delta, 2 cumulative).
    """

    metric: str
    unit: str
    description: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    scope_version: str
    time_ns: int
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: list[int] = field(default_factory=list)
    explicit_bounds: list[float] = field(default_factory=list)
    is_monotonic: bool | None = None
    temporality: int | None = None
    exemplars: list[tuple[str, str]] = field(default_factory=list)


def _points(metric: Any, resource: dict[str, Any], scope: Any) -> list[ReceivedPoint]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    data = getattr(metric, kind)
    common = {
        "metric": metric.name,
        "unit": metric.unit,
        "description": metric.description,
        "kind": kind,
        "resource": resource,
        "scope": scope.name,
        "scope_version": scope.version,
    }
    extra: dict[str, Any] = {}
    if kind == "sum":
        extra = {"is_monotonic": data.is_monotonic}
    if kind in ("sum", "histogram", "exponential_histogram"):
        extra["temporality"] = data.aggregation_temporality
    out = []
    for point in data.data_points:
        values: dict[str, Any] = {}
        if kind in ("sum", "gauge"):
            number = point.WhichOneof("value")
            values["value"] = getattr(point, number) if number else None
        elif kind == "histogram":
            values = {
                "count": point.count,
                "sum": point.sum,
                "bucket_counts": list(point.bucket_counts),
                "explicit_bounds": list(point.explicit_bounds),
            }
        exemplars = [(e.trace_id.hex(), e.span_id.hex()) for e in getattr(point, "exemplars", ())]
        out.append(
            ReceivedPoint(
                **common,
                **extra,
                **values,
                attributes=_attributes(point.attributes),
                time_ns=point.time_unix_nano,
                exemplars=exemplars,
            )
        )
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OTLPReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver._requests_seen += 1
        if receiver.mode == "hang":
            receiver._hold.wait(60)
            self.close_connection = True
            return
        receiver._gate.wait(60)
        if self.path == "/v1/traces":
            request: Any = ExportTraceServiceRequest()
            response: Any = ExportTraceServiceResponse()
            store = receiver._store
        elif self.path == "/v1/metrics":
            request = ExportMetricsServiceRequest()
            response = ExportMetricsServiceResponse()
            store = receiver._store_metrics
        else:
            self._reply(404, b"")
            return
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        try:
            request.ParseFromString(body)
        except Exception:
            self._reply(400, b"")
            return
        store(request, self.headers.get("Content-Type", ""))
        self._reply(200, response.SerializeToString())

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class OTLPReceiver:
    """Threaded OTLP/HTTP receiver on 127.0.0.1, a free port."""

    def __init__(self, mode: Mode = "accept") -> None:
        self.mode: Mode = mode
        self.spans: list[ReceivedSpan] = []
        self.points: list[ReceivedPoint] = []
        #: Content types of the trace requests (``metrics_requests`` counts the others).
        self.content_types: list[str] = []
        self.metrics_requests = 0
        self._requests_seen = 0
        self._lock = threading.Lock()
        self._hold = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    def start(self) -> OTLPReceiver:
        if self.mode == "refuse":
            self._port = closed_port()
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.receiver = self
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def hold(self) -> None:
        """Answer nothing until ``release()``: a slow collector (requests wait, then succeed)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self._hold.set()
        self._gate.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:port`` (what OTEL_EXPORTER_OTLP_ENDPOINT takes)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The full traces URL."""
        return self.base_url + "/v1/traces"

    @property
    def metrics_url(self) -> str:
        """The full metrics URL."""
        return self.base_url + "/v1/metrics"

    @property
    def requests_seen(self) -> int:
        return self._requests_seen

    def _store(self, request: ExportTraceServiceRequest, content_type: str) -> None:
        decoded: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                            status_code=span.status.code,
                            status_message=span.status.message,
                            events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            resource=resource,
                            scope=scope_spans.scope.name,
                            links=[link.span_id.hex() for link in span.links],
                        )
                    )
        with self._lock:
            self.spans.extend(decoded)
            self.content_types.append(content_type)

    def _store_metrics(self, request: ExportMetricsServiceRequest, content_type: str) -> None:
        decoded: list[ReceivedPoint] = []
        for resource_metrics in request.resource_metrics:
            resource = _attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    decoded.extend(_points(metric, resource, scope_metrics.scope))
        with self._lock:
            self.points.extend(decoded)
            self.metrics_requests += 1

    def received_points(self, metric: str | None = None) -> list[ReceivedPoint]:
        """Every data point received so far (of one metric if named), in arrival order."""
        with self._lock:
            return [p for p in self.points if metric is None or p.metric == metric]

    def wait_for_points(self, metric: str, timeout: float = 10.0) -> list[ReceivedPoint]:
        """Poll until a data point of ``metric`` arrived or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            points = self.received_points(metric)
            if points or time.monotonic() >= deadline:
                return points
            time.sleep(0.02)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.received() if s.name == name]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Poll until ``count`` spans arrived or the deadline passes; returns what arrived."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.received()
            if len(spans) >= count or time.monotonic() >= deadline:
                return spans
            time.sleep(0.02)


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def otlp_receiver(mode: Mode = "accept") -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver(mode).start()
    try:
        yield receiver
    finally:
        receiver.stop()
