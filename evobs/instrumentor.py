"""evobs for the OpenTelemetry distribution: ``opentelemetry-instrument python app.py``.

The ``opentelemetry_instrumentor`` entry point ``evobs`` names
:class:`EvobsInstrumentor`, so the distribution's auto-instrumentation instruments
the whole process (``evobs.instrument_all``) with no code change, with options from
``EVOBS_*`` environment variables (``docs/configuration.md``) and ``/metrics`` served
when ``EVOBS_METRICS_PORT`` is set. Needs the ``instrumentation`` extra
(``pip install 'evobs[instrumentation]'``), which brings ``opentelemetry-instrumentation``.

When opentelemetry-instrumentation-botocore is installed too, pick one with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=botocore`` (or ``=evobs``): with both, every
call gets two call spans, and evobs says so once in its log.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ._options import options_from_env
from ._process import instrument_all, uninstrument_all

__all__ = ["EvobsInstrumentor"]


class EvobsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Process-wide evobs as an OpenTelemetry instrumentor."""

    _metrics_server: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("botocore >= 1.35",)

    def _instrument(self, **kwargs: Any) -> None:
        options = options_from_env()
        options.update(
            (k, v) for k, v in kwargs.items() if k not in ("tracer_provider", "meter_provider")
        )
        options.pop("skip_dep_check", None)
        instrument_all(tracer_provider=kwargs.get("tracer_provider"), **options)
        port = os.environ.get("EVOBS_METRICS_PORT", "").strip()
        if port:
            from .signals.metrics import start_metrics_server

            addr = os.environ.get("EVOBS_METRICS_ADDR", "").strip() or "127.0.0.1"
            type(self)._metrics_server = start_metrics_server(port=int(port), addr=addr)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument_all()
        server, type(self)._metrics_server = type(self)._metrics_server, None
        if server is not None:
            server.shutdown()
