"""The ``evobs`` command: ``evobs --version`` and ``evobs demo``.

``evobs demo`` needs nothing but the ``demo`` extra: AWS is moto's server,
in-process on a free loopback port, behind the fault proxy that injects
throttling and 5xx answers; Amazon Bedrock Runtime is a local endpoint with canned
completions and real event streams, behind a fault proxy of its own that throttles.
The session is instrumented with all three signals (and the AWS service named as each
call's peer, ``EVOBS_PEER_SERVICE``, unless set otherwise); ``/metrics`` is served
while the workload runs, spans go to OTLP when an endpoint is given or set (else they
stay in memory), and the run ends with a summary read at a glance, naming the traces
worth opening in Jaeger.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from ._version import __version__

__all__ = ["main"]

_DEMO_SERVICE_NAME = "evobs-demo"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evobs",
        description="One-line observability for boto3/botocore: traces, metrics and logs "
        "for every AWS call.",
    )
    parser.add_argument("--version", action="version", version=f"evobs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a mixed S3/DynamoDB/SQS/Bedrock workload on an embedded AWS and show its "
        "telemetry",
        description="Run a realistic S3/DynamoDB/SQS workload against moto's server (embedded, "
        "no credentials or network needed) and a GenAI assistant against a local Bedrock "
        "Runtime endpoint (canned completions, real event streams), behind fault proxies that "
        "inject throttling and 5xx, with evobs's traces, metrics and logs, and print a summary.",
    )
    demo.add_argument(
        "--duration",
        type=_positive_float,
        default=20.0,
        metavar="SECONDS",
        help="how long the workload runs (default: 20)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="after the summary, keep a gentle workload going and serve /metrics until Ctrl-C",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        default=9464,
        metavar="N",
        help="port for /metrics (default: 9464; 0 picks a free port)",
    )
    demo.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for /metrics (default: 127.0.0.1; 0.0.0.0 for a Prometheus in Docker)",
    )
    demo.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="send spans over OTLP/HTTP there, e.g. http://localhost:4318 (default: "
        "OTEL_EXPORTER_OTLP_ENDPOINT if set, else spans stay in memory)",
    )
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 0 to 65535 (0 picks a free port), got {text!r}"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evobs`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    parser.print_help()
    return 0


# -- the demo -------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import rich  # noqa: F401
    except ImportError as exc:
        print(
            f"evobs demo needs the demo extra ({exc.name} is missing): pip install 'evobs[demo]'",
            file=sys.stderr,
        )
        return 2
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    # Errors and warnings go to stderr, so a script reading the summary sees them apart.
    errors = Console(stderr=True, soft_wrap=True)
    try:
        return _DemoRun(args, console, errors).run()
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/]")
        return 130


class _DemoRun:
    """One ``evobs demo`` run: start everything, run, summarise, stop everything."""

    def __init__(self, args: argparse.Namespace, console: Any, errors: Any) -> None:
        self.args = args
        self.console = console
        self.errors = errors
        self._flushed = True
        self._spans_seen = 0

    def run(self) -> int:
        from prometheus_client import CollectorRegistry
        from rich.markup import escape

        from ._configure import configure
        from ._export import otlp_endpoint_is_set, resolve_otlp_endpoint

        args = self.args
        endpoint = args.otlp_endpoint or (
            resolve_otlp_endpoint() if otlp_endpoint_is_set() else None
        )
        registry = CollectorRegistry()
        try:
            telemetry = configure(
                _DEMO_SERVICE_NAME,
                traces="otlp" if endpoint else None,
                otlp_endpoint=endpoint,
                metrics_port=args.metrics_port,
                metrics_addr=args.metrics_addr,
                logs=None,
                registry=registry,
                # A collector on this machine answers in milliseconds; a down one
                # must not hold the demo's exit for the exporter's default 10 s.
                export_timeout=3.0,
            )
        except OSError as exc:
            hint = (
                "\nPass [bold]--metrics-port 0[/] to pick a free port."
                if exc.errno == errno.EADDRINUSE
                else ""
            )
            message = escape(str(exc.strerror or exc))
            self.errors.print(f"[red]{message}[/]{hint}", highlight=False)
            return 2
        evobs_logger = logging.getLogger("evobs")
        level_before = evobs_logger.level
        from .demo.summary import LogTally

        logs = LogTally()
        evobs_logger.addHandler(logs.handler)
        evobs_logger.setLevel(logging.DEBUG)
        try:
            return self._run(telemetry, registry, logs)
        finally:
            evobs_logger.removeHandler(logs.handler)
            evobs_logger.setLevel(level_before)
            if not telemetry.shutdown(timeout=3.0 if self._flushed else 0.5):
                self.errors.print(
                    "[yellow]Some spans could not be exported before exit "
                    f"(is the collector at {telemetry.otlp_endpoint} up?)[/]"
                )
            if telemetry.otlp_endpoint:
                # The final count, after shutdown: every span is either exported or dropped.
                self.console.print(
                    f"OTLP export: {self._spans_seen:,} spans, "
                    f"{telemetry.spans_dropped:,.0f} dropped"
                )

    def _run(self, telemetry: Any, registry: Any, logs: Any) -> int:
        from opentelemetry.sdk.trace import TracerProvider

        from . import instrument
        from ._export import build_resource
        from ._options import flag
        from .demo.assistant import Assistant, bedrock_endpoint
        from .demo.summary import SpanCollector, render_summary
        from .demo.workload import EXPECTED_ERRORS, Workload, demo_endpoint, demo_session

        args = self.args
        console = self.console
        collector = SpanCollector()
        provider = telemetry.tracer_provider
        if provider is None:
            provider = TracerProvider(resource=build_resource(_DEMO_SERVICE_NAME))
        provider.add_span_processor(collector)

        with demo_endpoint() as (moto_url, faults), bedrock_endpoint() as (bedrock, proxy):
            session = demo_session()
            handle = instrument(
                session,
                tracer_provider=provider,
                registry=registry,
                expected_errors=EXPECTED_ERRORS,
                # Name S3, DynamoDB and SQS as each call's peer, so Jaeger draws them as
                # services (opt-in, as the conventions rate it; EVOBS_PEER_SERVICE=0 wins).
                peer_service=flag("EVOBS_PEER_SERVICE", True),
            )
            try:
                assistant = Assistant(session, proxy.url, proxy=proxy, server=bedrock)
                workload = Workload(
                    session,
                    faults.url,
                    faults=faults,
                    tracer_provider=provider,
                    assistant=assistant,
                )
                header = (
                    f"[bold]evobs demo[/]  AWS: moto at {moto_url}, behind the fault proxy at "
                    f"{faults.url}\n            Bedrock Runtime: canned model at {bedrock.url}, "
                    f"behind the fault proxy at {proxy.url}\n"
                    f"            metrics: {telemetry.metrics_url or 'off'}   "
                    f"traces: {telemetry.otlp_endpoint or 'in memory'}"
                )
                started = time.monotonic()
                interrupted = self._live(workload, collector, logs, header, args.duration)
                wall = time.monotonic() - started
                self._flushed = telemetry.force_flush(timeout=3.5)
                self._spans_seen = collector.spans_seen
                render_summary(
                    console,
                    collector,
                    wall_seconds=wall,
                    exported=telemetry.otlp_endpoint is not None,
                    telemetry_rows=self._telemetry_rows(
                        telemetry, collector, logs, workload, moto_url, registry
                    ),
                )
                failures = workload.tally.failures
                if failures:
                    self.errors.print(
                        "[red]The workload hit unexpected (non-AWS) exceptions: "
                        + ", ".join(f"{name} x{n}" for name, n in sorted(failures.items()))
                        + "[/]"
                    )
                if interrupted:
                    return 130
                if args.serve:
                    self._serve(workload, telemetry)
                return 1 if failures else 0
            finally:
                handle.uninstrument()

    def _live(self, workload: Any, collector: Any, logs: Any, header: str, duration: float) -> bool:
        """Run the workload under a live view; True if Ctrl-C stopped it."""
        from rich.live import Live

        from .demo.summary import live_view

        console = self.console
        console.print(header, highlight=False)
        with console.status("creating the bucket, table and queue..."):
            workload.setup()
        stop = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            try:
                workload.run(duration, stop)
            except BaseException as exc:  # reported below, on the main thread
                error.append(exc)

        worker = threading.Thread(target=run, name="evobs-demo-workload", daemon=True)
        started = time.monotonic()
        worker.start()

        def view() -> Any:
            _, recent = logs.snapshot()
            return live_view(collector, time.monotonic() - started, duration, recent)

        interrupted = False
        with Live(view(), console=console, refresh_per_second=4, transient=False) as live:
            try:
                while worker.is_alive():
                    worker.join(timeout=0.25)
                    live.update(view())
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                console.print("[yellow]Interrupted: stopping the workload...[/]")
                worker.join(timeout=10)
            live.update(view())
        if error:
            raise error[0]
        return interrupted

    def _serve(self, workload: Any, telemetry: Any) -> None:
        """Keep a gentle workload going (so dashboards stay alive) until Ctrl-C."""
        console = self.console
        console.print(
            f"\nServing [bold]{telemetry.metrics_url}[/] with a gentle workload; "
            "press Ctrl-C to stop."
        )
        stop = threading.Event()
        workload.think = 0.05
        worker = threading.Thread(
            target=workload.run, args=(None, stop), name="evobs-demo-serve", daemon=True
        )
        worker.start()
        try:
            while worker.is_alive():
                worker.join(timeout=0.5)
        except KeyboardInterrupt:
            console.print("stopping...")
        finally:
            stop.set()
            worker.join(timeout=10)

    def _telemetry_rows(
        self,
        telemetry: Any,
        collector: Any,
        logs: Any,
        workload: Any,
        moto_url: str,
        registry: Any,
    ) -> list[tuple[str, str]]:
        faults = workload.chaos.server
        counts = collector.span_counts
        parts = [
            f"{counts['call']:,} call",
            f"{counts['attempt']:,} attempt",
            f"{counts['transfer']:,} transfer",
            f"{counts['application']:,} application",
        ]
        if counts["other"]:
            parts.append(f"{counts['other']:,} other")
        traces = f"{collector.spans_seen:,} spans ({', '.join(parts)} spans)"
        if telemetry.otlp_endpoint:
            traces += (
                f", exported over OTLP/HTTP to {telemetry.otlp_endpoint}; dropped: "
                f"{telemetry.spans_dropped:.0f}"
            )
            if not self._flushed:
                traces += " so far (the collector did not answer in time)"
        else:
            traces += (
                ", kept in memory: pass --otlp-endpoint http://localhost:4318 or set "
                "OTEL_EXPORTER_OTLP_ENDPOINT to see them in Jaeger (exporters/compose.yaml)"
            )
        counts, _ = logs.snapshot()
        log_text = ", ".join(
            f"{name} {n:,}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
        )
        injected = workload.chaos.injected
        rows = [
            ("Traces", traces),
            ("Metrics", _scrape_summary(telemetry.metrics_url)),
            ("Logs", (log_text or "none") + " (structlog events on the 'evobs' logger)"),
            (
                "Faults",
                f"{injected['throttle']} throttles, {injected['surge']} throttling surges "
                f"(every attempt throttled), {injected['server_error']} 5xx injected; "
                f"{len(faults.requests):,} requests crossed the fault proxy in front of moto "
                f"({moto_url})",
            ),
        ]
        if workload.assistant is not None:
            rows.append(("GenAI", _genai_summary(registry, workload.assistant.chaos.injected)))
        return rows


def _genai_summary(registry: Any, injected: dict[str, int]) -> str:
    """What the assistant's Bedrock calls recorded: tokens by type from the registry,
    and the faults injected."""
    tokens: dict[str, float] = {}
    streams = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "gen_ai_client_token_usage_sum":
                kind = sample.labels.get("gen_ai_token_type", "?")
                tokens[kind] = tokens.get(kind, 0.0) + sample.value
            elif sample.name == "gen_ai_client_operation_time_to_first_chunk_seconds_count":
                streams += sample.value
    return (
        f"{tokens.get('input', 0):,.0f} input and {tokens.get('output', 0):,.0f} output tokens, "
        f"{streams:,.0f} streams read (gen_ai_* families on /metrics; spans named "
        f"'chat <model>'); {injected['throttle']} throttles, {injected['surge']} throttling "
        f"surges and {injected['stream_error']} broken streams injected"
    )


def _scrape_summary(url: str | None) -> str:
    """Scrape our own /metrics once, as Prometheus would, and say what it holds."""
    if url is None:
        return "no /metrics server (--metrics-port)"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"{url} (scrape failed: {exc})"
    families = sum(1 for line in text.splitlines() if line.startswith("# TYPE aws_sdk_"))
    samples = sum(1 for line in text.splitlines() if line.startswith("aws_sdk_"))
    return f"{url}: {samples:,} aws_sdk_* samples in {families} metric families"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
