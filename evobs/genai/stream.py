"""Following a streaming response to its end, whichever end it has.

``ConverseStream`` returns its events in ``parsed["stream"]`` and
``InvokeModelWithResponseStream`` in ``parsed["body"]``: botocore ``EventStream``
objects the application iterates after the call has returned. :func:`wrap` puts a
:class:`GenAIEventStream` in their place. It is an ``EventStream`` (``isinstance``
holds) that yields exactly the same events, supports ``close()`` and
``get_initial_response()``, resumes where it stopped when iterated again (as
botocore's does), and hands any other attribute through to the original.

Every event is fed to an accumulator (finish reason, token usage from the stream's
metadata event or ``amazon-bedrock-invocationMetrics`` trailer, guardrail action,
the output when capturing). ``on_done(summary)`` is called exactly once, at the
first of:

- the last event read (``completed``);
- ``close()`` (``closed``), the application having read all, part or none of it;
- an exception out of the stream (``error``): an exception frame
  (``modelStreamErrorException``, ``throttlingException``...) or a broken
  connection; the summary's ``outcome`` classifies it as evobs's outcome words do;
- the wrapper being garbage-collected unread or half-read (``collected``), through
  ``weakref.finalize``. The state the finalizer holds (:class:`Tracker`) never refers
  to the wrapper, so there is no reference cycle keeping it alive; ``on_done`` must
  not refer to the parsed response (which holds the wrapper) either.

Leaving a ``for`` loop early (``break``) is not an end: the application can iterate
again, and the stream ends by one of the four above.
"""

from __future__ import annotations

import contextlib
import json
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Final

from botocore.eventstream import EventStream
from botocore.exceptions import EventStreamError

from .._call import classify
from .._fork import ForkSafeLock
from .._redact import redact_text
from . import converse, semconv
from .capture import Settings
from .families import FAMILIES, UNKNOWN, Stream
from .model import Request, Response
from .runtime import STREAM_MEMBERS

__all__ = [
    "CLOSED",
    "COLLECTED",
    "COMPLETED",
    "ERROR",
    "GenAIEventStream",
    "StreamSummary",
    "Tracker",
    "wrap",
]

COMPLETED: Final = "completed"
CLOSED: Final = "closed"
ERROR: Final = "error"
COLLECTED: Final = "collected"

#: evobs's own span attributes for streams (no convention exists for them).
STREAM_END: Final = "aws.sdk.stream.end"
STREAM_EVENTS: Final = "aws.sdk.stream.events"

OnDone = Callable[["StreamSummary"], None]
OnError = Callable[[BaseException], None]


class StreamSummary:
    """How a stream ended and what it carried; handed to ``on_done`` once."""

    __slots__ = (
        "end",
        "error_code",
        "error_message",
        "error_type",
        "events",
        "http_status",
        "outcome",
        "response",
        "time_to_first_chunk",
    )

    def __init__(self, end: str, events: int, response: Response) -> None:
        #: ``completed``, ``closed``, ``error`` or ``collected``.
        self.end = end
        #: Events the application received.
        self.events = events
        self.response = response
        #: Seconds from the call's start to the first event read (None: none read).
        self.time_to_first_chunk: float | None = None
        #: evobs's outcome word (``ok``, ``throttled``, ``server_error``...).
        self.outcome = "ok"
        #: The error's type (``ThrottlingException``, ``ProtocolError``), as the code is
        #: spelled in the model; the wire's own spelling in ``error_code``.
        self.error_type: str | None = None
        self.error_code: str | None = None
        #: Redacted and capped.
        self.error_message: str | None = None
        #: The HTTP status the model gives the error (None for a broken connection).
        self.http_status: int | None = None

    def attributes(self, generation: str = semconv.GENERATION) -> dict[str, Any]:
        """Span attributes for the stream's end (content excluded)."""
        out = self.response.attributes(generation)
        if self.time_to_first_chunk is not None and generation == semconv.LATEST:
            out[semconv.RESPONSE_TIME_TO_FIRST_CHUNK] = self.time_to_first_chunk
        if self.error_type is not None:
            out["error.type"] = self.error_type
        out[STREAM_END] = self.end
        out[STREAM_EVENTS] = self.events
        return out

    def __repr__(self) -> str:
        return f"<StreamSummary {self.end} events={self.events} outcome={self.outcome}>"


