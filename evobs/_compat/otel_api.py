"""The OpenTelemetry API's private details evobs reads."""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import context as otel_context

__all__ = [
    "SUPPRESS_INSTRUMENTATION_KEY",
    "instrumentation_suppressed",
    "no_global_meter_provider",
]

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


def no_global_meter_provider() -> bool:
    """Whether no global MeterProvider is set yet (the API's placeholder is in place).

    The API exposes no public type for its placeholder (tracing has
    ``ProxyTracerProvider``): this compares with ``opentelemetry.metrics._internal.
    _PROXY_METER_PROVIDER``. Without that attribute it answers True, and
    ``set_meter_provider`` itself refuses to replace a provider (it logs a warning).
    """
    from opentelemetry import metrics
    from opentelemetry.metrics import _internal

    placeholder = getattr(_internal, "_PROXY_METER_PROVIDER", None)
    return placeholder is None or metrics.get_meter_provider() is placeholder
