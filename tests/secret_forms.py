"""Every textual form a credential arrives in, built around given values.

Shared by the scrubber's unit and property tests and the over-the-wire secrets tests.
A form is a function ``(secret, key_id) -> text``; ``secret`` is a value that must
not come out (a secret access key, session token or signature), ``key_id`` an access
key id. Each form is one a real error text carries: an error body that is not JSON,
JSON (also inside a JSON string), Python reprs, ``name=value`` and ``name: value``
lines, SigV4, SigV2 and Bearer Authorization headers, header dumps, presigned query
strings, and a bare access key id.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

#: What a generated secret starts and ends with: an alphanumeric run (so it is part of any
#: credential value, as real ones are) that no other text in the tests holds. A leak of the
#: whole value, its start or its end shows as one of these.
START = "Zq9CRED"
END = "9ENDqZ"

Form = Callable[[str, str], str]


def make_secret(body: str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY") -> str:
    """A secret value: ``START``, a body of base64 characters, ``END``."""
    return START + body + END


def _scope(key_id: str) -> str:
    return f"{key_id}/20260101/us-east-1/s3/aws4_request"


def _sigv4(secret: str, key_id: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={_scope(key_id)}, "
        f"SignedHeaders=host;x-amz-date;x-amz-security-token, Signature={secret}"
    )


FORMS: dict[str, Form] = {
    "xml elements": lambda s, k: (
        "<ErrorResponse><Credentials><AccessKeyId>"
        + k
        + "</AccessKeyId><SecretAccessKey>"
        + s
        + "</SecretAccessKey><SessionToken>"
        + s
        + "</SessionToken></Credentials></ErrorResponse>"
    ),
    "xml elements, pretty": lambda s, k: (
        f"<Credentials>\n  <AccessKeyId>\n    {k}\n  </AccessKeyId>\n"
        f"  <SecretAccessKey>\n    {s}\n  </SecretAccessKey>\n</Credentials>"
    ),
    "xml escaped in a message": lambda s, k: (
        f"&lt;SecretAccessKey&gt;{s}&lt;/SecretAccessKey&gt;&lt;AccessKeyId&gt;{k}"
        "&lt;/AccessKeyId&gt;"
    ),
    "json": lambda s, k: (
        f'{{"Credentials": {{"AccessKeyId": "{k}", "SecretAccessKey": "{s}", '
        f'"SessionToken": "{s}", "Expiration": "2026-01-01T00:00:00Z"}}}}'
    ),
    "json, compact": lambda s, k: f'{{"accessKeyId":"{k}","secretAccessKey":"{s}"}}',
    "json inside a json string": lambda s, k: (
        f'{{"body": "{{\\"AccessKeyId\\":\\"{k}\\",\\"SecretAccessKey\\":\\"{s}\\"}}"}}'
    ),
    "container credentials json": lambda s, k: (
        f'{{"AccessKeyId": "{k}", "SecretAccessKey": "{s}", "Token": "{s}"}}'
    ),
    "dict repr": lambda s, k: repr({"AccessKeyId": k, "SecretAccessKey": s, "SessionToken": s}),
    "keyword arguments repr": lambda s, k: (
        f"Session(aws_access_key_id='{k}', aws_secret_access_key='{s}', aws_session_token='{s}')"
    ),
    "frozen credentials repr": lambda s, k: (
        f"ReadOnlyCredentials(access_key='{k}', secret_key='{s}', token='{s}', account_id=None)"
    ),
    "bytes repr": lambda s, k: repr(
        {"X-Amz-Security-Token": s.encode(), "X-Amz-Date": b"20260101T000000Z"}
    ),
    "str repr": lambda s, k: repr(f"aws_secret_access_key={s}"),
    "name=value lines": lambda s, k: (
        f"[default]\naws_access_key_id = {k}\naws_secret_access_key = {s}\n"
    ),
    "environment": lambda s, k: f"AWS_ACCESS_KEY_ID={k} AWS_SECRET_ACCESS_KEY={s}",
    "name: value lines": lambda s, k: f"AccessKeyId: {k}\nSessionToken: {s}\n",
    "header lines": lambda s, k: f"x-amz-security-token: {s}\r\nx-amz-date: 20260101T000000Z",
    "sigv4 authorization header": lambda s, k: f"Authorization: {_sigv4(s, k)}",
    "sigv4 authorization echoed": lambda s, k: (
        f"Authorization header requires 'Signature' parameter. Authorization={_sigv4(s, k)}"
    ),
    "sigv2 authorization header": lambda s, k: f"Authorization: AWS {k}:{s}",
    "bearer authorization header": lambda s, k: f"authorization: Bearer {s}",
    "bearer token": lambda s, k: f"rejected Bearer {s}",
    "header dump": lambda s, k: repr(
        {
            "Authorization": _sigv4(s, k),
            "X-Amz-Security-Token": s,
            "X-Amz-Date": "20260101T000000Z",
        }
    ),
    "header tuples": lambda s, k: repr(
        [("Authorization", f"AWS {k}:{s}"), ("X-Amz-Security-Token", s)]
    ),
    "presigned sigv4 url": lambda s, k: (
        "https://bucket.s3.amazonaws.com/key?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={quote(_scope(k), safe='')}&X-Amz-Date=20260101T000000Z"
        f"&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Security-Token={quote(s, safe='')}"
        f"&X-Amz-Signature={quote(s, safe='')}"
    ),
    "presigned sigv2 url": lambda s, k: (
        f"https://bucket.s3.amazonaws.com/key?AWSAccessKeyId={k}&Expires=1767225600"
        f"&x-amz-security-token={quote(s, safe='')}&Signature={quote(s, safe='')}"
    ),
    "presigned url, re-encoded": lambda s, k: (
        "redirect=https%3A%2F%2Fbucket.s3.amazonaws.com%2Fkey%3FX-Amz-Credential%3D"
        f"{quote(_scope(k), safe='')}%26X-Amz-Signature%3D{quote(s, safe='')}"
    ),
    "access key id": lambda s, k: f"The access key {k} was used.",
}


def leaks(text: str, secret: str, key_id: str) -> list[str]:
    """What of ``secret`` and ``key_id`` is in ``text`` (empty: nothing)."""
    found = [marker for marker in (START, END) if marker in text]
    if secret in text:
        found.append("secret")
    if key_id in text or key_id[4:] in text:
        found.append("access key id")
    return found
