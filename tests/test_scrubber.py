"""The credential scrubber, error codes, and the one exception/status builder.

Every form of ``tests/secret_forms.py`` loses its credentials; real AWS and botocore
error messages come out unchanged (the scrubber must not mask ordinary text); error
codes from the wire are scrubbed and bounded; the client's own credentials, a call's
S3 keys and its sensitive params are masked in every text of an exception event.
"""

from __future__ import annotations

import datetime
import inspect
import string
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.credentials import (
    Credentials,
    DeferredRefreshableCredentials,
    RefreshableCredentials,
)
from botocore.exceptions import ClientError, EndpointConnectionError

from evobs import _redact
from evobs._call import Call
from evobs._compat import botocore as compat
from evobs._operation import operation_for

from .secret_forms import FORMS, leaks, make_secret

SECRET = make_secret()
KEY_ID = "AKIAEVOBSFORMSTEST01"


@pytest.fixture(autouse=True)
def _fresh_clean_cache() -> None:
    """Each test scans its texts (none is remembered as clean from another test)."""
    _redact._CLEAN.clear()


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_loses_its_credentials(form: str) -> None:
    """Each form, alone and between ordinary words: no secret, no key id, the marker in
    its place, and scrubbing again changes nothing."""
    for text in (FORMS[form](SECRET, KEY_ID), f"failed: {FORMS[form](SECRET, KEY_ID)} (retry)"):
        out = _redact.scrub_credentials(text)
        assert leaks(out, SECRET, KEY_ID) == [], (text, out)
        assert _redact.MARK in out
        assert _redact.scrub_credentials(out) == out


def test_only_the_value_is_masked() -> None:
    """The credential's name and its quoting stay (they say what was there)."""
    scrub = _redact.scrub_credentials
    assert scrub("{'SecretAccessKey': 'abc'}") == "{'SecretAccessKey': '<redacted>'}"
    assert scrub("{'X-Amz-Security-Token': b'abc'}") == "{'X-Amz-Security-Token': b'<redacted>'}"
    assert scrub("<SessionToken>abc</SessionToken>") == "<SessionToken><redacted></SessionToken>"
    assert scrub('{"SessionToken" : "abc"}') == '{"SessionToken" : "<redacted>"}'
    assert (
        scrub("?X-Amz-Date=1&X-Amz-Signature=ab&x=1")
        == "?X-Amz-Date=1&X-Amz-Signature=<redacted>&x=1"
    )
    assert scrub("Authorization: AWS AKID:sig=\nnext") == "Authorization: <redacted>\nnext"
    assert (
        scrub("{'Authorization': 'AWS4-HMAC-SHA256 Credential=a/b, Signature=c', 'Host': 'h'}")
        == "{'Authorization': '<redacted>', 'Host': 'h'}"
    )


def test_a_greedy_value_does_not_hide_the_next_credential() -> None:
    """A value that swallows the next credential's name (no delimiter between them)
    still leaves nothing of that credential."""
    out = _redact.scrub_credentials(f"Signature: Authorization: AWS {KEY_ID}:{SECRET}")
    assert leaks(out, SECRET, KEY_ID) == []


