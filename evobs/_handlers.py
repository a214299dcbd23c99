"""The handlers: one small function per botocore event, feeding one Call record.

A call starts in the client's ``_make_api_call`` (its :class:`CallFrame`, opened by the
base class evobs adds: ``_client``), which has the operation and the user's params:
no provide-client-params handler is needed. Every per-call handler is registered first
on ``<event>.*.*`` (see ``_install``), catches its own exceptions, and returns None:
returning a value from before-call, before-send or needs-retry would change the call.
The call's result is recorded by the first after-call / after-call-error handler; the
call ends when the frame closes (``_make_api_call`` returns or raises), after every
handler of those events: the user's own after-call handlers see the call span as
current and recording (DESIGN 2), and no handler of evobs's runs last on them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from threading import get_ident
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context

from ._call import Attempt, Call, classify
from ._compat.botocore import PREPARED_REQUEST_HAS_CONTEXT
from ._compat.otel_api import instrumentation_suppressed
from ._fork import after_fork_in_child
from ._lazy import lazy_names
from ._operation import Operation, operation_for
from .signals import ClientCreated, ResourceCreated, receivers

if TYPE_CHECKING:
    from ._log import HandlerErrors
    from ._options import Options
    from ._redact import safe_error_code
    from .signals import Signal
else:
    # Imported by the first error code read from the wire: a cold start does not pay.
    (safe_error_code,) = lazy_names(globals(), "evobs._redact", "safe_error_code")

__all__ = ["CALL_KEY", "CallFrame", "Fanout", "Handlers"]

#: The key of the Call record in botocore's per-call context dict.
CALL_KEY: Final = "evobs.call"

# Before botocore 1.43.68 before-send has no ``request.context``: the attempt in
# progress is correlated through a context variable (per thread, per asyncio task).
_CURRENT_ATTEMPT: Final[contextvars.ContextVar[tuple[Call, Attempt] | None]] = (
    contextvars.ContextVar("evobs_current_attempt", default=None)
)

#: Error codes and request ids longer than this (garbage from the wire) are
#: truncated; the metrics signal counts codes over its own, shorter, limit as ``other``.
_MAX_WIRE_TEXT: Final = 256

_HOST_CACHE: Final[dict[str, tuple[str, int | None]]] = {}
_HOST_CACHE_MAX: Final = 1024


def _host_port(url: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of an endpoint URL, cached per scheme+authority."""
    start = url.find("://")
    if start < 0:
        return None
    end = url.find("/", start + 3)
    authority = url[: end if end >= 0 else len(url)]
    found = _HOST_CACHE.get(authority)
    if found is None:
        scheme, _, netloc = authority.partition("://")
        netloc = netloc.rpartition("@")[2]
        host, port = netloc, None
        if netloc.startswith("["):
            close = netloc.find("]")
            host = netloc[1:close]
            rest = netloc[close + 1 :]
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif ":" in netloc:
            name, _, digits = netloc.rpartition(":")
            if digits.isdigit():
                host, port = name, int(digits)
        if port is None:
            port = 443 if scheme == "https" else 80 if scheme == "http" else None
        found = (host, port)
        if len(_HOST_CACHE) < _HOST_CACHE_MAX:
            _HOST_CACHE[authority] = found
    return found


class Fanout:
    """Each transition's receivers, bound once: a signal that lacks a method is not called,
    and each receiver is called separately, so one broken signal costs only itself."""

    __slots__ = (
        "attempt_ended",
        "attempt_started",
        "call_ended",
        "call_forgotten",
        "call_started",
        "client_created",
        "resource_created",
        "signals",
    )

    def __init__(self, signals: tuple[Signal, ...]) -> None:
        self.signals = signals
        self.call_started = receivers(signals, "call_started")
        self.attempt_started = receivers(signals, "attempt_started")
        self.attempt_ended = receivers(signals, "attempt_ended")
        self.call_ended = receivers(signals, "call_ended")
        self.call_forgotten = receivers(signals, "call_forgotten")
        self.client_created = receivers(signals, "client_created")
        self.resource_created = receivers(signals, "resource_created")


