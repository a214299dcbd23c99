"""instrument / uninstrument: registration, the injected base class, the handle.

Only botocore's event system is used. The base class added at
creating-client-class (the documented way to extend generated clients) is the
safety net: its ``_make_api_call`` closes every call that botocore's events left
open, whatever raised. A client instrumented after its creation gets the same
base class by a ``__class__`` swap that ``uninstrument`` undoes.
"""

from __future__ import annotations

import inspect
import os
import threading
import weakref
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from botocore.client import BaseClient
from botocore.session import Session as BotocoreSession
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import REGISTRY, CollectorRegistry

from ._handlers import Fanout, Handlers, enter_call_frame, exit_call_frame
from ._log import HandlerErrors
from ._options import Options

if TYPE_CHECKING:
    from opentelemetry import metrics

__all__ = ["Instrumentation", "instrument", "uninstrument"]

#: (event, handler attribute) for the seven per-call events, each registered
#: first on ``<event>.*.*`` so it runs before every other handler of the event.
_PER_CALL: Final = (
    ("provide-client-params", "provide_client_params"),
    ("before-call", "before_call"),
    ("request-created", "request_created"),
    ("before-send", "before_send"),
    ("needs-retry", "needs_retry"),
    ("after-call", "after_call"),
    ("after-call-error", "after_call_error"),
)
_UID: Final = "evobs."

_INSTALLED: Final[weakref.WeakKeyDictionary[Any, Instrumentation]] = weakref.WeakKeyDictionary()
_LOCK: Final = threading.RLock()


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# -- the injected base classes ---------------------------------------------------


class _TimedConstruction:
    """Times client construction and reports it once the client exists."""

    _evobs: Instrumentation | None = None
    _evobs_class_ns: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inst = self._evobs
        if inst is not None and inst.enabled and self._evobs_class_ns:
            meta = getattr(self, "meta", None)
            service_model = getattr(meta, "service_model", None)
            service = str(getattr(service_model, "service_id", "unknown"))
            inst._handlers.client_created(
                service,
                getattr(meta, "region_name", None),
                perf_counter_ns() - self._evobs_class_ns,
            )


class InstrumentedClient(_TimedConstruction):
    """Base class evobs adds to botocore clients: the call-level safety net."""

    #: The OTel context an s3transfer carrier clone runs its calls in (``_transfer``).
    _evobs_parent: Any = None

    def _make_api_call(self, operation_name: str, api_params: Any) -> Any:
        inst = self._evobs
        if inst is None or not inst.enabled:
            return super()._make_api_call(operation_name, api_params)  # type: ignore[misc]
        parent = self._evobs_parent
        parent_token = None if parent is None else otel_context.attach(parent)
        frame, token = enter_call_frame()
        error: BaseException | None = None
        try:
            return super()._make_api_call(operation_name, api_params)  # type: ignore[misc]
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                exit_call_frame(inst._handlers, frame, token, error)
            finally:
                # The exception's traceback holds this frame: drop the reference
                # back to it, so a failed call leaves no garbage cycle.
                error = None
                if parent_token is not None:
                    otel_context.detach(parent_token)


class AsyncInstrumentedClient(_TimedConstruction):
    """The same safety net for aiobotocore, whose ``_make_api_call`` is a coroutine."""

    async def _make_api_call(self, operation_name: str, api_params: Any) -> Any:
        inst = self._evobs
        if inst is None or not inst.enabled:
            return await super()._make_api_call(operation_name, api_params)  # type: ignore[misc]
        frame, token = enter_call_frame()
        error: BaseException | None = None
        try:
            return await super()._make_api_call(operation_name, api_params)  # type: ignore[misc]
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                exit_call_frame(inst._handlers, frame, token, error)
            finally:
                error = None  # no cycle through the exception's traceback


def _is_async(classes: Any) -> bool:
    return any(inspect.iscoroutinefunction(getattr(cls, "_make_api_call", None)) for cls in classes)


# -- the handle ------------------------------------------------------------------


