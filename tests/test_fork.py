"""Fork: an instrumented process forks (multiprocessing's ``fork`` start method, as
gunicorn and Celery prefork workers do) and the child makes calls.

The child's spans and metrics must be correct (sent back through a Queue), the
child's calls must be children of the span that was current at fork time, and
the parent must be unaffected: none of the child's telemetry appears in it, and
its own calls keep being recorded exactly.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import sys
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from opentelemetry import context as otel_context
from prometheus_client import CollectorRegistry

import evobs

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
    reason="needs the fork start method",
)

CHILD_CALLS = 12
PARENT_CALLS = 5
_ATTEMPTS = {"service": "STS", "operation": "GetCallerIdentity"}


def _attempts(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("aws_sdk_call_attempts_total", _ATTEMPTS) or 0.0


def test_child_calls_are_recorded_and_parent_unaffected(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """Spans and metrics made in a forked child are right; the parent's stay the parent's."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    sts = session.client("sts", endpoint_url=moto_url)
    s3 = session.client("s3", endpoint_url=moto_url, config=Config(retries={"mode": "standard"}))
    sts.get_caller_identity()  # warm every cache before the fork
    spans_before = len(recorder.spans)
    attempts_before = _attempts(registry)
    ctx = multiprocessing.get_context("fork")
    results: Any = ctx.Queue()
    tracer = recorder.provider.get_tracer("fork-test")

    def child() -> None:
        report: dict[str, Any] = {}
        try:
            before = otel_context.get_current()
            accounts = {sts.get_caller_identity()["Account"] for _ in range(CHILD_CALLS)}
            try:
                s3.head_object(Bucket="evobs-fork-missing", Key="k")
            except ClientError as exc:
                report["error_code"] = exc.response["Error"]["Code"]
            report["context_restored"] = otel_context.get_current() == before
            spans = recorder.spans[spans_before:]
            report["accounts"] = sorted(accounts)
            report["spans"] = [
                (
                    s.name,
                    s.context.trace_id,
                    s.context.span_id,
                    s.parent.span_id if s.parent else None,
                    dict(s.attributes or {}),
                )
                for s in spans
            ]
            report["attempts"] = _attempts(registry)
            report["head_errors"] = registry.get_sample_value(
                "aws_sdk_call_errors_total",
                {"service": "S3", "operation": "HeadObject", "error_type": "404"},
            )
            report["in_flight"] = [
                registry.get_sample_value("aws_sdk_calls_in_flight", {"service": s})
                for s in ("STS", "S3")
            ]
        except BaseException as exc:  # reported to the parent, which fails the test
            report["error"] = repr(exc)
        results.put(report)

    try:
        with tracer.start_as_current_span("before-fork") as parent_span:
            process = ctx.Process(target=child)
            process.start()
            try:
                report = results.get(timeout=120)
            except queue.Empty:
                pytest.fail("the forked child never reported (deadlock after fork?)")
            process.join(timeout=30)
        assert process.exitcode == 0
        assert "error" not in report, report["error"]

        # The child's telemetry is right.
        assert report["context_restored"]
        assert report["accounts"] == ["123456789012"]
        assert report["error_code"] == "404"
        names = [s[0] for s in report["spans"]]
        assert names.count("STS.GetCallerIdentity") == CHILD_CALLS
        assert names.count("S3.HeadObject") == 1
        assert len({s[2] for s in report["spans"]}) == len(report["spans"]), "duplicate span ids"
        parent_ctx = parent_span.get_span_context()
        for _name, trace_id, _span_id, parent_id, attrs in report["spans"]:
            assert trace_id == parent_ctx.trace_id
            assert parent_id == parent_ctx.span_id
            assert attrs["aws.sdk.attempts"] == 1
        assert report["attempts"] == attempts_before + CHILD_CALLS
        assert report["head_errors"] == 1
        assert report["in_flight"] == [0, 0]

        # The parent is unaffected: nothing of the child's, and its own calls still exact.
        assert [s.name for s in recorder.spans[spans_before:]] == ["before-fork"]
        assert _attempts(registry) == attempts_before
        for _ in range(PARENT_CALLS):
            sts.get_caller_identity()
    finally:
        handle.uninstrument()
    child_ids = {s[2] for s in report["spans"]}
    new = recorder.spans[spans_before + 1 :]
    assert len([s for s in new if s.name == "STS.GetCallerIdentity"]) == PARENT_CALLS
    assert not child_ids & {s.context.span_id for s in new}
    assert _attempts(registry) == attempts_before + PARENT_CALLS
    assert registry.get_sample_value("aws_sdk_calls_in_flight", {"service": "STS"}) == 0


