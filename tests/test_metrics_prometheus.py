"""The metrics endpoint scraped by a real Prometheus, and PromQL over what it stored."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client import CollectorRegistry

import evobs
from evobs.demo.faults import Fault, FaultServer
from tests.conftest import SpanRecorder, fast_config
from tests.prometheus_harness import Prometheus, require_prometheus
from tests.test_metrics import no_jitter  # noqa: F401 - fixture


@pytest.fixture
def endpoint(
    session: boto3.Session, recorder: SpanRecorder, registry: CollectorRegistry
) -> Iterator[tuple[evobs.Instrumentation, Any]]:
    """An instrumented session and its registry served on a free loopback port."""
    require_prometheus()  # skip before doing any work when the binary is absent
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    server = evobs.start_metrics_server(port=0, addr="127.0.0.1", registry=registry)
    try:
        yield handle, server
    finally:
        server.shutdown()
        handle.uninstrument()


def _workload(session: boto3.Session, moto_url: str, faults: FaultServer) -> int:
    """Three S3 ListBuckets and one DynamoDB ListTables that is throttled once: 5 attempts."""
    s3 = session.client("s3", endpoint_url=moto_url, config=fast_config())
    for _ in range(3):
        s3.list_buckets()
    faults.script([Fault.throttle()])
    session.client("dynamodb", endpoint_url=faults.url, config=fast_config()).list_tables()
    return 5


@pytest.mark.usefixtures("no_jitter")
def test_prometheus_scrapes_calls_retries_and_exemplars(
    endpoint: tuple[evobs.Instrumentation, Any],
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    tmp_path: Path,
) -> None:
    """Two rounds of calls, each scraped: PromQL sums by operation, computes a p99 from
    the duration buckets and a retry rate by reason, and finds the call's trace id as
    an exemplar."""
    _, server = endpoint
    with (
        FaultServer(upstream=moto_url) as faults,
        Prometheus([f"127.0.0.1:{server.port}"], tmp_path / "prom") as prom,
    ):
        per_round = _workload(session, moto_url, faults)
        prom.wait_for_scrape()
        prom.wait_for("sum(aws_sdk_call_attempts_total)", lambda v: v == per_round)
        # A second round after the first scrape, so rate() sees an increase.
        _workload(session, moto_url, faults)
        prom.wait_for("sum(aws_sdk_call_attempts_total)", lambda v: v == 2 * per_round)

        by_operation = {
            r["metric"]["operation"]: r["value"]
            for r in prom.query("sum by (operation) (aws_sdk_call_duration_seconds_count)")
        }
        assert by_operation == {"ListBuckets": 6.0, "ListTables": 2.0}

        p99 = prom.query(
            "histogram_quantile(0.99, sum by (le) (rate(aws_sdk_call_duration_seconds_bucket[1m])))"
        )
        assert len(p99) == 1
        assert math.isfinite(p99[0]["value"]) and p99[0]["value"] > 0

        retries = prom.query(
            "sum by (service, operation, reason) (rate(aws_sdk_retries_total[1m]))"
        )
        assert [r["metric"] for r in retries] == [
            {"service": "DynamoDB", "operation": "ListTables", "reason": "throttled"}
        ]
        assert retries[0]["value"] > 0

        in_flight = prom.query("sum(aws_sdk_calls_in_flight)")
        assert in_flight[0]["value"] == 0

        trace_ids = {format(s.context.trace_id, "032x") for s in recorder.spans}
        exemplars = prom.query_exemplars("aws_sdk_call_duration_seconds_bucket")
        stored = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
        assert stored and stored <= trace_ids
