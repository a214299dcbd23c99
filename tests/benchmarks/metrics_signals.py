"""Per-call CPU cost of the two metrics signals, timed over recorded calls.

``python -m tests.benchmarks.metrics_signals [--number N] [--repeat R]``

Two real calls are recorded first (DynamoDB GetItem answered in ``before-send`` with
a canned response, so every event fires and the record is what botocore produced):
one that succeeds at once, and one that succeeds on its third attempt (503, 503,
200). Then ``timeit`` runs each signal's ``call_started`` + ``call_ended`` over the
same record: the cost of rendering one call, without botocore, the handlers or
the other signals. It prints microseconds per call, the best of ``R`` repeats of
``N`` calls (other processes only ever add time). Nothing here asserts on time.

Variants: the Prometheus signal (``metrics``); the OpenTelemetry metrics signal
(``otel_metrics``) into the SDK's MeterProvider (an in-memory reader), without and
with a sampled span current (the SDK's default exemplar filter then offers every
measurement to its reservoirs); and into the API's no-op provider, which leaves
evobs's own share of the work.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

#: (row label, variant key) in print order.
VARIANTS: Final = (
    ("metrics (Prometheus)", "prometheus"),
    ("otel_metrics, SDK MeterProvider", "otel-sdk"),
    ("otel_metrics, SDK MeterProvider, sampled span current", "otel-sdk-span"),
    ("otel_metrics, no-op MeterProvider", "otel-noop"),
)
CALLS: Final = ("ok, 1 attempt", "retried, 3 attempts")


class _Recorder:
    """A signal that keeps the records of the calls it sees end."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def call_ended(self, call: Any) -> None:
        self.calls.append(call)


def record_calls() -> dict[str, Any]:
    """One recorded Call per entry of CALLS, from real botocore calls (no network)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    import boto3
    from botocore.config import Config

    import evobs

    from .canned import CannedResponder

    recorded: dict[str, Any] = {}
    for label, failures in zip(CALLS, (0, 2), strict=True):
        session = boto3.Session(region_name="us-east-1")
        recorder = _Recorder()
        handle = evobs.instrument(session, signals=(recorder,))
        try:
            client = session.client(
                "dynamodb",
                endpoint_url="http://127.0.0.1:1",
                config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
            )
            client.meta.events.register(
                "before-send.dynamodb.GetItem", CannedResponder("DynamoDB.GetItem", failures)
            )
            client.get_item(TableName="bench", Key={"pk": {"S": "k"}})
        finally:
            handle.uninstrument()
        (call,) = recorder.calls
        assert len(call.attempts) == failures + 1, call
        recorded[label] = call
    return recorded


@contextmanager
def _sampled_span() -> Iterator[None]:
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider

    span = TracerProvider().get_tracer("bench").start_span("bench")
    token = context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        context.detach(token)
        span.end()


def build_signal(variant: str) -> Any:
    """A fresh signal of ``variant`` with its own registry or provider."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from evobs._options import Options
    from evobs.signals.metrics import MetricsSignal
    from evobs.signals.otel_metrics import OtelMetricsSignal

    options = Options()
    if variant == "prometheus":
        return MetricsSignal(CollectorRegistry(), options)
    if variant == "otel-noop":
        return OtelMetricsSignal(NoOpMeterProvider(), options)
    return OtelMetricsSignal(MeterProvider(metric_readers=[InMemoryMetricReader()]), options)


def time_signal(signal: Any, call: Any, number: int, repeat: int) -> float:
    """Microseconds per ``call_started`` + ``call_ended``, the best of ``repeat`` runs."""
    started: Callable[[Any], None] = signal.call_started
    ended: Callable[[Any], None] = signal.call_ended

    def one() -> None:
        started(call)
        ended(call)

    one()  # warm-up: attribute dicts / label children
    return min(timeit.repeat(one, number=number, repeat=repeat)) / number * 1e6


def measure(number: int = 20_000, repeat: int = 5) -> list[tuple[str, str, float]]:
    """(variant label, call label, µs per call) for every variant and recorded call."""
    calls = record_calls()
    rows = []
    for label, variant in VARIANTS:
        for call_label, call in calls.items():
            signal = build_signal(variant)
            if variant == "otel-sdk-span":
                with _sampled_span():
                    micros = time_signal(signal, call, number, repeat)
            else:
                micros = time_signal(signal, call, number, repeat)
            rows.append((label, call_label, micros))
    return rows


def render(rows: list[tuple[str, str, float]]) -> str:
    by_variant: dict[str, dict[str, float]] = {}
    for label, call_label, micros in rows:
        by_variant.setdefault(label, {})[call_label] = micros
    lines = [
        "| signal | " + " | ".join(f"{c} (µs/call)" for c in CALLS) + " |",
        "|---|" + "---|" * len(CALLS),
    ]
    for label, values in by_variant.items():
        lines.append(f"| {label} | " + " | ".join(f"{values[c]:.1f}" for c in CALLS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is kept")
    args = parser.parse_args(argv)
    print(render(measure(args.number, args.repeat)))


if __name__ == "__main__":
    main()
