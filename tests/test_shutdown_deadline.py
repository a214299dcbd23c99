"""``Telemetry.shutdown(timeout)`` as one deadline: the span flush, abandoning what a down
collector holds, and stopping the metrics server each take their time out of the same
budget, so the whole returns within ``timeout``.

Wall time is never asserted: the deadline is spied on, and each part's grant is checked
against what that deadline had left when the part asked (the measured wall times are in
the change's report, not in a test).
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator

import boto3
import pytest
from prometheus_client import CollectorRegistry

import evobs
from evobs import _configure
from tests.otlp_receiver import OTLPReceiver, otlp_receiver


class _SpiedDeadline(_configure._Deadline):
    """The real deadline, recording what each part asked for and was granted."""

    made: list[_SpiedDeadline] = []

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds
        self.grants: list[tuple[str, float, float, float]] = []
        _SpiedDeadline.made.append(self)

    def share(self, part: str, keep: float = 0.0) -> float:
        left = self.end - time.monotonic()
        granted = super().share(part, keep)
        self.grants.append((part, keep, left, granted))
        return granted

    @property
    def parts(self) -> list[str]:
        return [part for part, *_ in self.grants]


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_SpiedDeadline]]:
    _SpiedDeadline.made = []
    monkeypatch.setattr(_configure, "_Deadline", _SpiedDeadline)
    yield _SpiedDeadline


def _configured(receiver: OTLPReceiver, registry: CollectorRegistry) -> evobs.Telemetry:
    return evobs.configure(
        "evobs-shutdown",
        traces="otlp",
        otlp_endpoint=receiver.base_url,
        export_timeout=30.0,
        metrics_port=0,
        logs="json",
        log_stream=io.StringIO(),
        registry=registry,
        set_global=False,
    )


def _calls(telemetry: evobs.Telemetry, moto_url: str, n: int) -> None:
    session = boto3.Session(region_name="us-east-1")
    telemetry.instrument(session)
    sts = session.client("sts", endpoint_url=moto_url)
    for _ in range(n):
        sts.get_caller_identity()


def _port_released(port: int, timeout: float = 20.0) -> bool:
    """Poll until nothing accepts on ``port`` (the server stops on its own thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.02)
    return False


def _check_grants(deadline: _SpiedDeadline) -> None:
    """Each grant is what the one deadline had left, less what the later parts keep."""
    for part, keep, left, granted in deadline.grants:
        assert 0.0 <= granted <= max(left - keep, 0.0), (part, keep, left, granted)
        assert left <= deadline.seconds, part


def test_collector_never_answers_every_part_shares_one_deadline(
    spied: type[_SpiedDeadline], registry: CollectorRegistry, moto_url: str
) -> None:
    """A collector that never answers: the flush leaves a share of the timeout to the
    parts after it, abandoning the spans and stopping the metrics server take theirs out
    of the same deadline, and shutdown reports the spans unflushed."""
    with otlp_receiver("hang") as hanging:
        telemetry = _configured(hanging, registry)
        port = telemetry.metrics_port
        assert port
        _calls(telemetry, moto_url, 20)
        telemetry.force_flush(timeout=0.2)  # the export thread is now stuck in a request
        _calls(telemetry, moto_url, 5)  # and these wait in the queue behind it
        timeout = 2.0
        flushed = telemetry.shutdown(timeout=timeout)

    assert flushed is False
    (deadline,) = spied.made
    assert deadline.seconds == timeout
    assert deadline.parts == ["flush", "abandon", "metrics_server"]
    _check_grants(deadline)
    flush_keep = deadline.grants[0][1]
    assert flush_keep == pytest.approx(
        min(timeout * _configure._AFTER_FLUSH_SHARE, _configure._AFTER_FLUSH_MAX_SECONDS)
    )
    assert 0 < deadline.grants[1][1] < flush_keep  # abandoning leaves the server its share
    assert deadline.grants[2][1] == 0.0  # the last part may use all that is left
    assert _port_released(port)
    assert telemetry.metrics_server is None


def test_healthy_collector_flushes_then_stops_the_server(
    spied: type[_SpiedDeadline], registry: CollectorRegistry, moto_url: str
) -> None:
    """A collector that answers: the flush completes within its share, nothing is
    abandoned, the metrics server stops within what is left, every span arrives."""
    with otlp_receiver() as receiver:
        telemetry = _configured(receiver, registry)
        port = telemetry.metrics_port
        assert port
        _calls(telemetry, moto_url, 5)
        assert telemetry.shutdown(timeout=30.0) is True
        assert len(receiver.named("STS.GetCallerIdentity")) == 5

    (deadline,) = spied.made
    assert deadline.parts == ["flush", "metrics_server"]
    _check_grants(deadline)
    assert _port_released(port)


def test_no_provider_no_server_nothing_to_share(
    spied: type[_SpiedDeadline], registry: CollectorRegistry
) -> None:
    """traces=None, metrics_port=None: shutdown has no part to bound and returns True."""
    telemetry = evobs.configure(
        traces=None, metrics_port=None, logs=None, registry=registry, set_global=False
    )
    assert telemetry.shutdown(timeout=1.0) is True
    (deadline,) = spied.made
    assert deadline.parts == []


def test_shutdown_is_idempotent_and_a_repeat_waits_for_nothing(
    spied: type[_SpiedDeadline], registry: CollectorRegistry, moto_url: str
) -> None:
    """A second shutdown (e.g. the exit handler after an explicit one) asks for no share."""
    with otlp_receiver() as receiver:
        telemetry = _configured(receiver, registry)
        _calls(telemetry, moto_url, 1)
        assert telemetry.shutdown(timeout=30.0) is True
    assert telemetry.shutdown(timeout=30.0) is True
    first, second = spied.made
    assert first.parts == ["flush", "metrics_server"]
    assert second.parts == []
