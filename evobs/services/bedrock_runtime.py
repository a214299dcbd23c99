"""Bedrock Runtime: GenAI facts on the call record, for the signals to render.

``Converse``, ``ConverseStream``, ``InvokeModel``, ``InvokeModelWithResponseStream``
and ``ApplyGuardrail`` get two hooks (``evobs.services.Extractor.start`` and
``.result``), bound once per operation; every other Bedrock Runtime operation, and
every other service, has neither and pays nothing:

- at provide-client-params, :func:`evobs.genai.read_request` reads what was asked
  (operation name, model, parameters, content when captured) into ``call.genai``
  (:class:`evobs.genai.Facts`), before the span starts: its name is the conventions'
  ``{gen_ai.operation.name} {gen_ai.request.model}``;
- at the first after-call handler, before any user handler sees the response, a
  successful call's response is read (InvokeModel's body handed back identical), or its
  stream is followed: ``call.stream`` (:class:`evobs._call.StreamHandle`) then tells the
  signals when, and how, the stream ended.

A stream dropped unread ends when it is garbage-collected. That end may run inside a
finalizer, at any point of any thread (a cyclic collection), so what the signals do then
(end a span, which may export it; record metrics) runs on a new thread instead, where
waiting for a lock the interrupted code holds is harmless.
"""

from __future__ import annotations

import _thread
import os
import threading
from typing import TYPE_CHECKING, Any, Final

from .._call import StreamHandle
from .._fork import ForkSafeLock
from ..genai import semconv
from ..genai.capture import ENV_VAR, Settings, capture_mode
from ..genai.model import Facts
from ..genai.runtime import OPERATIONS, STREAM_MEMBERS, read_request, read_response
from ..genai.stream import COLLECTED, StreamSummary
from ..genai.stream import wrap as wrap_stream
from . import ServiceSpec

if TYPE_CHECKING:
    from .._call import Call
    from .._log import HandlerErrors
    from .._options import Options

__all__ = ["SPEC", "settings_for"]

_SETTINGS: Final[dict[tuple[bool | None, str | None], Settings]] = {}
_SETTINGS_LOCK: Final = ForkSafeLock()


def settings_for(option: bool | None) -> Settings:
    """The content-capture settings of the ``capture_genai_content`` option, with
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` as it is now (one dict
    lookup per GenAI call: a changed variable applies to the next call)."""
    key = (option, os.environ.get(ENV_VAR))
    found = _SETTINGS.get(key)
    if found is None:
        found = Settings(
            capture=capture_mode(option, semconv.GENERATION, {ENV_VAR: key[1] or ""}),
            generation=semconv.GENERATION,
        )
        with _SETTINGS_LOCK:
            if len(_SETTINGS) >= 16:  # bounded: a variable rewritten in a loop
                _SETTINGS.clear()
            _SETTINGS[key] = found
    return found


def _start(call: Call, params: dict[str, Any], options: Options) -> None:
    settings = settings_for(options.capture_genai_content)
    request = read_request(call.op.name, params, settings)
    if request is not None:
        call.genai = Facts(request, settings)


def _result(call: Call, parsed: dict[str, Any], errors: HandlerErrors) -> None:
    facts = call.genai
    status = call.http_status
    if facts is None or "Error" in parsed or (status is not None and status >= 300):
        return  # a failed call: nothing came back but the error the record holds
    try:
        if facts.request.aws_operation in STREAM_MEMBERS:
            _follow(call, facts, parsed, errors)
        else:
            facts.response = read_response(facts.request, parsed, facts.settings)
    except Exception as exc:  # costs the GenAI attributes, never the call
        errors.record("genai-response", exc)


def _follow(call: Call, facts: Facts, parsed: dict[str, Any], errors: HandlerErrors) -> None:
    """Follow the returned stream: ``call.stream`` ends when it does (aiobotocore's
    streams are left alone: no handle, the span ends with the call)."""
    handle = StreamHandle(errors)
    pid = os.getpid()

    def on_done(summary: StreamSummary) -> None:
        # Holds the handle only: never the response, whose stream is being followed.
        if os.getpid() != pid:
            return  # a forked child's copy of the parent's stream: its span is the parent's
        if summary.end == COLLECTED:
            _off_the_finalizer(handle, summary)
        else:
            handle.end(summary)

    wrapper = wrap_stream(
        facts.request,
        parsed,
        facts.settings,
        on_done,
        start_ns=call.start_ns,
        model=call.op.model,
        on_error=lambda exc: errors.record("genai-stream", exc),
    )
    if wrapper is not None:
        call.stream = handle


def _off_the_finalizer(handle: StreamHandle, summary: StreamSummary) -> None:
    """End a collected stream on a new thread: ``_thread`` takes no Python-level lock
    (``threading.Thread.start`` does), and a collection can interrupt any code. At exit
    (the main thread has stopped: a stream still referenced is finalized by ``atexit``),
    a new thread would not outlive the process: the stream ends here, before the span
    processors shut down."""
    if not threading.main_thread().is_alive():
        handle.end(summary)
        return
    try:
        _thread.start_new_thread(handle.end, (summary,))
    except RuntimeError:  # the interpreter is shutting down: no new threads
        handle.end(summary)


SPEC: Final = ServiceSpec(
    starts=dict.fromkeys(OPERATIONS, _start),
    results=dict.fromkeys(OPERATIONS, _result),
)
