"""Fork: an instrumented process forks (multiprocessing's ``fork`` start method, as
gunicorn and Celery prefork workers do) and the child makes calls.

The child's spans and metrics must be correct (sent back through a Queue), the
child's calls must be children of the span that was current at fork time, and
the parent must be unaffected: none of the child's telemetry appears in it, and
its own calls keep being recorded exactly.
"""

from __future__ import annotations

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
