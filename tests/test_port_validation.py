"""Ports and other arguments are checked where they are given: ``configure(metrics_port=)``
and ``evobs demo --metrics-port`` take 0..65535 and say so, instead of ending in an
``OverflowError`` traceback from the socket layer; the command's errors go to stderr with a
non-zero exit (the port-in-use case runs the real command in tests/test_cli_demo.py)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import evobs
from evobs.cli import main


@pytest.mark.parametrize("port", [70000, 65536, -1, True, 9464.0, "9464"])
def test_configure_rejects_what_is_not_a_port(port: Any) -> None:
    """Out of range, negative, bool, float or str: a ValueError naming the parameter and
    the range, raised before anything is started."""
    with pytest.raises(ValueError, match=r"metrics_port must be a port number from 0 to 65535"):
        evobs.configure(
            traces=None,
            metrics_port=port,
            logs=None,
            registry=CollectorRegistry(),
            set_global=False,
        )


@pytest.mark.parametrize("port", [0, None])
def test_configure_accepts_a_free_port_or_none(port: int | None) -> None:
    """0 (a free port) and None (no server) are accepted at both ends of the check."""
    telemetry = evobs.configure(
        traces=None, metrics_port=port, logs=None, registry=CollectorRegistry(), set_global=False
    )
    try:
        assert (telemetry.metrics_port is None) == (port is None)
    finally:
        telemetry.shutdown()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-port", "70000"], "must be a port number from 0 to 65535"),
        (["--metrics-port", "-1"], "must be a port number from 0 to 65535"),
        (["--metrics-port", "http"], "must be a port number from 0 to 65535"),
        (["--duration", "0"], "must be a positive number of seconds"),
        (["--duration", "nan"], "must be a positive number of seconds"),
        (["--duration", "ten"], "must be a positive number of seconds"),
    ],
)
def test_demo_rejects_bad_arguments_on_stderr(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --metrics-port or --duration exits 2 with a one-line reason on stderr, naming
    the value, and prints nothing on stdout."""
    with pytest.raises(SystemExit) as exited:
        main(["demo", *args])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err and repr(args[1]) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("port", [-1, 65536, 70000, "9464", True])
def test_start_metrics_server_rejects_bad_ports(port: object) -> None:
    """``evobs.start_metrics_server`` names the valid range instead of an OverflowError."""
    with pytest.raises(ValueError, match="0 to 65535"):
        evobs.start_metrics_server(port=port)  # type: ignore[arg-type]