class CallFrame:
    """The calls opened inside one ``_make_api_call`` of an instrumented client (whose
    injected base class opens the frame): :meth:`close` ends them once botocore is
    done with them, whatever its events left open (the safety net of DESIGN 2). A
    transfer's carrier clone also gives the context its calls run in (attached here,
    detached at close, LIFO).
    Live frames are known by thread, so a forked child forgets the calls of threads it
    does not have."""

    __slots__ = ("__weakref__", "calls", "handlers", "parent_token", "pending", "token")

    def __init__(self, handlers: Handlers, parent: otel_context.Context | None = None) -> None:
        self.handlers = handlers
        self.calls: list[Call] = []
        #: The call this frame opened, until its before-call (or after-call) adopts it.
        self.pending: Call | None = None
        self.parent_token = None if parent is None else otel_context.attach(parent)
        self.token = _CALL_FRAME.set(self)
        _LIVE_FRAMES[self] = get_ident()

    def close(self, error: BaseException | None) -> None:
        try:
            _LIVE_FRAMES.pop(self, None)
            if self.calls:
                self.handlers.end_calls(self.calls, error)
        finally:
            _CALL_FRAME.reset(self.token)
            if self.parent_token is not None:
                otel_context.detach(self.parent_token)


#: Every open frame, by the thread it runs on.
_LIVE_FRAMES: Final[dict[CallFrame, int]] = {}


@after_fork_in_child
def _forget_other_threads() -> None:
    """In a forked child: the calls other threads had in flight will never end here, so
    their signals forget them (in-flight gauges back down, no span ended for them)."""
    me = get_ident()
    for frame, thread in list(_LIVE_FRAMES.items()):
        if thread == me:
            continue
        _LIVE_FRAMES.pop(frame, None)
        for call in frame.calls:
            owner = call.owner
            if not call.ended and owner is not None:
                owner.forget(call)


_CALL_FRAME: Final[contextvars.ContextVar[CallFrame | None]] = contextvars.ContextVar(
    "evobs_call_frame", default=None
)


