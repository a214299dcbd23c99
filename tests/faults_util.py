"""Helpers for fault-path tests: zero retry jitter, a closed port, span inspection."""

from __future__ import annotations

import socket
import types
from typing import Any

import botocore.handlers
import pytest
from botocore.retries import standard
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from .conftest import SpanRecorder

# Retry behaviours of newer botocore that the lowest supported one (1.35) does not have;
# the tests of evobs on those paths run where botocore behaves so.
#: Standard/adaptive mode retries a 429 whose body names no modeled error (throttling).
BOTOCORE_RETRIES_BARE_429 = hasattr(standard, "ThrottlingStatusCodeChecker")
#: Backoff honours the server's ``x-amz-retry-after`` header.
BOTOCORE_HONOURS_RETRY_AFTER = hasattr(standard.ExponentialBackoff, "_RETRY_AFTER_HEADER")
#: An S3 200 response with an error body is an error (retried) on every operation, not
#: only on CopyObject, UploadPartCopy and CompleteMultipartUpload.
BOTOCORE_S3_200_ERRORS_EVERYWHERE = hasattr(botocore.handlers, "_handle_200_error")


def _zero() -> float:
    return 0.0


def zero_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make botocore's retry jitter 0 (DESIGN 6), so retries cost no sleep.

    The retry decision stays botocore's: only the random factor of the delay is
    zeroed, in standard/adaptive mode (``ExponentialBackoff``'s ``random``) and in
    legacy mode (the ``'rand'`` base of ``retryhandler.delay_exponential``).
    """
    original = standard.ExponentialBackoff.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["random"] = _zero
        original(self, *args, **kwargs)

    monkeypatch.setattr(standard.ExponentialBackoff, "__init__", init)
    monkeypatch.setattr("botocore.retryhandler.random", types.SimpleNamespace(random=_zero))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def attrs(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as a plain dict."""
    return dict(span.attributes or {})


def retry_events(span: ReadableSpan) -> list[dict[str, Any]]:
    """The attributes of the span's ``aws.sdk.retry`` events, in order."""
    return [dict(e.attributes or {}) for e in span.events if e.name == "aws.sdk.retry"]


def attempt_spans(recorder: SpanRecorder, call_span: ReadableSpan) -> list[ReadableSpan]:
    """The call span's attempt children, ordered by ``http.request.resend_count``."""
    found = [
        s
        for s in recorder.named(f"{call_span.name} attempt")
        if s.parent is not None and s.parent.span_id == call_span.context.span_id
    ]
    return sorted(found, key=lambda s: attrs(s)["http.request.resend_count"])


def assert_clean(recorder: SpanRecorder) -> None:
    """Every span started was ended, and no span is left current."""
    assert recorder.started == recorder.ended
    assert not trace.get_current_span().get_span_context().is_valid
