"""Never recorded, over real HTTP: secrets, credentials, session tokens, signatures and
bodies go through real calls (moto, and the fault server echoing them back in error
messages) and appear in no span, span event, log record or metric sample."""

from __future__ import annotations

import base64
import json
import logging
import types
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries import standard
from prometheus_client import CollectorRegistry, generate_latest

import evobs
from evobs.demo.faults import Fault, FaultServer

from .conftest import SpanRecorder
from .secret_forms import FORMS, leaks, make_secret

ACCESS_KEY = "AKIAEVOBSLEAKTEST001"
SECRET_KEY = "evobsSecretAccessKey/DoNotLeak+0123456789"
SECRET_STRING = "evobs-secret-string-7Qk2"
ROTATED_STRING = "evobs-secret-string-rotated-Zp41"
SECRET_BINARY = b"evobs-secret-binary-\x00\x01Hh"
PLAINTEXT = b"evobs-kms-plaintext-Vv93"
SSE_KEY = "evobs-ssec-key-32-bytes-long!!!!"
BODY = b"evobs-object-body-Jj55"
ECHOED = "evobs-echoed-in-error-Tt08"
LITERAL = "evobs-literal-in-source-Qm7"


def b64(value: bytes | str) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


STATIC_SECRETS = {
    "access key id": ACCESS_KEY,
    "secret access key": SECRET_KEY,
    "SecretString": SECRET_STRING,
    "rotated SecretString": ROTATED_STRING,
    "SecretBinary": "evobs-secret-binary-",
    "SecretBinary base64": b64(SECRET_BINARY),
    "KMS Plaintext": PLAINTEXT.decode(),
    "KMS Plaintext base64": b64(PLAINTEXT),
    "SSE-C key": SSE_KEY,
    "SSE-C key base64": b64(SSE_KEY),
    "S3 body": BODY.decode(),
    "echoed SecretString": ECHOED,
    "literal SecretString in source": LITERAL,
}


class Everything(logging.Handler):
    """Every record of the ``evobs`` logger, rendered both ways an app would render it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._json = structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ]
        )
        self._plain = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        assert isinstance(record.msg, dict)
        self.events.append(dict(record.msg))
        self.lines.append(self._json.format(record))
        self.lines.append(self._plain.format(record))


@pytest.fixture
def everything() -> Iterator[Everything]:
    log = logging.getLogger("evobs")
    handler = Everything()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's backoff jitter returns 0 (DESIGN 6); the retry decision stays botocore's."""
    original = standard.ExponentialBackoff.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["random"] = lambda: 0.0
        original(self, *args, **kwargs)

    monkeypatch.setattr(standard.ExponentialBackoff, "__init__", init)
    monkeypatch.setattr("botocore.retryhandler.random", types.SimpleNamespace(random=lambda: 0.0))


def span_text(recorder: SpanRecorder) -> str:
    """Everything a span exporter would send: names, attributes, events, links, status."""
    parts: list[str] = []
    for span in recorder.spans:
        parts.append(span.name)
        parts.append(repr(dict(span.attributes or {})))
        parts.append(repr(dict(span.resource.attributes)))
        parts.append(repr(span.status.description))
        for event in span.events:
            parts.append(event.name)
            parts.append(repr(dict(event.attributes or {})))
        for link in span.links:
            parts.append(repr(dict(link.attributes or {})))
    return "\n".join(parts)


