"""botocore's and boto3's private details evobs reads."""

from __future__ import annotations

import inspect
from typing import Any, Final

from botocore.awsrequest import AWSPreparedRequest

__all__ = ["PREPARED_REQUEST_HAS_CONTEXT", "default_boto3_session", "throttling_error_codes"]


def throttling_error_codes() -> frozenset[str]:
    """botocore's own union of throttling error codes (standard retry mode:
    ``retries.standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES``). Fallback:
    the codes botocore 1.35 to 1.44 list, so throttling stays throttling."""
    try:
        from botocore.retries.standard import ThrottledRetryableChecker

        codes = ThrottledRetryableChecker._THROTTLED_ERROR_CODES
        if codes and all(isinstance(c, str) for c in codes):
            return frozenset(codes)
    except (ImportError, AttributeError, TypeError):
        pass
    return _KNOWN_THROTTLING_CODES


_KNOWN_THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

#: before-send gets the prepared request's ``.context`` only from botocore 1.43.68 (a
#: constructor parameter, public once there); before that the attempt in progress is
#: correlated through a context variable.
PREPARED_REQUEST_HAS_CONTEXT: Final = (
    "context" in inspect.signature(AWSPreparedRequest.__init__).parameters
)


def default_boto3_session() -> Any:
    """boto3's default session (behind ``boto3.client``), created if it has none yet:
    ``boto3._get_default_session()``. Fallback: ``boto3.setup_default_session()`` and
    the public ``boto3.DEFAULT_SESSION``."""
    import boto3

    getter = getattr(boto3, "_get_default_session", None)
    if callable(getter):
        return getter()
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    return boto3.DEFAULT_SESSION
