"""Load: many threads on one shared client, and every call accounted for exactly once.

16 threads share one client (clients are thread-safe and meant to be shared)
against moto's real server. Each thread runs under its own parent span, so a
call span attached to the wrong thread's context would be noticed. Counts must
be exact: one span per call, unique span ids, the right parent, metrics and log
events equal to the number of calls, nothing left in flight.

``make soak`` runs the full 16 x 500 (EVOBS_SOAK_FULL=1); ``make test`` runs
16 x 40 so the suite stays fast on two cores.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry

import evobs

THREADS = 16
FULL = os.environ.get("EVOBS_SOAK_FULL") == "1"
CALLS_PER_THREAD = 500 if FULL else 40


class _Logs(logging.Handler):
    """Counts evobs's aws.call events, thread-safely."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: Counter[str] = Counter()
        self.request_ids: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            self.events[str(record.msg.get("event"))] += 1  # emit runs under the handler lock
            if record.msg.get("event") == "aws.call":
                self.request_ids.append(str(record.msg.get("request_id")))


@pytest.fixture
def logs() -> Iterator[_Logs]:
    logger = logging.getLogger("evobs")
    handler = _Logs()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # pytest's capture would keep thousands of records
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


@pytest.mark.slow
def test_shared_client_under_threads(
    session: boto3.Session,
    recorder: Any,
    registry: CollectorRegistry,
    moto_url: str,
    logs: _Logs,
) -> None:
    """16 threads x N calls on one client: exact counts, no lost or duplicated spans."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    client = session.client(
        "sts",
        endpoint_url=moto_url,
        config=Config(max_pool_connections=THREADS, retries={"mode": "standard"}),
    )
    tracer = recorder.provider.get_tracer("load")
    barrier = threading.Barrier(THREADS)
    parents: dict[int, int] = {}
    failures: list[BaseException] = []
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            with tracer.start_as_current_span(f"worker-{index}") as parent:
                parents[parent.get_span_context().span_id] = index
                before = otel_context.get_current()
                barrier.wait(timeout=30)
                for _ in range(CALLS_PER_THREAD):
                    account = client.get_caller_identity()["Account"]
                    assert otel_context.get_current() == before
                    with lock:
                        results[account] += 1
        except BaseException as exc:  # reported below, with the thread's index
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert not any(t.is_alive() for t in threads), "a worker thread hung"
    finally:
        handle.uninstrument()
    assert not failures, failures[:3]
    total = THREADS * CALLS_PER_THREAD
    assert sum(results.values()) == total

    spans = [s for s in recorder.spans if s.name == "STS.GetCallerIdentity"]
    assert len(spans) == total, "lost or duplicated spans"
    ids = {s.context.span_id for s in spans}
    assert len(ids) == total, "duplicated span ids"
    assert recorder.started == recorder.ended == total + THREADS
    # Every call span is the child of its own thread's parent, N per parent.
    per_parent = Counter(s.parent.span_id if s.parent else None for s in spans)
    assert set(per_parent) == set(parents)
    assert set(per_parent.values()) == {CALLS_PER_THREAD}
    assert all((s.attributes or {}).get("aws.sdk.attempts") == 1 for s in spans)
    request_ids = {(s.attributes or {}).get("aws.request_id") for s in spans}
    assert len(request_ids) == total, "request ids crossed between concurrent calls"

    labels = {"service": "STS", "operation": "GetCallerIdentity"}
    assert registry.get_sample_value("aws_sdk_call_attempts_total", labels) == total
    assert (
        registry.get_sample_value(
            "aws_sdk_call_duration_seconds_count",
            {**labels, "region": "us-east-1", "outcome": "ok"},
        )
        == total
    )
    assert registry.get_sample_value("aws_sdk_calls_in_flight", {"service": "STS"}) == 0
    assert not registry.get_sample_value("evobs_handler_errors_total", {"event": "call_ended"})
    assert logs.events["aws.call"] == total
    assert set(logs.request_ids) == request_ids


def test_threads_keep_their_own_context(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """A quick, always-run version: 4 threads x 10 calls, each under its own parent."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    client = session.client("sts", endpoint_url=moto_url)
    tracer = recorder.provider.get_tracer("load")
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with tracer.start_as_current_span(f"w{index}"):
                for _ in range(10):
                    client.get_caller_identity()
                assert trace.get_current_span().name == f"w{index}"  # type: ignore[attr-defined]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        handle.uninstrument()
    assert not errors, errors
    spans = recorder.named("STS.GetCallerIdentity")
    parents = {s.name: s.context.span_id for s in recorder.spans if s.name.startswith("w")}
    assert len(spans) == 40
    assert Counter(s.parent.span_id for s in spans if s.parent) == {
        span_id: 10 for span_id in parents.values()
    }
