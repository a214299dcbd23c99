"""instrument / uninstrument: registration on botocore's event system, and the handle.

Only botocore's event system is used: the per-call handlers are registered first on
``<event>.*.*``, and the safety net that also ends each call (``_client``) is a base
class added at creating-client-class, the documented way to extend generated clients. A client
instrumented after its creation gets the same base class by a ``__class__`` swap
that ``uninstrument`` undoes. Process-wide mode lives in ``_process``.
"""

from __future__ import annotations

import sys
import weakref
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Final

from botocore.client import BaseClient
from botocore.session import Session as BotocoreSession
from opentelemetry import trace

from ._client import TRANSFER_METHODS, base_class_for, wrap_transfer_methods
from ._compat.botocore import register_first, unaliased
from ._fork import ForkSafeLock
from ._handlers import Fanout, Handlers
from ._log import HandlerErrors, get_logger
from ._options import Options, truthy

if TYPE_CHECKING:
    from opentelemetry import metrics
    from prometheus_client import CollectorRegistry

    from .signals import Signal

__all__ = [
    "INSTALLED",
    "LOCK",
    "Instrumentation",
    "Outputs",
    "install",
    "instrument",
    "release_import_hook",
    "resolve_target",
    "uninstrument",
    "validate_providers",
]

#: (event, handler attribute) for the six per-call events evobs needs, each registered
#: first on ``<event>.*.*`` so it runs before every other handler of the event (the
#: call itself starts in the client's frame, where provide-client-params fires).
_PER_CALL: Final = (
    ("before-call", "before_call"),
    ("request-created", "request_created"),
    ("before-send", "before_send"),
    ("needs-retry", "needs_retry"),
    ("after-call", "after_call"),
    ("after-call-error", "after_call_error"),
)
_UID: Final = "evobs."

#: Every instrumentation by the event emitter it registered on.
INSTALLED: Final[weakref.WeakKeyDictionary[Any, Instrumentation]] = weakref.WeakKeyDictionary()
#: Held while registering or unregistering (botocore's emitter is not safe for that).
LOCK: Final = ForkSafeLock(reentrant=True)


# -- what calls are rendered into ------------------------------------------------------


class Outputs:
    """The signals of an instrumentation and what they share, built once from its options
    (and shared by every session that process-wide mode instruments)."""

    __slots__ = (
        "errors",
        "fanout",
        "meter_provider",
        "options",
        "registry",
        "request_header",
        "signals",
        "tracer_provider",
    )

    def __init__(
        self,
        options: Options,
        tracer_provider: trace.TracerProvider | None,
        registry: CollectorRegistry | None,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        disabled: bool = False,
    ) -> None:
        self.options = options
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.registry = registry
        self.errors = HandlerErrors(registry, eager="metrics" in options.signals)
        self.signals: tuple[Signal, ...] = (
            ()
            if disabled
            else _build_signals(options, tracer_provider, registry, self.errors, meter_provider)
        )
        self.fanout = Fanout(self.signals)
        traces_on = any(getattr(s, "name", None) == "traces" for s in self.signals)
        self.request_header = None
        if traces_on and options.xray_header:
            from ._propagation import request_header_writer  # messaging and X-Ray only

            self.request_header = request_header_writer()

    def same(
        self, options: Options, tracer_provider: Any, registry: Any, meter_provider: Any = None
    ) -> bool:
        if (
            self.options != options
            or self.tracer_provider is not tracer_provider
            or self.meter_provider is not meter_provider
        ):
            return False
        return self.registry is registry or _registry(self.registry) is _registry(registry)


def _build_signals(
    options: Options,
    tracer_provider: trace.TracerProvider | None,
    registry: CollectorRegistry | None,
    errors: HandlerErrors,
    meter_provider: metrics.MeterProvider | None = None,
) -> tuple[Signal, ...]:
    """Built-in signals by name, each imported only when enabled, then the user's own
    signal objects. Each reads only the call record; one exception to "any order": the
    OpenTelemetry metrics signal is delivered before the traces signal, so that at its
    ``call_ended`` the call span is still current and the SDK's exemplars point at it."""
    out: list[Signal] = []
    names = [n for n in options.signals if isinstance(n, str)]
    if "otel_metrics" in names:
        names.remove("otel_metrics")
        names.insert(0, "otel_metrics")
    for name in [*names, *(s for s in options.signals if not isinstance(s, str))]:
        if not isinstance(name, str):
            out.append(name)
        elif name == "otel_metrics":
            if truthy("OTEL_SDK_DISABLED"):
                continue
            from ._registry import MetricConflictError
            from .signals.otel_metrics import OtelMetricsSignal

            try:
                out.append(OtelMetricsSignal(meter_provider, options))
            except MetricConflictError:
                raise
            except Exception as exc:
                # A meter provider that cannot even give a meter costs only this signal.
                errors.record("instrument", exc)
        elif name == "traces":
            if truthy("OTEL_SDK_DISABLED"):
                continue
            from .signals.traces import TracesSignal

            try:
                out.append(TracesSignal(tracer_provider, options, errors))
            except Exception as exc:
                # A tracer provider that cannot even give a tracer costs only the traces
                # (DESIGN 5): counted and logged once, metrics and logs carry on.
                errors.record("instrument", exc)
        elif name == "metrics":
            from .signals.metrics import MetricsSignal

            out.append(MetricsSignal(_registry(registry), options))
        elif name == "logs":
            from .signals.logs import LogsSignal

            out.append(LogsSignal(options, registry))
    return tuple(out)


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    """The registry given, else prometheus_client's global one: its stand-in until
    prometheus_client is imported (``_registry``)."""
    if registry is not None:
        return registry
    from ._registry import global_registry

    return global_registry()


