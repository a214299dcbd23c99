"""``evobs.configure()``: the application-side setup of the three outputs.

Libraries call :func:`evobs.instrument`; an application may also call
:func:`configure` once at start-up to get somewhere for the signals to go:

- traces: an SDK ``TracerProvider`` (resource with ``service.name``) whose spans
  go through a ``BatchSpanProcessor`` to the OTLP/HTTP exporter (or the console),
- metrics: the Prometheus ``/metrics`` HTTP server and, when asked
  (``otel_metrics="otlp"``), an SDK ``MeterProvider`` exporting over OTLP/HTTP,
- logs: JSON or console output for the ``evobs`` logger only.

Export always happens off the calling thread with a bounded timeout, so an
unreachable collector never slows or breaks an AWS call. Spans that never leave
the process (queue full, export failed) are counted in
``evobs_spans_dropped_total`` instead of vanishing.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from prometheus_client import REGISTRY, CollectorRegistry

from ._compat.otel_api import no_global_meter_provider
from ._export import (
    DEFAULT_SPAN_QUEUE_SIZE,
    CountingSpanProcessor,
    build_resource,
    build_tracer_provider,
    resolve_otlp_endpoint,
)
from ._fork import ForkSafeLock
from ._log import get_logger
from ._options import truthy

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from ._install import Instrumentation
    from .signals.metrics import MetricsServer

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_SPAN_QUEUE_SIZE",
    "Telemetry",
    "configure",
]

#: ``Telemetry.shutdown()`` returns after this long at most, flushed or not.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
#: After a timed-out flush, how long the export thread gets to fail (and count) what it
#: still holds once the exporter is shut down (it no longer waits on the network then);
#: taken out of the shutdown's own timeout, never added to it.
_ABANDON_GRACE_SECONDS: Final = 1.0
#: The part of a shutdown's timeout the span flush leaves to what follows it (the
#: abandonment above and stopping the metrics server), and its cap in seconds.
_AFTER_FLUSH_SHARE: Final = 0.2
_AFTER_FLUSH_MAX_SECONDS: Final = 1.0

_MAX_PORT: Final = 65535
_HANDLER_MARK: Final = "_evobs_configured"

Traces = Literal["otlp", "console"]
OtelMetrics = Literal["otlp", "console"]
Logs = Literal["json", "console"]


# -- logs ---------------------------------------------------------------------------------


def _log_handler(kind: Logs, stream: Any) -> logging.Handler:
    import structlog

    renderer: Any
    if kind == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        isatty = getattr(stream, "isatty", None)
        renderer = structlog.dev.ConsoleRenderer(colors=bool(isatty and isatty()))
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if kind == "json" else []),
            renderer,
        ],
        # Records that did not come through structlog (a plain logging call on
        # "evobs" or a child logger) get the same fields.
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    return handler


def _remove_our_handlers(target: logging.Logger) -> None:
    for handler in list(target.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            target.removeHandler(handler)
            handler.close()


# -- the handle ---------------------------------------------------------------------------


class Telemetry:
    """What :func:`configure` set up; ``shutdown()`` flushes spans and stops the rest."""

    __slots__ = (
        "_instrumentations",
        "_lock",
        "_log_handler",
        "_log_level_before",
        "_shut_down",
        "_span_processor",
        "is_global",
        "meter_is_global",
        "meter_provider",
        "metrics_server",
        "otlp_endpoint",
        "otlp_metrics_endpoint",
        "registry",
        "tracer_provider",
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        #: The SDK provider configure() built, or None (traces off, OTEL_SDK_DISABLED).
        self.tracer_provider: TracerProvider | None = None
        #: Whether that provider became the global one (only if none was set before).
        self.is_global = False
        #: The full OTLP/HTTP URL spans go to, when ``traces="otlp"``.
        self.otlp_endpoint: str | None = None
        #: The running ``/metrics`` server (``evobs.start_metrics_server``), or None.
        self.metrics_server: MetricsServer | None = None
        #: The SDK MeterProvider configure() built for ``otel_metrics``, or None.
        self.meter_provider: MeterProvider | None = None
        #: Whether that provider became the global one (only if none was set before).
        self.meter_is_global = False
        #: The full OTLP/HTTP URL metrics go to, when ``otel_metrics="otlp"``.
        self.otlp_metrics_endpoint: str | None = None
        self._span_processor: CountingSpanProcessor | None = None
        self._log_handler: logging.Handler | None = None
        self._log_level_before = logging.NOTSET
        self._instrumentations: list[Instrumentation] = []
        self._shut_down = False
        self._lock = ForkSafeLock()

    @property
    def metrics_port(self) -> int | None:
        """The port ``/metrics`` is served on (the real one when 0 was asked), or None."""
        server = self.metrics_server
        return None if server is None else server.port

    @property
    def metrics_url(self) -> str | None:
        """``http://host:port/metrics``, or None when no server runs."""
        server = self.metrics_server
        return None if server is None else server.url

    @property
    def spans_dropped(self) -> float:
        """``evobs_spans_dropped_total`` as it stands."""
        value = self.registry.get_sample_value("evobs_spans_dropped_total")
        return value or 0.0

    def instrument(self, target: Any = None, **options: Any) -> Instrumentation:
        """``evobs.instrument(target)`` into these providers and registry; undone by
        shutdown(). With ``otel_metrics`` configured, the default signals include it."""
        from ._install import instrument
        from ._options import SIGNAL_NAMES

        if self.meter_provider is not None and "signals" not in options:
            options["signals"] = (*SIGNAL_NAMES, "otel_metrics")
        handle = instrument(
            target,
            tracer_provider=self.tracer_provider,
            registry=self.registry,
            meter_provider=self.meter_provider,
            **options,
        )
        with self._lock:
            if handle not in self._instrumentations:
                self._instrumentations.append(handle)
        return handle

    def force_flush(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> bool:
        """Export the queued spans (and the OpenTelemetry metrics) now; waits ``timeout``
        seconds at most."""
        deadline = time.monotonic() + timeout
        flushed = True
        provider = self.tracer_provider
        if provider is not None:
            flushed = _bounded(lambda: provider.force_flush(int(timeout * 1000)), timeout)[0]
        meters = self.meter_provider
        if meters is not None:
            left = max(deadline - time.monotonic(), 0.0)
            flushed = _bounded(lambda: meters.force_flush(left * 1000), left)[0] and flushed
        return flushed

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> bool:
        """Flush and stop everything configure() started; returns within ``timeout`` seconds.

        Every part (span flush, abandoning what is left, the metrics server) takes
        its time out of one deadline, so the whole returns within ``timeout``.
        Returns False if the spans could not all be exported in time (a down or
        hanging collector): the rest are abandoned (and counted as dropped if the
        exporter gives up on them), never waited for. Idempotent.
        """
        deadline = _Deadline(timeout)
        with self._lock:
            if self._shut_down:
                return True
            self._shut_down = True
            atexit.unregister(self.shutdown)
            instrumentations = list(self._instrumentations)
            self._instrumentations.clear()
        for handle in instrumentations:
            try:
                handle.uninstrument()
            except Exception as exc:  # pragma: no cover - uninstrument never raises
                get_logger().warning(
                    "evobs.configure.uninstrument_failed", error_type=type(exc).__name__
                )
        server, self.metrics_server = self.metrics_server, None
        after_flush = min(max(timeout, 0.0) * _AFTER_FLUSH_SHARE, _AFTER_FLUSH_MAX_SECONDS)
        flushed = True
        provider = self.tracer_provider
        if provider is not None:
            flushed, flushing = _bounded(
                provider.shutdown, deadline.share("flush", keep=after_flush)
            )
            if not flushed and self._span_processor is not None:
                exporter = getattr(self._span_processor.processor, "span_exporter", None)
                _bounded(
                    lambda: _abandon(exporter, flushing),
                    deadline.share("abandon", keep=after_flush / 2 if server else 0.0),
                    "evobs.configure.abandon_failed",
                )
        meters = self.meter_provider
        if meters is not None:
            # The last collection is exported in the time left (none left: abandoned).
            left = deadline.share("metrics", keep=after_flush / 2 if server else 0.0)
            flushed = _bounded(lambda: meters.shutdown(left * 1000), left)[0] and flushed
        if server is not None:
            # Stopping the server waits for its poll loop; past the deadline it finishes
            # on its own thread and the port is released then.
            _bounded(
                server.shutdown,
                deadline.share("metrics_server"),
                "evobs.configure.metrics_server_stop_failed",
            )
        handler = self._log_handler
        if handler is not None:
            evobs_logger = logging.getLogger("evobs")
            evobs_logger.removeHandler(handler)
            handler.close()
            evobs_logger.setLevel(self._log_level_before)
            self._log_handler = None
        return flushed

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return (
            f"Telemetry(tracer_provider={'yes' if self.tracer_provider else 'no'}, "
            f"otlp_endpoint={self.otlp_endpoint!r}, metrics_url={self.metrics_url!r}, "
            f"otlp_metrics_endpoint={self.otlp_metrics_endpoint!r})"
        )


class _Deadline:
    """One time budget shared by the parts of a shutdown: each gets what is left of it."""

    __slots__ = ("end",)

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + max(seconds, 0.0)

    def share(self, part: str, keep: float = 0.0) -> float:
        """Seconds ``part`` may take now, keeping ``keep`` for the parts after it."""
        return max(self.end - time.monotonic() - keep, 0.0)


def _abandon(exporter: Any, flushing: threading.Thread) -> None:
    """Abort the exporter's retry back-off, then give the export thread a short grace.

    Once the exporter is shut down the spans still queued fail at once and are counted
    as dropped, so the grace is spent counting, not waiting on the network.
    """
    if exporter is not None:
        exporter.shutdown()
    flushing.join(_ABANDON_GRACE_SECONDS)


def _bounded(
    func: Any, timeout: float, failure_event: str = "evobs.configure.flush_failed"
) -> tuple[bool, threading.Thread]:
    """Run ``func`` on a daemon thread and wait ``timeout`` seconds at most."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(func())
        except Exception as exc:
            get_logger().warning(failure_event, error_type=type(exc).__name__)
            result.append(False)

    thread = threading.Thread(target=run, name="evobs-telemetry-flush", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        return False, thread
    return result[0] is not False, thread


# -- configure ------------------------------------------------------------------------------


def configure(
    service_name: str | None = None,
    *,
    traces: Traces | None = "otlp",
    otlp_endpoint: str | None = None,
    otlp_headers: dict[str, str] | None = None,
    export_timeout: float | None = None,
    span_queue_size: int | None = None,
    metrics_port: int | None = 9464,
    metrics_addr: str = "127.0.0.1",
    otel_metrics: OtelMetrics | None = None,
    logs: Logs | None = "json",
    log_level: int | str = logging.INFO,
    log_stream: Any = None,
    registry: CollectorRegistry | None = None,
    instrument: Any = None,
    set_global: bool = True,
) -> Telemetry:
    """Set up traces, metrics and logs output for an application; see docs/configuration.md.

    - ``traces``: ``"otlp"`` (OTLP/HTTP to ``otlp_endpoint``, else
      ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``, else
      ``http://localhost:4318``), ``"console"`` (stdout), or None (no provider).
      The provider becomes the global one only if none is set yet; otherwise it is
      used only by what is instrumented through the handle (``Telemetry.instrument``
      or ``instrument=``). ``OTEL_SDK_DISABLED=true`` installs no provider.
    - ``metrics_port``: serve ``/metrics`` there (0 picks a free port; None: no
      server). ``metrics_addr`` defaults to loopback: pass ``"0.0.0.0"`` for a
      Prometheus outside the host or container.
    - ``otel_metrics``: ``"otlp"`` (an SDK MeterProvider exporting periodically over
      OTLP/HTTP to the metrics URL of ``otlp_endpoint``, else
      ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``),
      ``"console"``, or None (the default: no provider). Global like the tracer
      provider; what the handle instruments then records the ``otel_metrics`` signal too.
    - ``logs``: ``"json"`` or ``"console"`` output for the ``evobs`` logger only (its
      own handler, level ``log_level``, on ``log_stream``, default stderr); the root
      logger and structlog's global configuration are left alone.
    - ``instrument``: a session or client (or ``True`` for boto3's default session)
      to instrument with this provider and registry.
    - ``set_global=False`` never touches the global TracerProvider.
    """
    if traces not in ("otlp", "console", None):
        raise ValueError(
            f"evobs.configure: traces must be 'otlp', 'console' or None, got {traces!r}"
        )
    if logs not in ("json", "console", None):
        raise ValueError(f"evobs.configure: logs must be 'json', 'console' or None, got {logs!r}")
    if otel_metrics not in ("otlp", "console", None):
        raise ValueError(
            f"evobs.configure: otel_metrics must be 'otlp', 'console' or None, got {otel_metrics!r}"
        )
    if metrics_port is not None and (
        not isinstance(metrics_port, int)
        or isinstance(metrics_port, bool)
        or not 0 <= metrics_port <= _MAX_PORT
    ):
        raise ValueError(
            "evobs.configure: metrics_port must be a port number from 0 to 65535 (0 picks a "
            f"free port) or None, got {metrics_port!r}"
        )
    if span_queue_size is not None and (
        not isinstance(span_queue_size, int) or span_queue_size < 1
    ):
        raise ValueError(
            f"evobs.configure: span_queue_size must be a positive int, got {span_queue_size!r}"
        )

    served = registry  # None lets start_metrics_server merge processes in multiprocess mode
    registry = REGISTRY if registry is None else registry
    telemetry = Telemetry(registry)
    try:
        if traces is not None and not truthy("OTEL_SDK_DISABLED"):
            _configure_traces(
                telemetry,
                service_name,
                traces,
                otlp_endpoint,
                otlp_headers,
                export_timeout,
                span_queue_size,
                set_global,
            )
        if otel_metrics is not None and not truthy("OTEL_SDK_DISABLED"):
            _configure_otel_metrics(
                telemetry,
                service_name,
                otel_metrics,
                otlp_endpoint,
                otlp_headers,
                export_timeout,
                set_global,
            )
        if metrics_port is not None:
            from .signals.metrics import start_metrics_server

            telemetry.metrics_server = start_metrics_server(
                port=metrics_port, addr=metrics_addr, registry=served
            )
        if logs is not None:
            _configure_logs(telemetry, logs, log_level, log_stream)
        if instrument is not None and instrument is not False:
            telemetry.instrument(None if instrument is True else instrument)
        # Flush at interpreter exit, bounded like an explicit shutdown().
        atexit.register(telemetry.shutdown)
    except BaseException:
        telemetry.shutdown(timeout=1.0)
        raise
    return telemetry


def _configure_traces(
    telemetry: Telemetry,
    service_name: str | None,
    traces: Traces,
    otlp_endpoint: str | None,
    otlp_headers: dict[str, str] | None,
    export_timeout: float | None,
    span_queue_size: int | None,
    set_global: bool,
) -> None:
    from opentelemetry import trace

    exporter: Any
    if traces == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError(
                "evobs.configure(traces='otlp') needs the OTLP/HTTP exporter: "
                "pip install 'evobs[otlp]' (or pass traces='console' or None)"
            ) from exc
        endpoint = resolve_otlp_endpoint(otlp_endpoint)
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=otlp_headers, timeout=export_timeout)
        telemetry.otlp_endpoint = endpoint
    else:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter(out=sys.stdout)
    provider, processor = build_tracer_provider(
        service_name,
        exporter=exporter,
        registry=telemetry.registry,
        span_queue_size=span_queue_size,
    )
    telemetry.tracer_provider = provider
    telemetry._span_processor = processor
    if not set_global:
        return
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
        telemetry.is_global = trace.get_tracer_provider() is provider
    if not telemetry.is_global:
        get_logger().info(
            "evobs.configure.provider_not_global",
            reason="a global TracerProvider was already set; evobs's provider is used only "
            "by instrumentations made through the Telemetry handle",
        )


def _configure_otel_metrics(
    telemetry: Telemetry,
    service_name: str | None,
    kind: OtelMetrics,
    otlp_endpoint: str | None,
    otlp_headers: dict[str, str] | None,
    export_timeout: float | None,
    set_global: bool,
) -> None:
    """An SDK MeterProvider whose reader exports on its own thread (every
    ``OTEL_METRIC_EXPORT_INTERVAL`` ms, 60 s by default) to OTLP/HTTP or the console."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter: Any
    if kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "evobs.configure(otel_metrics='otlp') needs the OTLP/HTTP exporter: "
                "pip install 'evobs[otlp]' (or pass otel_metrics='console' or None)"
            ) from exc
        endpoint = resolve_otlp_endpoint(otlp_endpoint, "metrics")
        exporter = OTLPMetricExporter(
            endpoint=endpoint, headers=otlp_headers, timeout=export_timeout
        )
        telemetry.otlp_metrics_endpoint = endpoint
    else:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        exporter = ConsoleMetricExporter(out=sys.stdout)
    # configure()'s own exit handler flushes it, bounded (the SDK's waits up to 30 s).
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(exporter)],
        resource=build_resource(service_name),
        shutdown_on_exit=False,
    )
    telemetry.meter_provider = provider
    if set_global and no_global_meter_provider():
        metrics.set_meter_provider(provider)
        telemetry.meter_is_global = metrics.get_meter_provider() is provider


def _configure_logs(
    telemetry: Telemetry, logs: Logs, log_level: int | str, log_stream: Any
) -> None:
    target = logging.getLogger("evobs")
    _remove_our_handlers(target)
    handler = _log_handler(logs, sys.stderr if log_stream is None else log_stream)
    handler.setLevel(log_level)
    target.addHandler(handler)
    telemetry._log_level_before = target.level
    target.setLevel(log_level)
    telemetry._log_handler = handler
