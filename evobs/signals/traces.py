"""The traces signal: one OpenTelemetry span per call, attempt spans when retried.

The call span is back-dated to provide-client-params and made current from
before-call until the call ends (after the user's own after-call handlers), so
nested calls (an AssumeRole refresh), HTTP-level instrumentation and user handlers
see it as their parent. Attempt spans and retry events are created lazily, at the
end of calls that took more than one attempt: the happy path pays for one span.

With the SDK's own tracer, where ``evobs._compat.otel_sdk`` proves it, spans take the
cheap path of ``_spans``; any other tracer, and this one after a failure of that path,
is used through the public API. Both go through the same code here.
"""

from __future__ import annotations

import sys
from contextvars import Token
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._call import WALL_OFFSET_NS
from .._compat.otel_api import attach_span, current_context, detach_context
from .._lazy import lazy_names
from .._version import __version__
from ..services import peer_attributes, rpc_attributes
from . import SignalBase

if TYPE_CHECKING:
    from .._call import Attempt, Call
    from .._log import HandlerErrors
    from .._operation import Operation
    from .._options import Options
    from .._redact import Masks, exception_event, exception_message, masks_for, render_params
    from ._genai_spans import follow_stream, render_call
    from ._spans import SdkPipeline, SdkSpan
else:
    # GenAI spans (and ``evobs.genai``), imported by the first Bedrock Runtime call.
    follow_stream, render_call = lazy_names(
        globals(), "evobs.signals._genai_spans", "follow_stream", "render_call"
    )
    # The SDK's span path, imported for a tracer of the SDK only: a tracer of no SDK (the
    # API's no-op) does not import the SDK (~70 M instructions) for nothing.
    SdkPipeline, SdkSpan = lazy_names(globals(), "evobs.signals._spans", "SdkPipeline", "SdkSpan")
    # Imported by the first failed call (or captured params): a cold start does not pay.
    exception_event, exception_message, masks_for, render_params = lazy_names(
        globals(),
        "evobs._redact",
        "exception_event",
        "exception_message",
        "masks_for",
        "render_params",
    )

__all__ = ["PROPAGATION_SKIPPED", "TracesSignal"]

#: Span attribute: how many messages of the call were sent without trace context.
PROPAGATION_SKIPPED: Final = "aws.sdk.propagation.skipped"

_NS_PER_MS: Final = 1_000_000
#: Attempt error statuses kept per ``Masks`` (``_http_error_status``), at most.
_STATUSES_PER_MASKS: Final = 64


