"""s3transfer: one INTERNAL parent span per managed transfer, every part call (on the
transfer's worker threads) its child; over real HTTP against moto's server."""

from __future__ import annotations

import io
import itertools
import os
import threading
import uuid
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from prometheus_client import CollectorRegistry

import evobs

MIB = 1024 * 1024
# S3's minimum part size is 5 MiB: an 11 MiB object is 3 parts.
CONFIG = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
PARTS = 3


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(11 * MIB)


@pytest.fixture
def s3(instrumented: evobs.Instrumentation, session: Any, moto_url: str) -> Any:
    client = session.client("s3", endpoint_url=moto_url)
    return client


def _bucket(s3: Any) -> str:
    name = f"transfer-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _children(recorder: Any, parent: Any) -> list[Any]:
    return [
        s
        for s in recorder.spans
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def _assert_family(recorder: Any, name: str, expected: dict[str, int]) -> Any:
    transfer = recorder.one(name)
    assert transfer.kind is SpanKind.INTERNAL
    children = _children(recorder, transfer)
    counts: dict[str, int] = {}
    for child in children:
        assert child.context.trace_id == transfer.context.trace_id
        counts[child.name] = counts.get(child.name, 0) + 1
    assert counts == expected
    # Nothing else in the recorder is a root besides the transfer (and setup calls).
    for span in recorder.spans:
        if span.name in expected:
            assert span.parent is not None and span.parent.span_id == transfer.context.span_id
    return transfer


def test_upload_file_multipart_parts_are_children(s3, recorder, tmp_path, payload):
    """upload_file of a 3-part file: CreateMultipartUpload, 3 UploadPart and
    CompleteMultipartUpload, made on worker threads, are children of ``S3.upload_file``."""
    bucket = _bucket(s3)
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    s3.upload_file(str(path), bucket, "big.bin", Config=CONFIG)
    transfer = _assert_family(
        recorder,
        "S3.upload_file",
        {"S3.CreateMultipartUpload": 1, "S3.UploadPart": PARTS, "S3.CompleteMultipartUpload": 1},
    )
    assert transfer.attributes["aws.s3.bucket"] == bucket
    assert "aws.s3.key" not in transfer.attributes
    parts = sorted(s.attributes["aws.s3.part_number"] for s in recorder.named("S3.UploadPart"))
    assert parts == [1, 2, 3]
    upload_ids = {s.attributes["aws.s3.upload_id"] for s in recorder.named("S3.UploadPart")}
    assert len(upload_ids) == 1


def test_download_file_and_fileobj(s3, recorder, tmp_path, payload):
    """download_file and download_fileobj: ranged GetObject calls are the transfer's children."""
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="obj", Body=payload)
    target = tmp_path / "out.bin"
    s3.download_file(bucket, "obj", str(target), Config=CONFIG)
    assert target.read_bytes() == payload
    download = recorder.one("S3.download_file")
    children = _children(recorder, download)
    names = [c.name for c in children]
    assert names.count("S3.GetObject") == PARTS and "S3.HeadObject" in names

    buffer = io.BytesIO()
    s3.download_fileobj(bucket, "obj", buffer, Config=CONFIG)
    assert buffer.getvalue() == payload
    fileobj = recorder.one("S3.download_fileobj")
    assert [c.name for c in _children(recorder, fileobj)].count("S3.GetObject") == PARTS


def test_upload_fileobj_and_copy_under_a_user_span(s3, recorder, payload):
    """upload_fileobj and copy: the transfer span is the child of the caller's span and the
    parent of its parts."""
    bucket = _bucket(s3)
    tracer = recorder.provider.get_tracer("app")
    with tracer.start_as_current_span("job") as job:
        s3.upload_fileobj(io.BytesIO(payload), bucket, "src", Config=CONFIG)
        s3.copy({"Bucket": bucket, "Key": "src"}, bucket, "dst", Config=CONFIG)
    upload = recorder.one("S3.upload_fileobj")
    copy = recorder.one("S3.copy")
    for transfer in (upload, copy):
        assert transfer.parent is not None
        assert transfer.parent.span_id == job.get_span_context().span_id
    assert [c.name for c in _children(recorder, upload)].count("S3.UploadPart") == PARTS
    copy_children = [c.name for c in _children(recorder, copy)]
    assert copy_children.count("S3.UploadPartCopy") == PARTS
    assert "S3.HeadObject" in copy_children


def test_concurrent_transfers_on_one_client_keep_their_parents(s3, recorder, tmp_path, payload):
    """Two threads upload through one client at once: every part is the child of its own
    thread's transfer (the parent travels with the transfer, not the thread or the key)."""
    bucket = _bucket(s3)
    paths = []
    for i in range(2):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(payload)
        paths.append(path)
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        try:
            s3.upload_file(str(paths[i]), bucket, "same-key", Config=CONFIG)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    transfers = recorder.named("S3.upload_file")
    assert len(transfers) == 2
    for transfer in transfers:
        children = _children(recorder, transfer)
        upload_ids = {
            c.attributes["aws.s3.upload_id"] for c in children if c.name == "S3.UploadPart"
        }
        assert [c.name for c in children].count("S3.UploadPart") == PARTS
        assert len(upload_ids) == 1  # all parts of one multipart upload
    assert recorder.started == recorder.ended


