"""boto3 is the ``boto3`` extra, not a dependency: without it evobs instruments botocore
sessions and clients, and ``instrument()`` with no argument says which extra to install."""

from __future__ import annotations

import sys

import botocore.session
import pytest
from prometheus_client import CollectorRegistry

import evobs


@pytest.fixture
def no_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import boto3`` fails as it does where boto3 is not installed."""
    monkeypatch.setitem(sys.modules, "boto3", None)


@pytest.mark.usefixtures("no_boto3")
def test_default_session_without_boto3_names_the_extra() -> None:
    """instrument() with no argument raises a TypeError that says `pip install 'evobs[boto3]'`."""
    with pytest.raises(TypeError, match=r"boto3 is not installed: pip install 'evobs\[boto3\]'"):
        evobs.instrument()


@pytest.mark.usefixtures("no_boto3")
def test_configure_instrument_true_without_boto3_names_the_extra() -> None:
    """configure(instrument=True) fails the same way, and leaves nothing running."""
    with pytest.raises(TypeError, match=r"evobs\[boto3\]"):
        evobs.configure(
            traces=None,
            metrics_port=None,
            logs=None,
            registry=CollectorRegistry(),
            set_global=False,
            instrument=True,
        )


@pytest.mark.usefixtures("no_boto3")
def test_botocore_session_needs_no_boto3(moto_url: str) -> None:
    """A botocore session is instrumented and its calls recorded with boto3 unimportable."""
    registry = CollectorRegistry()
    session = botocore.session.get_session()
    handle = evobs.instrument(session, registry=registry)
    try:
        sts = session.create_client("sts", region_name="us-east-1", endpoint_url=moto_url)
        sts.get_caller_identity()
    finally:
        handle.uninstrument()
    assert (
        registry.get_sample_value(
            "aws_sdk_call_attempts_total", {"service": "STS", "operation": "GetCallerIdentity"}
        )
        == 1
    )