def make_session(access_key: str, secret_key: str, token: str | None = None) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        region_name="us-east-1",
    )


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize("capture_params", [False, True], ids=["params-off", "params-on"])
def test_nothing_sensitive_in_any_signal(
    capture_params: bool,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    everything: Everything,
) -> None:
    """SecretsManager, KMS, S3 SSE-C, STS AssumeRole (then calls with its session token),
    a presigned URL, and errors that echo a secret and the Authorization header: none of
    the secrets, keys, tokens or signatures reach a span, a log record or a metric."""
    session = make_session(ACCESS_KEY, SECRET_KEY)
    options: dict[str, Any] = {"capture_params": capture_params, "slow_call_seconds": 1e-9}
    handle = evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, **options
    )
    assumed_handle = None
    secrets = dict(STATIC_SECRETS)
    name = f"evobs-secret-{capture_params}"
    once = Config(retries={"mode": "standard", "total_max_attempts": 1})
    try:
        # Secrets Manager: the value goes in, comes back, is rotated, exists twice.
        sm = session.client("secretsmanager", endpoint_url=moto_url, config=once)
        sm.create_secret(Name=name, SecretString=SECRET_STRING)
        assert sm.get_secret_value(SecretId=name)["SecretString"] == SECRET_STRING
        sm.put_secret_value(SecretId=name, SecretString=ROTATED_STRING)
        sm.put_secret_value(SecretId=name, SecretBinary=SECRET_BINARY)
        assert sm.get_secret_value(SecretId=name)["SecretBinary"] == SECRET_BINARY
        with pytest.raises(sm.exceptions.ResourceExistsException):
            sm.create_secret(Name=name, SecretString=SECRET_STRING)
        with pytest.raises(sm.exceptions.ResourceNotFoundException):
            # The traceback's source line holds the literal: it must be masked too.
            sm.put_secret_value(SecretId="evobs-absent", SecretString="evobs-literal-in-source-Qm7")

        # KMS: Plaintext in (Encrypt) and out (Decrypt, GenerateDataKey).
        kms = session.client("kms", endpoint_url=moto_url)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=PLAINTEXT)["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == PLAINTEXT
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")["Plaintext"]
        secrets["data key base64"] = b64(data_key)

        # S3 with a customer-provided key, a body, and a presigned URL.
        s3 = session.client("s3", endpoint_url=moto_url)
        bucket = f"evobs-secrets-{str(capture_params).lower()}"
        s3.create_bucket(Bucket=bucket)
        ssec = {"SSECustomerKey": SSE_KEY, "SSECustomerAlgorithm": "AES256"}
        s3.put_object(Bucket=bucket, Key="secret.txt", Body=BODY, **ssec)
        assert s3.get_object(Bucket=bucket, Key="secret.txt", **ssec)["Body"].read() == BODY
        v4 = session.client("s3", endpoint_url=moto_url, config=Config(signature_version="s3v4"))
        for client in (s3, v4):  # the default presigner and SigV4's query parameters
            url = client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": "secret.txt"}, ExpiresIn=60
            )
            raw_query = urlsplit(url).query
            query = parse_qs(raw_query)
            for param in ("Signature", "X-Amz-Signature", "X-Amz-Credential"):
                if param in query:
                    secrets[f"presigned {param}"] = query[param][0]
                    raw = raw_query.split(f"{param}=", 1)[1].split("&", 1)[0]
                    secrets[f"presigned {param} (url-encoded)"] = raw
        assert "presigned Signature" in secrets and "presigned X-Amz-Signature" in secrets

        # STS: the response carries a new key pair and a session token; use them.
        sts = session.client("sts", endpoint_url=moto_url)
        creds = sts.assume_role(
            RoleArn="arn:aws:iam::123456789012:role/evobs", RoleSessionName="evobs-secrets"
        )["Credentials"]
        secrets["assumed access key id"] = creds["AccessKeyId"]
        secrets["assumed secret key"] = creds["SecretAccessKey"]
        secrets["session token"] = creds["SessionToken"]
        assumed = make_session(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
        )
        assumed_handle = evobs.instrument(
            assumed, tracer_provider=recorder.provider, registry=registry, **options
        )
        assumed_s3 = assumed.client("s3", endpoint_url=moto_url)
        assumed_s3.list_buckets()
        with pytest.raises(assumed_s3.exceptions.NoSuchBucket):
            assumed_s3.list_objects_v2(Bucket="evobs-no-such-bucket")

        # Errors that echo a secret value and the signed Authorization header, once
        # retried (attempt spans, retry events) and once final.
        with FaultServer(upstream=moto_url) as faults:
            echo = session.client(
                "secretsmanager",
                endpoint_url=faults.url,
                config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
            )
            faults.script(
                [
                    Fault.error(503, "ServiceUnavailable", f"cannot store {ECHOED} now"),
                    Fault.error(400, "ValidationException", f"invalid value: {ECHOED}"),
                ]
            )
            with pytest.raises(echo.exceptions.ClientError):
                echo.put_secret_value(SecretId=name, SecretString=ECHOED)
            authorization = (
                f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/"
                f"secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, "
                f"Signature={'5e' * 32}"
            )
            secrets["echoed signature"] = "5e" * 32
            faults.script(
                [Fault.error(403, "IncompleteSignatureException", f"Authorization={authorization}")]
            )
            with pytest.raises(echo.exceptions.ClientError):
                echo.list_secrets()
    finally:
        handle.uninstrument()
        if assumed_handle is not None:
            assumed_handle.uninstrument()

    spans = span_text(recorder)
    logs = "\n".join(everything.lines)
    metrics = generate_latest(registry).decode()

    # The signals did record these calls (so "absent" means redacted, not missing).
    assert len(recorder.spans) >= 20
    assert "Secrets Manager.PutSecretValue" in spans
    assert "KMS.Decrypt" in spans and "STS.AssumeRole" in spans
    assert "<redacted>" in spans and "<redacted>" in logs
    assert sum(1 for e in everything.events if e["event"] == "aws.call") >= 18
    assert "aws_sdk_call_duration_seconds" in metrics or "evobs_handler_errors" in metrics
    assert registry.get_sample_value("evobs_handler_errors_total", {"event": "call_ended"}) in (
        None,
        0.0,
    )

    for what, value in secrets.items():
        assert value not in spans, f"{what} leaked into a span"
        assert value not in logs, f"{what} leaked into a log record"
        assert value not in metrics, f"{what} leaked into a metric"

    captured = [
        dict(s.attributes or {}).get("aws.request.params")
        for s in recorder.spans
        if s.name == "Secrets Manager.CreateSecret"
    ]
    logged = [
        e.get("params")
        for e in everything.events
        if e["event"] == "aws.call" and e["operation"] == "CreateSecret"
    ]
    if capture_params:
        for params in captured + logged:
            assert isinstance(params, str)
            assert json.loads(params)["SecretString"] == "<redacted>"
        put = next(
            json.loads(e["params"])
            for e in everything.events
            if e["event"] == "aws.call" and e["operation"] == "PutObject"
        )
        assert put["Body"] == "<body>"
        assert put["SSECustomerKey"] == "<redacted>"
        assert put["Key"] == "<s3-key>"
    else:
        assert captured == [None, None] and logged == [None, None]
        assert "aws.request.params" not in spans


