"""The per-call record: the one thing handlers write and signals read.

Handlers know botocore, signals know their library; a :class:`Call` and its
:class:`Attempt` list are the only shared vocabulary. The record is plain data
and knows no signal: what one signal produces that another needs (the call span's
context, for the logs' ``trace_id`` and the metrics' exemplars) is set on it once, as
data, by the signal that produces it. Everything derived from what happened is
computed here once, so a span, a metric sample and a log event never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import HTTPClientError
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from ._compat.botocore import throttling_error_codes
from ._fork import ForkSafeLock

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

    from ._handlers import Handlers
    from ._log import HandlerErrors
    from ._operation import Operation
    from ._redact import Masks

__all__ = ["WALL_OFFSET_NS", "Attempt", "Call", "StreamHandle", "classify"]

# botocore's own union of throttling codes (standard retry mode); the modeled
# ``retryable.throttling`` trait is added per operation in ``_operation``.
_THROTTLING_CODES: Final = throttling_error_codes()
_THROTTLING_STATUS: Final = 429
# urllib3's own errors reach the application only from a body or event stream read after
# the call returned (a reset or a read timeout mid-stream): botocore wraps the others.
_CONNECTION_ERRORS: Final = (
    HTTPClientError,
    BotocoreConnectionError,
    ConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

#: Offset that maps the monotonic clock to wall-clock nanoseconds, taken once.
WALL_OFFSET_NS: Final = time.time_ns() - time.perf_counter_ns()


def classify(
    status: int | None,
    code: str | None,
    exception: BaseException | None,
    modeled_throttling: frozenset[str] = frozenset(),
) -> str:
    """The outcome word of one attempt or one call (``ok``, ``client_error``,
    ``throttled``, ``server_error``, ``connection_error``, ``error``), decided in one
    place, with botocore's own throttling detection: the same word feeds the span
    status, the ``outcome`` and ``reason`` labels and the log level."""
    if status == _THROTTLING_STATUS or (
        code is not None and (code in _THROTTLING_CODES or code in modeled_throttling)
    ):
        return "throttled"
    if status is None:
        if exception is None:
            return "ok"
        if isinstance(exception, _CONNECTION_ERRORS):
            return "connection_error"
        return "error"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    if status >= 300 or code is not None or exception is not None:
        return "error"
    return "ok"


def _error_type(code: str | None, exception: BaseException | None) -> str | None:
    if code is not None:
        return code
    if exception is not None:
        return type(exception).__name__
    return None


class Attempt:
    """One HTTP attempt of a call: request-created to needs-retry."""

    __slots__ = (
        "end_ns",
        "error_code",
        "error_message",
        "exception",
        "http_status",
        "number",
        "outcome",
        "request_id",
        "sent_ns",
        "start_ns",
    )

    def __init__(self, number: int, start_ns: int) -> None:
        self.number = number
        self.start_ns = start_ns
        self.sent_ns: int | None = None
        self.end_ns: int | None = None
        self.http_status: int | None = None
        self.error_code: str | None = None
        self.error_message: str | None = None
        #: Set while in flight, dropped after call_ended (its traceback holds botocore's
        #: frames, which hold the context holding this record: a reference cycle).
        self.exception: BaseException | None = None
        self.request_id: str | None = None
        self.outcome: str | None = None

    @property
    def signing_ns(self) -> int:
        """Time from request creation to the request going out (signing, credentials)."""
        return 0 if self.sent_ns is None else self.sent_ns - self.start_ns

    @property
    def duration_ns(self) -> int:
        return 0 if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def error_type(self) -> str | None:
        """The AWS error code, else the exception class name."""
        return _error_type(self.error_code, self.exception)

    def __repr__(self) -> str:
        return f"<Attempt {self.number} {self.outcome} status={self.http_status}>"


class Call:
    """One API call, from the client's ``_make_api_call`` (its call frame) to after-call(-error).

    Lives in botocore's per-call ``context`` dict. Survives ``copy.deepcopy``
    (botocore deep-copies that dict for some operations) by being returned as is.
    Never holds the context dict itself, so no reference cycle outlives the call.
    """

    __slots__ = (
        "_masks",
        "attempts",
        "backoff_ns",
        "end_ns",
        "ended",
        "error_code",
        "error_message",
        "exception",
        "expected",
        "extended_request_id",
        "genai",
        "http_method",
        "http_status",
        "invocation_id",
        "notes",
        "op",
        "outcome",
        "owner",
        "params",
        "propagation_skipped",
        "region",
        "request_id",
        "response",
        "serialized_ns",
        "server_address",
        "server_port",
        "signer",
        "signing_ns",
        "span_context",
        "start_ns",
        "started",
        "stream",
        "suppressed",
    )

    def __init__(self, op: Operation, region: str | None, start_ns: int) -> None:
        self.op = op
        self.region = region
        self.start_ns = start_ns
        self.serialized_ns: int | None = None
        #: When the call's result arrived (the first after-call / after-call-error
        #: handler): the user's own handlers that run after it are not call time.
        self.end_ns: int | None = None
        self.attempts: list[Attempt] = []
        self.backoff_ns = 0
        #: Time spent signing, over all attempts (each: request-created to before-send).
        self.signing_ns = 0
        self.started = False
        #: The handlers that started the call: only they end it (their signals hold its span).
        self.owner: Handlers | None = None
        self.ended = False
        self.outcome: str | None = None
        self.expected = False
        self.http_status: int | None = None
        self.error_code: str | None = None
        self.error_message: str | None = None
        #: Set while in flight, dropped after call_ended (its traceback holds botocore's
        #: frames, which hold the context holding this record: a reference cycle).
        self.exception: BaseException | None = None
        self.request_id: str | None = None
        self.extended_request_id: str | None = None
        self.invocation_id: str | None = None
        self.server_address: str | None = None
        self.server_port: int | None = None
        self.http_method: str | None = None
        #: The user's API params while the call is in flight (dropped at the end).
        self.params: dict[str, Any] | None = None
        #: botocore's parsed response from after-call until the call ends (dropped then).
        self.response: dict[str, Any] | None = None
        #: The call span's context, set once by whichever signal starts the span (the
        #: traces signal); None without one. Logs and metrics read their trace id here.
        self.span_context: SpanContext | None = None
        #: Messages of this call sent without trace context (a service limit).
        self.propagation_skipped = 0
        #: Made inside OpenTelemetry's suppress-instrumentation context: no span, no log.
        self.suppressed = False
        #: botocore's RequestSigner (from before-call): its credentials are read, only
        #: when an error text is redacted, to mask them wherever the text quotes them.
        self.signer: Any = None
        #: What a failure's text must not show (``evobs._redact.masks_for``), gathered at
        #: most once per call, with the ``capture_s3_keys`` it was gathered for.
        self._masks: tuple[bool, Masks] | None = None
        #: GenAI facts (``evobs.genai.Facts``: the request, then the response), set by the
        #: operation's hooks for Bedrock Runtime's inference calls; None for every other call.
        self.genai: Any = None
        #: The response stream the call returned, followed after the call ends (a GenAI
        #: stream): signals subscribe to its end. None when the call returned no stream.
        self.stream: StreamHandle | None = None
        #: What the operation's hooks keep from the request for the response
        #: (ReceiveMessage: the attributes evobs asked for that the user did not).
        self.notes: Any = None

    # The record is shared, never copied: botocore deep-copies the context dict.
    def __deepcopy__(self, memo: dict[int, Any]) -> Call:
        return self

    def __copy__(self) -> Call:
        return self

    @property
    def service(self) -> str:
        """botocore's service id exactly as it spells it (``S3``, ``Secrets Manager``)."""
        return self.op.service

    @property
    def operation(self) -> str:
        return self.op.name

    @property
    def name(self) -> str:
        """``{service}.{operation}``: the span name."""
        return self.op.span_name

    @property
    def duration_ns(self) -> int:
        return 0 if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def serialization_ns(self) -> int:
        return 0 if self.serialized_ns is None else self.serialized_ns - self.start_ns

    @property
    def error_type(self) -> str | None:
        """The AWS error code, else the exception class name."""
        return _error_type(self.error_code, self.exception)

    def __repr__(self) -> str:
        return f"<Call {self.op.span_name} {self.outcome} attempts={len(self.attempts)}>"


