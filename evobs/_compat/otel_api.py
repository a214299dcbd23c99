"""The OpenTelemetry API's private details evobs reads."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext

__all__ = [
    "SUPPRESS_INSTRUMENTATION_KEY",
    "instrumentation_suppressed",
    "new_span_context",
    "no_global_meter_provider",
]

#: The context key set by ``opentelemetry.instrumentation.utils.suppress_instrumentation``
#: (exporters that call AWS themselves set it so their own calls are not traced). It is
#: private to the API package (``opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY``);
#: where an API lacks it, suppression cannot be seen and calls are recorded as usual.
_current: Final = otel_context.get_current

SUPPRESS_INSTRUMENTATION_KEY: Final[Any] = getattr(
    otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None
)


def _runtime_context_var() -> contextvars.ContextVar[Any] | None:
    """The ContextVar the API's default runtime context keeps the current Context in
    (``opentelemetry.context._RUNTIME_CONTEXT._current_context``); None for another
    runtime context (``OTEL_PYTHON_CONTEXT``) or another shape: then the public API."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, contextvars.ContextVar) else None


def _suppression_check() -> Callable[[], bool]:
    """``instrumentation_suppressed``, built once: it runs on every call, so where the
    API's own ContextVar is readable it is read directly (one C call instead of three
    Python ones); otherwise through ``get_current()``."""
    key = SUPPRESS_INSTRUMENTATION_KEY
    if key is None:
        return lambda: False
    var = _runtime_context_var()
    if var is None:

        def through_the_api() -> bool:
            return bool(_current().get(key))

        return through_the_api

    def direct() -> bool:
        context = var.get(None)
        return bool((_current() if context is None else context).get(key))

    return direct


#: Whether the current context asks instrumentations to record nothing.
instrumentation_suppressed: Final = _suppression_check()


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


def _span_context_constructor() -> Callable[..., SpanContext]:
    """``SpanContext(trace_id, span_id, is_remote, trace_flags, trace_state)``, built once.

    ``SpanContext`` is a tuple whose only constructor is its own ``__new__``: calling
    that function directly runs the same code (the same validation, the same tuple)
    without the type call's generic lookup of ``__new__`` and ``__init__`` (~2 k
    instructions of each span evobs writes). Only while the class has that shape: a
    plain metaclass, no ``__init__`` of its own, ``__new__`` a Python function; else
    the class itself.
    """
    new = vars(SpanContext).get("__new__")
    function: Any = new.__func__ if isinstance(new, staticmethod) else new
    if (
        type(SpanContext) is type
        and SpanContext.__init__ is object.__init__
        and getattr(function, "__code__", None) is not None
    ):
        constructor: Callable[..., SpanContext] = partial(function, SpanContext)
        return constructor
    return SpanContext


#: A new ``SpanContext`` from positional ``(trace_id, span_id, is_remote, trace_flags,
#: trace_state)``: what ``SpanContext(...)`` builds, called more cheaply where it can be.
new_span_context: Final = _span_context_constructor()