#: Real error messages from AWS services and the SDK: none holds a credential, every one
#: must come out exactly as it went in.
AWS_MESSAGES = (
    "The specified key does not exist.",
    "The specified bucket does not exist",
    "Access Denied",
    "Not Found",
    "Bad Request",
    "We encountered an internal error. Please try again.",
    "Please reduce your request rate.",
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details.",
    "The request signature we calculated does not match the signature you provided. Check "
    "your key and signing method.",
    "The AWS Access Key Id you provided does not exist in our records.",
    "The security token included in the request is invalid.",
    "The security token included in the request is expired",
    "The provided token has expired.",
    "The provided token is malformed or otherwise invalid.",
    "Request has expired",
    "Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z "
    "(20260101T002000Z - 5 min.)",
    "Signature not yet current: 20260101T003000Z is still later than 20260101T002500Z "
    "(20260101T002000Z + 5 min.)",
    "Authorization header requires 'Credential' parameter. Authorization header requires "
    "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.",
    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'",
    "Error parsing the X-Amz-Credential parameter; the region 'us-east-1' is wrong; "
    "expecting 'us-west-2'",
    "Credential should be scoped to a valid region. ",
    "Credential should be scoped to correct service: 's3'. ",
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
    "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
    "query string parameter or the Authorization header should be specified",
    "Missing Authentication Token",
    "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: s3:GetObject on "
    'resource: "arn:aws:s3:::my-bucket/reports/2026/q1.csv" because no identity-based '
    "policy allows the s3:GetObject action",
    "User: arn:aws:sts::123456789012:assumed-role/app/i-0abc is not authorized to perform: "
    "sts:AssumeRole on resource: arn:aws:iam::123456789012:role/admin",
    "The conditional request failed",
    "Requested resource not found",
    "Requested resource not found: Table: orders not found",
    "1 validation error detected: Value 'x' at 'tableName' failed to satisfy constraint: "
    "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    "One or more parameter values were invalid: Missing the key id in the item",
    "The provided key element does not match the schema",
    "Rate exceeded",
    "Throughput exceeds the current capacity of your table or index.",
    "The specified queue does not exist for this wsdl version.",
    "The receipt handle has expired.",
    "Value secret for parameter MessageAttributeName is invalid. Reason: must be a prefix.",
    "Secrets Manager can't find the specified secret.",
    "The operation failed because the secret my-app/db already exists.",
    "You can't perform this operation on the secret because it was marked for deletion.",
    "Invalid pagination token: the token is not valid for this request.",
    "The token is invalid for this operation. Use a token returned by a previous call.",
    "Bearer authentication is not supported for this operation.",
    "The ciphertext refers to a customer master key that does not exist, does not exist in "
    "this region, or you are not allowed to access.",
    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab is disabled.",
    "Function not found: arn:aws:lambda:us-east-1:123456789012:function:my-function",
    "Task timed out after 3.00 seconds",
    'Invalid base64: "not base64"',
    'Could not connect to the endpoint URL: "https://sts.us-east-1.amazonaws.com/"',
    'Read timeout on endpoint URL: "https://s3.eu-west-1.amazonaws.com/my-bucket/key"',
    "An error occurred (ExpiredToken) when calling the GetCallerIdentity operation: The "
    "security token included in the request is expired",
    "An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: "
    "The security token included in the request is invalid.",
    "An error occurred (SignatureDoesNotMatch) when calling the PutObject operation: The "
    "request signature we calculated does not match the signature you provided.",
    "Unable to locate credentials",
    "Partial credentials found in env, missing: AWS_SECRET_ACCESS_KEY",
    "Error when retrieving credentials from container-role: Error retrieving metadata: "
    "Received non 200 response (500) from container metadata: Internal Server Error",
    "The config profile (dev) could not be found",
    "Asia Pacific (Tokyo) is not enabled for this account",
    'Parameter validation failed:\nMissing required parameter in input: "Key"',
)


def _botocore_messages() -> list[str]:
    """Every botocore exception's message template, its fields filled with words."""
    messages = []
    for _, cls in inspect.getmembers(botocore.exceptions, inspect.isclass):
        fmt = getattr(cls, "fmt", None)
        if isinstance(fmt, str):
            fields = {f for _, f, _, _ in string.Formatter().parse(fmt) if f}
            messages.append(fmt.format(**{f: f"example-{f}" for f in fields}))
    return messages


@pytest.mark.parametrize("message", [*AWS_MESSAGES, *_botocore_messages()])
def test_ordinary_error_messages_pass_unchanged(message: str) -> None:
    """No false positive: real AWS messages and every botocore exception template."""
    assert _redact.scrub_credentials(message) == message


def test_botocore_templates_are_many() -> None:
    """The botocore corpus above is the library's own (not an empty parametrization)."""
    assert len(_botocore_messages()) >= 50


