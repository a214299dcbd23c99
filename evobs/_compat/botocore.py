"""botocore's and boto3's private details evobs reads.

Among them the credentials a client signs with, for redaction (a client's own
credentials are masked wherever an error text quotes them): botocore has no public way
to see them without side effects (``RefreshableCredentials``'s ``access_key`` /
``secret_key`` / ``token`` properties refresh expired credentials, an STS or IMDS call
from inside an error path), so they are read here only, on the error path only, and
give nothing (never raise) when botocore's shape is not the expected one.
"""

from __future__ import annotations

from typing import Any, Final

from botocore.awsrequest import AWSPreparedRequest

from . import parameter_names

__all__ = [
    "PREPARED_REQUEST_HAS_CONTEXT",
    "client_signer",
    "default_boto3_session",
    "signing_credentials",
    "throttling_error_codes",
    "unaliased",
]

#: The attribute of botocore's ``EventAliaser`` holding the emitter it forwards to.
ALIASED_EMITTER: Final = "_emitter"


def unaliased(emitter: Any) -> Any:
    """The emitter a botocore ``EventAliaser`` (every session's and client's) forwards
    to (``EventAliaser._emitter``), for evobs to register on: evobs's event names
    (wildcards, generic names) are never aliased, and aliasing a name botocore has not
    seen tries each of its ~60 aliases (most of them raising and catching a
    ``ValueError``), a cost every cold start would pay for each of evobs's names.
    Handlers registered there are what the aliaser emits to, copied with it into every
    client. Fallback: the emitter itself (anything else, or an aliaser of another shape)."""
    try:
        from botocore.hooks import EventAliaser

        if type(emitter) is EventAliaser:
            inner = vars(emitter).get(ALIASED_EMITTER)
            if callable(getattr(inner, "register_first", None)) and callable(
                getattr(inner, "unregister", None)
            ):
                return inner
    except Exception:
        pass
    return emitter


#: ``HierarchicalEmitter._register_first``: what the public ``register_first`` calls once
#: it has checked, with ``inspect.getfullargspec``, that the handler takes ``**kwargs``.
UNCHECKED_REGISTER_FIRST: Final = "_register_first"


def register_first(emitter: Any, event: str, handler: Any, unique_id: str) -> None:
    """``emitter.register_first(event, handler, unique_id=unique_id)`` for one of evobs's
    own handlers, without botocore's signature check: ``getfullargspec`` costs about
    70 k instructions a handler, eight per instrumented session at every cold start,
    to learn what a test asserts of each of evobs's handlers (they take ``**kwargs``).
    Fallback: the public ``register_first`` (another emitter, or another shape)."""
    try:
        from botocore.hooks import HierarchicalEmitter

        if type(emitter) is HierarchicalEmitter:
            method = getattr(emitter, UNCHECKED_REGISTER_FIRST, None)
            if callable(method):
                method(event, handler, unique_id, False)
                return
    except TypeError:
        pass  # another signature: registered below, checked
    emitter.register_first(event, handler, unique_id=unique_id)


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
PREPARED_REQUEST_HAS_CONTEXT: Final = "context" in parameter_names(AWSPreparedRequest.__init__)


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


#: The attributes read, by the object they are read from (the test names each).
SIGNER_CREDENTIALS = "_credentials"  # botocore.signers.RequestSigner
#: RefreshableCredentials: what ``get_frozen_credentials`` returns, so what the signer signs
#: with (set on every refresh; None until a deferred one is first fetched).
FROZEN = "_frozen_credentials"
PLAIN_VALUES = ("access_key", "secret_key", "token")  # Credentials: plain instance attributes
CLIENT_SIGNER = "_request_signer"  # botocore.client.BaseClient


def client_signer(client: object) -> Any:
    """A client's ``RequestSigner`` (what before-call passes as ``request_signer``), or None."""
    try:
        return vars(client).get(CLIENT_SIGNER)
    except Exception:
        return None


def signing_credentials(signer: object) -> tuple[str, ...]:
    """The access key id, secret key and session token ``signer`` signs with, as they are
    now (no refresh, no provider call); empty when they cannot be read."""
    try:
        credentials = vars(signer).get(SIGNER_CREDENTIALS)
        if credentials is None:
            return ()
        # ``vars`` reads instance attributes only: no property runs (a refresh would).
        state = vars(credentials)
        frozen = state.get(FROZEN)
        if frozen is not None:  # ReadOnlyCredentials(access_key, secret_key, token, ...)
            values = (frozen[0], frozen[1], frozen[2])
        else:  # plain Credentials (a refreshable one not fetched yet has neither)
            values = (
                state.get(PLAIN_VALUES[0]),
                state.get(PLAIN_VALUES[1]),
                state.get(PLAIN_VALUES[2]),
            )
        found: tuple[str, ...] = ()
        for value in values:  # no comprehension: its frame costs more than the loop
            if type(value) is str and value:
                found += (value,)
        return found
    except Exception:
        return ()
