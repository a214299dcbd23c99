"""A scripted fault server: forwards to an AWS endpoint (moto) or answers with a fault.

Retries, throttling, resets and stalls are the paths where instrumentation is
most likely to be wrong, and a real AWS endpoint produces them only by accident.
:class:`FaultServer` sits between botocore and moto on 127.0.0.1 and, request by
request, either forwards verbatim or answers from a script, in the wire format
of the protocol the request used (JSON, query XML or S3 XML). It records every
request it received, so tests compare telemetry with what crossed the wire::

    with FaultServer(upstream=moto_url) as server:
        server.script([Fault.throttle(), Fault.status(503), Fault.forward()])
        client = session.client("dynamodb", endpoint_url=server.url)
        ...
        assert server.count(operation="PutItem") == 3

The demo (``evobs demo``) uses the same server to inject throttling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import itertools
import json
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

from ._loopback import LoopbackHTTPServer, LoopbackServer

__all__ = ["Fault", "FaultServer", "RecordedRequest", "Style"]

#: The error-body dialect of a response: AWS JSON, query-protocol XML, or S3's XML.
Style = Literal["json", "query", "s3"]

Kind = Literal[
    "forward", "error", "throttle", "empty", "reset", "stall", "s3_200_error", "malformed", "raw"
]

#: How long a stall lasts at most when nobody stops it (the client's read
#: timeout, the client going away, or ``stop()`` normally end it much sooner).
DEFAULT_STALL_SECONDS: Final = 30.0
_POLL_SECONDS: Final = 0.05
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)
_REASONS: Final = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_DEFAULT_CODES: Final = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequestsException",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer; build one with the class methods, narrow it with :meth:`on`.

    A fault with a match (``operation``, ``method``, ``path``) is applied only to a
    request that matches it; other requests pass it by in the queue.
    """

    kind: Kind
    http_status: int | None = None
    code: str | None = None
    message: str | bytes = "injected by evobs FaultServer"
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    request_ids: bool = True
    style: Style | None = None
    seconds: float = DEFAULT_STALL_SECONDS
    operation: str | None = None
    method: str | None = None
    path: str | None = None

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def forward(cls) -> Fault:
        """Pass the request to the upstream endpoint and return its answer verbatim."""
        return cls("forward")

    @classmethod
    def status(
        cls, status: int, code: str | None = None, message: str | bytes | None = None
    ) -> Fault:
        """An HTTP error with a protocol-appropriate error body (code defaults by status)."""
        return cls(
            "error",
            http_status=status,
            code=code or _DEFAULT_CODES.get(status, f"Http{status}"),
            message="injected by evobs FaultServer" if message is None else message,
        )

    @classmethod
    def error(
        cls, status: int, code: str, message: str | bytes = "injected by evobs FaultServer"
    ) -> Fault:
        """An AWS error with an explicit code (``NoSuchKey``, ``ThrottlingException``)."""
        return cls("error", http_status=status, code=code, message=message)

    @classmethod
    def throttle(cls) -> Fault:
        """Throttling as each protocol says it: 400 ThrottlingException (JSON),
        400 Throttling (query), 503 SlowDown (S3)."""
        return cls("throttle", message="Rate exceeded")

    @classmethod
    def too_many_requests(cls) -> Fault:
        """429 with an empty body (what a load balancer in front of a service answers)."""
        return cls("empty", http_status=429)

    @classmethod
    def empty(cls, status: int) -> Fault:
        """Any status with an empty body."""
        return cls("empty", http_status=status)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection with a TCP reset (SO_LINGER 0) instead of answering."""
        return cls("reset")

    @classmethod
    def stall(cls, seconds: float = DEFAULT_STALL_SECONDS) -> Fault:
        """Read the request and never answer (until the client leaves, ``seconds`` pass,
        or the server stops), so the client hits its read timeout."""
        return cls("stall", seconds=seconds)

    @classmethod
    def s3_200_error(
        cls, code: str = "InternalError", message: str = "We encountered an internal error."
    ) -> Fault:
        """S3's ``200 OK`` whose body is an ``<Error>`` document (botocore turns it into 500)."""
        return cls("s3_200_error", http_status=200, code=code, message=message, style="s3")

    @classmethod
    def malformed(cls, status: int = 500) -> Fault:
        """An error status whose body is truncated JSON or XML (unparseable)."""
        return cls("malformed", http_status=status)

    @classmethod
    def non_utf8(cls, status: int = 500, code: str = "InternalError") -> Fault:
        """An error whose message is not valid UTF-8."""
        return cls("error", http_status=status, code=code, message=b"bad \xff\xfe\xc3( bytes")

    @classmethod
    def huge_message(
        cls, status: int = 500, size: int = 1_000_000, code: str = "InternalError"
    ) -> Fault:
        """An error whose message is ``size`` characters long."""
        return cls("error", http_status=status, code=code, message="x" * size)

    @classmethod
    def raw(cls, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> Fault:
        """Exactly this status, body and headers (request ids still added unless disabled)."""
        return cls("raw", http_status=status, body=body, headers=tuple(headers))

    # -- modifiers ----------------------------------------------------------------

    def on(
        self, operation: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> Fault:
        """Apply only to requests of this operation (``X-Amz-Target`` suffix or ``Action``),
        HTTP method, and/or path (a regular expression searched in the request path)."""
        return dataclasses.replace(self, operation=operation, method=method, path=path)

    def without_request_id(self) -> Fault:
        """Answer without any request-id header or element."""
        return dataclasses.replace(self, request_ids=False)

    def with_style(self, style: Style) -> Fault:
        """Force the error-body dialect instead of guessing it from the request."""
        return dataclasses.replace(self, style=style)

    def with_headers(self, *headers: tuple[str, str]) -> Fault:
        """Add response headers."""
        return dataclasses.replace(self, headers=self.headers + headers)

    def matches(self, request: RecordedRequest) -> bool:
        """Whether this fault applies to ``request``."""
        if self.operation is not None and request.operation != self.operation:
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        return self.path is None or re.search(self.path, request.path) is not None


#: Request bodies up to this size are kept on the record.
_KEEP_BODY: Final = 64 * 1024


@dataclasses.dataclass(slots=True)
class RecordedRequest:
    """One request as it arrived, and what the server did with it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    #: The operation: ``X-Amz-Target``'s suffix (JSON) or ``Action`` (query); None for REST.
    operation: str | None
    #: The full ``X-Amz-Target`` header, if any.
    target: str | None
    style: Style
    body_size: int
    #: Wall-clock seconds at arrival.
    time: float
    #: The fault kind applied (``forward`` for a forwarded request).
    fault: str = "forward"
    #: The status sent back; None for a reset or a stall.
    status: int | None = None
    #: The request id the server put in its answer (None if none or forwarded without one).
    request_id: str | None = None
    #: The body as received, when small (up to 64 KiB; else empty): enough to re-check a
    #: signature.
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


class FaultServer(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 that forwards to ``upstream`` or injects faults.

    Thread-safe: requests from many client threads are handled concurrently;
    the script queue and the recording are guarded by one lock.
    """

    thread_name = "evobs-fault-server"

    def __init__(
        self, upstream: str | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.upstream = upstream.rstrip("/") if upstream else None
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._default = Fault.forward()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()

    # -- lifecycle --------------------------------------------------------------------

    def _starting(self) -> None:
        self._stopping.clear()

    def _stopping_now(self) -> None:
        """Ends stalls; open connections are closed once the serving loop stopped."""
        self._stopping.set()

    def _shut_down(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- scripting ----------------------------------------------------------------------

    def script(self, faults: Iterable[Fault]) -> None:
        """Append faults to the queue; each is used once, by the next request it matches."""
        with self._lock:
            self._queue.extend(faults)

    def set_default(self, fault: Fault) -> None:
        """What requests no scripted fault matches get (``Fault.forward()`` at start)."""
        with self._lock:
            self._default = fault

    @property
    def pending(self) -> list[Fault]:
        """Scripted faults not used yet."""
        with self._lock:
            return list(self._queue)

    def reset(self) -> None:
        """Forget the recording and the script; default back to forwarding."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._default = Fault.forward()

    # -- recording ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def count(
        self, operation: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> int:
        """How many received requests match (same rules as :meth:`Fault.on`)."""
        probe = Fault("forward", operation=operation, method=method, path=path)
        return sum(1 for r in self.requests if probe.matches(r))

    @property
    def open_connections(self) -> int:
        """Client connections a handler thread is still serving (stalls included)."""
        with self._lock:
            return len(self._sockets)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Poll until at least ``count`` requests arrived (or the deadline passes)."""
        deadline = time.monotonic() + timeout
        while True:
            requests = self.requests
            if len(requests) >= count or time.monotonic() >= deadline:
                return requests
            time.sleep(0.01)

    # -- used by the handler ---------------------------------------------------------

    def _record(self, request: RecordedRequest) -> Fault:
        with self._lock:
            request.time = time.time()  # under the lock: arrival order is time order
            self._requests.append(request)
            for index, fault in enumerate(self._queue):
                if fault.matches(request):
                    del self._queue[index]
                    return fault
            return self._default

    def _next_request_id(self) -> str:
        return f"evobs-fault-{next(self._ids):08d}"

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)


class _Handler(BaseHTTPRequestHandler):
    """Handles every method the same way: record, pick a fault, act."""

    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer
    #: Idle keep-alive connections give up after this long (socket timeout).
    timeout = 10
    #: Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus
    #: the client's delayed ACK add ~40 ms to every response that has a body.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()
        self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the recording is the log."""

    def _handle(self) -> None:
        owner = self.server.owner
        body = self._read_body()
        split = urlsplit(self.path)
        headers = tuple((k, v) for k, v in self.headers.items())
        target = self.headers.get("X-Amz-Target")
        style = _style(self.headers.get("Content-Type"), target, split.query, body)
        operation: str | None = None
        if target:
            operation = target.rpartition(".")[2]
        elif style == "query":
            operation = _action(split.query, body)
        record = RecordedRequest(
            method=self.command,
            path=split.path,
            query=split.query,
            headers=headers,
            operation=operation,
            target=target,
            style=style,
            body_size=len(body),
            time=time.time(),
            body=body if len(body) <= _KEEP_BODY else b"",
        )
        fault = owner._record(record)
        record.fault = fault.kind
        if fault.kind == "forward":
            self._forward(owner, record, body)
        elif fault.kind == "reset":
            self._reset()
        elif fault.kind == "stall":
            self._stall(owner, fault.seconds)
        else:
            self._respond(owner, record, fault)

    def _read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    # -- actions -------------------------------------------------------------------------

    def _forward(self, owner: FaultServer, record: RecordedRequest, body: bytes) -> None:
        if owner.upstream is None:
            fault = Fault.status(502, "BadGateway", "FaultServer has no upstream")
            self._respond(owner, record, fault)
            return
        parts = urlsplit(owner.upstream)
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=60
        )
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    conn.putheader(key, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            response = conn.getresponse()
            status = response.status
            reply = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            if response.chunked:  # an event stream: passed on as it arrives
                self._relay(record, response, status, reply)
                return
            payload = response.read()
        except OSError as exc:
            self._respond(owner, record, Fault.status(502, "BadGateway", f"upstream failed: {exc}"))
            return
        finally:
            conn.close()
        record.status = status
        for key, value in reply:
            if key.lower() in ("x-amzn-requestid", "x-amz-request-id"):
                record.request_id = value
        length = None
        if self.command == "HEAD":  # a HEAD answer's length is the resource's, not 0
            length = response.getheader("Content-Length")
        self._send(status, reply, payload, response.reason, length)

    def _relay(
        self,
        record: RecordedRequest,
        response: http.client.HTTPResponse,
        status: int,
        headers: list[tuple[str, str]],
    ) -> None:
        """Send a chunked upstream answer chunk by chunk (Bedrock's event streams): the
        client reads each event when the upstream sends it. An upstream that breaks off
        mid-stream breaks the client's connection too."""
        record.status = status
        for key, value in headers:
            if key.lower() in ("x-amzn-requestid", "x-amz-request-id"):
                record.request_id = value
        self.close_connection = True
        self.send_response_only(status, response.reason)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                data = response.read1(64 * 1024)
                if not data:
                    break
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
        except (OSError, http.client.HTTPException):
            self._reset()
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _respond(self, owner: FaultServer, record: RecordedRequest, fault: Fault) -> None:
        style = fault.style or record.style
        request_id = owner._next_request_id() if fault.request_ids else None
        status, headers, body = _render(fault, style, request_id)
        record.status = status
        record.request_id = request_id
        self._send(status, headers, body)

    def _send(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        reason: str | None = None,
        length: str | None = None,
    ) -> None:
        self.send_response_only(status, reason or _REASONS.get(status))
        headers = list(headers)
        if not any(key.lower() == "date" for key, _ in headers):
            self.send_header("Date", self.date_time_string())
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()

    def _reset(self) -> None:
        """RST instead of an answer: SO_LINGER on with a zero timeout, then close."""
        self.close_connection = True
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _stall(self, owner: FaultServer, seconds: float) -> None:
        """Hold the connection silently until the client leaves, time runs out, or stop()."""
        self.close_connection = True
        sock = self.connection
        deadline = time.monotonic() + seconds
        while not owner._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                readable, _, _ = select.select([sock], [], [], min(_POLL_SECONDS, remaining))
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    break  # the client closed its end (read timeout)
            except (OSError, ValueError):
                break

    def handle_one_request(self) -> None:
        with contextlib.suppress(ConnectionError):
            super().handle_one_request()


def _style(content_type: str | None, target: str | None, query: str, body: bytes) -> Style:
    """JSON for application/x-amz-json-* (or an X-Amz-Target), query XML for Action=,
    else S3's XML."""
    ctype = (content_type or "").lower()
    if ctype.startswith("application/x-amz-json") or target:
        return "json"
    if _action(query, body if "x-www-form-urlencoded" in ctype else b"") is not None:
        return "query"
    return "s3"


def _action(query: str, body: bytes) -> str | None:
    for source in (query, body.decode("latin-1") if body else ""):
        if "Action=" in source:
            values = parse_qs(source).get("Action")
            if values:
                return values[0]
    return None


def _text(message: str | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.encode("utf-8")


def _xml_escape(data: bytes) -> bytes:
    return data.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;")


def _render(
    fault: Fault, style: Style, request_id: str | None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a scripted answer, in ``style``'s dialect."""
    headers: list[tuple[str, str]] = []
    if request_id is not None:
        if style == "s3":
            headers.append(("x-amz-request-id", request_id))
            headers.append(("x-amz-id-2", f"{request_id}/host"))
        else:
            headers.append(("x-amzn-RequestId", request_id))
    status = fault.http_status or 500
    code = fault.code
    kind = fault.kind
    if kind == "throttle":
        status, code = {
            "json": (400, "ThrottlingException"),
            "query": (400, "Throttling"),
            "s3": (503, "SlowDown"),
        }[style]
    if kind in ("empty", "raw"):
        body = fault.body or b""
    elif kind == "malformed":
        body = (
            b'{"__type": "InternalErr' if style == "json" else b"<ErrorResponse><Error><Code>Intern"
        )
        headers.append(
            ("Content-Type", "application/x-amz-json-1.0" if style == "json" else "text/xml")
        )
    else:
        code = code or "InternalError"
        message = _text(fault.message)
        if style == "json":
            if isinstance(fault.message, str):
                body = json.dumps({"__type": code, "message": fault.message}).encode()
            else:
                # json.dumps cannot carry invalid UTF-8: splice the raw bytes in.
                quoted = message.replace(b"\\", b"/").replace(b'"', b"'")
                body = (
                    b'{"__type": ' + json.dumps(code).encode() + b', "message": "' + quoted + b'"}'
                )
            headers.append(("Content-Type", "application/x-amz-json-1.0"))
            headers.append(("x-amzn-ErrorType", code))
        elif style == "query":
            rid = (request_id or "").encode()
            body = (
                b'<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type><Code>'
                + _xml_escape(code.encode())
                + b"</Code><Message>"
                + _xml_escape(message)
                + b"</Message></Error>"
                + (b"<RequestId>" + rid + b"</RequestId>" if request_id else b"")
                + b"</ErrorResponse>"
            )
            headers.append(("Content-Type", "text/xml"))
        else:
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                + _xml_escape(code.encode())
                + b"</Code><Message>"
                + _xml_escape(message)
                + b"</Message>"
                + (
                    b"<RequestId>"
                    + request_id.encode()
                    + b"</RequestId><HostId>"
                    + request_id.encode()
                    + b"/host</HostId>"
                    if request_id
                    else b""
                )
                + b"</Error>"
            )
            headers.append(("Content-Type", "application/xml"))
    headers.extend(fault.headers)
    return status, headers, body


FaultServer.handler = _Handler