# -- error codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("NoSuchKey", "NoSuchKey"),
        ("AWS.SimpleQueueService.NonExistentQueue", "AWS.SimpleQueueService.NonExistentQueue"),
        ("InvalidInstanceID.Malformed", "InvalidInstanceID.Malformed"),
        ("404", "404"),
        (KEY_ID, "<redacted>"),
        (f"Denied X-Amz-Signature={SECRET}", "Denied X-Amz-Signature=<redacted>"),
        (404, "404"),
    ],
)
def test_safe_error_code(code: Any, expected: str) -> None:
    """Real codes unchanged; a credential in a code masked."""
    assert _redact.safe_error_code(code) == expected


def test_safe_error_code_is_bounded_and_never_splits_a_key_id() -> None:
    """A garbage code is cut to ``MAX_CODE_CHARS``; a key id split by the scan bound
    leaves no head behind, even when masking shrinks what precedes it into the output."""
    assert _redact.safe_error_code("x" * 100_000) == "x" * _redact.MAX_CODE_CHARS
    shrinking = ("Signature=" + "a" * 240 + " ") * 4  # each value becomes the short marker
    cut = 4 * _redact.MAX_CODE_CHARS
    for kept in range(1, len(KEY_ID)):
        code = shrinking + " " * (cut - len(shrinking) - kept) + KEY_ID
        out = _redact.safe_error_code(code)
        assert out.count("<redacted>") == 4
        assert KEY_ID[:kept] not in out, kept


def test_safe_error_code_of_an_unprintable_object() -> None:
    """A code whose ``str()`` raises is its type, in angle brackets."""

    class Odd:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert _redact.safe_error_code(Odd()) == "<Odd>"


# -- the client's own credentials ---------------------------------------------------------

OWN_KEY = "AKIAEVOBSOWNKEY00001"
OWN_SECRET = "evobs/Own+Secret=Key0123456789abcdefghij"
OWN_TOKEN = "IQoJevobsOwnSessionToken/+=0123456789"


def _client(**credentials: Any) -> Any:
    session = boto3.Session(region_name="us-east-1", **credentials)
    return session.client("s3", endpoint_url="http://127.0.0.1:9")


def test_signing_credentials_plain() -> None:
    """Static credentials: the three values, read from the signer the client uses."""
    client = _client(
        aws_access_key_id=OWN_KEY, aws_secret_access_key=OWN_SECRET, aws_session_token=OWN_TOKEN
    )
    signer = compat.client_signer(client)
    assert signer is client._request_signer
    assert compat.signing_credentials(signer) == (OWN_KEY, OWN_SECRET, OWN_TOKEN)


def test_signing_credentials_of_expired_refreshable_credentials() -> None:
    """Refreshable credentials past their expiry: the values last signed with, and no
    refresh (reading ``access_key`` would call the provider from inside an error path)."""
    calls: list[int] = []

    def fetch() -> dict[str, str]:
        calls.append(1)
        return {
            "access_key": "x" * 20,
            "secret_key": "y" * 40,
            "token": "z" * 40,
            "expiry_time": "",
        }

    expired = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    client = _client(aws_access_key_id="placeholder1", aws_secret_access_key="placeholder2")
    client._request_signer._credentials = RefreshableCredentials(
        OWN_KEY, OWN_SECRET, OWN_TOKEN, expired, fetch, "test"
    )
    assert compat.signing_credentials(client._request_signer) == (OWN_KEY, OWN_SECRET, OWN_TOKEN)
    assert calls == []


def test_signing_credentials_never_refresh() -> None:
    """Refreshable credentials not fetched yet: nothing, and no refresh (no provider call)."""
    calls: list[int] = []

    def fetch() -> dict[str, str]:
        calls.append(1)
        return {"access_key": OWN_KEY, "secret_key": OWN_SECRET, "token": "", "expiry_time": ""}

    client = _client(aws_access_key_id="placeholder1", aws_secret_access_key="placeholder2")
    client._request_signer._credentials = DeferredRefreshableCredentials(fetch, "test")
    assert compat.signing_credentials(client._request_signer) == ()
    assert calls == []