class TracesSignal(SignalBase):
    """Renders call records as OpenTelemetry spans."""

    __slots__ = ("_attrs", "_errors", "_open", "_options", "_pipeline", "_tracer")

    name = "traces"

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        options: Options,
        errors: HandlerErrors,
    ) -> None:
        self._tracer = trace.get_tracer("evobs", __version__, tracer_provider=tracer_provider)
        self._options = options
        self._errors = errors
        #: The cheap span path, decided once for this tracer; None: the public API. With
        #: the SDK's trace module not even loaded, the tracer cannot be the SDK's.
        sdk_loaded = "opentelemetry.sdk.trace" in sys.modules
        self._pipeline = (
            SdkPipeline.of(self._tracer, self._fast_path_failed)
            if options.fast_spans and sdk_loaded
            else None
        )
        # Per-operation constant attributes and span kind, built once.
        self._attrs: dict[Operation, tuple[dict[str, Any], SpanKind]] = {}
        #: The spans of calls in flight, with the token of their context's attach: the
        #: record carries only their context.
        self._open: dict[Call, tuple[Any, Token[otel_context.Context]]] = {}

    @property
    def fast_spans(self) -> bool:
        """Whether spans take the cheap path (``docs/telemetry.md``)."""
        return self._pipeline is not None

    def _fast_path_failed(self, exc: BaseException) -> None:
        """The cheap path failed at run time: this tracer takes the public API for good,
        and the switch is counted and logged once (``evobs_handler_errors_total``)."""
        self._pipeline = None
        self._errors.record("fast-spans", exc)

    def _static(self, op: Operation) -> tuple[dict[str, Any], SpanKind]:
        """Built at an operation's first call (``_attrs`` is read by ``call_started``)."""
        # OTEL_SEMCONV_STABILITY_OPT_IN, and the peer service when asked for.
        attributes = rpc_attributes(op.service, op.name, self._options.peer_service)
        if op.extractor is not None:
            attributes.update(op.extractor.static)
        static = self._attrs[op] = (attributes, op.span_kind)
        return static

    def _start_span(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
        context: otel_context.Context | None = None,
    ) -> Any:
        pipeline = self._pipeline
        if pipeline is not None:
            try:
                return pipeline.start(name, kind, attributes, start_time, context)
            except Exception as exc:
                pipeline.failed(exc)
        return self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )

    # -- transitions ----------------------------------------------------------------

    def call_started(self, call: Call) -> None:
        if call.suppressed:
            return
        attrs, kind = self._attrs.get(call.op) or self._static(call.op)
        attributes = attrs.copy()
        if call.region is not None:
            attributes["cloud.region"] = call.region
        if call.server_address is not None:
            attributes["server.address"] = call.server_address
            attributes["server.port"] = call.server_port
        if call.http_method is not None:
            attributes["http.request.method"] = call.http_method
        name = call.op.span_name
        if call.genai is not None:  # the conventions' name and attributes, for the sampler too
            name = call.genai.request.span_name or name
            attributes.update(call.genai.request.attributes)
        # Read once: the span's parent, and what it becomes current in.
        current = current_context()
        span, api_request = self._open_call_span(call, name, kind, attributes, current)
        # Registered before anything else can fail: a started span always ends.
        token = attach_span(span, current)
        self._open[call] = (span, token)
        try:
            call.span_context = span.get_span_context()
        except Exception:
            call.span_context = None  # a broken tracer costs only the traces
        if api_request:
            extra: dict[str, Any] = {}
            call.op.extractor.request(call.params, self._options, extra)  # type: ignore[union-attr,arg-type,misc]
            span.set_attributes(extra)
        hook = self._options.request_hook
        if hook is not None:
            self._call_hook("request_hook", hook, span, call)

    def _open_call_span(
        self,
        call: Call,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        context: otel_context.Context,
    ) -> tuple[Any, bool]:
        """The call's span, and whether its request attributes are still to be set
        (the public API path sets them once the span exists and records)."""
        start_time = call.start_ns + WALL_OFFSET_NS
        extractor = call.op.extractor
        request = extractor.request if extractor is not None else None
        params = call.params if request is not None else None
        pipeline = self._pipeline
        if pipeline is not None:
            try:
                sampled = pipeline.sample(name, kind, attributes, context)
                if params is not None and sampled[2]:  # recording: sampled spans only
                    request(params, self._options, sampled[3])  # type: ignore[misc]
                return pipeline.open(name, kind, start_time, sampled, context), False
            except Exception as exc:
                pipeline.failed(exc)
        span = self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )
        return span, params is not None and span.is_recording()

    def call_ended(self, call: Call) -> None:
        opened = self._open.pop(call, None)
        if opened is None:
            return
        span, token = opened
        try:
            if span.is_recording():
                self._annotate(span, call)
            hook = self._options.response_hook
            if hook is not None:
                result = call.response if call.exception is None else call.exception
                self._call_hook("response_hook", hook, span, call, result)
        finally:
            try:
                # A returned stream keeps the span open until it ends (``_genai``); the
                # context is restored now all the same: the call has returned.
                if call.stream is None or not follow_stream(span, call, self._errors):
                    end_time = (call.end_ns or call.start_ns) + WALL_OFFSET_NS
                    if type(span) is SdkSpan:
                        span.finish(end_time)  # what ``end`` does, one call less
                    else:
                        span.end(end_time=end_time)
            finally:
                detach_context(token)

    def call_forgotten(self, call: Call) -> None:
        """A call of a thread that is gone (a forked child): its span is the parent
        process's, never ended here, and its context token belonged to that thread."""
        self._open.pop(call, None)

    def _call_hook(self, name: str, hook: Any, *args: Any) -> None:
        """A user hook: its failure is counted and logged once, never raised."""
        try:
            hook(*args)
        except Exception as exc:
            self._errors.record(name, exc)

    # -- rendering ----------------------------------------------------------------------

    def _annotate(self, span: Any, call: Call) -> None:
        attempts = call.attempts
        if len(attempts) > 1:
            _retry_events(span, attempts)
        # Straight into evobs's own span while nothing else wrote to it; else a dict to set.
        own = span.writable_attributes() if type(span) is SdkSpan else None
        attributes: dict[str, Any] = own if own is not None else {}
        attributes["aws.sdk.attempts"] = len(attempts)
        attributes["aws.sdk.retry_backoff_ms"] = call.backoff_ns / _NS_PER_MS
        attributes["aws.sdk.signing_ms"] = call.signing_ns / _NS_PER_MS
        attributes["aws.sdk.serialization_ms"] = call.serialization_ns / _NS_PER_MS
        if call.http_status is not None:
            attributes["http.response.status_code"] = call.http_status
        if call.request_id:
            attributes["aws.request_id"] = call.request_id
        if call.extended_request_id:
            attributes["aws.extended_request_id"] = call.extended_request_id
        if call.invocation_id:
            attributes["aws.sdk.invocation_id"] = call.invocation_id
        if call.propagation_skipped:
            attributes[PROPAGATION_SKIPPED] = call.propagation_skipped
        outcome = call.outcome
        if outcome != "ok":
            error_type = call.error_type or outcome or "error"
            attributes["error.type"] = error_type
            attributes["aws.sdk.outcome"] = outcome
            if not call.expected:
                # An expected error is control flow: no exception event, no error status;
                # ``error.type`` still says what it was.
                event, description = exception_event(
                    call.exception, call, capture_s3_keys=self._options.capture_s3_keys
                )
                timestamp = (call.end_ns or call.start_ns) + WALL_OFFSET_NS
                _add_event(span, "exception", event, timestamp)
                span.set_status(Status(StatusCode.ERROR, description))
        if self._options.capture_params and call.params is not None:
            attributes["aws.request.params"] = render_params(
                call.op.model, call.params, capture_s3_keys=self._options.capture_s3_keys
            )
        if call.op.early_span and call.server_address is not None:
            # Messaging sends open their span before the endpoint is known.
            attributes["server.address"] = call.server_address
            attributes["server.port"] = call.server_port
            if call.http_method is not None:
                attributes["http.request.method"] = call.http_method
        extractor = call.op.extractor
        if extractor is not None:
            if call.response is not None and extractor.response is not None:
                extractor.response(call.response, attributes)
                if extractor.links is not None:
                    # The producers' contexts are known only now: links added after start.
                    for link in extractor.links(call.response):
                        span.add_link(link)
            if call.genai is not None:
                render_call(span, call, attributes)
        if own is None:
            _set_attributes(span, attributes)
        if len(attempts) > 1:
            self._attempt_spans(span, call)

    def _attempt_spans(self, parent: Any, call: Call) -> None:
        name = f"{call.op.span_name} attempt"
        end_default = call.end_ns or call.start_ns
        masks = None
        pipeline = self._pipeline
        # Under the default samplers an attempt is recording as its (recording) parent:
        # each is built whole, already over (``SdkPipeline.ended_child``), and the
        # context the parent is current in is built only if a processor asks for it.
        whole = pipeline is not None and type(parent) is SdkSpan
        whole = whole and pipeline.children_follow_parent  # type: ignore[union-attr]
        parent_context: otel_context.Context | None = None
        # The attempts are the leaves a viewer labels with the peer (when it is on).
        peer = peer_attributes(call.op.service) if self._options.peer_service else None
        last = call.attempts[-1]
        for attempt in call.attempts:
            number = attempt.number
            attributes: dict[str, Any] = {
                "http.request.resend_count": number - 1,
                "aws.sdk.attempt": number,
                "aws.sdk.signing_ms": attempt.signing_ns / _NS_PER_MS,
            }
            if peer is not None:
                attributes.update(peer)
            if attempt.http_status is not None:
                attributes["http.response.status_code"] = attempt.http_status
            if attempt.request_id:
                attributes["aws.request_id"] = attempt.request_id
            outcome = attempt.outcome
            failed = outcome is not None and outcome != "ok"
            error_type = (attempt.error_type or outcome or "error") if failed else ""
            if failed:
                attributes["error.type"] = error_type
                attributes["aws.sdk.outcome"] = outcome
            start_time = attempt.start_ns + WALL_OFFSET_NS
            end_time = (attempt.end_ns or end_default) + WALL_OFFSET_NS
            # The last attempt carries the call's result: an expected error is not a failure.
            if failed and call.expected and attempt is last:
                failed = False
            child = None
            if not whole:
                if parent_context is None:
                    parent_context = trace.set_span_in_context(parent)
                child = self._child_span(name, attributes, start_time, parent, parent_context)
                failed = failed and child.is_recording()  # nothing to render for a dropped one
            status = event = None
            if failed:
                raised = attempt.exception
                message = attempt.error_message
                if message is None:
                    message = "" if raised is None else exception_message(raised)
                if masks is None:  # once per call
                    masks = masks_for(call, capture_s3_keys=self._options.capture_s3_keys)
                if raised is None:  # an HTTP error response: in the status, no event
                    status = _http_error_status(call, error_type, message, masks)
                else:  # a reset connection, a timeout: the exception, as it was raised
                    event, description = exception_event(
                        raised, call, code=error_type, message=message, masks=masks
                    )
                    status = Status(StatusCode.ERROR, description)
            if whole:
                try:
                    pipeline.ended_child(  # type: ignore[union-attr]
                        name,
                        SpanKind.CLIENT,
                        attributes,
                        start_time,
                        end_time,
                        parent,
                        parent_context,
                        status,
                        event,
                    )
                    continue
                except Exception as exc:
                    pipeline.failed(exc)  # type: ignore[union-attr]
                    whole = False
                    parent_context = trace.set_span_in_context(parent)
                child = self._start_span(
                    name, SpanKind.CLIENT, attributes, start_time, parent_context
                )
            if event is not None:
                _add_event(child, "exception", event, end_time)
            if status is not None:
                child.set_status(status)  # type: ignore[union-attr]
            if type(child) is SdkSpan:
                child.finish(end_time)  # what ``end`` does, one call less per attempt
            else:
                child.end(end_time=end_time)  # type: ignore[union-attr]

    def _child_span(
        self,
        name: str,
        attributes: dict[str, Any],
        start_time: int,
        parent: Any,
        parent_context: otel_context.Context,
    ) -> Any:
        """An attempt's span, started: through evobs's pipeline under one of its own spans
        (a sampler of the user's decides), else the public API."""
        pipeline = self._pipeline
        if pipeline is not None and type(parent) is SdkSpan:
            try:
                return pipeline.child(
                    name, SpanKind.CLIENT, attributes, start_time, parent, parent_context
                )
            except Exception as exc:
                pipeline.failed(exc)
        return self._start_span(name, SpanKind.CLIENT, attributes, start_time, parent_context)