def test_unparseable_response_body_is_not_recorded(
    instrumented: evobs.Instrumentation,
    session: boto3.Session,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    everything: Everything,
) -> None:
    """botocore's ResponseParserError quotes the body it could not parse (here a truncated
    AssumeRole response, credentials included): its first line is kept, the body is not,
    in the span status, the exception event, its stack trace and the log record."""
    body = (
        b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        b"<AssumeRoleResult><Credentials><AccessKeyId>ASIAEVOBSPARSERLEAK1</AccessKeyId>"
        b"<SecretAccessKey>evobsParserSecretCanary</SecretAccessKey>"
        b"<SessionToken>evobsParserTokenCanary</SessionToken></Credentials><AssumeRole"
    )
    with FaultServer(upstream=moto_url) as faults:
        faults.set_default(Fault.raw(200, body, [("Content-Type", "text/xml")]))
        sts = session.client(
            "sts",
            endpoint_url=faults.url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        with pytest.raises(Exception) as raised:
            sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="leak")
    assert "evobsParserSecretCanary" in str(raised.value)  # botocore does quote it
    span = recorder.one("STS.AssumeRole")
    (event,) = [e for e in span.events if e.name == "exception"]
    stack = str(dict(event.attributes or {})["exception.stacktrace"])
    assert "Traceback (most recent call last)" in stack
    assert "ResponseParserError: Unable to parse response" in stack
    (log,) = [e for e in everything.events if e["event"] == "aws.call"]
    assert log["error_type"] == "ResponseParserError"
    assert log["error_message"].endswith("(response body omitted)")
    recorded = "\n".join(
        [span_text(recorder), *everything.lines, generate_latest(registry).decode()]
    )
    for canary in ("ASIAEVOBSPARSERLEAK1", "evobsParserSecretCanary", "evobsParserTokenCanary"):
        assert canary not in recorded


# -- every credential form, every producer, over the wire ------------------------------------

FORM_SECRET = make_secret("wJalrXUtnFEMIK7MDENGbPxRfiCYforms+/")
FORM_KEY_ID = "AKIAEVOBSFORMSWIRE01"
USER_FORM_SECRET = make_secret("userHandlerExceptionSecret0123")
USER_FORM_KEY_ID = "ASIAEVOBSFORMSUSER01"


class _UserError(Exception):
    """What the user's handler raises (quoting a credential form)."""