class Instrumentation:
    """What ``instrument()`` returns: the target, its options, and ``uninstrument()``."""

    __slots__ = (
        "__weakref__",
        "_client_class",
        "_emitter",
        "_handlers",
        "_target",
        "meter_provider",
        "options",
        "registry",
        "signals",
        "tracer_provider",
    )

    def __init__(
        self,
        target: Any,
        emitter: Any,
        options: Options,
        tracer_provider: trace.TracerProvider | None,
        registry: CollectorRegistry,
        *,
        disabled: bool = False,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._target = _weak(target)
        self._emitter = _weak(emitter)
        self.options = options
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.registry = registry
        self._client_class: type | None = None
        self.signals = (
            () if disabled else _build_signals(options, tracer_provider, registry, meter_provider)
        )
        self._handlers = Handlers(options, Fanout(self.signals), HandlerErrors(registry))
        self._handlers.enabled = not disabled

    @property
    def target(self) -> Any:
        return self._target()

    @property
    def enabled(self) -> bool:
        return self._handlers.enabled

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<evobs.Instrumentation {state} target={self.target!r}>"

    def uninstrument(self) -> None:
        """Stop recording: clear the shared flag and unregister every reachable handler."""
        with _LOCK:
            self._handlers.enabled = False
            emitter = self._emitter()
            if emitter is not None:
                _unregister(emitter)
                if _INSTALLED.get(emitter) is self:
                    del _INSTALLED[emitter]
            target = self.target
            if self._client_class is not None and target is not None:
                if type(target).__bases__[:1] == (InstrumentedClient,) or type(target).__bases__[
                    :1
                ] == (AsyncInstrumentedClient,):
                    target.__class__ = self._client_class
                self._client_class = None

    # -- registration -------------------------------------------------------------

    def _register_per_call(self, emitter: Any) -> None:
        handlers = self._handlers
        for event, attr in _PER_CALL:
            emitter.register_first(f"{event}.*.*", getattr(handlers, attr), unique_id=_UID + event)

    def _install_session(self, emitter: Any) -> None:
        emitter.register_first(
            "creating-client-class",
            self._on_creating_client_class,
            unique_id=_UID + "creating-client-class",
        )
        emitter.register_first(
            "creating-resource-class",
            self._handlers.resource_created,
            unique_id=_UID + "creating-resource-class",
        )
        self._register_per_call(emitter)

    def _install_client(self, client: Any) -> None:
        self._register_per_call(client.meta.events)
        original = type(client)
        base = AsyncInstrumentedClient if _is_async(original.__mro__) else InstrumentedClient
        attributes: dict[str, Any] = {"_evobs": self, "_evobs_class_ns": 0}
        if base is InstrumentedClient and hasattr(original, "upload_file"):
            from ._transfer import TRANSFER_METHODS, wrap_transfer_methods

            attributes.update(
                (n, getattr(original, n)) for n in TRANSFER_METHODS if hasattr(original, n)
            )
            wrap_transfer_methods(attributes)
        swapped = type(original.__name__, (base, original), attributes)
        client.__class__ = swapped
        self._client_class = original

    def _on_creating_client_class(
        self, class_attributes: Any = None, base_classes: Any = None, **_: Any
    ) -> None:
        try:
            if not self._handlers.enabled or base_classes is None:
                return
            base = AsyncInstrumentedClient if _is_async(base_classes) else InstrumentedClient
            if base not in base_classes:
                base_classes.insert(0, base)
            class_attributes["_evobs"] = self
            class_attributes["_evobs_class_ns"] = perf_counter_ns()
            if base is InstrumentedClient and "upload_file" in class_attributes:
                # boto3 (on creating-client-class.s3, which runs before this generic
                # handler) has injected its managed-transfer methods: give them a span.
                from ._transfer import wrap_transfer_methods

                wrap_transfer_methods(class_attributes)
        except Exception as exc:
            self._handlers.errors.record("creating-client-class", exc)


def _weak(obj: Any) -> Any:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


def _unregister(emitter: Any) -> None:
    for event, _ in _PER_CALL:
        emitter.unregister(f"{event}.*.*", unique_id=_UID + event)
    emitter.unregister("creating-client-class", unique_id=_UID + "creating-client-class")
    emitter.unregister("creating-resource-class", unique_id=_UID + "creating-resource-class")


def _build_signals(
    options: Options,
    tracer_provider: trace.TracerProvider | None,
    registry: CollectorRegistry,
    meter_provider: metrics.MeterProvider | None = None,
) -> tuple[Any, ...]:
    """Built-in signals by name (imported only when enabled); traces first, so the
    span exists when metrics and logs read its trace id. The OpenTelemetry metrics
    signal comes before traces: its call_ended then runs while the call span is still
    current, so the SDK's exemplars point at the call's own span."""
    names = [s for s in options.signals if isinstance(s, str)]
    out: list[Any] = []
    if "otel_metrics" in names and not _truthy("OTEL_SDK_DISABLED"):
        from ._registry import MetricConflictError
        from .signals.otel_metrics import OtelMetricsSignal

        try:
            out.append(OtelMetricsSignal(meter_provider, options))
        except MetricConflictError:
            raise
        except Exception as exc:
            # A meter provider that cannot even give a meter costs only this signal.
            HandlerErrors(registry).record("instrument", exc)
    if "traces" in names and not _truthy("OTEL_SDK_DISABLED"):
        from .signals.traces import TracesSignal

        try:
            out.append(TracesSignal(tracer_provider, options))
        except Exception as exc:
            # A tracer provider that cannot even give a tracer costs only the traces
            # (DESIGN 5): counted and logged once, metrics and logs carry on.
            HandlerErrors(registry).record("instrument", exc)
    if "metrics" in names:
        from .signals.metrics import MetricsSignal

        out.append(MetricsSignal(registry, options))
    if "logs" in names:
        from .signals.logs import LogsSignal

        out.append(LogsSignal(options, registry))
    out.extend(s for s in options.signals if not isinstance(s, str))
    return tuple(out)


# -- the public functions -----------------------------------------------------------


def _default_session() -> Any:
    try:
        import boto3
    except ImportError:  # pragma: no cover - boto3 is optional
        raise TypeError(
            "evobs.instrument(None) instruments boto3's default session, but boto3 is not "
            "installed; pass a botocore session or client instead"
        ) from None
    return boto3._get_default_session()


def _resolve(target: Any) -> tuple[str, Any, Any]:
    """(kind, the object to hold, the emitter to register on) for a supported target."""
    if target is None:
        target = _default_session()
    if isinstance(target, BaseClient):
        return "client", target, target.meta.events
    if isinstance(target, BotocoreSession):
        return "session", target, target.get_component("event_emitter")
    inner = getattr(target, "_session", None)
    if isinstance(inner, BotocoreSession) and type(target).__module__.startswith(
        ("boto3", "aioboto3")
    ):
        return "session", target, inner.get_component("event_emitter")
    raise TypeError(
        "evobs.instrument() takes a boto3.Session, a botocore session, a client "
        "(botocore/boto3/aiobotocore) or None for boto3's default session; "
        f"got {type(target).__name__}: {target!r:.80}"
    )


def instrument(
    target: Any = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    **options: Any,
) -> Instrumentation:
    """Instrument a session or client: every AWS call through it becomes a span,
    metrics and a log event. Idempotent for the same options."""
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(
            "evobs: tracer_provider must be an opentelemetry TracerProvider, "
            f"got {type(tracer_provider).__name__}"
        )
    if meter_provider is not None:
        from opentelemetry.metrics import MeterProvider  # only loaded when used

        if not isinstance(meter_provider, MeterProvider):
            raise TypeError(
                "evobs: meter_provider must be an opentelemetry MeterProvider, "
                f"got {type(meter_provider).__name__}"
            )
    if registry is not None and not isinstance(registry, CollectorRegistry):
        raise TypeError(
            "evobs: registry must be a prometheus_client CollectorRegistry, "
            f"got {type(registry).__name__}"
        )
    opts = Options(**options)
    kind, obj, emitter = _resolve(target)
    registry = REGISTRY if registry is None else registry
    with _LOCK:
        existing = _INSTALLED.get(emitter)
        if existing is None and kind == "client":
            owner = getattr(type(obj), "_evobs", None)
            if isinstance(owner, Instrumentation) and owner.enabled:
                existing = owner
        if existing is not None:
            if (
                existing.options == opts
                and existing.tracer_provider is tracer_provider
                and existing.meter_provider is meter_provider
                and existing.registry is registry
            ):
                return existing
            raise ValueError(
                f"evobs: {type(obj).__name__} is already instrumented with other options; "
                "call evobs.uninstrument() on it first"
            )
        if _truthy("EVOBS_DISABLED"):
            return Instrumentation(
                obj,
                emitter,
                opts,
                tracer_provider,
                registry,
                disabled=True,
                meter_provider=meter_provider,
            )
        inst = Instrumentation(
            obj, emitter, opts, tracer_provider, registry, meter_provider=meter_provider
        )
        if kind == "client":
            inst._install_client(obj)
        else:
            inst._install_session(emitter)
        _INSTALLED[emitter] = inst
        return inst


def uninstrument(target: Any = None) -> None:
    """Undo ``instrument(target)``. Clients created from the session stop recording too."""
    if target is None:
        try:
            import boto3
        except ImportError:  # pragma: no cover
            return
        target = boto3.DEFAULT_SESSION
        if target is None:
            return
    if isinstance(target, Instrumentation):
        target.uninstrument()
        return
    kind, _, emitter = _resolve(target)
    with _LOCK:
        inst = _INSTALLED.get(emitter)
        if inst is not None:
            inst.uninstrument()
        elif kind == "client":
            # A client created from an instrumented session: stop this client only.
            _unregister(emitter)