def test_keys_only_with_capture_s3_keys(session, moto_url, recorder, registry, payload):
    """``capture_s3_keys=True`` puts the key on the transfer span and on its parts."""
    handle = evobs.instrument(
        session, tracer_provider=recorder.provider, registry=registry, capture_s3_keys=True
    )
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        bucket = _bucket(s3)
        s3.upload_fileobj(io.BytesIO(b"small"), bucket, "people/alice.txt")
        assert recorder.one("S3.upload_fileobj").attributes["aws.s3.key"] == "people/alice.txt"
        assert recorder.one("S3.PutObject").attributes["aws.s3.key"] == "people/alice.txt"
    finally:
        handle.uninstrument()


def test_directly_instrumented_client_gets_transfer_spans(session, moto_url, recorder, registry):
    """A client instrumented after its creation (class swap) gets the transfer span too,
    and loses it after uninstrument."""
    s3 = session.client("s3", endpoint_url=moto_url)
    handle = evobs.instrument(s3, tracer_provider=recorder.provider, registry=registry)
    bucket = _bucket(s3)
    s3.upload_fileobj(io.BytesIO(b"x"), bucket, "k")
    transfer = recorder.one("S3.upload_fileobj")
    assert recorder.one("S3.PutObject").parent.span_id == transfer.context.span_id
    handle.uninstrument()
    s3.upload_fileobj(io.BytesIO(b"x"), bucket, "k2")
    assert len(recorder.named("S3.upload_fileobj")) == 1


def test_copy_with_a_source_client_parents_its_head_object(s3, recorder, session, moto_url):
    """``copy(..., SourceClient=other)``: the HeadObject made on the source client is a child
    of the transfer span too."""
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    source = session.client("s3", endpoint_url=moto_url)
    s3.copy({"Bucket": bucket, "Key": "src"}, bucket, "dst", SourceClient=source)
    transfer = recorder.one("S3.copy")
    names = [c.name for c in _children(recorder, transfer)]
    assert "S3.HeadObject" in names and "S3.CopyObject" in names
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"data"


def test_failed_transfer_span_is_an_error(s3, recorder, tmp_path):
    """A transfer that raises (missing bucket) ends its span as ERROR with the exception."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    with pytest.raises(Exception):  # noqa: B017 - boto3 wraps it in S3UploadFailedError
        s3.upload_file(str(path), f"missing-{uuid.uuid4().hex[:8]}", "k")
    transfer = recorder.one("S3.upload_file")
    assert not transfer.status.is_ok
    assert any(e.name == "exception" for e in transfer.events)
    assert recorder.one("S3.PutObject").parent.span_id == transfer.context.span_id


class _BrokenSpan(NonRecordingSpan):
    """A span whose every write raises (a broken vendor tracer)."""

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("add_event is broken")

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("record_exception is broken")

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("set_status is broken")

    def end(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("end is broken")


class _BrokenTracer(Tracer):
    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Span:
        ids = itertools.count(1)
        return _BrokenSpan(
            SpanContext(next(ids) + 10**9, next(ids) + 10**9, False, TraceFlags.SAMPLED)
        )

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


class _BrokenProvider(TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return _BrokenTracer()


def test_a_broken_tracer_never_replaces_the_transfers_exception(session, moto_url, tmp_path):
    """Every tracer call on the transfer's error path raises: the user gets the transfer's
    own exception, the context is restored, and evobs counts its failures."""
    registry = CollectorRegistry()
    handle = evobs.instrument(session, tracer_provider=_BrokenProvider(), registry=registry)
    try:
        s3 = session.client("s3", endpoint_url=moto_url)
        path = tmp_path / "f.bin"
        path.write_bytes(b"x")
        with pytest.raises(S3UploadFailedError, match="NoSuchBucket"):
            s3.upload_file(str(path), f"missing-{uuid.uuid4().hex[:8]}", "k")

        def callback(_: int) -> None:
            raise RuntimeError("the user's own")

        bucket = _bucket(s3)
        with pytest.raises(RuntimeError, match="the user's own"):
            s3.upload_fileobj(io.BytesIO(b"x"), bucket, "k", Callback=callback)
    finally:
        handle.uninstrument()
    # add_event, set_status and end, for each of the two transfers.
    errors = registry.get_sample_value("evobs_handler_errors_total", {"event": "s3-transfer"})
    assert errors == 6


def test_transfer_exception_masks_its_keys_unless_captured(session, moto_url, recorder, tmp_path):
    """The transfer span's exception (message, stack trace, status) shows ``<s3-key>`` for
    the object key, and the key itself with ``capture_s3_keys=True``."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    for capture in (False, True):
        recorder.exporter.clear()
        handle = evobs.instrument(
            session,
            tracer_provider=recorder.provider,
            registry=CollectorRegistry(),
            capture_s3_keys=capture,
        )
        try:
            s3 = session.client("s3", endpoint_url=moto_url)
            with pytest.raises(S3UploadFailedError):
                s3.upload_file(str(path), missing, "people/bob-private.txt")
        finally:
            handle.uninstrument()
        transfer = recorder.one("S3.upload_file")
        (event,) = [e for e in transfer.events if e.name == "exception"]
        texts = [transfer.status.description or "", *map(str, (event.attributes or {}).values())]
        assert texts[0].startswith("S3UploadFailedError: Failed to upload")
        shown = [t for t in texts if "bob-private" in t]
        if capture:
            assert len(shown) >= 3  # status, message, stack trace
        else:
            assert shown == []
            assert f"{missing}/<s3-key>" in texts[0]
