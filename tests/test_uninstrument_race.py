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
    """Workers make calls while the main thread toggles instrumentation, once per call
    completed (so every toggle lands while other calls are in flight); to a deadline."""
    failures: list[BaseException] = []
    done = [0] * WORKERS
    progress = threading.Condition()

    def worker(index: int) -> None:
        before = otel_context.get_current()
        try:
            for n in range(CALLS):
                account = call(index, n)
                assert account == "123456789012", account
                assert otel_context.get_current() == before, "context leaked by a call"
                with progress:
                    done[index] += 1
                    progress.notify()
        except BaseException as exc:
            failures.append(exc)
        finally:
            with progress:
                progress.notify()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    toggles = 0
    seen = 0
    deadline = time.monotonic() + DEADLINE_S
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        with progress:
            if sum(done) == seen:
                progress.wait(timeout=1.0)
            seen = sum(done)
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


def test_instrumented_and_uninstrumented_inside_one_call(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """The race made deterministic: another thread instruments the client while a call is
    between entering it and before-call, and uninstruments it before after-call. The call
    has no safety net (it entered the client before the class swap): it must not be
    recorded, rather than leave a span open and its context attached to the thread."""
    client = session.client("sts", endpoint_url=moto_url)
    state: dict[str, Any] = {}

    def instrument_now(**_: Any) -> None:
        state["handle"] = evobs.instrument(
            client, tracer_provider=recorder.provider, registry=registry
        )

    def uninstrument_now(**_: Any) -> None:
        state["handle"].uninstrument()

    client.meta.events.register("provide-client-params.sts.GetCallerIdentity", instrument_now)
    client.meta.events.register("before-send.sts.GetCallerIdentity", uninstrument_now)
    before = otel_context.get_current()
    assert client.get_caller_identity()["Account"] == "123456789012"
    assert otel_context.get_current() == before, "the call left its span's context attached"
    assert "handle" in state and not state["handle"].enabled
    _settled(recorder, registry)
    assert recorder.started == 0


def test_instrumented_mid_call_then_recorded_from_the_next_call(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """Instrumented while a call is in flight: that call is skipped, the next is recorded."""
    client = session.client("sts", endpoint_url=moto_url)
    state: dict[str, Any] = {}

    def instrument_once(**_: Any) -> None:
        if "handle" not in state:
            state["handle"] = evobs.instrument(
                client, tracer_provider=recorder.provider, registry=registry
            )

    client.meta.events.register("provide-client-params.sts.GetCallerIdentity", instrument_once)
    try:
        client.get_caller_identity()
        assert recorder.started == recorder.ended == 0
        client.get_caller_identity()
        assert [s.name for s in recorder.spans] == ["STS.GetCallerIdentity"]
    finally:
        state["handle"].uninstrument()
    _settled(recorder, registry)


def test_call_looked_up_before_the_class_was_restored(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """The race of the test above, made deterministic: a thread has looked up
    ``_make_api_call`` on evobs's class for the client when another thread's
    ``uninstrument`` restores the client's own class. The call runs as the client's
    own (uninstrumented) call and returns its result; nothing is raised into it and no
    span is started."""
    client = session.client("sts", endpoint_url=moto_url)
    original_class = type(client)
    handle = evobs.instrument(client, tracer_provider=recorder.provider, registry=registry)
    looked_up = client._make_api_call  # bound to evobs's class for this client
    assert type(client) is not original_class
    handle.uninstrument()
    assert type(client) is original_class
    result = looked_up("GetCallerIdentity", {})
    assert result["Account"]
    assert recorder.started == recorder.ended == 0
    assert otel_context.get_current() == otel_context.Context()
