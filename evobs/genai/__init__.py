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
  (:mod:`.capture`); :func:`content_attributes` and :func:`content_events` render it.
"""

from __future__ import annotations

from .capture import Content, LegacyEvent, Settings, capture_mode
from .capture import legacy_events as content_events
from .capture import span_attributes as content_attributes
from .families import family_of
from .model import Request, Response
from .runtime import OPERATIONS, SERVICE, is_genai, read_request, read_response
from .stream import GenAIEventStream, StreamSummary
from .stream import wrap as wrap_stream

__all__ = [
    "OPERATIONS",
    "SERVICE",
    "Content",
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
