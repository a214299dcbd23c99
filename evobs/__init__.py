"""evobs: one line, ``evobs.instrument(session)``, and every AWS call made through
boto3/botocore becomes an OpenTelemetry span, Prometheus metrics and a structured
log event, correlated by trace id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._call import Attempt, Call
from ._install import Instrumentation, instrument, uninstrument
from ._version import __version__
from .signals import ClientCreated, ResourceCreated

if TYPE_CHECKING:
    from ._configure import Telemetry, configure
    from ._process import ProcessInstrumentation, instrument_all, uninstrument_all
    from ._propagation import extract_context
    from .signals._protocol import Signal
    from .signals.metrics import start_metrics_server

__all__ = [
    "Attempt",
    "Call",
    "ClientCreated",
    "Instrumentation",
    "ProcessInstrumentation",
    "ResourceCreated",
    "Signal",
    "Telemetry",
    "__version__",
    "configure",
    "extract_context",
    "instrument",
    "instrument_all",
    "start_metrics_server",
    "uninstrument",
    "uninstrument_all",
]

# Loaded on first use: a Lambda cold start pays only for what it touches.
_LAZY = {
    "configure": ("evobs._configure", "configure"),
    "extract_context": ("evobs._propagation", "extract_context"),
    "Telemetry": ("evobs._configure", "Telemetry"),
    "start_metrics_server": ("evobs.signals.metrics", "start_metrics_server"),
    "instrument_all": ("evobs._process", "instrument_all"),
    "uninstrument_all": ("evobs._process", "uninstrument_all"),
    "ProcessInstrumentation": ("evobs._process", "ProcessInstrumentation"),
    "Signal": ("evobs.signals._protocol", "Signal"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'evobs' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(target[0]), target[1])
    globals()[name] = value
    return value