def test_session_instrumented_before_fork_clients_made_after(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """A child creating its own clients from the inherited instrumented session is recorded."""
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    ctx = multiprocessing.get_context("fork")
    results: Any = ctx.Queue()
    spans_before = len(recorder.spans)

    def child() -> None:
        try:
            client = session.client("sts", endpoint_url=moto_url)
            client.get_caller_identity()
            created = registry.get_sample_value("aws_sdk_clients_created_total", {"service": "STS"})
            results.put(([s.name for s in recorder.spans[spans_before:]], created))
        except BaseException as exc:
            results.put(([repr(exc)], None))

    try:
        process = ctx.Process(target=child)
        process.start()
        try:
            names, created = results.get(timeout=120)
        except queue.Empty:
            pytest.fail("the forked child never reported")
        process.join(timeout=30)
    finally:
        handle.uninstrument()
    assert names == ["STS.GetCallerIdentity"]
    assert created == 1
    assert registry.get_sample_value("aws_sdk_clients_created_total", {"service": "STS"}) is None


def test_child_exports_its_spans_through_configure(
    session: boto3.Session, registry: CollectorRegistry, moto_url: str
) -> None:
    """configure() in the parent (gunicorn --preload style), calls in the child: the
    child's batch exporter (re-armed after fork by the SDK) delivers them over OTLP."""
    from tests.otlp_receiver import otlp_receiver

    with otlp_receiver() as receiver:
        telemetry = evobs.configure(
            "evobs-fork",
            otlp_endpoint=receiver.url,
            metrics_port=None,
            logs=None,
            registry=registry,
            set_global=False,
        )
        try:
            telemetry.instrument(session)
            sts = session.client("sts", endpoint_url=moto_url)
            sts.get_caller_identity()
            assert telemetry.force_flush(timeout=10)
            assert len(receiver.wait_for(1)) == 1
            ctx = multiprocessing.get_context("fork")
            results: Any = ctx.Queue()

            def child() -> None:
                try:
                    for _ in range(CHILD_CALLS):
                        sts.get_caller_identity()
                    flushed = telemetry.force_flush(timeout=10)
                    results.put((flushed, telemetry.spans_dropped))
                except BaseException as exc:
                    results.put((repr(exc), None))

            process = ctx.Process(target=child)
            process.start()
            try:
                flushed, dropped = results.get(timeout=120)
            except queue.Empty:
                pytest.fail("the forked child never reported")
            process.join(timeout=30)
            assert flushed is True, flushed
            assert dropped == 0
            spans = receiver.wait_for(1 + CHILD_CALLS)
            assert len(spans) == 1 + CHILD_CALLS
            assert len({s.span_id for s in spans}) == len(spans)
            # The parent keeps exporting after the child is gone.
            sts.get_caller_identity()
            assert telemetry.force_flush(timeout=10)
            assert len(receiver.wait_for(2 + CHILD_CALLS)) == 2 + CHILD_CALLS
        finally:
            assert telemetry.shutdown(timeout=5.0)


# -- forks at the worst moments ---------------------------------------------------------


def _fork_and_report(child: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Fork now (``os.fork``: in this thread, with the others frozen wherever they are);
    the child runs ``child()`` and sends back its JSON report. A child that hangs (a lock
    held forever) is killed and reported as such."""
    import json
    import os
    import select
    import signal
    import time
    import warnings

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded fork()"
        pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            payload = json.dumps(child()).encode()
        except BaseException as exc:
            payload = json.dumps({"error": repr(exc)}).encode()
            code = 1
        try:
            os.write(write_end, payload)
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                return {"error": "the child hung (a lock held at the fork?)"}
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return dict(json.loads(b"".join(chunks) or b'{"error": "no report"}'))


def _in_flight(registry: CollectorRegistry, service: str) -> float | None:
    return registry.get_sample_value("aws_sdk_calls_in_flight", {"service": service})


def test_fork_while_another_thread_holds_every_lock(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """Another thread holds every lock evobs owns at the moment of the fork: the child
    still makes calls (new operations, errors, a new service's series, new log and
    metric state) that are recorded and exported, and ends with nothing in flight."""
    import threading

    from evobs import _fork

    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    sts = session.client("sts", endpoint_url=moto_url)
    sts.get_caller_identity()  # the STS series and its lock exist before the fork
    locks = sorted(_fork._LOCKS, key=id)
    assert len(locks) >= 8, "the test must see evobs's locks"
    held = threading.Event()
    done = threading.Event()

    def hold_them_all() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        done.wait(120)
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold_them_all, daemon=True)
    holder.start()
    assert held.wait(30)
    spans_before = len(recorder.spans)

    def child() -> dict[str, Any]:
        sts.get_caller_identity()
        s3 = session.client("s3", endpoint_url=moto_url)
        with contextlib.suppress(ClientError):
            s3.head_object(Bucket="evobs-fork-locks", Key="missing")
        session.client("dynamodb", endpoint_url=moto_url).list_tables()
        names = [s.name for s in recorder.spans[spans_before:]]
        return {
            "spans": names,
            "in_flight": [_in_flight(registry, s) for s in ("STS", "S3", "DynamoDB")],
            "errors": registry.get_sample_value(
                "aws_sdk_call_errors_total",
                {"service": "S3", "operation": "HeadObject", "error_type": "404"},
            ),
            "locks_free": not any(lock.locked() for lock in _fork._LOCKS),
        }

    try:
        report = _fork_and_report(child)
    finally:
        done.set()
        holder.join(30)
        handle.uninstrument()
    assert "error" not in report, report
    assert report["spans"] == ["STS.GetCallerIdentity", "S3.HeadObject", "DynamoDB.ListTables"]
    assert report["in_flight"] == [0, 0, 0]
    assert report["errors"] == 1
    assert report["locks_free"]


def test_fork_while_another_thread_is_inside_a_call(
    session: boto3.Session, recorder: Any, registry: CollectorRegistry, moto_url: str
) -> None:
    """Another thread is inside a call at the fork: in the child that call is forgotten
    (its in-flight count drops, its span is not ended there), and the child's own calls
    are recorded with the gauge back at 0; the parent's call then ends normally."""
    import threading

    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    sts = session.client("sts", endpoint_url=moto_url)
    inside = threading.Event()
    go_on = threading.Event()

    def stall(**_: Any) -> None:
        if threading.current_thread().name == "caller":
            inside.set()
            go_on.wait(120)

    sts.meta.events.register("before-send.sts.GetCallerIdentity", stall)
    caller = threading.Thread(target=sts.get_caller_identity, name="caller", daemon=True)
    caller.start()
    assert inside.wait(30)
    spans_before = len(recorder.spans)
    in_flight_at_fork = _in_flight(registry, "STS")

    def child() -> dict[str, Any]:
        after_fork = _in_flight(registry, "STS")
        for _ in range(3):
            sts.get_caller_identity()
        return {
            "after_fork": after_fork,
            "after_calls": _in_flight(registry, "STS"),
            "spans": [s.name for s in recorder.spans[spans_before:]],
        }

    try:
        report = _fork_and_report(child)
    finally:
        go_on.set()
        caller.join(30)
        handle.uninstrument()
    assert in_flight_at_fork == 1
    assert "error" not in report, report
    assert report["after_fork"] == 0
    assert report["after_calls"] == 0
    assert report["spans"] == ["STS.GetCallerIdentity"] * 3
    # The parent's own call ended as usual, after the fork.
    assert [s.name for s in recorder.spans[spans_before:]] == ["STS.GetCallerIdentity"]
    assert _in_flight(registry, "STS") == 0
