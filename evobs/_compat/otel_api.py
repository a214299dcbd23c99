"""The OpenTelemetry API's private details evobs reads."""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import context as otel_context

__all__ = ["SUPPRESS_INSTRUMENTATION_KEY", "instrumentation_suppressed"]

#: The context key set by ``opentelemetry.instrumentation.utils.suppress_instrumentation``
#: (exporters that call AWS themselves set it so their own calls are not traced). It is
#: private to the API package (``opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY``);
#: where an API lacks it, suppression cannot be seen and calls are recorded as usual.
SUPPRESS_INSTRUMENTATION_KEY: Final[Any] = getattr(
    otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None
)


def instrumentation_suppressed() -> bool:
    """Whether the current context asks instrumentations to record nothing."""
    key = SUPPRESS_INSTRUMENTATION_KEY
    return key is not None and bool(otel_context.get_value(key))