class Handlers:
    """The handlers of one instrumentation, bound to its options and signals."""

    __slots__ = ("enabled", "errors", "fanout", "options", "request_header")

    def __init__(
        self,
        options: Options,
        fanout: Fanout,
        errors: HandlerErrors,
        request_header: Callable[[Any], None] | None = None,
    ) -> None:
        self.options = options
        self.fanout = fanout
        self.errors = errors
        #: Writes ``X-Amzn-Trace-Id`` into each attempt's headers (None: off).
        self.request_header = request_header
        #: Shared with every copy of the handlers (clients copy the session's):
        #: ``uninstrument`` clears it, and nothing is recorded after that.
        self.enabled = True

    # -- transitions ----------------------------------------------------------------

    def _deliver(self, transition: str, fns: tuple[Callable[..., None], ...], *args: Any) -> None:
        for fn in fns:
            try:
                fn(*args)
            except Exception as exc:
                self.errors.record(transition, exc)

    def _new_call(self, model: Any, context: dict[str, Any], now: int) -> Call:
        call = Call(operation_for(model), context.get("client_region"), now)
        call.suppressed = instrumentation_suppressed()
        context[CALL_KEY] = call
        return call

    def _start(self, call: Call) -> None:
        frame = _CALL_FRAME.get()
        if frame is None:
            # No safety net around this call (it entered a client before evobs's base
            # class was in place, e.g. a client instrumented while in use): a span
            # opened here could outlive the call, so the call is not recorded.
            return
        call.started = True
        call.owner = self
        frame.calls.append(call)
        for fn in self.fanout.call_started:  # _deliver, inlined: every call passes here
            try:
                fn(call)
            except Exception as exc:
                self.errors.record("call_started", exc)

    def _end(self, call: Call) -> None:
        """The call is over: decide its outcome once, close its last attempt, tell the
        signals, and let go of what it referenced."""
        call.ended = True
        if not call.started:  # never recorded (see ``_start``): nothing to close
            _release(call)
            return
        if call.end_ns is None:
            call.end_ns = perf_counter_ns()
        outcome = call.outcome = classify(
            call.http_status, call.error_code, call.exception, call.op.modeled_throttling
        )
        try:
            self._close_last_attempt(call, outcome)
            if outcome != "ok" and self.options.expected_errors:
                call.expected = self._is_expected(call)
            for fn in self.fanout.call_ended:  # _deliver, inlined: every call passes here
                try:
                    fn(call)
                except Exception as exc:
                    self.errors.record("call_ended", exc)
        finally:
            _release(call)

    def _close_last_attempt(self, call: Call, outcome: str) -> None:
        """A success (needs-retry leaves those to the call's end), or an attempt whose
        needs-retry never ran, ends with the call and carries the call's response."""
        if not call.attempts:
            return
        last = call.attempts[-1]
        if last.end_ns is not None:
            return
        last.end_ns = call.end_ns
        last.http_status = call.http_status
        last.error_code = call.error_code
        last.error_message = call.error_message
        last.exception = call.exception
        last.request_id = call.request_id
        last.outcome = outcome
        if self.fanout.attempt_ended:
            self._deliver("attempt_ended", self.fanout.attempt_ended, call, last)

    def _is_expected(self, call: Call) -> bool:
        codes = [str(call.http_status)] if call.http_status is not None else []
        error_type = call.error_type
        if error_type is not None:
            codes.append(error_type)
        return self.options.is_expected(call.op.service, call.op.name, codes)

    # -- the per-call events ------------------------------------------------------

    def open_frame(
        self,
        op: Operation | None,
        region: str | None,
        params: Any,
        parent: otel_context.Context | None = None,
    ) -> CallFrame:
        """The frame of one ``_make_api_call`` (see ``_client``), and the call it makes:
        its start, its params as the user passed them, and for operations that need it
        its span (messaging) or the request's facts (GenAI) before botocore sees the
        params. No provide-client-params handler: one event dispatch less per call."""
        frame = CallFrame(self, parent)
        if op is None:
            return frame
        try:
            call = frame.pending = Call(op, region, perf_counter_ns())
            call.suppressed = instrumentation_suppressed()
            if isinstance(params, dict):
                call.params = params
            if op.early_span:
                self._start(call)
            extractor = op.extractor
            if extractor is not None and call.params is not None:
                if extractor.edit is not None and self.options.propagate_messages:
                    # Messaging propagation (a documented feature): edits the call's kwargs
                    # dict, replacing nested values with copies, never the user's objects.
                    extractor.edit(call, call.params)
                elif extractor.start is not None:
                    # GenAI facts, before the span starts: its name depends on them.
                    extractor.start(call, call.params, self.options)
        except Exception as exc:
            self.errors.record("call-start", exc)
        return frame

    def _adopt(self, model: Any, context: dict[str, Any], now: int) -> Call | None:
        """The call of a before-call (or after-call) that finds none in its context: the
        one its client's frame opened, else a new one (no frame: a client instrumented
        mid-call, see ``_start``); None for what is not a call (a presigned URL)."""
        if not self.enabled or context.get("is_presign_request"):
            return None
        frame = _CALL_FRAME.get()
        call = None if frame is None else frame.pending
        if frame is None or call is None:
            return self._new_call(model, context, now)
        frame.pending = None  # once: the frame makes one call
        context[CALL_KEY] = call
        return call

    def before_call(
        self,
        model: Any = None,
        params: Any = None,
        context: Any = None,
        request_signer: Any = None,
        **_: Any,
    ) -> None:
        try:
            if context is None:
                return
            now = perf_counter_ns()
            call = context.get(CALL_KEY) or self._adopt(model, context, now)
            if call is None:
                return
            call.serialized_ns = now
            call.signer = request_signer
            if isinstance(params, dict):
                url = params.get("url")
                if isinstance(url, str):
                    host_port = _host_port(url)
                    if host_port is not None:
                        call.server_address, call.server_port = host_port
                call.http_method = params.get("method")
            if not call.started:
                self._start(call)
        except Exception as exc:
            self.errors.record("before-call", exc)

    def request_created(self, request: Any = None, **_: Any) -> None:
        try:
            context = getattr(request, "context", None)
            call = context.get(CALL_KEY) if context else None
            if call is None or call.ended or not call.started:
                return
            now = perf_counter_ns()
            attempts = call.attempts
            if attempts:
                previous = attempts[-1]
                if previous.end_ns is None:
                    previous.end_ns = now
                    previous.outcome = previous.outcome or "error"
                call.backoff_ns += now - previous.end_ns
            attempt = Attempt(len(attempts) + 1, now)
            attempts.append(attempt)
            if not PREPARED_REQUEST_HAS_CONTEXT:
                _CURRENT_ATTEMPT.set((call, attempt))
            if self.fanout.attempt_started:
                for fn in self.fanout.attempt_started:  # _deliver, inlined: every attempt
                    try:
                        fn(call, attempt)
                    except Exception as exc:
                        self.errors.record("attempt_started", exc)
        except Exception as exc:
            self.errors.record("request-created", exc)

    def before_send(self, request: Any = None, **_: Any) -> None:
        try:
            if PREPARED_REQUEST_HAS_CONTEXT:
                context = getattr(request, "context", None)
                call = context.get(CALL_KEY) if context else None
                if call is None or not call.attempts:
                    return
                attempt = call.attempts[-1]
            else:
                current = _CURRENT_ATTEMPT.get()
                if current is None:
                    return
                call, attempt = current
            if attempt.sent_ns is None:
                sent = attempt.sent_ns = perf_counter_ns()
                call.signing_ns += sent - attempt.start_ns
            header = self.request_header
            if header is not None and call.span_context is not None and not call.ended:
                header(request.headers)  # after signing: never signed
        except Exception as exc:
            self.errors.record("before-send", exc)

    def needs_retry(
        self,
        response: Any = None,
        caught_exception: Any = None,
        request_dict: Any = None,
        **_: Any,
    ) -> None:
        try:
            if response is not None:
                http, parsed = response
                if http.status_code < 300 and not (isinstance(parsed, dict) and "Error" in parsed):
                    # A success (the common case): the call's end, which comes next, closes
                    # this attempt with the same status and request id (``_end``).
                    return
            context = request_dict.get("context") if isinstance(request_dict, dict) else None
            call = context.get(CALL_KEY) if context else None
            if call is None or not call.attempts:
                return
            attempt = call.attempts[-1]
            if attempt.end_ns is not None:
                return
            attempt.end_ns = perf_counter_ns()
            if response is not None:
                http, parsed = response
                attempt.http_status = http.status_code
                if isinstance(parsed, dict):
                    meta = _read_parsed(attempt, parsed)
                    # S3's "200 + <Error>" is corrected to 500 in the parsed metadata;
                    # the HTTP object follows only in a needs-retry handler after ours.
                    status = meta.get("HTTPStatusCode") if meta is not None else None
                    if isinstance(status, int):
                        attempt.http_status = status
            else:
                attempt.exception = caught_exception
            attempt.outcome = classify(
                attempt.http_status,
                attempt.error_code,
                attempt.exception,
                call.op.modeled_throttling,
            )
            if self.fanout.attempt_ended:
                self._deliver("attempt_ended", self.fanout.attempt_ended, call, attempt)
        except Exception as exc:
            self.errors.record("needs-retry", exc)

    def after_call(
        self,
        http_response: Any = None,
        parsed: Any = None,
        model: Any = None,
        context: Any = None,
        **_: Any,
    ) -> None:
        """Records the result (first of every after-call handler); the call frame ends it."""
        try:
            if context is None:
                return
            now = perf_counter_ns()
            call = context.get(CALL_KEY)
            if call is None:
                # e.g. botocore's Stubber answering before a late-registered before-call.
                if model is None:
                    return
                call = self._adopt(model, context, now)
                if call is None:
                    return
            if call.ended or call.end_ns is not None:
                return
            if not call.started:
                self._start(call)
            call.end_ns = now
            call.http_status = getattr(http_response, "status_code", None)
            if isinstance(parsed, dict):
                call.response = parsed
                meta = _read_parsed(call, parsed)
                if meta is not None:
                    host_id = meta.get("HostId")
                    call.extended_request_id = str(host_id)[:_MAX_WIRE_TEXT] if host_id else None
                extractor = call.op.extractor
                if extractor is not None:  # before any user handler sees the response
                    if extractor.finish is not None:
                        extractor.finish(parsed, call)
                    elif extractor.result is not None:
                        extractor.result(call, parsed, self.errors)
            _read_invocation(call, context)
        except Exception as exc:
            self.errors.record("after-call", exc)

    def after_call_error(self, exception: Any = None, context: Any = None, **_: Any) -> None:
        """Records the error (first of every after-call-error handler)."""
        try:
            if context is None:
                return
            call = context.get(CALL_KEY)
            if call is None or call.ended or call.end_ns is not None:
                return
            call.end_ns = perf_counter_ns()
            if not call.started:
                self._start(call)
            if isinstance(exception, BaseException):
                call.exception = exception
            _read_invocation(call, context)
        except Exception as exc:
            self.errors.record("after-call-error", exc)

    def forget(self, call: Call) -> None:
        """Drop a call that will never end (its thread is gone: a forked child)."""
        call.ended = True
        try:
            self._deliver("call_forgotten", self.fanout.call_forgotten, call)
        finally:
            _release(call)

    # -- the safety net -----------------------------------------------------------

    def end_calls(self, calls: list[Call], error: BaseException | None) -> None:
        """End the calls of a ``_make_api_call`` that returned or raised (``error``),
        innermost first. A call with no result recorded (a path with no after-call
        event) failed with ``error``; an error raised after the result was recorded (a
        user's after-call handler) is the application's: the call keeps its result."""
        for call in reversed(calls):
            if call.ended:
                continue
            try:
                if call.end_ns is None:
                    if call.exception is None:
                        call.exception = error
                    event = "abandoned-call"
                else:
                    event = "call-done"
                (call.owner or self)._end(call)
            except Exception as exc:
                self.errors.record(event, exc)

    # -- class creation -----------------------------------------------------------

    def client_created(self, service: str, region: str | None, duration_ns: int) -> None:
        try:
            if self.fanout.client_created:
                event = ClientCreated(service, region, duration_ns)
                self._deliver("client_created", self.fanout.client_created, event)
        except Exception as exc:
            self.errors.record("creating-client-class", exc)

    def resource_created(self, event_name: str = "", service_context: Any = None, **_: Any) -> None:
        try:
            if not self.enabled or not self.fanout.resource_created:
                return
            # creating-resource-class.<boto3 service name>.<Resource>
            rest = event_name.partition(".")[2]
            service, _sep, resource = rest.partition(".")
            model = getattr(service_context, "service_model", None)
            if model is not None:
                service = str(model.service_id)  # the same spelling as everywhere else
            event = ResourceCreated(service, resource or "ServiceResource")
            self._deliver("resource_created", self.fanout.resource_created, event)
        except Exception as exc:
            self.errors.record("creating-resource-class", exc)


