"""The traces signal: one OpenTelemetry span per call, attempt spans when retried.

The call span is back-dated to provide-client-params and made current from
before-call to the end of the call, so nested calls (an AssumeRole refresh),
HTTP-level instrumentation and user handlers see it as their parent.
Attempt spans and retry events are created lazily, at the end of calls that
took more than one attempt: the happy path pays for one span. With the SDK's
own tracer, spans take the cheap path of ``_spans``; any other tracer is used
through the API. Both go through the same code here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._call import WALL_OFFSET_NS
from .._redact import exception_event, masks_for, render_params
from .._version import __version__
from ..services import rpc_attributes
from ._spans import SdkPipeline, SdkSpan

if TYPE_CHECKING:
    from .._call import Attempt, Call
    from .._operation import Operation
    from .._options import Options

__all__ = ["TracesSignal"]

_NS_PER_MS: Final = 1_000_000


class TracesSignal:
    """Renders call records as OpenTelemetry spans."""

    __slots__ = ("_attrs", "_options", "_pipeline", "_tracer")

    name = "traces"

    def __init__(self, tracer_provider: trace.TracerProvider | None, options: Options) -> None:
        self._tracer = trace.get_tracer("evobs", __version__, tracer_provider=tracer_provider)
        #: The SDK's own tracer gets the cheap span path; None: the API, as is.
        self._pipeline = SdkPipeline.of(self._tracer)
        self._options = options
        # Per-operation constant attributes and span kind, built once.
        self._attrs: dict[Operation, tuple[dict[str, Any], SpanKind]] = {}

    def _static(self, op: Operation) -> tuple[dict[str, Any], SpanKind]:
        static = self._attrs.get(op)
        if static is None:
            attributes = rpc_attributes(op.service, op.name)  # OTEL_SEMCONV_STABILITY_OPT_IN
            if op.extractor is not None:
                attributes.update(op.extractor.static)
            static = self._attrs[op] = (attributes, _span_kind(op))
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
            return pipeline.start(name, kind, attributes, start_time, context)
        return self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )

    def call_started(self, call: Call) -> None:
        attrs, kind = self._static(call.op)
        attributes = attrs.copy()
        if call.region is not None:
            attributes["cloud.region"] = call.region
        if call.server_address is not None:
            attributes["server.address"] = call.server_address
            attributes["server.port"] = call.server_port
        if call.http_method is not None:
            attributes["http.request.method"] = call.http_method
        name = call.op.span_name
        extractor = call.op.extractor
        params = call.params if extractor is not None else None
        pipeline = self._pipeline
        if pipeline is not None:
            sampled = pipeline.sample(name, kind, attributes)
            if params is not None and sampled[2]:  # request attributes: sampled spans only
                extractor.request(params, self._options, sampled[3])
            span = pipeline.open(name, kind, call.start_ns + WALL_OFFSET_NS, sampled)
        else:
            span = self._tracer.start_span(
                name, kind=kind, attributes=attributes, start_time=call.start_ns + WALL_OFFSET_NS
            )
        call.span = span
        call.token = otel_context.attach(trace.set_span_in_context(span))
        if pipeline is None and params is not None and span.is_recording():
            extra: dict[str, Any] = {}
            extractor.request(params, self._options, extra)
            span.set_attributes(extra)

    def call_ended(self, call: Call) -> None:
        span = call.span
        if span is None:
            return
        token = call.token
        call.token = None
        try:
            if span.is_recording():
                self._annotate(span, call)
        finally:
            try:
                span.end(end_time=(call.end_ns or call.start_ns) + WALL_OFFSET_NS)
            finally:
                if token is not None:
                    otel_context.detach(token)

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
        outcome = call.outcome
        if outcome != "ok":
            error_type = call.error_type or outcome or "error"
            attributes["error.type"] = error_type
            attributes["aws.sdk.outcome"] = outcome
            event, description = exception_event(
                call.exception, call, capture_s3_keys=self._options.capture_s3_keys
            )
            _add_event(span, "exception", event, (call.end_ns or call.start_ns) + WALL_OFFSET_NS)
            if not call.expected:
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
        if extractor is not None and call.response is not None:
            extractor.response(call.response, attributes)
            if extractor.links is not None:
                # The producers' contexts are known only now: links added after start.
                for link in extractor.links(call.response):
                    span.add_link(link)
        if own is None:
            _set_attributes(span, attributes)
        if len(attempts) > 1:
            self._attempt_spans(span, call)

    def _attempt_spans(self, parent: Any, call: Call) -> None:
        parent_context = trace.set_span_in_context(parent)
        name = f"{call.op.span_name} attempt"
        end_default = call.end_ns or call.start_ns
        # Retries usually repeat one error: redacted and rendered once per call.
        statuses: dict[tuple[str | None, str], Status] = {}
        masks = None
        pipeline = self._pipeline
        fast = pipeline is not None and type(parent) is SdkSpan
        for attempt in call.attempts:
            number = attempt.number
            attributes: dict[str, Any] = {
                "http.request.resend_count": number - 1,
                "aws.sdk.attempt": number,
                "aws.sdk.signing_ms": attempt.signing_ns / _NS_PER_MS,
            }
            if attempt.http_status is not None:
                attributes["http.response.status_code"] = attempt.http_status
            if attempt.request_id:
                attributes["aws.request_id"] = attempt.request_id
            outcome = attempt.outcome
            failed = outcome is not None and outcome != "ok"
            error_type = attempt.error_type if failed else None
            if failed:
                attributes["error.type"] = error_type or outcome
                attributes["aws.sdk.outcome"] = outcome
            start_time = attempt.start_ns + WALL_OFFSET_NS
            if fast:
                child = pipeline.child(  # type: ignore[union-attr]
                    name, SpanKind.CLIENT, attributes, start_time, parent, parent_context
                )
            else:
                child = self._start_span(
                    name, SpanKind.CLIENT, attributes, start_time, parent_context
                )
            end_time = (attempt.end_ns or end_default) + WALL_OFFSET_NS
            if child.is_recording() and failed:
                if masks is None:  # once per call, only if an attempt failed
                    masks = masks_for(call, capture_s3_keys=self._options.capture_s3_keys)
                code = error_type or outcome
                if attempt.exception is not None:
                    event, _ = exception_event(attempt.exception, call, code=code, masks=masks)
                    _add_event(child, "exception", event, end_time)
                key = (code, attempt.error_message or "")
                status = statuses.get(key)
                if status is None:
                    _, description = exception_event(
                        None, call, code=code, message=key[1], masks=masks
                    )
                    status = statuses[key] = Status(StatusCode.ERROR, description)
                child.set_status(status)
            child.end(end_time=end_time)


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
    """One ``aws.sdk.retry`` event per retry, stamped when the retry started; recorded
    at the end of the call, like the attempt spans, so the call pays nothing meanwhile."""
    previous = attempts[0]
    for attempt in attempts[1:]:
        backoff_ns = attempt.start_ns - (previous.end_ns or attempt.start_ns)
        _add_event(
            span,
            "aws.sdk.retry",
            {
                "aws.sdk.attempt": attempt.number,
                "aws.sdk.retry.reason": previous.outcome or "error",
                "aws.sdk.retry_backoff_ms": backoff_ns / _NS_PER_MS,
            },
            attempt.start_ns + WALL_OFFSET_NS,
        )
        previous = attempt


def _span_kind(op: Operation) -> SpanKind:
    kind = getattr(op, "span_kind", None)
    return kind if isinstance(kind, SpanKind) else SpanKind.CLIENT
