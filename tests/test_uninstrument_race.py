"""Instrument and uninstrument while other threads are making calls.

botocore's emitter is not thread-safe for registration while other threads
emit (LIFECYCLE "Where registrations land"): a call in flight may see some of
evobs's handlers and miss others. The guarantee evobs gives, and these tests
prove over real HTTP against moto: every call still returns what it returns
uninstrumented, nothing raises into the application, every span that was
started is ended, the thread's OTel context is restored after every call, and
``aws_sdk_calls_in_flight`` is back to 0. A call overlapping the switch may be
recorded or not (never half-open).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from opentelemetry import context as otel_context
from prometheus_client import CollectorRegistry

import evobs

WORKERS = 4
CALLS = 120
DEADLINE_S = 120.0


def _run_workers(
    call: Callable[[int, int], str], toggle: Callable[[], None]
) -> tuple[list[BaseException], int, int]:
    """Workers make calls while the main thread toggles instrumentation; polls to a deadline."""
    failures: list[BaseException] = []
    done = [0] * WORKERS
    stop = threading.Event()

    def worker(index: int) -> None:
        before = otel_context.get_current()
        try:
            for n in range(CALLS):
                account = call(index, n)
                assert account == "123456789012", account
                assert otel_context.get_current() == before, "context leaked by a call"
                done[index] += 1
        except BaseException as exc:
            failures.append(exc)
        finally:
            if sum(done) == WORKERS * CALLS or failures:
                stop.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    toggles = 0
    deadline = time.monotonic() + DEADLINE_S
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        toggle()
        toggles += 1
    for thread in threads:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return failures, sum(done), toggles


def _settled(recorder: Any, registry: CollectorRegistry) -> None:
    assert recorder.started == recorder.ended, "a span was started and never ended"
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "aws_sdk_calls_in_flight":
                assert sample.value == 0, sample
    errors = registry.get_sample_value("evobs_handler_errors_total", {"event": "call_ended"})
    assert not errors


def test_session_toggled_while_clients_are_created_and_used(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """Session-level instrument/uninstrument racing client creation and calls."""
    clients: dict[int, Any] = {}

    def call(index: int, n: int) -> str:
        if n % 10 == 0:  # clients copy the session's handlers at creation: race that too
            clients[index] = session.client("sts", endpoint_url=moto_url)
        return str(clients[index].get_caller_identity()["Account"])

    state: dict[str, Any] = {"handle": None}

    def toggle() -> None:
        if state["handle"] is None:
            state["handle"] = evobs.instrument(
                session, tracer_provider=recorder.provider, registry=registry
            )
        else:
            state["handle"].uninstrument()
            state["handle"] = None

    try:
        failures, done, toggles = _run_workers(call, toggle)
    finally:
        if state["handle"] is not None:
            state["handle"].uninstrument()
    assert not failures, failures[:3]
    assert done == WORKERS * CALLS
    assert toggles > 10, "the race never happened"
    _settled(recorder, registry)
    recorded = len(recorder.named("STS.GetCallerIdentity"))
    assert 0 < recorded <= done


def test_shared_client_toggled_while_in_use(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """Client-level instrument/uninstrument (handlers and class swap) racing calls on it."""
    client = session.client("sts", endpoint_url=moto_url)
    original_class = type(client)

    def call(index: int, n: int) -> str:
        return str(client.get_caller_identity()["Account"])

    state: dict[str, Any] = {"handle": None}

    def toggle() -> None:
        if state["handle"] is None:
            state["handle"] = evobs.instrument(
                client, tracer_provider=recorder.provider, registry=registry
            )
        else:
            state["handle"].uninstrument()
            state["handle"] = None

    try:
        failures, done, toggles = _run_workers(call, toggle)
    finally:
        if state["handle"] is not None:
            state["handle"].uninstrument()
    assert not failures, failures[:3]
    assert done == WORKERS * CALLS
    assert toggles > 10, "the race never happened"
    assert type(client) is original_class, "uninstrument did not restore the client's class"
    _settled(recorder, registry)
    # After the last uninstrument nothing is recorded.
    before = recorder.started
    client.get_caller_identity()
    assert recorder.started == before
