"""Prebuilt AWS responses returned from a ``before-send`` handler.

botocore still serializes, signs, emits every event and parses the response:
only the socket is skipped, so what is left is the SDK's own per-call work and
the instrumentation's. The handler is registered on the specific
``before-send.<sid>.<Operation>`` node, which botocore visits after the
``before-send.*.*`` node where evobs registers first (as moto's ``mock_aws``
answers on the generic ``before-send``), so evobs's timing still runs.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any, Final

from botocore.awsrequest import AWSResponse, HeadersDict

__all__ = ["OPERATIONS", "CannedResponder"]

#: The three operations of the canned and retry workloads, one of each per round.
OPERATIONS: Final = ("DynamoDB.GetItem", "S3.HeadObject", "S3.ListObjectsV2")

_LAST_MODIFIED_HTTP: Final = "Tue, 24 Nov 2026 10:00:00 GMT"
_LAST_MODIFIED_ISO: Final = "2026-11-24T10:00:00.000Z"
KEYS: Final = tuple(f"object-{i:02d}" for i in range(10))


class _Raw:
    """The ``raw`` of an AWSResponse: botocore reads the body through ``stream()``."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _response(status: int, headers: dict[str, str], body: bytes) -> AWSResponse:
    return AWSResponse("http://127.0.0.1:1/", status, HeadersDict(headers), _Raw(body))


def _dynamodb(status: int) -> AWSResponse:
    if status == 200:
        doc: dict[str, Any] = {"Item": {"pk": {"S": "k"}, "v": {"N": "1"}}}
    else:
        doc = {
            "__type": "com.amazon.coral.availability#ServiceUnavailableException",
            "message": "Service unavailable",
        }
    body = json.dumps(doc).encode()
    return _response(
        status,
        {
            "content-type": "application/x-amz-json-1.0",
            "content-length": str(len(body)),
            "x-amzn-requestid": "BENCHREQUESTID0000000000000000000000000000000000000",
            "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
        },
        body,
    )


def _s3_headers(status: int) -> dict[str, str]:
    return {
        "x-amz-request-id": "BENCH0000000000",
        "x-amz-id-2": "YmVuY2ggaG9zdCBpZA==",
        "date": _LAST_MODIFIED_HTTP,
        "server": "AmazonS3",
    }


def _s3_head(status: int) -> AWSResponse:
    headers = _s3_headers(status)
    if status == 200:
        headers.update(
            {
                "content-length": "3",
                "content-type": "application/octet-stream",
                "etag": '"acbd18db4cc2f85cedef654fccc4a4d8"',
                "last-modified": _LAST_MODIFIED_HTTP,
                "accept-ranges": "bytes",
            }
        )
    return _response(status, headers, b"")


def _s3_list(status: int) -> AWSResponse:
    if status == 200:
        contents = "".join(
            f"<Contents><Key>{key}</Key><LastModified>{_LAST_MODIFIED_ISO}</LastModified>"
            '<ETag>"acbd18db4cc2f85cedef654fccc4a4d8"</ETag><Size>3</Size>'
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for key in KEYS
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>bench</Name><Prefix></Prefix><KeyCount>{len(KEYS)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}"
            "</ListBucketResult>"
        ).encode()
    else:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
            b"<Message>Please try again.</Message><RequestId>BENCH0000000000</RequestId>"
            b"</Error>"
        )
    headers = _s3_headers(status)
    headers.update({"content-type": "application/xml", "content-length": str(len(body))})
    return _response(status, headers, body)


_BUILDERS: Final = {
    "DynamoDB.GetItem": _dynamodb,
    "S3.HeadObject": _s3_head,
    "S3.ListObjectsV2": _s3_list,
}


def _attempt_number(request: Any) -> int:
    """The attempt from the ``amz-sdk-request`` header botocore sets on every attempt (the
    prepared request carries ``context`` only from botocore 1.43.68)."""
    header = request.headers.get("amz-sdk-request", b"")
    text = header.decode() if isinstance(header, bytes) else str(header)
    for part in text.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt":
            return int(value)
    return 1


class CannedResponder:
    """Answers in ``before-send``: 200 at once, or ``failures`` 503s first (retry workload).

    ``check`` is called with the first request, so the child can verify that
    evobs's own before-send handler ran before this one. ``not_found`` makes
    S3 HeadObject answer 404 (the logs proof: one WARNING event per call).
    """

    __slots__ = ("_missing", "check", "checked", "failures", "not_found", "ok", "unavailable")

    def __init__(self, operation: str, failures: int = 0) -> None:
        build = _BUILDERS[operation]
        self.ok = build(200)
        self.unavailable = build(503)
        self.failures = failures
        self._missing = _s3_head(404) if operation == "S3.HeadObject" else None
        self.not_found = False
        self.check: Any = None
        self.checked = False

    def __call__(self, request: Any = None, **_: Any) -> AWSResponse:
        if not self.checked:
            self.checked = True
            if self.check is not None:
                self.check(request)
        if self.not_found and self._missing is not None:
            return self._missing
        if self.failures and _attempt_number(request) <= self.failures:
            return self.unavailable
        return self.ok