class _ChunkDecoder:
    """InvokeModelWithResponseStream events -> the family's chunk JSON."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def feed(self, event: Mapping[str, Any]) -> None:
        chunk = event.get("chunk")
        data = chunk.get("bytes") if isinstance(chunk, Mapping) else None
        if isinstance(data, bytes | str):
            try:
                decoded = json.loads(data)
            except (ValueError, RecursionError):
                return
            if isinstance(decoded, dict):
                self._stream.feed(decoded)

    def finish(self) -> Response:
        return self._stream.finish()


_ERRORS: dict[tuple[str, str, str], Mapping[str, tuple[str, int | None]]] = {}
_ERRORS_LOCK: Final = ForkSafeLock()


def _stream_errors(model: Any) -> Mapping[str, tuple[str, int | None]]:
    """Event-stream exception member -> (modeled error code, HTTP status), once per
    operation: ``throttlingException`` -> ``("ThrottlingException", 429)``."""
    try:
        service = model.service_model
        key = (service.service_name, service.api_version, model.name)
    except AttributeError:
        return {}
    found = _ERRORS.get(key)
    if found is not None:
        return found
    table: dict[str, tuple[str, int | None]] = {}
    shape = model.output_shape
    for member in shape.members.values() if shape is not None else ():
        if not member.serialization.get("eventstream"):
            continue
        for name, event in member.members.items():
            if event.metadata.get("exception"):
                error = event.metadata.get("error") or {}
                status = error.get("httpStatusCode")
                table[name] = (
                    error.get("code") or event.name,
                    status if isinstance(status, int) else None,
                )
    with _ERRORS_LOCK:
        _ERRORS[key] = table
    return table


class Tracker:
    """The stream's state: what the wrapper feeds, what the finalizer finishes.

    Holds no reference to the wrapper. Thread-safe for the one thing that can race
    (the end): ``finish`` runs ``on_done`` exactly once.
    """

    __slots__ = (
        "_accumulator",
        "_done",
        "_errors",
        "_events",
        "_first_ns",
        "_lock",
        "_on_done",
        "_on_error",
        "_start_ns",
    )

    def __init__(
        self,
        accumulator: converse.StreamState | _ChunkDecoder,
        on_done: OnDone,
        *,
        start_ns: int,
        errors: Mapping[str, tuple[str, int | None]] | None = None,
        on_error: OnError | None = None,
    ) -> None:
        self._accumulator: converse.StreamState | _ChunkDecoder | None = accumulator
        self._on_done = on_done
        self._on_error = on_error
        self._start_ns = start_ns
        self._errors = errors or {}
        self._first_ns: int | None = None
        self._events = 0
        self._done = False
        self._lock = ForkSafeLock()

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: Any) -> None:
        """One event the application is about to receive. Never raises."""
        if self._first_ns is None:
            self._first_ns = time.perf_counter_ns()
        self._events += 1
        accumulator = self._accumulator
        if accumulator is None or not isinstance(event, Mapping):
            return
        try:
            accumulator.feed(event)
        except Exception as exc:  # an evobs bug costs the rest of the accounting, not the stream
            self._report(exc)

    def finish(self, end: str, exc: BaseException | None = None) -> None:
        """End the stream's accounting (once; later calls do nothing). Never raises."""
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            summary = self._summary(end, exc)
        except Exception as error:
            self._report(error)
            summary = StreamSummary(end, self._events, Response())
        self._accumulator = None
        on_done, self._on_done = self._on_done, _ignore
        try:
            on_done(summary)
        except Exception as error:
            self._report(error)

    def _summary(self, end: str, exc: BaseException | None) -> StreamSummary:
        accumulator = self._accumulator
        response = accumulator.finish() if accumulator is not None else Response()
        summary = StreamSummary(end, self._events, response)
        if self._first_ns is not None:
            summary.time_to_first_chunk = max(0, self._first_ns - self._start_ns) / 1e9
        if exc is not None:
            _classify_error(summary, exc, self._errors)
        return summary

    def _report(self, exc: BaseException) -> None:
        if self._on_error is not None:
            with contextlib.suppress(Exception):
                self._on_error(exc)


