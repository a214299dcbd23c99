"""The OpenTelemetry API's private details evobs reads."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextvars import Token
from functools import partial
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, Span, SpanContext
from opentelemetry.trace import propagation as trace_propagation

__all__ = [
    "SUPPRESS_INSTRUMENTATION_KEY",
    "attach_span",
    "current_context",
    "detach_context",
    "instrumentation_suppressed",
    "new_span_context",
    "no_global_meter_provider",
    "span_in",
]

#: The API's own functions (the fallbacks, and what the shape checks compare with).
_api_get_current: Final = otel_context.get_current
_api_attach: Final = otel_context.attach
_api_detach: Final = otel_context.detach

#: The context key set by ``opentelemetry.instrumentation.utils.suppress_instrumentation``
#: (exporters that call AWS themselves set it so their own calls are not traced). It is
#: private to the API package (``opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY``);
#: where an API lacks it, suppression cannot be seen and calls are recorded as usual.
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


def _proven_runtime() -> tuple[Any, contextvars.ContextVar[Any]] | None:
    """``(runtime context, its ContextVar)`` where the runtime context is the API's own
    ``ContextVarsRuntimeContext`` (whose methods are one-line delegations to the var),
    the var has its default (an empty Context) and the API's ``get_current``,
    ``attach`` and ``detach`` are its own; else None. Whoever reads the var directly
    checks per call that this runtime context is still the API's: a library may
    replace ``_RUNTIME_CONTEXT``, and then the API is used."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = _runtime_context_var()
    own_api = all(
        getattr(f, "__module__", None) == "opentelemetry.context"
        for f in (_api_get_current, _api_attach, _api_detach)
    )
    if var is None or not own_api or type(runtime) is not ContextVarsRuntimeContext:
        return None
    try:
        contextvars.Context().run(var.get)
    except LookupError:
        return None
    return runtime, var


def _suppression_check() -> Callable[[], bool]:
    """``instrumentation_suppressed``, built once: it runs on every call, so where the
    API's own ContextVar is proven (``_proven_runtime``) it is read directly (one C call
    instead of three Python ones); otherwise through ``get_current()``."""
    key = SUPPRESS_INSTRUMENTATION_KEY
    if key is None:
        return lambda: False
    proven = _proven_runtime()
    if proven is None:

        def through_the_api() -> bool:
            return bool(_api_get_current().get(key))

        return through_the_api
    runtime, var = proven
    module: Any = otel_context
    get = var.get

    def direct() -> bool:
        if module._RUNTIME_CONTEXT is runtime:
            return bool(get().get(key))
        return bool(_api_get_current().get(key))

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


# -- the current context, on every call ---------------------------------------------------

_api_set_span_in_context: Final = trace_propagation.set_span_in_context
_api_get_current_span: Final = trace_propagation.get_current_span


def _api_attach_span(span: Span, context: Context) -> Token[Context]:
    return _api_attach(_api_set_span_in_context(span, context))


def _span_key() -> str | None:
    """The key the API keeps the current span under in a Context
    (``opentelemetry.trace.propagation._SPAN_KEY``), where ``set_span_in_context`` and
    ``get_current_span`` are proven to be a plain write and read of it; else None."""
    key = getattr(trace_propagation, "_SPAN_KEY", None)
    if not isinstance(key, str):
        return None
    probe = NonRecordingSpan(SpanContext(1, 1, False))
    try:
        base = Context({"evobs.probe": 1})
        written = _api_set_span_in_context(probe, base)
        proven = (
            type(written) is Context
            and dict(written) == {"evobs.probe": 1, key: probe}
            and _api_get_current_span(Context({key: probe})) is probe
            and _api_get_current_span(Context({key: "not a span"})) is INVALID_SPAN
            and _api_get_current_span(Context()) is INVALID_SPAN
        )
    except Exception:
        return None
    return key if proven else None


def _context_access() -> tuple[
    Callable[[], Context],
    Callable[[Span, Context], Token[Context]],
    Callable[[Token[Context]], None],
    Callable[[Context | None], Span],
]:
    """``(current_context, attach_span, detach_context, span_in)``, built once.

    Each call of evobs reads the current context, makes its span current and restores
    the context: through the API that is six Python calls, each a one-line delegation
    to the runtime context's ContextVar (``get_current`` -> ``_RUNTIME_CONTEXT.
    get_current`` -> ``ContextVar.get``). Where the runtime context is the API's own
    ``ContextVarsRuntimeContext`` and the span key is proven (``_span_key``), these
    read and write that ContextVar in one call each (~3 k instructions per call), and
    check on every call that it is still the runtime context (a library may replace
    ``_RUNTIME_CONTEXT``: then the API, as if evobs had always used it). Anything
    else: the API's functions themselves.
    """
    proven = _proven_runtime()
    key = _span_key()
    if proven is None or key is None:
        return _api_get_current, _api_attach_span, _api_detach, _api_get_current_span
    runtime, var = proven
    module: Any = otel_context
    get, set_, reset = var.get, var.set, var.reset

    def current_context() -> Context:
        if module._RUNTIME_CONTEXT is runtime:
            context: Context = get()
            return context
        return _api_get_current()

    def attach_span(span: Span, context: Context) -> Token[Context]:
        values = context.copy()
        values[key] = span
        if module._RUNTIME_CONTEXT is runtime:
            return set_(Context(values))
        return _api_attach(Context(values))

    def detach_context(token: Token[Context]) -> None:
        if module._RUNTIME_CONTEXT is runtime:
            try:
                reset(token)
                return
            except Exception:
                pass  # the API's detach fails the same way, and logs it
        _api_detach(token)

    def span_in(context: Context | None) -> Span:
        span = (current_context() if context is None else context).get(key)
        if span is None or not isinstance(span, Span):  # None first: Span is an ABC
            return INVALID_SPAN
        return span

    return current_context, attach_span, detach_context, span_in


#: ``opentelemetry.context.get_current()``; ``attach(set_span_in_context(span,
#: context))``; ``detach(token)``; ``trace.get_current_span(context)``: the same, in
#: fewer calls where the API's default runtime context is proven (``_context_access``).
current_context, attach_span, detach_context, span_in = _context_access()
