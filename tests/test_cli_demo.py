"""The ``evobs`` command: ``--version`` and ``evobs demo`` run as a user runs them, in a
subprocess, against the embedded moto server and the fault proxy."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import evobs

from .otlp_receiver import OTLPReceiver, otlp_receiver

_EVOBS = Path(sys.executable).with_name("evobs")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(_EVOBS)] if _EVOBS.exists() else [sys.executable, "-m", "evobs.cli"]
    merged = {**os.environ, "COLUMNS": "140", **(env or {})}
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        if env is None or name not in env:
            merged.pop(name, None)
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, env=merged, check=False
    )


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as server:
        yield server


def test_version() -> None:
    """``evobs --version`` prints the package version and exits 0."""
    done = _run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"evobs {evobs.__version__}"


def test_demo_runs_and_prints_the_summary() -> None:
    """A short demo exits 0 by itself and prints every summary section, with calls for the
    three services and Bedrock Runtime, the injected errors, the tokens the GenAI metrics
    counted, and the /metrics it served while running."""
    done = _run("demo", "--duration", "3", "--metrics-port", "0")
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    for section in (
        "evobs demo summary",
        "Calls by service and operation",
        "Errors by type",
        "Traces worth opening",
        "Slowest retried call",
        "Telemetry",
    ):
        assert section in out, section
    for operation in ("PutObject", "GetObject", "UploadPart", "PutItem", "Query", "SendMessage"):
        assert operation in out, operation
    # The GenAI assistant: Bedrock Runtime calls, and what their metrics counted.
    assert "Bedrock Runtime" in out and "ConverseStream" in out
    genai = re.search(r"GenAI\s*│\s*([\d,]+) input and ([\d,]+) output tokens", out)
    assert genai and int(genai.group(2).replace(",", "")) > 0, out[-3000:]
    assert "ConditionalCheckFailedException" in out
    assert "(expected)" in out
    assert "NoSuchKey" in out
    calls = re.search(r"evobs demo summary: ([\d,]+) AWS calls", out)
    assert calls and int(calls.group(1).replace(",", "")) > 50
    metrics = re.search(
        r"http://127\.0\.0\.1:(\d+)/metrics: ([\d,]+) aws_sdk_\* samples in (\d+)", out
    )
    assert metrics, out[-2000:]
    assert int(metrics.group(1)) != 9464 and int(metrics.group(3)) >= 5
    assert "kept in memory" in out
    assert "unexpected" not in out
    total, parts = _span_breakdown(out)
    assert total == sum(parts.values())
    assert parts["call"] == int(calls.group(1).replace(",", ""))
    assert parts["transfer"] >= 1  # the multipart upload's S3.upload_file
    assert parts["application"] > 0
    assert _worth_opening(out), out[-3000:]


def _span_breakdown(out: str) -> tuple[int, dict[str, int]]:
    """The Telemetry row's span total and its parts, the table's borders removed."""
    flat = re.sub(r"[\s│]+", " ", out)
    found = re.search(
        r"([\d,]+) spans \(([\d,]+) call, ([\d,]+) attempt, ([\d,]+) transfer, "
        r"([\d,]+) application spans\)",
        flat,
    )
    assert found, flat[-3000:]
    total, *counts = (int(g.replace(",", "")) for g in found.groups())
    return total, dict(zip(("call", "attempt", "transfer", "application"), counts, strict=True))


def _worth_opening(out: str) -> list[str]:
    """The trace ids the "Traces worth opening" table names."""
    section = out.split("Traces worth opening", 1)[1].split("Slowest retried call", 1)[0]
    return re.findall(r"\b[0-9a-f]{32}\b", section)


def test_demo_exports_to_otlp_endpoint(receiver: OTLPReceiver) -> None:
    """With --otlp-endpoint, the demo's spans arrive at the collector, named evobs-demo."""
    done = _run(
        "demo", "--duration", "1", "--metrics-port", "0", "--otlp-endpoint", receiver.base_url
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    spans = receiver.received()
    assert spans, "no span reached the receiver"
    assert {s.resource["service.name"] for s in spans} == {"evobs-demo"}
    assert {"S3", "DynamoDB", "SQS"} <= {s.attributes.get("rpc.service") for s in spans}
    flat = re.sub(r"[\s│]+", " ", done.stdout)
    assert f"exported over OTLP/HTTP to {receiver.url}; dropped: 0" in flat
    # The demo names each call's AWS service as its peer, and works in requests.
    calls = [s for s in spans if "rpc.service" in s.attributes]
    assert all(s.attributes["peer.service"] == s.attributes["rpc.service"] for s in calls)
    assert any(s.scope == "evobs.demo" and s.name == "place order" for s in spans)
    # Every trace the summary names was exported, and the counts add up.
    named = _worth_opening(done.stdout)
    assert named and set(named) <= {s.trace_id for s in spans}
    total, _ = _span_breakdown(done.stdout)
    assert total == len(spans)


def test_demo_metrics_port_in_use() -> None:
    """A taken metrics port is a clear error (exit 2) that says how to pick another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("demo", "--duration", "1", "--metrics-port", str(port))
    assert done.returncode == 2
    assert "already in use" in done.stderr and "--metrics-port 0" in done.stderr
    assert done.stdout == ""


def test_demo_serve_keeps_metrics_up_until_ctrl_c() -> None:
    """--serve: after the summary, /metrics stays up with the workload still going (the
    call count grows between two scrapes); SIGINT (Ctrl-C) then ends it with status 0."""
    command = [str(_EVOBS)] if _EVOBS.exists() else [sys.executable, "-m", "evobs.cli"]
    env = {**os.environ, "COLUMNS": "140", "PYTHONUNBUFFERED": "1"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    proc = subprocess.Popen(
        [*command, "demo", "--duration", "1", "--serve", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"Serving (http://127\.0\.0\.1:\d+/metrics)", "".join(lines))
            url = found.group(1) if found else None
            time.sleep(0.05)
        assert url, "".join(lines)[-3000:]

        def calls() -> float:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("aws_sdk_call_duration_seconds_count{")
            )

        first = calls()
        deadline = time.monotonic() + 30
        while calls() <= first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert calls() > first
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    assert "Calls by service and operation" in "".join(lines)


def test_demo_summary_agrees_with_the_metrics(
    moto_url: str, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo workload in-process: per operation, the calls and retries the summary
    computes from spans equal what the Prometheus metrics counted, the injected faults
    show up as throttles and retries, and the slowest retried call has its attempts."""
    from opentelemetry.sdk.trace import TracerProvider

    from evobs.demo.faults import FaultServer
    from evobs.demo.summary import SpanCollector
    from evobs.demo.workload import EXPECTED_ERRORS, Workload, demo_session

    from .faults_util import zero_backoff

    zero_backoff(monkeypatch)
    collector = SpanCollector()
    provider = TracerProvider()
    provider.add_span_processor(collector)  # type: ignore[arg-type]
    session = demo_session()
    handle = evobs.instrument(
        session, tracer_provider=provider, registry=registry, expected_errors=EXPECTED_ERRORS
    )
    try:
        with FaultServer(upstream=moto_url) as faults:
            workload = Workload(
                session, faults.url, faults=faults, seed=3, tracer_provider=provider
            )
            workload.run(duration=2.0)
    finally:
        handle.uninstrument()
    assert workload.tally.failures == {}
    assert collector.spans_seen == sum(collector.span_counts.values())
    assert collector.span_counts["other"] == 0
    assert collector.span_counts["call"] == len(collector.snapshot())
    stats = collector.by_operation()
    assert {s.service for s in stats} == {"S3", "DynamoDB", "SQS"}
    for s in stats:
        labels = {"service": s.service, "operation": s.operation}
        counted = sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "aws_sdk_call_duration_seconds"
            for sample in metric.samples
            if sample.name.endswith("_count")
            and all(sample.labels.get(k) == v for k, v in labels.items())
        )
        retried = sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "aws_sdk_retries"
            for sample in metric.samples
            if sample.name == "aws_sdk_retries_total"
            and all(sample.labels.get(k) == v for k, v in labels.items())
        )
        assert (s.calls, s.retries) == (counted, retried), s
    injected = workload.chaos.injected
    assert sum(injected.values()) > 0
    assert sum(s.throttled for s in stats) >= injected["throttle"]
    assert sum(s.expected for s in stats) > 0  # ConditionalCheckFailedException
    slowest = collector.slowest_retried()
    assert slowest is not None
    assert [a.number for a in slowest.attempt_records] == list(range(1, slowest.attempts + 1))


def test_demo_with_collector_down_counts_every_span_dropped() -> None:
    """With nothing listening at --otlp-endpoint, the demo still runs and exits 0, and the
    summary reports every span as dropped (none vanishes silently)."""
    with otlp_receiver("refuse") as closed:
        done = _run(
            "demo", "--duration", "1", "--metrics-port", "0", "--otlp-endpoint", closed.base_url
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = re.search(r"([\d,]+) spans \(.*?dropped:[\s│]+([\d,]+)", done.stdout, re.S)
    assert summary, done.stdout[-3000:]
    # The summary may be printed while the exporter still retries ("so far"); the final
    # line, after shutdown, accounts for every span.
    final = re.search(r"OTLP export: ([\d,]+) spans, ([\d,]+) dropped", done.stdout)
    assert final, done.stdout[-3000:]
    spans, dropped = (int(g.replace(",", "")) for g in final.groups())
    assert spans > 0 and dropped == spans
    assert int(summary.group(1).replace(",", "")) == spans