def _ignore(summary: StreamSummary) -> None:
    """``on_done`` after it ran: nothing (drops the callback's references)."""


def _classify_error(
    summary: StreamSummary, exc: BaseException, errors: Mapping[str, tuple[str, int | None]]
) -> None:
    status: int | None = None
    code: str | None = None
    if isinstance(exc, EventStreamError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, Mapping) else {}
        wire = error.get("Code") if isinstance(error.get("Code"), str) else None
        summary.error_code = wire
        modeled = errors.get(wire or "")
        if modeled is not None:
            code, status = modeled
        elif wire:
            code = wire[:1].upper() + wire[1:]  # Bedrock's members are lowerCamel shapes
        summary.error_message = redact_text(error.get("Message") or "")
        summary.error_type = code
        summary.http_status = status
        summary.outcome = classify(status, code, exc)
    else:  # a broken connection (``connection_error``), or anything else
        summary.error_type = type(exc).__name__
        summary.error_message = redact_text(str(exc))
        summary.outcome = classify(None, None, exc)


class GenAIEventStream(EventStream):  # type: ignore[misc]
    """botocore's ``EventStream``, followed: same events, same methods, one end."""

    def __init__(self, stream: EventStream, tracker: Tracker) -> None:
        # botocore's __init__ is not called: every method delegates to ``stream``.
        self._evobs_stream = stream
        self._evobs_tracker = tracker
        self._evobs_finalizer = weakref.finalize(self, tracker.finish, COLLECTED)

    def __iter__(self) -> Iterator[Any]:
        tracker = self._evobs_tracker
        try:
            for event in self._evobs_stream:
                tracker.feed(event)
                yield event
        except GeneratorExit:
            raise  # the loop was left early: not an end, it may be iterated again
        except BaseException as exc:
            self._end(ERROR, exc)
            raise
        self._end(COMPLETED)

    def close(self) -> None:
        """Closes the underlying body, then ends the accounting (``closed``)."""
        try:
            self._evobs_stream.close()
        finally:
            self._end(CLOSED)

    def get_initial_response(self) -> Any:
        return self._evobs_stream.get_initial_response()

    def _end(self, end: str, exc: BaseException | None = None) -> None:
        self._evobs_finalizer.detach()
        self._evobs_tracker.finish(end, exc)

    def __getattr__(self, name: str) -> Any:
        # Only for what this class does not define (botocore's private members...).
        if name.startswith("_evobs_"):
            raise AttributeError(name)
        return getattr(self._evobs_stream, name)

    def __repr__(self) -> str:
        return f"<GenAIEventStream of {self._evobs_stream!r}>"


def wrap(
    request: Request,
    parsed: MutableMapping[str, Any],
    settings: Settings,
    on_done: OnDone,
    *,
    start_ns: int,
    model: Any = None,
    on_error: OnError | None = None,
) -> GenAIEventStream | None:
    """Replace the stream in ``parsed`` with a followed one; None (nothing replaced)
    when there is no botocore ``EventStream`` there.

    ``start_ns`` is the call's start on ``time.perf_counter_ns`` (time to first chunk
    is measured from it); ``model`` the botocore OperationModel (for the modeled status
    of stream exceptions); ``on_error`` receives evobs's own failures (never raised).
    """
    member = STREAM_MEMBERS.get(request.aws_operation)
    stream = parsed.get(member) if member is not None else None
    if type(stream) is not EventStream:  # aiobotocore's, already wrapped, or absent
        return None
    accumulator: converse.StreamState | _ChunkDecoder
    if request.aws_operation == "ConverseStream":
        accumulator = converse.StreamState(settings)
    else:
        accumulator = _ChunkDecoder(FAMILIES.get(request.family or "", UNKNOWN).stream(settings))
    errors = _stream_errors(model) if model is not None else None
    tracker = Tracker(accumulator, on_done, start_ns=start_ns, errors=errors, on_error=on_error)
    wrapper = GenAIEventStream(stream, tracker)
    parsed[member] = wrapper  # type: ignore[index]
    return wrapper
