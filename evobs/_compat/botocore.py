"""botocore internals evobs reads: the credentials a client signs with, never refreshed.

Redaction masks a client's own credentials wherever an error text quotes them. botocore
has no public way to see them without side effects: ``RefreshableCredentials``'s
``access_key``/``secret_key``/``token`` properties refresh expired credentials (an STS or
IMDS call from inside an error path), and a client's signer is private. These reads are
done here only, on the error path only, and give nothing (never raise) when botocore's
shape is not the expected one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["client_signer", "signing_credentials"]

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
        return tuple([v for v in values if type(v) is str and v])
    except Exception:
        return ()