# -- the handle ------------------------------------------------------------------


class Instrumentation:
    """What ``instrument()`` returns: the target, its options, and ``uninstrument()``."""

    __slots__ = (
        "__weakref__",
        "_client_class",
        "_emitter",
        "_target",
        "handlers",
        "outputs",
        "process_wide",
    )

    def __init__(
        self,
        target: Any,
        emitter: Any,
        outputs: Outputs,
        *,
        disabled: bool = False,
        process_wide: bool = False,
    ) -> None:
        self._target = _weak(target)
        self._emitter = _weak(emitter)
        self.outputs = outputs
        self._client_class: type | None = None
        #: Made by process-wide mode (``instrument_all``): a per-session ``instrument()``
        #: of the same session replaces it.
        self.process_wide = process_wide
        self.handlers = Handlers(
            outputs.options, outputs.fanout, outputs.errors, outputs.request_header
        )
        self.handlers.enabled = not disabled

    @property
    def target(self) -> Any:
        return self._target()

    @property
    def options(self) -> Options:
        return self.outputs.options

    @property
    def signals(self) -> tuple[Signal, ...]:
        return self.outputs.signals

    @property
    def tracer_provider(self) -> trace.TracerProvider | None:
        return self.outputs.tracer_provider

    @property
    def meter_provider(self) -> metrics.MeterProvider | None:
        return self.outputs.meter_provider

    @property
    def registry(self) -> CollectorRegistry:
        if self.outputs.registry is None:
            import prometheus_client  # noqa: F401  # REGISTRY itself, evobs's families on it
        return _registry(self.outputs.registry)

    @property
    def enabled(self) -> bool:
        return self.handlers.enabled

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"<evobs.Instrumentation {state} target={self.target!r}>"

    def uninstrument(self) -> None:
        """Stop recording: clear the shared flag and unregister every reachable handler."""
        with LOCK:
            self.handlers.enabled = False
            emitter = self._emitter()
            if emitter is not None:
                _unregister(emitter)
                if INSTALLED.get(emitter) is self:
                    del INSTALLED[emitter]
            target = self.target
            original = self._client_class
            if original is not None and target is not None:
                if type(target).__bases__[1:2] == (original,):
                    target.__class__ = original
                self._client_class = None
            release_import_hook()

    # -- registration -------------------------------------------------------------

    def _register_per_call(self, emitter: Any) -> None:
        handlers = self.handlers
        emitter = unaliased(emitter)  # evobs's names need no aliasing
        for event, attr in _PER_CALL:
            register_first(emitter, f"{event}.*.*", getattr(handlers, attr), _UID + event)

    def install_session(self, emitter: Any) -> None:
        emitter = unaliased(emitter)
        register_first(
            emitter,
            "creating-client-class",
            self._on_creating_client_class,
            _UID + "creating-client-class",
        )
        register_first(
            emitter,
            "creating-resource-class",
            self.handlers.resource_created,
            _UID + "creating-resource-class",
        )
        self._register_per_call(emitter)

    def install_client(self, client: Any) -> None:
        self._register_per_call(client.meta.events)
        original = type(client)
        base = base_class_for(original.__mro__)
        attributes: dict[str, Any] = {"_evobs": self, "_evobs_class_ns": 0}
        if hasattr(original, "upload_file"):
            attributes.update(
                (n, getattr(original, n)) for n in TRANSFER_METHODS if hasattr(original, n)
            )
            wrap_transfer_methods(attributes)
        client.__class__ = type(original.__name__, (base, original), attributes)
        self._client_class = original

    def _on_creating_client_class(
        self, class_attributes: Any = None, base_classes: Any = None, **_: Any
    ) -> None:
        try:
            if not self.handlers.enabled or base_classes is None:
                return
            base = base_class_for(base_classes)
            if base not in base_classes:
                base_classes.insert(0, base)
            class_attributes["_evobs"] = self
            class_attributes["_evobs_class_ns"] = perf_counter_ns()
            if "upload_file" in class_attributes:
                # boto3 (on creating-client-class.s3, which runs before this generic
                # handler) has injected its managed-transfer methods: give them a span.
                wrap_transfer_methods(class_attributes)
            _note_peer_instrumentation()
        except Exception as exc:
            self.handlers.errors.record("creating-client-class", exc)