def test_compat_reads_exactly_these_private_attributes() -> None:
    """The private attributes ``evobs._compat.botocore`` reads, by name, on the installed
    botocore: ``BaseClient._request_signer``, ``RequestSigner._credentials`` and
    ``RefreshableCredentials._frozen_credentials`` (what ``get_frozen_credentials``
    returns). If botocore renames one, this fails (and redaction loses only the masking of
    the client's own credentials, never raises)."""
    assert compat.CLIENT_SIGNER == "_request_signer"
    assert compat.SIGNER_CREDENTIALS == "_credentials"
    assert compat.FROZEN == "_frozen_credentials"
    client = _client(aws_access_key_id=OWN_KEY, aws_secret_access_key=OWN_SECRET)
    assert "_request_signer" in vars(client)
    assert isinstance(vars(client._request_signer)["_credentials"], Credentials)
    refreshable = RefreshableCredentials(OWN_KEY, OWN_SECRET, OWN_TOKEN, None, lambda: {}, "test")
    assert vars(refreshable)["_frozen_credentials"][:3] == (OWN_KEY, OWN_SECRET, OWN_TOKEN)
    assert "_frozen_credentials" in vars(DeferredRefreshableCredentials(lambda: {}, "test"))
    plain = vars(Credentials(OWN_KEY, OWN_SECRET, OWN_TOKEN))
    assert {"access_key", "secret_key", "token"} <= set(plain)


def test_signing_credentials_fallback_gives_nothing() -> None:
    """Anything not shaped like botocore's signer gives an empty tuple, never an error."""
    for odd in (None, object(), 3, {"_credentials": 1}):
        assert compat.signing_credentials(odd) == ()
    assert compat.client_signer(object()) is None


def test_credential_forms_skip_placeholders() -> None:
    """Credentials shorter than ``MIN_CREDENTIAL_CHARS`` (``testing``) are not masked
    everywhere; real ones are, as they are and URL-encoded."""
    forms = _redact.credential_forms(["testing", OWN_SECRET])
    assert "testing" not in forms
    assert OWN_SECRET in forms and "evobs%2FOwn%2BSecret%3DKey0123456789abcdefghij" in forms


def _failed_call(client: Any, operation: str, params: dict[str, Any]) -> Call:
    model = client.meta.service_model.operation_model(operation)
    call = Call(operation_for(model), "us-east-1", 0)
    call.params = params
    call.signer = client._request_signer
    call.outcome = "error"
    return call


def test_exception_event_masks_own_credentials_keys_and_sensitive_values() -> None:
    """An exception quoting the client's secret key and token, an S3 key and an SSE-C key:
    the event's message and stack trace and the status description hold none of them;
    the S3 key is there with ``capture_s3_keys``."""
    client = _client(
        aws_access_key_id=OWN_KEY, aws_secret_access_key=OWN_SECRET, aws_session_token=OWN_TOKEN
    )
    ssec = "evobs-ssec-key-32-bytes-long!!!!"
    call = _failed_call(
        client,
        "GetObject",
        {"Bucket": "b", "Key": "people/alice smith.txt", "SSECustomerKey": ssec},
    )
    try:
        raise EndpointConnectionError(
            endpoint_url=f"http://h/b/people/alice%20smith.txt?k={OWN_SECRET} {OWN_TOKEN} {ssec}"
        )
    except EndpointConnectionError as exc:
        call.exception = exc
    event, description = _redact.exception_event(call.exception, call)
    texts = [description, *event.values()]
    for value in (OWN_SECRET, OWN_TOKEN, ssec, "alice", "alice%20smith"):
        assert not any(value in t for t in texts), value
    assert description.startswith("EndpointConnectionError: Could not connect")
    assert event["exception.type"] == "botocore.exceptions.EndpointConnectionError"
    assert "Traceback (most recent call last)" in event["exception.stacktrace"]
    assert _redact.KEY in event["exception.message"]
    kept, _ = _redact.exception_event(call.exception, call, capture_s3_keys=True)
    assert "alice%20smith" in kept["exception.message"]
    assert OWN_SECRET not in kept["exception.message"]