def _release(call: Call) -> None:
    """Done with what the call referenced: params, the response, and exceptions whose
    tracebacks hold botocore's frames (and so the context holding this record), which
    would keep the whole call alive until a GC cycle."""
    call.params = None
    call.response = None
    call.exception = None
    call._masks = None
    for attempt in call.attempts:
        attempt.exception = None


def _read_parsed(target: Attempt | Call, parsed: dict[str, Any]) -> dict[str, Any] | None:
    """Error code/message and request id from a parsed response; never touches bodies."""
    meta = parsed.get("ResponseMetadata")
    if isinstance(meta, dict):
        request_id = meta.get("RequestId")
        target.request_id = str(request_id)[:_MAX_WIRE_TEXT] if request_id else None
    else:
        meta = None
    error = parsed.get("Error")
    if isinstance(error, dict) and error:
        code = error.get("QueryErrorCode") or error.get("Code")
        # A code comes from the wire: credentials masked and bounded, once, for every signal.
        target.error_code = safe_error_code(code) if code not in (None, "") else None
        message = error.get("Message")
        target.error_message = str(message) if message not in (None, "") else None
    return meta


def _read_invocation(call: Call, context: dict[str, Any]) -> None:
    retries = context.get("retries")
    if isinstance(retries, dict):
        invocation = retries.get("invocation-id")
        if invocation is not None:
            call.invocation_id = str(invocation)