def release_import_hook() -> None:
    """Take evobs's post-import hook for prometheus_client (``_registry``) out of
    ``sys.meta_path`` once no instrumentation is left to need it (the caller holds LOCK)."""
    deferred = sys.modules.get("evobs._registry")
    if deferred is None or not deferred.hook_installed():
        return
    process = sys.modules.get("evobs._process")
    if process is not None and process.current() is not None:
        return
    if any(inst.enabled for inst in list(INSTALLED.values())):
        return
    deferred.remove_hook()


def _weak(obj: Any) -> Any:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


def _unregister(emitter: Any) -> None:
    emitter = unaliased(emitter)  # where ``_register_per_call`` registered
    for event, _ in _PER_CALL:
        emitter.unregister(f"{event}.*.*", unique_id=_UID + event)
    emitter.unregister("creating-client-class", unique_id=_UID + "creating-client-class")
    emitter.unregister("creating-resource-class", unique_id=_UID + "creating-resource-class")


_PEER_NOTED: list[bool] = [False]


def _note_peer_instrumentation() -> None:
    """Log once if opentelemetry-instrumentation-botocore is active too: every call would
    then get two call spans (``docs/quickstart.md`` says how to pick one)."""
    if _PEER_NOTED[0]:
        return
    module = sys.modules.get("opentelemetry.instrumentation.botocore")
    if module is None:
        return
    try:
        active = bool(module.BotocoreInstrumentor().is_instrumented_by_opentelemetry)
    except Exception:
        return
    if active and not _PEER_NOTED[0]:
        _PEER_NOTED[0] = True
        get_logger().warning(
            "evobs.peer_instrumentation_active",
            reason="opentelemetry-instrumentation-botocore also instruments botocore in this "
            "process: each AWS call gets a span from both. Keep one: disable the other with "
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=botocore (or =evobs).",
        )


# -- the public functions -----------------------------------------------------------


def resolve_target(target: Any) -> tuple[str, Any, Any]:
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


def _default_session() -> Any:
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise TypeError(
            "evobs.instrument(None) instruments boto3's default session, but boto3 is not "
            "installed: pip install 'evobs[boto3]' (or pass a botocore session or client)"
        ) from None
    from ._compat.botocore import default_boto3_session

    return default_boto3_session()


def validate_providers(tracer_provider: Any, registry: Any, meter_provider: Any = None) -> None:
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
    if registry is not None:
        from prometheus_client import CollectorRegistry

        if not isinstance(registry, CollectorRegistry):
            raise TypeError(
                "evobs: registry must be a prometheus_client CollectorRegistry, "
                f"got {type(registry).__name__}"
            )


def install(
    kind: str, obj: Any, emitter: Any, outputs: Outputs, *, process_wide: bool = False
) -> Instrumentation:
    """Register one instrumentation on a resolved target (the caller holds ``LOCK``)."""
    inst = Instrumentation(obj, emitter, outputs, process_wide=process_wide)
    if kind == "client":
        inst.install_client(obj)
    else:
        inst.install_session(emitter)
    INSTALLED[emitter] = inst
    return inst


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
    validate_providers(tracer_provider, registry, meter_provider)
    opts = Options(**options)
    kind, obj, emitter = resolve_target(target)
    with LOCK:
        existing = INSTALLED.get(emitter)
        if existing is None and kind == "client":
            owner = getattr(type(obj), "_evobs", None)
            if isinstance(owner, Instrumentation) and owner.enabled:
                existing = owner
        if existing is not None:
            if existing.process_wide:
                existing.uninstrument()  # per-session options win for their session
            elif existing.outputs.same(opts, tracer_provider, registry, meter_provider):
                return existing
            else:
                raise ValueError(
                    f"evobs: {type(obj).__name__} is already instrumented with other options; "
                    "call evobs.uninstrument() on it first"
                )
        if truthy("EVOBS_DISABLED"):
            outputs = Outputs(opts, tracer_provider, registry, meter_provider, disabled=True)
            return Instrumentation(obj, emitter, outputs, disabled=True)
        return install(kind, obj, emitter, Outputs(opts, tracer_provider, registry, meter_provider))


def uninstrument(target: Any = None) -> None:
    """Undo ``instrument(target)``. Clients created from the session stop recording too."""
    if target is None:
        boto3 = sys.modules.get("boto3")
        target = getattr(boto3, "DEFAULT_SESSION", None)
        if target is None:
            return
    if isinstance(target, Instrumentation):
        target.uninstrument()
        return
    kind, _, emitter = resolve_target(target)
    with LOCK:
        inst = INSTALLED.get(emitter)
        if inst is not None:
            inst.uninstrument()
        elif kind == "client":
            # A client created from an instrumented session: stop this client only.
            _unregister(emitter)