def test_exception_event_without_exception_names_the_code() -> None:
    """An HTTP error (no exception object): the event is the code and the message."""
    client = _client(aws_access_key_id="testing", aws_secret_access_key="testing")
    call = _failed_call(client, "GetObject", {"Bucket": "b", "Key": "k"})
    call.error_code = "NoSuchKey"
    call.error_message = "The specified key does not exist."
    event, description = _redact.exception_event(None, call)
    assert event == {
        "exception.type": "NoSuchKey",
        "exception.message": "The specified key does not exist.",
    }
    assert description == "NoSuchKey: The specified key does not exist."


def test_s3_keys_are_masked_only_on_their_own() -> None:
    """A short key (``k``) is masked where it stands alone, not inside other words."""
    masks = _redact.masks_for(None, keys=["k"])
    out = _redact.redact_text("NoSuchKey for bucket/k: key k not found", masks=masks)
    assert out == "NoSuchKey for bucket/<s3-key>: key <s3-key> not found"


def test_a_client_error_code_reaches_nothing_raw() -> None:
    """``exception_event`` scrubs a code it is given, whatever its source."""
    exc = ClientError({"Error": {"Code": KEY_ID, "Message": "m"}}, "GetObject")
    event, description = _redact.exception_event(exc, code=KEY_ID)
    assert KEY_ID not in description and KEY_ID not in repr(event)


def test_safe_error_code_masks_a_bare_secret_and_keeps_long_names() -> None:
    """A code that is (or holds) a bare secret key or token is masked; a long code that is
    a name (letters only) is not."""
    assert _redact.safe_error_code(OWN_SECRET) == "<redacted>"
    assert _redact.safe_error_code(f"Denied {OWN_TOKEN}") == "Denied <redacted>"
    name = "ThisIsAVeryLongErrorCodeNameWithoutAnyDigitsInIt"
    assert _redact.safe_error_code(name) == name


def test_s3_keys_of_copy_source_in_every_form() -> None:
    """``CopySource`` as boto3's dict and as botocore's string (URL-encoded key, version):
    the key itself is among the call's S3 keys."""
    model = _client(
        aws_access_key_id="testing", aws_secret_access_key="testing"
    ).meta.service_model.operation_model("CopyObject")
    as_dict = {"Bucket": "b", "Key": "dst", "CopySource": {"Bucket": "src", "Key": "a b.txt"}}
    as_string = {"Bucket": "b", "Key": "dst", "CopySource": "src/people/a%20b.txt?versionId=7"}
    assert set(_redact.s3_keys(model, as_dict)) == {"dst", "a b.txt"}
    assert "people/a b.txt" in _redact.s3_keys(model, as_string)
    assert "people/a%20b.txt" in _redact.s3_key_forms(_redact.s3_keys(model, as_string))


def test_a_calls_masks_are_gathered_once_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The status, the exception event and the log line of one failed call share the
    masks gathered for it (once per ``capture_s3_keys``), and the call lets go of them
    when it ends, with its params."""
    from evobs._handlers import _release

    client = _client(aws_access_key_id=OWN_KEY, aws_secret_access_key=OWN_SECRET)
    call = _failed_call(client, "GetObject", {"Bucket": "b", "Key": "people/k.txt"})
    call.error_code = "AccessDenied"
    call.error_message = f"Denied: people/k.txt signed with {OWN_SECRET}"
    gathered: list[tuple[Any, ...]] = []
    real = _redact._gather

    def counting(*args: Any) -> Any:
        gathered.append(args)
        return real(*args)

    monkeypatch.setattr(_redact, "_gather", counting)
    masks = _redact.masks_for(call)
    event, description = _redact.exception_event(None, call)
    logged = _redact.error_message(call)
    assert len(gathered) == 1 and _redact.masks_for(call) is masks
    for text in (description, event["exception.message"], logged):
        assert OWN_SECRET not in text and "people/k.txt" not in text
    kept = _redact.masks_for(call, capture_s3_keys=True)
    assert len(gathered) == 2 and kept is not masks and not kept.keys
    assert _redact.masks_for(None, keys=["x"]) is not masks and len(gathered) == 3
    _release(call)
    assert call._masks is None