@pytest.mark.usefixtures("no_jitter")
def test_every_form_in_codes_messages_and_user_exceptions(
    moto_url: str, recorder: SpanRecorder, registry: CollectorRegistry, everything: Everything
) -> None:
    """Each credential form in an S3 error code and message (retried, then final), in a
    DynamoDB error message, and in a user handler's exception (with the client's own
    secret key quoted bare): no span, event, status, log record or metric holds any of it."""
    session = make_session(ACCESS_KEY, SECRET_KEY)
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    raising: list[str] = []

    def user_handler(**_: Any) -> None:
        raise _UserError(raising[-1])

    twice = Config(retries={"mode": "standard", "total_max_attempts": 2})
    try:
        with FaultServer(upstream=moto_url) as faults:
            s3 = session.client("s3", endpoint_url=faults.url, config=twice)
            ddb = session.client("dynamodb", endpoint_url=faults.url, config=twice)
            ddb.meta.events.register("before-send.dynamodb.ListTables", user_handler)
            for name, form in FORMS.items():
                text = f"{name}: {form(FORM_SECRET, FORM_KEY_ID)} (own key {SECRET_KEY})"
                faults.script([Fault.error(500, text, text), Fault.error(403, text, text)])
                with pytest.raises(ClientError):
                    s3.list_objects_v2(Bucket="evobs-forms")
                faults.script([Fault.error(400, "ValidationException", text)])
                with pytest.raises(ClientError):
                    ddb.describe_table(TableName="evobs-forms")
                raising.append(f"{form(USER_FORM_SECRET, USER_FORM_KEY_ID)} {SECRET_KEY}")
                with pytest.raises(_UserError):
                    ddb.list_tables()
    finally:
        handle.uninstrument()

    spans = span_text(recorder)
    logs = "\n".join(everything.lines)
    metrics = generate_latest(registry).decode()
    count = len(FORMS)
    assert len(recorder.named("S3.ListObjectsV2 attempt")) == 2 * count
    assert len(recorder.named("DynamoDB.ListTables")) == count
    assert metrics.count("aws_sdk_call_errors_total{") >= 3
    assert spans.count("<redacted>") >= 6 * count
    for what, text in (("spans", spans), ("logs", logs), ("metrics", metrics)):
        assert leaks(text, FORM_SECRET, FORM_KEY_ID) == [], what
        assert leaks(text, USER_FORM_SECRET, USER_FORM_KEY_ID) == [], what
        assert SECRET_KEY not in text and ACCESS_KEY not in text, what
    # The user's exception is recorded, its stack trace included (so "absent" is "masked").
    (user_span, *_) = recorder.named("DynamoDB.ListTables")
    (event,) = [e for e in user_span.events if e.name == "exception"]
    attributes = dict(event.attributes or {})
    assert str(attributes["exception.type"]).endswith("_UserError")
    assert "raise _UserError(raising[-1])" in str(attributes["exception.stacktrace"])


OBJECT_KEY = "people/alice-private.txt"


def _presigned_failure(key: str) -> str:
    """An error message quoting a presigned URL, an access key id and the object key."""
    return (
        f"Request for {key} denied: https://evobs-transfers.s3.amazonaws.com/{key}"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={ACCESS_KEY}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={'7f' * 32} (signed by {ACCESS_KEY})"
    )


@pytest.mark.parametrize("method", ["upload_file", "download_file", "copy"])
def test_failed_transfer_records_no_credential_nor_key(
    method: str,
    moto_url: str,
    recorder: SpanRecorder,
    registry: CollectorRegistry,
    everything: Everything,
    tmp_path: Any,
) -> None:
    """A failed managed transfer whose error quotes a presigned URL and an access key id:
    the transfer's parent span (exception event, stack trace, status), its part calls, the
    logs and the metrics hold no signature, credential, key id, nor the object key."""
    session = make_session(ACCESS_KEY, SECRET_KEY)
    handle = evobs.instrument(session, tracer_provider=recorder.provider, registry=registry)
    bucket = f"evobs-transfers-{method.replace('_', '-')}"
    path = tmp_path / "local.bin"
    path.write_bytes(b"transfer body")
    try:
        with FaultServer(upstream=moto_url) as faults:
            s3 = session.client(
                "s3",
                endpoint_url=faults.url,
                config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
            )
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key=OBJECT_KEY, Body=b"transfer body")
            recorder.exporter.clear()
            failing = "GET" if method == "download_file" else "PUT"
            faults.script(
                [
                    Fault.error(403, "AccessDenied", _presigned_failure(OBJECT_KEY)).on(
                        method=failing
                    )
                ]
            )
            with pytest.raises(Exception) as raised:
                if method == "upload_file":
                    s3.upload_file(str(path), bucket, OBJECT_KEY)
                elif method == "download_file":
                    s3.download_file(bucket, OBJECT_KEY, str(tmp_path / "out.bin"))
                else:
                    s3.copy({"Bucket": bucket, "Key": OBJECT_KEY}, bucket, OBJECT_KEY + ".copy")
    finally:
        handle.uninstrument()
    assert "X-Amz-Signature=" + "7f" * 32 in str(raised.value)  # the user's exception has it

    transfer = recorder.one(f"S3.{method}")
    assert not transfer.status.is_ok
    description = transfer.status.description or ""
    assert description.startswith(type(raised.value).__name__ + ": ")
    assert "X-Amz-Signature=<redacted>" in description
    (event,) = [e for e in transfer.events if e.name == "exception"]
    attributes = dict(event.attributes or {})
    assert set(attributes) == {
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        "exception.escaped",
    }
    assert "Traceback (most recent call last)" in str(attributes["exception.stacktrace"])
    assert "<s3-key>" in str(attributes["exception.message"])
    children = [
        s for s in recorder.spans if s.parent and s.parent.span_id == transfer.context.span_id
    ]
    assert any(not s.status.is_ok for s in children)

    recorded = "\n".join(
        [span_text(recorder), *everything.lines, generate_latest(registry).decode()]
    )
    for value in ("7f" * 32, ACCESS_KEY, ACCESS_KEY[4:], SECRET_KEY, "alice-private"):
        assert value not in recorded, value
