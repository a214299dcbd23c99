"""Process-wide mode: every botocore session created from now on is instrumented.

botocore has no event for "a session was created", so this is the one place evobs
wraps something: ``botocore.session.Session.__init__`` (which ``boto3.Session``,
``botocore.session.get_session()`` and aiobotocore's ``AioSession`` all run). The
wrapper calls the original and then registers evobs's handlers on the new session's
event emitter, exactly as ``instrument(session)`` does. ``uninstrument_all()``
restores the original ``__init__`` (or, if something wrapped it after evobs, leaves
a wrapper that does nothing) and uninstruments every session it instrumented.

All sessions share one set of signals (one tracer, one set of metric children), so
a library that builds a session per request costs a registration, not a signal.
A per-session ``instrument()`` replaces process-wide mode's instrumentation of that
session: its options win for its own session.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.session import Session as BotocoreSession

from ._install import (
    INSTALLED,
    LOCK,
    Instrumentation,
    Outputs,
    install,
    release_import_hook,
    validate_providers,
)
from ._options import Options, truthy

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

__all__ = ["ProcessInstrumentation", "instrument_all", "uninstrument_all"]


class ProcessInstrumentation:
    """What ``instrument_all()`` returns: the shared options and ``uninstrument()``."""

    __slots__ = ("__weakref__", "_sessions", "outputs")

    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs
        #: The instrumentations made for new sessions (weak: sessions come and go).
        self._sessions: weakref.WeakSet[Instrumentation] = weakref.WeakSet()

    @property
    def options(self) -> Options:
        return self.outputs.options

    @property
    def sessions(self) -> int:
        """How many sessions it currently instruments."""
        return sum(1 for inst in list(self._sessions) if inst.enabled)

    def adopt(self, session: BotocoreSession) -> None:
        """Instrument a new session (called by the wrapped ``Session.__init__``)."""
        emitter = session.get_component("event_emitter")
        with LOCK:
            if emitter in INSTALLED:
                return
            self._sessions.add(
                install("session", session, emitter, self.outputs, process_wide=True)
            )

    def uninstrument(self) -> None:
        uninstrument_all()

    def __repr__(self) -> str:
        return f"<evobs.ProcessInstrumentation sessions={self.sessions}>"


_CURRENT: list[ProcessInstrumentation | None] = [None]


def current() -> ProcessInstrumentation | None:
    """The process-wide instrumentation in force, if any."""
    return _CURRENT[0]


def _instrumenting_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: BotocoreSession, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        current = _CURRENT[0]
        if current is not None:
            try:
                current.adopt(self)
            except Exception as exc:  # a session always gets built, instrumented or not
                current.outputs.errors.record("instrument_all", exc)

    __init__._evobs_wrapper = True  # type: ignore[attr-defined]
    return __init__


def instrument_all(
    *,
    tracer_provider: TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
    meter_provider: MeterProvider | None = None,
    **options: Any,
) -> ProcessInstrumentation:
    """Instrument every botocore session created from now on (``boto3.Session()``,
    ``botocore.session.get_session()``, aiobotocore's sessions) and boto3's default
    session, with the same options as :func:`evobs.instrument`. Idempotent for the same
    options; undone exactly by :func:`uninstrument_all`."""
    validate_providers(tracer_provider, registry, meter_provider)
    opts = Options(**options)
    with LOCK:
        current = _CURRENT[0]
        if current is not None:
            if current.outputs.same(opts, tracer_provider, registry, meter_provider):
                return current
            raise ValueError(
                "evobs: the process is already instrumented with other options; "
                "call evobs.uninstrument_all() first"
            )
        outputs = Outputs(
            opts, tracer_provider, registry, meter_provider, disabled=truthy("EVOBS_DISABLED")
        )
        current = ProcessInstrumentation(outputs)
        if truthy("EVOBS_DISABLED"):
            return current
        _CURRENT[0] = current
        init = BotocoreSession.__init__
        if not getattr(init, "_evobs_wrapper", False):
            BotocoreSession.__init__ = _instrumenting_init(init)
        default = _boto3_default_session()
        if default is not None:
            current.adopt(default._session)
        return current


def uninstrument_all() -> None:
    """Undo :func:`instrument_all`: new sessions are no longer instrumented, and every
    session it instrumented stops recording."""
    with LOCK:
        current, _CURRENT[0] = _CURRENT[0], None
        init = BotocoreSession.__init__
        if getattr(init, "_evobs_wrapper", False):
            # Restore what was there before evobs (it does nothing with _CURRENT unset,
            # should something else have wrapped it since).
            BotocoreSession.__init__ = init.__wrapped__
        if current is not None:
            for inst in list(current._sessions):
                inst.uninstrument()
        release_import_hook()


def _boto3_default_session() -> Any:
    import sys

    boto3 = sys.modules.get("boto3")
    return getattr(boto3, "DEFAULT_SESSION", None)
