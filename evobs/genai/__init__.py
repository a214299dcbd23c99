"""GenAI facts for Amazon Bedrock Runtime calls, as pure building blocks.

``Converse``, ``ConverseStream``, ``InvokeModel``, ``InvokeModelWithResponseStream``
and ``ApplyGuardrail`` are recorded with the OpenTelemetry GenAI semantic conventions
(:mod:`.semconv`). This package extracts the facts and renders them; it never starts,
ends or touches a span, a metric or a log record: a signal does that with what it
gets here.

- :func:`read_request` (at call start) -> :class:`Request`: operation name,
  provider, model, family, parameters, the span name, content when captured;
- :func:`read_response` (non-streaming calls) -> :class:`Response`: ids, finish
  reasons, token usage, guardrail action, output when captured. InvokeModel's body
  is read and handed back identical (:mod:`.body`);
- :func:`wrap_stream` (streaming calls) follows the returned stream to its end and
  calls ``on_done`` with a :class:`StreamSummary` exactly once (:mod:`.stream`);
- :class:`Settings` says whether content is captured and where it goes
  (:mod:`.capture`); :func:`content_attributes` and :func:`content_events` render it;
- :class:`Facts` is what a call record carries: the request, its settings, the response.

Names are loaded on first use: the metrics signal needs only :mod:`.semconv` (metric
names and labels), and a process that never calls Bedrock never loads the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .capture import Content, LegacyEvent, Settings, capture_mode
    from .capture import legacy_events as content_events
    from .capture import span_attributes as content_attributes
    from .families import family_of
    from .model import Facts, Request, Response
    from .runtime import OPERATIONS, SERVICE, is_genai, read_request, read_response
    from .stream import GenAIEventStream, StreamSummary
    from .stream import wrap as wrap_stream

__all__ = [
    "OPERATIONS",
    "SERVICE",
    "Content",
    "Facts",
    "GenAIEventStream",
    "LegacyEvent",
    "Request",
    "Response",
    "Settings",
    "StreamSummary",
    "capture_mode",
    "content_attributes",
    "content_events",
    "family_of",
    "is_genai",
    "read_request",
    "read_response",
    "wrap_stream",
]

#: public name -> (submodule, name there)
_NAMES: Final = {
    "Content": ("capture", "Content"),
    "LegacyEvent": ("capture", "LegacyEvent"),
    "Settings": ("capture", "Settings"),
    "capture_mode": ("capture", "capture_mode"),
    "content_events": ("capture", "legacy_events"),
    "content_attributes": ("capture", "span_attributes"),
    "family_of": ("families", "family_of"),
    "Facts": ("model", "Facts"),
    "Request": ("model", "Request"),
    "Response": ("model", "Response"),
    "OPERATIONS": ("runtime", "OPERATIONS"),
    "SERVICE": ("runtime", "SERVICE"),
    "is_genai": ("runtime", "is_genai"),
    "read_request": ("runtime", "read_request"),
    "read_response": ("runtime", "read_response"),
    "GenAIEventStream": ("stream", "GenAIEventStream"),
    "StreamSummary": ("stream", "StreamSummary"),
    "wrap_stream": ("stream", "wrap"),
}


def __getattr__(name: str) -> Any:
    found = _NAMES.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{found[0]}"), found[1])
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