def _http_error_status(call: Call, code: str, message: str, masks: Masks) -> Status:
    """An attempt's error status for an HTTP error response. Retries repeat one error,
    call after call, and its redacted text depends only on the masks (one object per
    client, operation and keys), the code and the message: built once per masks."""
    key = (code, message)
    statuses = masks.statuses
    status: Status | None = statuses.get(key)
    if status is None:
        _, description = exception_event(None, call, code=code, message=message, masks=masks)
        if len(statuses) >= _STATUSES_PER_MASKS:
            statuses.clear()
        status = statuses[key] = Status(StatusCode.ERROR, description)
    return status


def _set_attributes(span: Any, attributes: dict[str, Any]) -> None:
    """evobs's own attributes: recorded as they are on its SDK spans, through the API otherwise."""
    if type(span) is SdkSpan:
        span.record(attributes)
    else:
        span.set_attributes(attributes)


def _add_event(span: Any, name: str, attributes: dict[str, Any], timestamp: int) -> None:
    if type(span) is SdkSpan:
        span.record_event(name, attributes, timestamp)
    else:
        span.add_event(name, attributes, timestamp=timestamp)


def _retry_events(span: Any, attempts: list[Attempt]) -> None:
    """One ``aws.sdk.retry`` event per retry, stamped where botocore's backoff sleep
    starts (the end of the failed attempt), with how long it slept and why: a trace
    viewer shows it at the start of the gap between the attempt spans. Recorded at
    the end of the call, like the attempt spans, so the call pays nothing meanwhile."""
    previous = attempts[0]
    for attempt in attempts[1:]:
        sleep_start = previous.end_ns or attempt.start_ns
        attributes: dict[str, Any] = {
            "aws.sdk.attempt": attempt.number,
            "aws.sdk.retry.reason": previous.outcome or "error",
            "aws.sdk.retry_backoff_ms": (attempt.start_ns - sleep_start) / _NS_PER_MS,
        }
        error_type = previous.error_type
        if error_type is not None:
            attributes["error.type"] = error_type
        _add_event(span, "aws.sdk.retry", attributes, sleep_start + WALL_OFFSET_NS)
        previous = attempt
