"""``evobs.configure()``: the application-side setup of the three outputs.

Libraries call :func:`evobs.instrument`; an application may also call
:func:`configure` once at start-up to get somewhere for the signals to go:

- traces: an SDK ``TracerProvider`` (resource with ``service.name``) whose spans
  go through a ``BatchSpanProcessor`` to the OTLP/HTTP exporter (or the console),
- metrics: the Prometheus ``/metrics`` HTTP server,
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
from typing import TYPE_CHECKING, Any, Final, Literal

from prometheus_client import REGISTRY, CollectorRegistry

from ._env import truthy
from ._export import (
    DEFAULT_SPAN_QUEUE_SIZE,
    CountingSpanProcessor,
    build_tracer_provider,
    resolve_otlp_endpoint,
)
from ._log import get_logger

if TYPE_CHECKING:
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
#: After a timed-out shutdown, how long the export thread gets to fail (and count) what
#: it still holds once the exporter is shut down; it no longer waits on the network then.
_ABANDON_GRACE_SECONDS: Final = 1.0

_HANDLER_MARK: Final = "_evobs_configured"

Traces = Literal["otlp", "console"]
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
        "metrics_server",
        "otlp_endpoint",
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
        self._span_processor: CountingSpanProcessor | None = None
        self._log_handler: logging.Handler | None = None
        self._log_level_before = logging.NOTSET
        self._instrumentations: list[Instrumentation] = []
        self._shut_down = False
        self._lock = threading.Lock()

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
        """``evobs.instrument(target)`` into this provider and registry; undone by shutdown()."""
        from ._install import instrument

        handle = instrument(
            target, tracer_provider=self.tracer_provider, registry=self.registry, **options
        )
        with self._lock:
            if handle not in self._instrumentations:
                self._instrumentations.append(handle)
        return handle

    def force_flush(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> bool:
        """Export the queued spans now; waits ``timeout`` seconds at most."""
        provider = self.tracer_provider
        if provider is None:
            return True
        return _bounded(lambda: provider.force_flush(int(timeout * 1000)), timeout)[0]

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> bool:
        """Flush and stop everything configure() started; returns within ``timeout`` seconds.

        Returns False if the spans could not all be exported in time (a down or
        hanging collector): the rest are abandoned (and counted as dropped if the
        exporter gives up on them), never waited for. Idempotent.
        """
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
        flushed = True
        provider = self.tracer_provider
        if provider is not None:
            flushed, flushing = _bounded(provider.shutdown, timeout)
            if not flushed and self._span_processor is not None:
                # Abort the exporter's retry back-off so the worker thread ends soon: the
                # spans still queued then fail at once and are counted as dropped.
                exporter = getattr(self._span_processor.processor, "span_exporter", None)
                try:
                    if exporter is not None:
                        exporter.shutdown()
                except Exception:  # best effort on a stuck exporter
                    pass
                flushing.join(_ABANDON_GRACE_SECONDS)
        server, self.metrics_server = self.metrics_server, None
        if server is not None:
            server.shutdown()
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
            f"otlp_endpoint={self.otlp_endpoint!r}, metrics_url={self.metrics_url!r})"
        )


def _bounded(func: Any, timeout: float) -> tuple[bool, threading.Thread]:
    """Run ``func`` on a daemon thread and wait ``timeout`` seconds at most."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(func())
        except Exception as exc:
            get_logger().warning("evobs.configure.flush_failed", error_type=type(exc).__name__)
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
    if metrics_port is not None and (
        not isinstance(metrics_port, int) or isinstance(metrics_port, bool) or metrics_port < 0
    ):
        raise ValueError(
            f"evobs.configure: metrics_port must be a port number or None, got {metrics_port!r}"
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
