"""Exporters down: a refusing or hanging OTLP endpoint, a full span queue.

The real OTLP/HTTP exporter (through ``evobs.configure``) sends to a local
receiver that refuses connections, hangs, or is slow. AWS calls against moto
must return exactly what they return with a healthy collector, every span must
be either delivered or counted in ``evobs_spans_dropped_total`` (none vanish
silently), and ``Telemetry.shutdown`` must return within its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from prometheus_client import CollectorRegistry

import evobs
from tests.otlp_receiver import OTLPReceiver, otlp_receiver

CALLS = 40
SHUTDOWN_TIMEOUT = 2.0
#: Only to detect a hang: shutdown promises SHUTDOWN_TIMEOUT; this is far beyond it.
HANG_BOUND_S = 30.0


def _poll(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def telemetry_for(registry: CollectorRegistry) -> Iterator[Any]:
    """``configure`` pointed at a receiver; shut down at the end whatever happened."""
    made: list[Any] = []

    def make(receiver: OTLPReceiver, path: str = "/v1/traces", **kwargs: Any) -> Any:
        telemetry = evobs.configure(
            "evobs-reliability",
            traces="otlp",
            otlp_endpoint=receiver.base_url + path,
            export_timeout=kwargs.pop("export_timeout", 0.5),
            metrics_port=None,
            logs=None,
            registry=registry,
            set_global=False,
            **kwargs,
        )
        made.append(telemetry)
        return telemetry

    yield make
    for telemetry in made:
        telemetry.shutdown(timeout=1.0)


def _calls(session: boto3.Session, moto_url: str, n: int = CALLS) -> list[Any]:
    sts = session.client("sts", endpoint_url=moto_url)
    return [sts.get_caller_identity()["Arn"] for _ in range(n)]


def _settled(registry: CollectorRegistry) -> None:
    assert registry.get_sample_value("aws_sdk_calls_in_flight", {"service": "STS"}) == 0
    assert not registry.get_sample_value("evobs_handler_errors_total", {"event": "call_ended"})
    assert (
        registry.get_sample_value(
            "aws_sdk_call_attempts_total", {"service": "STS", "operation": "GetCallerIdentity"}
        )
        == CALLS
    )


@pytest.mark.parametrize("mode", ["refuse", "hang", "reject"])
def test_collector_down_calls_unaffected_and_drops_counted(
    mode: str,
    session: boto3.Session,
    registry: CollectorRegistry,
    moto_url: str,
    telemetry_for: Any,
) -> None:
    """Refusing, hanging or rejecting (HTTP 404) collector: calls unchanged, every span
    counted as dropped."""
    expected = _calls(
        boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ),
        moto_url,
    )
    receiver_mode = "accept" if mode == "reject" else mode
    path = "/v1/no-such-path" if mode == "reject" else "/v1/traces"
    with otlp_receiver(receiver_mode) as receiver:  # type: ignore[arg-type]
        telemetry = telemetry_for(receiver, path)
        telemetry.instrument(session)
        assert _calls(session, moto_url) == expected
        _settled(registry)
        # The export thread gives up on each batch after the export timeout.
        assert _poll(lambda: telemetry.spans_dropped >= CALLS), telemetry.spans_dropped
        started = time.monotonic()
        telemetry.shutdown(timeout=SHUTDOWN_TIMEOUT)
        assert time.monotonic() - started < HANG_BOUND_S, "shutdown hung"
        assert receiver.received() == []
    assert telemetry.spans_dropped == CALLS


def test_hanging_collector_with_spans_queued_shutdown_is_bounded(
    session: boto3.Session, registry: CollectorRegistry, moto_url: str, telemetry_for: Any
) -> None:
    """Shutdown with spans still queued behind a hanging export returns (flushed=False)."""
    with otlp_receiver("hang") as receiver:
        telemetry = telemetry_for(receiver, export_timeout=10.0)
        telemetry.instrument(session)
        _calls(session, moto_url)
        assert _poll(lambda: receiver.requests_seen >= 1), "the exporter never sent"
        _calls(session, moto_url, 5)  # queued behind the hanging request
        started = time.monotonic()
        flushed = telemetry.shutdown(timeout=SHUTDOWN_TIMEOUT)
        assert time.monotonic() - started < HANG_BOUND_S, "shutdown hung"
        assert flushed is False
        assert receiver.received() == []


def test_full_queue_every_span_delivered_or_counted(
    session: boto3.Session, registry: CollectorRegistry, moto_url: str, telemetry_for: Any
) -> None:
    """A slow collector and a tiny queue: received + dropped == spans made, exactly."""
    with otlp_receiver("accept") as receiver:
        receiver.hold()  # the collector is slow: the first export blocks
        telemetry = telemetry_for(receiver, span_queue_size=8, export_timeout=30.0)
        telemetry.instrument(session)
        results = _calls(session, moto_url)
        assert len(set(results)) == 1
        _settled(registry)
        dropped = telemetry.spans_dropped
        assert dropped > 0, "a queue of 8 cannot hold 40 spans behind a stalled export"
        receiver.release()
        assert telemetry.shutdown(timeout=10.0) is True
        assert _poll(lambda: len(receiver.received()) + telemetry.spans_dropped >= CALLS)
        received = receiver.named("STS.GetCallerIdentity")
        assert len(received) + telemetry.spans_dropped == CALLS
        assert len({s.span_id for s in received}) == len(received)


def test_refusing_collector_costs_no_call_time_exceptions(
    session: boto3.Session, registry: CollectorRegistry, moto_url: str, telemetry_for: Any
) -> None:
    """With the collector down, failing calls still fail exactly as botocore makes them fail."""
    from botocore.exceptions import ClientError

    with otlp_receiver("refuse") as receiver:
        telemetry = telemetry_for(receiver)
        telemetry.instrument(session)
        s3 = session.client("s3", endpoint_url=moto_url)
        with pytest.raises(ClientError) as info:
            s3.head_object(Bucket="evobs-no-such-bucket", Key="k")
        assert info.value.response["Error"]["Code"] == "404"
        assert (
            registry.get_sample_value(
                "aws_sdk_call_errors_total",
                {"service": "S3", "operation": "HeadObject", "error_type": "404"},
            )
            == 1
        )
        assert registry.get_sample_value("aws_sdk_calls_in_flight", {"service": "S3"}) == 0