class StreamHandle:
    """The end of a response stream that outlives its call (ConverseStream's events).

    The call ends when botocore returns; the stream is read afterwards, maybe on another
    thread. Plain data for the signals: each subscribes a callback at ``call_ended``,
    and every callback is called exactly once with the stream's summary (an
    ``evobs.genai.StreamSummary``), immediately if the stream already ended. A failing
    callback is counted in ``evobs_handler_errors_total`` and costs only itself.
    """

    __slots__ = ("_callbacks", "_ended", "_errors", "_lock", "_summary")

    def __init__(self, errors: HandlerErrors | None = None) -> None:
        self._errors = errors
        self._lock = ForkSafeLock()
        self._callbacks: list[Callable[[Any], None]] = []
        self._ended = False
        self._summary: Any = None

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def summary(self) -> Any:
        """The summary once the stream ended, else None."""
        return self._summary

    def subscribe(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(summary)`` once, when the stream ends (now if it has)."""
        with self._lock:
            if not self._ended:
                self._callbacks.append(callback)
                return
        self._run(callback, self._summary)

    def end(self, summary: Any) -> None:
        """The stream ended: every callback runs once (later calls do nothing)."""
        with self._lock:
            if self._ended:
                return
            self._summary = summary
            self._ended = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._run(callback, summary)

    def _run(self, callback: Callable[[Any], None], summary: Any) -> None:
        try:
            callback(summary)
        except Exception as exc:
            if self._errors is not None:
                self._errors.record("stream-end", exc)

    def __repr__(self) -> str:
        return f"<StreamHandle ended={self._ended} subscribers={len(self._callbacks)}>"
